"""The flags users' scripts rely on, and ``--config FILE.yaml``.

Every command's flags are generated from its config dataclasses (:mod:`facemtl.cli._args`). SNAPSHOT is what the
hand-written parsers gave before that, taken from them: each flag's option strings, dest, default, choices, type,
metavar and help text (as ``--help`` shows it). A flag may be added (ADDED), never changed or removed.
"""
# ruff: noqa: E501
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FakeDetector, draw_face
from PIL import Image

from facemtl.cli.__main__ import build_parser, main
from facemtl.errors import FacemtlError

ADDED: dict[str, set[str]] = {cmd: {"--config"} for cmd in ("predict", "batch", "serve", "export")}
ADDED["train"] = {"--split-seed"}
REQUIRED = {"batch": ["x", "--out", "o.csv"], "calibrate": ["--out", "c.json"], "explain": ["img", "--out", "o.png"]}
_KINDS = {"_StoreAction": "store", "_StoreTrueAction": "store_true", "_StoreFalseAction": "store_false",
          "_AppendAction": "append", "BooleanOptionalAction": "bool", "_StoreConstAction": "store_const",
          "_CountAction": "count"}
_BOOL_NOTE = " (default: %(default)s)"  # what BooleanOptionalAction adds to the help itself (some Pythons): left out


def _value(v):
    if v is argparse.SUPPRESS:
        return "==SUPPRESS=="
    return list(v) if isinstance(v, tuple) else v


def _help(action: argparse.Action) -> str | None:
    a = copy.copy(action)
    if isinstance(a, argparse.BooleanOptionalAction) and a.help and a.help.endswith(_BOOL_NOTE):
        a.help = a.help[: -len(_BOOL_NOTE)]
    return argparse.HelpFormatter("facemtl")._expand_help(a) if a.help else a.help


def describe(parser: argparse.ArgumentParser) -> dict[str, dict]:
    """{flag: what a user sees of it}; only what differs from a plain ``--flag-name`` string flag is listed."""
    out = {}
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        key = a.option_strings[0] if a.option_strings else f"<{a.dest}>"
        d = {"default": _value(a.default), "help": _help(a)}
        if a.option_strings and a.option_strings != [key]:
            d["flags"] = list(a.option_strings)
        natural = key[2:].replace("-", "_") if a.option_strings else a.dest
        if a.dest != natural:
            d["dest"] = a.dest
        base = next(c for c in type(a).__mro__ if c.__module__ == "argparse")
        kind = _KINDS.get(base.__name__, base.__name__)
        if kind != "store":
            d["action"] = kind
        if a.type not in (None, str):  # a str type and none parse the same
            d["type"] = getattr(a.type, "__name__", repr(a.type))
        if a.choices is not None:
            d["choices"] = list(a.choices)
        if a.metavar is not None:
            d["metavar"] = a.metavar
        if a.nargs is not None and kind not in ("store_true", "bool", "store_false", "store_const"):
            d["nargs"] = a.nargs
        if a.required:
            d["required"] = True
        out[key] = d
    return out


def _commands() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def _without_positional_required(flags: dict[str, dict]) -> dict[str, dict]:
    # whether a nargs="*" positional counts as "required" changed between Python versions; it never was
    return {k: {x: y for x, y in d.items() if not (k.startswith("<") and x == "required")} for k, d in flags.items()}


def test_every_flag_of_every_command_is_as_it_was():
    _, commands = _commands()
    assert set(commands) == set(SNAPSHOT)
    for name, before in SNAPSHOT.items():
        now = describe(commands[name])
        assert set(now) - set(before) == ADDED.get(name, set()), name  # nothing removed, only ADDED added
        now, before = _without_positional_required(now), _without_positional_required(before)
        for flag, was in before.items():
            assert now[flag] == was, f"facemtl {name} {flag}"


def test_parsed_defaults_are_as_they_were():
    parser, commands = _commands()
    for name in commands:
        ns = vars(parser.parse_args([name, *REQUIRED.get(name, [])]))
        ns = {k: _value(v) for k, v in sorted(ns.items()) if not k.startswith("_")
              and k not in ("func", "usage_error", "command", "quiet", "verbose")}
        expected = dict(NAMESPACE[name], **({"config": None} if name in ADDED else {}))
        assert ns == expected, name


def test_the_config_flag_of_each_command():
    _, commands = _commands()
    for name in [*ADDED, "train"]:
        action = next(a for a in commands[name]._actions if "--config" in a.option_strings)
        assert action.default is None and "YAML" in action.help, name


# -- --config FILE.yaml ---------------------------------------------------------------------------------
THREE_FACES = [  # a big face, a 40 px and a 20 px one, in a 128x128 image
    ((8.0, 4.0, 120.0, 124.0), 0.9), ((0.0, 0.0, 40.0, 40.0), 0.8), ((90.0, 90.0, 110.0, 110.0), 0.7)]


@pytest.fixture
def loads(monkeypatch, tiny_model):
    """FaceAnalyzer.from_checkpoint builds the tiny model with a three-face detector from the keyword arguments
    the command passes (so the options flags and --config give are the ones applied); each call is recorded."""
    from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
    from facemtl.detect.base import Detection
    from facemtl.results import Box

    calls: list[dict] = []

    def from_checkpoint(path=None, detector=None, device="cpu", tasks=None, threads=None, detector_options=None,
                        **options):
        calls.append(dict(path=path, detector=detector, device=device, tasks=tasks, threads=threads,
                          detector_options=detector_options, **options))
        det = FakeDetector([Detection(Box(*box), score, None) for box, score in THREE_FACES])
        return FaceAnalyzer(tiny_model, det, 64, options=AnalyzerOptions(**options))

    monkeypatch.setattr(FaceAnalyzer, "from_checkpoint", from_checkpoint)
    return calls


@pytest.fixture
def photo(tmp_path) -> Path:
    p = tmp_path / "group.png"
    Image.fromarray(draw_face(128)).save(p)
    return p


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "options.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def _faces(capsys) -> list[int]:
    return [len(json.loads(line)["faces"]) for line in capsys.readouterr().out.splitlines()]


def test_a_predict_config_changes_the_result_as_the_flags_do(loads, photo, tmp_path, capsys):
    pytest.importorskip("yaml")
    assert main(["predict", str(photo), "--json"]) == 0
    assert _faces(capsys) == [3]
    assert main(["predict", str(photo), "--json", "--min-face", "30", "--max-faces", "1"]) == 0
    by_flags = json.loads(capsys.readouterr().out)["faces"]
    cfg = _yaml(tmp_path, """
        min_face: 30
        max_faces: 1
        """)
    assert main(["predict", str(photo), "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["faces"] == by_flags and len(by_flags) == 1
    assert loads[-1]["min_face"] == 30 and loads[-1]["max_faces"] == 1
    # a flag given on the command line overrides the file; the file's other keys still apply
    assert main(["predict", str(photo), "--json", "--config", str(cfg), "--max-faces", "5"]) == 0
    assert _faces(capsys) == [2]  # min_face 30 (the file) drops the 20 px face; max_faces 5 (the flag)
    assert loads[-1]["max_faces"] == 5 and loads[-1]["min_face"] == 30


def test_a_config_sets_the_model_and_detector_flags_too(loads, photo, tmp_path, capsys):
    pytest.importorskip("yaml")
    cfg = _yaml(tmp_path, """
        detector: none
        min-score: 0.25          # dashes are accepted as in the flag's name
        tasks: [age, gender]
        flip_tta: false
        age_interval: 0.8
        """)
    assert main(["predict", str(photo), "--json", "--config", str(cfg), "--threads", "2"]) == 0
    call = loads[-1]
    assert call["detector"] == "none" and call["detector_options"] == {"min_score": 0.25}
    assert call["tasks"] == ("age", "gender") and call["threads"] == 2
    assert call["flip_tta"] is False and call["age_interval"] == 0.8


def test_an_unknown_config_key_is_one_clear_error(loads, photo, tmp_path, capsys):
    pytest.importorskip("yaml")
    cfg = _yaml(tmp_path, """
        min_faces: 30
        every_n: 2               # a video option: predict takes those too
        """)
    assert main(["predict", str(photo), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key(s)" in err and str(cfg) in err
    assert "'min_faces' (did you mean 'min_face'?)" in err
    assert "valid: " in err and "max_faces" in err and "every_n" in err and "keep_image" not in err
    assert not loads  # before any model is loaded
    for cmd in (["batch", str(photo), "--out", str(tmp_path / "r.csv")], ["serve"], ["export"]):
        assert main([*cmd, "--config", str(cfg)]) == 1, cmd
        err = capsys.readouterr().err
        assert "unknown key(s)" in err and (cmd == ["export"] or "(did you mean 'min_face'?)" in err), cmd


def test_config_values_of_the_wrong_kind_are_errors(loads, photo, tmp_path, capsys):
    pytest.importorskip("yaml")
    assert main(["predict", str(photo), "--config", str(_yaml(tmp_path, "max_faces: many\n"))]) == 1
    assert "max_faces must be an integer, got 'many'" in capsys.readouterr().err
    assert main(["predict", str(photo), "--config", str(_yaml(tmp_path, "min_quality: great\n"))]) == 1
    assert "min_quality" in capsys.readouterr().err
    assert main(["predict", str(photo), "--config", str(_yaml(tmp_path, "- min_face\n"))]) == 1
    assert "must hold a mapping" in capsys.readouterr().err
    assert main(["predict", str(photo), "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "config file not found" in capsys.readouterr().err


def test_video_options_come_from_the_predict_config(tmp_path):
    pytest.importorskip("yaml")
    from facemtl.cli._args import config_from_args, file_values
    from facemtl.video import VideoConfig

    cfg = _yaml(tmp_path, "every_n: 3\ndetect_every: 5\nema_alpha: '0.5'\n")
    args = build_parser().parse_args(["predict", "x.mp4", "--config", str(cfg), "--every-n", "2"])
    file_values(args)
    video = config_from_args(VideoConfig, args)
    assert (video.every_n, video.detect_every, video.ema_alpha, video.refresh_every) == (2, 5, 0.5, 6)


def test_a_batch_config(loads, photo, tmp_path, capsys):
    pytest.importorskip("yaml")
    out = tmp_path / "r.csv"
    cfg = _yaml(tmp_path, "max_faces: 2\n")
    assert main(["batch", str(photo), "--out", str(out), "--no-progress", "--config", str(cfg)]) == 0
    assert loads[-1]["max_faces"] == 2
    assert len(out.read_text().splitlines()) == 1 + 2  # the header and a row per face


def test_a_serve_config(loads, tmp_path, monkeypatch, capsys):
    pytest.importorskip("yaml")
    pytest.importorskip("fastapi")
    from types import SimpleNamespace

    from facemtl.cli import serve

    served: dict = {}
    monkeypatch.setattr(serve, "require", lambda *a, **k: SimpleNamespace(run=lambda app, **kw: served.update(
        app=app, **kw)))
    cfg = _yaml(tmp_path, """
        port: 9001
        max_batch: 3
        max_pixels: 1000000
        allowed_hosts: example.org
        min_face: 10
        """)
    assert main(["serve", "--config", str(cfg), "--max-batch", "5"]) == 0
    settings = served["app"].state.service.settings
    assert served["port"] == 9001 and served["host"] == "127.0.0.1"
    assert settings.max_batch == 5 and settings.max_pixels == 1_000_000 and settings.max_upload_mb == 20
    assert loads[-1]["max_pixels"] == 1_000_000 and loads[-1]["min_face"] == 10
    assert main(["serve"]) == 0  # no file: the service's own lower --max-pixels default
    assert served["app"].state.service.settings.max_pixels == 40_000_000 == loads[-1]["max_pixels"]
    assert served["port"] == 8000
    with pytest.raises(SystemExit) as exc:  # as --port 0: a usage error
        main(["serve", "--config", str(_yaml(tmp_path, "port: 0\n"))])
    assert exc.value.code == 2
    assert "--port must be in 1..65535, got 0" in capsys.readouterr().err


def test_an_export_config(tmp_path):
    pytest.importorskip("yaml")
    from facemtl.cli._args import config_from_args
    from facemtl.export import ExportConfig

    cfg = _yaml(tmp_path, """
        quantize: int8
        method: dynamic
        opset: 12
        calibration: [crops/a, crops/b]
        fixed_batch: true
        """)
    args = build_parser().parse_args(["export", "--config", str(cfg), "--opset", "13"])
    export = config_from_args(ExportConfig, args)
    assert (export.quantize, export.method, export.opset, export.fixed_batch) == ("int8", "dynamic", 13, True)
    assert export.calibration == ("crops/a", "crops/b") and export.format == "onnx"
    args = build_parser().parse_args(["export", "--config", str(_yaml(tmp_path, "format: tflite\n"))])
    with pytest.raises(FacemtlError, match="unknown format 'tflite'; valid: onnx"):
        config_from_args(ExportConfig, args)


def test_config_without_pyyaml_names_what_to_install(loads, photo, tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "options.yaml"
    cfg.write_text("max_faces: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml fails, as in the core install
    assert main(["predict", str(photo), "--json", "--max-faces", "1"]) == 0  # no --config: no PyYAML needed
    assert _faces(capsys) == [1]
    assert main(["predict", str(photo), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "'pyyaml' is required" in err and 'pip install "facemtl[' in err and "Traceback" not in err


def test_the_core_install_never_imports_pyyaml_without_config(photo):
    code = textwrap.dedent("""
        import sys

        class _NoYaml:
            def find_spec(self, name, *args, **kwargs):
                if name.split(".")[0] == "yaml":
                    raise ImportError("No module named 'yaml' (blocked)")

        sys.meta_path.insert(0, _NoYaml())
        from facemtl.cli.__main__ import main
        assert main(sys.argv[1:]) == 0
        assert "yaml" not in sys.modules
    """)
    res = subprocess.run([sys.executable, "-c", code, "predict", str(photo), "--detector", "none", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["faces"]) == 1


def test_configs_are_frozen_and_changed_through_replace():
    from facemtl.analyzer import AnalyzerConfig, AnalyzerOptions
    from facemtl.export import ExportConfig
    from facemtl.serve.state import ServeSettings
    from facemtl.video import VideoConfig

    for cfg, name, bad in ((AnalyzerOptions(), "max_faces", 0), (AnalyzerConfig(), "device", "gpu"),
                           (VideoConfig(), "every_n", 0), (ServeSettings(), "max_batch", 0),
                           (ExportConfig(), "method", "fast")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, name, bad)
        with pytest.raises(FacemtlError):  # a copy is checked again
            dataclasses.replace(cfg, **{name: bad})
    assert dataclasses.replace(AnalyzerOptions(), age_interval="0.8").age_interval == 0.8
    assert AnalyzerConfig(device="CUDA:1", tasks=["age"]) == AnalyzerConfig(device="cuda:1", tasks=("age",))


# -- the flags before they were generated (from the hand-written parsers) -----------------------------
# {command: {flag: what differs from a plain --flag-name string flag}}
SNAPSHOT = {
    'predict': {
        '<inputs>': {'default': None, 'help': 'images, folders, globs, video files, or stream URLs (rtsp://, http(s)://...)', 'metavar': 'IMAGE|DIR|GLOB|VIDEO|URL', 'nargs': '*', 'required': True},
        '--model': {'default': None, 'help': 'a bundled model name (default, default-pytorch), an .onnx file (ONNX Runtime) or a .pt checkpoint (needs PyTorch) (default: the bundled model, ONNX Runtime)'},
        '--detector': {'default': 'retinaface', 'help': "face detector (default: retinaface; 'none' = each image is already a face crop)", 'choices': ['blazeface', 'haar', 'none', 'retinaface']},
        '--tasks': {'default': None, 'help': 'comma-separated subset of tasks to run (default: all)'},
        '--device': {'default': 'cpu', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--threads': {'default': None, 'help': 'CPU threads for the model', 'type': 'int'},
        '--min-face': {'default': 0, 'help': 'ignore faces smaller than this many pixels', 'type': 'int'},
        '--max-faces': {'default': None, 'help': 'keep at most this many faces per image', 'type': 'int'},
        '--largest-only': {'default': False, 'help': 'keep only the largest face', 'action': 'store_true'},
        '--batch-size': {'default': 32, 'help': 'faces per forward pass', 'type': 'int'},
        '--min-score': {'default': None, 'help': 'detector confidence threshold', 'type': 'float'},
        '--max-pixels': {'default': 80000000, 'help': 'refuse images with more pixels than this (default: 80000000)', 'type': 'int'},
        '--flip-tta': {'default': True, 'help': 'average each face with its mirror image (default: on)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--age-interval': {'default': 0.9, 'help': 'level of the age interval (age_low, age_high), in (0, 1) (default: 0.9)', 'type': 'float', 'metavar': 'LEVEL'},
        '--min-quality': {'default': 'low', 'help': 'low: keep every face, doubtful ones flagged quality=low with reasons; ok: drop them (default: low)', 'choices': ['low', 'ok']},
        '--json': {'default': False, 'help': 'print one JSON object per image (JSON Lines); for a video, its summary', 'action': 'store_true'},
        '--save-dir': {'default': None, 'help': 'write each image with boxes and labels drawn into this folder (as <name>.jpg; sub-folders of the inputs are mirrored, so equal names from different folders do not collide)'},
        '--overwrite': {'default': False, 'help': 'replace drawn images already in --save-dir (default: such a file is left alone and reported as an error)', 'action': 'store_true'},
        '--recursive': {'default': False, 'help': 'descend into sub-folders', 'action': 'store_true'},
        '--webcam': {'default': None, 'help': 'analyse this camera (0 = the first) until Ctrl-C or --max-frames', 'type': 'int', 'metavar': 'INDEX'},
        '--csv': {'default': None, 'help': 'per-frame CSV (default: <save-dir or current folder>/<stem>_frames.csv)', 'metavar': 'PATH'},
        '--video-out': {'default': None, 'help': 'annotated H.264 video, .mp4 (default: <save-dir>/<stem>_annotated.mp4 with --save-dir, else none)', 'metavar': 'PATH'},
        '--every-n': {'default': '==SUPPRESS==', 'help': 'process every n-th frame of the source (default: every frame, or about --target-fps a second)', 'type': 'int'},
        '--target-fps': {'default': '==SUPPRESS==', 'help': 'frames per second of video to process when --every-n is not given (default: all)', 'type': 'float'},
        '--max-frames': {'default': '==SUPPRESS==', 'help': 'stop after processing this many frames', 'type': 'int'},
        '--detect-every': {'default': '==SUPPRESS==', 'help': 'run the face detector on every k-th processed frame; faces are tracked in between (default: 3)', 'type': 'int'},
        '--refresh-every': {'default': '==SUPPRESS==', 'help': 're-run the attribute model for a face at most every this many frames (a new face at once) (default: 6)', 'type': 'int'},
        '--detect-max-side': {'default': '==SUPPRESS==', 'help': 'shrink frames to this longer side before detection (default: 640)', 'type': 'int'},
        '--detect-min-face': {'default': '==SUPPRESS==', 'help': 'detect on a smaller input still while every tracked face stays this many pixels there (0: off) (default: 64)', 'type': 'int'},
        '--full-detect-every': {'default': '==SUPPRESS==', 'help': 'every n-th detection at --detect-max-side anyway, to find new small faces (default: 4)', 'type': 'int'},
        '--ema-alpha': {'default': '==SUPPRESS==', 'help': "weight of the newest refresh in each track's moving average (1 = no smoothing) (default: 0.3)", 'type': 'float'},
        '--high-score': {'default': '==SUPPRESS==', 'help': 'detections scoring at least this are matched first and may start tracks (default: 0.5)', 'type': 'float'},
        '--iou-threshold': {'default': '==SUPPRESS==', 'help': "box overlap between a track's predicted box and a detection needed to continue it (default: 0.2)", 'type': 'float'},
        '--max-missed': {'default': '==SUPPRESS==', 'help': 'frames a track that lost its face is kept for re-matching before it ends (default: 60)', 'type': 'int'},
        '--stream-timeout': {'default': '==SUPPRESS==', 'help': 'seconds to wait for a stream URL to open and for each read (default: 10.0)', 'type': 'float'},
        '--video-preset': {'default': '==SUPPRESS==', 'help': 'x264 preset of the annotated video (ultrafast ... veryslow) (default: ultrafast)'},
        '--video-crf': {'default': '==SUPPRESS==', 'help': 'x264 quality of the annotated video (lower is better) (default: 23)', 'type': 'int'},
    },
    'batch': {
        '<inputs>': {'default': None, 'help': 'images, folders (their images; --recursive for sub-folders) or quoted glob patterns', 'metavar': 'DIR|IMAGE|GLOB', 'nargs': '+', 'required': True},
        '--out': {'default': None, 'help': "output file: .csv (one row per face), .jsonl (one line per image) or .parquet (the CSV's columns, typed; needs facemtl[parquet]; rows are collected in OUT.partial.csv and converted when the run ends or is interrupted)", 'required': True},
        '--model': {'default': None, 'help': 'a bundled model name (default, default-pytorch), an .onnx file (ONNX Runtime) or a .pt checkpoint (needs PyTorch) (default: the bundled model, ONNX Runtime)'},
        '--detector': {'default': 'retinaface', 'help': "face detector (default: retinaface; 'none' = each image is already a face crop)", 'choices': ['blazeface', 'haar', 'none', 'retinaface']},
        '--tasks': {'default': None, 'help': 'comma-separated subset of tasks to run (default: all)'},
        '--device': {'default': 'cpu', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--threads': {'default': None, 'help': 'CPU threads for the model', 'type': 'int'},
        '--min-face': {'default': 0, 'help': 'ignore faces smaller than this many pixels', 'type': 'int'},
        '--max-faces': {'default': None, 'help': 'keep at most this many faces per image', 'type': 'int'},
        '--largest-only': {'default': False, 'help': 'keep only the largest face', 'action': 'store_true'},
        '--batch-size': {'default': 32, 'help': 'faces per forward pass', 'type': 'int'},
        '--min-score': {'default': None, 'help': 'detector confidence threshold', 'type': 'float'},
        '--max-pixels': {'default': 80000000, 'help': 'refuse images with more pixels than this (default: 80000000)', 'type': 'int'},
        '--flip-tta': {'default': True, 'help': 'average each face with its mirror image (default: on)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--age-interval': {'default': 0.9, 'help': 'level of the age interval (age_low, age_high), in (0, 1) (default: 0.9)', 'type': 'float', 'metavar': 'LEVEL'},
        '--min-quality': {'default': 'low', 'help': 'low: keep every face, doubtful ones flagged quality=low with reasons; ok: drop them (default: low)', 'choices': ['low', 'ok']},
        '--recursive': {'default': False, 'help': 'descend into sub-folders', 'action': 'store_true'},
        '--overwrite': {'default': False, 'help': 'start a new output instead of resuming', 'action': 'store_true'},
        '--no-retry-failed': {'default': False, 'help': 'when resuming, keep the error rows of files that failed and skip them (default: analyse them again, replacing their error rows)', 'action': 'store_true'},
        '--no-progress': {'default': False, 'help': 'no progress bar', 'action': 'store_true'},
        '--engine': {'default': 'local', 'help': 'default: local', 'choices': ['local', 'ray']},
        '--ray-address': {'default': None, 'help': 'connect to this running Ray cluster (default: start a local Ray for the run)', 'metavar': 'ADDR'},
        '--ray-cpus': {'default': None, 'help': 'CPUs of the local Ray (default: all)', 'type': 'positive_int', 'metavar': 'N'},
        '--ray-concurrency': {'default': None, 'help': 'actors, each with one model (default: one per CPU of the Ray cluster)', 'type': 'positive_int', 'metavar': 'K'},
        '--ray-batch-size': {'default': None, 'help': 'files per actor call (default: 16)', 'type': 'positive_int', 'metavar': 'B'},
    },
    'train': {
        '--config': {'default': None, 'help': 'YAML file with TrainConfig options'},
        '--utkface': {'default': '==SUPPRESS==', 'help': 'UTKFace folder'},
        '--fer2013': {'default': '==SUPPRESS==', 'help': 'FER2013 folder (train/, test/) or fer2013.csv'},
        '--fairface': {'default': '==SUPPRESS==', 'help': 'FairFace folder (fairface.zip + labels.csv)'},
        '--celeba-gender': {'default': '==SUPPRESS==', 'help': 'celeba_gender folder'},
        '--manifest': {'default': '==SUPPRESS==', 'help': 'CSV with path plus any of age, gender, emotion, ethnicity (and split) (repeatable)', 'action': 'append'},
        '--ferplus-weight': {'default': '==SUPPRESS==', 'help': 'weight of the FER+ vote distribution in the emotion target (0: folder labels only) (default: 0.0)', 'type': 'float'},
        '--no-face': {'default': '==SUPPRESS==', 'help': 'keep | skip: images in which the detector finds no face (default: keep)'},
        '--out': {'default': '==SUPPRESS==', 'help': 'run folder (checkpoints, metrics.csv, split.csv) (default: runs/facemtl)'},
        '--backbone': {'default': '==SUPPRESS==', 'help': 'backbone name (default: lite0)'},
        '--input-size': {'default': '==SUPPRESS==', 'help': "square input side in pixels (default: the backbone's own)", 'type': 'int'},
        '--pretrained': {'default': '==SUPPRESS==', 'help': ' (default: True)', 'flags': ['--pretrained', '--no-pretrained'], 'action': 'bool'},
        '--init-backbone': {'default': '==SUPPRESS==', 'help': 'a .pt state dict of backbone weights to start from (e.g. ImageNet weights copied from elsewhere)'},
        '--init-checkpoint': {'default': '==SUPPRESS==', 'help': 'fine-tune: start from every weight of this checkpoint (same backbone and tasks)'},
        '--shared-dim': {'default': '==SUPPRESS==', 'help': ' (default: 0)', 'type': 'int'},
        '--attention': {'default': '==SUPPRESS==', 'help': ' (default: False)', 'flags': ['--attention', '--no-attention'], 'action': 'bool'},
        '--epochs': {'default': '==SUPPRESS==', 'help': ' (default: 10)', 'type': 'int'},
        '--batch-size': {'default': '==SUPPRESS==', 'help': ' (default: 64)', 'type': 'int'},
        '--lr': {'default': '==SUPPRESS==', 'help': ' (default: 0.001)', 'type': 'float'},
        '--weight-decay': {'default': '==SUPPRESS==', 'help': ' (default: 0.0001)', 'type': 'float'},
        '--warmup-epochs': {'default': '==SUPPRESS==', 'help': ' (default: 0.3)', 'type': 'float'},
        '--freeze-epochs': {'default': '==SUPPRESS==', 'help': ' (default: 0)', 'type': 'int'},
        '--loss-weighting': {'default': '==SUPPRESS==', 'help': 'static | uncertainty (default: static)'},
        '--age-loss': {'default': '==SUPPRESS==', 'help': 'dldl | l1 | mse (default: dldl)'},
        '--label-smoothing': {'default': '==SUPPRESS==', 'help': ' (default: 0.05)', 'type': 'float'},
        '--patience': {'default': '==SUPPRESS==', 'help': ' (default: 15)', 'type': 'int'},
        '--val-fraction': {'default': '==SUPPRESS==', 'help': ' (default: 0.1)', 'type': 'float'},
        '--limit': {'default': '==SUPPRESS==', 'help': 'at most this many images per source', 'type': 'int'},
        '--epoch-size': {'default': '==SUPPRESS==', 'help': 'images drawn per epoch (default: every training image once)', 'type': 'int'},
        '--val-flip-tta': {'default': '==SUPPRESS==', 'help': 'validate with flip test-time augmentation, as `facemtl evaluate` does (default: True)', 'flags': ['--val-flip-tta', '--no-val-flip-tta'], 'action': 'bool'},
        '--balance': {'default': '==SUPPRESS==', 'help': 'bias mitigation: none | sample (group-balanced sampling) | reweight (loss reweighting) (default: none)'},
        '--balance-by': {'default': '==SUPPRESS==', 'help': "attributes whose groups are balanced, comma-separated: ethnicity, gender, age_band (default: ('ethnicity',)) (repeatable)", 'action': 'append'},
        '--balance-power': {'default': '==SUPPRESS==', 'help': 'weight = (1/group count)^power; 1 balances fully, 0.5 halfway (default: 1.0)', 'type': 'float'},
        '--balance-max-ratio': {'default': '==SUPPRESS==', 'help': 'cap on the largest/smallest group weight (default: 10.0)', 'type': 'float'},
        '--seed': {'default': '==SUPPRESS==', 'help': ' (default: 0)', 'type': 'int'},
        '--threads': {'default': '==SUPPRESS==', 'help': 'CPU threads for PyTorch (default: its own choice)', 'type': 'int'},
        '--channels-last': {'default': '==SUPPRESS==', 'help': ' (default: True)', 'flags': ['--channels-last', '--no-channels-last'], 'action': 'bool'},
        '--amp': {'default': '==SUPPRESS==', 'help': ' (default: True)', 'flags': ['--amp', '--no-amp'], 'action': 'bool'},
        '--time-budget-min': {'default': '==SUPPRESS==', 'help': 'stop after this many minutes (checkpoint kept)', 'type': 'float'},
        '--checkpoint-every-min': {'default': '==SUPPRESS==', 'help': ' (default: 10.0)', 'type': 'float'},
        '--ema-decay': {'default': '==SUPPRESS==', 'help': 'keep an exponential moving average of the weights with this decay per step (e.g. 0.999) and validate, select and save it instead of the raw weights; 0 = off (default: 0.0)', 'type': 'float'},
        '--resume': {'default': '==SUPPRESS==', 'help': 'continue from RUN_DIR/last.pt (default: False)', 'flags': ['--resume', '--no-resume'], 'action': 'bool'},
        '--overwrite': {'default': '==SUPPRESS==', 'help': ' (default: False)', 'flags': ['--overwrite', '--no-overwrite'], 'action': 'bool'},
        '--cache-dir': {'default': '==SUPPRESS==', 'help': 'where framed crops are cached (default: ~/.cache/facemtl or $FACEMTL_CACHE)'},
        '--workers': {'default': '==SUPPRESS==', 'help': ' (default: 2)', 'type': 'int'},
        '--device': {'default': '==SUPPRESS==', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: auto)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--tasks': {'default': '==SUPPRESS==', 'help': 'comma-separated tasks (default: all)'},
        '--sample-ratio': {'default': '==SUPPRESS==', 'help': 'mix of sources per epoch, e.g. utkface=1,fer2013=1 (default: proportional to size)'},
        '--no-progress': {'default': False, 'help': 'no progress bars (also with -q)', 'action': 'store_true'},
        '--nproc-per-node': {'default': None, 'help': 'train data-parallel on N processes of this machine: relaunches this command through torchrun (the same as `torchrun --standalone --nproc-per-node N -m facemtl train ...`); --batch-size is per process', 'type': 'positive_int', 'metavar': 'N'},
    },
    'evaluate': {
        '--model': {'default': '==SUPPRESS==', 'help': 'bundled name (default, default-pytorch), .onnx or .pt (default: the bundled model)'},
        '--utkface': {'default': '==SUPPRESS==', 'help': 'UTKFace folder'},
        '--fer2013': {'default': '==SUPPRESS==', 'help': 'FER2013 folder or fer2013.csv'},
        '--fairface': {'default': '==SUPPRESS==', 'help': 'FairFace folder (fairface.zip + labels.csv; age bins, 7 races mapped to 5)'},
        '--celeba-gender': {'default': '==SUPPRESS==', 'help': 'celeba_gender folder (celeba_gender.zip + labels.csv)'},
        '--manifest': {'default': '==SUPPRESS==', 'help': 'CSV manifest (path + labels) (repeatable)', 'action': 'append'},
        '--detector': {'default': '==SUPPRESS==', 'help': 'none (default): dataset crops, framed as in training; a detector name (retinaface, haar, blazeface): the photo path of `facemtl predict`, largest face per image'},
        '--cache-dir': {'default': '==SUPPRESS==', 'help': 'where framed crops are cached (default: ~/.cache/facemtl or $FACEMTL_CACHE)'},
        '--limit': {'default': '==SUPPRESS==', 'help': "at most this many images per source (with --split val: taken from the checkpoint's own validation split)", 'type': 'int'},
        '--batch-size': {'default': '==SUPPRESS==', 'help': ' (default: 128)', 'type': 'int'},
        '--seed': {'default': '==SUPPRESS==', 'help': "seed of the held-out split (default: the checkpoint's split seed: its split_seed, else its seed)", 'type': 'int'},
        '--val-fraction': {'default': '==SUPPRESS==', 'help': "held-out share per source (default: the checkpoint's training value)", 'type': 'float'},
        '--bootstrap': {'default': '==SUPPRESS==', 'help': 'bootstrap resamples for the fairness confidence intervals (0: none) (default: 200)', 'type': 'int'},
        '--threads': {'default': '==SUPPRESS==', 'help': "CPU threads of the model's backend (default: its own choice)", 'type': 'int'},
        '--flip-tta': {'default': '==SUPPRESS==', 'help': ' (default: True)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--keep-samples': {'default': '==SUPPRESS==', 'help': 'keep each image\'s key, source, true and predicted labels and probabilities in the report (the --json file\'s "samples"): what scripts/paired_compare.py pairs two models\' reports by (default: False)', 'flags': ['--keep-samples', '--no-keep-samples'], 'action': 'bool'},
        '--age-interval': {'default': '==SUPPRESS==', 'help': 'level of the age intervals whose coverage is measured, in (0, 1) (default: 0.9)', 'type': 'float'},
        '--split-manifest': {'default': '==SUPPRESS==', 'help': "the split.csv a training run wrote (default: the one beside --model, when its SHA-256 is the checkpoint's; else the split is re-created from the seed)"},
        '--device': {'default': '==SUPPRESS==', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--split': {'default': '==SUPPRESS==', 'help': "val: the checkpoint's seeded validation split and FER2013 PublicTest; all: every labelled image given (a separate test set) (default: val)", 'choices': ['val', 'test', 'train', 'all']},
        '--by': {'default': '==SUPPRESS==', 'help': 'comma-separated group attributes of the fairness tables, each alone and crossed: any of ethnicity, gender, age_band (default: all three)', 'dest': 'group_keys', 'action': 'append', 'metavar': 'ATTRS'},
        '--min-count': {'default': '==SUPPRESS==', 'help': 'groups with fewer labelled images are shown as too few and left out of worst/best/gap (default: 30)', 'flags': ['--min-count', '--fairness-min-count'], 'dest': 'fairness_min_count', 'type': 'int', 'metavar': 'N'},
        '--json': {'default': None, 'help': 'also write the full report as JSON to this file', 'metavar': 'OUT'},
        '--report': {'default': None, 'help': 'also write an HTML report (index.html with charts, tables and a prediction gallery) plus report.json and CSVs into this folder', 'metavar': 'DIR'},
    },
    'calibrate': {
        '--model': {'default': '==SUPPRESS==', 'help': 'bundled name (default, default-pytorch), .onnx or .pt (default: the bundled model)'},
        '--utkface': {'default': '==SUPPRESS==', 'help': 'UTKFace folder'},
        '--fer2013': {'default': '==SUPPRESS==', 'help': 'FER2013 folder or fer2013.csv'},
        '--fairface': {'default': '==SUPPRESS==', 'help': 'FairFace folder (fairface.zip + labels.csv; age bins, 7 races mapped to 5)'},
        '--celeba-gender': {'default': '==SUPPRESS==', 'help': 'celeba_gender folder (celeba_gender.zip + labels.csv)'},
        '--manifest': {'default': '==SUPPRESS==', 'help': 'CSV manifest (path + labels) (repeatable)', 'action': 'append'},
        '--cache-dir': {'default': '==SUPPRESS==', 'help': 'where framed crops are cached (default: ~/.cache/facemtl or $FACEMTL_CACHE)'},
        '--limit': {'default': '==SUPPRESS==', 'help': "at most this many images per source (with --split val: taken from the checkpoint's own validation split)", 'type': 'int'},
        '--batch-size': {'default': '==SUPPRESS==', 'help': ' (default: 128)', 'type': 'int'},
        '--seed': {'default': '==SUPPRESS==', 'help': "seed of the held-out split (default: the checkpoint's split seed: its split_seed, else its seed)", 'type': 'int'},
        '--val-fraction': {'default': '==SUPPRESS==', 'help': "held-out share per source (default: the checkpoint's training value)", 'type': 'float'},
        '--threads': {'default': '==SUPPRESS==', 'help': "CPU threads of the model's backend (default: its own choice)", 'type': 'int'},
        '--flip-tta': {'default': '==SUPPRESS==', 'help': ' (default: True)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--split-manifest': {'default': '==SUPPRESS==', 'help': "the split.csv a training run wrote (default: the one beside --model, when its SHA-256 is the checkpoint's; else the split is re-created from the seed)"},
        '--device': {'default': '==SUPPRESS==', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--split': {'default': '==SUPPRESS==', 'help': "val: the checkpoint's seeded validation split and FER2013 PublicTest; all: every labelled image given (a separate test set) (default: val)", 'choices': ['val', 'test', 'train', 'all']},
        '--by': {'default': '==SUPPRESS==', 'help': 'comma-separated group attributes of the fairness tables, each alone and crossed: any of ethnicity, gender, age_band (default: all three)', 'dest': 'group_keys', 'action': 'append', 'metavar': 'ATTRS'},
        '--min-count': {'default': '==SUPPRESS==', 'help': 'groups with fewer labelled images are shown as too few and left out of worst/best/gap (default: 30)', 'flags': ['--min-count', '--fairness-min-count'], 'dest': 'fairness_min_count', 'type': 'int', 'metavar': 'N'},
        '--out': {'default': None, 'help': 'the calibrated model file (same format as --model)', 'required': True},
        '--min-group': {'default': 100, 'help': "an age group with fewer calibration faces borrows its neighbours' (default: 100)", 'type': 'int'},
    },
    'audit': {
        '--model': {'default': '==SUPPRESS==', 'help': 'bundled name (default, default-pytorch), .onnx or .pt (default: the bundled model)'},
        '--utkface': {'default': '==SUPPRESS==', 'help': 'UTKFace folder'},
        '--fer2013': {'default': '==SUPPRESS==', 'help': 'FER2013 folder or fer2013.csv'},
        '--fairface': {'default': '==SUPPRESS==', 'help': 'FairFace folder (fairface.zip + labels.csv; age bins, 7 races mapped to 5)'},
        '--celeba-gender': {'default': '==SUPPRESS==', 'help': 'celeba_gender folder (celeba_gender.zip + labels.csv)'},
        '--manifest': {'default': '==SUPPRESS==', 'help': 'CSV manifest (path + labels) (repeatable)', 'action': 'append'},
        '--detector': {'default': '==SUPPRESS==', 'help': 'none (default): dataset crops, framed as in training; a detector name (retinaface, haar, blazeface): the photo path of `facemtl predict`, largest face per image'},
        '--cache-dir': {'default': '==SUPPRESS==', 'help': 'where framed crops are cached (default: ~/.cache/facemtl or $FACEMTL_CACHE)'},
        '--limit': {'default': '==SUPPRESS==', 'help': "at most this many images per source (with --split val: taken from the checkpoint's own validation split)", 'type': 'int'},
        '--batch-size': {'default': '==SUPPRESS==', 'help': ' (default: 128)', 'type': 'int'},
        '--seed': {'default': '==SUPPRESS==', 'help': "seed of the held-out split (default: the checkpoint's split seed: its split_seed, else its seed)", 'type': 'int'},
        '--val-fraction': {'default': '==SUPPRESS==', 'help': "held-out share per source (default: the checkpoint's training value)", 'type': 'float'},
        '--bootstrap': {'default': '==SUPPRESS==', 'help': 'bootstrap resamples for the fairness confidence intervals (0: none) (default: 200)', 'type': 'int'},
        '--threads': {'default': '==SUPPRESS==', 'help': "CPU threads of the model's backend (default: its own choice)", 'type': 'int'},
        '--flip-tta': {'default': '==SUPPRESS==', 'help': ' (default: True)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--age-interval': {'default': '==SUPPRESS==', 'help': 'level of the age intervals whose coverage is measured, in (0, 1) (default: 0.9)', 'type': 'float'},
        '--split-manifest': {'default': '==SUPPRESS==', 'help': "the split.csv a training run wrote (default: the one beside --model, when its SHA-256 is the checkpoint's; else the split is re-created from the seed)"},
        '--device': {'default': '==SUPPRESS==', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--split': {'default': '==SUPPRESS==', 'help': "val: the checkpoint's seeded validation split and FER2013 PublicTest; all: every labelled image given (a separate test set) (default: val)", 'choices': ['val', 'test', 'train', 'all']},
        '--by': {'default': '==SUPPRESS==', 'help': 'comma-separated group attributes of the fairness tables, each alone and crossed: any of ethnicity, gender, age_band (default: all three)', 'dest': 'group_keys', 'action': 'append', 'metavar': 'ATTRS'},
        '--min-count': {'default': '==SUPPRESS==', 'help': 'groups with fewer labelled images are shown as too few and left out of worst/best/gap (default: 30)', 'flags': ['--min-count', '--fairness-min-count'], 'dest': 'fairness_min_count', 'type': 'int', 'metavar': 'N'},
        '--out': {'default': None, 'help': 'also write fairness.csv, fairness.json (with the calibration measurements of a calibrated model) and audit.html (a self-contained page) into this folder', 'metavar': 'DIR'},
        '--json': {'default': None, 'help': 'also write the audit as JSON (as fairness.json) to this file', 'metavar': 'FILE'},
    },
    'explain': {
        '<image>': {'default': None, 'help': 'the photo whose face is explained', 'metavar': 'IMAGE', 'required': True},
        '--model': {'default': None, 'help': 'a bundled model name (default, default-pytorch), an .onnx file (ONNX Runtime) or a .pt checkpoint (needs PyTorch) (default: the bundled model, ONNX Runtime)'},
        '--detector': {'default': 'retinaface', 'help': "face detector (default: retinaface; 'none' = each image is already a face crop)", 'choices': ['blazeface', 'haar', 'none', 'retinaface']},
        '--tasks': {'default': None, 'help': 'comma-separated subset of tasks to run (default: all)'},
        '--device': {'default': 'cpu', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--threads': {'default': None, 'help': 'CPU threads for the model', 'type': 'int'},
        '--min-face': {'default': 0, 'help': 'ignore faces smaller than this many pixels', 'type': 'int'},
        '--max-faces': {'default': None, 'help': 'keep at most this many faces per image', 'type': 'int'},
        '--largest-only': {'default': False, 'help': 'keep only the largest face', 'action': 'store_true'},
        '--batch-size': {'default': 32, 'help': 'faces per forward pass', 'type': 'int'},
        '--min-score': {'default': None, 'help': 'detector confidence threshold', 'type': 'float'},
        '--max-pixels': {'default': 80000000, 'help': 'refuse images with more pixels than this (default: 80000000)', 'type': 'int'},
        '--flip-tta': {'default': True, 'help': 'average each face with its mirror image (default: on)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--age-interval': {'default': 0.9, 'help': 'level of the age interval (age_low, age_high), in (0, 1) (default: 0.9)', 'type': 'float', 'metavar': 'LEVEL'},
        '--min-quality': {'default': 'low', 'help': 'low: keep every face, doubtful ones flagged quality=low with reasons; ok: drop them (default: low)', 'choices': ['low', 'ok']},
        '--face': {'default': 0, 'help': 'which face, in the order `facemtl predict` lists them (default: 0)', 'type': 'int', 'metavar': 'N'},
        '--target': {'default': [], 'help': 'explain this class instead of the predicted one, e.g. emotion=sad (repeatable)', 'action': 'append', 'metavar': 'TASK=LABEL'},
        '--out': {'default': None, 'help': 'where to write the panel image', 'metavar': 'PNG', 'required': True},
        '--tile': {'default': 224, 'help': 'side of each image in the panel, pixels (default: 224)', 'type': 'int'},
    },
    'export': {
        '--model': {'default': None, 'help': 'checkpoint (default: the model shipped with facemtl)'},
        '--format': {'default': 'onnx', 'help': 'output format (default: onnx)', 'choices': ['onnx']},
        '--quantize': {'default': None, 'help': 'also quantize; the output is then the int8 file', 'choices': ['int8']},
        '--method': {'default': 'static', 'help': 'int8 method: static (calibrated, fast; needs --calibration) or dynamic (no calibration, slow on convolutions) (default: static)', 'choices': ['static', 'dynamic']},
        '--calibration': {'default': None, 'help': 'face crops for static int8 calibration, e.g. a UTKFace folder (repeatable)', 'action': 'append', 'metavar': 'DIR_OR_IMAGE'},
        '--calibration-size': {'default': 256, 'help': 'calibration images used (default: 256)', 'type': 'int'},
        '--out': {'default': None, 'help': 'output file (default: <checkpoint stem>.onnx, or .int8.onnx, in this folder)'},
        '--opset': {'default': 17, 'help': 'ONNX opset (default: 17)', 'type': 'int'},
        '--fixed-batch': {'default': False, 'help': 'batch size 1 only (default: dynamic batch axis)', 'action': 'store_true'},
    },
    'serve': {
        '--model': {'default': None, 'help': 'a bundled model name (default, default-pytorch), an .onnx file (ONNX Runtime) or a .pt checkpoint (needs PyTorch) (default: the bundled model, ONNX Runtime)'},
        '--detector': {'default': 'retinaface', 'help': "face detector (default: retinaface; 'none' = each image is already a face crop)", 'choices': ['blazeface', 'haar', 'none', 'retinaface']},
        '--tasks': {'default': None, 'help': 'comma-separated subset of tasks to run (default: all)'},
        '--device': {'default': 'cpu', 'help': 'where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N (default: cpu)', 'type': 'device_arg', 'metavar': 'auto|cpu|cuda[:N]'},
        '--threads': {'default': None, 'help': 'CPU threads for the model', 'type': 'int'},
        '--min-face': {'default': 0, 'help': 'ignore faces smaller than this many pixels', 'type': 'int'},
        '--max-faces': {'default': None, 'help': 'keep at most this many faces per image', 'type': 'int'},
        '--largest-only': {'default': False, 'help': 'keep only the largest face', 'action': 'store_true'},
        '--batch-size': {'default': 32, 'help': 'faces per forward pass', 'type': 'int'},
        '--min-score': {'default': None, 'help': 'detector confidence threshold', 'type': 'float'},
        '--max-pixels': {'default': 40000000, 'help': 'refuse images with more pixels than this (default: 40000000)', 'type': 'int'},
        '--flip-tta': {'default': True, 'help': 'average each face with its mirror image (default: on)', 'flags': ['--flip-tta', '--no-flip-tta'], 'action': 'bool'},
        '--age-interval': {'default': 0.9, 'help': 'level of the age interval (age_low, age_high), in (0, 1) (default: 0.9)', 'type': 'float', 'metavar': 'LEVEL'},
        '--min-quality': {'default': 'low', 'help': 'low: keep every face, doubtful ones flagged quality=low with reasons; ok: drop them (default: low)', 'choices': ['low', 'ok']},
        '--host': {'default': '127.0.0.1', 'help': 'address to bind (default: 127.0.0.1; 0.0.0.0 exposes the service to the network)'},
        '--port': {'default': 8000, 'help': 'port (default: 8000)', 'type': 'int'},
        '--max-upload-mb': {'default': 20, 'help': 'largest image upload in MB (default: 20)', 'type': 'float'},
        '--max-batch': {'default': 16, 'help': 'most images per /predict/batch request (default: 16)', 'type': 'int'},
        '--max-concurrency': {'default': 4, 'help': 'requests in work at once (once their body is read); more get 503 (default: 4)', 'type': 'int'},
        '--body-timeout': {'default': 10, 'help': 'seconds to receive a request body; slower ones get 408 (default: 10)', 'type': 'float'},
        '--max-batch-mb': {'default': 64, 'help': 'largest /predict/batch body in MB, all images together (default: 64)', 'type': 'float'},
        '--max-pixels-in-flight': {'default': None, 'help': 'most decoded pixels held at once, all requests together; more get 503 (default: --max-pixels x --max-concurrency)', 'type': 'int'},
        '--allowed-hosts': {'default': None, 'help': "Host header names served, others get 400; '*' for any (default: localhost, 127.0.0.1, ::1 and --host; '*' with a warning when bound to 0.0.0.0)", 'metavar': 'NAME[,NAME...]'},
    },
}

# vars() of `facemtl COMMAND <required arguments>` before the change (what code reading the namespace sees)
NAMESPACE = {
    'predict': {'age_interval': 0.9, 'batch_size': 32, 'csv': None, 'detector': 'retinaface', 'device': 'cpu', 'flip_tta': True, 'inputs': [], 'json': False, 'largest_only': False, 'max_faces': None, 'max_pixels': 80000000, 'min_face': 0, 'min_quality': 'low', 'min_score': None, 'model': None, 'overwrite': False, 'recursive': False, 'save_dir': None, 'tasks': None, 'threads': None, 'video_out': None, 'webcam': None},
    'batch': {'age_interval': 0.9, 'batch_size': 32, 'detector': 'retinaface', 'device': 'cpu', 'engine': 'local', 'flip_tta': True, 'inputs': ['x'], 'largest_only': False, 'max_faces': None, 'max_pixels': 80000000, 'min_face': 0, 'min_quality': 'low', 'min_score': None, 'model': None, 'no_progress': False, 'no_retry_failed': False, 'out': 'o.csv', 'overwrite': False, 'ray_address': None, 'ray_batch_size': None, 'ray_concurrency': None, 'ray_cpus': None, 'recursive': False, 'tasks': None, 'threads': None},
    'train': {'config': None, 'no_progress': False, 'nproc_per_node': None},
    'evaluate': {'json': None, 'report': None},
    'calibrate': {'min_group': 100, 'out': 'c.json'},
    'audit': {'json': None, 'out': None},
    'explain': {'age_interval': 0.9, 'batch_size': 32, 'detector': 'retinaface', 'device': 'cpu', 'face': 0, 'flip_tta': True, 'image': 'img', 'largest_only': False, 'max_faces': None, 'max_pixels': 80000000, 'min_face': 0, 'min_quality': 'low', 'min_score': None, 'model': None, 'out': 'o.png', 'target': [], 'tasks': None, 'threads': None, 'tile': 224},
    'export': {'calibration': None, 'calibration_size': 256, 'fixed_batch': False, 'format': 'onnx', 'method': 'static', 'model': None, 'opset': 17, 'out': None, 'quantize': None},
    'serve': {'age_interval': 0.9, 'allowed_hosts': None, 'batch_size': 32, 'body_timeout': 10, 'detector': 'retinaface', 'device': 'cpu', 'flip_tta': True, 'host': '127.0.0.1', 'largest_only': False, 'max_batch': 16, 'max_batch_mb': 64, 'max_concurrency': 4, 'max_faces': None, 'max_pixels': 40000000, 'max_pixels_in_flight': None, 'max_upload_mb': 20, 'min_face': 0, 'min_quality': 'low', 'min_score': None, 'model': None, 'port': 8000, 'tasks': None, 'threads': None},
}

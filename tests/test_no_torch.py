"""The core install answers without PyTorch: predict / batch / video in a subprocess that cannot import torch give
the same answers as the PyTorch backend.

Tolerances (stated, and measured on the wild photos):
* the same weights in fp32 ONNX vs PyTorch: values and probabilities within 1e-3 (measured ~2e-5);
* the shipped default (static int8) vs its PyTorch checkpoint: the same boxes, ages 0.6 years apart on average
  (allowed 1.5), class probabilities within 0.15 of each other on 95% of faces x tasks (measured p95 0.06,
  max 0.15), labels agreeing on >= 90% (measured 97.9%).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import WILD, draw_face, needs_data
from PIL import Image

from facemtl.cli.__main__ import main

BLOCK = textwrap.dedent("""
    import sys

    class _NoTorch:
        def find_spec(self, name, *args, **kwargs):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ImportError(f"No module named {name!r} (blocked: this process has no PyTorch)")

    sys.meta_path.insert(0, _NoTorch())
""")


def run_without_torch(*argv: str, code: str | None = None) -> subprocess.CompletedProcess:
    """``facemtl ARGV`` (or ``code``) in a fresh interpreter in which ``import torch`` fails."""
    body = code or "from facemtl.cli.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", BLOCK + body, *argv], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    """The default model's weights exported to fp32 ONNX (needs torch + onnx: the dev install has both)."""
    from facemtl.export import export_onnx

    return export_onnx(None, tmp_path_factory.mktemp("fp32") / "default_fp32.onnx")


@pytest.fixture
def crops_dir(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, size in enumerate((96, 128, 160)):
        Image.fromarray(draw_face(size, seed=i)).save(folder / f"face{i}.png")
    return folder


def test_import_and_help_never_import_torch():
    code = textwrap.dedent("""
        import facemtl, facemtl.cli.__main__, facemtl.models, facemtl.export, facemtl.video, facemtl.weights
        from facemtl import FaceAnalyzer
        from facemtl.models import load_model, OnnxModel
        assert "torch" not in sys.modules
        print("ok")
    """)
    res = run_without_torch(code=code)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    res = run_without_torch("--help")
    assert res.returncode == 0 and "predict" in res.stdout and "Traceback" not in res.stderr


def _faces(doc: dict) -> list[dict]:
    return doc["faces"]


def _assert_close(a: list[dict], b: list[dict], atol: float) -> None:
    assert len(a) == len(b) and len(a) > 0
    for fa, fb in zip(a, b):
        assert fa["box"] == fb["box"]
        for task in ("age", "gender", "emotion", "ethnicity"):
            assert fa[task]["value"] == pytest.approx(fb[task]["value"], abs=atol * (100 if task == "age" else 1))
            assert np.allclose(list(fa[task]["probs"].values()), list(fb[task]["probs"].values()), atol=atol)


@needs_data
def test_predict_without_torch_matches_the_pytorch_backend(fp32_onnx, capsys):
    photo = str(WILD / "facerec_obama_and_biden.jpg")
    assert main(["predict", photo, "--json", "--model", "default-pytorch"]) == 0
    ref = _faces(json.loads(capsys.readouterr().out))
    same = run_without_torch("predict", photo, "--json", "--model", str(fp32_onnx))
    assert same.returncode == 0, same.stderr
    _assert_close(_faces(json.loads(same.stdout)), ref, atol=1e-3)  # same weights: 1e-3 (measured ~2e-5)

    default = run_without_torch("predict", photo, "--json")  # the shipped int8 model, the default path
    assert default.returncode == 0, default.stderr
    got = _faces(json.loads(default.stdout))
    assert [f["box"] for f in got] == [f["box"] for f in ref]
    assert np.mean([abs(a["age"]["value"] - b["age"]["value"]) for a, b in zip(got, ref)]) <= 1.5
    labels = [a[t]["label"] == b[t]["label"] for a, b in zip(got, ref) for t in ("gender", "emotion", "ethnicity")]
    assert np.mean(labels) >= 0.75  # 3 faces x 3 tasks here; on all 78 wild faces 97.9% agree


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_batch_without_torch_matches_the_pytorch_backend(fp32_onnx, crops_dir, tmp_path):
    ref_csv, got_csv = tmp_path / "ref.csv", tmp_path / "got.csv"
    assert main(["-q", "batch", str(crops_dir), "--detector", "none", "--model", "default-pytorch",
                 "--out", str(ref_csv)]) == 0
    res = run_without_torch("-q", "batch", str(crops_dir), "--detector", "none", "--model", str(fp32_onnx),
                            "--out", str(got_csv))
    assert res.returncode == 0, res.stderr
    ref, got = _read_csv(ref_csv), _read_csv(got_csv)
    assert [r["file"] for r in got] == [r["file"] for r in ref] and len(got) == 3
    numeric = [k for k in ref[0] if k.endswith(("_prob", "age")) or k.startswith("p_")]
    assert "age" in numeric
    for a, b in zip(got, ref):
        for k in numeric:
            if a[k] and b[k]:
                assert float(a[k]) == pytest.approx(float(b[k]), abs=1e-2 if k == "age" else 1e-3), k
        assert {k: v for k, v in a.items() if k.endswith("label") or k in ("gender", "emotion", "ethnicity")} == \
            {k: v for k, v in b.items() if k.endswith("label") or k in ("gender", "emotion", "ethnicity")}


def test_video_without_torch_matches_the_pytorch_backend(fp32_onnx, tmp_path):
    pytest.importorskip("av")
    from test_video import probe, read_csv, two_face_frames, write_h264

    video = write_h264(tmp_path / "clip.mp4", two_face_frames(10))
    assert main(["-q", "predict", str(video), "--detector", "none", "--model", "default-pytorch",
                 "--csv", str(tmp_path / "ref.csv")]) == 0
    res = run_without_torch("-q", "predict", str(video), "--detector", "none", "--model", str(fp32_onnx),
                            "--save-dir", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "10 of 10 frame(s) analysed" in res.stdout
    (_, ref), (_, got) = read_csv(tmp_path / "ref.csv"), read_csv(tmp_path / "out" / "clip_frames.csv")
    assert len(got) == len(ref) == 10
    for a, b in zip(got, ref):
        assert (a["frame"], a["track_id"], a["gender"], a["emotion"], a["ethnicity"]) == \
            (b["frame"], b["track_id"], b["gender"], b["emotion"], b["ethnicity"])
        assert float(a["age"]) == pytest.approx(float(b["age"]), abs=1e-2)
        assert float(a["age_low"]) <= float(a["age"]) <= float(a["age_high"])  # smoothed intervals in video rows
        assert float(a["age_low"]) == pytest.approx(float(b["age_low"]), abs=1e-2)
        assert float(a["emotion_prob"]) == pytest.approx(float(b["emotion_prob"]), abs=1e-3)
    info = probe(tmp_path / "out" / "clip_annotated.mp4")
    assert info["codec"] == "h264" and info["decoded"] == 10


def test_core_install_video_writes_the_csv_and_says_how_to_get_the_drawn_video(tmp_path):
    """The core install has neither torch nor PyAV: --save-dir still gives the per-frame CSV, and one note names
    the extra for the annotated H.264 video; asking for it explicitly is one error naming the extra."""
    pytest.importorskip("av")
    from test_video import two_face_frames, write_h264

    video = write_h264(tmp_path / "clip.mp4", two_face_frames(6))
    no_av = BLOCK.replace('("torch", "torchvision")', '("torch", "torchvision", "av")')
    code = no_av + "from facemtl.cli.__main__ import main\nsys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "predict", str(video), "--detector", "none", "--save-dir",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'pip install "facemtl[video]"' in res.stderr and "Traceback" not in res.stderr
    assert (tmp_path / "out" / "clip_frames.csv").is_file() and not (tmp_path / "out" / "clip_annotated.mp4").exists()
    res = subprocess.run([sys.executable, "-c", code, "predict", str(video), "--detector", "none", "--video-out",
                          str(tmp_path / "v.mp4")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and 'pip install "facemtl[video]"' in res.stderr and "Traceback" not in res.stderr


def test_a_pytorch_checkpoint_without_torch_names_the_extra(tmp_path, crops_dir):
    res = run_without_torch("predict", str(crops_dir / "face0.png"), "--model", "default-pytorch")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert 'pip install "facemtl[torch]"' in res.stderr and "PyTorch checkpoint" in res.stderr
    for command, extra in ((["explain", str(crops_dir / "face0.png"), "--out", str(tmp_path / "c.png")], "explain"),
                           (["export", "--out", str(tmp_path / "m.onnx")], "export"),
                           (["train", "--backbone", "tiny", "--out", str(tmp_path / "run")], "train")):
        res = run_without_torch(*command)
        assert res.returncode == 1 and f'facemtl[{extra}]' in res.stderr and "Traceback" not in res.stderr, \
            (command, res.stderr)


def test_bad_onnx_files_are_one_clear_error(tmp_path, crops_dir):
    from facemtl.detect import retinaface

    img = str(crops_dir / "face0.png")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    foreign = Path(retinaface.__file__).parent / "weights" / "retinaface_mnet025.onnx"  # an ONNX file, not ours
    truncated = tmp_path / "truncated.onnx"
    from facemtl.weights import get_weights

    truncated.write_bytes(get_weights().path().read_bytes()[:100_000])
    cases = {tmp_path / "missing.onnx": "model file not found", corrupt: "cannot load ONNX model",
             truncated: "cannot load ONNX model", foreign: "is not a facemtl ONNX model",
             tmp_path / "weights.bin": "cannot tell the format"}
    (tmp_path / "weights.bin").write_bytes(b"x")
    for path, message in cases.items():
        res = run_without_torch("predict", img, "--model", str(path))
        assert res.returncode == 1 and message in res.stderr and "Traceback" not in res.stderr, (path, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run_without_torch("predict", img, "--model", "defualt")
    assert res.returncode == 1 and "unknown bundled model 'defualt'" in res.stderr and "default-pytorch" in res.stderr

"""The command line, in-process: predict, batch (errors, resume), train (resume, overwrite guard), evaluate."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import WILD, FakeDetector, draw_face, needs_data

from facemtl.cli.__main__ import main


@pytest.fixture
def tiny_analyzer(monkeypatch, tiny_model):
    """predict and batch run the tiny model with a fake one-face detector: no weights to load, milliseconds."""
    from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
    from facemtl.cli import batch, predict
    from facemtl.detect.base import Detection
    from facemtl.results import Box

    def build(args, keep_image=False):
        det = FakeDetector([Detection(Box(8.0, 4.0, 56.0, 60.0), 0.9, None)])
        return FaceAnalyzer(tiny_model, det, 64, options=AnalyzerOptions(keep_image=keep_image))

    for mod in (predict, batch):
        monkeypatch.setattr(mod, "build_analyzer", build)


def _write_faces(root: Path, names: list[str]) -> list[Path]:
    from PIL import Image

    paths = []
    for i, name in enumerate(names):
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_face(64, seed=i)).save(p)
        paths.append(p)
    return paths


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_missing_input_names_the_file(capsys, tmp_path):
    missing = tmp_path / "nope.jpg"
    assert main(["predict", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


def test_empty_folder_is_an_error(capsys, tmp_path):
    assert main(["predict", str(tmp_path)]) == 1
    assert "no images in folder" in capsys.readouterr().err


def test_version_prints_the_version_without_loading_a_model(capsys, monkeypatch):
    import facemtl
    from facemtl.analyzer import FaceAnalyzer

    def no_model(*a, **k):
        raise AssertionError("--version loaded a model")

    monkeypatch.setattr(FaceAnalyzer, "from_checkpoint", no_model)
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"facemtl {facemtl.__version__}\n"


def test_folder_of_class_subfolders_suggests_recursive(capsys, tmp_path, tiny_analyzer):
    test = tmp_path / "fer2013" / "test"  # the FER2013 layout: one sub-folder per class, no image at the top
    _write_faces(test, ["angry/a.png", "angry/b.png", "happy/c.jpg"])
    (test / "README.txt").write_text("not an image")
    for cmd in (["predict", str(test)], ["batch", str(test), "--out", str(tmp_path / "r.csv"), "--no-progress"]):
        assert main(cmd) == 1
        err = capsys.readouterr().err
        assert "its 2 sub-folder(s) hold 3 image(s) (angry/ 2, happy/ 1); pass --recursive" in err, err
    assert main(["predict", str(test), "--recursive", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_save_paths_mirror_sub_folders_and_never_share_an_output(tmp_path):
    from facemtl.cli.predict import save_paths

    out = tmp_path / "out"
    assert save_paths([str(tmp_path / "in" / "x.png")], out) == {str(tmp_path / "in" / "x.png"): out / "x.jpg"}
    files = [str(tmp_path / "in" / n) for n in ("a/x.png", "b/x.png", "b/x.jpg", "b/y.jpg", "b/x_png.png")]
    files.append(files[3])  # the same file twice: the same output
    got = save_paths(files, out)
    assert {k: v.relative_to(out).as_posix() for k, v in got.items()} == {
        files[0]: "a/x.jpg", files[1]: "b/x_png.jpg", files[2]: "b/x_jpg.jpg", files[3]: "b/y.jpg",
        files[4]: "b/x_png_2.jpg"}


def test_predict_save_dir_keeps_equal_names_apart_and_never_overwrites(capsys, tmp_path, tiny_analyzer):
    a, b, c = _write_faces(tmp_path / "in", ["a/face.png", "b/face.png", "b/face.jpg"])
    save = tmp_path / "out"
    assert main(["predict", str(a), str(b), str(c), "--save-dir", str(save)]) == 0
    outs = sorted(p.relative_to(save).as_posix() for p in save.rglob("*.jpg"))
    assert outs == ["a/face.jpg", "b/face_jpg.jpg", "b/face_png.jpg"]  # before: one face.jpg, written 3 times
    assert "3 drawn image(s) written" in capsys.readouterr().out
    before = {p: p.read_bytes() for p in save.rglob("*.jpg")}
    (save / "a" / "face.jpg").write_bytes(b"keep me")
    # A second run leaves every existing file alone: one recorded error per file, results still printed.
    assert main(["predict", str(tmp_path / "in"), "--recursive", "--save-dir", str(save)]) == 1
    cap = capsys.readouterr()
    assert cap.out.count("1 face(s)") == 3 and "0 drawn image(s) written" in cap.out
    assert cap.err.count("already exists; not overwritten (pass --overwrite to replace it)") == 3
    assert f"{a}: error: {save / 'a' / 'face.jpg'} already exists" in cap.err
    assert (save / "a" / "face.jpg").read_bytes() == b"keep me"
    assert main(["predict", str(tmp_path / "in"), "--recursive", "--save-dir", str(save), "--overwrite"]) == 0
    assert {p: p.read_bytes() for p in save.rglob("*.jpg")} == before


def test_quiet_leaves_only_results_and_errors(capsys, tmp_path, tiny_analyzer):
    (img,) = _write_faces(tmp_path, ["face.png"])
    out = tmp_path / "r.csv"
    assert main(["batch", str(img), "--out", str(out)]) == 0
    assert "1 image(s), 1 face(s), 0 failed" in capsys.readouterr().err
    for flag in ("-q", "--quiet"):
        assert main([flag, "batch", str(img), "--out", str(out), "--overwrite"]) == 0  # progress bar and summary
        assert capsys.readouterr().err == ""
        assert len(out.read_text().splitlines()) == 2  # header + the face: the results are all there
    assert main(["-q", "predict", str(img), "--save-dir", str(tmp_path / "drawn")]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith(f"{img}: 1 face(s)") and "written" not in cap.out and cap.err == ""
    assert main(["-q", "predict", str(tmp_path / "nope.png")]) == 1  # errors still show
    assert "nope.png" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["-q", "-v", "predict", str(img)])
    assert exc.value.code == 2


@needs_data
def test_predict_json_and_save_dir(capsys, tmp_path):
    img = WILD / "facerec_obama_and_biden.jpg"
    assert main(["predict", str(img), str(WILD / "dlib_dogs.jpg"), "--json", "--save-dir", str(tmp_path)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["source"] for d in lines] == [str(img), str(WILD / "dlib_dogs.jpg")]
    assert lines[0]["schema_version"] == 1 and len(lines[0]["faces"]) >= 2
    assert lines[1]["faces"] == []
    face = lines[0]["faces"][0]
    assert set(face) >= {"box", "score", "age", "gender", "emotion", "ethnicity"}
    assert abs(sum(face["emotion"]["probs"].values()) - 1) < 1e-3
    assert (tmp_path / "facerec_obama_and_biden.jpg").is_file()


@needs_data
def test_batch_csv_records_errors_and_resumes(capsys, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(WILD / "facerec_two_people.jpg", src / "two people.jpg")  # a space in the name
    shutil.copy(WILD / "dlib_dogs.jpg", src / "dogs.jpg")
    (src / "empty.jpg").write_bytes(b"")
    (src / "truncated.jpg").write_bytes((WILD / "facerec_two_people.jpg").read_bytes()[:2000])
    out = tmp_path / "res.csv"
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 3  # some files failed
    rows = list(csv.DictReader(open(out, newline="")))
    cols = rows[0].keys()
    for c in ("file", "age", "gender", "emotion", "ethnicity", "gender_prob", "emotion_prob", "ethnicity_prob",
              "emotion.happy", "error"):
        assert c in cols
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(Path(r["file"]).name, []).append(r)
    assert len(by_file["two people.jpg"]) >= 2 and all(r["gender"] in ("male", "female")
                                                       for r in by_file["two people.jpg"])
    assert by_file["dogs.jpg"][0]["n_faces"] == "0" and by_file["dogs.jpg"][0]["age"] == ""
    assert "empty" in by_file["empty.jpg"][0]["error"]
    assert by_file["truncated.jpg"][0]["error"]
    # Resume: a second run adds nothing for files already done; a new file is added.
    shutil.copy(WILD / "facerec_two_people.jpg", src / "new.jpg")
    assert main(["batch", str(src), "--out", str(out), "--no-progress", "--no-retry-failed"]) == 3
    rows2 = list(csv.DictReader(open(out, newline="")))
    assert rows2[:len(rows)] == rows
    assert {Path(r["file"]).name for r in rows2[len(rows):]} == {"new.jpg"}
    # By default a resume retries the files that failed (their error rows are replaced, never duplicated).
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 3
    rows3 = list(csv.DictReader(open(out, newline="")))
    names = [Path(r["file"]).name for r in rows3]
    assert names.count("empty.jpg") == 1 and names.count("truncated.jpg") == 1 and len(rows3) == len(rows2)


@needs_data
def test_batch_jsonl(tmp_path):
    out = tmp_path / "res.jsonl"
    assert main(["batch", str(WILD / "facerec_two_people.jpg"), "--out", str(out), "--no-progress"]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["schema_version"] == 1


def test_batch_rejects_unknown_output_format(capsys, tmp_path, face_image):
    from PIL import Image

    Image.fromarray(face_image).save(tmp_path / "f.png")
    assert main(["batch", str(tmp_path / "f.png"), "--out", str(tmp_path / "r.xlsx")]) == 1
    assert "r.xlsx" in capsys.readouterr().err


def _train_args(ds, out, cache):
    return ["train", "--utkface", str(ds.utkface), "--fer2013", str(ds.fer2013), "--backbone", "tiny",
            "--no-pretrained", "--input-size", "32", "--batch-size", "4", "--out", str(out), "--no-progress",
            "--cache-dir", str(cache), "--val-fraction", "0.25"]


def test_train_resume_and_evaluate(capsys, tmp_path, tiny_dataset):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(_train_args(tiny_dataset, out, cache) + ["--epochs", "1"]) == 0
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file() and (out / "split.csv").is_file()
    assert len(list(csv.DictReader(open(out / "metrics.csv")))) == 1
    # A fresh run into the same folder is refused rather than silently replacing it.
    assert main(_train_args(tiny_dataset, out, cache) + ["--epochs", "1"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(_train_args(tiny_dataset, out, cache) + ["--epochs", "2", "--resume"]) == 0
    assert [r["epoch"] for r in csv.DictReader(open(out / "metrics.csv"))] == ["1", "2"]
    report = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(out / "best.pt"), "--utkface", str(tiny_dataset.utkface),
                 "--fer2013", str(tiny_dataset.fer2013), "--split", "all", "--json", str(report),
                 "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    for word in ("MAE", "accuracy", "macro-F1", "balanced accuracy", "confusion matrix", "fairness"):
        assert word in printed
    rep = json.loads(report.read_text())
    assert set(rep["metrics"]) == {"age", "gender", "emotion", "ethnicity"}
    assert rep["metrics"]["age"]["n"] == 8 and rep["data"]["split"] == "all"


def test_train_config_file_and_unknown_key(capsys, tmp_path, tiny_dataset):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("backbone: tiny\nepochz: 3\n")
    assert main(["train", "--config", str(cfg), "--utkface", str(tiny_dataset.utkface)]) == 1
    err = capsys.readouterr().err
    assert "epochz" in err and "did you mean 'epochs'" in err


def test_train_unknown_backbone(capsys, tmp_path):
    assert main(["train", "--backbone", "lite9", "--out", str(tmp_path)]) == 1
    assert "lite9" in capsys.readouterr().err


def test_evaluate_needs_data(capsys):
    assert main(["evaluate"]) == 1
    assert "--utkface" in capsys.readouterr().err

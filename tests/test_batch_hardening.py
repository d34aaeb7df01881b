"""facemtl batch and predict under hostile conditions (issue 17): file names that are not UTF-8, a full disk and
cut rows, bad output paths (checked before the model loads), two runs on one output, exit codes and retrying
failed files, symbolic links that lead nowhere. A tiny model with a fake one-face detector: no weights."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import FakeDetector, draw_face

from facemtl.cli.__main__ import main

BAD = b"bad\xff.png"  # not valid UTF-8: Python holds it as "bad\udcff.png"
BAD_SHOWN = "bad\\xff.png"  # how every output writes it


@pytest.fixture
def built(monkeypatch, tiny_model):
    """predict and batch run the tiny model with a fake one-face detector; ``built["sources"]`` lists, per
    analyzer built, the sources it was given (so a test sees what a resume redid, and whether a model loaded)."""
    from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
    from facemtl.cli import batch, predict
    from facemtl.detect.base import Detection
    from facemtl.results import Box

    state: dict = {"sources": []}

    class Recording(FaceAnalyzer):
        def analyze_many(self, sources, *a, **k):
            sources = list(sources)
            state["sources"].append(sources)
            return super().analyze_many(sources, *a, **k)

    def build(args, keep_image=False):
        det = FakeDetector([Detection(Box(8.0, 4.0, 56.0, 60.0), 0.9, None)])
        return Recording(tiny_model, det, 64, options=AnalyzerOptions(keep_image=keep_image))

    for mod in (predict, batch):
        monkeypatch.setattr(mod, "build_analyzer", build)
    return state


def _face(path: Path | bytes, seed: int = 0) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(draw_face(64, seed=seed)).save(buf, format="PNG")
    with open(path, "wb") as f:  # bytes paths too (names that are not UTF-8)
        f.write(buf.getvalue())


def _folder(root: Path, names: list[str], broken: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        _face(root / name, seed=i)
    for name in broken:
        (root / name).write_bytes(b"not an image")
    return root


def _bad_name_folder(tmp_path: Path) -> Path:
    src = _folder(tmp_path / "in", ["good.png"])
    try:
        _face(os.fsencode(src) + b"/" + BAD, seed=3)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    return src


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# 2. File names that are not UTF-8

@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_name_not_utf8_is_written_escaped_and_resumed(tmp_path, built, capsys, suffix):
    src = _bad_name_folder(tmp_path)
    out = tmp_path / f"r{suffix}"
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0  # before: the run ended on it
    text = out.read_text(encoding="utf-8")
    if suffix == ".csv":
        names = [Path(r["file"]).name for r in _rows(out)]
        assert all(r["error"] == "" for r in _rows(out))
    else:
        names = [Path(json.loads(line)["source"]).name for line in text.splitlines()]
        assert all("faces" in json.loads(line) for line in text.splitlines())
    assert sorted(names) == [BAD_SHOWN, "good.png"]
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0  # resume: recognised as done
    assert len(built["sources"]) == 1 and out.read_text(encoding="utf-8") == text
    assert "nothing to do" in capsys.readouterr().err


def test_parquet_name_not_utf8(tmp_path, built):
    pq = pytest.importorskip("pyarrow.parquet")
    src = _bad_name_folder(tmp_path)
    out = tmp_path / "r.parquet"
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    assert sorted(Path(f).name for f in pq.read_table(out).column("file").to_pylist()) == [BAD_SHOWN, "good.png"]
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    assert len(built["sources"]) == 1


def test_predict_name_not_utf8_under_strict_stdout(tmp_path, built, monkeypatch):
    src = _bad_name_folder(tmp_path)
    for flags in ([], ["--json"]):
        raw = io.BytesIO()
        strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True)
        monkeypatch.setattr(sys, "stdout", strict)
        assert main(["predict", str(src), *flags]) == 0  # before: UnicodeEncodeError ... surrogates not allowed
        printed = raw.getvalue().decode("utf-8")
        if flags:
            assert sorted(Path(json.loads(x)["source"]).name for x in printed.splitlines()) == [BAD_SHOWN,
                                                                                                "good.png"]
        else:
            assert f"{BAD_SHOWN}: 1 face(s)" in printed and "good.png: 1 face(s)" in printed


# 3. A full disk and cut rows

def test_disk_full_is_one_message_and_keeps_the_rows_before(tmp_path, built, capsys, monkeypatch):
    from facemtl.cli import batch

    src = _folder(tmp_path / "in", ["a.png", "b.png", "c.png", "d.png"])
    ref = tmp_path / "ref.csv"
    assert main(["batch", str(src), "--out", str(ref), "--no-progress"]) == 0
    out = tmp_path / "r.csv"
    calls = []
    real = batch._RowWriter._write_bytes

    def disk_fills(self, data):  # the header, a, b fit; c's row is half written when the disk fills up
        calls.append(len(data))
        if len(calls) == 4:
            real(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, data)

    monkeypatch.setattr(batch._RowWriter, "_write_bytes", disk_fills)
    capsys.readouterr()
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write --out {out}: No space left on device" in err and "Traceback" not in err
    assert "the 2 file(s) written before it are intact" in err
    ref_lines = ref.read_bytes().splitlines(keepends=True)
    assert out.read_bytes() == b"".join(ref_lines[:3])  # header, a, b: whole; nothing of c
    monkeypatch.setattr(batch._RowWriter, "_write_bytes", real)  # space freed: the same command resumes
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    assert [Path(f).name for f in built["sources"][-1]] == ["c.png", "d.png"]
    assert out.read_bytes().startswith(b"".join(ref_lines[:3]))
    assert [Path(r["file"]).name for r in _rows(out)] == ["a.png", "b.png", "c.png", "d.png"]


def test_resume_repairs_a_row_cut_inside_a_quoted_field(tmp_path, built):
    src = _folder(tmp_path / "in", ["a.png", "b\nc.png"])  # a name with a newline: a quoted CSV field
    ref = tmp_path / "ref.csv"
    assert main(["batch", str(src), "--out", str(ref), "--no-progress"]) == 0
    whole = ref.read_bytes()
    out = tmp_path / "r.csv"
    cut = whole.index(b"b\n") + 2  # the disk filled up right after the newline inside the name
    out.write_bytes(whole[:cut])
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    assert [Path(f).name for f in built["sources"][-1]] == ["b\nc.png"]
    assert out.read_bytes().startswith(whole[:whole.index(b"\"")])  # the header and a's row as they were
    assert [Path(r["file"]).name for r in _rows(out)] == ["a.png", "b\nc.png"]
    assert all(r["error"] == "" and r["n_faces"] == "1" for r in _rows(out))


def test_resume_removes_a_damaged_row_in_the_middle(tmp_path, built):
    src = _folder(tmp_path / "in", ["a.png", "b.png", "c.png"])
    ref = tmp_path / "ref.csv"
    assert main(["batch", str(src), "--out", str(ref), "--no-progress"]) == 0
    lines = ref.read_bytes().splitlines(keepends=True)
    out = tmp_path / "r.csv"
    cut = [i for i, ch in enumerate(lines[1]) if ch == ord(",")][4]
    out.write_bytes(lines[0] + lines[1][:cut] + lines[2] + lines[3])  # a's row cut, b's glued onto it (old runs)
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    assert sorted(Path(f).name for f in built["sources"][-1]) == ["a.png", "b.png"]
    rows = out.read_bytes().splitlines(keepends=True)
    assert rows[:2] == [lines[0], lines[3]]  # the header and c's row kept as they were
    assert sorted(Path(r["file"]).name for r in _rows(out)) == ["a.png", "b.png", "c.png"]
    assert {len(r) for r in csv.reader(io.StringIO(out.read_text(encoding="utf-8")))} == {len(lines[0].split(b","))}


# 5. Output paths, checked before the model loads

def test_out_that_is_a_folder_or_under_a_file_is_one_error_before_the_model(tmp_path, built, capsys):
    src = _folder(tmp_path / "in", ["a.png"])
    (tmp_path / "file.txt").write_text("x")
    cases = {str(tmp_path / "outdir.csv"): "is a folder",
             str(tmp_path / "file.txt" / "sub" / "r.csv"): f"{tmp_path / 'file.txt'} is a file, not a folder"}
    (tmp_path / "outdir.csv").mkdir()
    for out, why in cases.items():
        assert main(["batch", str(src), "--out", out, "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert why in err and out in err and "Traceback" not in err, err
    assert built["sources"] == []  # no model was loaded


def test_out_in_a_read_only_folder_is_one_error_before_the_model(tmp_path, built, capsys, monkeypatch):
    src = _folder(tmp_path / "in", ["a.png"])
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: pretend the folder is read-only
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == ro else real(p, mode, **k))
    else:
        ro.chmod(0o555)
    try:
        assert main(["batch", str(src), "--out", str(ro / "r.csv"), "--no-progress"]) == 1
    finally:
        ro.chmod(0o755)
    err = capsys.readouterr().err
    assert f"cannot write --out {ro / 'r.csv'}: folder {ro} is read-only" in err
    assert built["sources"] == []


def test_predict_save_dir_that_is_a_file_is_one_error_before_the_model(tmp_path, built, capsys):
    src = _folder(tmp_path / "in", ["a.png"])
    save = tmp_path / "drawn"
    save.write_text("a file")
    assert main(["predict", str(src), "--save-dir", str(save)]) == 1
    err = capsys.readouterr().err
    assert f"--save-dir {save} is a file, not a folder" in err
    assert built["sources"] == [] and save.read_text() == "a file"


# 6. Two runs on one output

def test_a_second_batch_on_the_same_output_is_refused(tmp_path, built, capsys):
    fcntl = pytest.importorskip("fcntl")
    src = _folder(tmp_path / "in", ["a.png"])
    out = tmp_path / "r.csv"
    with open(tmp_path / "r.csv.lock", "w") as held:  # another facemtl batch, running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert f"--out {out}: another facemtl batch is writing it" in err
        assert not out.exists() and built["sources"] == []
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0  # once it has ended
    assert len(_rows(out)) == 1 and not (tmp_path / "r.csv.lock").exists()


# 8. Exit codes and retrying failed files

def test_exit_codes_of_batch_and_predict(tmp_path, built, capsys):
    some = _folder(tmp_path / "some", ["a.png"], broken=("b.png",))
    none = _folder(tmp_path / "none", [], broken=("x.png",))
    assert main(["batch", str(some), "--out", str(tmp_path / "s.csv"), "--no-progress"]) == 3
    assert main(["batch", str(none), "--out", str(tmp_path / "n.csv"), "--no-progress"]) == 1  # before: 0
    assert "every file failed (1)" in capsys.readouterr().err
    assert main(["predict", str(some)]) == 3  # before: 0
    assert main(["predict", str(none)]) == 1
    assert main(["predict", str(tmp_path / "some" / "a.png")]) == 0
    for cmd in ("batch", "predict"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "exit status" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_retries_failed_files_unless_told_not_to(tmp_path, built, suffix):
    src = _folder(tmp_path / "in", ["a.png"], broken=("b.png",))
    out = tmp_path / f"r{suffix}"
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 3
    before = out.read_text(encoding="utf-8")
    assert main(["batch", str(src), "--out", str(out), "--no-progress", "--no-retry-failed"]) == 3
    assert len(built["sources"]) == 1 and out.read_text(encoding="utf-8") == before  # kept, not redone
    _face(src / "b.png", seed=5)  # the file is repaired
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    assert [Path(f).name for f in built["sources"][-1]] == ["b.png"]
    if suffix == ".csv":
        rows = _rows(out)
        assert [(Path(r["file"]).name, r["error"]) for r in rows] == [("a.png", ""), ("b.png", "")]
    else:
        recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
        assert [Path(r["source"]).name for r in recs] == ["a.png", "b.png"] and all("faces" in r for r in recs)


def test_parquet_resume_retries_failed_files(tmp_path, built):
    pq = pytest.importorskip("pyarrow.parquet")
    src = _folder(tmp_path / "in", ["a.png"], broken=("b.png",))
    out = tmp_path / "r.parquet"
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 3
    _face(src / "b.png", seed=5)
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [(Path(r["file"]).name, r["error"]) for r in rows] == [("a.png", None), ("b.png", None)]


# 9. Symbolic links that lead nowhere

def test_dangling_links_and_loops_are_error_rows_with_the_reason(tmp_path, built, capsys):
    src = _folder(tmp_path / "in", ["good.png"])
    (src / "dangling.png").symlink_to("missing.png")
    (src / "loop1.png").symlink_to("loop2.png")
    (src / "loop2.png").symlink_to("loop1.png")
    out = tmp_path / "r.csv"
    assert main(["batch", str(src), "--out", str(out), "--no-progress"]) == 3  # before: 0, links left out
    errors = {Path(r["file"]).name: r["error"] for r in _rows(out)}
    assert errors == {"dangling.png": "dangling symbolic link -> missing.png", "good.png": "",
                      "loop1.png": "symbolic link loop -> loop2.png", "loop2.png": "symbolic link loop -> loop1.png"}
    assert main(["predict", str(src)]) == 3
    err = capsys.readouterr().err
    assert f"{src / 'dangling.png'}: error: dangling symbolic link -> missing.png" in err

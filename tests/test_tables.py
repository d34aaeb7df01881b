"""The batch table everywhere: facemtl.to_dataframe and `facemtl batch --out x.parquet` give exactly the batch
CSV's columns and values (one row-building code, facemtl._rows); Parquet resumes and survives Ctrl-C."""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import draw_face
from PIL import Image

import facemtl
from facemtl._rows import column_types, csv_columns
from facemtl.analyzer import FaceAnalyzer
from facemtl.cli.__main__ import main
from facemtl.detect.base import Detection
from facemtl.errors import MissingDependencyError
from facemtl.results import Box

pd = pytest.importorskip("pandas")
pq = pytest.importorskip("pyarrow.parquet")


class ContentDetector:
    """No face on a flat image, two on a wide one, one otherwise: every kind of row from one folder."""

    name = "content"

    def detect(self, image: np.ndarray) -> list[Detection]:
        if image.std() < 1:
            return []
        boxes = [Box(8.0, 4.0, 56.0, 60.0)] + ([Box(70.0, 4.0, 120.0, 60.0)] if image.shape[1] > 100 else [])
        return [Detection(b, 0.9 - 0.1 * i, None) for i, b in enumerate(boxes)]


@pytest.fixture
def analyzer(tiny_model):
    return FaceAnalyzer(tiny_model, ContentDetector(), 64)


@pytest.fixture
def built(monkeypatch, analyzer):
    """`facemtl batch` runs the tiny model; ``built["sources"]`` lists the files each run analysed."""
    from facemtl.cli import batch

    seen: list[list[str]] = []

    class Recording:
        def analyze_many(self, files, errors="raise"):
            seen.append(list(files))
            return analyzer.analyze_many(files, errors=errors)

    monkeypatch.setattr(batch, "build_analyzer", lambda args, keep_image=False: Recording())
    return {"sources": seen}


@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(draw_face(64, seed=1)).save(src / "a_one.png")
    Image.fromarray(np.concatenate([draw_face(64, seed=2), draw_face(64, seed=3)], axis=1)).save(src / "b_two.png")
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(src / "c_none.png")
    (src / "d_broken.jpg").write_bytes(b"not a jpeg")
    return src


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _same(csv_value: str, value, kind: str) -> bool:
    """A CSV field (text, empty = missing) and a typed value (None/NaN/NA = missing) say the same thing."""
    missing = value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
    if csv_value == "":
        return missing
    if missing:
        return False
    return float(csv_value) == float(value) if kind != "str" else csv_value == value


def _assert_rows_match(csv_rows: list[dict[str, str]], typed_rows: list[dict]) -> None:
    types = column_types()
    assert len(typed_rows) == len(csv_rows)
    for want, got in zip(csv_rows, typed_rows):
        bad = {c: (want[c], got[c]) for c in types if not _same(want[c], got[c], types[c])}
        assert not bad, bad


def test_to_dataframe_is_the_batch_csv(folder, tmp_path, analyzer, built):
    out = tmp_path / "r.csv"
    assert main(["batch", str(folder), "--out", str(out), "--no-progress"]) == 3
    header, rows = _csv(out)
    files = sorted(str(p) for p in folder.iterdir())
    df = facemtl.to_dataframe(analyzer.analyze_many(files, errors="record"))
    assert list(df.columns) == header == csv_columns()
    assert [Path(f).name for f in df["file"]] == ["a_one.png", "b_two.png", "b_two.png", "c_none.png",
                                                  "d_broken.jpg"]
    _assert_rows_match(rows, df.to_dict("records"))
    assert str(df["face"].dtype) == "Int64" and df["age"].dtype == np.float64 and df["x1"].dtype == np.float64
    none, broken = df.iloc[3], df.iloc[4]
    assert none["n_faces"] == 0 and pd.isna(none["face"]) and pd.isna(none["age"]) and pd.isna(none["error"])
    assert "not a readable image" in broken["error"] and pd.isna(broken["n_faces"])
    one = facemtl.to_dataframe(analyzer(files[0]))  # one result alone
    assert len(one) == 1 and list(one.columns) == header
    empty = facemtl.to_dataframe([])
    assert list(empty.columns) == header and len(empty) == 0


def test_parquet_holds_the_csv_rows_typed(folder, tmp_path, built):
    out_csv, out_pq = tmp_path / "r.csv", tmp_path / "r.parquet"
    assert main(["batch", str(folder), "--out", str(out_csv), "--no-progress"]) == 3
    assert main(["batch", str(folder), "--out", str(out_pq), "--no-progress"]) == 3
    table = pq.read_table(out_pq)
    header, rows = _csv(out_csv)
    assert table.column_names == header
    assert {c: str(table.schema.field(c).type) for c in ("file", "face", "x1", "age", "gender", "error")} == {
        "file": "string", "face": "int64", "x1": "double", "age": "double", "gender": "string", "error": "string"}
    _assert_rows_match(rows, table.to_pylist())
    assert not (tmp_path / "r.parquet.partial.csv").exists()


def test_parquet_resumes_and_keeps_what_was_done_on_ctrl_c(folder, tmp_path, analyzer, monkeypatch, built):
    from facemtl.cli import batch

    out = tmp_path / "r.parquet"
    partial = tmp_path / "r.parquet.partial.csv"

    class Interrupted:  # Ctrl-C once two files are done
        def analyze_many(self, files, errors="raise"):
            for i, res in enumerate(analyzer.analyze_many(files, errors=errors)):
                if i == 2:
                    raise KeyboardInterrupt
                yield res

    with monkeypatch.context() as m:
        m.setattr(batch, "build_analyzer", lambda args, keep_image=False: Interrupted())
        assert main(["batch", str(folder), "--out", str(out), "--no-progress"]) == 130
    assert out.is_file() and not partial.exists()  # converted on the way out
    assert [Path(f).name for f in pq.read_table(out).column("file").to_pylist()] == ["a_one.png", "b_two.png",
                                                                                      "b_two.png"]
    # resume: only the rest
    assert main(["batch", str(folder), "--out", str(out), "--no-progress", "--no-retry-failed"]) == 3
    assert [[Path(f).name for f in run] for run in built["sources"]] == [["c_none.png", "d_broken.jpg"]]
    full = pq.read_table(out).to_pylist()
    assert [Path(r["file"]).name for r in full] == ["a_one.png", "b_two.png", "b_two.png", "c_none.png",
                                                    "d_broken.jpg"]
    # all done: nothing run
    assert main(["batch", str(folder), "--out", str(out), "--no-progress", "--no-retry-failed"]) == 3
    assert len(built["sources"]) == 1 and pq.read_table(out).to_pylist() == full

    # A run killed before converting leaves the sidecar (its last line cut): the next run resumes from it.
    out_csv = tmp_path / "ref.csv"
    assert main(["batch", str(folder), "--out", str(out_csv), "--no-progress"]) == 3
    lines = out_csv.read_bytes().splitlines(keepends=True)
    out.unlink()
    partial.write_bytes(b"".join(lines[:3]) + lines[3][:25])  # header, a_one, b_two face 0, face 1 cut
    built["sources"].clear()
    assert main(["batch", str(folder), "--out", str(out), "--no-progress", "--no-retry-failed"]) == 3
    assert [Path(f).name for f in built["sources"][0]] == ["b_two.png", "c_none.png", "d_broken.jpg"]
    assert not partial.exists()  # b_two had 1 of its 2 rows: dropped and redone whole
    assert pq.read_table(out).to_pylist() == full


def test_csv_resume_drops_a_cut_last_line(folder, tmp_path, built):
    out = tmp_path / "r.csv"
    assert main(["batch", str(folder), "--out", str(out), "--no-progress"]) == 3
    whole = out.read_bytes()
    lines = whole.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:10])  # killed while writing d_broken's row
    assert main(["batch", str(folder), "--out", str(out), "--no-progress", "--no-retry-failed"]) == 3
    assert [Path(f).name for f in built["sources"][-1]] == ["d_broken.jpg"]
    assert out.read_bytes() == whole  # before: the new row was glued onto the cut one


def test_missing_pandas_or_pyarrow_names_the_extra(monkeypatch, folder, tmp_path, analyzer, capsys, built):
    res = analyzer(str(folder / "a_one.png"))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "facemtl\[pandas\]"'):
        facemtl.to_dataframe([res])
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["batch", str(folder), "--out", str(tmp_path / "r.parquet")]) == 1
    assert 'pip install "facemtl[parquet]"' in capsys.readouterr().err
    assert not built["sources"] and not (tmp_path / "r.parquet.partial.csv").exists()


def test_unknown_output_format_lists_the_formats(capsys, folder, tmp_path):
    assert main(["batch", str(folder), "--out", str(tmp_path / "r.xlsx")]) == 1
    assert "--out must end in .csv, .jsonl, .parquet, got 'r.xlsx'" in capsys.readouterr().err

"""Flatten results into table rows (one per face; one per image without faces; one per failed file).

The one definition of the table: the columns and their types derive from the task registry, each image's rows
are built by the result itself (:meth:`facemtl.results.ImageResult.to_rows`), and every table facemtl writes is
built from :func:`csv_rows`: the ``facemtl batch`` CSV and Parquet files, the per-frame video
CSV and :func:`to_dataframe`. An empty CSV field is a missing value (null in Parquet, NA in pandas).
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ._optional import require
from .tasks import get_task, list_tasks

__all__ = ["safe_name", "json_record", "csv_columns", "rows_text", "CSV_LINE_END", "column_types", "csv_rows",
           "to_dataframe", "csv_to_parquet", "parquet_to_csv", "parquet_sources", "parquet_status"]

_PARQUET_BATCH_ROWS = 50_000  # rows per Parquet row group when converting a CSV: memory stays bounded


def safe_name(name: Any) -> str:
    """A file name as every writer records it (CSV, JSONL, Parquet, printed tables and JSON): bytes that are not
    valid UTF-8 (on Linux, ``os.fsencode`` of the name; Python holds them as surrogates) are written as
    ``\\xNN`` escapes, e.g. ``bad\\xff.jpg``, so any UTF-8 output can hold it. Valid names are unchanged; resume
    compares names in this form."""
    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    name = str(name)
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    try:
        raw = name.encode("utf-8", "surrogateescape")  # undecodable bytes of a file name, as Python reads them
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "backslashreplace")  # other lone surrogates: escaped as \\udcXX
    return raw.decode("utf-8", "backslashreplace")


def json_record(res: Any, name: str | None = None) -> str:
    """One line of a batch's JSON Lines file: the image's result, or its error, under ``source`` (``name``, or the
    result's own source), made printable like the CSV's; the local and the Ray engine write the same lines."""
    source = safe_name(res.source if name is None else name)
    if hasattr(res, "faces"):
        rec = res.to_dict()
        rec["source"] = source
    else:
        rec = {"source": source, "error": safe_name(res.error)}
    return json.dumps(rec) + "\n"


def _task_columns(spec: Any) -> dict[str, str]:
    """The columns one task adds to the table, with their types: a regression task its value, the group of its
    label grouping (``age_group``) and its interval (``age_low``, ``age_high``); a classification task its label,
    the label's probability and one probability per class (``emotion.happy``)."""
    name = spec.name
    if spec.kind == "regression":
        cols = {name: "float"}
        if spec.label_grouping:
            cols[f"{name}_group"] = "str"
        if spec.interval:
            cols.update({f"{name}_low": "float", f"{name}_high": "float"})
        return cols
    return {name: "str", f"{name}_prob": "float", **{f"{name}.{lab}": "float" for lab in spec.labels}}


def csv_columns() -> list[str]:
    """The table's columns, in order: the face, then each registered task's (:func:`_task_columns`), then the
    quality flag and the error."""
    return list(column_types())


def column_types() -> dict[str, str]:
    """Each of :func:`csv_columns` -> ``"int"``, ``"float"`` or ``"str"`` (the type of its non-empty values)."""
    types = {"file": "str", "face": "int", "n_faces": "int", "x1": "float", "y1": "float", "x2": "float",
             "y2": "float", "det_score": "float"}
    for name in list_tasks():
        types.update(_task_columns(get_task(name)))
    return {**types, "quality": "str", "quality_reasons": "str", "error": "str"}


def csv_rows(res: Any) -> list[dict[str, Any]]:
    """The table rows of one ImageResult (:meth:`facemtl.results.ImageResult.to_rows`), or of an ItemError: one
    row with only ``file`` and ``error``."""
    if not hasattr(res, "faces"):
        return [{"file": safe_name(res.source), "face": "", "n_faces": "", "error": safe_name(res.error)}]
    return res.to_rows()


CSV_LINE_END = "\r\n"  # the csv module's default line terminator, which batch CSVs have always had


def rows_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Table rows as the batch CSV writes them (the local and the Ray engine alike)."""
    import io

    buf = io.StringIO()
    csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator=CSV_LINE_END).writerows(rows)
    return buf.getvalue()


_CAST = {"int": int, "float": float, "str": str}


def _cell(value: Any, kind: str) -> Any:
    """A CSV row's value (as written, or as read back: a string) as its column's type; empty -> None."""
    if value is None or value == "":
        return None
    if kind == "int" and isinstance(value, str):
        return int(float(value))
    return _CAST[kind](value)


def _typed_rows(rows: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    types = column_types()
    for row in rows:
        yield [_cell(row.get(c), kind) for c, kind in types.items()]


def to_dataframe(results: Any) -> Any:
    """The batch table as a pandas DataFrame: one row per face, exactly the ``facemtl batch`` CSV's columns.

    Args:
        results: an ImageResult, an ItemError, or any iterable of them (a list, ``analyzer.analyze_many(...,
            errors="record")``). An image without faces gives one row with ``n_faces`` 0 and empty face fields;
            a failed file one row with only ``file`` and ``error``.

    Returns:
        A DataFrame whose columns are :func:`csv_columns` in order: ``face`` and ``n_faces`` nullable integers
        (``Int64``), boxes, scores, ages and probabilities floats, labels strings; empty fields are missing
        values (NA/NaN), so ``df["error"].notna()`` picks the failed files.

    Raises:
        MissingDependencyError: pandas is not installed (``pip install "facemtl[pandas]"``).
    """
    pd = require("pandas", extra="pandas")
    if hasattr(results, "source"):  # one result
        results = [results]
    types = column_types()
    columns = list(zip(*_typed_rows(row for res in results for row in csv_rows(res)))) or [()] * len(types)
    dtypes = {"int": "Int64", "float": "float64", "str": None}
    return pd.DataFrame({c: pd.Series(list(values), dtype=dtypes[kind])
                         for (c, kind), values in zip(types.items(), columns)}, columns=list(types))


def _arrow_schema(pa: Any) -> Any:
    arrow = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}
    return pa.schema([(c, arrow[kind]) for c, kind in column_types().items()])


def csv_to_parquet(csv_path: str | Path, out: str | Path) -> Path:
    """Convert a batch CSV into a Parquet file with typed columns (row groups of 50,000 rows; empty fields null).
    Written to ``<out>.tmp`` and renamed: ``out`` is always a whole file, old or new.

    Raises:
        MissingDependencyError: pyarrow is not installed (``pip install "facemtl[parquet]"``).
    """
    pa = require("pyarrow", extra="parquet")
    pq = require("pyarrow.parquet", extra="parquet", package="pyarrow")
    out = Path(out)
    schema = _arrow_schema(pa)
    tmp = out.with_name(out.name + ".tmp")
    with open(csv_path, newline="", encoding="utf-8", errors="replace") as f, \
            pq.ParquetWriter(str(tmp), schema) as writer:
        batch: list[list[Any]] = []
        for values in _typed_rows(csv.DictReader(f)):
            batch.append(values)
            if len(batch) >= _PARQUET_BATCH_ROWS:
                writer.write_table(pa.Table.from_pylist([dict(zip(schema.names, v)) for v in batch], schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist([dict(zip(schema.names, v)) for v in batch], schema))
    os.replace(tmp, out)
    return out


def parquet_to_csv(path: str | Path, csv_path: str | Path) -> Path:
    """Write a batch Parquet file's rows as a batch CSV (nulls as empty fields): the start of a resumed run."""
    pq = require("pyarrow.parquet", extra="parquet", package="pyarrow")
    cols = csv_columns()
    pf = pq.ParquetFile(str(path))
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, cols, extrasaction="ignore")
        writer.writeheader()
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in batch.to_pylist())
    return Path(csv_path)


def parquet_sources(path: str | Path) -> set[str]:
    """The ``file`` values of a batch Parquet file (the files it has done)."""
    return parquet_status(path)[0]


def parquet_status(path: str | Path) -> tuple[set[str], set[str]]:
    """The files a batch Parquet file has done, and those of them it holds only an error row for (failed)."""
    pq = require("pyarrow.parquet", extra="parquet", package="pyarrow")
    table = pq.read_table(str(path), columns=["file", "error"])
    done: set[str] = set()
    ok: set[str] = set()
    for f, err in zip(table.column("file").to_pylist(), table.column("error").to_pylist()):
        if f:
            done.add(f)
            if not err:
                ok.add(f)
    return done, done - ok

"""facemtl batch DIR --out results.csv|.jsonl|.parquet : one row per face (and per image without faces), per-file
error records, resume by skipping files already in the output, and nothing lost on Ctrl-C.

Each finished file's rows go to disk in one write and are flushed at once. Parquet cannot be appended to, so a
``.parquet`` run writes the CSV rows to ``<out>.partial.csv`` beside it (seeded from the existing Parquet file
when resuming) and converts that to ``<out>`` at the end of the run, Ctrl-C included; the sidecar is then
removed. A run killed before converting leaves the sidecar, and the next run resumes from it."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from .._optional import require
from .._rows import csv_columns, csv_rows, csv_to_parquet, parquet_sources, parquet_to_csv
from ..errors import InvalidInputError
from ._common import add_analyzer_args, build_analyzer, expand_inputs, note

FORMATS = (".csv", ".jsonl", ".parquet")
_CSV_END = "\r\n"  # the csv module's default line terminator, which batch CSVs have always had


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="analyse a folder into a CSV, JSONL or Parquet file",
                       description="Analyse every image of a folder (or files/globs) into CSV, JSON Lines or "
                                   "Parquet. Rerunning the same command resumes: files already in the output "
                                   "are skipped.")
    p.add_argument("inputs", nargs="+", metavar="DIR|IMAGE|GLOB")
    p.add_argument("--out", required=True, help="output file: .csv (one row per face), .jsonl (one line per "
                   "image) or .parquet (the CSV's columns, typed; needs facemtl[parquet]; rows are collected in "
                   "OUT.partial.csv and converted when the run ends or is interrupted)")
    add_analyzer_args(p)
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--overwrite", action="store_true", help="start a new output instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def partial_path(out: Path) -> Path:
    """Where a ``.parquet`` run collects its rows as CSV until it converts them: ``<out>.partial.csv``."""
    return out.with_name(out.name + ".partial.csv")


def _drop_cut_line(path: Path) -> None:
    """Cut a last line left incomplete by a killed run (no newline after it), so appending starts clean: the
    file it was for is not counted as done and is analysed again."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
    data = path.read_bytes()
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)


def _done_files(out: Path) -> set[str]:
    if not out.exists() or out.stat().st_size == 0:
        return set()
    if out.suffix == ".jsonl":
        done = set()
        for line in out.read_text().splitlines():
            try:
                done.add(json.loads(line)["source"])
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by an interruption: that file is redone
        return done
    done, n_rows, last, last_start, last_rows, last_expected = set(), 0, None, 0, 0, 0
    with open(out, newline="") as f:
        for row in csv.DictReader(f):
            name = row.get("file")
            if name != last:
                last, last_start, last_rows = name, n_rows, 0
                last_expected = max(1, int(row.get("n_faces") or 0))  # faces; 1 row without faces or on error
            last_rows += 1
            n_rows += 1
            if name:
                done.add(name)
    if last is not None and last_rows < last_expected:  # killed between the rows of its last file
        _keep_rows(out, last_start)
        done.discard(last)  # redone, from none of its rows
    return done


def _keep_rows(path: Path, n: int) -> None:
    """Rewrite a batch CSV with its header and first ``n`` rows only (through a temporary file)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(path, newline="") as src, open(tmp, "w", newline="") as dst:
        reader = csv.reader(src)
        writer = csv.writer(dst, lineterminator=_CSV_END)
        for i, row in enumerate(reader):
            if i > n:
                break
            writer.writerow(row)
    tmp.replace(path)


def _csv_text(res, columns: list[str]) -> str:
    buf = io.StringIO()
    csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator=_CSV_END).writerows(csv_rows(res))
    return buf.getvalue()


def _json_text(res) -> str:
    rec = res.to_dict() if hasattr(res, "faces") else {"source": res.source, "error": res.error}
    return json.dumps(rec) + "\n"


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in FORMATS:
        raise InvalidInputError(f"--out must end in {', '.join(FORMATS)}, got {out.name!r}")
    parquet = out.suffix == ".parquet"
    if parquet:
        require("pyarrow.parquet", extra="parquet", package="pyarrow")  # before any work
    files = expand_inputs(args.inputs, args.recursive)
    sink = partial_path(out) if parquet else out  # the file rows are appended to
    if args.overwrite:
        out.unlink(missing_ok=True)
        sink.unlink(missing_ok=True)
    _drop_cut_line(sink)
    done = parquet_sources(out) if parquet and out.exists() and not sink.exists() else _done_files(sink)
    todo = [f for f in files if f not in done]
    if done:
        note(args, f"resuming: {len(files) - len(todo)} of {len(files)} file(s) already in "
                   f"{sink if sink.exists() else out}")
    if not todo:
        if parquet and sink.exists():  # a run killed before its conversion
            _finish_parquet(sink, out)
        note(args, f"nothing to do: every file is already in {out} (--overwrite starts anew)")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    analyzer = build_analyzer(args)
    if parquet and out.exists() and not sink.exists():
        parquet_to_csv(out, sink)  # resume: the rows so far, then the new ones; converted back at the end
    new = not sink.exists() or sink.stat().st_size == 0
    columns = csv_columns()
    n_faces = n_err = n_img = 0
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", file=sys.stderr)
    try:
        with open(sink, "a", newline="") as fh:
            if new and sink.suffix == ".csv":
                csv.DictWriter(fh, columns, lineterminator=_CSV_END).writeheader()
            for res in analyzer.analyze_many(todo, errors="record"):
                # One write per file, then flushed: a file is on disk whole or not at all (resume redoes it).
                fh.write(_json_text(res) if sink.suffix == ".jsonl" else _csv_text(res, columns))
                fh.flush()
                n_img += 1
                n_err += 0 if hasattr(res, "faces") else 1
                n_faces += len(getattr(res, "faces", []))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if parquet:
            _finish_parquet(sink, out)  # also on Ctrl-C: what was done is in the Parquet file
        note(args, f"{n_img} image(s), {n_faces} face(s), {n_err} failed -> {out}")
    return 0


def _finish_parquet(sink: Path, out: Path) -> None:
    """Convert the collected CSV rows into ``out`` (replaced whole) and remove them; should the conversion
    fail, the rows stay in ``sink`` and the next run starts from them."""
    csv_to_parquet(sink, out)
    sink.unlink()

"""facemtl batch DIR --out results.csv|.jsonl|.parquet : one row per face (and per image without faces), per-file
error records, resume by skipping files already in the output, and nothing lost on Ctrl-C.

Each finished file's rows go to disk in one write and are flushed at once. Parquet cannot be appended to, so a
``.parquet`` run writes the CSV rows to ``<out>.partial.csv`` beside it (seeded from the existing Parquet file
when resuming) and converts that to ``<out>`` at the end of the run, Ctrl-C included; the sidecar is then
removed. A run killed before converting leaves the sidecar, and the next run resumes from it.

Hostile conditions: the output is checked (and locked with ``<out>.lock`` against a second run) before the
model loads; resume verifies every row (a row cut by a full disk or a kill is removed and its file redone);
files that failed are analysed again on resume unless ``--no-retry-failed``; a write error (disk full) is one
message, the rows before it intact; file names that are not UTF-8 are written escaped (:func:`safe_name`)."""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .._optional import require
from .._rows import (
    CSV_LINE_END,
    csv_columns,
    csv_rows,
    csv_to_parquet,
    json_record,
    parquet_status,
    parquet_to_csv,
    rows_text,
    safe_name,
)
from ..analyzer import analyze_files
from ..batch_ray import DEFAULT_BATCH_SIZE, RayOptions
from ..errors import InvalidInputError, OutputError, OutputLockedError
from ._args import Arg, add_config_arg, add_dataclass_args, config_from_args, positive_int
from ._common import (
    ANALYZER_SKIP,
    add_analyzer_args,
    analyzer_classes,
    analyzer_kwargs,
    build_analyzer,
    check_output_file,
    expand_inputs,
    note,
    quiet,
)

FORMATS = (".csv", ".jsonl", ".parquet")

EXIT_CODES = """exit status, for the files given as they stand in the output at the end (resumed ones included):
0 none failed; 1 a setup or output error (bad option value, missing input, unwritable or locked output, disk
full; one message on stderr) or every file failed; 2 command-line usage error; 3 some files failed (see their
error rows); 130 interrupted. Resuming analyses failed files again (their error rows are replaced) unless
--no-retry-failed."""


# The --ray-* flags: the fields of RayOptions (--engine, which chooses the engine, is no Ray option: hand-written).
RAY_HELP: dict[str, str | Arg] = {
    "ray_address": Arg("connect to this running Ray cluster (default: start a local Ray for the run)", metavar="ADDR"),
    "ray_cpus": Arg("CPUs of the local Ray (default: all)", type=positive_int, metavar="N"),
    "ray_concurrency": Arg("actors, each with one model (default: one per CPU of the Ray cluster)", type=positive_int,
                           metavar="K"),
    "ray_batch_size": Arg(f"files per actor call (default: {DEFAULT_BATCH_SIZE})", type=positive_int, metavar="B"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="analyse a folder into a CSV, JSONL or Parquet file",
                       description="Analyse every image of a folder (or files/globs) into CSV, JSON Lines or "
                                   "Parquet. Rerunning the same command resumes: files already in the output "
                                   "are skipped. One run at a time writes an output (it holds OUT.lock).",
                       epilog=EXIT_CODES)
    p.add_argument("inputs", nargs="+", metavar="DIR|IMAGE|GLOB",
                   help="images, folders (their images; --recursive for sub-folders) or quoted glob patterns")
    p.add_argument("--out", required=True, help="output file: .csv (one row per face), .jsonl (one line per "
                   "image) or .parquet (the CSV's columns, typed; needs facemtl[parquet]; rows are collected in "
                   "OUT.partial.csv and converted when the run ends or is interrupted)")
    add_config_arg(p, *analyzer_classes(), RayOptions, skip=ANALYZER_SKIP)
    add_analyzer_args(p)
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--overwrite", action="store_true", help="start a new output instead of resuming")
    p.add_argument("--no-retry-failed", action="store_true", help="when resuming, keep the error rows of files "
                   "that failed and skip them (default: analyse them again, replacing their error rows)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = p.add_argument_group("engine", "where the files are analysed: here (local), or on Ray Data (ray: one model "
                                       "per actor; needs facemtl[ray])")
    r.add_argument("--engine", choices=("local", "ray"), default="local", help="default: %(default)s")
    add_dataclass_args(r, RayOptions, help_=RAY_HELP, fill_defaults=True)
    p.set_defaults(func=run)


def partial_path(out: Path) -> Path:
    """Where a ``.parquet`` run collects its rows as CSV until it converts them: ``<out>.partial.csv``."""
    return out.with_name(out.name + ".partial.csv")


def lock_path(out: Path) -> Path:
    """The advisory lock a batch run holds on ``out`` while it runs: ``<out>.lock`` (removed at the end)."""
    return out.with_name(out.name + ".lock")


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``<out>.lock`` (``fcntl.flock``, non-blocking) for the run: a second ``facemtl batch`` on the same
    output is refused with :class:`OutputLockedError` instead of both appending to it. No-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield
        return
    lock = lock_path(out)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write --out {out}: cannot create {lock}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            raise OutputLockedError(f"--out {out}: another facemtl batch is writing it (process "
                                    f"{holder or '?'} holds {lock}); wait for it to end, or give another --out"
                                    ) from None
        try:  # the file locked must still be the one at that path (a run ending removes it)
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is only informative
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def _scan_jsonl(path: Path) -> tuple[set[str], set[str], int]:
    """(files done, files whose record is an error, lines not a whole record) of a batch JSONL file."""
    done, ok, bad = set(), set(), 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
                name = safe_name(rec["source"])
            except (json.JSONDecodeError, KeyError, TypeError):
                bad += 1  # a line cut by an interruption or a full disk: removed, its file redone
                continue
            done.add(name)
            if "faces" in rec:
                ok.add(name)
    return done, done - ok, bad


def _scan_csv(path: Path) -> tuple[set[str], set[str], set[int]]:
    """(files done, files with only an error row, indices of rows to remove) of a batch CSV. A file's rows are
    whole when each has the header's number of fields and there are ``n_faces`` of them (1 without faces or on
    error); the rows of a file that is not whole (cut by a kill or a full disk) are removed and it is redone."""
    groups: list[list] = []  # [name, first row index, rows, expected rows, whole, error row]
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return set(), set(), set()
        if not {"file", "n_faces", "error"} <= set(header):
            raise OutputError(f"--out {path} is not a facemtl batch CSV (its first line has no file, n_faces and "
                              "error columns); give another --out, or --overwrite to replace it")
        i_file, i_n, i_err = header.index("file"), header.index("n_faces"), header.index("error")
        n = 0
        try:
            for row in reader:
                whole = len(row) == len(header)
                name = row[i_file] if row else ""
                if not groups or name != groups[-1][0] or not groups[-1][4]:
                    try:
                        expected = max(1, int(row[i_n] or 0)) if whole else 1
                    except ValueError:
                        expected, whole = 1, False
                    groups.append([name, n, 0, expected, True, whole and bool(row[i_err])])
                g = groups[-1]
                g[2] += 1
                g[4] = g[4] and whole
                n += 1
        except csv.Error:  # e.g. a quoted field cut at the end of the file
            if groups:
                groups[-1][4] = False
            else:
                groups.append(["", n, 1, 1, False, False])
    done: set[str] = set()
    ok: set[str] = set()
    drop: set[int] = set()
    for name, start, rows, expected, whole, error in groups:
        if whole and rows == expected and name:
            done.add(name)
            if not error:
                ok.add(name)
        else:
            drop.update(range(start, start + rows))
    return done, done - ok, drop


def _rewrite(path: Path, keep: Callable[[int, list[str] | str], bool]) -> None:
    """Rewrite a batch CSV (its header and the rows ``keep(index, row)`` accepts) or JSONL file (the lines it
    accepts) through ``<path>.tmp`` and a rename: the file is always whole, old or new."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8", errors="replace") as src, \
                    open(tmp, "w", encoding="utf-8", newline="") as dst:
                dst.writelines(line for i, line in enumerate(src) if keep(i, line))
        else:
            with open(path, newline="", encoding="utf-8", errors="replace") as src, \
                    open(tmp, "w", newline="", encoding="utf-8") as dst:
                reader = csv.reader(src)
                writer = csv.writer(dst, lineterminator=CSV_LINE_END)
                writer.writerow(next(reader))
                i = 0
                try:
                    for row in reader:
                        if keep(i, row):
                            writer.writerow(row)
                        i += 1
                except csv.Error:
                    pass  # a cut tail: dropped
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot repair --out {path}: {exc.strerror or exc}") from None


def _drop_cut_line(path: Path) -> None:
    """Cut a last line left incomplete by a killed run or a full disk (no newline after it), so appending
    starts clean: the file it was for is not counted as done and is analysed again."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        f.seek(-1, 2)
        if f.read(1) == b"\n":
            return
    data = path.read_bytes()
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)


def _resume_state(sink: Path, note_fn: Callable[[str], None]) -> tuple[set[str], set[str]]:
    """Verify and repair ``sink`` (rows cut or damaged are removed), then (files done, files failed)."""
    _drop_cut_line(sink)
    if not sink.exists() or sink.stat().st_size == 0:
        return set(), set()
    if sink.suffix == ".jsonl":
        done, failed, bad = _scan_jsonl(sink)
        if bad:
            _rewrite(sink, lambda i, line: isinstance(line, str) and _whole_json(line))  # JSONL: lines are str
    else:
        done, failed, drop = _scan_csv(sink)
        bad = len(drop)
        if drop:
            _rewrite(sink, lambda i, row: i not in drop)
    if bad:
        note_fn(f"repaired {sink}: removed {bad} cut or damaged row(s); their file(s) are analysed again")
    return done, failed


def _whole_json(line: str) -> bool:
    try:
        return "source" in json.loads(line)
    except (json.JSONDecodeError, TypeError):
        return False


def _drop_sources(sink: Path, names: set[str]) -> None:
    """Remove the rows of the files ``names`` (failed ones being retried) from ``sink``."""
    if sink.suffix == ".jsonl":
        _rewrite(sink, lambda i, line: isinstance(line, str)  # JSONL: lines are str
                 and (not _whole_json(line) or safe_name(json.loads(line)["source"]) not in names))
    else:
        i_file = csv_columns().index("file")
        with open(sink, newline="", encoding="utf-8", errors="replace") as f:
            header = next(csv.reader(f), [])
        i_file = header.index("file") if "file" in header else i_file
        _rewrite(sink, lambda i, row: len(row) <= i_file or row[i_file] not in names)


class _RowWriter:
    """Appends each finished file's rows to the output in one unbuffered write (on disk at once). A failed write
    (a full disk) is undone (the file is cut back to its last whole file) and raised as one OutputError."""

    def __init__(self, path: Path, shown: Path) -> None:
        self.path, self.shown, self.files = path, shown, 0
        try:
            self.fh = open(path, "ab", buffering=0)
            self.size = os.fstat(self.fh.fileno()).st_size
        except OSError as exc:
            raise OutputError(f"cannot write --out {shown}: {exc.strerror or exc}") from None

    def write(self, text: str, counts: bool = True) -> None:
        try:
            self._write_bytes(text.encode("utf-8"))
        except OSError as exc:
            try:
                os.ftruncate(self.fh.fileno(), self.size)
            except OSError:
                pass  # left cut: the next run's resume removes the cut row
            raise OutputError(f"cannot write --out {self.shown}: {exc.strerror or exc}; the {self.files} file(s) "
                              f"written before it are intact (rerun the same command to resume)") from None
        self.size = os.fstat(self.fh.fileno()).st_size
        self.files += counts

    def _write_bytes(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self.fh.write(view)
            view = view[n:]

    def close(self) -> None:
        self.fh.close()


def _csv_text(res, columns: list[str]) -> str:
    return rows_text(csv_rows(res), columns)


class _LocalEngine:
    """``--engine local``: the files analysed in this process; (text, n_faces, failed) per file, in order."""

    def __init__(self, analyzer, jsonl: bool) -> None:
        self.analyzer, self.jsonl = analyzer, jsonl

    def results(self, files: list[str]) -> Iterator[tuple[str, int, bool]]:
        columns = csv_columns()
        for res in analyze_files(self.analyzer, files):
            text = json_record(res) if self.jsonl else _csv_text(res, columns)
            yield text, len(getattr(res, "faces", [])), not hasattr(res, "faces")

    def close(self) -> None:
        pass


def _engine(args: argparse.Namespace, jsonl: bool):
    if getattr(args, "engine", "local") == "ray":
        from ..batch_ray import RayEngine

        kwargs = analyzer_kwargs(args)  # a bad --model or --device: one error before Ray starts
        return RayEngine(kwargs, config_from_args(RayOptions, args), jsonl, quiet=quiet(args))
    return _LocalEngine(build_analyzer(args), jsonl)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in FORMATS:
        raise InvalidInputError(f"--out must end in {', '.join(FORMATS)}, got {out.name!r}")
    parquet = out.suffix == ".parquet"
    if parquet:
        require("pyarrow.parquet", extra="parquet", package="pyarrow")  # before any work
    if getattr(args, "engine", "local") == "ray":
        require("ray", extra="ray")
    files = expand_inputs(args.inputs, args.recursive)
    check_output_file(out, "--out")  # before the model loads: one clear error, not a traceback after it
    with output_lock(out):
        return _run_locked(args, out, files, parquet)


def _run_locked(args: argparse.Namespace, out: Path, files: list[str], parquet: bool) -> int:
    sink = partial_path(out) if parquet else out  # the file rows are appended to
    if args.overwrite:
        out.unlink(missing_ok=True)
        sink.unlink(missing_ok=True)
    from_parquet = parquet and out.exists() and not sink.exists()
    if from_parquet:
        done, failed = parquet_status(out)
    else:
        done, failed = _resume_state(sink, lambda m: note(args, m))
    wanted = {safe_name(f) for f in files}
    retry = set() if getattr(args, "no_retry_failed", False) else failed & wanted
    done -= retry
    todo = [f for f in files if safe_name(f) not in done]
    if done or retry:
        note(args, f"resuming: {len(files) - len(todo)} of {len(files)} file(s) already in "
                   f"{sink if sink.exists() else out}" + (f"; {len(retry)} failed file(s) analysed again "
                                                          "(--no-retry-failed keeps them)" if retry else ""))
    if not todo:
        if parquet and sink.exists():  # a run killed before its conversion
            _finish_parquet(sink, out)
        note(args, f"nothing to do: every file is already in {out} (--overwrite starts anew)")
        return _exit_code(args, out, len(failed & wanted), len(wanted))
    engine = _engine(args, sink.suffix == ".jsonl")  # the model, or Ray started (or connected): errors first
    if from_parquet:
        try:
            parquet_to_csv(out, sink)  # resume: the rows so far, then the new ones; converted back at the end
        except OSError as exc:
            sink.unlink(missing_ok=True)
            raise OutputError(f"cannot write {sink} (for --out {out}): {exc.strerror or exc}") from None
    if retry and sink.exists():
        _drop_sources(sink, retry)
    new = not sink.exists() or sink.stat().st_size == 0
    columns = csv_columns()
    n_faces = n_err = n_img = 0
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", file=sys.stderr)
    writer = None
    try:
        writer = _RowWriter(sink, out)
        if new and sink.suffix == ".csv":
            buf = io.StringIO()
            csv.DictWriter(buf, columns, lineterminator=CSV_LINE_END).writeheader()
            writer.write(buf.getvalue(), counts=False)
        for text, faces, bad in engine.results(todo):
            # One write per file, on disk at once: a file is there whole or not at all (resume redoes it).
            writer.write(text)
            n_img += 1
            n_err += bad
            n_faces += faces
            if bar is not None:
                bar.update(1)
    finally:
        if writer is not None:
            writer.close()
        engine.close()
        if bar is not None:
            bar.close()
        if parquet and sink.exists():
            _finish_parquet(sink, out)  # also on Ctrl-C: what was done is in the Parquet file
        note(args, f"{n_img} image(s), {n_faces} face(s), {n_err} failed -> {out}")
    return _exit_code(args, out, len((failed - retry) & wanted) + n_err, len(wanted))


def _exit_code(args: argparse.Namespace, out: Path, n_failed: int, n_files: int) -> int:
    """The exit status of the output's state for the files given (see EXIT_CODES): 0 none failed, 1 all, 3 some."""
    if not n_failed:
        return 0
    if n_failed >= n_files:
        print(f"facemtl batch: error: every file failed ({n_failed}); the reasons are in the error rows of {out}",
              file=sys.stderr)
        return 1
    note(args, f"{n_failed} of {n_files} file(s) failed: see the error rows of {out} (exit status 3)")
    return 3


def _finish_parquet(sink: Path, out: Path) -> None:
    """Convert the collected CSV rows into ``out`` (replaced whole) and remove them; should the conversion
    fail, the rows stay in ``sink`` and the next run starts from them."""
    try:
        csv_to_parquet(sink, out)
    except OSError as exc:
        Path(str(out) + ".tmp").unlink(missing_ok=True)
        raise OutputError(f"cannot write --out {out}: {exc.strerror or exc}; the rows so far are kept in {sink} "
                          "(rerun the same command to convert them)") from None
    sink.unlink()

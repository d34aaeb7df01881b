"""facemtl batch DIR --out results.csv|.jsonl : one row per face (and per image without faces), per-file error
records, resume by skipping files already in the output, and nothing lost on Ctrl-C."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import InvalidInputError
from .._rows import csv_columns, csv_rows
from ._common import add_analyzer_args, build_analyzer, expand_inputs, note


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="analyse a folder into a CSV or JSONL file",
                       description="Analyse every image of a folder (or files/globs) into CSV or JSON Lines.")
    p.add_argument("inputs", nargs="+", metavar="DIR|IMAGE|GLOB")
    p.add_argument("--out", required=True, help="output file: .csv (one row per face) or .jsonl (one line per image)")
    add_analyzer_args(p)
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--overwrite", action="store_true", help="start a new output instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


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
    with open(out, newline="") as f:
        return {row["file"] for row in csv.DictReader(f) if row.get("file")}


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix not in (".csv", ".jsonl"):
        raise InvalidInputError(f"--out must end in .csv or .jsonl, got {out.name!r}")
    files = expand_inputs(args.inputs, args.recursive)
    if args.overwrite and out.exists():
        out.unlink()
    done = _done_files(out)
    todo = [f for f in files if f not in done]
    if done:
        note(args, f"resuming: {len(files) - len(todo)} of {len(files)} file(s) already in {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    analyzer = build_analyzer(args)
    new = not out.exists() or out.stat().st_size == 0
    n_faces = n_err = n_img = 0
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="img", file=sys.stderr)
    with open(out, "a", newline="") as fh:
        writer = csv.DictWriter(fh, csv_columns(), extrasaction="ignore") if out.suffix == ".csv" else None
        if writer is not None and new:
            writer.writeheader()
        try:
            for res in analyzer.analyze_many(todo, errors="record"):
                if writer is not None:
                    writer.writerows(csv_rows(res))
                else:
                    rec = res.to_dict() if hasattr(res, "faces") else {"source": res.source, "error": res.error}
                    fh.write(json.dumps(rec) + "\n")
                fh.flush()  # every finished file is on disk: Ctrl-C loses nothing already done
                n_img += 1
                n_err += 0 if hasattr(res, "faces") else 1
                n_faces += len(getattr(res, "faces", []))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            note(args, f"{n_img} image(s), {n_faces} face(s), {n_err} failed -> {out}")
    return 0

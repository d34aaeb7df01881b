"""facemtl evaluate --model CKPT [--utkface DIR] [--fer2013 DIR_OR_CSV] [--manifest CSV] [--split val|all]
[--by ATTRS] [--min-count N] [--json OUT] [--report DIR] : every metric per task, MAE per age band, confusion
matrices, per-group fairness table."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ._common import add_eval_args, eval_config, print_eval_header


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on labelled data",
                       description="Compute every metric per task, MAE per age band, confusion matrices and a "
                                   "per-group table (ethnicity x gender x age band).")
    add_eval_args(p)
    p.add_argument("--json", metavar="OUT", help="also write the full report as JSON to this file")
    p.add_argument("--report", metavar="DIR", help="also write an HTML report (index.html with charts, tables and a "
                                                    "prediction gallery) plus report.json and CSVs into this folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.evaluate import evaluate
    from ..report._format import json_text
    from ..report.text import format_by_source, format_fairness, format_metrics

    cfg = eval_config(args)
    if getattr(args, "report", None):
        # the report's scatter plot, error histogram and gallery need per-image data
        cfg = dataclasses.replace(cfg, keep_samples=True)
    report = evaluate(cfg)
    samples = report.pop("samples", None) if not getattr(args, "keep_samples", False) else report.get("samples")
    print_eval_header(report)
    print("per source:\n" + format_by_source(report) + "\n")
    print(format_metrics(report["metrics"]))
    print()
    print(format_fairness(report["fairness"], detail=False))
    if "calibration" in report:
        from ..report.text import format_calibration

        print()
        print(format_calibration(report["calibration"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json_text(report))
        print(f"\nfull report written to {args.json}", file=sys.stderr)
    if getattr(args, "report", None):
        from ..report.html import write_report

        index = write_report(report, args.report, samples=samples)
        print(index)
    return 0

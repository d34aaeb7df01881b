"""facemtl evaluate --model CKPT [--utkface DIR] [--fer2013 DIR_OR_CSV] [--manifest CSV] [--split val|all]
[--json OUT] [--report DIR] : every metric per task, MAE per age band, confusion matrices, per-group fairness table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..evaluate.evaluate import SPLITS, EvaluateConfig
from ._args import add_dataclass_args, config_from_args

HELP = {"model": "checkpoint (default: the model shipped with facemtl)", "utkface": "UTKFace folder",
        "fer2013": "FER2013 folder or fer2013.csv", "manifest": "CSV manifest (path + labels)",
        "limit": "at most this many images per source", "fairness_min_count": "smallest group counted in gaps",
        "bootstrap": "bootstrap resamples for the fairness confidence intervals (0: none)"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on labelled data",
                       description="Compute every metric per task, MAE per age band, confusion matrices and a "
                                   "per-group table (ethnicity x gender x age band).")
    add_dataclass_args(p, EvaluateConfig, skip=("split",), help_=HELP)
    p.add_argument("--split", choices=SPLITS, default=argparse.SUPPRESS,
                   help="val: the checkpoint's seeded validation split and FER2013 PublicTest; all: every labelled "
                        "image given (a separate test set) (default: val)")
    p.add_argument("--json", metavar="OUT", help="also write the full report as JSON to this file")
    p.add_argument("--report", metavar="DIR", help="also write an HTML report (index.html with charts, tables and a "
                                                    "prediction gallery) plus report.json and CSVs into this folder")
    p.set_defaults(func=run)


def _fairness_summary(report: dict) -> str:
    lines = ["fairness (worst and best group per task, groups with n >= min_count):"]
    for task, tab in report.get("tasks", {}).items():
        w, b, gap = tab.get("worst_group"), tab.get("best_group"), tab.get("gap")
        if not w or gap is None:
            lines.append(f"  {task}: not enough labelled groups")
            continue
        def fmt(g: dict) -> str:
            v = g["value"]
            val = f"{v:.2f}" if tab["metric"] == "mae" else f"{v:.1%}"
            return f"{' & '.join(str(x) for x in g['group'].values())} {val} (n={g['n']})"
        gap_s = f"{gap:.2f}" if tab["metric"] == "mae" else f"{gap:.1%}"
        lines.append(f"  {task} ({tab['metric']}): worst {fmt(w)}; best {fmt(b)}; gap {gap_s}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.evaluate import evaluate
    from ..evaluate.metrics import format_metrics

    cfg = config_from_args(EvaluateConfig, args)
    if getattr(args, "report", None):
        cfg.keep_samples = True  # the report's scatter plot, error histogram and gallery need per-image data
    report = evaluate(cfg)
    samples = report.pop("samples", None) if not getattr(args, "keep_samples", False) else report.get("samples")
    d = report["data"]
    print(f"model: {report['model']['checkpoint']}")
    print(f"data: split={d['split']} images={d['n_images']} {json.dumps(d['by_source'])}; skipped: "
          f"{json.dumps(d['skipped'])}\n")
    print(format_metrics(report["metrics"]))
    print()
    print(_fairness_summary(report["fairness"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"\nfull report written to {args.json}", file=sys.stderr)
    if getattr(args, "report", None):
        from ..evaluate.report import write_report

        index = write_report(report, args.report, samples=samples)
        print(index)
    return 0

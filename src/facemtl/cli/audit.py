"""facemtl audit [--model CKPT] [--utkface DIR] [--fer2013 DIR_OR_CSV] [--manifest CSV] [--split val|all]
[--by ATTRS] [--min-count N] [--bootstrap N] [--out DIR] [--json FILE] : the fairness audit on its own: the
headline metric per group (each attribute and each crossing) with n and bootstrap CIs, worst/best group and
gap per task, and a plain-language summary; for a calibrated model, the age interval coverage per ethnicity x
gender group (measured on the evaluation half of the held-out images)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DatasetError
from ._common import add_eval_args, eval_config, print_eval_header

_NO_GROUPS = ("FER2013 has no ethnicity, gender or age labels; give --utkface, or a --manifest with ethnicity, "
              "gender and/or age columns")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="fairness audit: metrics per group, worst group, gaps with CIs",
                       description="Run the model on labelled data and compare its headline metric (accuracy; MAE "
                                   "for age) across groups: each of ethnicity, gender and age band and their "
                                   "crossings, with counts and bootstrap confidence intervals; per task the worst "
                                   "and best group, the gap and a plain-language summary. Groups smaller than "
                                   "--min-count are listed as too few and not compared. For a calibrated model, "
                                   "also how often the age interval contains the true age per ethnicity x gender "
                                   "group.")
    add_eval_args(p, skip=("keep_samples",))
    p.add_argument("--out", metavar="DIR", help="also write fairness.csv, fairness.json (with the calibration "
                                                "measurements of a calibrated model) and audit.html (a "
                                                "self-contained page) into this folder")
    p.add_argument("--json", metavar="FILE", help="also write the audit as JSON (as fairness.json) to this file")
    p.set_defaults(func=run)


def _has_groups(fair: dict) -> bool:
    return any(tab.get("rows") for tab in fair.get("tasks", {}).values())


def run(args: argparse.Namespace) -> int:
    from ..evaluate.evaluate import evaluate
    from ..report._format import json_text
    from ..report.html import audit_data, write_audit
    from ..report.text import format_fairness

    cfg = eval_config(args)
    if cfg.fer2013 and not (cfg.utkface or cfg.manifest):
        raise DatasetError(f"nothing to audit: {_NO_GROUPS}")
    report = evaluate(cfg)
    fair = report["fairness"]
    if not _has_groups(fair):
        raise DatasetError(f"nothing to audit: none of the {report['data']['n_images']} images has both a task "
                           f"label and a group label ({', '.join(cfg.group_keys)}). {_NO_GROUPS}")
    print_eval_header(report)
    print(format_fairness(fair))
    if report.get("calibration") is not None:
        from ..report.text import format_age_coverage

        print()
        print(format_age_coverage(report["calibration"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json_text(audit_data(report)))
        print(f"\naudit written to {args.json}", file=sys.stderr)
    if args.out:
        page = write_audit(report, args.out)
        print(f"\n{page}")
    return 0

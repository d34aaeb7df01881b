"""facemtl calibrate [--model M] [--utkface DIR] [--fer2013 DIR] [--fairface DIR] [--celeba-gender DIR]
[--manifest CSV] --out FILE : fit temperature scaling per head and conformal age intervals on the calibration half
of the held-out data, and write the model with them stored inside."""
from __future__ import annotations

import argparse

from ._common import add_eval_args, eval_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit calibrated probabilities and age intervals, store them in the model",
                       description="Fit one temperature per classification head and split-conformal age intervals "
                                   "(Mondrian by predicted age group) on the calibration half of each source's "
                                   "held-out images, and write a copy of the model (.onnx or .pt) that carries "
                                   "them. `facemtl evaluate` then reports coverage, interval width and ECE before "
                                   "and after on the other half.")
    add_eval_args(p, skip=("keep_samples", "bootstrap", "detector", "age_interval"))
    p.add_argument("--out", required=True, help="the calibrated model file (same format as --model)")
    p.add_argument("--min-group", type=int, default=100,
                   help="an age group with fewer calibration faces borrows its neighbours' (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate.calibrate import fit_calibration, write_calibrated
    from ..report._format import format_temperatures

    if args.min_group < 10:
        args.usage_error(f"--min-group must be at least 10, got {args.min_group}")
    calibration, _, src = fit_calibration(eval_config(args), min_group=args.min_group)
    out = write_calibrated(src, args.out, calibration)
    temps = format_temperatures(calibration.temperatures)
    age = calibration.age
    widths = ""
    if age is not None:
        widths = "; 90% half-widths (years) by predicted age group: " + ", ".join(
            f"{g} {age.half_width(g, 0.9):.1f}" for g in age.scores)
    print(f"wrote {out} (calibrated on {calibration.fitted_on['images']} images, "
          f"{calibration.fitted_on['labelled']}): {temps}{widths}")
    return 0

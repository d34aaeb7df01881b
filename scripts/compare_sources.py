"""Print the cross-dataset table of MODEL_CARD.md: one row per (source, path, model) from several
`facemtl evaluate --json` reports (e.g. the old and the new model, dataset crops and the detector path).

Usage: python scripts/compare_sources.py NAME=REPORT.json [NAME=REPORT.json ...]
"""
from __future__ import annotations

import json
import sys

from facemtl.report._format import SHARE_METRICS
from facemtl.tasks import get_task, list_tasks

# How a figure of a task's ``per_source`` is headed ("age MAE", "emotion (FER+ labels)", "ethnicity balanced").
HEADS = {"mae": "MAE", "accuracy": "", "interval.in_bin": "in bin", "ferplus.accuracy": "(FER+ labels)",
         "balanced_accuracy": "balanced"}


def columns() -> list[tuple[str, object]]:
    """(heading, what) per column: the ``per_source`` figures of every registered task, each regression task's
    MAE per band after its headline (``age MAE 0-19/20-39/40-59/60+``)."""
    cols: list[tuple[str, object]] = [("n", None)]
    for name in list_tasks():
        spec = get_task(name)
        for key in spec.per_source:
            share = key.rsplit(".", 1)[-1] in SHARE_METRICS | {"in_bin"}
            cols.append((f"{name} {HEADS.get(key, key)}".strip(), (name, key, 100 if share else 1,
                                                                   ".1f" if share else ".2f")))
            if key == spec.headline and spec.slice_grouping:
                bands = "/".join(g for g, _ in spec.grouping(spec.slice_grouping))
                cols.append((f"{name} MAE {bands}", ("bands", name)))
    return cols


COLS = columns()


def cell(m: dict, spec) -> str:
    if spec[0] == "bands":
        a = m.get(spec[1], {})
        if not a.get("n"):
            return ""
        return " / ".join("" if v.get("mae") is None else f"{v['mae']:.1f}" for v in a.get("mae_by_band", {}).values())
    task, key, mult, fmt = spec
    node = m.get(task, {})
    if not (node.get("n") or key.startswith("interval")):
        return ""
    for k in key.split("."):
        node = node.get(k) if isinstance(node, dict) else None
    return "" if node is None else format(float(node) * mult, fmt)


def main(args: list[str]) -> None:
    reports = [(a.split("=", 1)[0], json.load(open(a.split("=", 1)[1]))) for a in args]
    print("| source | model | path | " + " | ".join(c[0] for c in COLS) + " |")
    print("|---|---|---|" + "---|" * len(COLS))
    sources = sorted({s for _, r in reports for s in r.get("by_source", {})})
    for src in sources:
        for name, r in reports:
            m = r.get("by_source", {}).get(src)
            if m is None:
                continue
            n = max(int(v.get("n", 0) or v.get("interval", {}).get("n", 0)) for v in m.values())
            missed = sum(v for k, v in r["data"]["skipped"].items() if k.startswith(f"{src}: no face detected"))
            found = f" ({100 * n / (n + missed):.1f}% found)" if missed else ""
            cells = [f"{n}{found}"] + [cell(m, spec) for _, spec in COLS[1:]]
            print(f"| {src} | {name} | {r['data'].get('path', 'crops')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

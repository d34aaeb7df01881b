"""Print the cross-dataset table of MODEL_CARD.md: one row per (source, path, model) from several
`facemtl evaluate --json` reports (e.g. the old and the new model, dataset crops and the detector path).

Usage: python scripts/compare_sources.py NAME=REPORT.json [NAME=REPORT.json ...]
"""
from __future__ import annotations

import json
import sys

COLS = [("n", None), ("age MAE", ("age", "mae", 1, ".2f")), ("age MAE 0-19/20-39/40-59/60+", "bands"),
        ("age in bin", ("age", "interval.in_bin", 100, ".1f")),
        ("gender", ("gender", "accuracy", 100, ".1f")), ("emotion", ("emotion", "accuracy", 100, ".1f")),
        ("emotion (FER+ labels)", ("emotion", "ferplus.accuracy", 100, ".1f")),
        ("ethnicity", ("ethnicity", "accuracy", 100, ".1f")),
        ("ethnicity balanced", ("ethnicity", "balanced_accuracy", 100, ".1f"))]


def cell(m: dict, spec) -> str:
    if spec == "bands":
        a = m.get("age", {})
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

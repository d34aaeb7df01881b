"""Print the markdown tables of MODEL_CARD.md from a `facemtl evaluate --json REPORT` file.
Usage: python scripts/report_tables.py REPORT.json

The tasks, their figures (each task spec's ``summary``) and the fairness crossing (the first two classification
slices, ethnicity x gender) come from the task registry.
"""
from __future__ import annotations

import json
import sys
from functools import partial

from facemtl.evaluate.calibration_report import coverage_groups
from facemtl.report._format import SHARE_METRICS, number, percent
from facemtl.tasks import get_task, list_tasks

pct = partial(percent, sign="")  # a share in percent, without the sign ("n/a" when missing)

NAMES = {"mae": "MAE", "rmse": "RMSE", "r2": "R²", "cs5": "CS@5", "macro_f1": "macro-F1", "f1": "F1",
         "balanced_accuracy": "balanced accuracy"}


def _figure(m: dict, key: str, signed: bool) -> str:
    """One figure of a task's row: a share in percent (with the sign in a row of non-shares: "12.5%"), R² with
    three decimals, anything else with two."""
    v = m[key]
    if key in SHARE_METRICS:
        return pct(v) + ("%" if signed else "")
    return f"{v:.3f}" if key == "r2" else f"{v:.2f}"


def main(path: str) -> None:
    r = json.load(open(path))
    m = r["metrics"]
    specs = [get_task(n) for n in list_tasks() if n in m]
    print(f"split: {r['data']['split']} ({json.dumps(r['data']['by_source'])})\n")
    print("| task | metric | value |\n|---|---|---|")
    for spec in specs:
        t, keys = m[spec.name], spec.summary
        names = " / ".join(NAMES.get(k, k) for k in keys)
        if "positive_label" in t and any(k in ("precision", "recall", "f1") for k in keys):
            names += f" ({t['positive_label']})"
        signed = spec.headline not in SHARE_METRICS
        print(f"| {spec.name} | {names} | {' / '.join(_figure(t, k, signed) for k in keys)} |")
    for spec in specs:
        if spec.slice_grouping and "mae_by_band" in m[spec.name]:
            print(f"\nMAE by {spec.name} band: " + ", ".join(f"{k} {v['mae']:.2f} (n={v['n']})"
                                                          for k, v in m[spec.name]["mae_by_band"].items()
                                                          if v["mae"] is not None))
    for spec in specs:
        if spec.kind == "classification" and len(spec.labels) > 2:
            print(f"\n{spec.name} F1 per class: " + ", ".join(f"{k} {pct(v['f1'])}"
                                                            for k, v in m[spec.name]["per_class"].items()))
    fair = r["fairness"]["tasks"]
    (rows_key, cols_key), _ = coverage_groups()
    grouping = f"{rows_key} x {cols_key}"
    for spec in (get_task(n) for n in list_tasks() if get_task(n).sensitive):
        task = spec.name
        tab = fair.get(task)
        if not tab:
            continue
        unit = "MAE (years)" if tab["metric"] == "mae" else "accuracy %"
        cols = get_task(cols_key).labels
        print(f"\n**{task}: {unit} by {grouping}** (95% bootstrap CI)\n")
        print(f"| {rows_key} | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols))
        cells: dict[tuple[str, str], str] = {}
        for row in tab["rows"]:
            if row["grouping"] != grouping:
                continue
            v, lo, hi = row["value"], row.get("ci_low"), row.get("ci_high")
            f = number if tab["metric"] == "mae" else pct
            ci = f" [{f(lo)}-{f(hi)}]" if lo is not None else ""
            cells[(row["group"][rows_key], row["group"][cols_key])] = f"{f(v)}{ci} (n={row['n']})"
        for value in get_task(rows_key).labels:
            print(f"| {value} | " + " | ".join(cells.get((value, c), "n/a") for c in cols) + " |")
        w, b = tab["worst_group"], tab["best_group"]
        if w and b:
            print(f"\nworst group: {w['group']} {w['value']:.3f} (n={w['n']}); best: {b['group']} {b['value']:.3f} "
                  f"(n={b['n']}); largest gap {tab['gap']:.3f} (groups with n >= {tab['min_count']})")


if __name__ == "__main__":
    main(sys.argv[1])

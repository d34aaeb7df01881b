"""Print the markdown tables of MODEL_CARD.md from a `facemtl evaluate --json REPORT` file.
Usage: python scripts/report_tables.py REPORT.json
"""
from __future__ import annotations

import json
import sys
from functools import partial

from facemtl.report._format import number, percent

pct = partial(percent, sign="")  # a share in percent, without the sign ("n/a" when missing)


def main(path: str) -> None:
    r = json.load(open(path))
    m = r["metrics"]
    a, g, e, t = m["age"], m["gender"], m["emotion"], m["ethnicity"]
    print(f"split: {r['data']['split']} ({json.dumps(r['data']['by_source'])})\n")
    print("| task | metric | value |\n|---|---|---|")
    print(f"| age | MAE / RMSE / R² / CS@5 | {a['mae']:.2f} / {a['rmse']:.2f} / {a['r2']:.3f} / {pct(a['cs5'])}% |")
    print(f"| gender | accuracy / precision / recall / F1 (female) | {pct(g['accuracy'])} / {pct(g['precision'])} / "
          f"{pct(g['recall'])} / {pct(g['f1'])} |")
    print(f"| emotion | accuracy / macro-F1 | {pct(e['accuracy'])} / {pct(e['macro_f1'])} |")
    print(f"| ethnicity | accuracy / balanced accuracy / macro-F1 | {pct(t['accuracy'])} / "
          f"{pct(t['balanced_accuracy'])} / {pct(t['macro_f1'])} |")
    print("\nMAE by age band: " + ", ".join(f"{k} {v['mae']:.2f} (n={v['n']})" for k, v in a["mae_by_band"].items()
                                          if v["mae"] is not None))
    print("\nemotion F1 per class: " + ", ".join(f"{k} {pct(v['f1'])}" for k, v in e["per_class"].items()))
    print("\nethnicity F1 per class: " + ", ".join(f"{k} {pct(v['f1'])}" for k, v in t["per_class"].items()))
    fair = r["fairness"]["tasks"]
    for task in ("age", "gender", "ethnicity"):
        tab = fair.get(task)
        if not tab:
            continue
        unit = "MAE (years)" if tab["metric"] == "mae" else "accuracy %"
        print(f"\n**{task}: {unit} by ethnicity x gender** (95% bootstrap CI)\n")
        print("| ethnicity | male | female |\n|---|---|---|")
        cells: dict[tuple[str, str], str] = {}
        for row in tab["rows"]:
            if row["grouping"] != "ethnicity x gender":
                continue
            v, lo, hi = row["value"], row.get("ci_low"), row.get("ci_high")
            f = number if tab["metric"] == "mae" else pct
            ci = f" [{f(lo)}-{f(hi)}]" if lo is not None else ""
            cells[(row["group"]["ethnicity"], row["group"]["gender"])] = f"{f(v)}{ci} (n={row['n']})"
        for eth in ("white", "black", "asian", "indian", "others"):
            print(f"| {eth} | {cells.get((eth, 'male'), 'n/a')} | {cells.get((eth, 'female'), 'n/a')} |")
        w, b = tab["worst_group"], tab["best_group"]
        if w and b:
            print(f"\nworst group: {w['group']} {w['value']:.3f} (n={w['n']}); best: {b['group']} {b['value']:.3f} "
                  f"(n={b['n']}); largest gap {tab['gap']:.3f} (groups with n >= {tab['min_count']})")


if __name__ == "__main__":
    main(sys.argv[1])

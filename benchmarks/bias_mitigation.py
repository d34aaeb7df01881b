"""Bias mitigation under the same budget: no mitigation vs group-balanced sampling vs loss reweighting.

Trains one model per mode on UTKFace (age, gender, ethnicity; same backbone, input size, epochs, batch
size, learning rate, seed and data; ``TrainConfig.balance`` is the only difference), then evaluates each
on the UTKFace validation split: the overall figure per task, the worst group and the largest gap
(groups by ``--group-keys`` and their crossings, groups with fewer than ``--min-count`` faces ignored),
with 95% bootstrap intervals, plus ethnicity balanced accuracy and macro-F1. Runs live in ``--out`` and
are resumed, so an interrupted benchmark continues where it stopped. The final model of each run is
evaluated (no epoch picked on the validation data).

    PYTHONPATH=src python benchmarks/bias_mitigation.py [--epochs 2] [--input-size 64] [--modes none,sample,reweight]

Time on 2 CPU cores: about 5 minutes per mode and epoch at 64 px.
"""
from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _common import print_load_end, setup, table
from _training import add_budget_args, budget_config, load_sources, task_metrics, train_resumable, val_outputs

from facemtl.evaluate.fairness import build_records, fairness_report
from facemtl.train.balance import BALANCE_MODES
from facemtl.train.loop import TrainConfig

TASKS = ("age", "gender", "ethnicity")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default=",".join(BALANCE_MODES))
    ap.add_argument("--balance-by", default="ethnicity", help="attributes balanced in training (comma-separated)")
    ap.add_argument("--balance-power", type=float, default=1.0, help="1: fully balanced; 0.5: halfway")
    ap.add_argument("--group-keys", default="ethnicity,gender", help="attributes the audit groups by")
    ap.add_argument("--min-count", type=int, default=30)
    ap.add_argument("--bootstrap", type=int, default=500)
    add_budget_args(ap, "runs/bench_bias", "at most this many UTKFace images (quick trial)")
    a = ap.parse_args()
    setup(a.threads)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    balance_by = tuple(k.strip() for k in a.balance_by.split(",") if k.strip())
    group_keys = tuple(k.strip() for k in a.group_keys.split(",") if k.strip())
    sources = load_sources(fer2013=None, limit=a.limit)
    results: dict[str, dict] = {}
    for mode in modes:
        power = "" if mode == "none" or a.balance_power == 1.0 else f"-p{a.balance_power:g}"
        cfg = TrainConfig(out=str(a.out / f"{mode}{power}-s{a.seed}"), tasks=TASKS, balance=mode, balance_by=balance_by,
                          balance_power=a.balance_power, **budget_config(a))
        t0 = time.time()
        run = train_resumable(cfg, sources)
        outputs = val_outputs(run["last"], sources)
        metrics = {t: task_metrics(outputs, t) for t in TASKS}
        d = outputs["utkface"]
        recs = build_records({t: d[f"true/{t}"] for t in TASKS}, {t: d[f"pred/{t}"] for t in TASKS}, TASKS)
        fair = fairness_report(recs, TASKS, group_keys, a.min_count, n_boot=a.bootstrap)
        results[mode] = {"train_s": run.get("elapsed_s"), "metrics": metrics, "fairness": fair["tasks"]}
        print(f"{mode}: trained and evaluated in {time.time() - t0:.0f} s", flush=True)

    def worst(mode: str, task: str) -> str:
        w = results[mode]["fairness"][task].get("worst_group")
        if not w:
            return "-"
        v = w["value"]
        val = f"{v:.2f}" if task == "age" else f"{100 * v:.1f}"
        return f"{val} ({'/'.join(str(x) for x in w['group'].values())}, n={w['n']})"

    def gap(mode: str, task: str) -> str:
        g = results[mode]["fairness"][task].get("gap")
        return "-" if g is None else f"{g:.2f}" if task == "age" else f"{100 * g:.1f}"

    rows = []
    for mode in modes:
        m = results[mode]["metrics"]
        rows.append([mode, m["age"]["mae"], worst(mode, "age"), gap(mode, "age"),
                     100 * m["gender"]["accuracy"], worst(mode, "gender"), gap(mode, "gender"),
                     100 * m["ethnicity"]["accuracy"], 100 * m["ethnicity"]["balanced_accuracy"],
                     100 * m["ethnicity"]["macro_f1"], worst(mode, "ethnicity"), gap(mode, "ethnicity")])
    table(["mode", "age MAE", "worst group MAE", "gap", "gender %", "worst group %", "gap", "eth %",
           "eth bal %", "eth F1 %", "worst group %", "gap"], rows,
          title=f"UTKFace val, {a.backbone} @{a.input_size} px, {a.epochs} epochs, balanced by "
                f"{'+'.join(balance_by)} (power {a.balance_power:g}); groups by {'+'.join(group_keys)} "
                f"(and crossings), n >= {a.min_count}")
    base = "none" if "none" in results else None
    if base:
        print("\nchange vs none (negative MAE and positive % are better):")
        for mode in modes:
            if mode == base:
                continue
            m, b = results[mode]["metrics"], results[base]["metrics"]
            f, fb = results[mode]["fairness"], results[base]["fairness"]
            parts = [f"age MAE {m['age']['mae'] - b['age']['mae']:+.2f}"]
            for t in ("gender", "ethnicity"):
                parts.append(f"{t} {100 * (m[t]['accuracy'] - b[t]['accuracy']):+.1f} pts")
            d_bal = m['ethnicity']['balanced_accuracy'] - b['ethnicity']['balanced_accuracy']
            parts.append(f"eth balanced {100 * d_bal:+.1f} pts")
            for t in TASKS:
                w, wb = f[t].get("worst_group"), fb[t].get("worst_group")
                if w and wb:
                    scale = 1 if t == "age" else 100
                    parts.append(f"worst {t} {scale * (w['value'] - wb['value']):+.{2 if t == 'age' else 1}f}")
            print(f"  {mode}: " + "; ".join(parts))
    a.out.mkdir(parents=True, exist_ok=True)
    name = f"results-p{a.balance_power:g}-s{a.seed}.json"
    (a.out / name).write_text(json.dumps(results, indent=1, default=str))
    print(f"\nfull results: {a.out / name}")
    print_load_end()


if __name__ == "__main__":
    main()

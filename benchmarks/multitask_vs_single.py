"""One multi-task model vs four single-task models, same backbone, data and budget: the original design's table.

Trains (or resumes, from ``--out``) one model with all four heads on UTKFace + FER2013 and four
single-task models, each on the dataset labelled for its task (age, gender, ethnicity: UTKFace; emotion:
FER2013), with the same backbone, input size, epochs, batch size, learning rate and seed. Then measures,
on this machine's CPU:

- parameters; inference time per face (PyTorch, batch 1 and batch 32; the four single-task models run one
  after another, as an application would need them); peak memory of a process that loads the model(s)
  and runs a batch of 32 (resident memory above the same process right after ``import torch``);
- training time (wall clock, this machine, as measured while training);
- each task's validation metric (UTKFace seeded validation split; FER2013 PublicTest) and the average
  performance: the mean of the three accuracies and (1 - age MAE / 10), the score ``facemtl train`` uses to
  pick its best epoch. The final model of each run is evaluated.

    PYTHONPATH=src python benchmarks/multitask_vs_single.py [--epochs 2] [--input-size 64] [--backbone lite0]

Time on 2 CPU cores at 64 px and 2 epochs: about 35 minutes (the multi-task run ~11, the four others ~20).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from _common import median, print_load_end, setup, table, time_calls
from _training import (
    HEADLINE,
    add_budget_args,
    average_performance,
    budget_config,
    load_sources,
    task_metrics,
    train_resumable,
    val_outputs,
)

from facemtl.models import load_checkpoint
from facemtl.tasks import list_tasks
from facemtl.train.loop import TrainConfig

SOURCE_OF = {"age": "utkface", "gender": "utkface", "ethnicity": "utkface", "emotion": "fer2013"}


def memory_probe(checkpoints: list[str], size: int, threads: int) -> None:
    """Child process: print peak RSS (MB) above the post-import baseline for loading + one batch of 32."""
    torch.set_num_threads(threads)
    x = torch.rand(32, 3, size, size)

    def status_kb(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"{field} not in /proc/self/status")

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    base = status_kb("VmRSS")
    models = [load_checkpoint(c)[0] for c in checkpoints]
    with torch.inference_mode():
        for m in models:
            m(x)
    print(json.dumps({"peak_mb": (status_kb("VmHWM") - base) / 1024}))


def peak_memory_mb(checkpoints: list[str], size: int, threads: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-probe", ",".join(checkpoints), "--size", str(size),
                          "--threads", str(threads)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_budget_args(ap, "runs/bench_mtl", "at most this many images per dataset (quick trial)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing time per model and batch size")
    ap.add_argument("--memory-probe", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_probe:
        return memory_probe(a.memory_probe.split(","), a.size, a.threads)
    setup(a.threads)
    sources = load_sources(limit=a.limit)
    tasks = list_tasks()
    common = budget_config(a)
    plans = {"multi-task": (tuple(tasks), None)} | {f"single: {t}": ((t,), {SOURCE_OF[t]}) for t in tasks}
    runs: dict[str, dict] = {}
    for name, (run_tasks, keep) in plans.items():
        t0 = time.time()
        src = [s for s in sources if keep is None or s.name in keep]
        cfg = TrainConfig(out=str(a.out / name.replace(": ", "-")), tasks=run_tasks, **common)
        res = train_resumable(cfg, src)
        outputs = val_outputs(res["last"], src)
        metrics = {t: task_metrics(outputs, t) for t in run_tasks}
        runs[name] = {"checkpoint": res["last"], "train_s": float(res["elapsed_s"]),
                      "headline": {f"{t}/{HEADLINE[t]}": float(m[HEADLINE[t]]) for t, m in metrics.items() if m},
                      "metrics": metrics}
        print(f"{name}: {json.dumps(runs[name]['headline'])} ({time.time() - t0:.0f} s)", flush=True)

    # inference: every configuration timed in the same interleaved rounds
    models = {n: load_checkpoint(r["checkpoint"])[0] for n, r in runs.items()}
    singles = [n for n in runs if n.startswith("single")]
    configs = {"multi-task": ["multi-task"], "4 single-task": singles}
    rng = np.random.default_rng(0)
    xs = {b: torch.from_numpy(rng.random((b, 3, a.input_size, a.input_size), dtype=np.float32)) for b in (1, 32)}
    times: dict[tuple[str, int], list[float]] = {}

    def call(names: list[str], b: int):
        def f() -> None:
            with torch.inference_mode():
                for n in names:
                    models[n](xs[b])
        return f

    for names in configs.values():
        for b in xs:
            call(names, b)()  # warm-up
    for _ in range(3):
        for cname, names in configs.items():
            for b in xs:
                times.setdefault((cname, b), []).extend(time_calls(call(names, b), a.seconds / 3))
    ms = {k: 1000 * median(v) / k[1] for k, v in times.items()}

    def params(names: list[str]) -> int:
        return sum(sum(p.numel() for p in models[n].parameters()) for n in names)

    mem = {c: peak_memory_mb([runs[n]["checkpoint"] for n in names], a.input_size, a.threads)
           for c, names in configs.items()}
    single_h = {k: v for n in singles for k, v in runs[n]["headline"].items()}
    multi_h = runs["multi-task"]["headline"]
    avg = {"multi-task": average_performance(multi_h), "4 single-task": average_performance(single_h)}
    train_s = {"multi-task": runs["multi-task"]["train_s"], "4 single-task": sum(runs[n]["train_s"] for n in singles)}

    def fmt(k: str, v: float) -> str:
        return f"{v:.2f}" if k.endswith("mae") else f"{100 * v:.1f}%"

    rows = [["parameters", f"{params(configs['multi-task']) / 1e6:.2f} M", f"{params(singles) / 1e6:.2f} M"],
            ["inference time per face, batch 1", f"{ms[('multi-task', 1)]:.1f} ms",
             f"{ms[('4 single-task', 1)]:.1f} ms"],
            ["inference time per face, batch 32", f"{ms[('multi-task', 32)]:.2f} ms",
             f"{ms[('4 single-task', 32)]:.2f} ms"],
            ["peak memory (CPU, batch 32)", f"{mem['multi-task']:.0f} MB", f"{mem['4 single-task']:.0f} MB"],
            ["training time (this CPU)", f"{train_s['multi-task'] / 60:.1f} min",
             f"{train_s['4 single-task'] / 60:.1f} min"]]
    for k in multi_h:
        rows.append([k.replace("/", " ").replace("mae", "MAE (years)"), fmt(k, multi_h[k]), fmt(k, single_h[k])])
    rows.append(["average performance", f"{100 * avg['multi-task']:.1f}%", f"{100 * avg['4 single-task']:.1f}%"])
    table(["", "multi-task", "4 single-task"], rows,
          title=f"{a.backbone} @{a.input_size} px, {a.epochs} epochs, batch {a.batch_size}, seed {a.seed}; "
                "UTKFace val + FER2013 PublicTest")
    per = [[n, f"{params([n]) / 1e6:.2f} M", f"{runs[n]['train_s'] / 60:.1f} min",
            *(fmt(k, v) for k, v in runs[n]["headline"].items())] for n in singles]
    table(["single-task model", "parameters", "training time", "metric"], per)
    a.out.mkdir(parents=True, exist_ok=True)
    summary = {"config": vars(a) | {"out": str(a.out)}, "runs": runs, "inference_ms_per_face":
               {f"{c}/b{b}": v for (c, b), v in ms.items()}, "peak_memory_mb": mem, "train_s": train_s,
               "average_performance": avg}
    (a.out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"\nfull results: {a.out / 'results.json'}")
    print_load_end()


if __name__ == "__main__":
    main()

"""Helpers for the benchmarks that train models: real data in memory, resumable runs, validation outputs.

Data: UTKFace and FER2013 from ``../shared/data``, deduplicated and split exactly as ``facemtl train``
does (seeded 90/10 UTKFace split, FER2013 PublicTest as validation), decoded once into the crop cache
at 112 px (``~/.cache/facemtl``); a model with a smaller input size sees the crops resized, as in training.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import DATA

from facemtl.evaluate.metrics import compute_task_metrics
from facemtl.models import load_checkpoint
from facemtl.tasks import get_task
from facemtl.train.data import SourceData, build_sources, gather_records
from facemtl.train.loop import TrainConfig, predict_arrays, selection_score, train

CACHE_SIZE = 112
HEADLINE = {"age": "mae", "gender": "accuracy", "emotion": "accuracy", "ethnicity": "accuracy"}


def add_budget_args(ap: argparse.ArgumentParser, out: str, limit_help: str) -> None:
    """The flags every training benchmark shares: what is trained, for how long, where."""
    ap.add_argument("--backbone", default="lite0")
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, help=limit_help)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(out))


def budget_config(a: argparse.Namespace) -> dict[str, Any]:
    """TrainConfig fields from those flags; every model of a comparison gets exactly these."""
    return {"backbone": a.backbone, "input_size": a.input_size, "epochs": a.epochs, "batch_size": a.batch_size,
            "lr": a.lr, "weight_decay": 0.01, "seed": a.seed, "patience": 1000, "threads": a.threads,
            "device": "cpu"}


def load_sources(utkface: Path | None = DATA / "utkface", fer2013: Path | None = DATA / "fer2013",
                 limit: int | None = None) -> list[SourceData]:
    """Every labelled image of the given datasets, with the seeded train/val split of ``facemtl train``."""
    missing = [str(p) for p in (utkface, fer2013) if p is not None and not p.exists()]
    if missing:
        sys.exit(f"data not found: {', '.join(missing)} (see ../shared/data/README.md)")
    t0 = time.time()
    records, counts, _ = gather_records(str(utkface) if utkface else None, str(fer2013) if fer2013 else None,
                                        limit=limit)
    sources, _ = build_sources(records, CACHE_SIZE)
    print(f"data: {json.dumps({k: dict(v) for k, v in counts.items()})} "
          f"({time.time() - t0:.0f} s to load)", flush=True)
    return sources


def copy_sources(sources: list[SourceData], names: set[str] | None = None) -> list[SourceData]:
    """Fresh SourceData objects (train() may move arrays) over the same memory, optionally only some sources."""
    return [SourceData(s.name, s.images, s.targets, s.split) for s in sources if names is None or s.name in names]


def train_resumable(cfg: TrainConfig, sources: list[SourceData]) -> dict[str, Any]:
    """Train, or finish/reuse a run already in ``cfg.out`` (a rerun of the benchmark continues where it stopped)."""
    cfg = dataclasses.replace(cfg, resume=True)  # elapsed_s then counts the training time of earlier sessions too
    res = train(cfg, copy_sources(sources))
    done = {k: v for k, v in res.items() if k != "history"}
    (Path(cfg.out) / "train_result.json").write_text(json.dumps(done, default=str))
    return done


def val_outputs(checkpoint: str, sources: list[SourceData]) -> dict[str, dict[str, np.ndarray]]:
    """Per source: decoded predictions, class probabilities and targets on its validation split.

    Returns ``{source: {"pred/<task>": (N,), "prob/<task>": (N, K), "true/<task>": (N,)}}``.
    """
    model, meta = load_checkpoint(checkpoint)
    size = meta["model_config"]["input_size"]
    out: dict[str, dict[str, np.ndarray]] = {}
    for src in sources:
        val = src.subset("val")
        if len(val) == 0:
            continue
        raw = predict_arrays(model, val.images, size)
        d: dict[str, np.ndarray] = {}
        for name, r in raw.items():
            values, probs = get_task(name).decode_raw(r)
            d[f"pred/{name}"] = values.numpy()
            if probs is not None and get_task(name).kind == "classification":
                d[f"prob/{name}"] = probs.numpy()
            d[f"true/{name}"] = val.targets[name].numpy()
        out[src.name] = d
    return out


def task_metrics(outputs: dict[str, dict[str, np.ndarray]], task: str) -> dict[str, Any] | None:
    """Every metric of one task over the validation samples labelled for it (pooled over sources)."""
    spec = get_task(task)
    ys, ps, prs = [], [], []
    for d in outputs.values():
        if f"pred/{task}" not in d:
            continue
        t = d[f"true/{task}"]
        lab = t >= 0 if spec.kind == "classification" else ~np.isnan(t)
        if lab.any():
            ys.append(t[lab])
            ps.append(d[f"pred/{task}"][lab])
            if f"prob/{task}" in d:
                prs.append(d[f"prob/{task}"][lab])
    if not ys:
        return None
    return compute_task_metrics(spec, np.concatenate(ys), np.concatenate(ps),
                                np.concatenate(prs) if prs else None)


def headline(metrics: dict[str, dict[str, Any] | None]) -> dict[str, float]:
    """``{"age/mae": ..., "gender/accuracy": ...}`` for the tasks present, plus the average performance."""
    h = {f"{t}/{HEADLINE[t]}": float(m[HEADLINE[t]]) for t, m in metrics.items() if m and t in HEADLINE}
    h["average"] = average_performance(h)
    return h


def average_performance(h: dict[str, float]) -> float:
    """One number over the four tasks, as the training loop picks its best epoch: the mean of the three
    accuracies and (1 - age MAE / 10) (so MAE 4.6 years counts as 54%)."""
    return selection_score(h)


def param_count(checkpoint: str) -> int:
    model, _ = load_checkpoint(checkpoint)
    return sum(p.numel() for p in model.parameters())

"""Is model B really better than model A? Per source and figure, B - A with a paired bootstrap 95% interval.

    facemtl evaluate ... --model A.pt --keep-samples --json a.json
    facemtl evaluate ... --model B.pt --keep-samples --json b.json
    python scripts/paired_compare.py a.json b.json [--resamples 2000] [--seed 0]

Both reports must come from the same images (same data, split and path: crops or a detector); they are paired by
each sample's ``key``, and images found by one run only (the detector path) are left out. The figures are each
task's accuracy and balanced accuracy (classification), the share of ages inside the labelled bin (an interval
label: FairFace), the accuracy on crowd-vote majorities (FER+), and the MAE (ages in years). One bootstrap resample
draws a source's images with replacement and recomputes both models' figures on the same draw, so what the two
models get right or wrong together cancels out. "B better" / "B worse" when the 95% interval of B - A excludes 0
(for MAE, lower is better); else "no clear difference".
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facemtl.evaluate.bootstrap import bootstrap_ci
from facemtl.evaluate.metrics import balanced_accuracy
from facemtl.tasks import find_task, in_interval


@dataclass(frozen=True)
class Figure:
    """One figure of one source: ``score(data, rows)`` of model A's and model B's per-image data; an error in
    years (MAE: lower is better) or a share (higher is better, printed in percent)."""

    name: str
    lower_is_better: bool
    a: Any
    b: Any
    score: Callable[[Any, np.ndarray], float]

    @property
    def percent(self) -> bool:
        return not self.lower_is_better

    @property
    def n(self) -> int:
        return len(self.a[0] if isinstance(self.a, tuple) else self.a)

    def values(self, rows: np.ndarray) -> tuple[float, float]:
        return self.score(self.a, rows), self.score(self.b, rows)

    def diff(self, rows: np.ndarray) -> float:
        """B - A on these rows (one resample scores both models on the same images)."""
        a, b = self.values(rows)
        return b - a


def _mean(data: np.ndarray, rows: np.ndarray) -> float:
    return float(np.mean(data[rows]))


def _balanced(data: tuple[np.ndarray, np.ndarray, int], rows: np.ndarray) -> float:
    true, pred, k = data
    return balanced_accuracy(true[rows], pred[rows], k)


def _samples(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise SystemExit(f"error: report not found: {path}")
    report = json.loads(path.read_text())
    samples = report.get("samples")
    if not samples:
        raise SystemExit(f"error: {path} has no per-image samples; run facemtl evaluate with --keep-samples --json")
    if any("key" not in s for s in samples):
        raise SystemExit(f"error: {path} was written by an older facemtl (its samples have no key)")
    return {s["key"]: s for s in samples}


def _figures(pairs: list[tuple[dict, dict]]) -> list[Figure]:
    """The figures the paired samples of one source support."""
    out: list[Figure] = []
    tasks = sorted({t for a, _ in pairs for t in (*a["true"], *a.get("true_interval", {}))})
    for task in tasks:
        spec = find_task(task)
        if spec is None:
            continue
        if spec.kind == "classification":
            index = {lab: i for i, lab in enumerate(spec.labels)}
            labelled = [(a, b) for a, b in pairs if a["true"].get(task) is not None]
            if labelled:
                t = np.array([index[a["true"][task]] for a, _ in labelled])
                pa, pb = (np.array([index[s[task]] for s in side]) for side in
                          ([a["pred"] for a, _ in labelled], [b["pred"] for _, b in labelled]))
                out.append(Figure(f"{task} accuracy", False, pa == t, pb == t, _mean))
                k = len(spec.labels)
                out.append(Figure(f"{task} balanced accuracy", False, (t, pa, k), (t, pb, k), _balanced))
            voted = [(a, b) for a, b in pairs if task in a.get("true_majority", {})]
            if voted:
                m = np.array([a["true_majority"][task] for a, _ in voted])
                va = np.array([a["pred"][task] for a, _ in voted]) == m
                vb = np.array([b["pred"][task] for _, b in voted]) == m
                out.append(Figure(f"{task} accuracy (crowd-vote majority)", False, va, vb, _mean))
            continue
        valued = [(a, b) for a, b in pairs if isinstance(a["true"].get(task), (int, float))]
        if valued:
            t = np.array([a["true"][task] for a, _ in valued], float)
            ea = np.abs(np.array([a["pred"][task] for a, _ in valued], float) - t)
            eb = np.abs(np.array([b["pred"][task] for _, b in valued], float) - t)
            out.append(Figure(f"{task} MAE", True, ea, eb, _mean))
        binned = [(a, b) for a, b in pairs if task in a.get("true_interval", {})]
        if binned:
            # an open bin ("70+") has no upper end: JSON writes its infinity as null
            lo, hi = np.array([[x if x is not None else math.inf for x in a["true_interval"][task]]
                               for a, _ in binned], float).T
            ia = in_interval(np.array([a["pred"][task] for a, _ in binned], float), lo, hi)
            ib = in_interval(np.array([b["pred"][task] for _, b in binned], float), lo, hi)
            out.append(Figure(f"{task} inside the labelled bin", False, ia, ib, _mean))
    return out


def compare(a: dict[str, dict], b: dict[str, dict], resamples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per source and figure: n, A, B, B - A and its paired bootstrap 95% interval, and the verdict."""
    keys = sorted(set(a) & set(b))
    rows = []
    for source in sorted({a[k]["source"] for k in keys}):
        pairs = [(a[k], b[k]) for k in keys if a[k]["source"] == source]
        for fig in _figures(pairs):
            va, vb = fig.values(np.arange(fig.n))
            low, high = bootstrap_ci(fig.diff, fig.n, n_boot=resamples, seed=seed)
            better = high < 0 if fig.lower_is_better else low > 0
            worse = low > 0 if fig.lower_is_better else high < 0
            rows.append({"source": source, "figure": fig.name, "n": fig.n, "a": va, "b": vb, "diff": vb - va,
                         "ci": [low, high], "percent": fig.percent,
                         "verdict": "B better" if better else "B worse" if worse else "no clear difference"})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", type=Path, help="the report of model A (facemtl evaluate --keep-samples --json)")
    p.add_argument("b", type=Path, help="the report of model B, on the same images")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args(argv)
    a, b = _samples(args.a), _samples(args.b)
    if not set(a) & set(b):
        print(f"error: {args.a} and {args.b} share no image: not the same data", file=sys.stderr)
        return 2
    rows = compare(a, b, args.resamples, args.seed)
    print("| source | figure | n | A | B | B - A | 95% interval | verdict |\n|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        scale, digits = (100, 1) if r["percent"] else (1, 2)
        lo, hi = (scale * x for x in r["ci"])
        print(f"| {r['source']} | {r['figure']} | {r['n']} | {scale * r['a']:.{digits}f} | {scale * r['b']:.{digits}f} "
              f"| {scale * r['diff']:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {r['verdict']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

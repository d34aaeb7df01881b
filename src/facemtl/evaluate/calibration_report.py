"""How well a calibrated model knows its limits, on the held-out images NOT used to fit the calibration.

``facemtl calibrate`` fits on one fixed half of the held-out images (:func:`facemtl.calibration.calibration_half`);
this report measures on the other half: the age interval's coverage and mean width per source and per
ethnicity x gender group (percentile-bootstrap intervals), and the expected calibration error (ECE) of every
classification head before (plain softmax) and after temperature scaling, per source. As text:
:func:`facemtl.report.text.format_calibration` and :func:`facemtl.report.text.format_age_coverage`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..calibration import Calibration, calibration_half
from ..groups import label_slices
from ..tasks import interval_task
from .bootstrap import bootstrap_mean_ci
from .metrics import expected_calibration_error

__all__ = ["calibration_report", "age_targets", "coverage_groups", "GROUP_MIN", "ECE_TARGET"]

GROUP_MIN = 100  # groups with fewer faces are listed, not held to the coverage target
ECE_TARGET = 0.03  # the target for every classification head on every source, after calibration
_TARGETS = {0.9: ((0.88, 0.93), 0.85)}  # level: (coverage band per source, floor per group); stated for 90% only


def age_targets(level: float) -> tuple[tuple[float, float], float] | None:
    """The coverage targets of an interval ``level``: ((low, high) per source, minimum per group of at least
    :data:`GROUP_MIN` faces), or None for a level no target is stated for (only 90% has one)."""
    for lvl, t in _TARGETS.items():
        if abs(float(level) - lvl) < 1e-9:
            return t
    return None


def coverage_groups() -> tuple[list[str], list[tuple[str, ...]]]:
    """The crossing the interval coverage is reported by: the first two classification slices (ethnicity,
    gender) and every combination of their labels, in order (``("white", "male"), ("white", "female")...``)."""
    specs = label_slices()[:2]
    combos: list[tuple[str, ...]] = [()]
    for spec in specs:
        combos = [(*c, lab) for c in combos for lab in spec.labels]
    return [s.name for s in specs], combos if specs else []


def _boot_ci(hits: np.ndarray, n_boot: int, seed: int = 0) -> list[float] | None:
    """95% percentile-bootstrap interval of the share of hits; None without resamples or under two faces."""
    if n_boot <= 0 or len(hits) < 2:
        return None
    return list(bootstrap_mean_ci(hits, n_boot, 0.05, seed))


def _age_block(true: np.ndarray, low: np.ndarray, high: np.ndarray, idx: np.ndarray, n_boot: int) -> dict[str, Any]:
    m = idx[~np.isnan(true[idx])]
    if not len(m):
        return {"n": 0}
    hits = ((true[m] >= low[m]) & (true[m] <= high[m])).astype(float)
    width = high[m] - low[m]
    return {"n": int(len(m)), "coverage": float(hits.mean()), "coverage_ci": _boot_ci(hits, n_boot),
            "mean_width": float(np.mean(width)), "median_width": float(np.median(width))}


def calibration_report(records: Sequence[Any], targets: Mapping[str, np.ndarray], probs: Mapping[str, np.ndarray],
                       raw_probs: Mapping[str, np.ndarray], intervals: tuple[np.ndarray, np.ndarray] | None,
                       level: float, calibration: Calibration, n_boot: int = 200) -> dict[str, Any]:
    """The calibration section of an evaluation report (JSON-serialisable).

    Args:
        records: the evaluated images, in the order of the arrays.
        targets: {task: (N,) targets} (age in years, NaN if unknown; class index, -1 if unknown).
        probs: {task: (N, K)} the probabilities reported (calibrated); raw_probs: the plain softmax (may be empty:
            the photo path reports calibrated probabilities only).
        intervals: (low, high) (N,) age intervals at ``level``, or None.
    """
    spec = interval_task()
    iv_task = spec.name if spec is not None else ""  # the interval task (age): its coverage is measured
    evaluation = np.array([not calibration_half(r.file_name) for r in records], dtype=bool)
    sources = sorted({r.source for r in records})
    out: dict[str, Any] = {"level": level, "measured_on": "the evaluation half of the held-out images (not used "
                           "to fit the calibration)", "n": int(evaluation.sum()),
                           "temperatures": dict(calibration.temperatures),
                           "fitted_on": dict(calibration.fitted_on), "by_source": {}, f"{iv_task}_by_group": {}}
    src_of = np.array([r.source for r in records])
    for src in sources:
        idx = np.flatnonzero(evaluation & (src_of == src))
        block: dict[str, Any] = {"n": int(len(idx))}
        if intervals is not None and iv_task in targets:
            block[iv_task] = _age_block(np.asarray(targets[iv_task], float), intervals[0], intervals[1], idx, n_boot)
        for task, p in probs.items():
            y = np.asarray(targets.get(task, np.full(len(records), -1)))
            m = idx[y[idx] >= 0]
            if not len(m):
                continue
            entry = {"n": int(len(m)), "after": expected_calibration_error(y[m], p[m])}
            if task in raw_probs:
                entry["before"] = expected_calibration_error(y[m], raw_probs[task][m])
            block.setdefault("ece", {})[task] = entry
        out["by_source"][src] = block
    keys, combos = coverage_groups()
    if intervals is not None and keys and {iv_task, *keys} <= set(targets):
        true = np.asarray(targets[iv_task], float)
        codes = [np.asarray(targets[k]) for k in keys]
        labels = [spec.labels for spec in label_slices()[:len(keys)]]
        for combo in combos:  # ethnicity x gender: "white & male", "white & female", ...
            sel = evaluation & ~np.isnan(true)
            for c, labs, lab in zip(codes, labels, combo):
                sel = sel & (c == labs.index(lab))
            idx = np.flatnonzero(sel)
            if len(idx):
                block = _age_block(true, intervals[0], intervals[1], idx, n_boot)
                block["held_to_target"] = block["n"] >= GROUP_MIN
                out[f"{iv_task}_by_group"][" & ".join(combo)] = block
    return out

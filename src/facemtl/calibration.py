"""Know its limits: calibrated class probabilities and age intervals with a coverage guarantee (numpy only).

* **Temperature scaling** per classification head: ``softmax(logits / T)``, one ``T`` per head fitted by
  minimising the negative log-likelihood on held-out faces. It changes no label (argmax is unchanged), only how
  sure the probabilities say the model is.
* **Split-conformal age intervals, Mondrian by predicted age group**: on held-out faces with a known age, the
  nonconformity score is ``|true age - predicted age|``; scores are kept per predicted age group (0-2 ... 70+;
  a group with fewer than ``min_group`` scores borrows its neighbours'). For a level ``1 - alpha`` the interval
  is ``predicted +- q`` where ``q`` is the ``ceil((n + 1)(1 - alpha))``-th smallest score of the face's group:
  under exchangeability it contains the true age with probability at least ``1 - alpha`` (and, with distinct
  scores, at most ``1 - alpha + 1/(n + 1)``).

:class:`Calibration` is what a checkpoint (``"calibration"`` key) and an ONNX file (metadata ``calibration``)
store; inference needs only these numbers. ``facemtl calibrate`` fits and stores them.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .groups import Bucketing, bucket
from .tasks import AGE_GROUPS, interval_task, softmax

__all__ = ["Calibration", "AgeIntervals", "DEFAULT_LEVEL", "check_level", "fit_temperature", "fit_age_intervals",
           "calibration_half", "CALIBRATION_VERSION"]

CALIBRATION_VERSION = 1
DEFAULT_LEVEL = 0.9


def _groups() -> Bucketing:
    """The Mondrian groups of the intervals: the label grouping of the registry's interval task (the 9 age
    groups)."""
    spec = interval_task()
    return spec.grouping(spec.label_grouping) if spec is not None and spec.label_grouping else AGE_GROUPS


def _intervals_key() -> str:
    """Where a stored calibration keeps the intervals: under the interval task's name (age)."""
    spec = interval_task()
    return spec.name if spec is not None else "intervals"


_GROUPS: Bucketing = _groups()  # fixed at import: the registry refuses a second interval task
GROUP_NAMES: tuple[str, ...] = tuple(g for g, _ in _GROUPS)


def _group_index(predicted: Any) -> np.ndarray:
    """(N,) index into :data:`GROUP_NAMES` of each predicted value; a NaN prediction belongs to no group and is an
    error (as :func:`facemtl.tasks.bucket_name` says), never the last group."""
    idx = bucket(predicted, _GROUPS)
    if (idx < 0).any():
        raise ValueError("age is NaN: it has no age group")
    return idx


def check_level(level: Any) -> float:
    """An interval level as a float in (0, 1); anything else is one clear error naming the value."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise InvalidInputError(f"age interval level must be a number in (0, 1), e.g. 0.9; got {level!r}") from None
    if not 0.0 < value < 1.0 or math.isnan(value):
        raise InvalidInputError(f"age interval level must be in (0, 1) (0.9 = a 90% interval), got {level!r}")
    return value


def calibration_half(name: str) -> bool:
    """Whether a held-out image belongs to the *calibration* half (fit) rather than the *evaluation* half (the
    coverage and ECE reported by ``facemtl evaluate``): a fixed hash of its file name, so both sides agree."""
    return hashlib.sha1(name.encode("utf-8", "surrogateescape")).digest()[0] % 2 == 0


# -- temperature scaling ---------------------------------------------------------------------------------------

def _nll(logits: np.ndarray, labels: np.ndarray, t: float, weights: np.ndarray | None = None) -> float:
    p = softmax(logits / t)
    ll = np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))
    return float(-np.average(ll, weights=weights))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0,
                    groups: Sequence[Any] | None = None) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` (golden-section search on log T).

    Args:
        logits: (N, K) raw head outputs; labels: (N,) class indices (negative = unlabelled, ignored).
        groups: (N,) the source of each row: every source then weighs the same in the NLL, so the largest
            dataset does not set the temperature alone (the model meets other datasets than these).

    Raises:
        InvalidInputError: no labelled row.
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels).astype(int)
    keep = labels >= 0
    if not keep.any():
        raise InvalidInputError("cannot fit a temperature: no labelled face for this task in the calibration set")
    logits, labels = logits[keep], labels[keep]
    weights: np.ndarray | None = None
    if groups is not None:
        group_ids = np.asarray(groups)[keep]
        _, inverse, counts = np.unique(group_ids, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[inverse]
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(logits, labels, math.exp(c), weights), _nll(logits, labels, math.exp(d), weights)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(logits, labels, math.exp(c), weights)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(logits, labels, math.exp(d), weights)
    return float(math.exp((a + b) / 2))


# -- conformal age intervals -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgeIntervals:
    """Sorted nonconformity scores (years) per predicted age group; any level is read from them.

    Attributes:
        scores: {age group: sorted |true - predicted| of the calibration faces predicted in that group, after
            borrowing from neighbouring groups up to ``min_group`` scores}.
        n_own: {age group: how many calibration faces were predicted in it (before borrowing)}.
        value_range: the interval is clipped to it (years).
    """

    scores: dict[str, tuple[float, ...]]
    n_own: dict[str, int]
    value_range: tuple[float, float] = (0.0, 100.0)
    min_group: int = 100

    def half_width(self, group: str, level: float) -> float:
        """The conformal quantile ``q`` of ``group`` at ``level``: ``ceil((n+1) level)``-th smallest score
        (infinite when the group has too few scores for that level)."""
        s = self.scores[group]
        k = math.ceil((len(s) + 1) * level)
        return float(s[k - 1]) if k <= len(s) else float("inf")

    def interval(self, predicted: float, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
        """(low, high) years around a predicted age, clipped to the value range."""
        q = self.half_width(GROUP_NAMES[int(_group_index([predicted])[0])], level)
        lo, hi = self.value_range
        return max(lo, predicted - q), min(hi, predicted + q)

    def intervals(self, predicted: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`interval`: (low, high) arrays."""
        q = np.array([self.half_width(g, level) for g in GROUP_NAMES])
        idx = _group_index(predicted)
        lo, hi = self.value_range
        half = q[idx] if len(idx) else np.zeros(0)
        return np.maximum(lo, predicted - half), np.minimum(hi, predicted + half)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "split-conformal, Mondrian by predicted age group, |true - predicted| scores",
                "scores": {g: [round(v, 3) for v in s] for g, s in self.scores.items()},
                "n_own": dict(self.n_own), "value_range": list(self.value_range), "min_group": self.min_group}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AgeIntervals:
        return cls({g: tuple(float(v) for v in s) for g, s in d["scores"].items()},
                   {g: int(n) for g, n in d.get("n_own", {}).items()},
                   tuple(d.get("value_range", (0.0, 100.0))), int(d.get("min_group", 100)))


def fit_age_intervals(true_age: np.ndarray, predicted: np.ndarray, min_group: int = 100,
                      value_range: tuple[float, float] = (0.0, 100.0)) -> AgeIntervals:
    """Conformal scores per predicted age group from held-out faces with a known age (NaN ages are ignored).

    Raises:
        InvalidInputError: fewer than ``min_group`` faces with an age in all (intervals would be meaningless).
    """
    true_age, predicted = np.asarray(true_age, float), np.asarray(predicted, float)
    keep = ~np.isnan(true_age)
    true_age, predicted = true_age[keep], predicted[keep]
    if len(true_age) < min_group:
        raise InvalidInputError(f"cannot fit age intervals: {len(true_age)} faces with a known age in the "
                                f"calibration set, at least {min_group} are needed (give --utkface or a manifest "
                                "with ages)")
    groups = _group_index(predicted)
    err = np.abs(true_age - predicted)
    own = {g: np.sort(err[groups == i]) for i, g in enumerate(GROUP_NAMES)}
    scores: dict[str, tuple[float, ...]] = {}
    for i, g in enumerate(GROUP_NAMES):
        pool, radius = list(own[g]), 0
        while len(pool) < min_group and radius < len(GROUP_NAMES):
            radius += 1
            for j in (i - radius, i + radius):
                if 0 <= j < len(GROUP_NAMES):
                    pool.extend(own[GROUP_NAMES[j]])
        scores[g] = tuple(round(float(v), 3) for v in np.sort(np.asarray(pool)))  # as stored (ms precision)
    lo, hi = value_range
    return AgeIntervals(scores, {g: int(len(v)) for g, v in own.items()}, (lo, hi), min_group)


# -- what a model stores ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    """Temperatures per classification head and the age intervals, as stored with a model.

    Attributes:
        temperatures: {task: T} (1.0 = unchanged); a head without an entry is left as it is.
        age: the conformal intervals of the interval task (:func:`facemtl.tasks.interval_task`: age), or None;
            stored under that task's name.
        fitted_on: what they were fitted on (sources, counts, path, TTA), for the record.
    """

    temperatures: dict[str, float] = field(default_factory=dict)
    age: AgeIntervals | None = None
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, task: str, logits: np.ndarray) -> np.ndarray:
        """Calibrated softmax of one classification head's (B, K) logits."""
        return softmax(np.asarray(logits, np.float32) / np.float32(self.temperatures.get(task, 1.0)))

    def intervals_for(self, task: str) -> AgeIntervals | None:
        """The conformal intervals of ``task``'s predictions: :attr:`age` for the interval task, else None."""
        return self.age if task == _intervals_key() else None

    def to_dict(self) -> dict[str, Any]:
        return {"version": CALIBRATION_VERSION, "temperatures": dict(self.temperatures),
                _intervals_key(): self.age.to_dict() if self.age else None, "fitted_on": dict(self.fitted_on)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Calibration | None:
        """The calibration a model's metadata stores, or None (a model calibrated by no one)."""
        if not d:
            return None
        if int(d.get("version", 1)) > CALIBRATION_VERSION:
            raise InvalidInputError(f"this model's calibration has version {d['version']}; this facemtl reads up "
                                    f"to {CALIBRATION_VERSION}: upgrade facemtl")
        key = _intervals_key()
        return cls({k: float(v) for k, v in (d.get("temperatures") or {}).items()},
                   AgeIntervals.from_dict(d[key]) if d.get(key) else None, dict(d.get("fitted_on") or {}))


def coverage(true_age: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of faces whose true age (years) lies in [low, high]."""
    keep = ~np.isnan(true_age)
    if not keep.any():
        return float("nan")
    return float(np.mean((true_age[keep] >= low[keep]) & (true_age[keep] <= high[keep])))

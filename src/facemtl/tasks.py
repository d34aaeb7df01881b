"""Task registry: THE single source of truth for labels, head widths, losses and decoding.

Every task-specific fact (label order, value range, age groups, loss weight, metric names,
whether the attribute is a fairness slice) lives in one :class:`TaskSpec`. Heads, losses,
decoding, metrics, JSON keys, CLI choices and ONNX output names all derive from it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, unknown_name

__all__ = [
    "TaskSpec",
    "register_task",
    "get_task",
    "list_tasks",
    "resolve_tasks",
    "AGE_GROUPS",
    "AGE_GROUP_NAMES",
    "age_group",
    "group_probabilities",
    "most_probable_group",
    "AGE_BANDS",
    "age_band",
    "in_interval",
    "softmax",
]

# Age groups of MISSION.md: (label, lower bound inclusive). The last is open-ended.
AGE_GROUPS: tuple[tuple[str, float], ...] = (
    ("0-2", 0), ("3-9", 3), ("10-19", 10), ("20-29", 20), ("30-39", 30),
    ("40-49", 40), ("50-59", 50), ("60-69", 60), ("70+", 70),
)
# Coarser bands used by MISSION.md's "MAE by age" figures and the fairness tables.
AGE_BANDS: tuple[tuple[str, float], ...] = (("0-19", 0), ("20-39", 20), ("40-59", 40), ("60+", 60))


def _whole_years(years: float) -> float:
    if years != years:  # NaN
        raise ValueError("age is NaN: it has no age group")
    return float(int(years)) if years >= 0 else 0.0


def _bucket(value: float, table: tuple[tuple[str, float], ...]) -> str:
    label = table[0][0]
    for name, lo in table:
        if value >= lo:
            label = name
    return label


def age_group(years: float) -> str:
    """Map an age in years to one of the 9 MISSION.md groups (0-2 ... 70+)."""
    # Groups are defined on whole years: 2.6 years is still in "0-2".
    return _bucket(_whole_years(years), AGE_GROUPS)


AGE_GROUP_NAMES: tuple[str, ...] = tuple(name for name, _ in AGE_GROUPS)


def group_probabilities(bin_probs: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, num_bins) age-bin probabilities -> (N, 9) probabilities of the :data:`AGE_GROUPS` (whole years)."""
    bin_probs = np.atleast_2d(np.asarray(bin_probs, dtype=np.float64))
    edges = [lo for _, lo in AGE_GROUPS[1:]]
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), np.floor(centers), side="right")
    out = np.zeros((bin_probs.shape[0], len(AGE_GROUPS)))
    np.add.at(out.T, idx, bin_probs.T)
    return out


def most_probable_group(group_probs: Any) -> str:
    """THE age-group rule, used by every output (label, CSV ``age_group``, page, video, evaluate's age-group
    accuracy): the group the model puts the most probability on. (The age in years is the expected value of the
    distribution: for a skewed distribution it can sit in a neighbouring group.) A {group: p} dict or an array in
    :data:`AGE_GROUPS` order; ties go to the younger group."""
    if isinstance(group_probs, dict):
        return max(AGE_GROUP_NAMES, key=lambda g: (group_probs.get(g, 0.0), -AGE_GROUP_NAMES.index(g)))
    return AGE_GROUP_NAMES[int(np.argmax(np.asarray(group_probs)))]


def age_band(years: float) -> str:
    """Map an age in years to one of the coarse bands (0-19, 20-39, 40-59, 60+)."""
    return _bucket(_whole_years(years), AGE_BANDS)


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float32)."""
    z = np.exp(x - x.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).astype(np.float32, copy=False)


def in_interval(years: Any, lo: Any, hi: Any) -> Any:
    """Whether each age (years) lies in its labelled interval [lo, hi) (an age bin; hi may be inf), counted in
    whole years as the age groups are: 29.8 is inside "20-29". Works on numpy arrays and torch tensors alike."""
    whole = years.floor() if hasattr(years, "floor") else np.floor(years)
    return (whole >= lo) & (whole < hi)


@dataclass(frozen=True)
class TaskSpec:
    """Everything task-specific, in one place.

    Args:
        name: lower-case singular name; also head key, target key, JSON key, CLI value, metric prefix.
        kind: "classification" or "regression".
        labels: index -> label name (classification only).
        value_range: regression clamp range in the task's unit (age: years).
        num_bins: regression only: width of the distribution head (one bin per unit over value_range).
        loss_weight: default static weight in the multi-task loss (original design's values).
        metrics: names of the headline metrics (see ``facemtl.evaluate.metrics``).
        sensitive: usable as a slice in fairness reports.
        display: human-readable labels, in ``labels`` order (for plots and reports).
        head_hidden: widths of the head's hidden layers (original design: 256, 128; gender 128, 64).
        head_dropout: dropout after the first hidden layer.
        head_batchnorm: batch norm after the first hidden layer.
    """

    name: str
    kind: Literal["classification", "regression"]
    labels: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    num_bins: int = 0
    loss_weight: float = 1.0
    metrics: tuple[str, ...] = ()
    sensitive: bool = False
    display: tuple[str, ...] = field(default=())
    head_hidden: tuple[int, ...] = (256, 128)
    head_dropout: float = 0.3
    head_batchnorm: bool = True

    def head_width(self, regression_head: str = "bins") -> int:
        """Output width of this task's head for the given regression formulation."""
        if self.kind == "classification":
            return len(self.labels)
        return self.num_bins if regression_head == "bins" else 1

    def label_index(self, label: str) -> int:
        """Index of a label name; raises UnknownNameError listing the valid labels."""
        try:
            return self.labels.index(label)
        except ValueError:
            raise unknown_name(f"{self.name} label", label, self.labels) from None

    def bin_centers(self) -> np.ndarray:
        """Regression: the value each bin of a distribution head stands for, float32 (num_bins,)."""
        lo, hi = self.value_range or (0.0, 1.0)
        return np.linspace(lo, hi, self.num_bins, dtype=np.float32)

    def normalise(self, value: Any) -> Any:
        """Regression: value in task units -> [0, 1] (for scalar heads); numpy arrays or torch tensors."""
        lo, hi = self.value_range or (0.0, 1.0)
        return (value - lo) / (hi - lo)

    def decode_raw(self, raw: Any) -> tuple[Any, Any]:
        """Raw head output (B, W) -> (values (B,), probs (B, K) or None), in numpy.

        Classification: values are class indices, probs the softmax. Regression: values in task
        units (expected value over bins for a distribution head, de-normalised for a scalar head),
        clamped to ``value_range``; probs is the bin distribution or None. A torch tensor is accepted
        and gives torch tensors back (the numbers are computed in numpy either way, so both backends
        decode identically).
        """
        if hasattr(raw, "detach"):  # a torch tensor: decode its values, hand tensors back
            import torch

            values, probs = self.decode_raw(raw.detach().float().cpu().numpy())
            return torch.from_numpy(values), (torch.from_numpy(probs) if probs is not None else None)
        raw = np.asarray(raw, dtype=np.float32)
        if self.kind == "classification":
            probs = softmax(raw)
            return probs.argmax(-1), probs
        lo, hi = self.value_range or (float("-inf"), float("inf"))
        if raw.shape[-1] == 1:  # scalar head, trained on normalised targets
            value = raw[:, 0] * (hi - lo) + lo
            return np.clip(value, lo, hi), None
        probs = softmax(raw)
        value = probs @ self.bin_centers()
        return np.clip(value, lo, hi), probs

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["display"] = list(self.display)
        d["head_hidden"] = list(self.head_hidden)
        d["metrics"] = list(self.metrics)
        d["value_range"] = list(self.value_range) if self.value_range else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        d = dict(d)
        d["labels"] = tuple(d.get("labels", ()))
        d["display"] = tuple(d.get("display", ()))
        d["head_hidden"] = tuple(d.get("head_hidden", (256, 128)))
        d["metrics"] = tuple(d.get("metrics", ()))
        vr = d.get("value_range")
        d["value_range"] = tuple(vr) if vr is not None else None
        return cls(**d)


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry; a duplicate name is an error."""
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """Look a task up by name; raises UnknownNameError with the valid names."""
    try:
        return _TASKS[name]
    except KeyError:
        raise unknown_name("task", name, _TASKS) from None


def list_tasks() -> list[str]:
    """Registered task names, in registration (= head and output) order."""
    return list(_TASKS)


def resolve_tasks(tasks: str | Iterable[str | TaskSpec] | None) -> tuple[TaskSpec, ...]:
    """Normalise "age,gender", ["age"], specs or None (= all) into a tuple of specs in registry order."""
    if tasks is None:
        return tuple(_TASKS.values())
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    specs = [t if isinstance(t, TaskSpec) else get_task(t) for t in tasks]
    if not specs:
        raise unknown_name("task", "", _TASKS)
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"task listed twice: {', '.join(sorted(dup))}")
    order = {n: i for i, n in enumerate(_TASKS)}
    return tuple(sorted(specs, key=lambda s: order.get(s.name, len(order))))


register_task(TaskSpec(
    "age", "regression", value_range=(0.0, 100.0), num_bins=101, loss_weight=1.0,
    metrics=("mae", "rmse", "r2", "cs5"),
))
register_task(TaskSpec(
    "gender", "classification", labels=("male", "female"), loss_weight=1.0,
    metrics=("accuracy", "precision", "recall", "f1"), sensitive=True,
    display=("Male", "Female"), head_hidden=(128, 64), head_dropout=0.2, head_batchnorm=False,
))
register_task(TaskSpec(
    "emotion", "classification",
    labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    loss_weight=1.2, metrics=("accuracy", "macro_f1"),
    display=("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
))
register_task(TaskSpec(
    "ethnicity", "classification", labels=("white", "black", "asian", "indian", "others"),
    loss_weight=1.0, metrics=("accuracy", "balanced_accuracy", "macro_f1"), sensitive=True, head_dropout=0.4,
    display=("White", "Black", "Asian", "Indian", "Others"),
))

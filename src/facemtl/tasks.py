"""Task registry: THE single source of truth for labels, head widths, losses, decoding, metrics and presentation.

Every task-specific fact (label order, value range, age groups and bands, loss weight, the metrics of its report
and its headline metric with its direction, how a prediction is captioned, whether the attribute is a fairness
slice, whether it carries an interval) lives in one :class:`TaskSpec`. Heads, losses, decoding, metrics, model
selection, fairness slices, balancing, the split's strata, JSON keys, CSV columns, captions, the web page, reports,
CLI choices and ONNX output names all derive from it: a new task is one :func:`register_task`.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from .errors import ConfigError, unknown_name

__all__ = [
    "TaskSpec",
    "register_task",
    "unregister_task",
    "registered",
    "get_task",
    "find_task",
    "list_tasks",
    "interval_task",
    "resolve_tasks",
    "default_metrics",
    "LOWER_IS_BETTER",
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

Bucketing = tuple[tuple[str, float], ...]
"""``((name, lower bound inclusive), ...)`` in increasing order; the last row is open-ended."""


def bucket(values: Any, table: Sequence[tuple[str, float]]) -> np.ndarray:
    """(N,) int64 row index in ``table`` of each value (counted in whole units: 2.6 is in the row of 2; negatives
    count as 0; +inf is in the last row); -1 where the value is NaN (missing). THE bucketing rule."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    whole = np.where(v >= 0, np.trunc(v), 0.0)
    bounds = np.asarray([lo for _, lo in table[1:]], dtype=np.float64)
    idx = np.searchsorted(bounds, whole, side="right").astype(np.int64)
    return np.where(np.isnan(v), -1, idx)


def bucket_names(values: Any, table: Sequence[tuple[str, float]]) -> list[str | None]:
    """The row name of each value (None where it is NaN); :func:`bucket` by name."""
    names = [name for name, _ in table]
    return [names[i] if i >= 0 else None for i in bucket(values, table).tolist()]


def bucket_name(value: float, table: Sequence[tuple[str, float]], what: str = "value", group: str = "group") -> str:
    """The row name of one value; a NaN value is an error (it belongs to no group)."""
    if value != value:  # NaN
        raise ValueError(f"{what} is NaN: it has no {group}")
    return table[int(bucket([value], table)[0])][0]



# The 9 age groups every output reports: (label, lower bound inclusive). The last is open-ended.
AGE_GROUPS: Bucketing = (
    ("0-2", 0), ("3-9", 3), ("10-19", 10), ("20-29", 20), ("30-39", 30),
    ("40-49", 40), ("50-59", 50), ("60-69", 60), ("70+", 70),
)
# Coarser bands of the original design's "MAE by age" figures, and the fairness tables' age slice.
AGE_BANDS: Bucketing = (("0-19", 0), ("20-39", 20), ("40-59", 40), ("60+", 60))
AGE_GROUP_NAMES: tuple[str, ...] = tuple(name for name, _ in AGE_GROUPS)


def age_group(years: float) -> str:
    """Map an age in years to one of the 9 age groups (0-2 ... 70+)."""
    # Groups are defined on whole years: 2.6 years is still in "0-2".
    return bucket_name(years, AGE_GROUPS, "age", "age group")


def group_probabilities(bin_probs: np.ndarray, centers: np.ndarray, table: Bucketing = AGE_GROUPS) -> np.ndarray:
    """(N, num_bins) bin probabilities -> (N, len(table)) probabilities of the groups of ``table`` (default the
    :data:`AGE_GROUPS`), each bin counted in the group of its centre (:func:`facemtl.groups.bucket`)."""
    bin_probs = np.atleast_2d(np.asarray(bin_probs, dtype=np.float64))
    idx = bucket(centers, table)
    out = np.zeros((bin_probs.shape[0], len(table)))
    np.add.at(out.T, idx, bin_probs.T)
    return out


def most_probable_group(group_probs: Any, names: Sequence[str] = AGE_GROUP_NAMES) -> str:
    """THE group-label rule, used by every output (label, CSV ``age_group``, page, video, evaluate's age-group
    accuracy): the group the model puts the most probability on. (The age in years is the expected value of the
    distribution: for a skewed distribution it can sit in a neighbouring group.) A {group: p} dict or an array in
    ``names`` order (default the :data:`AGE_GROUPS`); ties go to the younger group."""
    names = tuple(names)
    if isinstance(group_probs, dict):
        return max(names, key=lambda g: (group_probs.get(g, 0.0), -names.index(g)))
    return names[int(np.argmax(np.asarray(group_probs)))]


def age_band(years: float) -> str:
    """Map an age in years to one of the coarse bands (0-19, 20-39, 40-59, 60+)."""
    return bucket_name(years, AGE_BANDS, "age", "age group")


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float32)."""
    z = np.exp(x - x.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).astype(np.float32, copy=False)


def in_interval(years: Any, lo: Any, hi: Any) -> Any:
    """Whether each age (years) lies in its labelled interval [lo, hi) (an age bin; hi may be inf), counted in
    whole years as the age groups are: 29.8 is inside "20-29". Works on numpy arrays and torch tensors alike."""
    whole = years.floor() if hasattr(years, "floor") else np.floor(years)
    return (whole >= lo) & (whole < hi)


# Metrics whose smaller values are better (the direction of a headline metric that does not say).
LOWER_IS_BETTER: frozenset[str] = frozenset({"mae", "rmse", "nll", "ece"})
_REGRESSION_METRICS = ("mae", "rmse", "r2", "cs5")
_CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
_BINARY_METRICS = ("precision", "recall", "f1")
_PROBABILITY_METRICS = ("ece", "nll")
# The fields that shape a head and its decoding: a stored spec keeps them, whatever the registry says.
_STRUCTURE = ("name", "kind", "labels", "value_range", "num_bins", "loss_weight", "display", "head_hidden",
              "head_dropout", "head_batchnorm")


def default_metrics(kind: str, n_labels: int = 0) -> tuple[str, ...]:
    """The metrics a task of this kind reports when its spec names none: regression MAE, RMSE, R², CS@5;
    classification accuracy, balanced accuracy, macro-F1 (binary: precision, recall, F1 of ``labels[1]``), ECE and
    NLL (with probabilities)."""
    if kind == "regression":
        return _REGRESSION_METRICS
    return _CLASSIFICATION_METRICS + (_BINARY_METRICS if n_labels == 2 else ()) + _PROBABILITY_METRICS


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
        metrics: the scalar metrics of the task's evaluation report, by their names in the metric registry
            (``facemtl.evaluate.metrics``), in report order; probability metrics (``ece``, ``nll``) are computed when
            probabilities are given. Default: :func:`default_metrics` of the kind.
        sensitive: a fairness slice: the audit's tables and training's balancing group samples by it (a
            classification task by its labels, a regression task by its ``slice_grouping``).
        display: human-readable labels, in ``labels`` order (for plots and reports).
        head_hidden: widths of the head's hidden layers (original design: 256, 128; gender 128, 64).
        head_dropout: dropout after the first hidden layer.
        head_batchnorm: batch norm after the first hidden layer.
        headline: the one metric that stands for the task: model selection, the validation figures, the fairness
            tables and the summaries (default: ``mae`` for regression, ``accuracy`` for classification). The
            fairness tables need a mean of per-sample scores: ``mae`` or ``accuracy``.
        higher_is_better: the headline's direction (default: False for :data:`LOWER_IS_BETTER` metrics).
        selection_scale: a lower-is-better headline ``v`` counts ``max(0, 1 - v / selection_scale)`` in the
            model-selection score (default: a tenth of ``value_range``'s span; age: 10 years).
        summary: the figures of the task's row in the model card's table (default: the headline).
        per_source: the figures of the task in the one-line-per-source tables, as paths into its metrics
            (``interval.in_bin``, ``ferplus.accuracy``; default: the headline).
        groupings: regression: named bucketings of the value, ``(name, ((group, lower bound), ...))``.
        label_grouping: regression: the grouping whose group is ``Prediction.label`` (age: ``age_group``); it also
            gives the group probabilities, the CSV ``<name>_group`` column, the group accuracy and the
            calibration's Mondrian groups.
        slice_grouping: regression: the grouping that is the fairness slice of a sensitive task (age: ``age_band``);
            also the bands of ``mae_by_band``.
        slice_order: where this task's slice comes among the group keys (ties: registry order).
        interval: regression: predictions carry a conformal interval (``low``/``high``, CSV ``<name>_low`` and
            ``<name>_high``) when the model's calibration holds one; one registered task at most.
        unit: regression: the value's unit, in words (``years``) and ``unit_short`` (``y``).
        unit_short: see ``unit``.
        caption: how a prediction is captioned on drawn images and video frames, a ``str.format`` template over
            ``name``, ``value``, ``label``, ``initial`` (the label's first letter, upper case) and ``unit``
            (default: ``"{name} {value:.0f}"`` for regression, ``"{label} {value:.0%}"`` for classification).
        caption_short: the same in the one-line captions of crowded images; ``""``: left out (default:
            ``"{value:.0f}"`` for regression, ``"{label}"`` for classification).
        min_top_prob: quality: a top-class probability below this flags the face "uncertain <name>" (0: never).
        guess_below: quality: ``(task, value)``: when that (regression) task's predicted value is below ``value``,
            this task's answer is a guess and the face is flagged "<name> is a guess at this <task>" (gender below
            a predicted age of 3: right for 61% of such UTKFace held-out faces; MODEL_CARD.md).
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
    headline: str = ""
    higher_is_better: bool | None = None
    selection_scale: float = 0.0
    summary: tuple[str, ...] = ()
    per_source: tuple[str, ...] = ()
    groupings: tuple[tuple[str, Bucketing], ...] = ()
    label_grouping: str = ""
    slice_grouping: str = ""
    slice_order: int = 0
    interval: bool = False
    unit: str = ""
    unit_short: str = ""
    caption: str = ""
    caption_short: str | None = None
    min_top_prob: float = 0.0
    guess_below: tuple[str, float] | None = None

    def __post_init__(self) -> None:
        regression = self.kind == "regression"
        if self.kind not in ("classification", "regression"):
            raise ConfigError(f"task {self.name!r}: kind must be 'classification' or 'regression', got {self.kind!r}")
        fill: dict[str, Any] = {}
        if not self.metrics:
            fill["metrics"] = default_metrics(self.kind, len(self.labels))
        headline = self.headline or ("mae" if regression else "accuracy")
        fill["headline"] = headline
        if self.higher_is_better is None:
            fill["higher_is_better"] = headline not in LOWER_IS_BETTER
        if not self.selection_scale and regression and self.value_range:
            fill["selection_scale"] = (self.value_range[1] - self.value_range[0]) / 10.0
        fill["summary"] = tuple(self.summary) or (headline,)
        fill["per_source"] = tuple(self.per_source) or (headline,)
        fill["groupings"] = tuple((str(n), tuple((str(g), float(lo)) for g, lo in t)) for n, t in self.groupings)
        if not self.caption:
            fill["caption"] = "{name} {value:.0f}" if regression else "{label} {value:.0%}"
        if self.caption_short is None:
            fill["caption_short"] = "{value:.0f}" if regression else "{label}"
        if self.guess_below is not None:
            by, below = self.guess_below  # a stored spec's list, as a tuple
            fill["guess_below"] = (str(by), float(below))
        for k, v in fill.items():
            object.__setattr__(self, k, v)
        names = [n for n, _ in self.groupings]
        for what in ("label_grouping", "slice_grouping"):
            g = getattr(self, what)
            if g and g not in names:
                raise ConfigError(f"task {self.name!r}: {what} {g!r} is none of its groupings ({', '.join(names)})")
        if not regression and (self.groupings or self.interval):
            raise ConfigError(f"task {self.name!r}: groupings and intervals are for regression tasks")
        if regression and self.sensitive and not self.slice_grouping:
            raise ConfigError(f"task {self.name!r}: a sensitive regression task needs a slice_grouping")

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

    # -- groups ------------------------------------------------------------------------------------------------
    def grouping(self, name: str) -> Bucketing:
        """One of the task's named bucketings; UnknownNameError listing them."""
        for n, table in self.groupings:
            if n == name:
                return table
        raise unknown_name(f"{self.name} grouping", name, [n for n, _ in self.groupings])

    @functools.cached_property
    def group_names(self) -> tuple[str, ...]:
        """The groups of the label grouping, in order (``()`` without one); worked out once per spec."""
        return tuple(g for g, _ in self.grouping(self.label_grouping)) if self.label_grouping else ()

    def group_of(self, value: float) -> str | None:
        """The label-grouping group of a value (None without a label grouping)."""
        if not self.label_grouping:
            return None
        return bucket_name(value, self.grouping(self.label_grouping), self.name, f"{self.name} group")

    def group_probabilities(self, bin_probs: np.ndarray) -> np.ndarray:
        """(N, num_bins) bin probabilities -> (N, groups) probabilities of the label grouping's groups."""
        return group_probabilities(bin_probs, self.bin_centers(), self.grouping(self.label_grouping))

    def most_probable_group(self, group_probs: Any) -> str:
        """The label of a regression prediction: :func:`most_probable_group` over the label grouping."""
        return most_probable_group(group_probs, self.group_names)

    @property
    def slice_keys(self) -> tuple[str, ...]:
        """The group keys this task gives the fairness audit and balancing: its name (a sensitive classification
        task), its ``slice_grouping`` (a sensitive regression task), or none."""
        if not self.sensitive:
            return ()
        return (self.name,) if self.kind == "classification" else (self.slice_grouping,)

    # -- presentation ------------------------------------------------------------------------------------------
    def caption_text(self, pred: Any, short: bool = False) -> str:
        """A prediction (``facemtl.results.Prediction``) as its caption (``short``: the crowded one); ``""``: none."""
        template = self.caption_short if short else self.caption
        if not template:
            return ""
        label = pred.label or ""
        return template.format(name=self.name, value=pred.value, label=label, initial=label[:1].upper(),
                               unit=self.unit)

    def selection_term(self, metric: str, value: float) -> float | None:
        """What one validation figure adds to the model-selection score: the headline (a lower-is-better one as
        ``max(0, 1 - v / selection_scale)``) and the share of values inside their labelled interval (``in_bin``);
        None for any other figure."""
        if metric == self.headline:
            if self.higher_is_better:
                return value
            return max(0.0, 1.0 - value / self.selection_scale) if self.selection_scale > 0 else None
        if metric == "in_bin":
            return value
        return None

    # -- (de)serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("labels", "display", "head_hidden", "metrics", "summary", "per_source"):
            d[k] = list(getattr(self, k))
        d["value_range"] = list(self.value_range) if self.value_range else None
        d["groupings"] = [[n, [[g, lo] for g, lo in table]] for n, table in self.groupings]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TaskSpec:
        """A spec as a checkpoint or an ONNX file stores it (:meth:`to_dict`).

        A spec stored before the evaluation and presentation fields existed (no ``headline``) keeps its own head
        structure (kind, labels, range, bins, head layers, loss weight, display names) and takes everything else
        from the registered task of its name and kind, so an old model reports exactly what the registry says; its
        ``metrics`` (then a descriptive list of headline figures) and ``sensitive`` (then unused) are replaced too.
        An unregistered old spec gets the defaults of its kind, its old ``metrics`` becoming its ``summary``.
        """
        d = dict(d)
        if "headline" not in d:  # written before this format: fill in from the registry
            known = _TASKS.get(d.get("name", ""))
            if known is not None and known.kind == d.get("kind"):
                d = {**known.to_dict(), **{k: d[k] for k in _STRUCTURE if k in d}}
            else:
                d["summary"] = d.pop("metrics", ())
        for k in ("labels", "display", "metrics", "summary", "per_source"):
            d[k] = tuple(d.get(k, ()))
        d["head_hidden"] = tuple(d.get("head_hidden", (256, 128)))
        vr = d.get("value_range")
        d["value_range"] = tuple(vr) if vr is not None else None
        d["groupings"] = tuple((n, tuple((g, lo) for g, lo in table)) for n, table in d.get("groupings", ()))
        return cls(**d)


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry; a duplicate name (or a second task with ``interval``) is an error. Every
    module reads the task's facts from its spec: registering it is all a new task needs."""
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    other = interval_task()
    if spec.interval and other is not None:
        raise ValueError(f"task {spec.name!r}: only one task can have intervals ({other.name!r} has)")
    _TASKS[spec.name] = spec
    return spec


def unregister_task(name: str) -> TaskSpec:
    """Remove a task from the registry (for tests that register one); UnknownNameError if it is not there."""
    spec = get_task(name)
    del _TASKS[name]
    return spec


@contextmanager
def registered(spec: TaskSpec) -> Iterator[TaskSpec]:
    """``with registered(TaskSpec(...)):`` the task is registered inside the block, and removed after it."""
    register_task(spec)
    try:
        yield spec
    finally:
        if spec.name in _TASKS:
            unregister_task(spec.name)


def get_task(name: str) -> TaskSpec:
    """Look a task up by name; raises UnknownNameError with the valid names."""
    try:
        return _TASKS[name]
    except KeyError:
        raise unknown_name("task", name, _TASKS) from None


def find_task(name: str) -> TaskSpec | None:
    """The registered task of this name, or None (a model's head that is not registered here)."""
    return _TASKS.get(name)


def list_tasks() -> list[str]:
    """Registered task names, in registration (= head and output) order."""
    return list(_TASKS)


def interval_task() -> TaskSpec | None:
    """The registered task whose predictions carry the calibration's conformal intervals (age), if any. A stored
    calibration holds that task's intervals under its name (``facemtl.calibration.Calibration``)."""
    return next((s for s in _TASKS.values() if s.interval), None)


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
    metrics=("mae", "rmse", "r2", "cs5"), sensitive=True,
    headline="mae", selection_scale=10.0, summary=("mae", "rmse", "r2", "cs5"), per_source=("mae", "interval.in_bin"),
    groupings=(("age_group", AGE_GROUPS), ("age_band", AGE_BANDS)), label_grouping="age_group",
    slice_grouping="age_band", slice_order=2, interval=True, unit="years", unit_short="y",
    caption="age {value:.0f}", caption_short="{value:.0f}",
))
register_task(TaskSpec(
    "gender", "classification", labels=("male", "female"), loss_weight=1.0,
    metrics=("accuracy", "balanced_accuracy", "macro_f1", "precision", "recall", "f1", "ece", "nll"), sensitive=True,
    display=("Male", "Female"), head_hidden=(128, 64), head_dropout=0.2, head_batchnorm=False,
    summary=("accuracy", "precision", "recall", "f1"), slice_order=1, caption_short="{initial}", min_top_prob=0.6,
    guess_below=("age", 3.0),
))
register_task(TaskSpec(
    "emotion", "classification",
    labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    loss_weight=1.2, metrics=("accuracy", "balanced_accuracy", "macro_f1", "ece", "nll"),
    display=("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"),
    summary=("accuracy", "macro_f1"), per_source=("accuracy", "ferplus.accuracy"),
))
register_task(TaskSpec(
    "ethnicity", "classification", labels=("white", "black", "asian", "indian", "others"),
    loss_weight=1.0, metrics=("accuracy", "balanced_accuracy", "macro_f1", "ece", "nll"), sensitive=True,
    head_dropout=0.4, display=("White", "Black", "Asian", "Indian", "Others"),
    summary=("accuracy", "balanced_accuracy", "macro_f1"), per_source=("accuracy", "balanced_accuracy"),
    slice_order=0, caption_short="",
))

"""Evaluation metrics in plain numpy, a registry by name, and per-task reports.

Every metric the original design reports (README) is here: MAE, RMSE, R², CS@5 and MAE per age band for regression;
accuracy, precision/recall/F1 (binary and per class), macro-F1, balanced accuracy, confusion
matrix, expected calibration error and negative log-likelihood for classification.

Conventions (the same as scikit-learn's defaults, so figures are comparable):

- **Missing labels** are ignored: a negative true class index (``-1``) for classification, a
  non-finite true value (``NaN``) for regression. Predictions are never treated as missing.
- **Zero division** (``zero_division=0``): a class that is never predicted has precision 0.0, a
  class absent from the truth has recall 0.0, and F1 is 0.0 when precision + recall is 0.
- **Macro-F1** averages the per-class F1 over the classes that occur in ``y_true`` *or*
  ``y_pred``; a class with zero support and zero predictions is excluded, because it carries no
  evidence either way (scikit-learn's ``labels=None`` behaviour).
- **Balanced accuracy** is the mean recall over the classes that occur in ``y_true``.
- **Undefined values** (no samples, R² of a single sample or of constant truth) are
  ``float("nan")`` from the metric functions and ``None`` in the JSON reports of
  :func:`compute_task_metrics` (as text: :func:`facemtl.report.text.format_metrics`).

Registered metrics are called as ``fn(y_true, y_pred, **kwargs) -> float``. Classification
metrics accept ``num_classes`` (inferred when omitted), the binary ones ``pos_label`` (default 1,
i.e. ``spec.labels[1]``), and the probability ones (``ece``, ``nll``) require ``probs`` of
shape (N, K).

Example:
    >>> from facemtl.evaluate.metrics import get_metric
    >>> get_metric("mae")([20.0, 30.0], [22.0, 27.0])
    2.5
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from types import EllipsisType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError, unknown_name
from ..groups import bucket
from ..tasks import AGE_BANDS, AGE_GROUPS, TaskSpec
from ._json import jsonable

__all__ = [
    "MetricFn",
    "METRICS",
    "register_metric",
    "get_metric",
    "list_metrics",
    # regression
    "mae",
    "rmse",
    "r2",
    "cumulative_score",
    "cs5",
    "mae_by_band",
    "group_accuracy",
    "age_group_accuracy",
    # classification
    "accuracy",
    "confusion_matrix",
    "per_class_scores",
    "macro_f1",
    "balanced_accuracy",
    "binary_scores",
    "precision",
    "recall",
    "f1",
    "expected_calibration_error",
    "reliability_bins",
    "negative_log_likelihood",
    # reports
    "compute_task_metrics",
    "flatten_metrics",
]

logger = logging.getLogger(__name__)

MetricFn = Callable[..., float]
"""A registered metric: ``fn(y_true, y_pred, **kwargs) -> float``."""

METRICS: dict[str, MetricFn] = {}

ArrayLike = npt.ArrayLike
AgeTable = Sequence[tuple[str, float]]

_NAN = float("nan")


# --------------------------------------------------------------------------- registry


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Decorator that adds a metric to :data:`METRICS` under ``name``.

    Args:
        name: registry key; also the key used in task reports (``age/mae``).

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is already registered")
        METRICS[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> MetricFn:
    """Look a metric up by name.

    Args:
        name: a key of :data:`METRICS`.

    Returns:
        The metric function.

    Raises:
        UnknownNameError: if the name is not registered; the message lists the valid names.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise unknown_name("metric", name, METRICS) from None


def list_metrics() -> list[str]:
    """Registered metric names, sorted."""
    return sorted(METRICS)


# --------------------------------------------------------------------------- input helpers


def _as_array(x: Any, dtype: Any | None = None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    return arr.reshape(-1) if arr.ndim == 0 else arr


def _regression_inputs(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = _as_array(y_true, np.float64).reshape(-1)
    p = _as_array(y_pred, np.float64).reshape(-1)
    if t.shape != p.shape:
        raise InvalidInputError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    keep = np.isfinite(t)  # NaN truth = missing label
    return t[keep], p[keep]


def _classification_inputs(
    y_true: ArrayLike,
    y_pred: ArrayLike | None,
    num_classes: int | None = None,
    probs: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """Validate and drop missing (-1) labels -> (t, p, K, probs); p = argmax(probs) if y_pred is None."""
    t = _as_array(y_true).reshape(-1)
    if t.dtype.kind == "f":
        t = np.where(np.isfinite(t), t, -1.0)  # NaN is accepted as "missing" too
    if t.dtype.kind not in "iub" and (t.dtype.kind != "f" or not np.all(np.mod(t, 1) == 0)):
        raise InvalidInputError(
            f"classification labels must be integer class indices (-1 = missing); got dtype {t.dtype}"
        )
    t = t.astype(np.int64)
    pr: np.ndarray | None = None
    if probs is not None:
        pr = _as_array(probs, np.float64)
        if pr.ndim != 2 or pr.shape[0] != t.size:
            raise InvalidInputError(
                f"probs must have shape (N, K) with N={t.size}; got {tuple(pr.shape)}"
            )
        if num_classes is None:
            num_classes = pr.shape[1]
        elif pr.shape[1] != num_classes:
            raise InvalidInputError(f"probs has {pr.shape[1]} columns but num_classes={num_classes}")
    if y_pred is None:
        if pr is None:
            raise InvalidInputError("either y_pred or probs is required")
        p = pr.argmax(axis=1).astype(np.int64)
    else:
        p = _as_array(y_pred).reshape(-1).astype(np.int64)
    if t.shape != p.shape:
        raise InvalidInputError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    keep = t >= 0  # -1 = missing label
    t, p = t[keep], p[keep]
    if pr is not None:
        pr = pr[keep]
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise InvalidInputError(
            f"predicted class indices must lie in [0, {num_classes}); got {p.min()}..{p.max()}"
        )
    if t.size and t.max() >= num_classes:
        raise InvalidInputError(f"true class index {t.max()} is out of range for {num_classes} classes")
    return t, p, int(num_classes), pr


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den with 0.0 where den == 0 (zero_division=0)."""
    num = num.astype(np.float64)
    den = den.astype(np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _bucket_indices(values: np.ndarray, table: AgeTable) -> np.ndarray:
    """:func:`facemtl.groups.bucket` (whole units, negatives -> 0, last row with lo <= v); a NaN prediction counts
    in the first row."""
    return np.maximum(bucket(values, table), 0)


# --------------------------------------------------------------------------- regression


@register_metric("mae")
def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error, in the task's unit (years for age).

    Args:
        y_true: true values; NaN = missing.
        y_pred: predicted values.

    Returns:
        The MAE, or NaN when no value is labelled.
    """
    t, p = _regression_inputs(y_true, y_pred)
    return float(np.mean(np.abs(p - t))) if t.size else _NAN


@register_metric("rmse")
def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error; NaN when no value is labelled."""
    t, p = _regression_inputs(y_true, y_pred)
    return float(np.sqrt(np.mean((p - t) ** 2))) if t.size else _NAN


@register_metric("r2")
def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination, ``1 - SS_res / SS_tot``.

    Args:
        y_true: true values; NaN = missing.
        y_pred: predicted values.

    Returns:
        R², or NaN when it is undefined: fewer than two samples or constant truth
        (``SS_tot == 0``). Unlike scikit-learn, no finite stand-in is invented.
    """
    t, p = _regression_inputs(y_true, y_pred)
    if t.size < 2:
        return _NAN
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return _NAN
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def cumulative_score(y_true: ArrayLike, y_pred: ArrayLike, threshold: float = 5.0) -> float:
    """Share of samples with ``|error| <= threshold`` (CS@threshold), in [0, 1].

    Args:
        y_true: true values; NaN = missing.
        y_pred: predicted values.
        threshold: tolerance in the task's unit (years).

    Returns:
        The share, or NaN when no value is labelled.
    """
    t, p = _regression_inputs(y_true, y_pred)
    return float(np.mean(np.abs(p - t) <= threshold)) if t.size else _NAN


@register_metric("cs5")
def cs5(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """CS@5: share of samples within 5 years of the truth, in [0, 1]."""
    return cumulative_score(y_true, y_pred, 5.0)


def mae_by_band(
    y_true: ArrayLike, y_pred: ArrayLike, bands: AgeTable = AGE_BANDS
) -> dict[str, dict[str, Any]]:
    """MAE per band of the *true* age.

    Args:
        y_true: true ages in years; NaN = missing.
        y_pred: predicted ages in years.
        bands: (label, lower bound inclusive) table, as :data:`facemtl.tasks.AGE_BANDS`; a value
            falls in the last band whose bound is <= its whole years (as ``tasks.age_band``).

    Returns:
        ``{band: {"mae": float | None, "n": int}}`` in table order; an empty band is
        ``{"mae": None, "n": 0}``.
    """
    t, p = _regression_inputs(y_true, y_pred)
    idx = _bucket_indices(t, bands)
    err = np.abs(p - t)
    out: dict[str, dict[str, Any]] = {}
    for i, (label, _) in enumerate(bands):
        sel = idx == i
        n = int(sel.sum())
        out[label] = {"mae": float(err[sel].mean()) if n else None, "n": n}
    return out


def group_accuracy(y_true: ArrayLike, y_pred: ArrayLike, groups: AgeTable,
                   pred_groups: Sequence[str] | None = None) -> float:
    """Share of samples whose predicted group is the true value's group (:func:`facemtl.groups.bucket`).

    Args:
        y_true: true values; NaN = missing.
        y_pred: predicted values (their group is the prediction when ``pred_groups`` is None).
        groups: (label, lower bound) table, e.g. :data:`facemtl.tasks.AGE_GROUPS`.
        pred_groups: the predicted group names, aligned with ``y_true``, when the model says them itself
            (:meth:`facemtl.tasks.TaskSpec.most_probable_group`, the label every output reports).

    Returns:
        The share in [0, 1], or NaN when no value is labelled.
    """
    if pred_groups is not None:
        t = _as_array(y_true, float).reshape(-1)
        keep = ~np.isnan(t)
        if not keep.any():
            return _NAN
        names = [name for name, _ in groups]
        pred_idx = np.array([names.index(g) for g, k in zip(pred_groups, keep) if k])
        return float(np.mean(_bucket_indices(t[keep], groups) == pred_idx))
    t, p = _regression_inputs(y_true, y_pred)
    if not t.size:
        return _NAN
    return float(np.mean(_bucket_indices(t, groups) == _bucket_indices(p, groups)))


@register_metric("age_group_accuracy")
def age_group_accuracy(y_true: ArrayLike, y_pred: ArrayLike, groups: AgeTable = AGE_GROUPS,
                       pred_groups: Sequence[str] | None = None) -> float:
    """:func:`group_accuracy` over the 9 age groups by default (``tasks.age_group``)."""
    return group_accuracy(y_true, y_pred, groups, pred_groups)


# --------------------------------------------------------------------------- classification


@register_metric("accuracy")
def accuracy(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> float:
    """Share of correct predictions in [0, 1]; labels of -1 are ignored; NaN when none is labelled."""
    t, p, _, _ = _classification_inputs(y_true, y_pred, num_classes)
    return float(np.mean(t == p)) if t.size else _NAN


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class.

    Args:
        y_true: true class indices; -1 = missing.
        y_pred: predicted class indices.
        num_classes: K; inferred from the largest index when omitted.

    Returns:
        A (K, K) int64 array of counts.
    """
    t, p, k, _ = _classification_inputs(y_true, y_pred, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _scores_from_cm(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    prec = _safe_div(tp, predicted)
    rec = _safe_div(tp, support)
    f1s = _safe_div(2 * prec * rec, prec + rec)
    return {"precision": prec, "recall": rec, "f1": f1s, "support": support, "predicted": predicted}


def per_class_scores(
    y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None
) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support (zero_division=0).

    Args:
        y_true: true class indices; -1 = missing.
        y_pred: predicted class indices.
        num_classes: K; inferred when omitted.

    Returns:
        ``{"precision", "recall", "f1": float arrays (K,), "support", "predicted": int arrays (K,)}``
        where ``support`` counts true samples and ``predicted`` predictions per class.
    """
    return _scores_from_cm(confusion_matrix(y_true, y_pred, num_classes))


def _macro_f1_from_cm(cm: np.ndarray) -> float:
    s = _scores_from_cm(cm)
    present = (s["support"] > 0) | (s["predicted"] > 0)
    return float(s["f1"][present].mean()) if present.any() else _NAN


def _balanced_accuracy_from_cm(cm: np.ndarray) -> float:
    s = _scores_from_cm(cm)
    present = s["support"] > 0
    return float(s["recall"][present].mean()) if present.any() else _NAN


@register_metric("macro_f1")
def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> float:
    """Unweighted mean F1 over the classes that occur in ``y_true`` or ``y_pred``.

    A class with zero support and zero predictions is excluded (scikit-learn's default); a class
    present on only one side has F1 0.0 and counts. NaN when nothing is labelled.
    """
    return _macro_f1_from_cm(confusion_matrix(y_true, y_pred, num_classes))


@register_metric("balanced_accuracy")
def balanced_accuracy(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None) -> float:
    """Mean recall over the classes that occur in ``y_true``; NaN when nothing is labelled."""
    return _balanced_accuracy_from_cm(confusion_matrix(y_true, y_pred, num_classes))


def binary_scores(
    y_true: ArrayLike, y_pred: ArrayLike, pos_label: int = 1, num_classes: int | None = None
) -> dict[str, float]:
    """Precision, recall and F1 of one positive class (one-vs-rest), zero_division=0.

    Args:
        y_true: true class indices; -1 = missing.
        y_pred: predicted class indices.
        pos_label: index of the positive class (for gender, ``spec.label_index("female")`` = 1).
        num_classes: K; inferred when omitted (at least ``pos_label + 1``).

    Returns:
        ``{"precision", "recall", "f1"}``.
    """
    t, p, k, _ = _classification_inputs(y_true, y_pred, num_classes)
    if num_classes is None:
        k = max(k, pos_label + 1)
    if not 0 <= pos_label < k:
        raise InvalidInputError(f"pos_label {pos_label} is out of range for {k} classes")
    s = _scores_from_cm(np.bincount(t * k + p, minlength=k * k).reshape(k, k))
    return {name: float(s[name][pos_label]) for name in ("precision", "recall", "f1")}


@register_metric("precision")
def precision(
    y_true: ArrayLike, y_pred: ArrayLike, pos_label: int = 1, num_classes: int | None = None
) -> float:
    """Precision of class ``pos_label``: TP / predicted positives (0.0 if none predicted)."""
    return binary_scores(y_true, y_pred, pos_label, num_classes)["precision"]


@register_metric("recall")
def recall(
    y_true: ArrayLike, y_pred: ArrayLike, pos_label: int = 1, num_classes: int | None = None
) -> float:
    """Recall of class ``pos_label``: TP / true positives (0.0 if the class is absent)."""
    return binary_scores(y_true, y_pred, pos_label, num_classes)["recall"]


@register_metric("f1")
def f1(
    y_true: ArrayLike, y_pred: ArrayLike, pos_label: int = 1, num_classes: int | None = None
) -> float:
    """F1 of class ``pos_label`` (0.0 when precision + recall is 0)."""
    return binary_scores(y_true, y_pred, pos_label, num_classes)["f1"]


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # Bins are (lo, hi]: a confidence of exactly 1/15 falls in the first bin (Guo et al., 2017).
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    return np.searchsorted(inner, conf, side="left")


def reliability_bins(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> list[dict[str, Any]]:
    """Reliability-diagram data: equal-width bins over the top-class probability.

    Args:
        y_true: true class indices; -1 = missing.
        probs: (N, K) class probabilities; the prediction is their argmax.
        n_bins: number of equal-width bins over [0, 1]; bins are (lo, hi].

    Returns:
        One dict per bin: ``{"lo", "hi", "count", "confidence", "accuracy"}`` where confidence is
        the mean top probability and accuracy the share correct; both None for an empty bin.
    """
    t, p, _, pr = _classification_inputs(y_true, None, None, probs)
    assert pr is not None  # guaranteed by _classification_inputs when probs is given
    conf = pr.max(axis=1) if pr.size else np.zeros(0)
    idx = _bin_index(conf, n_bins)
    correct = (t == p).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        out.append({
            "lo": float(edges[b]),
            "hi": float(edges[b + 1]),
            "count": n,
            "confidence": float(conf[sel].mean()) if n else None,
            "accuracy": float(correct[sel].mean()) if n else None,
        })
    return out


def expected_calibration_error(y_true: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error: ``sum_b (n_b / N) * |accuracy_b - confidence_b|``.

    Args:
        y_true: true class indices; -1 = missing.
        probs: (N, K) class probabilities; the prediction is their argmax.
        n_bins: equal-width bins over the top-class probability (15 as in Guo et al., 2017).

    Returns:
        ECE in [0, 1], or NaN when nothing is labelled.
    """
    bins = reliability_bins(y_true, probs, n_bins)
    total = sum(b["count"] for b in bins)
    if not total:
        return _NAN
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def negative_log_likelihood(y_true: ArrayLike, probs: ArrayLike, eps: float = 1e-12) -> float:
    """Mean ``-log p(true class)``, with probabilities clipped at ``eps``; NaN when nothing is labelled."""
    t, _, _, pr = _classification_inputs(y_true, None, None, probs)
    assert pr is not None
    if not t.size:
        return _NAN
    return float(-np.mean(np.log(np.clip(pr[np.arange(t.size), t], eps, 1.0))))


@register_metric("ece")
def _ece_metric(
    y_true: ArrayLike, y_pred: ArrayLike | None = None, *, probs: ArrayLike, n_bins: int = 15
) -> float:
    """Registry adapter: ECE ignores ``y_pred`` (the argmax of ``probs`` is the prediction)."""
    return expected_calibration_error(y_true, probs, n_bins)


@register_metric("nll")
def _nll_metric(y_true: ArrayLike, y_pred: ArrayLike | None = None, *, probs: ArrayLike) -> float:
    """Registry adapter for :func:`negative_log_likelihood`."""
    return negative_log_likelihood(y_true, probs)


# --------------------------------------------------------------------------- reports


def _accepts(name: str) -> frozenset[str]:
    """The keyword arguments a registered metric takes (``num_classes``, ``pos_label``, ``probs``...)."""
    return frozenset(inspect.signature(get_metric(name)).parameters)


def _needs_probs(name: str) -> bool:
    """Whether a registered metric needs ``probs`` (ECE, NLL): computed only when probabilities are given."""
    p = inspect.signature(get_metric(name)).parameters.get("probs")
    return p is not None and p.default is inspect.Parameter.empty


def _call(name: str, t: np.ndarray, p: np.ndarray | None, **available: Any) -> float:
    """A registered metric on (t, p), with the keyword arguments it takes among ``available``."""
    accepted = _accepts(name)
    return get_metric(name)(t, p, **{k: v for k, v in available.items() if k in accepted})


def _regression_report(
    spec: TaskSpec, y_true: ArrayLike, y_pred: ArrayLike, bands: AgeTable | None, groups: AgeTable | None,
    pred_groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    t, p = _regression_inputs(y_true, y_pred)
    if not t.size:
        return {"n": 0}
    if not np.all(np.isfinite(p)):
        logger.warning("%d non-finite predictions; affected metrics are reported as None",
                       int((~np.isfinite(p)).sum()))
    out: dict[str, Any] = {"kind": "regression", "n": int(t.size)}
    for name in spec.metrics:
        out[name] = _call(name, t, p)
    if bands is not None:
        out["mae_by_band"] = mae_by_band(t, p, bands)
    if groups is not None:
        key = f"{spec.label_grouping or spec.name + '_group'}_accuracy"  # age: "age_group_accuracy"
        out[key] = group_accuracy(y_true, y_pred, groups, pred_groups)
        out["mae_by_group"] = mae_by_band(t, p, groups)  # the finer groups of the true value (age: 0-2 ... 70+)
    return out


def _classification_report(
    spec: TaskSpec, y_true: ArrayLike, y_pred: ArrayLike | None, probs: ArrayLike | None, n_bins: int
) -> dict[str, Any]:
    labels = list(spec.labels)
    t, p, k, pr = _classification_inputs(y_true, y_pred, len(labels), probs)
    if not t.size:
        return {"n": 0}
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    s = _scores_from_cm(cm)
    out: dict[str, Any] = {"kind": "classification", "n": int(t.size)}
    later = []  # probability metrics come after the per-class blocks
    for name in spec.metrics:
        if _needs_probs(name):
            later.append(name)
            continue
        if "pos_label" in _accepts(name):
            if k != 2:
                continue  # a one-vs-rest figure of labels[1] only means something for a binary task
            # Binary tasks: the positive class is labels[1] (gender: "female").
            out.setdefault("positive_label", labels[1])
        out[name] = _call(name, t, p, num_classes=k, pos_label=1)
    out["per_class"] = {
        label: {
            "precision": float(s["precision"][i]),
            "recall": float(s["recall"][i]),
            "f1": float(s["f1"][i]),
            "support": int(s["support"][i]),
        }
        for i, label in enumerate(labels)
    }
    out["confusion_matrix"] = {"labels": labels, "matrix": cm.astype(int).tolist()}
    if pr is not None:
        for name in later:
            out[name] = _call(name, t, None, probs=pr, n_bins=n_bins)
        out["reliability"] = reliability_bins(t, pr, n_bins)
    return out


def compute_task_metrics(
    spec: TaskSpec,
    y_true: ArrayLike,
    y_pred: ArrayLike | None,
    probs: ArrayLike | None = None,
    *,
    bands: AgeTable | None | EllipsisType = ...,
    groups: AgeTable | None | EllipsisType = ...,
    n_bins: int = 15,
    pred_groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric of ``spec.metrics`` for one task, each computed by the metric registry, as a JSON-ready dict.

    Args:
        spec: the task; its ``metrics`` name the figures (registry names, in report order), its ``labels`` the
            classes, its groupings the tables by band and group.
        y_true: regression: true values (NaN = missing); classification: true class indices
            (-1 = missing).
        y_pred: predicted values or class indices; for classification it may be None when
            ``probs`` is given (the argmax is used).
        probs: classification only, optional (N, K) probabilities; adds the probability metrics of
            ``spec.metrics`` (``ece``, ``nll``) and ``reliability``.
        bands: regression: the table for ``mae_by_band``; default the spec's ``slice_grouping`` (age: the
            :data:`~facemtl.tasks.AGE_BANDS`); None skips it.
        groups: regression: the table for the group accuracy and ``mae_by_group``; default the spec's
            ``label_grouping`` (age: the :data:`~facemtl.tasks.AGE_GROUPS`); None skips them.
        n_bins: calibration bins.
        pred_groups: regression: the predicted group names (the model's most probable group); None: the
            group of each predicted value.

    Returns:
        Plain Python values only; undefined numbers are None. With nothing labelled:
        ``{"n": 0, "note": ...}``. Regression: ``{"kind", "n", <metrics>, "mae_by_band": {band: {"mae", "n"}},
        "<label grouping>_accuracy" (age: "age_group_accuracy"), "mae_by_group"}``. Classification:
        ``{"kind", "n", <metrics>, "per_class": {label: {"precision", "recall", "f1", "support"}},
        "confusion_matrix": {"labels": [...], "matrix": [[int]] (rows true, cols predicted)}}``; a binary task's
        one-vs-rest metrics (``precision``, ``recall``, ``f1``) are those of ``labels[1]``, named by
        ``"positive_label"`` before the first of them; with probs the probability metrics (``"ece"``, ``"nll"``)
        and ``"reliability"`` (see :func:`reliability_bins`) follow the per-class blocks.

    Raises:
        InvalidInputError: mismatched lengths, class indices out of range, or bad ``probs`` shape.
        UnknownNameError: a name of ``spec.metrics`` that is not registered.

    Example:
        >>> from facemtl.tasks import get_task
        >>> r = compute_task_metrics(get_task("gender"), [0, 1, 1, -1], [0, 1, 0, 1])
        >>> r["n"], r["accuracy"], r["recall"]
        (3, 0.6666666666666666, 0.5)
    """
    if spec.kind == "regression":
        if probs is not None:
            logger.debug("probs ignored for regression task %r", spec.name)
        if y_pred is None:
            raise InvalidInputError(f"y_pred is required for regression task {spec.name!r}")
        if isinstance(bands, EllipsisType):
            bands = spec.grouping(spec.slice_grouping) if spec.slice_grouping else None
        if isinstance(groups, EllipsisType):
            groups = spec.grouping(spec.label_grouping) if spec.label_grouping else None
        report = _regression_report(spec, y_true, y_pred, bands, groups, pred_groups)
    else:
        report = _classification_report(spec, y_true, y_pred, probs, n_bins)
    if report["n"] == 0:
        return {"n": 0, "note": f"no labelled samples for task {spec.name!r}"}
    return jsonable(report)


def flatten_metrics(report: Mapping[str, Any], sep: str = "/") -> dict[str, float | int | None]:
    """Flatten a ``{task: metrics}`` report into scalar ``"task/metric"`` keys (STYLE §2).

    Nested dicts join with ``sep`` (``"age/mae_by_band/60+/mae"``, ``"emotion/per_class/happy/f1"``);
    lists (confusion matrix, reliability bins) and strings are skipped.

    Args:
        report: ``{task: compute_task_metrics(...)}``.
        sep: key separator.

    Returns:
        A flat dict of numbers (or None for undefined values).
    """
    flat: dict[str, float | int | None] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(f"{prefix}{sep}{key}" if prefix else str(key), value)
        elif node is None or (isinstance(node, (int, float, np.number)) and not isinstance(node, bool)):
            flat[prefix] = node if node is None else jsonable(node)

    walk("", report)
    return flat

"""Groups of samples: the one bucketing of values into named groups (defined with the
tables in :mod:`facemtl.tasks`, re-exported here), and the group keys of the fairness audit and of
bias-mitigating training, all derived from the task registry.

A *bucketing* is a table of ``(name, lower bound inclusive)`` rows in increasing order (the age groups and the
coarser age bands of :mod:`facemtl.tasks`); a value falls in the last row whose bound is at most its whole part
(29.8 years is in "20-29"; negatives count as 0). :func:`bucket` is the vectorised rule every output uses (the
age-group label, the fairness slices, the metrics by band, the balancing weights, the calibration's groups).

A *group key* names one attribute of a sample that slices the data: a classification task marked ``sensitive``
(its labels are the groups, e.g. ``ethnicity``, ``gender``), or a named bucketing of a sensitive regression task
(``age_band``, from the true age). :func:`slice_keys` lists them in their ``slice_order``; :func:`group_codes` turns
per-sample values into integer group codes (-1: missing), the form :mod:`facemtl.train.balance` weighs and
:mod:`facemtl.evaluate.fairness` names.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .tasks import Bucketing, TaskSpec, bucket, bucket_name, bucket_names, resolve_tasks

__all__ = ["Bucketing", "bucket", "bucket_name", "bucket_names", "slice_keys", "label_slices", "key_spec",
           "group_values", "group_codes", "key_codes"]

# --------------------------------------------------------------------------- group keys of the registry


def slice_keys() -> tuple[str, ...]:
    """Every group key of the registered tasks, in ``slice_order`` (ties: registry order): the default groupings
    of the fairness audit and the attributes training can balance."""
    specs = resolve_tasks(None)
    ordered = sorted((s for s in specs if s.slice_keys), key=lambda s: s.slice_order)
    return tuple(k for s in ordered for k in s.slice_keys)


def label_slices() -> tuple[TaskSpec, ...]:
    """The classification tasks among the slices, in slice order (ethnicity, gender): the crossing the age
    interval's coverage is reported by."""
    specs = resolve_tasks(None)
    return tuple(sorted((s for s in specs if s.sensitive and s.kind == "classification"), key=lambda s: s.slice_order))


def key_spec(key: str) -> tuple[TaskSpec, Bucketing | None] | None:
    """The registered task a group key reads and how: ``(spec, None)`` for a classification task's own name (its
    labels are the groups), ``(spec, table)`` for a named bucketing of a regression task's values; None for any
    other attribute (e.g. a ``skin_tone`` column passed to the fairness records as it is)."""
    for spec in resolve_tasks(None):
        if spec.kind == "classification" and key == spec.name:
            return spec, None
        for gname, table in spec.groupings:
            if gname == key:
                return spec, table
    return None


def group_values(key: str) -> list[str]:
    """The groups a key can take, in display order: a bucketing's row names or a classification task's labels;
    ``[]`` for an attribute the registry does not know."""
    found = key_spec(key)
    if found is None:
        return []
    spec, table = found
    return [name for name, _ in table] if table is not None else list(spec.labels)


def _float(value: Any) -> float:
    """A per-sample value as a float; NaN for missing (None, NaN, "", text)."""
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def key_codes(key: str, values: Any) -> np.ndarray:
    """(N,) int64 group codes of one key from its task's per-sample values: class indices (-1 or NaN: missing)
    for a classification key, values in the task's unit (NaN: missing) for a bucketing; -1 where missing."""
    found = key_spec(key)
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values) if not isinstance(values, (list, tuple)) else None
    if arr is None or arr.dtype == object:  # names, None or NaN mixed in: one value at a time
        v = np.array([_float(x) for x in (values if arr is None else arr.reshape(-1))], dtype=np.float64)
    else:
        v = arr.astype(np.float64).reshape(-1)
    if found is not None and found[1] is not None:
        return bucket(v, found[1])
    return np.where(np.isfinite(v) & (v >= 0), v, -1).astype(np.int64)


def group_codes(values: Mapping[str, Any], keys: Sequence[str]) -> np.ndarray:
    """(N, len(keys)) int64 group codes of every sample for each key; -1 where the sample has no value for it.

    Args:
        values: ``{task name: (N,) per-sample values}`` (class indices with -1 missing, regression values with NaN
            missing: the training targets, numpy arrays or tensors); a key whose task is absent is all missing.
        keys: group keys (see :func:`slice_keys`).
    """
    n = len(next(iter(values.values()))) if values else 0
    cols = []
    for key in keys:
        found = key_spec(key)
        name = found[0].name if found is not None else key
        cols.append(key_codes(key, values[name]) if name in values else np.full(n, -1, dtype=np.int64))
    return np.stack(cols, 1) if cols and n else np.zeros((n, len(keys)), dtype=np.int64)

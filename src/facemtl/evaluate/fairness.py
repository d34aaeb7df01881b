"""Per-group performance tables (ethnicity x gender x age band) and their gaps, with bootstrap CIs, as data.

Input format: a **list of dicts**, one per face. Group attributes are true label *names* under the
task name (``"ethnicity": "white"``, ``"gender": "female"``) and the true age in years under
``"age"``, from which ``"age_band"`` is derived (a bucketing of the age task's spec, through
:func:`facemtl.groups.bucket`; an explicit ``"age_band"`` key wins). A missing attribute (absent, None, NaN,
``""``) leaves the record out of every grouping that uses it. The default group keys are the registry's slices
(:func:`facemtl.groups.slice_keys`).

The audited task's truth and prediction are read in one of two forms:

- multi-task (what :func:`build_records` makes, and what :func:`fairness_report` expects): the
  truth under the task name and the prediction under ``record["pred"][task]``, e.g.
  ``{"age": 34.0, "gender": "female", "ethnicity": "white", "pred": {"age": 31.5, "gender": "male"}}``;
- single-task (for :func:`group_table` only): ``"y_true"`` and ``"y_pred"`` keys, used when the
  record has no ``"pred"`` dict.

Classification values are label names (or class indices); regression values are floats. A
record whose truth or prediction for the audited task is missing is ignored for that task.

The metric of a task's table is its spec's headline (MAE for age, lower is better; accuracy for the
classification tasks, higher is better); both are means of per-sample scores (absolute error,
correct 0/1), which makes the bootstrap cheap. Groups are only the ones observed: a group with no
labelled sample for the task is omitted, never reported as 0 or 100%.

The confidence intervals come from :mod:`facemtl.evaluate.bootstrap`; the text and HTML of these tables
(plain-language summary included) from :mod:`facemtl.report`.
"""
from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, InvalidInputError
from ..groups import bucket_names, group_values, key_spec, slice_keys
from ..tasks import TaskSpec, get_task, list_tasks, resolve_tasks
from ._json import finite_number
from .bootstrap import bootstrap_gap_ci, bootstrap_mean_ci

__all__ = [
    "DEFAULT_GROUP_KEYS",
    "build_records",
    "fairness_report",
    "fairness_rows",
    "group_table",
    "group_values",
]

logger = logging.getLogger(__name__)

DEFAULT_GROUP_KEYS: tuple[str, ...] = slice_keys()  # the registry's slices: ethnicity, gender, age_band

Record = Mapping[str, Any]

# --------------------------------------------------------------------------- records


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(float(value))
    return False


def _attributes(records: Sequence[Record], keys: Sequence[str]) -> list[dict[str, str | None]]:
    """Each record's group attribute per key, as a name or None when missing. A key that is a bucketing of a
    regression task (``age_band``) is derived from the record's value of that task (vectorised,
    :func:`facemtl.groups.bucket`) where the record does not give it."""
    columns: dict[str, list[str | None]] = {}
    for key in keys:
        given: list[str | None] = [None if _is_missing(r.get(key)) else str(r.get(key)) for r in records]
        found = key_spec(key)
        table = found[1] if found is not None else None
        if found is not None and table is not None and any(g is None for g in given):
            derived = bucket_names([_value(r.get(found[0].name)) for r in records], table)
            given = [g if g is not None else d for g, d in zip(given, derived)]
        columns[key] = given
    return [{k: columns[k][i] for k in keys} for i in range(len(records))]


def _value(value: Any) -> float:
    """A regression attribute as a float; NaN when missing or not a number."""
    if _is_missing(value) or isinstance(value, str):
        return math.nan
    return float(value)


def _class_index(spec: TaskSpec, value: Any) -> int | None:
    if _is_missing(value):
        return None
    if isinstance(value, str):
        return spec.label_index(value)
    idx = int(value)
    if idx < 0:
        return None
    if idx >= len(spec.labels):
        raise InvalidInputError(f"{spec.name}: class index {idx} is out of range for labels {spec.labels}")
    return idx


def _task_pair(record: Record, spec: TaskSpec) -> tuple[Any, Any]:
    pred = record.get("pred")
    if isinstance(pred, Mapping):
        return record.get(spec.name), pred.get(spec.name)
    return record.get("y_true"), record.get("y_pred")


# The headline metrics a group table can use: means of per-sample scores (the bootstrap resamples them).
_PER_SAMPLE = {"mae": "regression", "accuracy": "classification"}


def _table_metric(spec: TaskSpec) -> str:
    """The metric of the task's group table: its headline, which must be a mean of per-sample scores."""
    if _PER_SAMPLE.get(spec.headline) != spec.kind:
        usable = ", ".join(k for k, v in _PER_SAMPLE.items() if v == spec.kind)
        raise ConfigError(f"task {spec.name!r}: its headline {spec.headline!r} has no per-sample score for the "
                          f"fairness tables (use one of: {usable})")
    return spec.headline


def _sample_score(record: Record, spec: TaskSpec) -> float | None:
    """Per-sample score: |error| (regression) or correct 0/1 (classification); None when unlabelled."""
    truth, pred = _task_pair(record, spec)
    if spec.kind == "regression":
        if _is_missing(truth) or _is_missing(pred):
            return None
        return abs(float(pred) - float(truth))
    t, p = _class_index(spec, truth), _class_index(spec, pred)
    if t is None or p is None:
        return None
    return float(t == p)


def build_records(
    targets: Mapping[str, npt.ArrayLike],
    predictions: Mapping[str, npt.ArrayLike],
    tasks: Iterable[str | TaskSpec] | None = None,
    attributes: Mapping[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Turn per-task arrays into the multi-task record list used by :func:`fairness_report`.

    Args:
        targets: ``{task: (N,) array}`` of true values: class indices with -1 = missing, or
            regression values with NaN = missing (the ``dict[str, Tensor]`` of training targets).
        predictions: ``{task: (N,) array}`` of predicted class indices or values.
        tasks: the specs (or names) to convert; default: every registered task named in
            ``targets`` or ``predictions``.
        attributes: extra per-sample group attributes copied verbatim (``{"skin_tone": [...]}``).

    Returns:
        ``[{task: truth name/value or None, ..., <attributes>, "pred": {task: name/value}}]``.

    Raises:
        InvalidInputError: if the arrays differ in length.
    """
    if tasks is None:
        names = [n for n in list_tasks() if n in targets or n in predictions]
        specs: Sequence[TaskSpec] = [get_task(n) for n in names]
    else:
        specs = resolve_tasks(tasks)
    columns: dict[str, np.ndarray] = {}
    for source, prefix in ((targets, ""), (predictions, "pred:")):
        for name, arr in source.items():
            if hasattr(arr, "detach"):
                arr = arr.detach().cpu().numpy()
            columns[prefix + name] = np.asarray(arr).reshape(-1)
    for name, seq in (attributes or {}).items():
        columns["attr:" + name] = np.asarray(list(seq), dtype=object)
    lengths = {k: v.size for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInputError(f"arrays differ in length: {lengths}")
    n = next(iter(lengths.values()), 0)

    def convert(spec: TaskSpec, value: Any) -> Any:
        if spec.kind == "regression":
            return None if _is_missing(value) else float(value)
        if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
            return None
        idx = int(value)
        return spec.labels[idx] if 0 <= idx < len(spec.labels) else None

    records: list[dict[str, Any]] = []
    for i in range(n):
        rec: dict[str, Any] = {}
        pred: dict[str, Any] = {}
        for spec in specs:
            if spec.name in columns:
                rec[spec.name] = convert(spec, columns[spec.name][i])
            if "pred:" + spec.name in columns:
                pred[spec.name] = convert(spec, columns["pred:" + spec.name][i])
        for name in attributes or {}:
            rec[name] = columns["attr:" + name][i]
        rec["pred"] = pred
        records.append(rec)
    return records


# --------------------------------------------------------------------------- group tables


def _extremes(rows: Sequence[dict[str, Any]], higher_is_better: bool, min_count: int) -> dict[str, Any]:
    eligible = [r for r in rows if r["value"] is not None and r["n"] >= min_count]
    if not eligible:
        return {"worst_group": None, "best_group": None, "gap": None, "n_groups": 0}
    # min/max keep the first row among ties, i.e. the coarsest grouping in row order.
    lowest = min(eligible, key=lambda r: r["value"])
    highest = max(eligible, key=lambda r: r["value"])
    best, worst = (highest, lowest) if higher_is_better else (lowest, highest)
    out: dict[str, Any] = {
        "worst_group": dict(worst),
        "best_group": dict(best),
        "gap": abs(best["value"] - worst["value"]) if len(eligible) > 1 else None,
        "n_groups": len(eligible),
    }
    if "ci_low" in best and len(eligible) > 1:
        # Overlapping intervals: the gap may be noise (small groups).
        lo_hi = [(r["ci_low"], r["ci_high"]) for r in (best, worst)]
        if all(v is not None for pair in lo_hi for v in pair):
            (b_lo, b_hi), (w_lo, w_hi) = lo_hi
            out["cis_overlap"] = bool(b_lo <= w_hi and w_lo <= b_hi)
        else:
            out["cis_overlap"] = None
    return out


def group_table(
    records: Sequence[Record],
    task_spec: TaskSpec | str,
    group_keys: Sequence[str] = DEFAULT_GROUP_KEYS,
    min_count: int = 1,
    *,
    max_order: int | None = None,
    n_boot: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """The task's headline metric per group, for each key and each crossing of keys.

    Args:
        records: one dict per face (format in the module docstring).
        task_spec: the audited task (or its registered name).
        group_keys: attributes to slice by; every combination of up to ``max_order`` keys is a
            grouping (single keys, then pairs, then triples: ``ethnicity x gender x age_band``).
        min_count: groups with fewer labelled samples are listed but ignored for worst/best/gap.
        max_order: largest crossing; default ``len(group_keys)``.
        n_boot: if > 0, add a percentile bootstrap CI (``ci_low``, ``ci_high``) to every row.
        alpha: 1 - confidence level of the CI.
        seed: bootstrap seed (each row uses it, so rows are reproducible one by one).

    Returns:
        ``{"task", "metric" (the spec's headline: "mae" | "accuracy"), "higher_is_better", "n", "value" (overall),
        "min_count", "rows": [{"grouping": "ethnicity x gender", "group": {"ethnicity": "white",
        "gender": "female"}, "n", "metric", "value"[, "ci_low", "ci_high"]}], "by_grouping":
        {grouping: {"worst_group", "best_group", "gap", "n_groups"[, "cis_overlap", "gap_ci_low",
        "gap_ci_high"]}}, "worst_group", "best_group", "gap", "n_groups"[, "cis_overlap",
        "gap_ci_low", "gap_ci_high"]}``. Accuracy is a share in [0, 1], MAE in years. The
        top-level worst/best/gap range over every row with ``n >= min_count``; ``gap`` is None
        with fewer than two such groups. Groups with no labelled sample are omitted. With
        ``n_boot > 0`` and a gap, ``gap_ci_low``/``gap_ci_high`` bound the best-minus-worst
        difference (oriented so the gap is positive), resampling the two groups independently;
        a low end at or below 0 means the gap may be chance. The interval is for those two
        groups as given: picking them as the extremes among many groups is not accounted for.

    Raises:
        InvalidInputError: on an out-of-range class index; UnknownNameError on an unknown label.

    Example:
        >>> recs = [{"gender": "female", "ethnicity": "white", "age": 30,
        ...          "y_true": "female", "y_pred": "male"}]
        >>> group_table(recs, "gender", ("gender",))["rows"][0]["value"]
        0.0
    """
    spec = get_task(task_spec) if isinstance(task_spec, str) else task_spec
    keys = tuple(group_keys)
    order = len(keys) if max_order is None else max(1, min(max_order, len(keys)))
    metric = _table_metric(spec)
    higher_is_better = bool(spec.higher_is_better)

    scores: list[float] = []
    scored: list[Record] = []
    for rec in records:
        s = _sample_score(rec, spec)
        if s is None:
            continue
        scores.append(s)
        scored.append(rec)
    attrs = _attributes(scored, keys)
    all_scores = np.asarray(scores, dtype=np.float64)

    def make_row(grouping: str, group: dict[str, str], sel: np.ndarray) -> dict[str, Any]:
        v = all_scores[sel]
        row: dict[str, Any] = {
            "grouping": grouping, "group": group, "n": int(v.size), "metric": metric,
            "value": float(v.mean()),
        }
        if n_boot > 0:
            lo, hi = bootstrap_mean_ci(v, n_boot, alpha, seed)
            row["ci_low"], row["ci_high"] = finite_number(lo), finite_number(hi)
        return row

    rows: list[dict[str, Any]] = []
    selections: dict[tuple[str, tuple[tuple[str, str], ...]], np.ndarray] = {}

    def sel_of(row: Mapping[str, Any]) -> np.ndarray:
        return selections[(row["grouping"], tuple(row["group"].items()))]

    def with_gap_ci(ext: dict[str, Any]) -> dict[str, Any]:
        if n_boot > 0 and ext.get("gap") is not None:
            b, w = all_scores[sel_of(ext["best_group"])], all_scores[sel_of(ext["worst_group"])]
            ext["gap_ci_low"], ext["gap_ci_high"] = bootstrap_gap_ci(b, w, higher_is_better, n_boot, alpha, seed)
        return ext

    by_grouping: dict[str, dict[str, Any]] = {}
    orders = {k: group_values(k) for k in keys}
    for size in range(1, order + 1):
        for combo in itertools.combinations(keys, size):
            grouping = " x ".join(combo)
            members: dict[tuple[str, ...], list[int]] = {}
            for i, a in enumerate(attrs):
                values = tuple(a[k] for k in combo)
                if any(v is None for v in values):
                    continue
                members.setdefault(values, []).append(i)  # type: ignore[arg-type]

            def sort_key(values: tuple[str, ...], combo: tuple[str, ...] = combo) -> list[tuple[int, str]]:
                return [
                    (orders[k].index(v) if v in orders[k] else len(orders[k]), v)
                    for k, v in zip(combo, values)
                ]

            group_rows = []
            for values in sorted(members, key=sort_key):
                group = dict(zip(combo, values))
                sel = np.asarray(members[values])
                selections[(grouping, tuple(group.items()))] = sel
                group_rows.append(make_row(grouping, group, sel))
            rows.extend(group_rows)
            by_grouping[grouping] = with_gap_ci(_extremes(group_rows, higher_is_better, min_count))

    table: dict[str, Any] = {
        "task": spec.name,
        "metric": metric,
        "higher_is_better": higher_is_better,
        "n": int(all_scores.size),
        "value": float(all_scores.mean()) if all_scores.size else None,
        "min_count": int(min_count),
        "rows": rows,
        "by_grouping": by_grouping,
    }
    if n_boot > 0 and all_scores.size:
        lo, hi = bootstrap_mean_ci(all_scores, n_boot, alpha, seed)
        table["ci_low"], table["ci_high"] = finite_number(lo), finite_number(hi)
    table.update(with_gap_ci(_extremes(rows, higher_is_better, min_count)))
    if not all_scores.size:
        table["note"] = f"no record has both a true and a predicted {spec.name!r}"
    return table


def fairness_report(
    records: Sequence[Record],
    tasks: Iterable[str | TaskSpec] | None = None,
    group_keys: Sequence[str] = DEFAULT_GROUP_KEYS,
    min_count: int = 1,
    *,
    max_order: int | None = None,
    n_boot: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, Any]:
    """Group tables for every task present in multi-task records, as one JSON-ready dict.

    Args:
        records: multi-task records (truth under the task name, prediction under
            ``record["pred"][task]``), e.g. from :func:`build_records`.
        tasks: tasks to audit; default every registered task with at least one record holding
            both a truth and a prediction.
        group_keys: attributes to slice by (see :func:`group_table`).
        min_count: smallest group size counted in worst/best/gap.
        max_order: largest crossing of keys.
        n_boot: bootstrap resamples per group (0 = no CIs).
        alpha: 1 - confidence level.
        seed: bootstrap seed.

    Returns:
        ``{"group_keys": [...], "min_count", "n_records", "n_boot", "alpha",
        "tasks": {task: group_table(...)}}``.

    Example:
        >>> recs = build_records({"gender": [0, 1], "age": [25.0, 61.0]},
        ...                      {"gender": [0, 0], "age": [30.0, 50.0]})
        >>> rep = fairness_report(recs, group_keys=("gender", "age_band"))
        >>> rep["tasks"]["gender"]["gap"]
        1.0
    """
    if tasks is None:
        specs = [
            get_task(name) for name in list_tasks()
            if any(_sample_score(r, get_task(name)) is not None for r in records)
        ]
        if records and not specs:
            logger.warning("no task has both truth and prediction in the records; "
                           "fairness_report expects record['pred'][task]")
    else:
        specs = list(resolve_tasks(tasks))
    return {
        "group_keys": list(group_keys),
        "min_count": int(min_count),
        "n_records": len(records),
        "n_boot": int(n_boot),
        "alpha": float(alpha),
        "tasks": {
            spec.name: group_table(records, spec, group_keys, min_count, max_order=max_order,
                                   n_boot=n_boot, alpha=alpha, seed=seed)
            for spec in specs
        },
    }


def fairness_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten a :func:`fairness_report` into CSV-ready rows.

    Args:
        report: the output of :func:`fairness_report`.

    Returns:
        One flat dict per group row: ``task, grouping, <each group key> (None if not part of the
        grouping), n, metric, value, ci_low, ci_high``.
    """
    keys = list(report.get("group_keys", DEFAULT_GROUP_KEYS))
    out: list[dict[str, Any]] = []
    for task, table in report.get("tasks", {}).items():
        for row in table.get("rows", []):
            flat: dict[str, Any] = {"task": task, "grouping": row["grouping"]}
            flat.update({k: row["group"].get(k) for k in keys})
            flat.update({
                "n": row["n"], "metric": row["metric"], "value": row["value"],
                "ci_low": row.get("ci_low"), "ci_high": row.get("ci_high"),
            })
            out.append(flat)
    return out

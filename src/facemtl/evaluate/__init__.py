"""Evaluation, the computation: metrics (registry by name, per-task reports), fairness tables as data, bootstrap
confidence intervals, the evaluation run (:mod:`.evaluate`), calibration fitting (:mod:`.calibrate`) and its
measurement (:mod:`.calibration_report`). Their text, HTML and charts are :mod:`facemtl.report`.

Example:
    >>> from facemtl.evaluate import compute_task_metrics
    >>> from facemtl.tasks import get_task
    >>> report = {"age": compute_task_metrics(get_task("age"), [20.0, 40.0], [22.0, 37.0])}
    >>> report["age"]["mae"]
    2.5
"""
from __future__ import annotations

from .bootstrap import bootstrap_ci, bootstrap_gap_ci, bootstrap_mean_ci
from .fairness import (
    DEFAULT_GROUP_KEYS,
    build_records,
    fairness_report,
    fairness_rows,
    group_table,
)
from .metrics import (
    METRICS,
    MetricFn,
    accuracy,
    age_group_accuracy,
    balanced_accuracy,
    binary_scores,
    compute_task_metrics,
    confusion_matrix,
    cs5,
    cumulative_score,
    expected_calibration_error,
    f1,
    flatten_metrics,
    get_metric,
    list_metrics,
    macro_f1,
    mae,
    mae_by_band,
    negative_log_likelihood,
    per_class_scores,
    precision,
    r2,
    recall,
    register_metric,
    reliability_bins,
    rmse,
)

__all__ = [
    # metrics
    "METRICS",
    "MetricFn",
    "register_metric",
    "get_metric",
    "list_metrics",
    "mae",
    "rmse",
    "r2",
    "cumulative_score",
    "cs5",
    "mae_by_band",
    "age_group_accuracy",
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
    "compute_task_metrics",
    "flatten_metrics",
    # fairness
    "DEFAULT_GROUP_KEYS",
    "build_records",
    "group_table",
    "fairness_report",
    "fairness_rows",
    # bootstrap
    "bootstrap_ci",
    "bootstrap_mean_ci",
    "bootstrap_gap_ci",
]

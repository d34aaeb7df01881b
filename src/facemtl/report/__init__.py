"""Presentation of evaluation results: the plain-text tables ``facemtl evaluate`` / ``facemtl audit`` print, the
HTML reports with their SVG charts, and their JSON and CSV files. It reads the dicts :mod:`facemtl.evaluate`
computes and never computes a metric itself (``report`` imports ``evaluate``, never the reverse).

Modules:
    text: format_metrics, format_by_source, format_fairness (+ fairness_sentence), format_calibration,
        format_age_coverage.
    html: render_html / write_report (``evaluate --report DIR``), render_audit_html / write_audit / audit_data
        (``audit --out DIR`` / ``--json``).
    svg: the inline charts of the HTML pages.
    _format: the one place for number, percentage, gap and interval formatting and for JSON output.

Example:
    >>> from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
    >>> from facemtl.report import format_metrics, write_report
    >>> rep = evaluate(EvaluateConfig(utkface="data/utkface", keep_samples=True))
    >>> print(format_metrics(rep["metrics"]))
    >>> write_report(rep, "report")   # -> report/index.html, report.json, metrics.csv, fairness.csv
"""
from __future__ import annotations

from .html import audit_data, render_audit_html, render_html, write_audit, write_report
from .text import (
    fairness_sentence,
    format_age_coverage,
    format_by_source,
    format_calibration,
    format_fairness,
    format_metrics,
)

__all__ = [
    "audit_data",
    "fairness_sentence",
    "format_age_coverage",
    "format_by_source",
    "format_calibration",
    "format_fairness",
    "format_metrics",
    "render_audit_html",
    "render_html",
    "write_audit",
    "write_report",
]

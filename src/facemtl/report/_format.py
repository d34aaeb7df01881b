"""The one place where the report package turns numbers into text and reports into JSON.

Numbers: :func:`number` (the core: a share as a percentage with one decimal, anything else with fixed digits,
a marker for a missing or non-finite value), :func:`format_value` (a fairness headline value),
:func:`format_metric` (any metric of :func:`facemtl.evaluate.metrics.compute_task_metrics` by its name),
:func:`format_gap` (a gap or a bound of its CI), :func:`format_interval` / :func:`format_ci` (a confidence
interval), :func:`confidence_level`, :func:`format_temperatures`; groups: :func:`group_name`,
:func:`short_group_name`; HTML text: :func:`esc`; JSON: :func:`json_text` / :func:`write_json` (through
:func:`facemtl.evaluate._json.jsonable`, the one cleaner, which the metrics use too).

Where two outputs used to differ (brackets in the terminal, a dash on the web page; ``-`` or ``n/a`` for a
missing share), a parameter keeps each one as it was: tests and users' scripts read these texts.
"""
from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..evaluate._json import finite_number, jsonable

__all__ = [
    "METRIC_NAMES",
    "SHARE_METRICS",
    "confidence_level",
    "esc",
    "format_ci",
    "format_gap",
    "format_interval",
    "format_metric",
    "format_temperatures",
    "format_value",
    "group_name",
    "json_text",
    "number",
    "percent",
    "short_group_name",
    "write_json",
]

# metrics that are shares in [0, 1], shown as percentages
SHARE_METRICS = frozenset({"accuracy", "balanced_accuracy", "macro_f1", "precision", "recall", "f1", "cs5",
                           "age_group_accuracy", "ece"})
METRIC_NAMES = {"mae": "MAE (years)", "rmse": "RMSE (years)", "r2": "R²", "cs5": "CS@5", "accuracy": "accuracy",
                "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1", "precision": "precision",
                "recall": "recall", "f1": "F1", "ece": "ECE", "nll": "NLL", "age_group_accuracy": "age-group accuracy",
                "n": "labelled images", "positive_label": "positive class"}

# the unit after a gap: (accuracy, MAE); "words" in sentences, "pts" in the HTML tables, "none" inside a CI
GapUnit = Literal["words", "pts", "none"]
_GAP_UNITS: dict[str, tuple[str, str]] = {"words": (" percentage points", " years"), "pts": (" pts", ""),
                                          "none": ("", "")}


# --------------------------------------------------------------------------- numbers


def number(x: Any, digits: int = 2, *, percent: bool = False, sign: str = "%", missing: str = "n/a") -> str:
    """``x`` as text: with ``percent``, a share as a percentage with one decimal (``0.931`` -> ``"93.1%"``;
    ``sign=""`` leaves the sign off), else with ``digits`` decimals; ``missing`` when ``x`` is not a finite
    number (None, NaN, inf, a bool, text)."""
    v = finite_number(x)
    if v is None:
        return missing
    return f"{100 * v:.1f}{sign}" if percent else f"{v:.{digits}f}"


def percent(x: Any, sign: str = "%", missing: str = "n/a") -> str:
    """A share as a percentage with one decimal (``"93.1%"``); ``missing`` when it is not a finite number."""
    return number(x, percent=True, sign=sign, missing=missing)


def format_value(metric: str, value: Any) -> str:
    """A headline value as text: accuracy as a percentage (``"93.1%"``), MAE in years (``"5.43"``);
    ``"n/a"`` when missing."""
    return number(value, percent=metric == "accuracy")


def format_metric(x: Any, metric: str = "", digits: int = 2) -> str:
    """A value of a metrics report by its metric name: shares (:data:`SHARE_METRICS`) as percentages, counts
    (``n``, ``support``, ``count``, any int) as integers, R² and NLL with three decimals, others with ``digits``;
    text as it is; ``"n/a"`` when missing."""
    if isinstance(x, str):
        return x
    v = finite_number(x)
    if v is None:
        return "n/a"
    if metric in SHARE_METRICS:
        return percent(v)
    if metric in ("n", "support", "count") or (isinstance(x, int) and not isinstance(x, bool)):
        return str(int(v))
    return number(v, 3 if metric in ("r2", "nll") else digits)


def format_gap(metric: str, value: Any, unit: GapUnit = "words") -> str:
    """A gap (or a bound of its CI, which may be negative): percentage points for accuracy, years for MAE,
    followed by ``unit`` (``"words"``: " percentage points" / " years"; ``"pts"``: " pts" / nothing; ``"none"``);
    ``"n/a"`` when missing."""
    v = finite_number(value)
    if v is None:
        return "n/a"
    acc, mae = _GAP_UNITS[unit]
    return percent(v, sign=acc) if metric == "accuracy" else number(v) + mae


def format_interval(bounds: Sequence[Any] | None, fmt: Callable[[Any], str], *, style: Literal["text", "html"] = "text",
                    missing: str | None = None) -> str:
    """A confidence interval ``(low, high)``, each bound through ``fmt``: ``"[low, high]"`` in the terminal
    (``style="text"``), ``"low – high"`` on the web page (``"html"``); ``missing`` (``""`` for text, ``"n/a"`` for
    html by default) when there is none or a bound is not a finite number."""
    lo, hi = (None, None) if not bounds else (finite_number(bounds[0]), finite_number(bounds[1]))
    if lo is None or hi is None:
        return missing if missing is not None else ("" if style == "text" else "n/a")
    return f"[{fmt(lo)}, {fmt(hi)}]" if style == "text" else f"{fmt(lo)} – {fmt(hi)}"


def format_ci(row: Mapping[str, Any], metric: str, lo_key: str = "ci_low", hi_key: str = "ci_high", *,
              gap: bool = False, style: Literal["text", "html"] = "text") -> str:
    """The CI ``row[lo_key]``..``row[hi_key]`` of a fairness row (or of a gap, ``gap=True``), as
    :func:`format_interval`: values as :func:`format_value`, gap bounds as :func:`format_gap` (without a unit in
    the terminal, in pts on the web page)."""
    def fmt(v: Any) -> str:
        return format_gap(metric, v, "none" if style == "text" else "pts") if gap else format_value(metric, v)

    return format_interval((row.get(lo_key), row.get(hi_key)), fmt, style=style)


def confidence_level(alpha: Any) -> int:
    """The confidence level in percent of a CI at ``alpha`` (0.05 -> 95; None: 0.05)."""
    return round(100 * (1 - float(alpha if alpha is not None else 0.05)))


def format_temperatures(temperatures: Mapping[str, Any], prefix: str = "T=") -> str:
    """``{"gender": 1.5, "emotion": 0.8}`` -> ``"gender T=1.50, emotion T=0.80"`` (``""`` for none)."""
    return ", ".join(f"{k} {prefix}{float(v):.2f}" for k, v in temperatures.items())


# --------------------------------------------------------------------------- groups and HTML text


def group_name(group: Mapping[str, Any]) -> str:
    """``{"ethnicity": "white", "gender": "female"}`` -> ``"ethnicity: white, gender: female"``."""
    return ", ".join(f"{k}: {v}" for k, v in group.items())


def short_group_name(group: Mapping[str, Any]) -> str:
    """``{"ethnicity": "white", "gender": "female"}`` -> ``"white & female"``."""
    return " & ".join(str(v) for v in group.values())


def esc(x: Any) -> str:
    """HTML-escape anything (quotes too)."""
    return html.escape(str(x), quote=True)


# --------------------------------------------------------------------------- JSON


def json_text(data: Any) -> str:
    """``data`` as strict JSON text (indent 1): NaN/inf -> null, numpy -> Python, anything else -> ``str``."""
    return json.dumps(jsonable(data, fallback=str), indent=1, allow_nan=False)


def write_json(data: Any, path: str | Path) -> None:
    """Write :func:`json_text` of ``data`` to ``path``."""
    Path(path).write_text(json_text(data))

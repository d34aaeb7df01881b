"""A self-contained HTML evaluation report (inline CSS and SVG, thumbnails as data URIs) plus JSON and CSVs.

Input is the dict returned by :func:`facemtl.evaluate.evaluate.evaluate`; per-image data (``samples``, from
``EvaluateConfig(keep_samples=True)``) adds the age scatter plot, the error histogram and a prediction gallery.

Example:
    >>> from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
    >>> rep = evaluate(EvaluateConfig(utkface="data/utkface", keep_samples=True))
    >>> write_report(rep, "report")   # -> report/index.html, report.json, metrics.csv, fairness.csv
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..tasks import get_task, list_tasks
from .calibration_report import ECE_TARGET, GROUP_MIN, age_targets
from .fairness import (
    DEFAULT_GROUP_KEYS,
    fairness_rows,
    fairness_sentence,
    finite_number,
    format_value,
    group_name,
    group_values,
)
from .metrics import flatten_metrics

__all__ = ["audit_data", "render_audit_html", "render_html", "write_audit", "write_report"]

_PCT = {"accuracy", "balanced_accuracy", "macro_f1", "precision", "recall", "f1", "cs5", "age_group_accuracy",
        "ece"}
_NAMES = {"mae": "MAE (years)", "rmse": "RMSE (years)", "r2": "R²", "cs5": "CS@5", "accuracy": "accuracy",
          "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1", "precision": "precision",
          "recall": "recall", "f1": "F1", "ece": "ECE", "nll": "NLL", "age_group_accuracy": "age-group accuracy",
          "n": "labelled images", "positive_label": "positive class"}
_GALLERY_N = 6
_THUMB = 72

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1150px;padding:1em 2em;
color:#222;line-height:1.4}
h1{border-bottom:3px solid #2b6cb0;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc}
h3{margin-bottom:.3em}table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f3f5f8}
td.l,th.l{text-align:left}.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
.empty{color:#888;font-style:italic}.small{color:#666;font-size:.85em}.row{display:flex;flex-wrap:wrap;gap:1.5em}
.summary{background:#eef5fc;border-left:4px solid #2b6cb0;padding:.4em .8em}
nav a{margin-right:1em}.gal{display:flex;flex-wrap:wrap;gap:.6em}
figure.card{margin:0;width:120px;font-size:.75em;text-align:center;border:1px solid #ddd;padding:4px;border-radius:4px}
figure.card img{width:72px;height:72px;image-rendering:auto}.ok{color:#1a7f37}.bad{color:#c62828}
svg text{font-family:system-ui,sans-serif}
section#summary{background:#f7f9fc;border:1px solid #dbe3ee;border-radius:6px;padding:0 1em .6em;margin-top:1em}
section#summary h2{margin-top:.6em}.groupings{display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start}
.grouping h4{margin:.6em 0 .2em}details.folded{margin:-.6em 0 1em;font-size:.9em}
details.folded summary{cursor:pointer;color:#555}.grouping .row{align-items:flex-start}
"""


# --------------------------------------------------------------------------- formatting helpers


def _e(x: Any) -> str:
    """HTML-escape anything (quotes too)."""
    return html.escape(str(x), quote=True)


def _fmt(x: Any, metric: str = "", digits: int = 2) -> str:
    if isinstance(x, str):
        return x
    v = finite_number(x)
    if v is None:
        return "n/a"
    if metric in _PCT:
        return f"{100 * v:.1f}%"
    if metric in ("n", "support", "count") or (isinstance(x, int) and not isinstance(x, bool)):
        return str(int(v))
    if metric in ("r2", "nll"):
        return f"{v:.3f}"
    return f"{v:.{digits}f}"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, cls: str = "") -> str:
    """rows hold already-escaped HTML cells; the first ``left`` columns are left-aligned."""
    h = "".join(f'<th class="l">{_e(c)}</th>' if i < left else f"<th>{_e(c)}</th>" for i, c in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


# --------------------------------------------------------------------------- SVG charts


class _Plot:
    """A tiny SVG plot with linear axes (y up)."""

    def __init__(self, title: str, x_range: tuple[float, float], y_range: tuple[float, float], xlabel: str,
                 ylabel: str, w: int = 360, h: int = 300, kind: str = "chart") -> None:
        self.w, self.h, self.m = w, h, (40, 14, 44, 52)  # top right bottom left
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.parts: list[str] = []
        self.title, self.xlabel, self.ylabel, self.kind = title, xlabel, ylabel, kind

    def px(self, x: float) -> float:
        _, r, _, left = self.m
        return left + (x - self.x0) / ((self.x1 - self.x0) or 1) * (self.w - left - r)

    def py(self, y: float) -> float:
        t, _, b, _ = self.m
        return self.h - b - (y - self.y0) / ((self.y1 - self.y0) or 1) * (self.h - t - b)

    def add(self, s: str) -> None:
        self.parts.append(s)

    def line(self, x0: float, y0: float, x1: float, y1: float, style: str = "stroke:#999;stroke-dasharray:4 3") -> None:
        self.add(f'<line x1="{self.px(x0):.1f}" y1="{self.py(y0):.1f}" x2="{self.px(x1):.1f}" '
                 f'y2="{self.py(y1):.1f}" style="{style}"/>')

    def rect(self, x0: float, x1: float, y: float, fill: str = "#4a90d9", tip: str = "") -> None:
        a, b = sorted((self.px(x0), self.px(x1)))
        top, bottom = sorted((self.py(y), self.py(min(max(0.0, self.y0), self.y1))))
        self.add(f'<rect x="{a:.1f}" y="{top:.1f}" width="{max(b - a, .5):.1f}" height="{bottom - top:.1f}" '
                 f'fill="{fill}"><title>{_e(tip)}</title></rect>')

    def text(self, x: float, y: float, s: str, anchor: str = "middle", size: int = 10, fill: str = "#333",
             dy: float = 0) -> None:
        self.add(f'<text x="{self.px(x):.1f}" y="{self.py(y) + dy:.1f}" text-anchor="{anchor}" font-size="{size}" '
                 f'fill="{fill}">{_e(s)}</text>')

    def svg(self, xticks: Sequence[tuple[float, str]] | None = None,
            yticks: Sequence[tuple[float, str]] | None = None) -> str:
        t, r, b, left = self.m
        axes = [(f'<rect x="{left}" y="{t}" width="{self.w - left - r}" height="{self.h - t - b}" fill="none" '
                f'stroke="#444"/>')]
        for x, lab in xticks or _ticks(self.x0, self.x1):
            axes.append(f'<text x="{self.px(x):.1f}" y="{self.h - b + 14}" text-anchor="middle" font-size="10">'
                        f'{_e(lab)}</text>')
        for y, lab in yticks or _ticks(self.y0, self.y1):
            axes.append(f'<line x1="{left}" x2="{self.w - r}" y1="{self.py(y):.1f}" y2="{self.py(y):.1f}" '
                        f'stroke="#eee"/><text x="{left - 4}" y="{self.py(y) + 3:.1f}" text-anchor="end" '
                        f'font-size="10">{_e(lab)}</text>')
        axes.append(f'<text x="{self.w / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
                    f'{_e(self.title)}</text>')
        axes.append(f'<text x="{(left + self.w - r) / 2:.0f}" y="{self.h - 8}" text-anchor="middle" '
                    f'font-size="11">{_e(self.xlabel)}</text>')
        axes.append(f'<text transform="translate(13,{(t + self.h - b) / 2:.0f}) rotate(-90)" text-anchor="middle" '
                    f'font-size="11">{_e(self.ylabel)}</text>')
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{_e(self.kind)}" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{_e(self.title)}">'
                + "".join(axes[:1] + axes[1:] + self.parts) + "</svg>")


def _ticks(lo: float, hi: float, n: int = 5) -> list[tuple[float, str]]:
    span = hi - lo
    if span <= 0:
        return [(lo, f"{lo:g}")]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + 1e-9:
        out.append((v, f"{v:g}"))
        v += step
    return out


def _age_scatter(true: list[float], pred: list[float]) -> str:
    p = _Plot("Predicted vs true age", (0, 100), (0, 100), "true age (years)", "predicted age (years)",
              kind="chart scatter")
    p.line(0, 0, 100, 100)
    step = max(1, len(true) // 4000)
    for t, q in list(zip(true, pred))[::step]:
        p.add(f'<circle cx="{p.px(t):.1f}" cy="{p.py(q):.1f}" r="1.6" fill="#2b6cb0" fill-opacity=".35"/>')
    return p.svg()


def _error_histogram(errors: list[float], width: float = 2.0, limit: float = 40.0) -> str:
    nb = int(2 * limit / width)
    counts = [0] * nb
    for e in errors:
        i = int((min(max(e, -limit), limit - 1e-9) + limit) // width)
        counts[i] += 1
    top = max(counts) or 1
    p = _Plot("Age error (predicted − true)", (-limit, limit), (0, top * 1.1), "error (years, clipped at ±40)",
              "images", kind="chart histogram")
    for i, c in enumerate(counts):
        if c:
            lo = -limit + i * width
            p.rect(lo, lo + width * 0.95, c, tip=f"[{lo:g}, {lo + width:g}): {c}")
    p.line(0, 0, 0, top * 1.1, "stroke:#c62828")
    return p.svg()


def _mae_band_chart(by_band: Mapping[str, Mapping[str, Any]]) -> str:
    bands = list(by_band)
    vals = [finite_number(by_band[b].get("mae")) for b in bands]
    top = max([v for v in vals if v is not None] + [1.0]) * 1.2
    p = _Plot("MAE per age band", (0, len(bands)), (0, top), "true age band (years)", "MAE (years)",
              kind="chart bars")
    for i, (b, v) in enumerate(zip(bands, vals)):
        n = by_band[b].get("n", 0)
        if v is None:
            p.text(i + 0.5, 0, "no data", dy=-6, fill="#888")
        else:
            p.rect(i + 0.15, i + 0.85, v, tip=f"{b}: MAE {v:.2f} (n={n})")
            p.text(i + 0.5, v, f"{v:.1f}", dy=-4)
        p.text(i + 0.5, top, f"n={n}", dy=12, size=9, fill="#666")
    return p.svg(xticks=[(i + 0.5, b) for i, b in enumerate(bands)])


def _reliability_chart(task: str, bins: Sequence[Mapping[str, Any]], ece: Any, stage: str = "reliability") -> str:
    p = _Plot(f"{task}: {stage} (ECE {_fmt(ece, 'ece')})", (0, 1), (0, 1), "confidence (top probability)",
              "accuracy", kind="chart reliability")
    p.line(0, 0, 1, 1)
    for b in bins:
        acc, conf, n = finite_number(b.get("accuracy")), finite_number(b.get("confidence")), b.get("count", 0)
        lo, hi = float(b["lo"]), float(b["hi"])
        if acc is None or not n:
            continue
        p.rect(lo + (hi - lo) * 0.05, hi - (hi - lo) * 0.05, acc, fill="#4a90d9",
               tip=f"[{lo:.2f}, {hi:.2f}): n={n}, accuracy {acc:.1%}, confidence {conf if conf is None else f'{conf:.1%}'}")
        if conf is not None:
            p.add(f'<circle cx="{p.px(conf):.1f}" cy="{p.py(acc):.1f}" r="2.5" fill="#c62828"/>')
    return p.svg(xticks=_ticks(0, 1), yticks=_ticks(0, 1))


def _group_chart(task: str, metric: str, grouping: str, rows: Sequence[Mapping[str, Any]], overall: Any = None,
                 worst: Mapping[str, Any] | None = None) -> str:
    """Horizontal bars of the headline metric per group (``rows``: the compared ones), with CI whiskers, the
    overall value as a dashed line and the worst group in red."""
    acc = metric == "accuracy"
    names = [" & ".join(str(v) for v in r["group"].values()) for r in rows]
    tops = [finite_number(x) for r in rows for x in (r.get("value"), r.get("ci_high"))] + [finite_number(overall)]
    hi = 1.0 if acc else max([v for v in tops if v is not None] + [1.0]) * 1.15
    n = len(rows)
    left = int(min(230, 24 + 6.3 * max([len(x) for x in names] + [4])))
    p = _Plot(f"{task}: {_NAMES.get(metric, metric)} by {grouping}", (0, hi), (0, n),
              "accuracy" if acc else "MAE (years)", "", w=left + 340, h=84 + 20 * n,
              kind="chart groups")
    p.m = (40, 84, 44, left)  # room for the group names and the value labels
    for i, (r, name) in enumerate(zip(rows, names)):
        yc, v = n - i - 0.5, finite_number(r.get("value"))
        if v is None:
            continue
        is_worst = worst is not None and dict(worst.get("group") or {}) == dict(r["group"])
        ci = _ci(r, metric)
        y0, y1 = p.py(yc + 0.32), p.py(yc - 0.32)
        p.add(f'<rect x="{p.px(0):.1f}" y="{y0:.1f}" width="{max(p.px(v) - p.px(0), .5):.1f}" '
              f'height="{y1 - y0:.1f}" fill="{"#c62828" if is_worst else "#4a90d9"}"><title>'
              f'{_e(name)}: {_e(format_value(metric, v))} (CI {_e(ci)}, n={_e(r.get("n", 0))})</title></rect>')
        lo, hi_ = finite_number(r.get("ci_low")), finite_number(r.get("ci_high"))
        if lo is not None and hi_ is not None:
            yy = p.py(yc)
            p.add(f'<path class="ci" d="M{p.px(lo):.1f} {yy:.1f}H{p.px(hi_):.1f}M{p.px(lo):.1f} {yy - 4:.1f}v8'
                  f'M{p.px(hi_):.1f} {yy - 4:.1f}v8" stroke="#222" fill="none"/>')
        p.text(max(v, hi_ or 0), yc, f" {format_value(metric, v)}  n={r.get('n', 0)}", anchor="start", size=9,
               dy=3)
    ov = finite_number(overall)
    if ov is not None:
        p.line(ov, 0, ov, n, "stroke:#c62828;stroke-dasharray:4 3")
        p.text(ov, n, f"overall {format_value(metric, ov)}", size=9, fill="#c62828", dy=-3)
    xt = [(t, f"{100 * t:g}%") for t, _ in _ticks(0, 1)] if acc else None
    return p.svg(xticks=xt, yticks=[(n - i - 0.5, name) for i, name in enumerate(names)])


# --------------------------------------------------------------------------- sections


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{_e(sid)}"><h2>{_e(title)}</h2>{body}</section>'


def _headline_metric(task: str, m: Mapping[str, Any]) -> str:
    return "mae" if _spec_kind(task, m) == "regression" else "accuracy"


def _headline_cell(task: str, m: Mapping[str, Any] | None) -> str:
    if not m or _no_labels(task, m):
        return '<span class="empty">no labels</span>'
    k = _headline_metric(task, m)
    return f'{_e(_fmt(m.get(k), k))} <span class="small">n={_e(m.get("n", 0))}</span>'


def _summary_section(report: Mapping[str, Any], metrics_table: bool = True) -> str:
    """What a reader wants first: the headline figure per task, overall and per source, then per task the
    worst and best group with the gap (the details follow in their sections)."""
    parts = []
    metrics = report.get("metrics", {}) if metrics_table else {}
    if metrics:
        sources = list(report.get("by_source") or {})
        rows = []
        for task, m in metrics.items():
            k = _headline_metric(task, m)
            also = []
            if not _no_labels(task, m):
                for extra in (("rmse", "cs5") if k == "mae" else ("macro_f1", "ece")):
                    if finite_number(m.get(extra)) is not None:
                        also.append(f"{_NAMES.get(extra, extra)} {_fmt(m[extra], extra)}")
            rows.append([_e(task), _e(_NAMES.get(k, k)), _headline_cell(task, m)]
                        + [_headline_cell(task, (report["by_source"][src] or {}).get(task)) for src in sources]
                        + [_e(", ".join(also))])
        parts.append(_table(["task", "metric", "all images", *sources, "also"], rows, left=2, cls="headline"))
    fair = report.get("fairness", {})
    tasks = fair.get("tasks", {})
    if tasks:
        rows = []
        min_count = fair.get("min_count", 1)
        for task, tab in tasks.items():
            metric = tab.get("metric", "")
            w, b = tab.get("worst_group"), tab.get("best_group")
            small = sum(1 for r in tab.get("rows", []) if r.get("value") is None or r["n"] < min_count)
            if not w:
                why = tab.get("note") or ("no group label" if not tab.get("rows") else "no group large enough")
                rows.append([_e(task), _e(metric), f'<span class="empty">{_e(why)}</span>', "", "", "", ""])
                continue
            rows.append([_e(task), _e(metric), _e(f"{group_name(w['group'])} ({format_value(metric, w['value'])}, "
                                                  f"n={w['n']})"),
                         _e(f"{group_name(b['group'])} ({format_value(metric, b['value'])}, n={b['n']})"),
                         _e(_gap(metric, tab.get("gap"))) + (f' <span class="small">CI '
                                                             f'{_e(_ci(tab, metric, "gap_ci_low", "gap_ci_high", gap=True))}'
                                                             '</span>' if tab.get("gap_ci_low") is not None else ""),
                         _e(tab.get("n_groups", 0)), _e(small)])
        parts.append("<h3>Worst and best group per task</h3>"
                     + _table(["task", "metric", "worst group", "best group", "gap", "groups compared",
                               f"too small (n < {min_count})"], rows, left=4, cls="worst-groups")
                     + '<p class="small">Over every grouping with enough images; details, CIs and the small groups '
                       '(folded) in <a href="#fairness">Fairness</a>.</p>')
    if not parts:
        return ""
    return _section("summary", "Summary", "".join(parts))


def _data_section(report: Mapping[str, Any]) -> str:
    d, m = report.get("data", {}), report.get("model", {})
    cfg = d.get("config", {})
    rows = [[_e("model checkpoint"), _e(m.get("checkpoint", "n/a"))]]
    rows += [[_e(f"model {k}"), _e(v)] for k, v in m.items() if k != "checkpoint" and not isinstance(v, (dict, list))]
    for k in ("utkface", "fer2013", "manifest", "limit"):
        v = cfg.get(k)
        if v not in (None, (), []):
            rows.append([_e(f"dataset: {k}"), _e(", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v)])
    rows += [[_e(k), _e(d.get(k, "n/a"))] for k in ("split", "seed", "val_fraction", "n_images")]
    out = _table(["", "value"], rows, left=2)
    by_source = d.get("by_source", {})
    out += "<h3>Images per source/split</h3>" + (
        _table(["source/split", "images"], [[_e(k), _e(v)] for k, v in by_source.items()]) if by_source
        else '<p class="empty">none</p>')
    skipped = d.get("skipped", {})
    out += "<h3>Skipped</h3>" + (_table(["reason", "images"], [[_e(k), _e(v)] for k, v in skipped.items()])
                                 if skipped else '<p class="empty">nothing skipped</p>')
    return _section("data", "Data", out)


def _no_labels(task: str, m: Mapping[str, Any]) -> bool:
    return not m or not m.get("n")


def _metrics_section(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for task, m in metrics.items():
        parts.append(f"<h3>{_e(task)}</h3>")
        if _no_labels(task, m):
            parts.append(_note(m.get("note") or f"no {task} labels in this data: no metrics"))
            continue
        scalars = [[_e(_NAMES.get(k, k)), _e(_fmt(v, k))] for k, v in m.items()
                   if k != "kind" and (isinstance(v, (int, float, str)) or v is None)]
        tables = [_table(["metric", "value"], scalars)]
        if isinstance(m.get("per_class"), Mapping):
            rows = [[_e(lab), _e(_fmt(v.get("precision"), "precision")), _e(_fmt(v.get("recall"), "recall")),
                     _e(_fmt(v.get("f1"), "f1")), _e(_fmt(v.get("support"), "support"))]
                    for lab, v in m["per_class"].items()]
            tables.append(_table(["class", "precision", "recall", "F1", "support"], rows))
        if isinstance(m.get("mae_by_band"), Mapping):
            rows = [[_e(b), _e(_fmt(v.get("mae"), "mae")) if v.get("n") else '<span class="empty">no samples</span>',
                     _e(v.get("n", 0))] for b, v in m["mae_by_band"].items()]
            tables.append(_table(["true age band", "MAE (years)", "n"], rows))
        parts.append(f'<div class="row">{"".join(tables)}</div>')  # side by side: they are narrow
    return _section("metrics", "Metrics per task", "".join(parts) or _note("no metrics in this report"))


def _confusion_table(task: str, cm: Mapping[str, Any]) -> str:
    labels, matrix = cm.get("labels", []), cm.get("matrix", [])
    head = "".join(f"<th>{_e(lab)}</th>" for lab in labels)
    body = []
    for lab, row in zip(labels, matrix):
        total = sum(row)
        cells = []
        for j, c in enumerate(row):
            frac = c / total if total else 0.0
            bg = f"rgba(43,108,176,{0.08 + 0.85 * frac:.2f})" if c else "#fff"
            fg = "#fff" if frac > 0.55 else "#222"
            pct = f"<br><span class=\"small\" style=\"color:{fg}\">{frac:.0%}</span>" if total else ""
            bold = ";font-weight:bold" if lab == labels[j] else ""
            cells.append(f'<td style="background:{bg};color:{fg}{bold}" title="true {_e(lab)}, predicted '
                         f'{_e(labels[j])}: {c}">{c}{pct}</td>')
        rowhead = _e(lab) + ("" if total else ' <span class="empty">(no samples)</span>')
        body.append(f'<tr><th class="l">{rowhead}</th>{"".join(cells)}<td>{total}</td></tr>')
    return (f'<table class="confusion" data-task="{_e(task)}"><thead><tr><th class="l">true \\ predicted</th>{head}'
            f'<th>n</th></tr></thead><tbody>{"".join(body)}</tbody></table>')


def _confusion_section(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for task, m in metrics.items():
        if task in metrics and _spec_kind(task, m) != "classification":
            continue
        parts.append(f"<h3>{_e(task)}</h3>")
        if _no_labels(task, m) or "confusion_matrix" not in m:
            parts.append(_note(m.get("note") or f"no {task} labels: no confusion matrix"))
            continue
        parts.append('<p class="small">rows: true class, columns: predicted; colour and % are the share of the '
                     'row.</p>' + _confusion_table(task, m["confusion_matrix"]))
    return _section("confusion", "Confusion matrices", "".join(parts) or _note("no classification task"))


def _spec_kind(task: str, m: Mapping[str, Any]) -> str:
    if m.get("kind"):
        return str(m["kind"])
    try:
        return get_task(task).kind
    except Exception:  # noqa: BLE001 - an unknown task name in a hand-made report
        return "classification"


def _age_section(metrics: Mapping[str, Mapping[str, Any]], samples: Sequence[Mapping[str, Any]] | None) -> str:
    m = metrics.get("age")
    if m is None:
        return ""
    if _no_labels("age", m):
        return _section("age", "Age", _note(m.get("note") or "no age labels in this data: no age plots"))
    charts = []
    if isinstance(m.get("mae_by_band"), Mapping):
        charts.append(_mae_band_chart(m["mae_by_band"]))
    pairs = [(float(s["true"]["age"]), float(s["pred"]["age"])) for s in samples or ()
             if finite_number(s.get("true", {}).get("age")) is not None and finite_number(s.get("pred", {}).get("age")) is not None]
    extra = ""
    if pairs:
        charts.insert(0, _age_scatter([t for t, _ in pairs], [p for _, p in pairs]))
        charts.append(_error_histogram([p - t for t, p in pairs]))
    else:
        extra = _note("no per-image data in this report (evaluate with keep_samples / --report): "
                      "no scatter plot or error histogram")
    return _section("age", "Age", f'<div class="row">{"".join(charts)}</div>{extra}')


def _pc(v: Any) -> str:
    """A share as a percentage with one decimal (as ``facemtl evaluate`` prints it), "n/a" when missing."""
    return _fmt(v, "ece")


def _years(v: Any) -> str:
    x = finite_number(v)
    return "n/a" if x is None else f"{x:.1f}"


def _cov_ci(block: Mapping[str, Any]) -> str:
    ci = block.get("coverage_ci")
    return f"{_pc(ci[0])} – {_pc(ci[1])}" if ci else "n/a"


def _verdict(ok: bool, yes: str = "met", no: str = "not met") -> str:
    return f'<span class="ok">{_e(yes)}</span>' if ok else f'<span class="bad">{_e(no)}</span>'


def _few() -> str:
    return (f'<span class="empty" title="fewer than {_e(GROUP_MIN)} faces: listed, not held to the target">'
            f'few (n &lt; {_e(GROUP_MIN)})</span>')


_FEW_NOTE = (f'<p class="small">A verdict against a target needs at least {GROUP_MIN} faces: smaller sources, '
             'groups and heads are marked few (their numbers are shown, not held to the target).</p>')


def _age_group_table(cal: Mapping[str, Any]) -> str:
    """Age interval coverage per ethnicity x gender group (evaluation half), with the per-group target; groups
    under :data:`GROUP_MIN` faces are marked "few" (listed, not held to the target); groups without a face say so."""
    groups = cal.get("age_by_group") or {}
    level = float(cal.get("level", 0.9))
    if not groups:
        return _note("no age interval coverage per group: the model stores no age intervals, or no image of the "
                     "evaluation half has age, ethnicity and gender labels")
    t = age_targets(level)
    try:
        grid = [f"{e} & {g}" for e in get_task("ethnicity").labels for g in get_task("gender").labels]
    except Exception:  # noqa: BLE001 - a task set without these heads
        grid = []
    rows = []
    for name in list(dict.fromkeys(grid + list(groups))):
        b = groups.get(name) or {}
        if not b.get("n"):
            rows.append([_e(name), "0", '<span class="empty">no faces</span>', "n/a", "n/a", "n/a", ""])
            continue
        if not b.get("held_to_target"):
            verdict = _few()
        elif t:
            verdict = _verdict(finite_number(b.get("coverage")) is not None and b["coverage"] >= t[1])
        else:
            verdict = '<span class="empty">no target at this level</span>'
        rows.append([_e(name), _e(b["n"]), _e(_pc(b.get("coverage"))), _e(_cov_ci(b)), _e(_years(b.get("mean_width"))),
                     _e(_years(b.get("median_width"))), verdict])
    target = f"target ≥ {t[1]:.0%} (n ≥ {GROUP_MIN})" if t else "target"
    return _table(["ethnicity & gender", "faces", "coverage", "95% CI", "mean width (years)", "median width (years)",
                   target], rows, cls="coverage-groups")


def _calibration_tables(cal: Mapping[str, Any]) -> str:
    """The measured calibration (``report["calibration"]``): age interval per source, per group, ECE per head.
    A verdict against the issue's targets needs :data:`GROUP_MIN` faces; fewer are marked "few"."""
    level = float(cal.get("level", 0.9))
    t = age_targets(level)
    temps = cal.get("temperatures") or {}
    fitted = cal.get("fitted_on") or {}
    parts = [f'<p class="summary">Measured on {_e(cal.get("measured_on", "n/a"))}: {_e(cal.get("n", 0))} images. '
             f'Age interval level {_e(f"{level:.0%}")}; temperatures '
             + _e(", ".join(f"{k} T={float(v):.2f}" for k, v in temps.items()) or "none") + '.</p>']
    if fitted:
        parts.append('<p class="small">Fitted on: ' + _e("; ".join(
            f"{k} {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in fitted.items())) + "</p>")
    parts.append(_FEW_NOTE)
    rows, ece_rows = [], []
    for src, b in (cal.get("by_source") or {}).items():
        a = b.get("age") or {}
        if a.get("n"):
            cov = finite_number(a.get("coverage"))
            if a["n"] < GROUP_MIN:
                verdict = _few()
            elif t:
                verdict = _verdict(cov is not None and t[0][0] <= cov <= t[0][1])
            else:
                verdict = '<span class="empty">no target at this level</span>'
            rows.append([_e(src), _e(a["n"]), _e(_pc(a.get("coverage"))), _e(_cov_ci(a)),
                         _e(_years(a.get("mean_width"))), _e(_years(a.get("median_width"))), verdict])
        elif "age" in b:
            rows.append([_e(src), "0", '<span class="empty">no age labels</span>', "n/a", "n/a", "n/a", ""])
        for task, e in (b.get("ece") or {}).items():
            after = finite_number(e.get("after"))
            ece_rows.append([_e(src), _e(task), _e(e.get("n", 0)),
                             _e(_pc(e["before"])) if "before" in e else '<span class="empty">not measured</span>',
                             _e(_pc(e.get("after"))), _e(f"{float(temps[task]):.2f}") if task in temps else
                             '<span class="empty">none</span>',
                             _few() if e.get("n", 0) < GROUP_MIN else _verdict(after is not None and after <= ECE_TARGET)])
    parts.append(f"<h3>Age interval ({_e(f'{level:.0%}')}) per source</h3>")
    band = f"target {t[0][0]:.0%}–{t[0][1]:.0%}" if t else "target"
    parts.append(_table(["source", "faces", "coverage", "95% CI", "mean width (years)", "median width (years)", band],
                        rows, cls="coverage-sources") if rows
                 else _note("no age interval measured: the model stores no age intervals, or the evaluation half "
                            "has no age labels"))
    parts.append("<h3>Age interval coverage per ethnicity × gender</h3>" + _age_group_table(cal))
    parts.append("<h3>ECE per source and head, before → after calibration</h3>"
                 '<p class="small">Before: the plain softmax; after: with the stored temperature (the probabilities '
                 'the model reports).</p>')
    parts.append(_table(["source", "head", "faces", "ECE before", "ECE after", "temperature",
                         f"target ≤ {ECE_TARGET:.0%}"], ece_rows, left=2, cls="ece-sources") if ece_rows
                 else _note("no classification head has labels in the evaluation half: no ECE"))
    return "".join(parts)


def _calibration_section(metrics: Mapping[str, Mapping[str, Any]], cal: Mapping[str, Any] | None = None) -> str:
    temps = (cal or {}).get("temperatures") or {}
    charts, notes = [], []
    for task, m in metrics.items():
        if _spec_kind(task, m) != "classification":
            continue
        if _no_labels(task, m):
            notes.append(_note(f"{task}: no labels, no calibration"))
        elif m.get("reliability"):
            stage = "after calibration" if task in temps else "reliability"
            charts.append(_reliability_chart(task, m["reliability"], m.get("ece"), stage))
            if cal is not None and task not in temps:
                notes.append(_note(f"{task}: the model stores no temperature for this head: its diagram shows "
                                   "the plain softmax"))
        else:
            notes.append(_note(f"{task}: no probabilities in the report, no reliability diagram"))
    body = ""
    if cal is not None:
        body += _calibration_tables(cal) + "<h3>Reliability diagrams after calibration</h3>"
        intro = ('<p class="small">The probabilities the model reports, i.e. after temperature scaling, on all '
                 'evaluated images (both halves; the ECE table above is on the evaluation half only). ')
    else:
        intro = ('<p class="small">This model stores no calibration: the probabilities are the plain softmax '
                 '(facemtl calibrate fits one). ')
    body += (intro + 'Bars: accuracy per confidence bin; red dots: mean confidence; a calibrated head '
             'follows the diagonal. ECE = expected calibration error.</p>'
             f'<div class="row">{"".join(charts)}</div>{"".join(notes)}')
    return _section("calibration", "Calibration", body)


def _gap(metric: str, v: Any) -> str:
    """A gap or a bound of its CI: percentage points for accuracy, years for MAE ("n/a" when missing)."""
    x = finite_number(v)
    if x is None:
        return "n/a"
    return f"{100 * x:.1f} pts" if metric == "accuracy" else f"{x:.2f}"


def _ci(row: Mapping[str, Any], metric: str, lo_key: str = "ci_low", hi_key: str = "ci_high",
        gap: bool = False) -> str:
    lo, hi = row.get(lo_key), row.get(hi_key)
    if lo is None or hi is None:
        return "n/a"
    f = _gap if gap else format_value
    return f"{f(metric, lo)} – {f(metric, hi)}"


def _fairness_section(fair: Mapping[str, Any], charts: bool = False) -> str:
    """The per-task group tables (groups too small to compare folded into a <details>); with ``charts``,
    a bar chart of the headline metric per group, with its CI, beside each table (the audit page)."""
    tasks = fair.get("tasks", {})
    if not tasks:
        return _section("fairness", "Fairness", _note("no task could be audited (no labels)"))
    min_count = fair.get("min_count", 1)
    parts = [(f'<p class="small">Headline metric per group (accuracy for classification, MAE for age); groups '
             f'with fewer than {_e(min_count)} images are too few: folded under each table, without a number, '
             'and not used for worst/best/gap (fairness.csv has their values). '
             f'CI: {_e(round(100 * (1 - float(fair.get("alpha", 0.05)))))}% bootstrap interval '
             f'({_e(fair.get("n_boot", 0))} resamples). Groups with no labelled image say so, never 0%.</p>')]
    keys = list(fair.get("group_keys", DEFAULT_GROUP_KEYS))
    alpha = float(fair.get("alpha", 0.05))
    parts.append("<h3>Summary</h3><ul>" + "".join(
        f'<li class="summary">{_e(fairness_sentence(t, tab, keys, alpha))}</li>' for t, tab in tasks.items())
        + "</ul>")
    for task, tab in tasks.items():
        metric = tab.get("metric", "")
        parts.append(f"<h3>{_e(task)} — {_e(metric)}</h3>")
        if not tab.get("rows"):
            parts.append(_note(fairness_sentence(task, tab, keys, alpha)))
            continue
        overall = (f'<p>overall: {_e(format_value(metric, tab.get("value")))} (n={_e(tab.get("n", 0))}, '
                   f'CI {_e(_ci(tab, metric))})</p>')
        parts.append(overall)
        ext = []
        for grouping, e in (tab.get("by_grouping") or {}).items():
            if not e.get("worst_group"):
                ext.append([_e(grouping), '<span class="empty">no group large enough</span>', "", "", ""])
                continue
            w, b = e["worst_group"], e["best_group"]
            ext.append([_e(grouping),
                        _e(f"{group_name(w['group'])} ({format_value(metric, w['value'])}, n={w['n']})"),
                        _e(f"{group_name(b['group'])} ({format_value(metric, b['value'])}, n={b['n']})"),
                        _e(_gap(metric, e.get("gap"))),
                        _e(_ci(e, metric, "gap_ci_low", "gap_ci_high", gap=True)),
                        _e(e.get("n_groups", 0))])
        if ext:
            parts.append("<h4>Worst group and gap per grouping</h4>"
                         + _table(["grouping", "worst", "best", "gap", "gap CI", "groups compared"], ext, left=3))
        rows_by: dict[str, list[Mapping[str, Any]]] = {}
        for r in tab.get("rows", []):
            rows_by.setdefault(r["grouping"], []).append(r)
        blocks = []
        for grouping in list(dict.fromkeys(list(keys) + list(rows_by))):
            rows = rows_by.get(grouping, [])
            shown, folded = [], []
            for r in rows:
                # A group under min_count shows no number (a value from a handful of images invites
                # over-reading) and is folded away with the empty groups; fairness.csv and the JSON keep it.
                if r.get("value") is None or not r["n"]:
                    folded.append([_e(group_name(r["group"])), _e(r["n"]),
                                   '<span class="empty">no labelled images</span>', "n/a",
                                   '<span class="empty">not compared</span>'])
                elif r["n"] < min_count:
                    folded.append([_e(group_name(r["group"])), _e(r["n"]),
                                   f'<span class="empty">too few (n={_e(r["n"])})</span>', "",
                                   '<span class="empty">not compared</span>'])
                else:
                    shown.append([_e(group_name(r["group"])), _e(r["n"]), _e(format_value(metric, r.get("value"))),
                                  _e(_ci(r, metric))])
            if grouping in keys:  # a single attribute: list its missing values as empty groups
                seen = {r["group"].get(grouping) for r in rows}
                for v in group_values(grouping):
                    if v not in seen:
                        folded.append([_e(f"{grouping}: {v}"), "0", '<span class="empty">no labelled images</span>',
                                       "n/a", '<span class="empty">empty group</span>'])
            if not shown and not folded:
                continue
            body = (_table(["group", "n", metric, "CI"], shown, cls="fairness") if shown
                    else f'<p class="empty">no group of {_e(min_count)} or more images</p>')
            if charts and shown:
                compared = [r for r in rows if r.get("value") is not None and r["n"] >= min_count]
                worst = ((tab.get("by_grouping") or {}).get(grouping) or {}).get("worst_group")
                body = (f'<div class="row">{body}'
                        f'{_group_chart(task, metric, grouping, compared, tab.get("value"), worst)}</div>')
            if folded:
                body += (f'<details class="folded" data-groups="{len(folded)}"><summary>{len(folded)} group(s) '
                         f'too small to compare (n &lt; {_e(min_count)}) or empty</summary>'
                         + _table(["group", "n", metric, "CI", ""], folded, cls="fairness folded") + "</details>")
            blocks.append(f'<div class="grouping" data-grouping="{_e(grouping)}"><h4>by {_e(grouping)}</h4>'
                          f"{body}</div>")
        if blocks:
            parts.append(f'<div class="groupings">{"".join(blocks)}</div>')
    return _section("fairness", "Fairness", "".join(parts))


def _thumb(path: str | None, cache: dict[str, str | None]) -> str | None:
    if not path:
        return None
    if path not in cache:
        try:
            from PIL import Image

            with Image.open(path) as im:
                im = im.convert("RGB")
                im.thumbnail((_THUMB * 2, _THUMB * 2))
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=80)
            cache[path] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception:  # noqa: BLE001 - a moved or unreadable file: the card shows no picture
            cache[path] = None
    return cache[path]


def _card(s: Mapping[str, Any], task: str, cache: dict[str, str | None]) -> str:
    t, p = s["true"][task], s["pred"].get(task)
    uri = _thumb(s.get("path"), cache)
    img = f'<img src="{_e(uri)}" alt="face">' if uri else '<div class="empty">(no image)</div>'
    if isinstance(t, str):
        ok = t == p
        probs = s.get("probs", {}).get(task)
        conf = ""
        if probs:
            conf = f" ({max(probs):.0%})"
        lines = f'true: {_e(t)}<br><span class="{"ok" if ok else "bad"}">pred: {_e(p)}{_e(conf)}</span>'
    else:
        err = abs(float(p) - float(t)) if p is not None else None
        lines = (f'true: {_e(_fmt(t, "", 0))}<br><span class="{"ok" if err is not None and err <= 5 else "bad"}">'
                 f'pred: {_e(_fmt(p, "", 1))}</span>')
    others = "; ".join(f"{k} {v if isinstance(v, str) else _fmt(v, '', 0)}" for k, v in s["true"].items()
                       if k != task and v is not None)
    return (f'<figure class="card" title="{_e(s.get("path") or s.get("source", ""))}">{img}<figcaption>{lines}'
            f'<br><span class="small">{_e(others)}</span></figcaption></figure>')


def _gallery_section(metrics: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None, seed: int = 0) -> str:
    if not samples:
        return _section("gallery", "Prediction gallery",
                        _note("no per-image data in this report: run `facemtl evaluate ... --report DIR` "
                              "(or EvaluateConfig(keep_samples=True)) for best, worst and random predictions"))
    cache: dict[str, str | None] = {}
    parts = [('<p class="small">Per task: the most confident correct (best), the most confident wrong (worst) and '
             'random labelled images; for age, the smallest and largest errors.</p>')]
    tasks = list(metrics) or list_tasks()
    for task in tasks:
        lab = [s for s in samples if s.get("true", {}).get(task) is not None and s.get("pred", {}).get(task) is not None]
        parts.append(f"<h3>{_e(task)}</h3>")
        if not lab:
            parts.append(_note(f"no {task} labels in this data"))
            continue
        if isinstance(lab[0]["true"][task], str):
            def conf(s: Mapping[str, Any]) -> float:
                pr = s.get("probs", {}).get(task)  # noqa: B023
                return max(pr) if pr else 0.0
            right = [s for s in lab if s["true"][task] == s["pred"][task]]
            wrong = [s for s in lab if s["true"][task] != s["pred"][task]]
            best = sorted(right, key=conf, reverse=True)[:_GALLERY_N]
            worst = sorted(wrong, key=conf, reverse=True)[:_GALLERY_N]
        else:
            def err(s: Mapping[str, Any]) -> float:
                return abs(float(s["pred"][task]) - float(s["true"][task]))  # noqa: B023
            ordered = sorted(lab, key=err)
            best, worst = ordered[:_GALLERY_N], ordered[::-1][:_GALLERY_N]
        rnd = random.Random(f"{seed}:{task}").sample(lab, min(_GALLERY_N, len(lab)))
        for title, group in (("best", best), ("worst", worst), ("random", rnd)):
            cards = "".join(_card(s, task, cache) for s in group) or '<p class="empty">none</p>'
            parts.append(f'<h4>{_e(title)}</h4><div class="gal" data-kind="{_e(title)}">{cards}</div>')
    return _section("gallery", "Prediction gallery", "".join(parts))


# --------------------------------------------------------------------------- public API


def _page(title: str, report: Mapping[str, Any], sections: Sequence[str], nav: Sequence[tuple[str, str]],
          footer: str) -> str:
    """One self-contained HTML page: inline CSS, a subtitle naming the split and model, a nav bar."""
    d = report.get("data", {})
    sub = (f"split {d.get('split', 'n/a')}, {d.get('n_images', 'n/a')} images, model "
           f"{report.get('model', {}).get('checkpoint', 'n/a')}")
    links = "".join(f'<a href="#{i}">{_e(t)}</a>' for i, t in nav)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1><p class=\"small\">{_e(sub)}</p>"
            f"<nav>{links}</nav>{''.join(s for s in sections if s)}"
            f"<p class=\"small\">{_e(footer)}</p></body></html>\n")


def render_html(report: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, inline SVG, data-URI thumbnails)."""
    if samples is None:
        samples = report.get("samples")
    metrics = report.get("metrics", {})
    sections = [
        _summary_section(report), _data_section(report), _metrics_section(metrics), _confusion_section(metrics), _age_section(metrics, samples),
        _calibration_section(metrics, report.get("calibration")), _fairness_section(report.get("fairness", {})),
        _gallery_section(metrics, samples),
    ]
    nav = (("summary", "Summary"), ("data", "Data"), ("metrics", "Metrics"), ("confusion", "Confusion"), ("age", "Age"),
           ("calibration", "Calibration"), ("fairness", "Fairness"), ("gallery", "Gallery"))
    return _page("facemtl evaluation report", report, sections, nav,
                 "Numbers: report.json, metrics.csv, fairness.csv next to this file.")


def _coverage_section(cal: Mapping[str, Any] | None) -> str:
    """The audit's age interval coverage per ethnicity x gender group (empty when the model is not calibrated)."""
    if cal is None:
        return ""
    level = float(cal.get("level", 0.9))
    intro = (f'<p class="small">How often the {_e(f"{level:.0%}")} age interval contains the true age, per group, '
             f'measured on {_e(cal.get("measured_on", "n/a"))} ({_e(cal.get("n", 0))} images); 95% bootstrap '
             f'interval of the coverage. A verdict against the target needs at least {_e(GROUP_MIN)} faces: '
             'smaller groups are marked few (their numbers are shown, not held to the target).</p>')
    return _section("age-coverage", "Age interval coverage per group", intro + _age_group_table(cal))


def render_audit_html(report: Mapping[str, Any]) -> str:
    """The fairness audit as one self-contained HTML page: a summary (worst and best group per task), the data
    table, the fairness section with a bar chart per grouping (the headline metric per group, with its CI) and,
    for a calibrated model, the age interval coverage per ethnicity x gender group."""
    cal = report.get("calibration")
    nav = ([("summary", "Summary"), ("data", "Data"), ("fairness", "Fairness")]
           + ([("age-coverage", "Age interval coverage")] if cal else []))
    return _page("facemtl fairness audit", report,
                 [_summary_section(report, metrics_table=False), _data_section(report),
                  _fairness_section(report.get("fairness", {}), charts=True), _coverage_section(cal)],
                 nav, "Numbers: fairness.json and fairness.csv next to this file.")


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _clean(x: Any) -> Any:
    """Non-finite floats -> None, recursively (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_report(report: Mapping[str, Any], out_dir: str | Path,
                 samples: Sequence[Mapping[str, Any]] | None = None) -> Path:
    """Write ``index.html``, ``report.json``, ``metrics.csv`` and ``fairness.csv`` into ``out_dir``.

    Args:
        report: the dict of :func:`facemtl.evaluate.evaluate.evaluate`.
        out_dir: folder, created if needed; existing files of the same names are replaced.
        samples: per-image dicts (``path``, ``true``, ``pred``, ``probs``); default ``report["samples"]``.

    Returns:
        The path of ``index.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples = report.get("samples")
    data = dict(report)
    if samples is not None:
        data["samples"] = list(samples)
    _write_json(data, out / "report.json")
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "metric", "value"])
        for task, m in report.get("metrics", {}).items():
            for key, value in flatten_metrics({task: m}).items():
                w.writerow([task, key.split("/", 1)[1] if "/" in key else key, "" if value is None else value])
    _write_fairness_csv(report.get("fairness", {}), out / "fairness.csv")
    index = out / "index.html"
    index.write_text(render_html(report, samples), encoding="utf-8")
    return index


def _write_json(data: Any, path: Path) -> None:
    path.write_text(json.dumps(_clean(data), indent=1, default=_json_default, allow_nan=False))


def _write_fairness_csv(fair: Mapping[str, Any], path: Path) -> None:
    keys = list(fair.get("group_keys", DEFAULT_GROUP_KEYS))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["task", "grouping", *keys, "n", "metric", "value", "ci_low", "ci_high"])
        w.writeheader()
        for row in fairness_rows(fair):
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})


def audit_data(report: Mapping[str, Any]) -> dict[str, Any]:
    """The fairness audit as JSON-ready data: ``{"model", "data", "fairness", "summary": {task: sentence}}``,
    plus ``"calibration"`` (``report["calibration"]``: age interval coverage per source and per ethnicity x
    gender group, ECE per head) when the model is calibrated."""
    fair = report.get("fairness", {})
    keys = list(fair.get("group_keys", DEFAULT_GROUP_KEYS))
    alpha = float(fair.get("alpha", 0.05))
    summary = {t: fairness_sentence(t, tab, keys, alpha) for t, tab in fair.get("tasks", {}).items()}
    out = {"model": report.get("model", {}), "data": report.get("data", {}), "fairness": fair, "summary": summary}
    if report.get("calibration") is not None:
        out["calibration"] = report["calibration"]
    return _clean(out)


def write_audit(report: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``audit.html``, ``fairness.json`` (:func:`audit_data`) and ``fairness.csv`` into ``out_dir``.

    Args:
        report: the dict of :func:`facemtl.evaluate.evaluate.evaluate` (only ``model``, ``data``,
            ``fairness`` and, when present, ``calibration`` are used).
        out_dir: folder, created if needed; existing files of the same names are replaced.

    Returns:
        The path of ``audit.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(audit_data(report), out / "fairness.json")
    _write_fairness_csv(report.get("fairness", {}), out / "fairness.csv")
    page = out / "audit.html"
    page.write_text(render_audit_html(report), encoding="utf-8")
    return page

"""The self-contained HTML reports (inline CSS and SVG, thumbnails as data URIs) and the folders they are written
into with their JSON and CSVs: ``facemtl evaluate --report DIR`` (:func:`write_report`) and ``facemtl audit --out
DIR`` (:func:`write_audit`).

Input is the dict returned by :func:`facemtl.evaluate.evaluate.evaluate`; per-image data (``samples``, from
``EvaluateConfig(keep_samples=True)``) adds the age scatter plot, the error histogram and a prediction gallery.
The charts are :mod:`facemtl.report.svg`, every number is formatted by :mod:`facemtl.report._format`.

Example:
    >>> from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
    >>> rep = evaluate(EvaluateConfig(utkface="data/utkface", keep_samples=True))
    >>> write_report(rep, "report")   # -> report/index.html, report.json, metrics.csv, fairness.csv
"""
from __future__ import annotations

import base64
import csv
import io
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..evaluate._json import finite_number, jsonable
from ..evaluate.calibration_report import ECE_TARGET, GROUP_MIN, age_targets, coverage_groups
from ..evaluate.fairness import DEFAULT_GROUP_KEYS, fairness_rows, group_values
from ..evaluate.metrics import flatten_metrics
from ..tasks import find_task, get_task, interval_task, list_tasks
from ._format import (
    METRIC_NAMES,
    confidence_level,
    esc,
    format_ci,
    format_gap,
    format_interval,
    format_metric,
    format_temperatures,
    format_value,
    group_name,
    number,
    percent,
    write_json,
)
from .svg import age_scatter, error_histogram, group_chart, mae_band_chart, reliability_chart
from .text import fairness_sentence

__all__ = ["audit_data", "render_audit_html", "render_html", "write_audit", "write_report"]

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


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1, cls: str = "") -> str:
    """rows hold already-escaped HTML cells; the first ``left`` columns are left-aligned."""
    h = "".join(f'<th class="l">{esc(c)}</th>' if i < left else f"<th>{esc(c)}</th>" for i, c in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


# --------------------------------------------------------------------------- sections


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{esc(sid)}"><h2>{esc(title)}</h2>{body}</section>'


def _headline_metric(task: str, m: Mapping[str, Any]) -> str:
    spec = find_task(task)
    if spec is not None:
        return spec.headline
    return "mae" if _spec_kind(task, m) == "regression" else "accuracy"


def _headline_cell(task: str, m: Mapping[str, Any] | None) -> str:
    if not m or _no_labels(task, m):
        return '<span class="empty">no labels</span>'
    k = _headline_metric(task, m)
    return f'{esc(format_metric(m.get(k), k))} <span class="small">n={esc(m.get("n", 0))}</span>'


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
                        also.append(f"{METRIC_NAMES.get(extra, extra)} {format_metric(m[extra], extra)}")
            rows.append([esc(task), esc(METRIC_NAMES.get(k, k)), _headline_cell(task, m)]
                        + [_headline_cell(task, (report["by_source"][src] or {}).get(task)) for src in sources]
                        + [esc(", ".join(also))])
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
                rows.append([esc(task), esc(metric), f'<span class="empty">{esc(why)}</span>', "", "", "", ""])
                continue
            gap_ci = esc(format_ci(tab, metric, "gap_ci_low", "gap_ci_high", gap=True, style="html"))
            rows.append([esc(task), esc(metric), esc(f"{group_name(w['group'])} ({format_value(metric, w['value'])}, "
                                                  f"n={w['n']})"),
                         esc(f"{group_name(b['group'])} ({format_value(metric, b['value'])}, n={b['n']})"),
                         esc(format_gap(metric, tab.get("gap"), "pts"))
                         + (f' <span class="small">CI {gap_ci}</span>' if tab.get("gap_ci_low") is not None else ""),
                         esc(tab.get("n_groups", 0)), esc(small)])
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
    rows = [[esc("model checkpoint"), esc(m.get("checkpoint", "n/a"))]]
    rows += [[esc(f"model {k}"), esc(v)] for k, v in m.items() if k != "checkpoint" and not isinstance(v, (dict, list))]
    for k in ("utkface", "fer2013", "manifest", "limit"):
        v = cfg.get(k)
        if v not in (None, (), []):
            rows.append([esc(f"dataset: {k}"), esc(", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v)])
    rows += [[esc(k), esc(d.get(k, "n/a"))] for k in ("split", "seed", "val_fraction", "n_images")]
    out = _table(["", "value"], rows, left=2)
    by_source = d.get("by_source", {})
    out += "<h3>Images per source/split</h3>" + (
        _table(["source/split", "images"], [[esc(k), esc(v)] for k, v in by_source.items()]) if by_source
        else '<p class="empty">none</p>')
    skipped = d.get("skipped", {})
    out += "<h3>Skipped</h3>" + (_table(["reason", "images"], [[esc(k), esc(v)] for k, v in skipped.items()])
                                 if skipped else '<p class="empty">nothing skipped</p>')
    return _section("data", "Data", out)


def _no_labels(task: str, m: Mapping[str, Any]) -> bool:
    return not m or not m.get("n")


def _metrics_section(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for task, m in metrics.items():
        parts.append(f"<h3>{esc(task)}</h3>")
        if _no_labels(task, m):
            parts.append(_note(m.get("note") or f"no {task} labels in this data: no metrics"))
            continue
        scalars = [[esc(METRIC_NAMES.get(k, k)), esc(format_metric(v, k))] for k, v in m.items()
                   if k != "kind" and (isinstance(v, (int, float, str)) or v is None)]
        tables = [_table(["metric", "value"], scalars)]
        if isinstance(m.get("per_class"), Mapping):
            rows = [[esc(lab)] + [esc(format_metric(v.get(k), k)) for k in ("precision", "recall", "f1", "support")]
                    for lab, v in m["per_class"].items()]
            tables.append(_table(["class", "precision", "recall", "F1", "support"], rows))
        if isinstance(m.get("mae_by_band"), Mapping):
            rows = [[esc(b),
                     esc(format_metric(v.get("mae"), "mae")) if v.get("n") else '<span class="empty">no samples</span>',
                     esc(v.get("n", 0))] for b, v in m["mae_by_band"].items()]
            spec = find_task(task)
            unit = spec.unit if spec is not None and spec.unit else "years"
            tables.append(_table([f"true {task} band", f"MAE ({unit})", "n"], rows))
        parts.append(f'<div class="row">{"".join(tables)}</div>')  # side by side: they are narrow
    return _section("metrics", "Metrics per task", "".join(parts) or _note("no metrics in this report"))


def _confusion_table(task: str, cm: Mapping[str, Any]) -> str:
    labels, matrix = cm.get("labels", []), cm.get("matrix", [])
    head = "".join(f"<th>{esc(lab)}</th>" for lab in labels)
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
            cells.append(f'<td style="background:{bg};color:{fg}{bold}" title="true {esc(lab)}, predicted '
                         f'{esc(labels[j])}: {c}">{c}{pct}</td>')
        rowhead = esc(lab) + ("" if total else ' <span class="empty">(no samples)</span>')
        body.append(f'<tr><th class="l">{rowhead}</th>{"".join(cells)}<td>{total}</td></tr>')
    return (f'<table class="confusion" data-task="{esc(task)}"><thead><tr><th class="l">true \\ predicted</th>{head}'
            f'<th>n</th></tr></thead><tbody>{"".join(body)}</tbody></table>')


def _confusion_section(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for task, m in metrics.items():
        if task in metrics and _spec_kind(task, m) != "classification":
            continue
        parts.append(f"<h3>{esc(task)}</h3>")
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


def _regression_section(task: str, m: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None) -> str:
    """The plots of one regression task (age): MAE per band, and with per-image data the scatter of predicted
    against true values and the error histogram."""
    spec = find_task(task)
    title = task.capitalize()
    if _no_labels(task, m):
        return _section(task, title, _note(m.get("note") or f"no {task} labels in this data: no {task} plots"))
    charts = []
    if isinstance(m.get("mae_by_band"), Mapping):
        charts.append(mae_band_chart(m["mae_by_band"], spec))
    pairs = [(float(s["true"][task]), float(s["pred"][task])) for s in samples or ()
             if finite_number(s.get("true", {}).get(task)) is not None
             and finite_number(s.get("pred", {}).get(task)) is not None]
    extra = ""
    if pairs:
        charts.insert(0, age_scatter([t for t, _ in pairs], [p for _, p in pairs], spec))
        charts.append(error_histogram([p - t for t, p in pairs], spec=spec))
    else:
        extra = _note("no per-image data in this report (evaluate with keep_samples / --report): "
                      "no scatter plot or error histogram")
    return _section(task, title, f'<div class="row">{"".join(charts)}</div>{extra}')


def _regression_tasks(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The report's regression tasks with a spec (age): each gets a section of plots."""
    return [t for t in metrics if t in list_tasks() and get_task(t).kind == "regression"]


def _cov_ci(block: Mapping[str, Any]) -> str:
    return format_interval(block.get("coverage_ci"), percent, style="html")


def _verdict(ok: bool, yes: str = "met", no: str = "not met") -> str:
    return f'<span class="ok">{esc(yes)}</span>' if ok else f'<span class="bad">{esc(no)}</span>'


def _few() -> str:
    return (f'<span class="empty" title="fewer than {esc(GROUP_MIN)} faces: listed, not held to the target">'
            f'few (n &lt; {esc(GROUP_MIN)})</span>')


_FEW_NOTE = (f'<p class="small">A verdict against a target needs at least {GROUP_MIN} faces: smaller sources, '
             'groups and heads are marked few (their numbers are shown, not held to the target).</p>')


def _age_group_table(cal: Mapping[str, Any]) -> str:
    """Age interval coverage per ethnicity x gender group (evaluation half), with the per-group target; groups
    under :data:`GROUP_MIN` faces are marked "few" (listed, not held to the target); groups without a face say so."""
    iv_task, unit = _interval()
    keys, combos = coverage_groups()
    groups = cal.get(f"{iv_task}_by_group") or {}
    level = float(cal.get("level", 0.9))
    if not groups:
        return _note(f"no {iv_task} interval coverage per group: the model stores no {iv_task} intervals, or no "
                     f"image of the evaluation half has {', '.join([iv_task, *keys[:-1]])} and "
                     f"{keys[-1] if keys else ''} labels")
    t = age_targets(level)
    grid = [" & ".join(c) for c in combos]
    rows = []
    for name in list(dict.fromkeys(grid + list(groups))):
        b = groups.get(name) or {}
        if not b.get("n"):
            rows.append([esc(name), "0", '<span class="empty">no faces</span>', "n/a", "n/a", "n/a", ""])
            continue
        if not b.get("held_to_target"):
            verdict = _few()
        elif t:
            verdict = _verdict(finite_number(b.get("coverage")) is not None and b["coverage"] >= t[1])
        else:
            verdict = '<span class="empty">no target at this level</span>'
        rows.append([esc(name), esc(b["n"]), esc(percent(b.get("coverage"))), esc(_cov_ci(b)),
                     esc(number(b.get("mean_width"), 1)), esc(number(b.get("median_width"), 1)), verdict])
    target = f"target ≥ {t[1]:.0%} (n ≥ {GROUP_MIN})" if t else "target"
    return _table([" & ".join(keys), "faces", "coverage", "95% CI", f"mean width ({unit})", f"median width ({unit})",
                   target], rows, cls="coverage-groups")


def _interval() -> tuple[str, str]:
    """The task whose interval coverage is measured (age) and its unit (years)."""
    spec = interval_task()
    return (spec.name, spec.unit) if spec is not None else ("", "")


def _calibration_tables(cal: Mapping[str, Any]) -> str:
    """The measured calibration (``report["calibration"]``): age interval per source, per group, ECE per head.
    A verdict against the issue's targets needs :data:`GROUP_MIN` faces; fewer are marked "few"."""
    level = float(cal.get("level", 0.9))
    t = age_targets(level)
    temps = cal.get("temperatures") or {}
    fitted = cal.get("fitted_on") or {}
    iv_task, unit = _interval()
    keys = coverage_groups()[0]
    parts = [f'<p class="summary">Measured on {esc(cal.get("measured_on", "n/a"))}: {esc(cal.get("n", 0))} images. '
             f'{esc(iv_task.capitalize())} interval level {esc(f"{level:.0%}")}; temperatures '
             + esc(format_temperatures(temps) or "none") + '.</p>']
    if fitted:
        parts.append('<p class="small">Fitted on: ' + esc("; ".join(
            f"{k} {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in fitted.items())) + "</p>")
    parts.append(_FEW_NOTE)
    rows, ece_rows = [], []
    for src, b in (cal.get("by_source") or {}).items():
        a = b.get(iv_task) or {}
        if a.get("n"):
            cov = finite_number(a.get("coverage"))
            if a["n"] < GROUP_MIN:
                verdict = _few()
            elif t:
                verdict = _verdict(cov is not None and t[0][0] <= cov <= t[0][1])
            else:
                verdict = '<span class="empty">no target at this level</span>'
            rows.append([esc(src), esc(a["n"]), esc(percent(a.get("coverage"))), esc(_cov_ci(a)),
                         esc(number(a.get("mean_width"), 1)), esc(number(a.get("median_width"), 1)), verdict])
        elif iv_task in b:
            rows.append([esc(src), "0", f'<span class="empty">no {esc(iv_task)} labels</span>', "n/a", "n/a", "n/a",
                         ""])
        for task, e in (b.get("ece") or {}).items():
            after = finite_number(e.get("after"))
            ece_rows.append([esc(src), esc(task), esc(e.get("n", 0)),
                             esc(percent(e["before"])) if "before" in e else '<span class="empty">not measured</span>',
                             esc(percent(e.get("after"))), esc(number(temps[task])) if task in temps else
                             '<span class="empty">none</span>',
                             _few() if e.get("n", 0) < GROUP_MIN
                             else _verdict(after is not None and after <= ECE_TARGET)])
    parts.append(f"<h3>{esc(iv_task.capitalize())} interval ({esc(f'{level:.0%}')}) per source</h3>")
    band = f"target {t[0][0]:.0%}–{t[0][1]:.0%}" if t else "target"
    parts.append(_table(["source", "faces", "coverage", "95% CI", f"mean width ({unit})", f"median width ({unit})",
                         band], rows, cls="coverage-sources") if rows
                 else _note(f"no {iv_task} interval measured: the model stores no {iv_task} intervals, or the "
                            f"evaluation half has no {iv_task} labels"))
    parts.append(f"<h3>{esc(iv_task.capitalize())} interval coverage per {esc(' × '.join(keys))}</h3>"
                 + _age_group_table(cal))
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
            charts.append(reliability_chart(task, m["reliability"], m.get("ece"), stage))
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


def _fairness_section(fair: Mapping[str, Any], charts: bool = False) -> str:
    """The per-task group tables (groups too small to compare folded into a <details>); with ``charts``,
    a bar chart of the headline metric per group, with its CI, beside each table (the audit page)."""
    tasks = fair.get("tasks", {})
    if not tasks:
        return _section("fairness", "Fairness", _note("no task could be audited (no labels)"))
    min_count = fair.get("min_count", 1)
    parts = [(f'<p class="small">Headline metric per group (accuracy for classification, MAE for age); groups '
             f'with fewer than {esc(min_count)} images are too few: folded under each table, without a number, '
             'and not used for worst/best/gap (fairness.csv has their values). '
             f'CI: {esc(confidence_level(fair.get("alpha", 0.05)))}% bootstrap interval '
             f'({esc(fair.get("n_boot", 0))} resamples). Groups with no labelled image say so, never 0%.</p>')]
    keys = list(fair.get("group_keys", DEFAULT_GROUP_KEYS))
    alpha = float(fair.get("alpha", 0.05))
    parts.append("<h3>Summary</h3><ul>" + "".join(
        f'<li class="summary">{esc(fairness_sentence(t, tab, keys, alpha))}</li>' for t, tab in tasks.items())
        + "</ul>")
    for task, tab in tasks.items():
        metric = tab.get("metric", "")
        parts.append(f"<h3>{esc(task)} — {esc(metric)}</h3>")
        if not tab.get("rows"):
            parts.append(_note(fairness_sentence(task, tab, keys, alpha)))
            continue
        overall = (f'<p>overall: {esc(format_value(metric, tab.get("value")))} (n={esc(tab.get("n", 0))}, '
                   f'CI {esc(format_ci(tab, metric, style="html"))})</p>')
        parts.append(overall)
        ext = []
        for grouping, e in (tab.get("by_grouping") or {}).items():
            if not e.get("worst_group"):
                ext.append([esc(grouping), '<span class="empty">no group large enough</span>', "", "", ""])
                continue
            w, b = e["worst_group"], e["best_group"]
            ext.append([esc(grouping),
                        esc(f"{group_name(w['group'])} ({format_value(metric, w['value'])}, n={w['n']})"),
                        esc(f"{group_name(b['group'])} ({format_value(metric, b['value'])}, n={b['n']})"),
                        esc(format_gap(metric, e.get("gap"), "pts")),
                        esc(format_ci(e, metric, "gap_ci_low", "gap_ci_high", gap=True, style="html")),
                        esc(e.get("n_groups", 0))])
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
                    folded.append([esc(group_name(r["group"])), esc(r["n"]),
                                   '<span class="empty">no labelled images</span>', "n/a",
                                   '<span class="empty">not compared</span>'])
                elif r["n"] < min_count:
                    folded.append([esc(group_name(r["group"])), esc(r["n"]),
                                   f'<span class="empty">too few (n={esc(r["n"])})</span>', "",
                                   '<span class="empty">not compared</span>'])
                else:
                    shown.append([esc(group_name(r["group"])), esc(r["n"]), esc(format_value(metric, r.get("value"))),
                                  esc(format_ci(r, metric, style="html"))])
            if grouping in keys:  # a single attribute: list its missing values as empty groups
                seen = {r["group"].get(grouping) for r in rows}
                for v in group_values(grouping):
                    if v not in seen:
                        folded.append([esc(f"{grouping}: {v}"), "0", '<span class="empty">no labelled images</span>',
                                       "n/a", '<span class="empty">empty group</span>'])
            if not shown and not folded:
                continue
            body = (_table(["group", "n", metric, "CI"], shown, cls="fairness") if shown
                    else f'<p class="empty">no group of {esc(min_count)} or more images</p>')
            if charts and shown:
                compared = [r for r in rows if r.get("value") is not None and r["n"] >= min_count]
                worst = ((tab.get("by_grouping") or {}).get(grouping) or {}).get("worst_group")
                body = (f'<div class="row">{body}'
                        f'{group_chart(task, metric, grouping, compared, tab.get("value"), worst)}</div>')
            if folded:
                body += (f'<details class="folded" data-groups="{len(folded)}"><summary>{len(folded)} group(s) '
                         f'too small to compare (n &lt; {esc(min_count)}) or empty</summary>'
                         + _table(["group", "n", metric, "CI", ""], folded, cls="fairness folded") + "</details>")
            blocks.append(f'<div class="grouping" data-grouping="{esc(grouping)}"><h4>by {esc(grouping)}</h4>'
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
                rgb = im.convert("RGB")
                rgb.thumbnail((_THUMB * 2, _THUMB * 2))
                buf = io.BytesIO()
                rgb.save(buf, format="JPEG", quality=80)
            cache[path] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception:  # noqa: BLE001 - a moved or unreadable file: the card shows no picture
            cache[path] = None
    return cache[path]


def _card(s: Mapping[str, Any], task: str, cache: dict[str, str | None]) -> str:
    t, p = s["true"][task], s["pred"].get(task)
    uri = _thumb(s.get("path"), cache)
    img = f'<img src="{esc(uri)}" alt="face">' if uri else '<div class="empty">(no image)</div>'
    if isinstance(t, str):
        ok = t == p
        probs = s.get("probs", {}).get(task)
        conf = ""
        if probs:
            conf = f" ({max(probs):.0%})"
        lines = f'true: {esc(t)}<br><span class="{"ok" if ok else "bad"}">pred: {esc(p)}{esc(conf)}</span>'
    else:
        err = abs(float(p) - float(t)) if p is not None else None
        verdict = "ok" if err is not None and err <= 5 else "bad"
        lines = (f'true: {esc(format_metric(t, "", 0))}<br><span class="{verdict}">'
                 f'pred: {esc(format_metric(p, "", 1))}</span>')
    others = "; ".join(f"{k} {v if isinstance(v, str) else format_metric(v, '', 0)}" for k, v in s["true"].items()
                       if k != task and v is not None)
    return (f'<figure class="card" title="{esc(s.get("path") or s.get("source", ""))}">{img}<figcaption>{lines}'
            f'<br><span class="small">{esc(others)}</span></figcaption></figure>')


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
        lab = [s for s in samples
               if s.get("true", {}).get(task) is not None and s.get("pred", {}).get(task) is not None]
        parts.append(f"<h3>{esc(task)}</h3>")
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
            parts.append(f'<h4>{esc(title)}</h4><div class="gal" data-kind="{esc(title)}">{cards}</div>')
    return _section("gallery", "Prediction gallery", "".join(parts))


# --------------------------------------------------------------------------- public API


def _page(title: str, report: Mapping[str, Any], sections: Sequence[str], nav: Sequence[tuple[str, str]],
          footer: str) -> str:
    """One self-contained HTML page: inline CSS, a subtitle naming the split and model, a nav bar."""
    d = report.get("data", {})
    sub = (f"split {d.get('split', 'n/a')}, {d.get('n_images', 'n/a')} images, model "
           f"{report.get('model', {}).get('checkpoint', 'n/a')}")
    links = "".join(f'<a href="#{i}">{esc(t)}</a>' for i, t in nav)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1><p class=\"small\">{esc(sub)}</p>"
            f"<nav>{links}</nav>{''.join(s for s in sections if s)}"
            f"<p class=\"small\">{esc(footer)}</p></body></html>\n")


def render_html(report: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, inline SVG, data-URI thumbnails)."""
    if samples is None:
        samples = report.get("samples")
    metrics = report.get("metrics", {})
    regression = _regression_tasks(metrics)
    sections = [
        _summary_section(report), _data_section(report), _metrics_section(metrics), _confusion_section(metrics),
        *[_regression_section(t, metrics[t], samples) for t in regression],
        _calibration_section(metrics, report.get("calibration")), _fairness_section(report.get("fairness", {})),
        _gallery_section(metrics, samples),
    ]
    plots = [(t, t.capitalize()) for t in regression or [n for n in list_tasks() if get_task(n).kind == "regression"]]
    nav = (("summary", "Summary"), ("data", "Data"), ("metrics", "Metrics"), ("confusion", "Confusion"), *plots,
           ("calibration", "Calibration"), ("fairness", "Fairness"), ("gallery", "Gallery"))
    return _page("facemtl evaluation report", report, sections, nav,
                 "Numbers: report.json, metrics.csv, fairness.csv next to this file.")


def _coverage_section(cal: Mapping[str, Any] | None) -> str:
    """The audit's age interval coverage per ethnicity x gender group (empty when the model is not calibrated)."""
    if cal is None:
        return ""
    level = float(cal.get("level", 0.9))
    iv_task, _ = _interval()
    intro = (f'<p class="small">How often the {esc(f"{level:.0%}")} {esc(iv_task)} interval contains the true '
             f'{esc(iv_task)}, per group, measured on {esc(cal.get("measured_on", "n/a"))} ({esc(cal.get("n", 0))} '
             f'images); 95% bootstrap interval of the coverage. A verdict against the target needs at least '
             f'{esc(GROUP_MIN)} faces: smaller groups are marked few (their numbers are shown, not held to the '
             'target).</p>')
    return _section(f"{iv_task}-coverage", f"{iv_task.capitalize()} interval coverage per group",
                    intro + _age_group_table(cal))


def render_audit_html(report: Mapping[str, Any]) -> str:
    """The fairness audit as one self-contained HTML page: a summary (worst and best group per task), the data
    table, the fairness section with a bar chart per grouping (the headline metric per group, with its CI) and,
    for a calibrated model, the age interval coverage per ethnicity x gender group."""
    cal = report.get("calibration")
    iv_task, _ = _interval()
    nav = ([("summary", "Summary"), ("data", "Data"), ("fairness", "Fairness")]
           + ([(f"{iv_task}-coverage", f"{iv_task.capitalize()} interval coverage")] if cal else []))
    return _page("facemtl fairness audit", report,
                 [_summary_section(report, metrics_table=False), _data_section(report),
                  _fairness_section(report.get("fairness", {}), charts=True), _coverage_section(cal)],
                 nav, "Numbers: fairness.json and fairness.csv next to this file.")


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
    write_json(data, out / "report.json")
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
    return jsonable(out)


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
    write_json(audit_data(report), out / "fairness.json")
    _write_fairness_csv(report.get("fairness", {}), out / "fairness.csv")
    page = out / "audit.html"
    page.write_text(render_audit_html(report), encoding="utf-8")
    return page

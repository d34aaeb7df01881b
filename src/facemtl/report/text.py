"""The plain-text tables ``facemtl evaluate`` and ``facemtl audit`` print: the metrics per task, the figures per
source, the fairness audit (with its plain-language summary) and the calibration measurements.

Every number goes through :mod:`facemtl.report._format`.

Example:
    >>> from facemtl.evaluate import compute_task_metrics
    >>> from facemtl.tasks import get_task
    >>> text = format_metrics({"age": compute_task_metrics(get_task("age"), [20.0, 40.0], [22.0, 37.0])})
    >>> text.splitlines()[1]
    '  MAE 2.50  RMSE 2.55  R² 0.935  CS@5 100.0%'
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..evaluate._json import finite_number
from ..evaluate.calibration_report import GROUP_MIN, age_targets, coverage_groups
from ..evaluate.fairness import DEFAULT_GROUP_KEYS, group_values
from ..tasks import get_task, interval_task, list_tasks
from ._format import (
    SHARE_METRICS,
    confidence_level,
    format_ci,
    format_gap,
    format_interval,
    format_temperatures,
    format_value,
    group_name,
    number,
    percent,
    short_group_name,
)

__all__ = [
    "source_columns",
    "fairness_sentence",
    "format_age_coverage",
    "format_by_source",
    "format_calibration",
    "format_fairness",
    "format_metrics",
    "no_group_text",
]


# ---------------------------------------------------------------- metrics


def _format_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]], indent: str) -> list[str]:
    width = max([len(str(v)) for row in matrix for v in row] + [len(s) for s in labels] + [1])
    name_w = max(len(s) for s in labels)
    lines = [f"{indent}confusion matrix (rows true, columns predicted):"]
    lines.append(f"{indent}  {'':<{name_w}}  " + " ".join(f"{s:>{width}}" for s in labels))
    for label, row in zip(labels, matrix):
        lines.append(f"{indent}  {label:<{name_w}}  " + " ".join(f"{v:>{width}}" for v in row))
    return lines


def _format_task(name: str, m: Mapping[str, Any]) -> list[str]:
    lines = [f"{name} (n={m.get('n', 0)})"]
    if not m.get("n"):
        lines.append(f"  {m.get('note', 'no labelled samples')}")
        return lines
    if m.get("kind") == "regression":
        lines.append(
            f"  MAE {number(m.get('mae'))}  RMSE {number(m.get('rmse'))}  R² {number(m.get('r2'), 3)}"
            f"  CS@5 {percent(m.get('cs5'))}"
        )
        for key in [k for k in m if k.endswith("_accuracy")]:  # the label grouping's: "age_group_accuracy"
            lines.append(f"  {key[:-len('_accuracy')].replace('_', '-')} accuracy {percent(m[key])}")
        if "mae_by_band" in m:
            parts = [f"{band} {number(v['mae'])} (n={v['n']})" for band, v in m["mae_by_band"].items()]
            lines.append("  MAE by band: " + "  ".join(parts))
        return lines
    head = [f"accuracy {percent(m.get('accuracy'))}"]
    if "positive_label" in m:
        head.append(
            f"precision {percent(m.get('precision'))}  recall {percent(m.get('recall'))}"
            f"  F1 {percent(m.get('f1'))} (positive: {m['positive_label']})"
        )
    lines.append("  " + "  ".join(head))
    lines.append(
        f"  balanced accuracy {percent(m.get('balanced_accuracy'))}"
        f"  macro-F1 {percent(m.get('macro_f1'))}"
    )
    if "ece" in m:
        lines.append(f"  ECE {percent(m['ece'])}  NLL {number(m.get('nll'), 3)}")
    per_class = m.get("per_class") or {}
    if per_class:
        name_w = max(len(s) for s in per_class)
        lines.append(f"  {'class':<{name_w}}  precision  recall      F1  support")
        for label, s in per_class.items():
            lines.append(
                f"  {label:<{name_w}}  {percent(s['precision']):>9}  {percent(s['recall']):>6}"
                f"  {percent(s['f1']):>6}  {s['support']:>7}"
            )
    cm = m.get("confusion_matrix")
    if cm:
        lines.extend(_format_matrix(cm["labels"], cm["matrix"], "  "))
    return lines


def format_metrics(report: Mapping[str, Any]) -> str:
    """Readable multi-line summary of a ``{task: compute_task_metrics(...)}`` report.

    One block per task: the headline numbers (percentages for classification), MAE per age band,
    per-class precision/recall/F1 and the confusion matrix with label names.

    Args:
        report: task name -> metrics dict.

    Returns:
        The text, without a trailing newline.
    """
    blocks = ["\n".join(_format_task(name, m)) for name, m in report.items()]
    return "\n\n".join(blocks)


# ---------------------------------------------------------------- per source


# How a figure of a task's ``per_source`` is headed in the per-source table ("age MAE", "emotion acc (FER+)").
_SOURCE_HEADS = {"mae": "MAE", "accuracy": "acc", "balanced_accuracy": "bal. acc", "interval.in_bin": "in bin",
                 "ferplus.accuracy": "acc (FER+)"}


def source_columns() -> list[tuple[str, str, str, bool]]:
    """The per-source table's columns: (heading, task, key into its metrics, a share) for the ``per_source``
    figures of every registered task (age MAE, age in bin, gender acc, emotion acc, ...)."""
    cols = []
    for name in list_tasks():
        spec = get_task(name)
        for key in spec.per_source:
            head = _SOURCE_HEADS.get(key, key.replace("_", " "))
            cols.append((f"{name} {head}", name, key, key.rsplit(".", 1)[-1] in SHARE_METRICS | {"in_bin"}))
    return cols


def format_by_source(report: dict[str, Any]) -> str:
    """One line per source with its headline figures (the cross-dataset table of the model card)."""
    # (column, task, key, a share: as a percentage without the sign)
    cols = source_columns()

    def get(m: dict[str, Any], task: str, key: str) -> Any:
        node: Any = m.get(task, {})
        for k in key.split("."):
            node = node.get(k) if isinstance(node, dict) else None
        return node if (m.get(task, {}).get("n", 0) or "interval" in key) else None

    lines = ["| source | path | n | " + " | ".join(c[0] for c in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    path = report["data"].get("path", "crops")
    for src, m in report.get("by_source", {}).items():
        n = max(int(v.get("n", 0) or v.get("interval", {}).get("n", 0)) for v in m.values())
        cells = []
        for _, task, key, share in cols:
            cells.append(number(get(m, task, key), percent=share, sign="", missing=""))
        lines.append(f"| {src} | {path} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- fairness


def no_group_text(task: str, table: Mapping[str, Any], group_keys: Sequence[str] = DEFAULT_GROUP_KEYS) -> str:
    """The sentence for a task with labelled images none of which carries a group attribute."""
    return (f"{task}: none of the {table.get('n', 0)} {task}-labelled images also has a group label "
            f"({', '.join(group_keys)}), so there is no per-group comparison.")


def fairness_sentence(task: str, table: Mapping[str, Any], group_keys: Sequence[str] = DEFAULT_GROUP_KEYS,
                      alpha: float = 0.05) -> str:
    """A plain-language summary of one :func:`~facemtl.evaluate.fairness.group_table`: worst and best group,
    the gap and whether it may be chance, and how many groups were too small to compare. A task without
    labels (a table with a ``note``) or without group labels gets a sentence saying so.
    """
    metric = table.get("metric", "")
    if table.get("note"):
        return f"{task}: {str(table['note']).rstrip('.')}."
    if not table.get("rows"):
        return no_group_text(task, table, group_keys)
    w: Any = table.get("worst_group")
    b: Any = table.get("best_group")
    gap = table.get("gap")
    min_count = table.get("min_count", 1)
    if not w or gap is None:
        return (f"{task}: not enough labelled groups to compare (each group needs at least "
                f"{min_count} images).")
    better = "higher" if table.get("higher_is_better") else "lower"
    name = "MAE" if metric == "mae" else metric
    small = sum(1 for r in table.get("rows", []) if r["n"] < min_count)
    tail = (f" {small} smaller group{'s' if small != 1 else ''} (fewer than {min_count} images) "
            f"{'were' if small != 1 else 'was'} not compared." if small else "")
    if gap == 0:
        return (f"{task} ({name}, {better} is better): the model scores the same "
                f"({format_value(metric, w['value'])}) for all {table.get('n_groups', 2)} compared groups." + tail)
    s = (f"{task} ({name}, {better} is better): the model does worst for {group_name(w['group'])} "
         f"({format_value(metric, w['value'])}, n={w['n']}) and best for {group_name(b['group'])} "
         f"({format_value(metric, b['value'])}, n={b['n']}), a gap of {format_gap(metric, gap)}.")
    lo, hi = finite_number(table.get("gap_ci_low")), finite_number(table.get("gap_ci_high"))
    overlap = table.get("cis_overlap")
    if lo is not None and hi is not None:
        s += (f" The {confidence_level(alpha)}% confidence interval of the gap is {format_gap(metric, lo, 'none')} to "
              f"{format_gap(metric, hi)}")
        s += (", which includes zero: the gap may be chance." if lo <= 0
              else ", which excludes zero: the gap is unlikely to be chance alone.")
    elif overlap is True:
        s += " Their confidence intervals overlap, so the gap may be chance."
    elif overlap is False:
        s += " Their confidence intervals do not overlap."
    return s + tail


def _labelled(row: Mapping[str, Any], metric: str) -> str:
    """``"white & male (ethnicity x gender): 80.1% [71.0%, 88.2%], n=120"``."""
    ci = format_ci(row, metric)
    return (f"{short_group_name(row['group'])} ({row.get('grouping') or ' x '.join(row['group'])}): "
            f"{format_value(metric, row['value'])}{' ' + ci if ci else ''}, n={row['n']}")


def _extremes_text(ext: Mapping[str, Any], metric: str, min_count: int, short: bool) -> str:
    """"gap 14.9 points [3.2, 25.1]: worst ..., best ..." for one grouping (or the whole task)."""
    w: Any = ext.get("worst_group")
    b: Any = ext.get("best_group")
    if not w:
        return f"no group has at least {min_count} images: nothing compared"
    name = short_group_name if short else group_name
    if ext.get("gap") is None:
        return f"only one group has at least {min_count} images ({name(w['group'])}, n={w['n']}): nothing compared"
    if ext["gap"] == 0:
        return f"no gap: all {ext.get('n_groups', 2)} compared groups at {format_value(metric, w['value'])}"
    ci = format_ci(ext, metric, "gap_ci_low", "gap_ci_high", gap=True)
    unit = "points" if metric == "accuracy" else "years"
    return (f"gap {format_gap(metric, ext['gap'], 'none')} {unit}{' ' + ci if ci else ''}: "
            f"worst {name(w['group'])} {format_value(metric, w['value'])} (n={w['n']}), "
            f"best {name(b['group'])} {format_value(metric, b['value'])} (n={b['n']})")


def format_fairness(report: Mapping[str, Any], detail: bool = True) -> str:
    """A :func:`~facemtl.evaluate.fairness.fairness_report` as plain text.

    Args:
        report: the output of :func:`~facemtl.evaluate.fairness.fairness_report` (``evaluate()``'s
            ``report["fairness"]``).
        detail: True: per task, every group of every grouping with its n and CI (groups under
            ``min_count`` as "too few (n=..)", values no labelled image has as "no labelled images
            (n=0)", never a number), the worst/best/gap per grouping and for the task, and the
            plain-language summary. False: one worst/best/gap line per task.
    """
    keys = list(report.get("group_keys", DEFAULT_GROUP_KEYS))
    min_count = int(report.get("min_count", 1))
    n_boot, alpha = int(report.get("n_boot", 0)), report.get("alpha", 0.05)
    tasks: Mapping[str, Mapping[str, Any]] = report.get("tasks", {})
    if not detail:
        lines = [f"fairness (worst and best group per task, groups with n >= {min_count}):"]
        for task, tab in tasks.items():
            if tab.get("note") or not tab.get("rows") or tab.get("gap") is None:
                lines.append(f"  {fairness_sentence(task, tab, keys, alpha)}")
            else:
                lines.append(f"  {task} ({tab['metric']}): "
                             + _extremes_text(tab, tab["metric"], min_count, short=True))
        return "\n".join(lines)
    lines = [f"fairness audit by {', '.join(keys)}" + (" and their crossings" if len(keys) > 1 else ""),
             "  metric: accuracy for classification tasks (higher is better), MAE in years for age (lower is better)",
             (f"  [low, high]: {confidence_level(alpha)}% bootstrap confidence interval ({n_boot} resamples)"
              if n_boot > 0 else "  no confidence intervals (0 bootstrap resamples)"),
             f"  groups with fewer than {min_count} images are listed as too few and left out of worst/best/gap"]
    if not tasks:
        lines.append("\nno task could be audited (no labels)")
    for task, tab in tasks.items():
        metric = tab.get("metric", "")
        if tab.get("note") or not tab.get("rows"):
            lines += ["", f"== {task}: skipped", f"  {fairness_sentence(task, tab, keys, alpha)}"]
            continue
        name = "MAE (years), lower is better" if metric == "mae" else f"{metric}, higher is better"
        ci = format_ci(tab, metric)
        overall = format_value(metric, tab.get("value")) + (" " + ci if ci else "")
        lines += ["", f"== {task}: {name}; overall {overall} (n={tab.get('n', 0)})"]
        rows_by: dict[str, list[Mapping[str, Any]]] = {}
        for r in tab["rows"]:
            rows_by.setdefault(r["grouping"], []).append(r)
        for grouping in dict.fromkeys([*keys, *rows_by]):
            cells: list[tuple[str, str]] = []
            for r in rows_by.get(grouping, []):
                if r["n"] < min_count or finite_number(r.get("value")) is None:
                    cells.append((short_group_name(r["group"]), f"too few (n={r['n']})"))
                else:
                    ci = format_ci(r, metric)
                    value = f"{format_value(metric, r['value']):>6}" + ("  " + ci if ci else "")
                    cells.append((short_group_name(r["group"]), f"{value}  n={r['n']}"))
            if grouping in keys:  # a single attribute: its values no labelled image has are empty groups
                seen = {str(r["group"].get(grouping)) for r in rows_by.get(grouping, [])}
                cells += [(v, "no labelled images (n=0)") for v in group_values(grouping) if v not in seen]
            if not cells:
                continue
            width = max(len(c[0]) for c in cells)
            lines.append(f"  by {grouping}:")
            lines += [f"    {label:<{width}}  {text}" for label, text in cells]
            ext = (tab.get("by_grouping") or {}).get(grouping)
            if ext is not None:
                lines.append(f"    -> {_extremes_text(ext, metric, min_count, short=True)}")
        w, b = tab.get("worst_group"), tab.get("best_group")
        if w and b and tab.get("gap") is not None:
            ci = format_ci(tab, metric, "gap_ci_low", "gap_ci_high", gap=True)
            lines += [f"  worst group: {_labelled(w, metric)}", f"  best group:  {_labelled(b, metric)}",
                      f"  largest gap: {format_gap(metric, tab['gap'])}{' ' + ci if ci else ''}"]
        else:
            lines.append(f"  worst/best group: {_extremes_text(tab, metric, min_count, short=False)}")
        lines.append(f"  summary: {fairness_sentence(task, tab, keys, alpha)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- calibration


def _share(v: Any) -> str:
    """A share of the calibration text: "91.3%", "-" when missing."""
    return percent(v, missing="-")


def format_calibration(section: Mapping[str, Any]) -> str:
    """The text summary of :func:`~facemtl.evaluate.calibration_report.calibration_report`
    (``facemtl evaluate`` prints it for a calibrated model)."""
    lvl = section["level"]
    iv_task, unit = _interval_task()
    lines = [f"calibration (on {section['measured_on']}; {section['n']} images); temperatures: "
             + format_temperatures(section.get("temperatures", {}), prefix="")]
    for src, b in section.get("by_source", {}).items():
        parts = []
        a = b.get(iv_task) or {}
        if a.get("n"):
            ci = format_interval(a.get("coverage_ci"), _share)
            parts.append(f"{iv_task} {lvl:.0%} interval coverage {_share(a['coverage'])}" + (f" {ci}" if ci else "")
                         + f", mean width {a['mean_width']:.1f} {unit} (n={a['n']})")
        for task, e in (b.get("ece") or {}).items():
            before = f"{_share(e['before'])} -> " if "before" in e else ""
            parts.append(f"{task} ECE {before}{_share(e['after'])} (n={e['n']})")
        if parts:
            lines.append(f"  {src}: " + "; ".join(parts))
    groups = section.get(f"{iv_task}_by_group") or {}
    if groups:
        cells = [f"{k} {_share(v['coverage'])} (n={v['n']}{'' if v['held_to_target'] else ', few'})"
                 for k, v in groups.items() if v.get("n")]
        lines.append(f"  {iv_task} interval coverage by {' x '.join(coverage_groups()[0])}: " + "; ".join(cells))
    return "\n".join(lines)


def _interval_task() -> tuple[str, str]:
    """The name of the task whose interval coverage is measured (age), and its short unit (y)."""
    spec = interval_task()
    return (spec.name, spec.unit_short) if spec is not None else ("", "")


def format_age_coverage(section: Mapping[str, Any]) -> str:
    """The age interval coverage per ethnicity x gender group of
    :func:`~facemtl.evaluate.calibration_report.calibration_report`, one line a group
    (``facemtl audit`` prints it after the fairness summary)."""
    lvl = float(section["level"])
    iv_task, unit = _interval_task()
    keys = coverage_groups()[0]
    groups = {k: v for k, v in (section.get(f"{iv_task}_by_group") or {}).items() if v.get("n")}
    head = (f"{iv_task} {lvl:.0%} interval coverage by {' x '.join(keys)}, measured on {section['measured_on']} "
            f"({section.get('n', 0)} images)")
    if not groups:
        return (head + f": none (the model stores no {iv_task} intervals, or no evaluated image has "
                f"{', '.join([iv_task, *keys[:-1]])} and {keys[-1] if keys else ''} labels)")
    t = age_targets(lvl)
    head += (f"; target >= {t[1]:.0%} in every group of at least {GROUP_MIN} faces:" if t else
             f"; groups of fewer than {GROUP_MIN} faces are marked few:")
    width = max(len(k) for k in groups)
    lines = [head]
    for k, v in groups.items():
        ci_s = format_interval(v.get("coverage_ci"), _share, missing="(no CI)")
        if not v.get("held_to_target"):
            verdict = "few: not held to the target"
        elif t:
            verdict = "meets the target" if v["coverage"] >= t[1] else "below the target"
        else:
            verdict = ""
        lines.append(f"  {k:<{width}}  {_share(v['coverage']):>6} {ci_s:<17} mean width {v['mean_width']:.1f} {unit}  "
                     f"n={v['n']}" + (f"  {verdict}" if verdict else ""))
    return "\n".join(lines)

"""The charts of the HTML reports as inline SVG: a tiny plot with linear axes (:class:`Plot`) and the charts built
on it (the scatter, error histogram and MAE per band of a regression task such as age, reliability diagram,
headline metric per group).

Every chart is one ``<svg>`` string (class ``chart <kind>``, an ``aria-label`` naming it); numbers are formatted by
:mod:`facemtl.report._format`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..evaluate._json import finite_number
from ..tasks import TaskSpec, get_task, list_tasks
from ._format import METRIC_NAMES, esc, format_ci, format_metric, format_value, short_group_name

__all__ = ["Plot", "age_scatter", "error_histogram", "group_chart", "mae_band_chart", "reliability_chart", "ticks"]


class Plot:
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
                 f'fill="{fill}"><title>{esc(tip)}</title></rect>')

    def text(self, x: float, y: float, s: str, anchor: str = "middle", size: int = 10, fill: str = "#333",
             dy: float = 0) -> None:
        self.add(f'<text x="{self.px(x):.1f}" y="{self.py(y) + dy:.1f}" text-anchor="{anchor}" font-size="{size}" '
                 f'fill="{fill}">{esc(s)}</text>')

    def svg(self, xticks: Sequence[tuple[float, str]] | None = None,
            yticks: Sequence[tuple[float, str]] | None = None) -> str:
        t, r, b, left = self.m
        axes = [(f'<rect x="{left}" y="{t}" width="{self.w - left - r}" height="{self.h - t - b}" fill="none" '
                f'stroke="#444"/>')]
        for x, lab in xticks or ticks(self.x0, self.x1):
            axes.append(f'<text x="{self.px(x):.1f}" y="{self.h - b + 14}" text-anchor="middle" font-size="10">'
                        f'{esc(lab)}</text>')
        for y, lab in yticks or ticks(self.y0, self.y1):
            axes.append(f'<line x1="{left}" x2="{self.w - r}" y1="{self.py(y):.1f}" y2="{self.py(y):.1f}" '
                        f'stroke="#eee"/><text x="{left - 4}" y="{self.py(y) + 3:.1f}" text-anchor="end" '
                        f'font-size="10">{esc(lab)}</text>')
        axes.append(f'<text x="{self.w / 2:.0f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
                    f'{esc(self.title)}</text>')
        axes.append(f'<text x="{(left + self.w - r) / 2:.0f}" y="{self.h - 8}" text-anchor="middle" '
                    f'font-size="11">{esc(self.xlabel)}</text>')
        axes.append(f'<text transform="translate(13,{(t + self.h - b) / 2:.0f}) rotate(-90)" text-anchor="middle" '
                    f'font-size="11">{esc(self.ylabel)}</text>')
        return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{esc(self.kind)}" width="{self.w}" height="{self.h}" '
                f'viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{esc(self.title)}">'
                + "".join(axes[:1] + axes[1:] + self.parts) + "</svg>")


def ticks(lo: float, hi: float, n: int = 5) -> list[tuple[float, str]]:
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


def _regression(spec: TaskSpec | None) -> tuple[str, str, tuple[float, float]]:
    """(name, unit, value range) of the regression task a chart shows: ``spec``, else the first registered
    regression task (age, years, 0-100)."""
    if spec is None:
        spec = next(get_task(n) for n in list_tasks() if get_task(n).kind == "regression")
    lo, hi = spec.value_range or (0.0, 100.0)
    return spec.name, spec.unit, (lo, hi)


def _num(v: float) -> float | int:
    """A bound as it is written: whole numbers without a decimal (``0``, not ``0.0``)."""
    return int(v) if float(v).is_integer() else v


def age_scatter(true: list[float], pred: list[float], spec: TaskSpec | None = None) -> str:
    """Predicted against true values of a regression task (default: age), on its value range."""
    name, unit, (lo, hi) = _regression(spec)
    lo, hi = _num(lo), _num(hi)
    p = Plot(f"Predicted vs true {name}", (lo, hi), (lo, hi), f"true {name} ({unit})", f"predicted {name} ({unit})",
             kind="chart scatter")
    p.line(lo, lo, hi, hi)
    step = max(1, len(true) // 4000)
    for t, q in list(zip(true, pred))[::step]:
        p.add(f'<circle cx="{p.px(t):.1f}" cy="{p.py(q):.1f}" r="1.6" fill="#2b6cb0" fill-opacity=".35"/>')
    return p.svg()


def error_histogram(errors: list[float], width: float = 2.0, limit: float = 40.0, spec: TaskSpec | None = None) -> str:
    """The errors (predicted - true) of a regression task (default: age), clipped at ``limit``."""
    name, unit, _ = _regression(spec)
    nb = int(2 * limit / width)
    counts = [0] * nb
    for e in errors:
        i = int((min(max(e, -limit), limit - 1e-9) + limit) // width)
        counts[i] += 1
    top = max(counts) or 1
    p = Plot(f"{name.capitalize()} error (predicted − true)", (-limit, limit), (0, top * 1.1),
             f"error ({unit}, clipped at ±{limit:g})", "images", kind="chart histogram")
    for i, c in enumerate(counts):
        if c:
            lo = -limit + i * width
            p.rect(lo, lo + width * 0.95, c, tip=f"[{lo:g}, {lo + width:g}): {c}")
    p.line(0, 0, 0, top * 1.1, "stroke:#c62828")
    return p.svg()


def mae_band_chart(by_band: Mapping[str, Mapping[str, Any]], spec: TaskSpec | None = None) -> str:
    """MAE per band of the true value of a regression task (default: age)."""
    name, unit, _ = _regression(spec)
    bands = list(by_band)
    vals = [finite_number(by_band[b].get("mae")) for b in bands]
    top = max([v for v in vals if v is not None] + [1.0]) * 1.2
    p = Plot(f"MAE per {name} band", (0, len(bands)), (0, top), f"true {name} band ({unit})", f"MAE ({unit})",
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


def reliability_chart(task: str, bins: Sequence[Mapping[str, Any]], ece: Any, stage: str = "reliability") -> str:
    p = Plot(f"{task}: {stage} (ECE {format_metric(ece, 'ece')})", (0, 1), (0, 1), "confidence (top probability)",
              "accuracy", kind="chart reliability")
    p.line(0, 0, 1, 1)
    for b in bins:
        acc, conf, n = finite_number(b.get("accuracy")), finite_number(b.get("confidence")), b.get("count", 0)
        lo, hi = float(b["lo"]), float(b["hi"])
        if acc is None or not n:
            continue
        shown = conf if conf is None else f"{conf:.1%}"
        p.rect(lo + (hi - lo) * 0.05, hi - (hi - lo) * 0.05, acc, fill="#4a90d9",
               tip=f"[{lo:.2f}, {hi:.2f}): n={n}, accuracy {acc:.1%}, confidence {shown}")
        if conf is not None:
            p.add(f'<circle cx="{p.px(conf):.1f}" cy="{p.py(acc):.1f}" r="2.5" fill="#c62828"/>')
    return p.svg(xticks=ticks(0, 1), yticks=ticks(0, 1))


def group_chart(task: str, metric: str, grouping: str, rows: Sequence[Mapping[str, Any]], overall: Any = None,
                 worst: Mapping[str, Any] | None = None) -> str:
    """Horizontal bars of the headline metric per group (``rows``: the compared ones), with CI whiskers, the
    overall value as a dashed line and the worst group in red."""
    acc = metric == "accuracy"
    names = [short_group_name(r["group"]) for r in rows]
    tops = [finite_number(x) for r in rows for x in (r.get("value"), r.get("ci_high"))] + [finite_number(overall)]
    hi = 1.0 if acc else max([v for v in tops if v is not None] + [1.0]) * 1.15
    n = len(rows)
    left = int(min(230, 24 + 6.3 * max([len(x) for x in names] + [4])))
    p = Plot(f"{task}: {METRIC_NAMES.get(metric, metric)} by {grouping}", (0, hi), (0, n),
              "accuracy" if acc else "MAE (years)", "", w=left + 340, h=84 + 20 * n,
              kind="chart groups")
    p.m = (40, 84, 44, left)  # room for the group names and the value labels
    for i, (r, name) in enumerate(zip(rows, names)):
        yc, v = n - i - 0.5, finite_number(r.get("value"))
        if v is None:
            continue
        is_worst = worst is not None and dict(worst.get("group") or {}) == dict(r["group"])
        ci = format_ci(r, metric, style="html")
        y0, y1 = p.py(yc + 0.32), p.py(yc - 0.32)
        p.add(f'<rect x="{p.px(0):.1f}" y="{y0:.1f}" width="{max(p.px(v) - p.px(0), .5):.1f}" '
              f'height="{y1 - y0:.1f}" fill="{"#c62828" if is_worst else "#4a90d9"}"><title>'
              f'{esc(name)}: {esc(format_value(metric, v))} (CI {esc(ci)}, n={esc(r.get("n", 0))})</title></rect>')
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
    xt = [(t, f"{100 * t:g}%") for t, _ in ticks(0, 1)] if acc else None
    return p.svg(xticks=xt, yticks=[(n - i - 0.5, name) for i, name in enumerate(names)])

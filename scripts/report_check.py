"""Render an evaluation report (``facemtl evaluate --report DIR``) in headless Chromium and check what it shows.

Either generates the report first (the default model, or ``--model``, on ``--utkface``/``--fer2013`` with
``--split``/``--limit``; the same calls as ``facemtl evaluate --report``), or takes an existing one with
``--report DIR``. Then opens a copy of ``DIR/index.html`` with a checker script appended (file:// URL) and
checks, from the DOM that ``--dump-dom`` prints: every section is there, every ``<img>`` decoded
(``complete`` and ``naturalWidth > 0``), every SVG chart has a non-zero size and something drawn in it. Last,
a full-page ``--screenshot`` (window as tall as the page; a page taller than ``--max-height`` is cut into
tiles ``OUT``, ``OUT-2``, ... by scrolling) must not be blank.
One ok/FAIL line per check; exit 0 when all pass.

    PYTHONPATH=src python scripts/report_check.py --limit 300 --out-dir /tmp/report --out report.png
    PYTHONPATH=src python scripts/report_check.py --report /tmp/report --out report.png
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_check import BLANK_STD, chromium, headless, png_std, print_checks

from facemtl.tasks import get_task, list_tasks

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# the report's sections: a section of plots per regression task (age) after the confusion matrices
SECTIONS = ("data", "metrics", "confusion", *[n for n in list_tasks() if get_task(n).kind == "regression"],
            "calibration", "fairness", "gallery")
WIDTH = 1400

# Runs after the load event, when every data-URI thumbnail has been decoded (or failed); the results go into
# one JSON attribute on <body>, which --dump-dom prints.
CHECKER = """
<script>
window.addEventListener("load", () => {
  const y = new URLSearchParams(location.search).get("scroll");  // a screenshot tile further down
  if (y) { document.documentElement.style.marginTop = `-${+y}px`; return; }
  const r = {sections: [], images: 0, images_broken: [], charts: [], tables: 0, height: 0};
  try {
    for (const s of document.querySelectorAll("section[id]")) {
      const b = s.getBoundingClientRect();
      if (b.width > 0 && b.height > 0) r.sections.push(s.id);
    }
    document.querySelectorAll("img").forEach((img, i) => {
      r.images++;
      if (!(img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0)) r.images_broken.push(i);
    });
    for (const svg of document.querySelectorAll("svg")) {
      const b = svg.getBoundingClientRect();
      // marks: bars and dots; the plot frame is one <rect> without a fill colour
      const marks = svg.querySelectorAll("circle, rect[fill]:not([fill='none'])").length;
      r.charts.push({cls: svg.getAttribute("class") || "", w: Math.round(b.width), h: Math.round(b.height), marks});
    }
    r.tables = document.querySelectorAll("table").length;
    r.height = Math.ceil(document.documentElement.scrollHeight);
  } catch (e) {
    r.error = String(e);
  }
  document.body.setAttribute("data-check-result", JSON.stringify(r));
});
</script>
"""


def make_report(out_dir: Path, *, model: str | None = None, utkface: str | None = None, fer2013: str | None = None,
                split: str = "val", limit: int | None = None, bootstrap: int = 200) -> Path:
    """``facemtl evaluate --report out_dir``: evaluate with per-image samples, write the report; index.html."""
    from facemtl.evaluate.evaluate import EvaluateConfig, evaluate
    from facemtl.report.html import write_report

    rep = evaluate(EvaluateConfig(model=model, utkface=utkface, fer2013=fer2013, split=split, limit=limit,
                                  bootstrap=bootstrap, keep_samples=True))
    samples = rep.pop("samples", None)
    return write_report(rep, out_dir, samples=samples)


def screenshot_paths(out_png: Path, n: int) -> list[Path]:
    """``out_png`` for the top of the page, then ``<stem>-2.png``, ``<stem>-3.png``... further down."""
    return [out_png] + [out_png.with_name(f"{out_png.stem}-{k}{out_png.suffix}") for k in range(2, n + 1)]


def _dom_result(dom: str) -> dict[str, Any] | None:
    m = re.search(r'data-check-result="([^"]*)"', dom)
    return json.loads(html.unescape(m.group(1))) if m else None


def check_report(report_dir: Path, out_png: Path, budget_ms: int = 5000, browser: str | None = None,
                 max_height: int = 16000, verbose: bool = True) -> dict[str, bool]:
    """Render ``report_dir/index.html`` in headless Chromium; check name -> passed.

    Charts that need per-image data (age scatter plot, error histogram) and gallery images are required only
    when ``report_dir/report.json`` has ``samples``.

    Raises:
        RuntimeError: no Chromium found (and none given).
    """
    browser = browser or chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    report_dir, out_png = Path(report_dir), Path(out_png)
    log = (lambda *a: print(*a, file=sys.stderr)) if verbose else (lambda *a: None)
    index = report_dir / "index.html"
    page = index.read_text(encoding="utf-8")
    has_samples = False
    if (report_dir / "report.json").is_file():
        has_samples = bool(json.loads((report_dir / "report.json").read_text()).get("samples"))

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "index.html"
        head, _, tail = page.rpartition("</body>")
        copy.write_text(f"{head}{CHECKER}</body>{tail}", encoding="utf-8")
        url = copy.as_uri()
        dump = headless(browser, url, budget_ms=budget_ms, size=(WIDTH, 1000))
        r = _dom_result(dump.stdout)
        if r is None:
            log(f"no check result in the DOM (chromium exit {dump.returncode}):\n{dump.stderr[-3000:]}")
            r = {}
        page_h = max(int(r.get("height") or 0), 1000)
        height = min(page_h, max_height)
        shots = screenshot_paths(out_png, -(-page_h // height))
        for k, png in enumerate(shots):
            png.unlink(missing_ok=True)
            shot = headless(browser, f"{url}?scroll={min(k * height, page_h - height)}" if k else url, screenshot=png,
                            budget_ms=budget_ms, size=(WIDTH, height))
            if shot.returncode != 0:
                log(shot.stderr[-2000:])

    charts = r.get("charts", [])
    kinds = {k for c in charts for k in c["cls"].split()}
    need = {"bars", "reliability"} | ({"scatter", "histogram"} if has_samples else set())
    sized = [c for c in charts if c["w"] > 0 and c["h"] > 0]
    drawn = [c for c in charts if c["marks"] > 0]
    std = min(png_std(p) for p in shots)
    if r.get("error"):
        log(f"checker script error: {r['error']}")
    log(f"sections {r.get('sections')}; {r.get('images', 0)} image(s), broken {r.get('images_broken')}; "
        f"{len(charts)} chart(s) {sorted(kinds - {'chart'})}, {len(sized)} sized, {len(drawn)} with marks; "
        f"{r.get('tables', 0)} table(s); page height {r.get('height')} px; {len(shots)} screenshot(s) of "
        f"{WIDTH}x{height}: {', '.join(map(str, shots))} (lowest grey std {std:.1f})")
    return {
        "checker ran": bool(r) and not r.get("error"),
        "all sections rendered": set(SECTIONS) <= set(r.get("sections", [])),
        "tables rendered": r.get("tables", 0) > 0,
        "every image loaded": not r.get("images_broken", ["?"]) and (r.get("images", 0) > 0 or not has_samples),
        "expected charts present": need <= kinds,
        "every chart has a size": bool(charts) and len(sized) == len(charts),
        "every chart has marks": bool(charts) and len(drawn) == len(charts),
        "screenshot(s) written and not blank": all(p.is_file() for p in shots) and std > BLANK_STD,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", type=Path, help="an existing report folder (skips evaluation)")
    ap.add_argument("--out-dir", type=Path, help="where to write the generated report (default: a temp folder)")
    ap.add_argument("--model", help="checkpoint (default: the bundled default model)")
    ap.add_argument("--utkface", default=str(DATA / "utkface"))
    ap.add_argument("--fer2013", default=str(DATA / "fer2013"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, help="evaluate at most this many images")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("report_page.png"), help="the full-page screenshot")
    ap.add_argument("--budget-ms", type=int, default=5000, help="Chromium's virtual time budget")
    ap.add_argument("--max-height", type=int, default=16000, help="screenshot height cap (px)")
    args = ap.parse_args()

    if chromium() is None:
        print("no Chromium found (apt-get install chromium); skipped", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        report_dir = args.report
        if report_dir is None:
            report_dir = args.out_dir or Path(tmp) / "report"
            index = make_report(report_dir, model=args.model, utkface=args.utkface or None,
                                fer2013=args.fer2013 or None, split=args.split, limit=args.limit,
                                bootstrap=args.bootstrap)
            print(f"report: {index}", file=sys.stderr)
        elif not (report_dir / "index.html").is_file():
            print(f"no index.html in {report_dir}", file=sys.stderr)
            return 2
        return print_checks(check_report(report_dir, args.out, args.budget_ms, max_height=args.max_height))


if __name__ == "__main__":
    sys.exit(main())

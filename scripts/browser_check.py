"""Drive the web page in headless Chromium: load it, "upload" a photo, draw the boxes, ask for Grad-CAM, screenshot.

Starts ``create_app`` under uvicorn on a free loopback port, with one extra route, ``/_check``: the real page
plus a script that fetches the photo from ``/_check/image`` and hands it to the page's own ``analyse(file)``
(the code path of a picked or dropped file; headless Chromium's command line cannot choose a file), then
clicks the first face's Grad-CAM button. Chromium runs twice: ``--dump-dom`` to check the rendered result
(face cards, bars, a Grad-CAM image, no error), then ``--screenshot``. Exit 0 when every check passes.

    PYTHONPATH=src python scripts/browser_check.py [--image PHOTO] [--out page.png] [--tiny]
    PYTHONPATH=src python scripts/browser_check.py --tiny --faces 1 7 30 --out page.png  # page-7faces.png, ...

Besides what is shown, the driver measures the layout and writes it into ``<body>`` attributes: the number and
the tallest height of the face cards, each box label's distance to its own box, labels outside the photo or
covering each other, the width the Grad-CAM view is shown at (see :func:`check_page`). With ``--faces``, the
photo is a synthetic crowd (:func:`grid_faces`) and the detector returns its boxes.

The helpers here (:func:`chromium`, :func:`headless`, :func:`png_std`, :func:`print_checks`) are shared with
``scripts/report_check.py``; :func:`check_page` is what ``tests/test_browser.py`` runs.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "wild" / "facerec_obama_and_biden.jpg"
BLANK_STD = 5.0  # a screenshot whose grey levels vary less than this is taken as blank

# Under --virtual-time-budget, Chromium fast-forwards timers but waits for pending network requests; image
# decoding is neither, so the driver keeps a slow request open (/_check/wait) while it waits for real work.
DRIVER = """
<script>
(async () => {
  const pause = () => fetch("_check/wait");
  const body = document.body, set = (k, v) => body.setAttribute(k, String(v));
  try {
    const blob = await (await fetch("_check/image")).blob();
    let finished = false;
    analyse(new File([blob], "check.jpg", {type: blob.type || "image/jpeg"})).finally(() => { finished = true; });
    for (let i = 0; !finished && i < 600; i++) await pause();
    // Layout facts, in CSS pixels: card heights, and where each box label sits against its own box.
    const cards = [...document.querySelectorAll("#faces .face")];
    set("data-cards", cards.length);
    set("data-max-card-height", Math.ceil(Math.max(0, ...cards.map(c => c.getBoundingClientRect().height))));
    const c = document.getElementById("canvas"), k = c.getBoundingClientRect().width / (c.width || 1);
    let gap = 0, outside = 0, overlaps = 0, minH = Infinity;
    boxLabels.forEach((l, n) => {
      const b = l.box;
      const dx = Math.max(0, b[0] - (l.x + l.w), l.x - b[2]), dy = Math.max(0, b[1] - (l.y + l.h), l.y - b[3]);
      gap = Math.max(gap, Math.hypot(dx, dy) * k);
      minH = Math.min(minH, l.h * k);
      if (l.x < -0.5 || l.y < -0.5 || l.x + l.w > c.width + 0.5 || l.y + l.h > c.height + 0.5) outside++;
      boxLabels.slice(n + 1).forEach(o => {
        if (l.x < o.x + o.w && o.x < l.x + l.w && l.y < o.y + o.h && o.y < l.y + l.h) overlaps++;
      });
    });
    set("data-labels", new Set(boxLabels.map(l => l.i)).size);
    set("data-max-label-gap", gap.toFixed(1));
    set("data-labels-outside", outside);
    set("data-label-overlaps", overlaps);
    set("data-min-label-height", boxLabels.length ? minH.toFixed(1) : 0);
    // what the answer holds against what the cards show: age intervals (a range bar), low-quality faces (unsure)
    const faces = lastResult ? lastResult.faces : [];
    set("data-age-intervals", faces.filter(f => f.age && f.age.low != null && f.age.high != null).length);
    set("data-range-bars", document.querySelectorAll("#faces .face .range").length);
    set("data-interval-texts", cards.filter(c => /\\d+–\\d+/.test(c.textContent)).length);
    set("data-low-quality", faces.filter(f => f.quality === "low").length);
    set("data-unsure-shown", document.querySelectorAll("#faces .face .task.unsure").length);
    const btn = document.querySelector("button.gradcam");
    if (btn) btn.click();
    const cam = () => document.querySelector("img.cam");
    for (let i = 0; btn && !(cam() && cam().complete && cam().naturalWidth) && i < 600; i++) await pause();
    await pause();
    if (cam()) {
      set("data-cam-width", Math.round(cam().getBoundingClientRect().width));
      set("data-cam-natural-width", cam().naturalWidth);
    }
    if (new URLSearchParams(location.search).get("cam") === "close") closeCam();
    set("data-page-height", Math.ceil(document.documentElement.scrollHeight));
  } catch (e) {
    body.setAttribute("data-check-error", String(e));
  }
  body.setAttribute("data-check-done", "1");
})();
</script>
"""


# --------------------------------------------------------------------------- shared helpers


def chromium() -> str | None:
    """The path of a Chromium/Chrome binary on PATH (``$CHROMIUM`` first), or None."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def headless(browser: str, url: str, *, screenshot: Path | None = None, budget_ms: int = 60000,
             size: tuple[int, int] = (1400, 1000), timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on ``url``: ``--dump-dom`` (the DOM is ``.stdout``) or ``--screenshot``."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", "--mute-audio", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}",
               f"--screenshot={Path(screenshot).resolve()}" if screenshot else "--dump-dom", url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def png_std(path: Path) -> float:
    """Standard deviation of the grey levels of an image file (0 for a missing or unreadable file)."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            return float(np.asarray(im.convert("L"), dtype=np.float32).std())
    except (OSError, ValueError):
        return 0.0


def print_checks(checks: dict[str, bool]) -> int:
    """One ``ok``/``FAIL`` line per check; the exit status (0: all passed)."""
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if checks and all(checks.values()) else 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        if not server.started:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --------------------------------------------------------------------------- the web page check


MAX_CARD_PX = 240  # a face card taller than this is not compact (it was about 600 px)
MAX_LABEL_GAP_PX = 2.0  # a box label this far from its own box (CSS px) counts as stacked away
MIN_CAM_PX = 600  # the Grad-CAM view shows the panel at least this wide (or at its own size, if smaller)


def _attr(dom: str, name: str) -> float | None:
    m = re.search(rf'{name}="([^"]*)"', dom)
    try:
        return float(m.group(1)) if m else None
    except ValueError:
        return None


def grid_faces(n: int, seed: int = 0) -> tuple[bytes, list[Any]]:
    """A synthetic crowd: a JPEG with ``n`` drawn faces of varied sizes packed in rows (neighbours close
    together, some touching), and their boxes as :class:`facemtl.detect.base.Detection` (scores falling)."""
    import io
    import random

    from PIL import Image, ImageDraw

    from facemtl.detect.base import Detection
    from facemtl.results import Box

    rng = random.Random(seed)
    cols = max(1, math.ceil(math.sqrt(n * 1.6))) if n > 1 else 1
    width = 1000 if n > 1 else 360
    cell = width / cols
    rows = math.ceil(n / cols)
    height = int(rows * cell * 1.05) + 10
    img = Image.new("RGB", (width, height), (58, 72, 96))
    d = ImageDraw.Draw(img)
    dets = []
    for i in range(n):
        r, q = divmod(i, cols)
        side = cell * rng.uniform(0.78, 1.0) if n > 1 else 260
        x1 = q * cell + rng.uniform(0, cell - side)
        y1 = r * cell * 1.05 + rng.uniform(0, cell * 0.05) + 5
        x2, y2 = x1 + side, min(height - 1, y1 + side * 1.05)
        tone = rng.randint(110, 230)
        d.rectangle([x1, y1, x2, y2], fill=(rng.randint(60, 120),) * 3)
        d.ellipse([x1 + .2 * side, y1 + .08 * side, x2 - .2 * side, y2 - .05 * side],
                  fill=(tone, int(tone * .8), int(tone * .65)))
        for ex in (.38, .62):
            d.ellipse([x1 + (ex - .05) * side, y1 + .38 * side, x1 + (ex + .05) * side, y1 + .46 * side],
                      fill=(20,) * 3)
        d.rectangle([x1 + .4 * side, y1 + .72 * side, x1 + .6 * side, y1 + .76 * side], fill=(150, 40, 40))
        dets.append(Detection(Box(x1, y1, x2, y2), round(0.99 - 0.3 * i / max(1, n), 3), None))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), dets


class BoxesDetector:
    """A stand-in detector that returns fixed boxes (those of :func:`grid_faces`)."""

    name = "fixed-boxes"

    def __init__(self, detections: list[Any]) -> None:
        self.detections = list(detections)

    def detect(self, image: Any) -> list[Any]:
        return sorted(self.detections, key=lambda d: -d.score)


def check_page(analyzer: Any, image_bytes: bytes, out_png: Path, budget_ms: int = 60000,
               browser: str | None = None, verbose: bool = True, faces: int | None = None,
               close_cam: bool = False) -> dict[str, bool]:
    """Serve ``create_app(analyzer)``, drive its page in headless Chromium with ``image_bytes``; check name -> passed.

    Besides the rendered result (cards, bars, Grad-CAM, status line), the layout the driver measured: a card per
    face (``faces`` of them when given), none taller than :data:`MAX_CARD_PX`; a label for every box, touching it
    (within :data:`MAX_LABEL_GAP_PX`), inside the photo, none covering another; the Grad-CAM view at least
    :data:`MIN_CAM_PX` wide (or its own width). ``close_cam`` closes the Grad-CAM view before the screenshot (to
    show the photo and the cards); the screenshot window is as tall as the page then (up to 8000 px).

    Raises:
        RuntimeError: no Chromium found (and none given).
    """
    from importlib import resources

    from fastapi.responses import HTMLResponse, Response

    from facemtl.serve.app import create_app

    browser = browser or chromium()
    if browser is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    out_png = Path(out_png)
    app = create_app(analyzer)

    @app.get("/_check", include_in_schema=False)
    def check_html() -> HTMLResponse:
        html = resources.files("facemtl.serve").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html.replace("</body>", DRIVER + "</body>"))

    @app.get("/_check/image", include_in_schema=False)
    def check_image() -> Response:
        return Response(image_bytes, media_type="image/jpeg")

    @app.get("/_check/wait", include_in_schema=False)
    async def check_wait() -> Response:
        await asyncio.sleep(0.1)
        return Response(b"", media_type="text/plain")

    with serving(app) as base:
        url = f"{base}/_check" + ("?cam=close" if close_cam else "")
        t0 = time.perf_counter()
        dump = headless(browser, url, budget_ms=budget_ms)
        dom_s = time.perf_counter() - t0
        page_h = int(_attr(dump.stdout, "data-page-height") or 1000)
        size = (1400, max(1000, min(page_h, 8000))) if close_cam else (1400, 1000)
        out_png.unlink(missing_ok=True)
        shot = headless(browser, url, screenshot=out_png, budget_ms=budget_ms, size=size)

    dom = dump.stdout
    log = (lambda *a: print(*a, file=sys.stderr)) if verbose else (lambda *a: None)
    if not dom:
        log(f"chromium --dump-dom printed nothing (exit {dump.returncode}):\n{dump.stderr[-3000:]}")
    err = re.search(r'data-check-error="([^"]*)"', dom)
    if err:
        log(f"page script error: {err.group(1)}")
    if dom and 'data-check-done="1"' not in dom:
        body = re.search(r"<body[^>]*>", dom)
        status = re.search(r'<p id="status"[^>]*>[^<]*</p>', dom)
        log(f"page did not finish: {body.group(0) if body else dom[:500]!r} {status.group(0) if status else ''}")
    if shot.returncode != 0:
        log(shot.stderr[-2000:])
    cards = len(re.findall(r'class="face"', dom))
    bars = len(re.findall(r'class="bar"', dom))
    std = png_std(out_png)
    m = {k: _attr(dom, f"data-{k}") for k in ("cards", "max-card-height", "labels", "max-label-gap",
                                                "labels-outside", "label-overlaps", "min-label-height",
                                                "cam-width", "cam-natural-width", "page-height", "age-intervals",
                                                "range-bars", "interval-texts", "low-quality", "unsure-shown")}
    status = re.search(r"(\d+) face\(s\) in check\.jpg", dom)
    n_faces = int(status.group(1)) if status else -1
    log(f"{cards} face card(s), {bars} bar(s); cards at most {m['max-card-height']} px tall; {m['labels']} box "
        f"label(s) at most {m['max-label-gap']} px from their box, {m['labels-outside']} outside the photo, "
        f"{m['label-overlaps']} overlapping, at least {m['min-label-height']} px tall; {m['range-bars']} age "
        f"range bar(s) for {m['age-intervals']} interval(s); {m['unsure-shown']} unsure mark(s) for "
        f"{m['low-quality']} low-quality face(s); Grad-CAM shown "
        f"{m['cam-width']} px wide (image {m['cam-natural-width']} px); page {m['page-height']} px tall; "
        f"chromium --dump-dom took {dom_s:.1f} s; screenshot {size[0]}x{size[1]}: {out_png} (grey std {std:.1f})")
    cam_w, cam_nat = m["cam-width"] or 0, m["cam-natural-width"] or 0
    return {
        "page finished its script": 'data-check-done="1"' in dom,
        "no error shown": bool(dom) and 'class="error"' not in dom and not err,
        "at least one face card": cards >= 1,
        "probability bars drawn": bars >= 2,
        "status line names the faces": n_faces >= 0 and (faces is None or n_faces == faces),
        "a card per face": cards == m["cards"] == (faces if faces is not None else n_faces),
        f"cards compact (at most {MAX_CARD_PX} px tall)": 0 < (m["max-card-height"] or 0) <= MAX_CARD_PX,
        "a label for every box": m["labels"] == n_faces,
        f"labels touch their own box (within {MAX_LABEL_GAP_PX:g} px)":
            m["max-label-gap"] is not None and m["max-label-gap"] <= MAX_LABEL_GAP_PX,
        "labels inside the photo, none covering another": m["labels-outside"] == 0 and m["label-overlaps"] == 0,
        "age interval shown (text and range bar) for every face that has one":
            m["age-intervals"] is not None and m["age-intervals"] == m["range-bars"] and
            (m["interval-texts"] or 0) >= m["age-intervals"],
        "unsure (with reasons) shown for every low-quality face":
            m["low-quality"] is not None and m["low-quality"] == m["unsure-shown"],
        "Grad-CAM image shown": 'class="cam"' in dom,
        f"Grad-CAM view readable (at least {MIN_CAM_PX} px wide or its own size)":
            cam_nat > 0 and cam_w >= min(MIN_CAM_PX, cam_nat) - 1,
        "screenshot written and not blank": out_png.is_file() and std > BLANK_STD,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--out", type=Path, default=Path("serve_page.png"))
    ap.add_argument("--tiny", action="store_true", help="tiny random model + Haar detector (fast, meaningless)")
    ap.add_argument("--budget-ms", type=int, default=60000, help="Chromium's virtual time budget")
    ap.add_argument("--faces", type=int, nargs="+", metavar="N",
                    help="instead of --image: a synthetic photo of N drawn faces and a detector that returns their "
                         "boxes (with --tiny, or the default model); one run and screenshot per N, OUT-<N>faces.png")
    args = ap.parse_args()

    if chromium() is None:
        print("no Chromium found (apt-get install chromium); skipped", file=sys.stderr)
        return 0
    if not args.faces and not args.image.is_file():
        print(f"image not found: {args.image}", file=sys.stderr)
        return 2
    from facemtl import FaceAnalyzer

    if args.tiny:
        from facemtl.detect import create_detector
        from facemtl.models import create_model
        from facemtl.tasks import list_tasks

        analyzer = FaceAnalyzer(create_model("tiny", tasks=list_tasks()).eval(), create_detector("haar"), 64)
    else:
        analyzer = FaceAnalyzer.from_checkpoint()
    if not args.faces:
        return print_checks(check_page(analyzer, args.image.read_bytes(), args.out, args.budget_ms))
    checks = {}
    for n in args.faces:
        photo, dets = grid_faces(n)
        analyzer.detector = BoxesDetector(dets)
        out = args.out.with_name(f"{args.out.stem}-{n}faces{args.out.suffix}")
        got = check_page(analyzer, photo, out, args.budget_ms, faces=n, close_cam=n > 1)
        checks.update({f"{n} face(s): {k}": v for k, v in got.items()})
    return print_checks(checks)


if __name__ == "__main__":
    sys.exit(main())

"""Drive the web page in headless Chromium: load it, "upload" a photo, draw the boxes, ask for Grad-CAM, screenshot.

Starts ``create_app`` under uvicorn on a free loopback port, with one extra route, ``/_check``: the real page
plus a script that fetches the photo from ``/_check/image`` and hands it to the page's own ``analyse(file)``
(the code path of a picked or dropped file; headless Chromium's command line cannot choose a file), then
clicks the first face's Grad-CAM button. Chromium runs twice: ``--dump-dom`` to check the rendered result
(face cards, bars, a Grad-CAM image, no error), then ``--screenshot``. Exit 0 when every check passes.

    PYTHONPATH=src python scripts/browser_check.py [--image PHOTO] [--out page.png] [--tiny]

The helpers here (:func:`chromium`, :func:`headless`, :func:`png_std`, :func:`print_checks`) are shared with
``scripts/report_check.py``; :func:`check_page` is what ``tests/test_browser.py`` runs.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
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
  try {
    const blob = await (await fetch("_check/image")).blob();
    let finished = false;
    analyse(new File([blob], "check.jpg", {type: blob.type || "image/jpeg"})).finally(() => { finished = true; });
    for (let i = 0; !finished && i < 600; i++) await pause();
    const btn = document.querySelector("button.gradcam");
    if (btn) btn.click();
    for (let i = 0; btn && !document.querySelector("img.cam") && i < 600; i++) await pause();
    await pause();
  } catch (e) {
    document.body.setAttribute("data-check-error", String(e));
  }
  document.body.setAttribute("data-check-done", "1");
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


def check_page(analyzer: Any, image_bytes: bytes, out_png: Path, budget_ms: int = 60000,
               browser: str | None = None, verbose: bool = True) -> dict[str, bool]:
    """Serve ``create_app(analyzer)``, drive its page in headless Chromium with ``image_bytes``; check name -> passed.

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
        url = f"{base}/_check"
        t0 = time.perf_counter()
        dump = headless(browser, url, budget_ms=budget_ms)
        dom_s = time.perf_counter() - t0
        out_png.unlink(missing_ok=True)
        shot = headless(browser, url, screenshot=out_png, budget_ms=budget_ms)

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
    faces = len(re.findall(r'class="face"', dom))
    bars = len(re.findall(r'class="bar"', dom))
    std = png_std(out_png)
    log(f"{faces} face card(s), {bars} bar(s); chromium --dump-dom took {dom_s:.1f} s; "
        f"screenshot: {out_png} (grey std {std:.1f})")
    return {
        "page finished its script": 'data-check-done="1"' in dom,
        "no error shown": bool(dom) and 'class="error"' not in dom and not err,
        "at least one face card": faces >= 1,
        "probability bars drawn": bars >= 2,
        "status line names the faces": bool(re.search(r"\d+ face\(s\) in check\.jpg", dom)),
        "Grad-CAM image shown": 'class="cam"' in dom,
        "screenshot written and not blank": out_png.is_file() and std > BLANK_STD,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--out", type=Path, default=Path("serve_page.png"))
    ap.add_argument("--tiny", action="store_true", help="tiny random model + Haar detector (fast, meaningless)")
    ap.add_argument("--budget-ms", type=int, default=60000, help="Chromium's virtual time budget")
    args = ap.parse_args()

    if chromium() is None:
        print("no Chromium found (apt-get install chromium); skipped", file=sys.stderr)
        return 0
    if not args.image.is_file():
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
    return print_checks(check_page(analyzer, args.image.read_bytes(), args.out, args.budget_ms))


if __name__ == "__main__":
    sys.exit(main())

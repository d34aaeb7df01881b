"""Drive the web page in headless Chromium: load it, "upload" a photo, draw the boxes, ask for Grad-CAM, screenshot.

Starts ``create_app`` under uvicorn on a free loopback port, with one extra route, ``/_check``: the real page
plus a script that fetches the photo from ``/_check/image`` and hands it to the page's own ``analyse(file)``
(the code path of a picked or dropped file; headless Chromium's command line cannot choose a file), then
clicks the first face's Grad-CAM button. Chromium runs twice: ``--dump-dom`` to check the rendered result
(face cards, bars, a Grad-CAM image, no error), then ``--screenshot``. Exit 0 when every check passes.

    PYTHONPATH=src python scripts/browser_check.py [--image PHOTO] [--out page.png] [--tiny]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "wild" / "facerec_obama_and_biden.jpg"

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--out", type=Path, default=Path("serve_page.png"))
    ap.add_argument("--tiny", action="store_true", help="tiny random model + Haar detector (fast, meaningless)")
    ap.add_argument("--budget-ms", type=int, default=60000, help="Chromium's virtual time budget")
    args = ap.parse_args()

    browser = chromium()
    if browser is None:
        print("no Chromium found (apt-get install chromium); skipped", file=sys.stderr)
        return 0
    if not args.image.is_file():
        print(f"image not found: {args.image}", file=sys.stderr)
        return 2
    import uvicorn
    from fastapi.responses import HTMLResponse, Response

    from facemtl import FaceAnalyzer
    from facemtl.serve.app import create_app

    if args.tiny:
        from facemtl.detect import create_detector
        from facemtl.models import create_model
        from facemtl.tasks import list_tasks

        analyzer = FaceAnalyzer(create_model("tiny", tasks=list_tasks()).eval(), create_detector("haar"), 64)
    else:
        analyzer = FaceAnalyzer.from_checkpoint()
    app = create_app(analyzer)
    photo = args.image.read_bytes()

    @app.get("/_check", include_in_schema=False)
    def check_page() -> HTMLResponse:
        from importlib import resources

        html = resources.files("facemtl.serve").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html.replace("</body>", DRIVER + "</body>"))

    @app.get("/_check/image", include_in_schema=False)
    def check_image() -> Response:
        return Response(photo, media_type="image/jpeg")

    @app.get("/_check/wait", include_in_schema=False)
    async def check_wait() -> Response:
        await asyncio.sleep(0.1)
        return Response(b"", media_type="text/plain")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/_check"
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as profile:
        base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", f"--virtual-time-budget={args.budget_ms}", "--window-size=1400,1000"]
        t0 = time.perf_counter()
        dump = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=180, check=False)
        dom = dump.stdout
        if not dom:
            print(f"chromium --dump-dom printed nothing (exit {dump.returncode}):\n{dump.stderr[-3000:]}",
                  file=sys.stderr)
        dom_s = time.perf_counter() - t0
        shot = subprocess.run(base + [f"--screenshot={args.out.resolve()}", url], capture_output=True, text=True, check=False,
                              timeout=180)
    server.should_exit = True
    thread.join(timeout=10)

    err = re.search(r'data-check-error="([^"]*)"', dom)
    if err:
        print(f"page script error: {err.group(1)}", file=sys.stderr)
    if 'data-check-done="1"' not in dom:
        body = re.search(r"<body[^>]*>", dom)
        status = re.search(r'<p id="status"[^>]*>[^<]*</p>', dom)
        print(f"page did not finish: {body.group(0) if body else dom[:500]!r} {status.group(0) if status else ''}",
              file=sys.stderr)
    faces = len(re.findall(r'class="face"', dom))
    bars = len(re.findall(r'class="bar"', dom))
    checks = {
        "page finished its script": 'data-check-done="1"' in dom,
        "no error shown": 'class="error"' not in dom,
        "at least one face card": faces >= 1,
        "probability bars drawn": bars >= 2,
        "status line names the faces": bool(re.search(r"\d+ face\(s\) in check\.jpg", dom)),
        "Grad-CAM image shown": 'class="cam"' in dom,
        "screenshot written": args.out.is_file() and args.out.stat().st_size > 1000,
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            failures.append(name)
    print(f"{faces} face card(s), {bars} bar(s); chromium --dump-dom took {dom_s:.1f} s; screenshot: {args.out}")
    if shot.returncode != 0:
        print(shot.stderr[-2000:], file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

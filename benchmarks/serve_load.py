"""HTTP service under load: requests/s and latency percentiles of ``POST /predict`` on loopback.

Starts ``facemtl.serve.create_app`` under uvicorn in this process (a background thread, a free port on
127.0.0.1), then for each concurrency level (default 1, 4, 8) runs that many client threads, each sending
the same photo as a multipart upload back to back for ``--seconds``. Printed per level: requests/s,
faces/s, p50/p95/p99 latency, 503 rejections (the server's ``--max-concurrency``; rejected requests are
retried after a short pause and are not counted in the latency), errors, and the average images per
forward-pass group (the inference thread batches images of concurrent requests). The clients share the
machine's cores with the server, so the figures are a lower bound for a server on its own machine.

    PYTHONPATH=src python benchmarks/serve_load.py [--image ../shared/data/wild/x.jpg] [--tiny]
        [--concurrency 1,4,8] [--seconds 10] [--max-concurrency 8]
"""
from __future__ import annotations

import argparse
import http.client
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, OtherLoad, print_load_end, setup, table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def build_analyzer(tiny: bool, threads: int):
    from facemtl import FaceAnalyzer

    if not tiny:
        return FaceAnalyzer.from_checkpoint(threads=threads)
    from facemtl.detect import create_detector
    from facemtl.models import create_model
    from facemtl.tasks import list_tasks

    return FaceAnalyzer(create_model("tiny", tasks=list_tasks()).eval(), create_detector("haar"), 64)


def run_level(port: int, body: bytes, ctype: str, concurrency: int, seconds: float) -> dict:
    lat: list[float] = []
    counts = {"ok": 0, "busy": 0, "error": 0, "faces": 0}
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
            resp = conn.getresponse()
            payload = resp.read()
            dt = time.perf_counter() - t
            with lock:
                if resp.status == 200:
                    counts["ok"] += 1
                    counts["faces"] += payload.count(b'"box"')
                    lat.append(dt)
                elif resp.status == 503:
                    counts["busy"] += 1
                else:
                    counts["error"] += 1
            if resp.status == 503:
                time.sleep(0.01)
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, round(p / 100 * (len(lat) - 1)))] * 1e3 if lat else float("nan")

    return {"rps": counts["ok"] / wall, "fps": counts["faces"] / wall, "p50": pct(50), "p95": pct(95),
            "p99": pct(99), **counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=DATA / "wild" / "facerec_obama_and_biden.jpg")
    ap.add_argument("--tiny", action="store_true", help="tiny random model + Haar (measures the HTTP overhead)")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    ap.add_argument("--max-concurrency", type=int, default=8, help="the server's limit (more get 503)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    args = ap.parse_args()
    setup(args.threads)
    import uvicorn

    from facemtl.serve.app import create_app

    if not args.image.is_file():
        sys.exit(f"image not found: {args.image} (pass --image)")
    data = args.image.read_bytes()
    app = create_app(build_analyzer(args.tiny, args.threads), max_concurrency=args.max_concurrency)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    body, ctype = multipart(args.image.name, data)
    run_level(port, body, ctype, 1, 1.0)  # warm-up
    worker = app.state.worker
    rows = []
    for c in (int(x) for x in args.concurrency.split(",")):
        b0, i0 = worker.batches_run, worker.images_done
        load = OtherLoad().start()
        r = run_level(port, body, ctype, c, args.seconds)
        other = load.stop()
        per_batch = (worker.images_done - i0) / max(1, worker.batches_run - b0)
        rows.append([c, r["rps"], r["fps"], r["p50"], r["p95"], r["p99"], r["ok"], r["busy"], r["error"], per_batch,
                     other])
    server.should_exit = True
    th.join(timeout=10)
    model = "tiny + haar" if args.tiny else "default model + retinaface"
    table(["clients", "req/s", "faces/s", "p50 ms", "p95 ms", "p99 ms", "ok", "503", "errors", "img/batch",
           "other load"], rows, title=f"POST /predict, {args.image.name} ({len(data) / 1e3:.0f} kB), {model}, "
          f"{args.seconds:.0f} s per level, server max_concurrency={args.max_concurrency}")
    print_load_end()


if __name__ == "__main__":
    main()

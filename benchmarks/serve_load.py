"""HTTP service under load: requests/s and latency percentiles of ``POST /predict`` on loopback.

Starts ``facemtl.serve.create_app`` under uvicorn in this process (a background thread, a free port on
127.0.0.1), then for each concurrency level (default 1, 4, 8) runs that many client threads, each sending
the same photo as a multipart upload back to back for ``--seconds``. Printed per level: requests/s,
faces/s, p50/p95/p99 latency, 503 rejections (the server's ``--max-concurrency``; rejected requests are
retried after a short pause and are not counted in the latency), errors, and the average images per
forward-pass group (the inference thread batches images of concurrent requests). The clients share the
machine's cores with the server, so the figures are a lower bound for a server on its own machine.

Then the hostile scenarios (``--scenarios``, each ``--hostile-seconds`` long): ``--good-clients`` good clients as
above while, from another process (one asyncio loop, as an attacker's machine would be):

* ``slow``: ``--slow-clients`` connections that hold the server: half send the headers of a 100 kB body and then
  nothing, half dribble it at 1 byte/s; each reconnects when the server gives up on it (408 after
  ``body_timeout``);
* ``flood``: ``--flood-clients`` clients sending, back to back on new connections, oversized bodies (a
  ``Content-Length`` above the image or the batch limit) and junk bodies (random bytes as a JPEG, a malformed
  multipart body, broken JSON);
* ``both``: the two at once.

Printed per scenario: the good requests' success rate (200s / all answers, 503s included), requests/s and
p50/p99 latency of the 200s, and what the hostile clients got back (counts per status; ``reset``: the server
closed the connection before a status line).

    PYTHONPATH=src python benchmarks/serve_load.py [--image ../shared/data/wild/x.jpg] [--tiny]
        [--concurrency 1,4,8] [--seconds 10] [--max-concurrency 8]
        [--scenarios slow,flood,both] [--hostile-seconds 20] [--good-clients 4] [--slow-clients 4]
        [--flood-clients 200] [--body-timeout 10]
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import multiprocessing
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from typing import Any

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
            try:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
                resp = conn.getresponse()
                payload = resp.read()
            except (OSError, http.client.HTTPException):  # counted, then a new connection
                with lock:
                    counts["error"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
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


# -- hostile clients (run in a child process) ---------------------------------------------------------------


async def _status(reader: asyncio.StreamReader) -> str:
    """The status code of the answer on ``reader`` ("reset" when the connection ends without one)."""
    try:
        line = await reader.readline()
    except OSError:
        return "reset"
    parts = line.split()
    return parts[1].decode("latin-1") if len(parts) >= 2 else "reset"


async def _slow_client(port: int, dribble: bool, stop: asyncio.Event, counts: collections.Counter) -> None:
    """Holds a connection with a 100 kB body that never comes (or comes at 1 byte/s); reconnects when refused."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["connect failed"] += 1
            await asyncio.sleep(0.1)
            continue
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: 100000\r\n\r\n\xff")
            await writer.drain()
            answer = asyncio.ensure_future(_status(reader))
            while not answer.done() and not stop.is_set():
                await asyncio.wait([answer], timeout=1.0)
                if dribble and not answer.done():
                    writer.write(b"\xd8")
                    await writer.drain()
            if answer.done():
                counts[answer.result()] += 1
            else:
                answer.cancel()
        except OSError:
            counts["reset"] += 1
        finally:
            writer.close()


def _flood_requests() -> list[bytes]:
    junk = os.urandom(64 * 1024)
    head = ("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {n}\r\n"
            "Connection: close\r\n\r\n")
    boundary = "flood"
    bad_multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n"
                     "Content-Type: image/jpeg\r\n\r\n").encode() + junk[:1000]  # no closing boundary
    return [
        head.format(path="/predict", ctype="image/jpeg", n=50 * 2**20).encode() + junk,  # over the 20 MB per image
        head.format(path="/predict/batch", ctype=f"multipart/form-data; boundary={boundary}",
                    n=200 * 2**20).encode() + junk,  # over the 64 MB per batch
        head.format(path="/predict", ctype="image/jpeg", n=len(junk)).encode() + junk,  # not an image
        head.format(path="/predict", ctype=f"multipart/form-data; boundary={boundary}",
                    n=len(bad_multipart)).encode() + bad_multipart,
        head.format(path="/predict", ctype="application/json", n=2000).encode() + b'{"image_base64": [' * 100
        + b"!" * 200,  # broken JSON
    ]


async def _flood_client(port: int, k: int, stop: asyncio.Event, counts: collections.Counter) -> None:
    requests = _flood_requests()
    i = k
    while not stop.is_set():
        req = requests[i % len(requests)]
        i += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts["connect failed"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            writer.write(req)
            await writer.drain()
            counts[await asyncio.wait_for(_status(reader), 30)] += 1
        except (OSError, asyncio.TimeoutError):
            counts["reset"] += 1
        finally:
            writer.close()


async def _hostile(port: int, slow: int, flood: int, stop_flag: Any, ready: Any) -> dict:
    stop = asyncio.Event()
    slow_counts: collections.Counter = collections.Counter()
    flood_counts: collections.Counter = collections.Counter()
    tasks = [asyncio.ensure_future(_slow_client(port, i % 2 == 1, stop, slow_counts)) for i in range(slow)]
    tasks += [asyncio.ensure_future(_flood_client(port, i, stop, flood_counts)) for i in range(flood)]
    ready.set()
    while not stop_flag.is_set():
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait(tasks, timeout=35)
    for t in tasks:
        t.cancel()
    return {"slow": dict(slow_counts), "flood": dict(flood_counts)}


def hostile_process(port: int, slow: int, flood: int, stop_flag: Any, ready: Any, results: Any) -> None:
    """Entry point of the child process: runs the slow and flood clients until ``stop_flag`` is set."""
    results.put(asyncio.run(_hostile(port, slow, flood, stop_flag, ready)))


def run_hostile(port: int, body: bytes, ctype: str, good: int, slow: int, flood: int, seconds: float) -> dict:
    ctx = multiprocessing.get_context("spawn")  # not fork: this process runs uvicorn and ONNX Runtime threads
    stop_flag, ready, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=hostile_process, args=(port, slow, flood, stop_flag, ready, results), daemon=True)
    proc.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the hostile clients did not start")
        time.sleep(1.0)  # let the slow connections settle on the server and the flood reach its pace
        r = run_level(port, body, ctype, good, seconds)
        stop_flag.set()
        r.update(results.get(timeout=60))
    finally:
        stop_flag.set()
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
    answers = r["ok"] + r["busy"] + r["error"]
    r["success"] = 100.0 * r["ok"] / answers if answers else float("nan")
    return r


def _counts(c: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", type=Path, default=DATA / "wild" / "facerec_obama_and_biden.jpg")
    ap.add_argument("--tiny", action="store_true", help="tiny random model + Haar (measures the HTTP overhead)")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    ap.add_argument("--max-concurrency", type=int, default=8, help="the server's limit (more get 503)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    ap.add_argument("--scenarios", default="slow,flood,both", help="hostile scenarios to run ('' for none)")
    ap.add_argument("--hostile-seconds", type=float, default=20.0, help="per hostile scenario")
    ap.add_argument("--good-clients", type=int, default=4, help="good clients during the hostile scenarios")
    ap.add_argument("--slow-clients", type=int, default=4)
    ap.add_argument("--flood-clients", type=int, default=200)
    ap.add_argument("--body-timeout", type=float, default=10.0, help="the server's body_timeout (s)")
    args = ap.parse_args()
    setup(args.threads)
    import uvicorn

    from facemtl.serve.app import create_app

    if not args.image.is_file():
        sys.exit(f"image not found: {args.image} (pass --image)")
    data = args.image.read_bytes()
    app = create_app(build_analyzer(args.tiny, args.threads), max_concurrency=args.max_concurrency,
                     body_timeout=args.body_timeout)
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
    hostile_rows = []
    plan = {"slow": (args.slow_clients, 0), "flood": (0, args.flood_clients),
            "both": (args.slow_clients, args.flood_clients)}
    for name in (x.strip() for x in args.scenarios.split(",") if x.strip()):
        slow, flood = plan[name]
        print(f"scenario {name}: {args.good_clients} good, {slow} slow, {flood} flood clients, "
              f"{args.hostile_seconds:.0f} s", flush=True)
        r = run_hostile(port, body, ctype, args.good_clients, slow, flood, args.hostile_seconds)
        hostile_rows.append([name, args.good_clients, slow, flood, r["ok"] + r["busy"] + r["error"],
                             f"{r['success']:.1f}%", r["rps"], r["p50"], r["p99"], r["busy"], r["error"],
                             _counts(r["slow"]), _counts(r["flood"])])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/health")
        print(f"  after {name}: /health {conn.getresponse().read().decode()}", flush=True)
        conn.close()
    server.should_exit = True
    th.join(timeout=10)
    model = "tiny + haar" if args.tiny else "default model + retinaface"
    table(["clients", "req/s", "faces/s", "p50 ms", "p95 ms", "p99 ms", "ok", "503", "errors", "img/batch",
           "other load"], rows, title=f"POST /predict, {args.image.name} ({len(data) / 1e3:.0f} kB), {model}, "
          f"{args.seconds:.0f} s per level, server max_concurrency={args.max_concurrency}")
    if hostile_rows:
        table(["scenario", "good", "slow", "flood", "good answers", "good 200s", "good req/s", "p50 ms", "p99 ms",
               "503", "errors", "slow clients got", "flood clients got"], hostile_rows,
              title=f"Good clients while hostile ones run, {args.hostile_seconds:.0f} s each, server "
                    f"max_concurrency={args.max_concurrency}, body_timeout={args.body_timeout:g} s")
    print_load_end()


if __name__ == "__main__":
    main()

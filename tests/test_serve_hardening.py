"""HTTP service under hostile load (issue 17): stalled bodies, batch and pixel budgets, client mistakes, hygiene.

The slow-body and early-413 checks run a real uvicorn server on a free loopback port in a thread, with raw sockets.
"""
from __future__ import annotations

import base64
import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")
uvicorn = pytest.importorskip("uvicorn")

import httpx  # noqa: E402 (after the importorskip calls)
from conftest import FAKE_DETECTIONS, GatedDetector  # noqa: E402 (after the importorskip calls)
from fastapi.testclient import TestClient  # noqa: E402 (after the importorskip calls)

from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer  # noqa: E402 (after the importorskip calls)
from facemtl.serve.app import PAGE_CSP, create_app  # noqa: E402 (after the importorskip calls)


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A few-byte PNG whose header declares width x height (its pixel data is not there)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.fixture
def analyzer(tiny_model, fake_detector):
    return FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(flip_tta=False))


@pytest.fixture
def jpeg(face_image) -> bytes:
    return _jpeg(face_image)


@contextlib.contextmanager
def serving(app) -> Iterator[tuple[str, int]]:
    """The app under uvicorn on a free loopback port, in a thread -> ("127.0.0.1", port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, f"uvicorn did not start on port {port}"
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def _stalled(addr: tuple[str, int], path: str, length: int, ctype: str = "image/jpeg", first: bytes = b"x"
             ) -> socket.socket:
    """A connection that sends the headers of a ``length``-byte body, then ``first`` and nothing more."""
    sock = socket.create_connection(addr, timeout=5)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + first)
    return sock


def _status_line(sock: socket.socket) -> str:
    try:
        data = sock.recv(4096)
    except (TimeoutError, ConnectionError) as exc:
        return f"no answer ({type(exc).__name__})"
    return data.split(b"\r\n", 1)[0].decode("latin-1")


# -- 1. idle and dribbling connections ---------------------------------------------------------------


def test_stalled_and_dribbling_bodies_do_not_take_the_slots(analyzer, jpeg):
    app = create_app(analyzer, max_concurrency=2, body_timeout=1.5)
    with serving(app) as addr:
        stalled = [_stalled(addr, "/predict", 100_000) for _ in range(5)]
        dribbler = _stalled(addr, "/predict", 100_000)
        stop = threading.Event()

        def dribble() -> None:
            while not stop.wait(0.2):
                with contextlib.suppress(OSError):
                    dribbler.sendall(b"y")

        feeder = threading.Thread(target=dribble, daemon=True)
        feeder.start()
        try:
            time.sleep(0.3)  # the handlers are running and waiting for the bodies
            with httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}", trust_env=False, timeout=5) as http:
                for i in range(3):
                    r = http.post("/predict", files={"file": (f"{i}.jpg", jpeg, "image/jpeg")})
                    assert r.status_code == 200, r.text
                    assert len(r.json()["faces"]) == 2
                t0 = time.monotonic()
                answers = [_status_line(s) for s in [*stalled, dribbler]]
                assert all(" 408 " in a for a in answers), answers
                assert time.monotonic() - t0 < 4
                assert http.get("/health").json()["active"] == 0
        finally:
            stop.set()
            feeder.join(timeout=2)
            for s in [*stalled, dribbler]:
                s.close()


def test_body_timeout_is_408_json(analyzer):
    app = create_app(analyzer, body_timeout=0.5)
    with serving(app) as addr:
        sock = _stalled(addr, "/explain", 5000, "application/json", b'{"image_base64": "')
        try:
            data = b""
            while b"}" not in data:
                part = sock.recv(4096)
                if not part:
                    break
                data += part
        finally:
            sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and b"0.5 s" in body and b'"error"' in body


def _flood_request(k: int, addr: tuple[str, int]) -> str:
    """One hostile request on a new connection (oversized by Content-Length, or junk) -> its status code."""
    junk = bytes((k * 7 + i) % 256 for i in range(8192))
    head = "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n"
    multipart = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n' + junk  # unclosed
    raw = [head.format("/predict", "image/jpeg", 50 * 2**20).encode() + junk,
           head.format("/predict/batch", "multipart/form-data; boundary=b", 200 * 2**20).encode() + junk,
           head.format("/predict", "image/jpeg", len(junk)).encode() + junk,
           head.format("/predict", "multipart/form-data; boundary=b", len(multipart)).encode() + multipart,
           head.format("/predict", "application/json", 300).encode() + b'{"image_base64": [' * 15 + b"!" * 30][k % 5]
    try:
        with socket.create_connection(addr, timeout=5) as sock:
            sock.sendall(raw)
            line = sock.recv(4096).split(b"\r\n", 1)[0].split()
    except OSError:
        return "reset"  # the server answered from the headers and closed while the junk was still coming
    return line[1].decode() if len(line) >= 2 else "reset"


def test_a_flood_of_oversized_and_junk_bodies_leaves_good_requests_served(analyzer, jpeg):
    """200 hostile requests, 32 at a time, while a good client runs: each hostile one gets its 4xx (or 503), never
    a 500; the good client keeps getting answers, 200 or 503 only; nothing is left in work afterwards."""
    app = create_app(analyzer, max_concurrency=4, body_timeout=2)
    with serving(app) as addr:
        stop, good = threading.Event(), []

        def good_client() -> None:
            with httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}", trust_env=False, timeout=10) as http:
                while not stop.is_set():
                    good.append(http.post("/predict", files={"file": ("g.jpg", jpeg, "image/jpeg")}).status_code)

        t0 = time.monotonic()
        thread = threading.Thread(target=good_client, daemon=True)
        thread.start()
        try:
            with ThreadPoolExecutor(32) as pool:
                answers = list(pool.map(_flood_request, range(200), [addr] * 200))
        finally:
            stop.set()
            thread.join(timeout=15)
        assert time.monotonic() - t0 < 30
        assert set(answers) <= {"400", "413", "415", "422", "503", "reset"}, sorted(set(answers))
        assert answers.count("413") >= 40 and answers.count("400") >= 40, sorted(set(answers))
        assert good and set(good) <= {200, 503} and good.count(200) >= 1, good
        with httpx.Client(base_url=f"http://{addr[0]}:{addr[1]}", trust_env=False, timeout=10) as http:
            r = http.post("/predict", files={"file": ("after.jpg", jpeg, "image/jpeg")})
            assert r.status_code == 200 and len(r.json()["faces"]) == 2
            assert http.get("/health").json()["active"] == 0


# -- 4. bytes per batch, pixels in flight ----------------------------------------------------------------


def test_batch_over_the_total_is_413_before_the_body_is_read(analyzer, jpeg):
    app = create_app(analyzer, max_batch_mb=0.5, body_timeout=5)
    with serving(app) as addr:
        t0 = time.monotonic()
        for ctype in ("multipart/form-data; boundary=xyz", "application/json"):
            sock = _stalled(addr, "/predict/batch", 2_000_000, ctype, b"--xyz" if "multipart" in ctype else b"{")
            try:
                answer = _status_line(sock)
            finally:
                sock.close()
            assert " 413 " in answer, answer
        assert time.monotonic() - t0 < 3  # answered from Content-Length, not after the 5 s body timeout
    client = TestClient(app)
    chunk = b"-" * 100_000
    r = client.post("/predict/batch", content=iter([chunk] * 10),  # chunked: no Content-Length to check first
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and "0.5 MB per batch" in r.json()["error"]
    r = client.post("/predict/batch", files=[("files", ("a.jpg", jpeg, "image/jpeg"))] * 3)
    assert r.status_code == 200 and len(r.json()) == 3
    assert client.get("/info").json()["limits"]["max_batch_mb"] == 0.5


def test_pixels_in_flight_are_bounded(tiny_model, jpeg):
    detector = GatedDetector(list(FAKE_DETECTIONS), timeout=5)
    gate, entered = detector.gate, detector.entered
    a = FaceAnalyzer(tiny_model, detector, 64)
    app = create_app(a, max_concurrency=4, max_pixels_in_flight=6000)  # one 64x64 image (4096 px) at a time
    client = TestClient(app)
    try:
        r = client.post("/predict/batch", files=[("files", ("a.jpg", jpeg, "image/jpeg"))] * 2)
        assert r.status_code == 413 and "decodes at once" in r.json()["error"]  # 8192 px can never fit
        r = client.post("/predict", files={"file": ("huge.png", _png_declaring(60, 200), "image/png")})
        assert r.status_code == 413 and "megapixels" in r.json()["error"]  # refused from its header alone
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, "/predict", files={"file": ("1.jpg", jpeg, "image/jpeg")})
            assert entered.wait(5)
            assert app.state.pixels.used == 64 * 64
            r = client.post("/predict", files={"file": ("2.jpg", jpeg, "image/jpeg")})
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and "in flight" in r.json()["error"]
            gate.set()
            assert first.result(timeout=10).status_code == 200
    finally:
        gate.set()
    assert app.state.pixels.used == 0
    assert client.post("/predict", files={"file": ("3.jpg", jpeg, "image/jpeg")}).status_code == 200
    assert client.get("/info").json()["limits"]["max_pixels_in_flight"] == 6000
    assert create_app(a, max_pixels=1000, max_concurrency=3).state.pixels.capacity == 3000  # the default


# -- 7. client mistakes are 4xx ------------------------------------------------------------------------


def test_client_mistakes_are_4xx_naming_them(analyzer, jpeg):
    client = TestClient(create_app(analyzer))
    b64 = base64.b64encode(jpeg).decode()

    def check(r, status: int, match: str) -> None:
        assert r.status_code == status, (r.status_code, r.text)
        assert match in r.json()["error"], r.json()

    two = [("file", ("a.jpg", jpeg, "image/jpeg")), ("file", ("b.jpg", jpeg, "image/jpeg"))]
    check(client.post("/predict", files=two), 422, "2 'file' parts")
    check(client.post("/explain", files=two), 422, "2 'file' parts")
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/predict", "/predict/batch", "/explain"):
        check(client.post(path, content=deep, headers={"content-type": "application/json"}), 400, "nested too deeply")
    huge_int = b'{"image_base64": "", "face": ' + b"9" * 5000 + b"}"
    json_type = {"content-type": "application/json"}
    check(client.post("/explain", content=huge_int, headers=json_type), 400, "not valid JSON")
    inf = ('{"image_base64": "' + b64 + '", "face": 1e400}').encode()
    check(client.post("/explain", content=inf, headers={"content-type": "application/json"}), 422, "face")
    for face in (-1, 1.5, True, "1e400", [0]):
        check(client.post("/explain", json={"image_base64": b64, "face": face}), 422, "face")
    check(client.post("/explain", files={"file": ("f.jpg", jpeg, "image/jpeg")}, data={"face": "-1"}), 422, "face")
    check(client.post("/explain", json={"image_base64": b64, "tasks": [1]}), 422, "tasks")
    assert client.post("/explain", json={"image_base64": b64, "face": 0.0}).status_code == 200
    assert client.post("/predict", files={"file": ("ok.jpg", jpeg, "image/jpeg")}).status_code == 200


# -- 10. hygiene ---------------------------------------------------------------------------------------------


def test_info_shows_the_checkpoint_name_not_its_path(tiny_model, fake_detector):
    from facemtl.weights import default_checkpoint_path, get_weights

    a = FaceAnalyzer(tiny_model, fake_detector, 64, info={"checkpoint": "/home/someone/secret/runs/best.pt"})
    info = TestClient(create_app(a)).get("/info")
    assert info.json()["checkpoint"] == "best.pt" and "secret" not in info.text
    a = FaceAnalyzer(tiny_model, fake_detector, 64, info={"checkpoint": str(get_weights().path(verify=False))})
    assert TestClient(create_app(a)).get("/info").json()["checkpoint"] == "bundled default"
    a = FaceAnalyzer(tiny_model, fake_detector, 64, info={"checkpoint": str(default_checkpoint_path(verify=False))})
    assert TestClient(create_app(a)).get("/info").json()["checkpoint"] == "bundled default-pytorch"


def test_host_header_is_checked(analyzer):
    app = create_app(analyzer, allowed_hosts=["localhost", "127.0.0.1", "::1", "*.example.org"])
    client = TestClient(app, base_url="http://localhost:8000")
    assert client.get("/health").status_code == 200
    for host in ("127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "api.example.org"):
        assert client.get("/health", headers={"host": host}).status_code == 200, host
    for host in ("evil.example", "localhost.evil.example", "example.org", ""):
        r = client.get("/health", headers={"host": host})
        assert r.status_code == 400 and "Host" in r.json()["error"], host
        assert r.headers["x-content-type-options"] == "nosniff"
    assert TestClient(create_app(analyzer)).get("/health").status_code == 200  # default: any host ("testserver")
    assert TestClient(create_app(analyzer, allowed_hosts="*")).get("/health").status_code == 200


def test_cli_allowed_hosts_defaults_and_flags(capsys):
    import argparse

    from facemtl.cli import serve

    names, warning = serve.default_allowed_hosts("127.0.0.1")
    assert names == ["localhost", "127.0.0.1", "::1"] and warning is None
    names, warning = serve.default_allowed_hosts("192.168.1.7")
    assert names == ["localhost", "127.0.0.1", "::1", "192.168.1.7"] and warning is None
    for any_addr in ("0.0.0.0", "::"):
        names, warning = serve.default_allowed_hosts(any_addr)
        assert names == ["*"] and "--allowed-hosts" in warning
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve"])
    assert args.body_timeout == 10 and args.max_batch_mb == 64 and args.max_pixels_in_flight is None
    assert args.allowed_hosts is None
    args = parser.parse_args(["serve", "--body-timeout", "2.5", "--max-batch-mb", "8", "--allowed-hosts", "a,b"])
    assert args.body_timeout == 2.5 and args.max_batch_mb == 8 and args.allowed_hosts == "a,b"


def test_security_headers_and_page_csp(analyzer, jpeg):
    client = TestClient(create_app(analyzer))
    responses = [client.get("/health"), client.get("/nope"), client.post("/predict", content=b"x"),
                 client.post("/predict", files={"file": ("ok.jpg", jpeg, "image/jpeg")})]
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY", r.url
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert csp == PAGE_CSP
    for part in ("default-src 'self'", "img-src 'self' data: blob:", "script-src 'self' 'unsafe-inline'",
                 "style-src 'self' 'unsafe-inline'", "frame-ancestors 'none'"):
        assert part in csp
    assert "<script>" in page.text and 'fetch("predict"' in page.text  # inline script, same-origin fetch: allowed
    assert "content-security-policy" not in client.get("/docs").headers  # Swagger UI loads its CDN assets

"""HTTP service: every endpoint and error path through FastAPI's TestClient, on the tiny model + a fake detector."""
from __future__ import annotations

import base64
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

from conftest import WILD, FakeDetector, draw_face, needs_data
from fastapi.testclient import TestClient

from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer
from facemtl.serve.app import create_app


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def analyzer(tiny_model, fake_detector):
    return FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(flip_tta=False))


@pytest.fixture
def client(analyzer):
    return TestClient(create_app(analyzer, max_concurrency=8))


@pytest.fixture
def jpeg(face_image) -> bytes:
    return _jpeg(face_image)


def _ok(client, jpeg):
    r = client.post("/predict", files={"file": ("ok.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def test_health_info_page_and_openapi(client, analyzer):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/info").json()
    assert info["backbone"] == "tiny" and info["input_size"] == 64 and info["detector"] == "fake"
    tasks = {t["name"]: t for t in info["tasks"]}
    assert set(tasks) == {t.name for t in analyzer.tasks}
    assert tasks["gender"]["labels"] == list(next(t for t in analyzer.tasks if t.name == "gender").labels)
    assert info["facemtl_version"] and info["explain"] is True
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="upload-form"' in page.text and 'type="file"' in page.text and "<canvas" in page.text
    assert "Grad-CAM" in page.text and "http://" not in page.text and "https://" not in page.text  # no CDN
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/explain", "/info", "/health"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_predict_multipart_matches_python(client, analyzer, jpeg):
    body = _ok(client, jpeg)
    assert body["timings_ms"]["load"] > 0 and "predict" in body["timings_ms"]
    expected = analyzer.analyze(jpeg).to_dict()
    assert body["source"] == "ok.jpg" and body["schema_version"] == expected["schema_version"]
    assert body["size_hw"] == expected["size_hw"] == [64, 64]
    assert len(body["faces"]) == 2
    for got, want in zip(body["faces"], expected["faces"]):
        assert got["box"] == want["box"]
        for task in ("gender", "emotion"):
            assert got[task]["label"] == want[task]["label"]
            assert got[task]["value"] == pytest.approx(want[task]["value"], abs=1e-4)


def test_predict_json_base64_and_raw_body(client, jpeg):
    r = client.post("/predict", json={"image_base64": base64.b64encode(jpeg).decode(), "name": "b64.jpg"})
    assert r.status_code == 200 and r.json()["source"] == "b64.jpg" and len(r.json()["faces"]) == 2
    data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    assert client.post("/predict", json={"image_base64": data_url}).status_code == 200
    r = client.post("/predict", content=jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 2


def test_no_face_gives_an_empty_list(client, fake_detector, jpeg):
    fake_detector.detections = []
    assert _ok(client, jpeg)["faces"] == []


@pytest.mark.parametrize("kwargs, status, match", [
    ({"files": {"file": ("x.jpg", b"this is not an image", "image/jpeg")}}, 400, "not a readable image"),
    ({"files": {"file": ("x.jpg", b"", "image/jpeg")}}, 400, "empty"),
    ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 400, "empty"),
    ({"files": {"file": ("x.txt", b"hello", "text/plain")}}, 415, "not an image"),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
    ({"json": {"image_base64": "@@not base64@@"}}, 422, "base64"),
    ({"json": {"image_base64": 12}}, 422, "base64"),
    ({"json": {"picture": "abc"}}, 422, "image_base64"),
    ({"files": {"other": ("x.jpg", b"abc", "image/jpeg")}}, 422, "'file'"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
])
def test_predict_errors_are_json_and_the_service_goes_on(client, jpeg, kwargs, status, match):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]
    _ok(client, jpeg)  # still answers


def test_truncated_jpeg_is_400(client, jpeg):
    r = client.post("/predict", files={"file": ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")})
    assert r.status_code == 400 and "cut.jpg" in r.json()["error"]
    _ok(client, jpeg)


def test_upload_and_pixel_limits_are_413(analyzer, jpeg):
    client = TestClient(create_app(analyzer, max_upload_mb=0.001, max_pixels=64 * 64))  # ~1 kB, 4096 px
    big = _jpeg(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    assert len(big) > 1100
    r = client.post("/predict", files={"file": ("big.jpg", big, "image/jpeg")})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = client.post("/predict", json={"image_base64": base64.b64encode(big).decode()})
    assert r.status_code == 413
    r = client.post("/predict", content=iter([big[:600], big[600:]]), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413 and "limit" in r.json()["error"]  # chunked: no Content-Length to check first
    wide = _jpeg(np.zeros((65, 65, 3), np.uint8))  # small file, too many pixels
    assert len(wide) < 1000
    r = client.post("/predict", files={"file": ("wide.jpg", wide, "image/jpeg")})
    assert r.status_code == 413 and "megapixels" in r.json()["error"]
    small = _jpeg(np.full((32, 32, 3), 128, np.uint8))
    assert client.post("/predict", files={"file": ("s.jpg", small, "image/jpeg")}).status_code == 200


def test_image_pil_refuses_to_open_is_413_with_the_size(client, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300_000)  # PIL refuses past 600,000 px while reading the header
    r = client.post("/predict", files={"file": ("bomb.jpg", _jpeg(np.zeros((1000, 1000, 3), np.uint8)), "image/jpeg")})
    assert r.status_code == 413
    assert r.json()["error"] == "bomb.jpg: 1.0 megapixels is above the limit of 0.6 megapixels; downscale it"


def test_batch_multipart_and_json_record_per_item_errors(client, jpeg):
    files = [("files", ("a.jpg", jpeg, "image/jpeg")), ("files", ("bad.jpg", b"nope", "image/jpeg")),
             ("files", ("c.jpg", jpeg, "image/jpeg"))]
    r = client.post("/predict/batch", files=files)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [o["source"] for o in out] == ["a.jpg", "bad.jpg", "c.jpg"]
    assert len(out[0]["faces"]) == 2 and "error" in out[1] and out[2]["faces"] == out[0]["faces"]
    b64 = base64.b64encode(jpeg).decode()
    out = client.post("/predict/batch", json={"images_base64": [b64, "%%%", b64], "names": ["x", "y", "z"]}).json()
    assert [o["source"] for o in out] == ["x", "y", "z"] and "base64" in out[1]["error"] and "faces" in out[2]
    assert client.post("/predict/batch", json={"images_base64": "abc"}).status_code == 422
    assert client.post("/predict/batch", json={"images_base64": []}).status_code == 422
    assert client.post("/predict/batch", json={"image_base64": b64}).status_code == 422
    assert client.post("/predict/batch", json={"images_base64": [b64] * 17}).status_code == 413


def test_explain_returns_a_png_and_maps_errors(client, fake_detector, jpeg):
    r = client.post("/explain", files={"file": ("f.jpg", jpeg, "image/jpeg")}, data={"face": "0"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    panel = Image.open(io.BytesIO(r.content))
    assert panel.width > panel.height > 0
    r = client.post("/explain", json={"image_base64": base64.b64encode(jpeg).decode(), "face": 0, "tasks": "gender"})
    assert r.status_code == 200
    assert client.post("/explain", files={"file": ("f.jpg", jpeg, "image/jpeg")}, data={"face": "9"}).status_code == 400
    r = client.post("/explain", files={"file": ("f.jpg", jpeg, "image/jpeg")}, data={"tasks": "gendr"})
    assert r.status_code == 422 and "gendr" in r.json()["error"]
    assert client.post("/explain", files={"file": ("f.jpg", jpeg, "image/jpeg")}, data={"face": "x"}).status_code == 422
    _ok(client, jpeg)


def test_explain_is_422_for_a_model_without_gradcam(analyzer, jpeg):
    class Opaque:  # e.g. an ONNX model: predictions only
        tasks = analyzer.model.tasks
        config = None

        def predict(self, x, flip_tta=False):
            return analyzer.model.predict(x, flip_tta)

    onnx_like = FaceAnalyzer(Opaque(), analyzer.detector, 64)
    client = TestClient(create_app(onnx_like))
    assert client.get("/info").json()["explain"] is False
    r = client.post("/explain", files={"file": ("f.jpg", jpeg, "image/jpeg")})
    assert r.status_code == 422 and "explain" in r.json()["error"]
    _ok(client, jpeg)


def test_unknown_route_is_json_404(client):
    r = client.get("/nope")
    assert r.status_code == 404 and "error" in r.json()


def test_concurrent_requests_all_succeed_with_their_own_sources(client, tiny_model):
    images = {f"img{i}.jpg": _jpeg(draw_face(64, seed=i)) for i in range(8)}

    def post(name: str) -> tuple[str, dict]:
        r = client.post("/predict", files={"file": (name, images[name], "image/jpeg")})
        assert r.status_code == 200, r.text
        return name, r.json()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(post, images))
    alone = FaceAnalyzer(tiny_model, FakeDetector(client.app.state.worker.analyzer.detector.detections), 64,
                         options=AnalyzerOptions(flip_tta=False))
    for name, body in results:
        assert body["source"] == name
        want = alone.analyze(images[name]).to_dict()
        assert body["faces"][0]["emotion"]["probs"] == pytest.approx(want["faces"][0]["emotion"]["probs"], abs=1e-4)
    health = client.get("/health").json()
    assert health["images_done"] >= 8 and health["active"] == 0


def test_overload_is_503_with_retry_after_then_recovers(tiny_model, jpeg):
    from conftest import FAKE_DETECTIONS, GatedDetector

    detector = GatedDetector(list(FAKE_DETECTIONS), timeout=10)
    gate, entered = detector.gate, detector.entered
    a = FaceAnalyzer(tiny_model, detector, 64)
    client = TestClient(create_app(a, max_concurrency=1))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/predict", files={"file": ("1.jpg", jpeg, "image/jpeg")})
        assert entered.wait(10)
        r = client.post("/predict", files={"file": ("2.jpg", jpeg, "image/jpeg")})
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
        gate.set()
        assert first.result(timeout=20).status_code == 200
    assert _ok(client, jpeg)["source"] == "ok.jpg"
    assert client.get("/health").json()["rejected"] == 1


def test_json_schema_is_plain_json(client, jpeg):
    body = _ok(client, jpeg)
    assert json.loads(json.dumps(body)) == body


def test_cli_serve_is_registered_with_safe_defaults():
    import argparse

    from facemtl.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "8123"])
    assert args.host == "127.0.0.1" and args.port == 8123 and args.max_upload_mb == 20 and args.func is serve.run


@needs_data
def test_default_model_on_a_real_photo():
    photo = WILD / "facerec_obama_and_biden.jpg"
    if not photo.exists():
        pytest.skip(f"{photo} not found")
    analyzer = FaceAnalyzer.from_checkpoint()
    client = TestClient(create_app(analyzer))
    r = client.post("/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    want = analyzer(photo).to_dict()
    assert body["source"] == photo.name and body["size_hw"] == want["size_hw"]
    assert [f["box"] for f in body["faces"]] == [f["box"] for f in want["faces"]]
    assert len(body["faces"]) >= 2  # the two men; a girl's face is also in the frame
    two = sorted(body["faces"], key=lambda f: -(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))[:2]
    assert all(f["gender"]["label"] == "male" and 15 <= f["age"]["value"] <= 90 for f in two)
    r = client.post("/explain", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}, data={"face": "0"})
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_docs_and_redoc_work_offline(client):
    """Swagger UI and ReDoc load their scripts and styles from the service itself, never from a CDN."""
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        assert page.status_code == 200, path
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], (path, urls)
        for url in urls:
            assert client.get(url).status_code == 200, url
    assert "openapi" in client.get("/docs").text.lower()


def test_predict_honours_the_tasks_field(client, jpeg):
    import base64

    every = client.post("/predict", files={"file": ("a.jpg", jpeg, "image/jpeg")}).json()["faces"][0]
    assert {"age", "gender", "emotion", "ethnicity"} <= set(every)
    form = client.post("/predict", files={"file": ("a.jpg", jpeg, "image/jpeg")}, data={"tasks": "age,gender"})
    body = client.post("/predict", json={"image_base64": base64.b64encode(jpeg).decode(), "tasks": ["emotion"]})
    query = client.post("/predict?tasks=ethnicity", content=jpeg, headers={"content-type": "image/jpeg"})
    batch = client.post("/predict/batch", files=[("files", ("a.jpg", jpeg, "image/jpeg"))], data={"tasks": "age"})
    for r, want in ((form, {"age", "gender"}), (body, {"emotion"}), (query, {"ethnicity"})):
        assert r.status_code == 200, r.text
        face = r.json()["faces"][0]
        assert {"age", "gender", "emotion", "ethnicity"} & set(face) == want
        assert face["box"] == every["box"] and all(face[t] == every[t] for t in want)
    assert batch.status_code == 200 and {"age", "gender", "emotion", "ethnicity"} & set(batch.json()[0]["faces"][0]) \
        == {"age"}
    bad = client.post("/predict", files={"file": ("a.jpg", jpeg, "image/jpeg")}, data={"tasks": "age,mood"})
    assert bad.status_code == 422 and bad.json()["error"] == \
        "unknown task 'mood' in 'tasks'; valid: age, gender, emotion, ethnicity"
    assert client.post("/predict", json={"image_base64": base64.b64encode(jpeg).decode(), "tasks": 3}).status_code \
        == 422
    assert _ok(client, jpeg)  # the service keeps answering

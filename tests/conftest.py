"""Shared fixtures: a synthetic face, the tiny model, a fake detector and a tiny on-disk dataset.

Everything here is synthetic and built in milliseconds; tests that need the real data in
``../shared/data`` use ``needs_data`` (skipped when the folder is absent).
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: with 2 threads on 2 shared cores, OpenMP's default spin-waiting makes a
# 20 ms forward pass take seconds whenever another process is busy. Passive waiting costs nothing here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import functools  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from facemtl.detect.base import Detection  # noqa: E402
from facemtl.results import Box  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UTKFACE = DATA / "utkface"
FER2013 = DATA / "fer2013"
WILD = DATA / "wild"

needs_data = pytest.mark.skipif(not (UTKFACE.is_dir() and FER2013.is_dir() and WILD.is_dir()),
                                reason=f"shared data not found at {DATA}")


def draw_face(size: int = 64, seed: int = 0, tone: int = 200) -> np.ndarray:
    """An RGB uint8 (size, size, 3) "face": a skin-coloured ellipse with two eyes and a mouth, plus seeded noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (40, 60, 90))
    d = ImageDraw.Draw(img)
    s = size / 64
    d.ellipse([12 * s, 6 * s, 52 * s, 58 * s], fill=(tone, int(tone * 0.8), int(tone * 0.65)))
    d.ellipse([22 * s, 22 * s, 28 * s, 27 * s], fill=(20, 20, 20))
    d.ellipse([36 * s, 22 * s, 42 * s, 27 * s], fill=(20, 20, 20))
    d.rectangle([26 * s, 42 * s, 38 * s, 45 * s], fill=(150, 40, 40))
    arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, size=(size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


@pytest.fixture
def face_image() -> np.ndarray:
    """64x64 RGB uint8 with a drawn ellipse "face" and seeded noise."""
    return draw_face(64, seed=0)


@pytest.fixture
def tiny_model():
    """The registered two-conv test backbone with every task's head, in eval mode."""
    from facemtl.models import create_model
    from facemtl.tasks import list_tasks

    torch.manual_seed(0)
    return create_model("tiny", tasks=list_tasks()).eval()


class FakeDetector:
    """Returns fixed detections (no weights); set ``detections`` to change them."""

    name = "fake"

    def __init__(self, detections: list[Detection]) -> None:
        self.detections = list(detections)
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.calls += 1
        return sorted(self.detections, key=lambda d: -d.score)


class GatedDetector(FakeDetector):
    """A FakeDetector that holds each call until ``gate`` is set (at most ``timeout`` s); ``entered`` is set when
    a call is waiting. For tests of what a busy server does."""

    def __init__(self, detections: list[Detection], timeout: float = 10.0) -> None:
        import threading

        super().__init__(detections)
        self.gate, self.entered, self.timeout = threading.Event(), threading.Event(), timeout

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.entered.set()
        self.gate.wait(self.timeout)
        return super().detect(image)


FAKE_DETECTIONS = (
    # a big face with eye landmarks, inside a 64x64 image
    Detection(Box(8.0, 4.0, 56.0, 60.0), 0.95, ((24.0, 24.0), (40.0, 24.0), (32.0, 34.0), (27.0, 44.0), (37.0, 44.0))),
    # a small, lower-scoring one without landmarks
    Detection(Box(0.0, 0.0, 16.0, 16.0), 0.60, None),
)


@pytest.fixture
def fake_detector() -> FakeDetector:
    return FakeDetector(list(FAKE_DETECTIONS))


@dataclass
class TinyDataset:
    root: Path
    utkface: Path  # folder of UTKFace-named JPEGs
    fer2013: Path  # folder with train/<emotion>/*.jpg and test/<emotion>/*.jpg
    utk_labels: dict[str, tuple[int, int, int]]  # file name -> (age, gender, race)


# (age, gender, race): both genders, all five races, ages in several bands
UTK_LABELS = [(1, 0, 0), (8, 1, 1), (23, 0, 2), (25, 1, 3), (34, 0, 4), (47, 1, 0), (63, 0, 1), (85, 1, 2)]


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> TinyDataset:
    """8 UTKFace-named colour JPEGs plus a FER2013 image-folder tree of 48x48 grayscale JPEGs."""
    utk = tmp_path / "utkface"
    utk.mkdir()
    labels = {}
    for i, (age, gender, race) in enumerate(UTK_LABELS):
        name = f"{age}_{gender}_{race}_2017011617452{i:04d}.jpg.chip.jpg"
        Image.fromarray(draw_face(64, seed=i, tone=120 + 15 * i)).save(utk / name, quality=90)
        labels[name] = (age, gender, race)
    fer = tmp_path / "fer2013"
    for split, prefix, emotions in (("train", "Training", ("happy", "sad", "angry")), ("test", "PublicTest",
                                                                                      ("happy", "sad"))):
        for j, emo in enumerate(emotions):
            (fer / split / emo).mkdir(parents=True)
            gray = draw_face(48, seed=100 + j + (10 if split == "test" else 0))[:, :, 1]
            Image.fromarray(gray, "L").save(fer / split / emo / f"{prefix}_{j}.jpg", quality=90)
    return TinyDataset(tmp_path, utk, fer, labels)


def calibrated_copy(ckpt: str | Path, out: str | Path) -> Path:
    """A copy of a (tiny) checkpoint with a stored calibration: temperatures for the three classification heads
    and conformal age intervals fitted on synthetic ages (predicted = true + N(0, 6) years)."""
    from facemtl.calibration import Calibration, fit_age_intervals
    from facemtl.evaluate.calibrate import write_calibrated

    rng = np.random.default_rng(0)
    true = rng.uniform(0, 90, 600)
    ages = fit_age_intervals(true, true + rng.normal(0, 6, 600), min_group=50)
    cal = Calibration({"gender": 1.5, "emotion": 0.8, "ethnicity": 2.0}, ages, {"images": 600, "part": "synthetic"})
    return write_calibrated(ckpt, out, cal)


@pytest.fixture(autouse=True, scope="session")
def _private_crop_cache(tmp_path_factory):
    """Framed-crop caches of the tests go to a temporary folder, never into the user's ~/.cache/facemtl."""
    old = os.environ.get("FACEMTL_CACHE")
    os.environ["FACEMTL_CACHE"] = str(tmp_path_factory.mktemp("facemtl-cache"))
    yield
    if old is None:
        os.environ.pop("FACEMTL_CACHE", None)
    else:
        os.environ["FACEMTL_CACHE"] = old


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on the test's stderr
        pass


class _JoiningServer(http.server.ThreadingHTTPServer):
    """Joins its request threads on close (ThreadingHTTPServer leaves them running as daemons), so no request a
    client gave up on is still being answered, and printing a broken pipe into another test's stderr, after the
    test that started it has ended."""

    daemon_threads = False


@contextmanager
def local_http_server(directory: Path, handler: type[http.server.SimpleHTTPRequestHandler] = QuietHandler
                      ) -> Iterator[str]:
    """Serve ``directory`` on a loopback port for the ``with`` block; yields the base URL."""
    server = _JoiningServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()  # waits for the request threads
        thread.join()

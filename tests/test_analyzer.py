"""FaceAnalyzer end to end: the tiny model with a fake detector, then the bundled model on real photos."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import UTKFACE, WILD, FakeDetector, needs_data
from PIL import Image

from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer, ItemError, decode_outputs
from facemtl.detect.base import Detection
from facemtl.errors import InvalidInputError, UnknownNameError
from facemtl.results import SCHEMA_VERSION, Box, Face, ImageResult, Prediction
from facemtl.tasks import AGE_GROUPS, age_group, get_task, list_tasks, most_probable_group


@pytest.fixture
def analyzer(tiny_model, fake_detector):
    return FaceAnalyzer(tiny_model, fake_detector, input_size=64)


def test_result_types_and_boxes(analyzer, face_image, fake_detector):
    res = analyzer(face_image)
    assert isinstance(res, ImageResult) and fake_detector.calls == 1
    assert res.size_hw == (64, 64) and res.source == "<array 64x64x3>" and res.image is None
    assert len(res) == 2 and all(isinstance(f, Face) for f in res)
    assert [f.box for f in res.faces] == [d.box for d in fake_detector.detections]
    assert [f.score for f in res.faces] == pytest.approx([0.95, 0.60])
    assert res[0].landmarks[0] == (24.0, 24.0) and res[1].landmarks is None
    for face in res:
        assert list(face.attributes) == list_tasks()
        for name, pred in face.attributes.items():
            spec = get_task(name)
            assert isinstance(pred, Prediction) and pred.task == name and name in face
            if spec.kind == "classification":
                assert pred.label in spec.labels
                assert set(pred.probs) == set(spec.labels)
                assert pred.value == pytest.approx(max(pred.probs.values()))
                assert pred.value == pytest.approx(pred.probs[pred.label])
                assert sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-5)
            else:
                lo, hi = spec.value_range
                assert lo <= pred.value <= hi and pred.label == most_probable_group(pred.probs)
    assert set(res.timings_ms) == {"load", "detect", "crop", "predict"}


def test_to_dict_json_round_trip(analyzer, face_image):
    res = analyzer(face_image)
    d = res.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert json.loads(res.to_json()) == d
    f = d["faces"][0]
    assert f["box"] == [8.0, 4.0, 56.0, 60.0] and f["score"] == 0.95 and len(f["landmarks"]) == 5
    assert set(f) == {"box", "score", "landmarks", "quality", "quality_reasons", *list_tasks()}
    assert f["quality"] in ("ok", "low") and isinstance(f["quality_reasons"], list)
    assert set(f["gender"]) == {"label", "value", "probs"} and set(f["gender"]["probs"]) == {"male", "female"}
    assert set(f["age"]["probs"]) == {g for g, _ in AGE_GROUPS}
    assert "landmarks" not in d["faces"][1]


def test_unknown_task_key_lists_the_tasks(analyzer, face_image):
    face = analyzer(face_image)[0]
    with pytest.raises(KeyError, match="nope") as exc:
        face["nope"]
    assert all(t in str(exc.value) for t in list_tasks())
    assert "nope" not in face


def test_no_face_gives_an_empty_list(analyzer, face_image, fake_detector):
    fake_detector.detections = []
    res = analyzer(face_image)
    assert res.faces == [] and len(res) == 0 and res.to_dict()["faces"] == []


def test_options_max_faces_largest_only_min_face(tiny_model, face_image):
    dets = [Detection(Box(0, 0, 10, 10), 0.99), Detection(Box(0, 0, 60, 60), 0.5),
            Detection(Box(10, 10, 40, 40), 0.8)]

    def run(**opts):
        a = FaceAnalyzer(tiny_model, FakeDetector(dets), 64, options=AnalyzerOptions(**opts))
        return [f.box.width for f in a(face_image)]

    assert sorted(run()) == [10, 30, 60]
    assert run(max_faces=2) == [10, 30]  # highest scores
    assert run(largest_only=True) == [60]
    assert sorted(run(min_face=20)) == [30, 60]
    assert run(min_face=20, max_faces=1) == [30]
    assert run(min_face=100) == []
    for bad in ({"min_face": -1}, {"max_faces": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            AnalyzerOptions(**bad)


def test_list_input_returns_a_list_in_order(analyzer, face_image, tmp_path):
    p = tmp_path / "a face.png"
    Image.fromarray(face_image[:, ::-1]).save(p)
    out = analyzer([face_image, str(p), p.read_bytes()])
    assert isinstance(out, list) and len(out) == 3 and all(isinstance(r, ImageResult) for r in out)
    assert [r.source for r in out] == ["<array 64x64x3>", str(p), "<bytes>"]
    # the same image as array or bytes gives the same predictions
    assert out[1][0]["age"].value == pytest.approx(out[2][0]["age"].value, abs=1e-5)


def test_batching_does_not_change_predictions(tiny_model, fake_detector, face_image):
    imgs = [np.roll(face_image, k, axis=1) for k in range(5)]
    one = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(batch_size=1))
    many = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(batch_size=64))
    a, b = one(imgs), many(imgs)
    for ra, rb in zip(a, b):
        for fa, fb in zip(ra, rb):
            assert fa["age"].value == pytest.approx(fb["age"].value, abs=1e-4)
            assert fa["emotion"].probs == pytest.approx(fb["emotion"].probs, abs=1e-5)


def test_analyze_many_records_errors_and_goes_on(analyzer, face_image, tmp_path):
    missing = str(tmp_path / "missing.jpg")
    out = list(analyzer.analyze_many([face_image, missing, face_image], errors="record"))
    assert [type(r) for r in out] == [ImageResult, ItemError, ImageResult]
    assert out[1].source == missing and "missing.jpg" in out[1].error
    with pytest.raises(InvalidInputError, match="missing.jpg"):
        list(analyzer.analyze_many([face_image, missing], errors="raise"))
    with pytest.raises(InvalidInputError):
        analyzer(missing)
    with pytest.raises(ValueError, match="ignore"):
        list(analyzer.analyze_many([face_image], errors="ignore"))


def test_analyze_many_is_lazy_and_ordered(analyzer, face_image):
    n = 40  # more than one chunk
    gen = analyzer.analyze_many(np.roll(face_image, k, 0) for k in range(n))
    first = next(gen)
    assert isinstance(first, ImageResult)
    rest = list(gen)
    assert len(rest) == n - 1


def test_keep_image_and_plot(tiny_model, fake_detector, face_image, tmp_path):
    a = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(keep_image=True))
    res = a(face_image)
    assert np.array_equal(res.image, face_image)
    drawn = res.plot()
    assert drawn.shape == face_image.shape and drawn.dtype == np.uint8 and not np.array_equal(drawn, face_image)
    assert res.save(tmp_path / "out" / "x.png").is_file()


def test_channels_bgr_is_threaded_through_every_entry_point(tiny_model, fake_detector, face_image, tmp_path):
    """An OpenCV (BGR) frame with channels="bgr" is analysed exactly as the RGB array; a bad value is refused."""
    a = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(keep_image=True))
    bgr = np.ascontiguousarray(face_image[:, :, ::-1])
    ref = a(face_image)
    assert not np.array_equal(a(bgr).image, face_image)  # the default stays RGB
    for res in (a(bgr, channels="bgr"), a.analyze(bgr, channels="bgr"), a([bgr, bgr], channels="bgr")[1],
                next(a.analyze_many([bgr], channels="bgr"))):
        assert np.array_equal(res.image, face_image)
        assert [f.box for f in res.faces] == [f.box for f in ref.faces]
        for face, want in zip(res.faces, ref.faces):  # batch composition moves the last digits only
            assert face["emotion"].probs == pytest.approx(want["emotion"].probs, abs=1e-5)
            assert face["age"].value == pytest.approx(want["age"].value, abs=1e-3)
    crop_ref = a.predict_crops([face_image])[0]
    crop_bgr = a.predict_crops([bgr], channels="bgr")[0]
    assert crop_bgr["emotion"].probs == pytest.approx(crop_ref["emotion"].probs, abs=1e-6)
    with pytest.raises(UnknownNameError, match=r"unknown channel order 'brg'; valid: bgr, rgb"):
        a(bgr, channels="brg")
    with pytest.raises(UnknownNameError, match="'brg'"):  # refused at once, not recorded per item
        next(a.analyze_many([bgr], errors="record", channels="brg"))
    # a decoded source has its own colour mode: "bgr" with it is that item's error
    p = tmp_path / "face.png"
    Image.fromarray(face_image).save(p)
    err = next(a.analyze_many([p], errors="record", channels="bgr"))
    assert isinstance(err, ItemError) and "numpy arrays only" in err.error


def test_float_image_in_0_255_is_an_error_not_zero_faces(analyzer, face_image):
    with pytest.raises(InvalidInputError, match=r"float images must be in \[0, 1\].*divide by 255"):
        analyzer(face_image.astype(np.float64))


def test_decode_outputs_age_group_probabilities_sum_to_one():
    torch.manual_seed(0)
    specs = [get_task(t) for t in list_tasks()]
    raw = {s.name: torch.randn(3, s.head_width()) * 3 for s in specs}
    per_face = decode_outputs(specs, raw)
    assert len(per_face) == 3
    for face in per_face:
        age = face["age"]
        assert list(age.probs) == [g for g, _ in AGE_GROUPS]
        assert sum(age.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert age.label == max(age.probs, key=age.probs.get)  # the one rule: the most probable group
    # all the mass on 35 years: the 30-39 group gets it all
    raw["age"] = torch.full((1, 101), -1e4)
    raw["age"][0, 35] = 0
    one = decode_outputs(specs[:1], {"age": raw["age"]})[0]["age"]
    assert one.value == pytest.approx(35.0, abs=1e-3) and one.label == "30-39"
    assert one.probs["30-39"] == pytest.approx(1.0)
    # a skewed distribution: its expected age (about 68) is in 60-69, but 70+ holds the most probability -> "70+"
    raw["age"] = torch.full((1, 101), -1e4)
    for year, logit in ((55, 0.0), (66, 0.4), (75, 0.9)):
        raw["age"][0, year] = logit
    skew = decode_outputs(specs[:1], {"age": raw["age"]})[0]["age"]
    assert age_group(skew.value) == "60-69" and skew.label == "70+" and skew.probs["70+"] > skew.probs["60-69"]
    # a scalar head has no probabilities
    scalar = decode_outputs(specs[:1], {"age": torch.tensor([[0.25]])})[0]["age"]
    assert scalar.probs is None and scalar.value == pytest.approx(25.0) and scalar.label == "20-29"
    assert decode_outputs(specs, {}) == []


def test_predict_crops_accepts_every_image_form(analyzer, face_image):
    """A crop given as uint8, float [0, 1], RGBA, another size or a path gives the same answer as the uint8 crop."""
    rgba = np.dstack([face_image, np.full((64, 64, 1), 255, np.uint8)])
    forms = [face_image, face_image.astype(np.float32) / 255.0, rgba, face_image.astype(np.uint16) * 257]
    preds = analyzer.predict_crops(forms)
    ref = preds[0]["age"].value
    for p in preds[1:]:
        # each form converts to exactly the same uint8 pixels, so the answers are the same
        assert p["age"].value == pytest.approx(ref, abs=1e-4)
        assert p["emotion"].probs == pytest.approx(preds[0]["emotion"].probs, abs=1e-6)
    # a crop of another size is resized to the model's input
    assert len(analyzer.predict_crops([face_image[:48, :48]])) == 1


def test_task_subset(tiny_model, fake_detector, face_image):
    a = FaceAnalyzer(tiny_model, fake_detector, 64, tasks=["gender"])
    face = a(face_image)[0]
    assert list(face.attributes) == ["gender"]


# -- the bundled default model on real data -------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_analyzer():
    pytest.importorskip("onnxruntime")
    a = FaceAnalyzer.from_checkpoint(detector_options={"num_threads": 2})
    a.predict_crops([np.zeros((112, 112, 3), np.uint8)])  # warm up
    return a


def test_default_analyzer_is_wired_from_the_checkpoint(default_analyzer):
    from facemtl.weights import DEFAULT_INFO

    a = default_analyzer
    assert a.input_size == DEFAULT_INFO["input_size"]
    assert [t.name for t in a.tasks] == list_tasks()
    assert a.detector.name == "retinaface"
    assert a.model.backend == "onnxruntime" and a.info["backend"] == "onnxruntime"  # the default needs no torch
    assert a.info["checkpoint"].endswith(".int8.onnx")


@needs_data
def test_default_model_on_obama_and_biden(default_analyzer):
    res = default_analyzer(WILD / "facerec_obama_and_biden.jpg")
    assert len(res) >= 2
    two = sorted(res.faces, key=lambda f: -f.box.area)[:2]  # the two men; a girl's face is also in the frame
    for face in two:
        assert 15 <= face["age"].value <= 90
        assert face["gender"].label == "male"
        assert face.landmarks is not None and len(face.landmarks) == 5
    assert json.loads(res.to_json())["faces"][0]["box"] == [round(v, 2) for v in res[0].box.xyxy]


@needs_data
def test_default_model_finds_no_face_on_dogs(default_analyzer):
    assert default_analyzer(WILD / "dlib_dogs.jpg").faces == []


@needs_data
def test_predict_crops_on_real_utkface(default_analyzer):
    names = sorted(os.listdir(UTKFACE))[::1000][:20]
    assert len(names) == 20
    preds = default_analyzer.predict_crops([UTKFACE / n for n in names])
    truth = ["male" if n.split("_")[1] == "0" else "female" for n in names]
    acc = np.mean([p["gender"].label == t for p, t in zip(preds, truth)])
    assert acc >= 0.7
    ages = np.array([float(n.split("_")[0]) for n in names])
    mae = np.mean(np.abs(np.array([p["age"].value for p in preds]) - ages))
    assert mae < 15


@needs_data
@pytest.mark.parametrize("detector", ["haar", "retinaface"])
def test_analyze_many_with_threads_is_safe_for_every_detector(detector):
    """Decoding runs in worker threads; detectors that are not thread-safe (OpenCV's cascade) must not crash."""
    from facemtl.analyzer import FaceAnalyzer

    analyzer = FaceAnalyzer.from_checkpoint(detector=detector, flip_tta=False)
    files = sorted(str(p) for p in WILD.glob("*.jpg"))[:8] * 2
    results = list(analyzer.analyze_many(files, errors="raise", workers=4))
    assert [r.source for r in results] == files
    assert sum(len(r) for r in results) > 0

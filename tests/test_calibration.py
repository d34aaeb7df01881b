"""Knowing its limits: conformal age intervals, temperature scaling, the stored calibration, the quality flag."""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from conftest import draw_face

from facemtl.analyzer import AnalyzerOptions, FaceAnalyzer, decode_outputs
from facemtl.calibration import (
    AgeIntervals,
    Calibration,
    calibration_half,
    check_level,
    coverage,
    fit_age_intervals,
    fit_temperature,
)
from facemtl.cli.__main__ import main
from facemtl.errors import InvalidInputError
from facemtl.quality import QualityRules, assess, sharpness, yaw_ratio
from facemtl.tasks import get_task, list_tasks, softmax

# -- conformal intervals ---------------------------------------------------------------------------------------

def _binomial_tolerance(p: float, n: int, z: float = 3.5) -> float:
    return z * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_conformal_coverage_on_a_known_distribution(level):
    """Ages with noise that grows with age (as real errors do): the fitted intervals cover fresh data at the
    level asked, within the binomial tolerance, overall and within age groups."""
    rng = np.random.default_rng(0)

    def draw(n):
        true = rng.uniform(1, 90, n)
        pred = np.clip(true + rng.normal(0, 1 + 0.12 * true), 0, 100)
        return true, pred

    t_cal, p_cal = draw(4000)
    t_new, p_new = draw(20000)
    iv = fit_age_intervals(t_cal, p_cal, min_group=100)
    lo, hi = iv.intervals(p_new, level)
    cov = coverage(t_new, lo, hi)
    # conformal guarantee: >= level; above it by at most 1/(n+1) per group plus sampling noise
    assert level - _binomial_tolerance(level, len(t_new)) <= cov <= level + 0.02, cov
    young, old = p_new < 20, p_new >= 60
    assert np.mean(hi[young] - lo[young]) < 0.5 * np.mean(hi[old] - lo[old])  # Mondrian: width follows the error
    for mask in (young, old):
        c = coverage(t_new[mask], lo[mask], hi[mask])
        assert abs(c - level) <= _binomial_tolerance(level, int(mask.sum())) + 0.03, c


def test_interval_quantile_is_the_conformal_rank():
    iv = AgeIntervals({g: tuple(float(i) for i in range(1, 101)) for g in ("0-2", "3-9", "10-19", "20-29", "30-39",
                                                                            "40-49", "50-59", "60-69", "70+")},
                      {}, (0.0, 100.0))
    assert iv.half_width("20-29", 0.9) == 91.0  # ceil(101 * 0.9) = 91st smallest of 1..100
    assert iv.half_width("20-29", 0.999) == math.inf  # too few scores for that level: an honest infinite width
    assert iv.interval(25.0, 0.5) == (0.0, 76.0)  # clipped to the value range
    assert AgeIntervals.from_dict(json.loads(json.dumps(iv.to_dict()))) == iv


def test_small_groups_borrow_from_their_neighbours():
    true = np.r_[np.full(150, 30.0), np.full(5, 1.0)]
    pred = np.r_[np.full(150, 32.0), np.full(5, 1.5)]
    iv = fit_age_intervals(true, pred, min_group=100)
    assert iv.n_own["0-2"] == 5 and len(iv.scores["0-2"]) >= 100
    with pytest.raises(InvalidInputError, match="at least 100 are needed"):
        fit_age_intervals(true[:50], pred[:50], min_group=100)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "ninety", float("nan"), None])
def test_bad_levels_are_one_clear_error(bad):
    with pytest.raises(InvalidInputError, match=r"in \(0, 1\)"):
        check_level(bad)
    with pytest.raises(InvalidInputError, match=r"in \(0, 1\)"):
        AnalyzerOptions(age_interval=bad)


def test_cli_refuses_a_bad_level(capsys, tmp_path):
    img = tmp_path / "f.png"
    from PIL import Image

    Image.fromarray(draw_face(64)).save(img)
    assert main(["predict", str(img), "--detector", "none", "--age-interval", "1.5"]) == 1
    err = capsys.readouterr().err
    assert "age interval level must be in (0, 1)" in err and "1.5" in err and "Traceback" not in err


# -- temperature scaling ---------------------------------------------------------------------------------------

def test_temperature_scaling_lowers_nll_on_a_held_out_split():
    rng = np.random.default_rng(1)
    n, k = 6000, 5
    labels = rng.integers(0, k, n)
    clean = rng.normal(0, 1, (n, k))
    clean[np.arange(n), labels] += 1.5
    logits = 3.0 * clean  # an overconfident model: logits three times too large

    def nll(lg, y, t):
        p = softmax(lg / t)
        return -np.mean(np.log(p[np.arange(len(y)), y]))

    t0, t = fit_temperature(clean[:3000], labels[:3000]), fit_temperature(logits[:3000], labels[:3000])
    assert t / t0 == pytest.approx(3.0, rel=0.05)  # recovers the inflation
    assert nll(logits[3000:], labels[3000:], t) < nll(logits[3000:], labels[3000:], 1.0) - 0.05
    assert np.array_equal(softmax(logits / t).argmax(1), logits.argmax(1))  # no label changes
    with pytest.raises(InvalidInputError, match="no labelled face"):
        fit_temperature(logits[:10], np.full(10, -1))


def test_sources_weigh_the_same_in_the_temperature_fit():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 4000)
    good = rng.normal(0, 1, (4000, 2))
    good[np.arange(4000), y] += 2.0
    sharp, soft = good[:3600] * 3.0, good[3600:] * 0.5  # a big overconfident source, a small underconfident one
    logits, groups = np.r_[sharp, soft], ["big"] * 3600 + ["small"] * 400
    pooled, equal = fit_temperature(logits, y), fit_temperature(logits, y, groups=groups)
    assert equal < pooled  # the small source pulls the temperature towards itself once it weighs the same


# -- stored with the model, applied by both backends -----------------------------------------------------------

def _toy_calibration() -> Calibration:
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 90, 900)
    iv = fit_age_intervals(true, true + rng.normal(0, 4, 900), min_group=100)
    return Calibration({"gender": 0.5, "emotion": 2.0}, iv, {"images": 900})


def test_decode_applies_temperatures_and_intervals():
    specs = [get_task(t) for t in list_tasks()]
    rng = np.random.default_rng(0)
    raw = {s.name: rng.normal(0, 2, (3, s.num_bins if s.kind == "regression" else len(s.labels))) for s in specs}
    cal = _toy_calibration()
    plain, calibrated = decode_outputs(specs, raw), decode_outputs(specs, raw, cal, 0.8)
    for a, b in zip(plain, calibrated):
        assert a["gender"].label == b["gender"].label and a["emotion"].label == b["emotion"].label
        assert b["gender"].value >= a["gender"].value  # T = 0.5 sharpens
        assert b["emotion"].value <= a["emotion"].value  # T = 2 softens
        assert a["ethnicity"] == b["ethnicity"]  # no temperature: unchanged
        assert a["age"].low is None and b["age"].low < b["age"].value < b["age"].high and b["age"].level == 0.8
        assert b["age"].to_dict()["level"] == 0.8 and "low" not in a["age"].to_dict()


def test_calibration_survives_the_checkpoint_and_onnx_round_trip(tmp_path, fake_detector, face_image):
    pytest.importorskip("onnx")
    from facemtl.evaluate.calibrate import write_calibrated
    from facemtl.export import export_onnx
    from facemtl.models import create_model, save_checkpoint
    from facemtl.models.load import load_model

    ckpt = save_checkpoint(tmp_path / "m.pt", create_model("tiny", tasks=list_tasks()).eval())
    onnx_file = export_onnx(ckpt, tmp_path / "m.onnx")
    cal = _toy_calibration()
    out_pt = write_calibrated(ckpt, tmp_path / "cal.pt", cal)
    out_onnx = write_calibrated(onnx_file, tmp_path / "cal.onnx", cal)
    results = []
    for path in (out_pt, out_onnx):
        model, _ = load_model(path)
        assert Calibration.from_dict(model.metadata["calibration"]) == cal
        a = FaceAnalyzer.from_checkpoint(path, detector=fake_detector, age_interval=0.8)
        res = a(face_image)
        age = res.faces[0]["age"]
        assert age.low is not None and age.low <= age.value <= age.high and age.level == 0.8
        results.append(res.faces[0])
    assert results[0]["age"].low == pytest.approx(results[1]["age"].low, abs=1e-2)  # both backends agree
    exported = export_onnx(out_pt, tmp_path / "exported.onnx")  # exporting a calibrated checkpoint keeps it
    assert Calibration.from_dict(load_model(exported)[0].metadata["calibration"]) == cal
    with pytest.raises(Exception, match="format"):
        write_calibrated(ckpt, tmp_path / "x.onnx", cal)


def test_a_model_without_calibration_gives_no_interval_and_warns_once(tiny_model, fake_detector, face_image, caplog):
    import facemtl.analyzer as A

    A._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="facemtl.analyzer"):
        a = FaceAnalyzer(tiny_model, fake_detector, 64, info={"checkpoint": "old.pt"})
        FaceAnalyzer(tiny_model, fake_detector, 64, info={"checkpoint": "old.pt"})
    assert sum("has no calibration" in r.message for r in caplog.records) == 1
    age = a(face_image).faces[0]["age"]
    assert age.low is None and age.high is None


def test_the_bundled_models_carry_their_calibration():
    from facemtl.models.load import load_model

    for name in ("default", "default-pytorch"):
        model, _ = load_model(name)
        cal = Calibration.from_dict(model.metadata.get("calibration"))
        assert cal is not None and cal.age is not None and set(cal.temperatures) == {"gender", "emotion", "ethnicity"}
        assert cal.fitted_on["part"].startswith("calibration half")


def test_calibration_half_is_a_fixed_split():
    names = [f"{i}_0_0_2017.jpg" for i in range(2000)]
    half = [calibration_half(n) for n in names]
    assert 0.45 < np.mean(half) < 0.55 and half == [calibration_half(n) for n in names]


# -- the quality flag ------------------------------------------------------------------------------------------

def test_quality_rules_name_their_reasons():
    crop = draw_face(112, seed=0)
    ok = assess(80, 0.99, ((40, 50), (72, 50), (56, 66), (44, 80), (68, 80)), crop, {})
    assert ok == ("ok", ())
    import cv2

    blurred = cv2.GaussianBlur(crop, (0, 0), 4)
    assert sharpness(blurred) < sharpness(crop)
    q, why = assess(20, 0.5, ((40, 50), (72, 50), (80, 66), (44, 80), (68, 80)), blurred, {},
                    QualityRules(min_sharpness=sharpness(blurred) + 1))
    assert q == "low" and why == ("small face (20 px)", "low detection score (0.50)", "turned away", "blurred")
    assert yaw_ratio(None) is None and yaw_ratio(((0, 0), (10, 0), (5, 3))) == 0.0


def test_a_young_childs_gender_is_flagged_as_a_guess():
    from facemtl.results import Prediction

    crop = draw_face(112, seed=0)
    marks = ((40, 50), (72, 50), (56, 66), (44, 80), (68, 80))
    gender = Prediction("gender", "female", 0.9, {"male": 0.1, "female": 0.9})

    def faces(age: float) -> dict:
        return {"age": Prediction("age", "0-2" if age < 3 else "30-39", age), "gender": gender}

    assert assess(80, 0.99, marks, crop, faces(1.5)) == ("low", ("gender is a guess at this age",))
    assert assess(80, 0.99, marks, crop, faces(34.0)) == ("ok", ())
    assert assess(80, 0.99, marks, crop, {"age": faces(1.5)["age"]}) == ("ok", ())  # no gender asked for
    assert assess(80, 0.99, marks, crop, faces(1.5), QualityRules(guess_below={})) == ("ok", ())
    assert QualityRules().guess_below == {"gender": ("age", 3.0)}  # from the task registry


def test_min_quality_ok_drops_the_doubtful_faces(tiny_model, fake_detector, face_image):
    keep = FaceAnalyzer(tiny_model, fake_detector, 64)(face_image)
    drop = FaceAnalyzer(tiny_model, fake_detector, 64, options=AnalyzerOptions(min_quality="ok"))(face_image)
    low = [f for f in keep.faces if f.quality == "low"]
    assert low and "small face (16 px)" in low[-1].quality_reasons  # the fake detector's 16-px face
    assert len(drop.faces) == len(keep.faces) - len(low) and all(f.quality == "ok" for f in drop.faces)
    from facemtl._rows import csv_rows

    rows = csv_rows(keep)
    assert rows[-1]["quality"] == "low" and "small face" in rows[-1]["quality_reasons"]


def test_a_nan_prediction_has_no_age_group_and_is_an_error():
    from facemtl.calibration import GROUP_NAMES, AgeIntervals

    iv = AgeIntervals({g: tuple(float(i) for i in range(200)) for g in GROUP_NAMES}, {g: 200 for g in GROUP_NAMES})
    assert iv.interval(30.0)[0] < 30.0 < iv.interval(30.0)[1]
    with pytest.raises(ValueError, match="NaN"):
        iv.interval(float("nan"))  # not silently the 70+ group's interval
    with pytest.raises(ValueError, match="NaN"):
        iv.intervals(np.array([30.0, float("nan")]))

"""Metrics against hand-computed values on tiny arrays, plus the per-task reports."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facemtl.errors import InvalidInputError, UnknownNameError
from facemtl.evaluate import metrics as M
from facemtl.report.text import format_metrics
from facemtl.tasks import AGE_BANDS, AGE_GROUPS, TaskSpec, age_band, age_group, get_task, list_tasks

# ---------------------------------------------------------------- registry


def test_registry_covers_every_task_metric() -> None:
    for name in list_tasks():
        for metric in get_task(name).metrics:
            assert metric in M.METRICS, (name, metric)


def test_get_metric_unknown_names_the_value() -> None:
    with pytest.raises(UnknownNameError, match="maee"):
        M.get_metric("maee")
    assert M.get_metric("mae") is M.mae


def test_register_duplicate_is_an_error() -> None:
    with pytest.raises(ValueError, match="mae"):
        M.register_metric("mae")(lambda t, p: 0.0)


def test_register_and_use_new_metric() -> None:
    name = "_test_max_error"
    if name not in M.METRICS:
        M.register_metric(name)(lambda t, p: float(np.max(np.abs(np.subtract(p, t)))))
    assert M.get_metric(name)([1.0, 2.0], [1.5, 5.0]) == 3.0


# ---------------------------------------------------------------- regression

T = [10.0, 20.0, 30.0, 40.0]
P = [12.0, 18.0, 33.0, 40.0]  # errors 2, -2, 3, 0


def test_regression_hand_computed() -> None:
    assert M.mae(T, P) == pytest.approx(1.75)
    assert M.rmse(T, P) == pytest.approx(math.sqrt(17 / 4))
    assert M.r2(T, P) == pytest.approx(1 - 17 / 500)  # SS_tot = 225 + 25 + 25 + 225
    assert M.cs5(T, P) == 1.0
    assert M.cumulative_score(T, P, threshold=2.0) == 0.75


def test_regression_nan_truth_is_missing() -> None:
    assert M.mae([10.0, float("nan")], [12.0, 99.0]) == 2.0
    assert math.isnan(M.mae([float("nan")], [1.0]))


def test_r2_undefined_is_nan_not_crash() -> None:
    assert math.isnan(M.r2([30.0], [31.0]))  # single sample
    assert math.isnan(M.r2([30.0, 30.0, 30.0], [30.0, 30.0, 30.0]))  # constant truth
    assert math.isnan(M.r2([], []))


def test_regression_length_mismatch() -> None:
    with pytest.raises(InvalidInputError, match="length"):
        M.mae([1.0, 2.0], [1.0])


def test_mae_by_band_with_empty_band() -> None:
    out = M.mae_by_band([5.0, 19.9, 25.0, 65.0], [7.0, 19.9, 20.0, 60.0])
    assert list(out) == [b for b, _ in AGE_BANDS]
    assert out["0-19"] == {"mae": pytest.approx(1.0), "n": 2}  # 19.9 years is still 0-19
    assert out["20-39"] == {"mae": pytest.approx(5.0), "n": 1}
    assert out["40-59"] == {"mae": None, "n": 0}
    assert out["60+"] == {"mae": pytest.approx(5.0), "n": 1}


def test_bucketing_matches_tasks_module() -> None:
    years = np.array([-3.0, 0.0, 2.6, 2.99, 3.0, 9.5, 19.99, 20.0, 59.9, 60.0, 69.9, 70.0, 120.0])
    bands = M._bucket_indices(years, AGE_BANDS)
    groups = M._bucket_indices(years, AGE_GROUPS)
    assert [AGE_BANDS[i][0] for i in bands] == [age_band(y) for y in years]
    assert [AGE_GROUPS[i][0] for i in groups] == [age_group(y) for y in years]


def test_age_group_accuracy() -> None:
    # groups true: 0-2, 0-2, 3-9, 70+ ; predicted: 0-2, 3-9, 10-19, 70+
    assert M.age_group_accuracy([1.0, 2.6, 9.0, 70.0], [2.9, 3.1, 10.0, 95.0]) == 0.5


# ---------------------------------------------------------------- classification

CT = [0, 0, 1, 1, 2, 2]
CP = [0, 1, 1, 1, 0, 2]
# cm rows true: [1,1,0], [0,2,0], [1,0,1]


def test_confusion_matrix_rows_true_cols_pred() -> None:
    cm = M.confusion_matrix(CT, CP, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm.dtype == np.int64


def test_per_class_and_averages() -> None:
    s = M.per_class_scores(CT, CP, 3)
    np.testing.assert_allclose(s["precision"], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(s["recall"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(s["f1"], [0.5, 0.8, 2 / 3])
    assert s["support"].tolist() == [2, 2, 2]
    assert M.accuracy(CT, CP) == pytest.approx(4 / 6)
    assert M.macro_f1(CT, CP, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert M.balanced_accuracy(CT, CP, 3) == pytest.approx(2 / 3)


def test_class_absent_everywhere_is_excluded() -> None:
    # A 4th class that nobody has nor predicts does not drag macro-F1 or balanced accuracy down.
    assert M.macro_f1(CT, CP, 4) == pytest.approx(M.macro_f1(CT, CP, 3))
    assert M.balanced_accuracy(CT, CP, 4) == pytest.approx(2 / 3)
    s = M.per_class_scores(CT, CP, 4)
    assert s["precision"][3] == s["recall"][3] == s["f1"][3] == 0.0


def test_class_only_predicted_counts_in_macro_f1_not_balanced() -> None:
    t, p = [0, 0, 1], [0, 2, 1]
    # f1: class0 P=1 R=.5 -> 2/3; class1 1.0; class2 (predicted, never true) 0.0
    assert M.macro_f1(t, p, 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert M.balanced_accuracy(t, p, 3) == pytest.approx((0.5 + 1.0) / 2)


def test_all_predictions_equal_zero_division() -> None:
    t, p = [0, 1, 1, 0], [1, 1, 1, 1]
    assert M.binary_scores(t, p, pos_label=1) == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3})
    # class 0 is never predicted: precision 0 (zero_division=0), recall 0, f1 0
    assert M.binary_scores(t, p, pos_label=0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert M.precision(t, p) == 0.5 and M.recall(t, p) == 1.0 and M.f1(t, p) == pytest.approx(2 / 3)
    assert M.accuracy(t, p) == 0.5


def test_single_sample() -> None:
    assert M.accuracy([2], [2], 3) == 1.0
    assert M.macro_f1([2], [2], 3) == 1.0
    assert M.balanced_accuracy([2], [2], 3) == 1.0
    assert M.macro_f1([2], [0], 3) == 0.0


def test_missing_labels_are_dropped() -> None:
    assert M.accuracy([-1, 0, 1], [1, 0, 0]) == 0.5
    assert M.confusion_matrix([-1, 0, 1], [1, 0, 0], 2).tolist() == [[1, 0], [1, 0]]
    assert M.accuracy(np.array([np.nan, 1.0]), [0, 1]) == 1.0  # NaN also means missing
    assert math.isnan(M.accuracy([-1, -1], [0, 1]))
    assert math.isnan(M.macro_f1([-1], [0], 2))


def test_invalid_classification_inputs() -> None:
    with pytest.raises(InvalidInputError, match=r"\[0, 2\)"):
        M.accuracy([0, 1], [0, 2], num_classes=2)
    with pytest.raises(InvalidInputError, match="length"):
        M.accuracy([0, 1], [0])
    with pytest.raises(InvalidInputError, match="integer"):
        M.accuracy([0.5], [0])


PROBS = np.array([[0.9, 0.1], [0.62, 0.38], [0.3, 0.7], [0.19, 0.81]])
PT = [0, 1, 1, 1]  # predictions 0, 0, 1, 1 -> correct 1, 0, 1, 1


def test_ece_and_reliability_bins() -> None:
    # Each confidence lands in its own 1/15-wide bin: ECE = mean |correct - confidence|.
    expected = (0.1 + 0.62 + 0.3 + 0.19) / 4
    assert M.expected_calibration_error(PT, PROBS) == pytest.approx(expected)
    bins = M.reliability_bins(PT, PROBS)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    assert bins[0]["lo"] == 0.0 and bins[-1]["hi"] == 1.0
    b13 = bins[13]  # (13/15, 14/15] holds 0.9
    assert b13["count"] == 1 and b13["confidence"] == pytest.approx(0.9) and b13["accuracy"] == 1.0
    assert bins[0] == {"lo": 0.0, "hi": pytest.approx(1 / 15), "count": 0,
                       "confidence": None, "accuracy": None}
    # Two samples sharing a bin: |0.5 - 0.905| weighted by 2/2.
    shared = np.array([[0.9, 0.1], [0.91, 0.09]])
    assert M.expected_calibration_error([0, 1], shared) == pytest.approx(0.405)
    # Registry adapter ignores y_pred and reads probs.
    assert M.get_metric("ece")(PT, None, probs=PROBS) == pytest.approx(expected)
    # Confidence 1.0 goes to the last bin.
    assert M.reliability_bins([0], [[1.0, 0.0]])[-1]["count"] == 1


def test_nll() -> None:
    probs = [[0.5, 0.5], [0.2, 0.8]]
    assert M.negative_log_likelihood([0, 1], probs) == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)
    expected = M.negative_log_likelihood([0, 1], probs)
    assert M.get_metric("nll")([0, 1], None, probs=probs) == pytest.approx(expected)
    assert math.isfinite(M.negative_log_likelihood([0], [[0.0, 1.0]]))  # clipped, not inf


# ---------------------------------------------------------------- reports


def _strict_json(obj: object) -> object:
    return json.loads(json.dumps(obj, allow_nan=False))


def test_report_age() -> None:
    r = M.compute_task_metrics(get_task("age"), [10.0, 20.0, 30.0, 40.0, float("nan")], P + [50.0])
    assert _strict_json(r) == r
    assert r["n"] == 4 and r["kind"] == "regression"
    assert r["mae"] == pytest.approx(1.75) and r["cs5"] == 1.0
    assert set(r) >= {"mae", "rmse", "r2", "cs5", "mae_by_band", "mae_by_group", "age_group_accuracy", "n"}
    assert list(r["mae_by_group"]) == [g for g, _ in AGE_GROUPS]
    assert sum(v["n"] for v in r["mae_by_group"].values()) == r["n"]
    assert r["mae_by_band"]["60+"] == {"mae": None, "n": 0}


def test_report_age_constant_truth_r2_is_none() -> None:
    r = M.compute_task_metrics(get_task("age"), [30.0, 30.0], [29.0, 31.0])
    assert r["r2"] is None and r["mae"] == 1.0
    _strict_json(r)


def test_report_gender_binary() -> None:
    spec = get_task("gender")  # labels ("male", "female"): female is the positive class
    t = [spec.label_index(x) for x in ("male", "female", "female", "female")] + [-1]
    p = [spec.label_index(x) for x in ("male", "female", "male", "female")] + [0]
    r = M.compute_task_metrics(spec, t, p)
    assert _strict_json(r) == r
    assert r["n"] == 4 and r["positive_label"] == "female"
    assert r["accuracy"] == 0.75
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(2 / 3) and r["f1"] == pytest.approx(0.8)
    assert r["per_class"]["male"] == {"precision": 0.5, "recall": 1.0,
                                      "f1": pytest.approx(2 / 3), "support": 1}
    assert r["confusion_matrix"] == {"labels": ["male", "female"], "matrix": [[1, 0], [1, 2]]}


def test_report_emotion_with_absent_class_and_probs() -> None:
    spec = get_task("emotion")
    k = len(spec.labels)
    t = np.array([0, 3, 3, 6])
    probs = np.full((4, k), 0.05)
    probs[np.arange(4), [0, 3, 6, 6]] = 0.7
    r = M.compute_task_metrics(spec, t, None, probs)
    assert _strict_json(r) == r
    assert r["accuracy"] == 0.75
    # present classes: angry f1 1, happy P=1 R=.5 -> 2/3, neutral P=.5 R=1 -> 2/3; others excluded
    assert r["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert r["per_class"]["disgust"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert list(r["per_class"]) == list(spec.labels)
    assert len(r["confusion_matrix"]["matrix"]) == k
    assert "precision" not in r  # not binary
    assert {"ece", "nll", "reliability"} <= set(r)


def test_report_ethnicity_balanced_accuracy() -> None:
    r = M.compute_task_metrics(get_task("ethnicity"), [0, 0, 0, 1], [0, 0, 0, 0])
    assert r["accuracy"] == 0.75 and r["balanced_accuracy"] == 0.5


def test_report_all_missing() -> None:
    assert M.compute_task_metrics(get_task("emotion"), [-1, -1], [0, 1]) == {
        "n": 0, "note": "no labelled samples for task 'emotion'"}
    r = M.compute_task_metrics(get_task("age"), [float("nan")], [3.0])
    assert r["n"] == 0 and "note" in r


def test_report_new_task_from_kind_only() -> None:
    glasses = TaskSpec("glasses", "classification", labels=("no", "yes"))
    r = M.compute_task_metrics(glasses, [0, 1, 1], [0, 1, 0])
    assert r["positive_label"] == "yes" and r["recall"] == 0.5
    three = TaskSpec("hair", "classification", labels=("dark", "fair", "none"))
    r3 = M.compute_task_metrics(three, [0, 1, 2], [0, 1, 1])
    assert "positive_label" not in r3 and r3["confusion_matrix"]["labels"] == ["dark", "fair", "none"]


def test_flatten_and_format() -> None:
    report = {
        "age": M.compute_task_metrics(get_task("age"), [5.0, 30.0, 30.0], [7.0, 28.0, 33.0]),
        "gender": M.compute_task_metrics(get_task("gender"), [0, 1], [0, 0]),
        "emotion": M.compute_task_metrics(get_task("emotion"), [-1], [0]),
    }
    flat = M.flatten_metrics(report)
    assert flat["age/mae"] == pytest.approx(7 / 3)
    assert flat["age/mae_by_band/60+/mae"] is None
    assert flat["gender/per_class/female/support"] == 1
    assert flat["emotion/n"] == 0
    assert not any(k.startswith("gender/confusion_matrix") for k in flat)

    text = format_metrics(report)
    assert "age (n=3)" in text and "MAE by band" in text and "60+ n/a (n=0)" in text
    assert "accuracy 50.0%" in text and "positive: female" in text
    assert "rows true, columns predicted" in text and "female" in text
    assert "no labelled samples for task 'emotion'" in text


def test_age_group_accuracy_counts_the_reported_group_when_given():
    from facemtl.evaluate.metrics import age_group_accuracy

    true = np.array([68.0, 75.0, np.nan, 30.0])
    pred = np.array([68.0, 68.0, 10.0, 31.0])  # the estimates' groups: 60-69, 60-69, -, 30-39
    assert age_group_accuracy(true, pred) == pytest.approx(2 / 3)
    # the model's own (most probable) groups: 70+, 70+, -, 30-39 -> the 75-year-old right, the 68-year-old wrong
    assert age_group_accuracy(true, pred, pred_groups=["70+", "70+", "0-2", "30-39"]) == pytest.approx(2 / 3)
    assert age_group_accuracy(true, pred, pred_groups=["60-69", "70+", "0-2", "30-39"]) == pytest.approx(1.0)

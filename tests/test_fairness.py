"""Group tables, gaps, empty groups and the seeded bootstrap."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from facemtl.errors import InvalidInputError, UnknownNameError
from facemtl.evaluate import bootstrap as B
from facemtl.evaluate import fairness as F
from facemtl.tasks import get_task


def _rec(eth: str | None, gender: str | None, age: float | None, correct: bool) -> dict:
    # Audited task: emotion (single-task form); truth "happy", prediction right or wrong.
    return {"ethnicity": eth, "gender": gender, "age": age,
            "y_true": "happy", "y_pred": "happy" if correct else "sad"}


# 12 records, 3 per ethnicity x gender cell:
#   white female 25y: 3/3   white male 45y: 2/3   black female 25y: 1/3   black male 65y: 2/3
RECORDS = (
    [_rec("white", "female", 25, c) for c in (True, True, True)]
    + [_rec("white", "male", 45, c) for c in (True, True, False)]
    + [_rec("black", "female", 25, c) for c in (True, False, False)]
    + [_rec("black", "male", 65, c) for c in (True, False, True)]
)


def _rows(table: dict, grouping: str) -> dict[tuple[str, ...], dict]:
    return {tuple(r["group"].values()): r for r in table["rows"] if r["grouping"] == grouping}


def test_group_table_hand_computed() -> None:
    t = F.group_table(RECORDS, get_task("emotion"))
    assert t["metric"] == "accuracy" and t["higher_is_better"] is True
    assert t["n"] == 12 and t["value"] == pytest.approx(8 / 12)

    eth = _rows(t, "ethnicity")
    assert list(eth) == [("white",), ("black",)]  # spec label order
    assert eth[("white",)]["value"] == pytest.approx(5 / 6) and eth[("white",)]["n"] == 6
    assert eth[("black",)]["value"] == pytest.approx(0.5)
    assert t["by_grouping"]["ethnicity"]["gap"] == pytest.approx(1 / 3)
    assert t["by_grouping"]["gender"]["gap"] == pytest.approx(0.0)

    cross = _rows(t, "ethnicity x gender")
    assert {k: r["value"] for k, r in cross.items()} == pytest.approx({
        ("white", "male"): 2 / 3, ("white", "female"): 1.0,
        ("black", "male"): 2 / 3, ("black", "female"): 1 / 3,
    })
    summary = t["by_grouping"]["ethnicity x gender"]
    assert summary["worst_group"]["group"] == {"ethnicity": "black", "gender": "female"}
    assert summary["best_group"]["group"] == {"ethnicity": "white", "gender": "female"}
    assert summary["gap"] == pytest.approx(2 / 3) and summary["n_groups"] == 4

    triple = _rows(t, "ethnicity x gender x age_band")
    assert triple[("black", "male", "60+")]["n"] == 3
    assert set(t["by_grouping"]) == {
        "ethnicity", "gender", "age_band", "ethnicity x gender", "ethnicity x age_band",
        "gender x age_band", "ethnicity x gender x age_band",
    }
    bands = _rows(t, "age_band")
    assert list(bands) == [("20-39",), ("40-59",), ("60+",)]  # 0-19 empty: omitted
    assert bands[("20-39",)]["value"] == pytest.approx(4 / 6)

    # Top level ranges over every row; ties keep the coarsest grouping.
    assert t["gap"] == pytest.approx(2 / 3)
    assert t["worst_group"]["grouping"] == "ethnicity x gender"
    assert t["best_group"]["group"] == {"ethnicity": "white", "gender": "female"}
    json.dumps(t, allow_nan=False)


def test_min_count_excludes_small_groups_from_gap() -> None:
    t = F.group_table(RECORDS, "emotion", min_count=4)
    assert t["by_grouping"]["ethnicity x gender x age_band"] == {
        "worst_group": None, "best_group": None, "gap": None, "n_groups": 0}
    # Eligible groups (n >= 4): white 5/6, black 1/2, female 2/3, male 2/3, 20-39 2/3, female x 20-39 2/3
    assert t["worst_group"]["group"] == {"ethnicity": "black"}
    assert t["best_group"]["group"] == {"ethnicity": "white"}
    assert t["gap"] == pytest.approx(1 / 3)
    assert len(t["rows"]) == len(F.group_table(RECORDS, "emotion")["rows"])  # small rows still listed


def test_empty_and_missing_groups_are_never_zero() -> None:
    extra = [
        {"ethnicity": "asian", "gender": "female", "age": 30, "y_true": None, "y_pred": "sad"},  # unlabelled
        {"ethnicity": None, "gender": "male", "age": float("nan"), "y_true": "happy", "y_pred": "happy"},
    ]
    t = F.group_table(RECORDS + extra, "emotion")
    assert t["n"] == 13
    assert all(r["n"] > 0 and r["value"] is not None for r in t["rows"])
    assert ("asian",) not in _rows(t, "ethnicity")  # no labelled sample: omitted
    assert _rows(t, "gender")[("male",)]["n"] == 7  # missing ethnicity/age: still counts by gender
    assert sum(r["n"] for r in _rows(t, "ethnicity").values()) == 12
    assert sum(r["n"] for r in _rows(t, "age_band").values()) == 12


def test_no_labelled_records() -> None:
    recs = [{"ethnicity": "white", "gender": "male", "age": 30, "y_true": None, "y_pred": "sad"}]
    t = F.group_table(recs, "emotion")
    assert t["n"] == 0 and t["rows"] == [] and t["value"] is None
    assert t["gap"] is None and t["worst_group"] is None and "note" in t
    assert F.group_table([], "emotion")["rows"] == []


def test_single_group_has_no_gap() -> None:
    t = F.group_table(RECORDS[:3], "emotion", group_keys=("ethnicity",))
    assert t["gap"] is None and t["worst_group"]["value"] == 1.0 and t["n_groups"] == 1


def test_regression_lower_is_better() -> None:
    recs = [
        {"gender": "female", "age": 20.0, "y_true": 20.0, "y_pred": 22.0},
        {"gender": "female", "age": 30.0, "y_true": 30.0, "y_pred": 30.0},
        {"gender": "male", "age": 40.0, "y_true": 40.0, "y_pred": 46.0},
        {"gender": "male", "age": 50.0, "y_true": 50.0, "y_pred": None},
    ]
    t = F.group_table(recs, "age", group_keys=("gender",))
    assert t["metric"] == "mae" and t["higher_is_better"] is False
    assert t["worst_group"]["group"] == {"gender": "male"} and t["worst_group"]["value"] == 6.0
    assert t["best_group"]["value"] == 1.0 and t["gap"] == 5.0


def test_class_indices_and_bad_labels() -> None:
    recs = [{"gender": "male", "y_true": 3, "y_pred": 3}, {"gender": "male", "y_true": -1, "y_pred": 0}]
    assert F.group_table(recs, "emotion", ("gender",))["n"] == 1
    with pytest.raises(UnknownNameError, match="hapy"):
        F.group_table([{"gender": "male", "y_true": "hapy", "y_pred": "sad"}], "emotion", ("gender",))
    with pytest.raises(InvalidInputError, match="out of range"):
        F.group_table([{"gender": "male", "y_true": 9, "y_pred": 0}], "emotion", ("gender",))


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_contains_estimate() -> None:
    v = np.array([1.0] * 7 + [0.0] * 5)
    fn = lambda idx: float(v[idx].mean())  # noqa: E731
    a = B.bootstrap_ci(fn, v.size, n_boot=300, seed=1)
    assert a == B.bootstrap_ci(fn, v.size, n_boot=300, seed=1)
    w = np.linspace(0.0, 10.0, 12) ** 2  # continuous values: another seed moves the interval
    assert B.bootstrap_mean_ci(w, n_boot=300, seed=1) != B.bootstrap_mean_ci(w, n_boot=300, seed=2)
    lo, hi = a
    assert 0.0 <= lo <= v.mean() <= hi <= 1.0 and lo < hi
    # The vectorised mean version draws the same resamples.
    assert B.bootstrap_mean_ci(v, n_boot=300, seed=1) == pytest.approx(a)
    # A wider confidence level gives a wider interval.
    lo90, hi90 = B.bootstrap_mean_ci(v, n_boot=300, alpha=0.1, seed=1)
    assert lo <= lo90 and hi90 <= hi


def test_bootstrap_edge_cases() -> None:
    assert all(math.isnan(x) for x in B.bootstrap_ci(lambda i: 1.0, 0))
    assert all(math.isnan(x) for x in B.bootstrap_mean_ci([]))
    assert B.bootstrap_mean_ci([0.7], n_boot=50) == (0.7, 0.7)
    assert B.bootstrap_mean_ci([3.0, 3.0, 3.0], n_boot=50) == (3.0, 3.0)
    with pytest.raises(InvalidInputError, match="n_boot"):
        B.bootstrap_ci(lambda i: 1.0, 5, n_boot=0)
    with pytest.raises(InvalidInputError, match="alpha"):
        B.bootstrap_mean_ci([1.0], alpha=1.5)


def test_group_table_with_cis() -> None:
    t = F.group_table(RECORDS, "emotion", group_keys=("ethnicity",), n_boot=200, seed=0)
    for r in t["rows"]:
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert t["ci_low"] <= t["value"] <= t["ci_high"]
    assert t["cis_overlap"] is True  # 5/6 vs 1/2 on 6 samples each: not a reliable gap
    again = F.group_table(RECORDS, "emotion", group_keys=("ethnicity",), n_boot=200, seed=0)
    assert again == t


# ---------------------------------------------------------------- multi-task report


def test_build_records_and_fairness_report() -> None:
    targets = {
        "age": np.array([25.0, 61.0, 33.0, np.nan]),
        "gender": np.array([0, 1, 1, -1]),
        "ethnicity": np.array([0, 0, 1, 2]),
        "emotion": np.array([-1, -1, -1, -1]),
    }
    preds = {
        "age": np.array([30.0, 50.0, 33.0, 20.0]),
        "gender": np.array([0, 0, 1, 1]),
        "ethnicity": np.array([0, 1, 1, 2]),
        "emotion": np.array([3, 3, 3, 3]),
    }
    recs = F.build_records(targets, preds)
    assert recs[0] == {"age": 25.0, "gender": "male", "ethnicity": "white", "emotion": None,
                       "pred": {"age": 30.0, "gender": "male", "ethnicity": "white", "emotion": "happy"}}
    assert recs[3]["age"] is None and recs[3]["gender"] is None

    rep = F.fairness_report(recs, min_count=1)
    json.dumps(rep, allow_nan=False)
    assert set(rep["tasks"]) == {"age", "gender", "ethnicity"}  # emotion has no truth: absent
    g = rep["tasks"]["gender"]
    assert g["n"] == 3 and g["value"] == pytest.approx(2 / 3)
    assert list(_rows(g, "gender")) == [("male",), ("female",)]
    assert _rows(g, "gender")[("male",)]["value"] == 1.0
    assert _rows(g, "gender")[("female",)]["value"] == 0.5
    assert _rows(rep["tasks"]["age"], "age_band")[("60+",)]["value"] == 11.0

    rows = F.fairness_rows(rep)
    assert len(rows) == sum(len(t["rows"]) for t in rep["tasks"].values())
    assert set(rows[0]) == {"task", "grouping", "ethnicity", "gender", "age_band",
                            "n", "metric", "value", "ci_low", "ci_high"}

    only = F.fairness_report(recs, tasks=["emotion"], group_keys=("gender",))
    assert only["tasks"]["emotion"]["n"] == 0 and only["tasks"]["emotion"]["rows"] == []


def test_build_records_length_mismatch() -> None:
    with pytest.raises(InvalidInputError, match="length"):
        F.build_records({"gender": [0, 1]}, {"gender": [0]})

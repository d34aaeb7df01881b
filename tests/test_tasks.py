"""The task registry contract: head widths, decoding, labels, errors and (de)serialisation."""
from __future__ import annotations

import json
import math

import pytest
import torch

from facemtl import tasks as T
from facemtl.errors import UnknownNameError
from facemtl.tasks import (
    AGE_BANDS,
    AGE_GROUPS,
    TaskSpec,
    age_band,
    age_group,
    get_task,
    list_tasks,
    register_task,
    resolve_tasks,
)


def test_registry_has_the_four_tasks_in_head_order():
    assert list_tasks() == ["age", "gender", "emotion", "ethnicity"]


@pytest.mark.parametrize("name", list_tasks())
def test_head_width_and_decode_shapes(name):
    spec = get_task(name)
    assert spec.name == name
    b = 3
    if spec.kind == "classification":
        assert len(spec.labels) >= 2 and len(set(spec.labels)) == len(spec.labels)
        assert spec.head_width("bins") == spec.head_width("scalar") == len(spec.labels)
        if spec.display:
            assert len(spec.display) == len(spec.labels)
        raw = torch.randn(b, spec.head_width())
        values, probs = spec.decode_raw(raw)
        assert values.shape == (b,) and values.dtype == torch.int64
        assert probs.shape == (b, len(spec.labels))
        torch.testing.assert_close(probs.sum(-1), torch.ones(b))
        assert torch.equal(values, raw.argmax(-1))
    else:
        lo, hi = spec.value_range
        assert spec.head_width("bins") == spec.num_bins > 1
        assert spec.head_width("scalar") == 1
        values, probs = spec.decode_raw(torch.randn(b, spec.num_bins) * 5)
        assert values.shape == (b,) and values.is_floating_point()
        assert probs.shape == (b, spec.num_bins)
        assert ((values >= lo) & (values <= hi)).all()
        svalues, sprobs = spec.decode_raw(torch.tensor([[0.0], [0.5], [1.0], [7.0]]))
        assert sprobs is None
        torch.testing.assert_close(svalues, torch.tensor([lo, (lo + hi) / 2, hi, hi]))


@pytest.mark.parametrize("name", list_tasks())
def test_to_dict_from_dict_round_trip_through_json(name):
    spec = get_task(name)
    d = json.loads(json.dumps(spec.to_dict()))
    back = TaskSpec.from_dict(d)
    assert back == spec
    assert isinstance(back.labels, tuple) and isinstance(back.head_hidden, tuple)


@pytest.mark.parametrize("name", [n for n in list_tasks() if get_task(n).kind == "classification"])
def test_label_index_and_unknown_label(name):
    spec = get_task(name)
    for i, label in enumerate(spec.labels):
        assert spec.label_index(label) == i
    with pytest.raises(UnknownNameError, match="purple") as exc:
        spec.label_index("purple")
    assert spec.labels[0] in str(exc.value)  # the message lists the valid labels


def test_distribution_decode_is_the_expected_value():
    spec = get_task("age")
    raw = torch.full((1, spec.num_bins), -1e4)
    raw[0, 30] = 0.0  # all mass on the bin for 30 years
    values, _ = spec.decode_raw(raw)
    assert values.item() == pytest.approx(30.0, abs=1e-3)
    raw[0, 40] = 0.0  # half on 30, half on 40
    assert spec.decode_raw(raw)[0].item() == pytest.approx(35.0, abs=1e-3)


def test_unknown_task_names_the_bad_value_and_suggests():
    with pytest.raises(UnknownNameError, match="gendr") as exc:
        get_task("gendr")
    msg = str(exc.value)
    assert "did you mean 'gender'" in msg
    assert all(n in msg for n in list_tasks())
    with pytest.raises(UnknownNameError, match="gendr"):
        resolve_tasks("age,gendr")


def test_duplicate_registration_raises(monkeypatch):
    monkeypatch.setattr(T, "_TASKS", dict(T._TASKS))  # never leak a test task into the registry
    with pytest.raises(ValueError, match="age"):
        register_task(TaskSpec("age", "regression", value_range=(0.0, 1.0), num_bins=2))
    spec = register_task(TaskSpec("smile", "classification", labels=("no", "yes")))
    assert get_task("smile") is spec and list_tasks()[-1] == "smile"
    with pytest.raises(ValueError, match="smile"):
        register_task(TaskSpec("smile", "classification", labels=("no", "yes")))


@pytest.mark.parametrize("years, group", [
    (0, "0-2"), (2.9, "0-2"), (3, "3-9"), (9.99, "3-9"), (10, "10-19"), (29.5, "20-29"), (69.9, "60-69"),
    (70, "70+"), (116, "70+"), (-1, "0-2"),
])
def test_age_group_edges(years, group):
    assert age_group(years) == group


@pytest.mark.parametrize("years, band", [(0, "0-19"), (19.9, "0-19"), (20, "20-39"), (59.5, "40-59"), (60, "60+"),
                                         (101, "60+")])
def test_age_band_edges(years, band):
    assert age_band(years) == band


def test_age_tables_are_increasing_and_start_at_zero():
    for table in (AGE_GROUPS, AGE_BANDS):
        lows = [lo for _, lo in table]
        assert lows[0] == 0 and lows == sorted(lows) and len(set(lows)) == len(lows)


def test_resolve_tasks_forms():
    assert [s.name for s in resolve_tasks("age,gender")] == ["age", "gender"]
    # registry order, whatever the order asked; spaces and empty items ignored
    assert [s.name for s in resolve_tasks(" ethnicity , age,")] == ["age", "ethnicity"]
    assert [s.name for s in resolve_tasks(["emotion", get_task("gender")])] == ["gender", "emotion"]
    assert [s.name for s in resolve_tasks(None)] == list_tasks()
    with pytest.raises(ValueError, match="age"):
        resolve_tasks("age,age")
    with pytest.raises(UnknownNameError):
        resolve_tasks("")


def test_normalise_and_bin_centers_agree_with_value_range():
    spec = get_task("age")
    lo, hi = spec.value_range
    c = spec.bin_centers()
    assert c.shape == (spec.num_bins,) and c[0].item() == lo and c[-1].item() == hi
    assert spec.normalise(torch.tensor([lo, hi])).tolist() == [0.0, 1.0]
    assert not math.isnan(spec.normalise(torch.tensor(50.0)).item())

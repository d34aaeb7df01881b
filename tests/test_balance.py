"""Bias mitigation: group weights, group-balanced sampling and loss reweighting in the training loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facemtl.data.transforms import AugmentConfig
from facemtl.errors import UnknownNameError
from facemtl.train.balance import group_ids, group_weights
from facemtl.train.data import SourceData
from facemtl.train.loop import TrainConfig, _make_batch, _Sampler, train

NAN = float("nan")


def test_group_weights_hand_computed():
    t = {"ethnicity": torch.tensor([0., 0., 0., 1., -1.]), "age": torch.tensor([5., 25., 25., 70., NAN])}
    # ethnicity only: counts 3 and 1 -> raw 1/3, 1 -> mean over the 4 labelled = 0.5 -> 2/3 and 2; missing -> 1
    np.testing.assert_allclose(group_weights(t, ["ethnicity"]), [2 / 3, 2 / 3, 2 / 3, 2.0, 1.0])
    # crossing with age band: groups (0,0-19), (0,20-39) x2, (1,60+) -> 1, .5, .5, 1 -> mean .75
    np.testing.assert_allclose(group_weights(t, ["ethnicity", "age_band"]), [4 / 3, 2 / 3, 2 / 3, 4 / 3, 1.0])
    ids = group_ids(t, ["ethnicity", "age_band"])
    assert ids[4] == -1 and ids[1] == ids[2] and len(set(ids[:4].tolist())) == 3


def test_power_and_cap_limit_the_weights():
    t = {"gender": torch.tensor([0.] * 99 + [1.])}
    full = group_weights(t, ["gender"], power=1.0, max_ratio=1000)
    assert full[-1] / full[0] == pytest.approx(99.0)
    sqrt = group_weights(t, ["gender"], power=0.5, max_ratio=1000)
    assert sqrt[-1] / sqrt[0] == pytest.approx(99 ** 0.5)
    capped = group_weights(t, ["gender"], power=1.0, max_ratio=10)
    assert capped[-1] / capped[0] == pytest.approx(10.0)
    assert capped.mean() == pytest.approx(1.0)


def test_no_labels_means_uniform_weights():
    t = {"emotion": torch.tensor([1., 2., 3.]), "ethnicity": torch.full((3,), -1.0)}
    np.testing.assert_array_equal(group_weights(t, ["ethnicity", "gender"]), np.ones(3))


def _skewed(n: int = 200) -> SourceData:
    eth = torch.tensor([0.] * (n - 20) + [1.] * 20)  # 10% minority group
    return SourceData("utkface", np.zeros((n, 8, 8, 3), np.uint8),
                      {"ethnicity": eth, "age": torch.full((n,), 30.0), "gender": torch.zeros(n)},
                      np.array(["train"] * n))


def test_balanced_sampler_draws_groups_equally_and_is_deterministic():
    src = _skewed()
    w = group_weights(src.targets, ["ethnicity"])
    plain = _Sampler([src], 20, None, seed=1)
    bal = _Sampler([src], 20, None, seed=1, weights=[w])

    def minority_share(s: _Sampler, e: int) -> float:
        idx = np.concatenate([i for b in s.epoch(e) for _, i in b])
        return float((src.targets["ethnicity"].numpy()[idx] == 1).mean())

    assert minority_share(plain, 0) == pytest.approx(0.1)
    shares = [minority_share(bal, e) for e in range(5)]
    assert 0.4 < np.mean(shares) < 0.6
    assert [[i.tolist() for _, i in b] for b in bal.epoch(3)] == [[i.tolist() for _, i in b] for b in bal.epoch(3)]
    assert bal.steps == plain.steps  # same budget: balancing changes what is drawn, not how much


def test_make_batch_returns_the_weights_of_the_drawn_samples():
    src = _skewed(100)
    w = group_weights(src.targets, ["ethnicity"])
    idx = np.array([0, 1, 95, 99])
    _, _, sw = _make_batch([src], [(0, idx)], 8, AugmentConfig(), torch.device("cpu"), torch.Generator(), [w])
    np.testing.assert_allclose(sw.numpy(), w[idx], rtol=1e-6)
    assert sw[2] > sw[0]
    _, _, none = _make_batch([src], [(0, idx)], 8, AugmentConfig(), torch.device("cpu"), torch.Generator(), None)
    assert none is None


@pytest.mark.parametrize("mode", ["sample", "reweight"])
def test_training_runs_with_mitigation_and_records_it(tmp_path, mode):
    from test_train import _cfg, _sources

    res = train(_cfg(tmp_path, balance=mode, balance_by=("ethnicity", "gender")), _sources())
    assert res["stopped"] == "completed" and len(res["history"]) == 2
    ck = torch.load(res["last"], map_location="cpu", weights_only=False)
    assert ck["train_config"]["balance"] == mode
    assert ck["train_config"]["balance_by"] == ("ethnicity", "gender")


def test_bad_balance_options(tmp_path):
    with pytest.raises(UnknownNameError, match="'race'.*valid: age_band, ethnicity, gender"):
        TrainConfig(balance="sample", balance_by=("race",))
    with pytest.raises(UnknownNameError, match="'oversample'.*none, reweight, sample"):
        TrainConfig(balance="oversample")
    with pytest.raises(ValueError, match="balance_power"):
        TrainConfig(balance="sample", balance_power=0)

"""The training loop on the tiny backbone: freeze-then-unfreeze, source mixing, checkpoints that describe themselves."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facemtl.errors import FacemtlError, UnknownNameError
from facemtl.models import load_checkpoint
from facemtl.train.data import SourceData
from facemtl.train.loop import TrainConfig, _Sampler, train


def _sources(n_utk: int = 24, n_fer: int = 16, seed: int = 0) -> list[SourceData]:
    rng = np.random.default_rng(seed)
    nan = float("nan")
    utk = SourceData("utkface", rng.integers(0, 255, (n_utk, 32, 32, 3), dtype=np.uint8), {
        "age": torch.tensor(rng.uniform(1, 90, n_utk), dtype=torch.float32),
        "gender": torch.tensor(rng.integers(0, 2, n_utk), dtype=torch.float32),
        "emotion": torch.full((n_utk,), -1.0),
        "ethnicity": torch.tensor(rng.integers(0, 5, n_utk), dtype=torch.float32)},
        np.array(["train"] * (n_utk - 4) + ["val"] * 4))
    fer = SourceData("fer2013", rng.integers(0, 255, (n_fer, 24, 24, 3), dtype=np.uint8), {
        "age": torch.full((n_fer,), nan), "gender": torch.full((n_fer,), -1.0),
        "emotion": torch.tensor(rng.integers(0, 7, n_fer), dtype=torch.float32),
        "ethnicity": torch.full((n_fer,), -1.0)},
        np.array(["train"] * (n_fer - 4) + ["val"] * 4))
    return [utk, fer]


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(backbone="tiny", pretrained=False, input_size=32, batch_size=8, epochs=2, out=str(tmp_path / "run"),
                lr=1e-2, warmup_epochs=0.0)
    return TrainConfig(**{**base, **kw})


def test_freeze_then_unfreeze(tmp_path):
    seen: dict[int, dict[str, torch.Tensor]] = {}
    state0 = {}

    def progress(info):
        if "epoch_end" in info:
            model, _ = load_checkpoint(tmp_path / "run" / "last.pt")
            seen[info["epoch_end"]["epoch"]] = {k: v.clone() for k, v in model.backbone.state_dict().items()}

    torch.manual_seed(0)
    from facemtl.models import create_model

    state0 = {k: v.clone() for k, v in create_model("tiny", input_size=32).backbone.state_dict().items()}
    res = train(_cfg(tmp_path, freeze_epochs=1, seed=0), _sources(), progress=progress)
    assert res["history"][0]["frozen"] is True and res["history"][1]["frozen"] is False
    conv = "features.0.weight"
    assert torch.equal(seen[1][conv], state0[conv])  # frozen epoch: backbone untouched (same seed, same init)
    assert torch.equal(seen[1]["features.1.running_mean"], state0["features.1.running_mean"])  # BN stats frozen too
    assert not torch.equal(seen[2][conv], seen[1][conv])  # unfrozen: it trains


def test_uncertainty_weighting_and_ratio_run(tmp_path):
    res = train(_cfg(tmp_path, loss_weighting="uncertainty", sample_ratio={"utkface": 1, "fer2013": 3}),
                _sources())
    assert len(res["history"]) == 2
    row = res["history"][-1]
    assert np.isfinite(row["train_loss/age"]) and np.isfinite(row["train_loss/emotion"])
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert set(ck["criterion"]) == {f"log_vars.{t}" for t in ("age", "gender", "emotion", "ethnicity")}
    model, meta = load_checkpoint(tmp_path / "run" / "best.pt")
    assert meta["train_config"]["loss_weighting"] == "uncertainty"
    assert meta["preprocess"]["input_size"] == 32 and meta["model_config"]["backbone"] == "tiny"


def test_sampler_mixes_sources_by_ratio():
    src = _sources(40, 40)
    s = _Sampler([x.subset("train") for x in src], 8, {"utkface": 1, "fer2013": 3}, seed=0)
    batches = s.epoch(0)
    counts = np.zeros(2)
    for b in batches:
        for k, idx in b:
            counts[k] += len(idx)
    assert counts[1] / counts.sum() == pytest.approx(0.75, abs=0.05)
    def flat(bs):
        return [[(int(k), i.tolist()) for k, i in b] for b in bs]

    assert flat(s.epoch(0)) == flat(s.epoch(0))  # an epoch's order is a pure function of (seed, epoch): resumable
    assert flat(s.epoch(0)) != flat(s.epoch(1))
    with pytest.raises(UnknownNameError, match="celeba"):
        _Sampler(src, 8, {"celeba": 1}, seed=0)


def test_time_budget_stops_and_keeps_checkpoint(tmp_path):
    res = train(_cfg(tmp_path, epochs=50, time_budget_min=1e-6), _sources())
    assert res["stopped"] == "time budget" and len(res["history"]) == 1
    assert (tmp_path / "run" / "best.pt").is_file()


def test_bad_config_values(tmp_path):
    with pytest.raises(UnknownNameError, match="hinge"):
        _cfg(tmp_path, age_loss="hinge")
    with pytest.raises(ValueError, match="epochs"):
        _cfg(tmp_path, epochs=0)
    with pytest.raises(FacemtlError, match="no training data"):
        train(_cfg(tmp_path))


def test_weight_average_follows_the_weights_with_its_decay():
    from facemtl.train.loop import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    avg = WeightAverage(net, decay=0.9)
    start = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
        net[1].num_batches_tracked.fill_(7)
    for _ in range(200):
        avg.update(net)
    # after many updates the average converges to the (now constant) weights; integer buffers are copied
    assert torch.allclose(avg.model[0].weight, start + 1.0, atol=1e-4)
    assert int(avg.model[1].num_batches_tracked) == 7
    assert not any(p.requires_grad for p in avg.model.parameters())
    one = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    one.update(net)  # the first update weighs the new weights by 1 - min(0.9, 2/11)
    assert torch.allclose(one.model[0].weight, start + 1.0 + (1 - 2 / 11), atol=1e-5)


def test_ema_run_saves_the_average_and_resumes_it(tmp_path):
    res = train(_cfg(tmp_path, ema_decay=0.9, epochs=1), _sources())
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert len(res["history"]) == 1 and ck["ema"]["updates"] > 0  # one update per optimiser step
    best, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    raw = ck["state_dict"]
    name = next(k for k in raw if k.startswith("heads.age") and k.endswith("weight"))
    # best.pt is the average, not the raw weights of the last step
    assert torch.equal(best.state_dict()[name], ck["ema"]["state_dict"][name])
    assert not torch.equal(raw[name], ck["ema"]["state_dict"][name])
    res2 = train(_cfg(tmp_path, ema_decay=0.9, epochs=2, resume=True), _sources())
    ck2 = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert len(res2["history"]) == 2 and ck2["ema"]["updates"] == 2 * ck["ema"]["updates"]
    with pytest.raises(ValueError, match="ema_decay"):
        _cfg(tmp_path, ema_decay=1.0)

"""Masked per-task losses, multi-task weighting, and that the tiny model can overfit one batch."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import draw_face

from facemtl.errors import UnknownNameError
from facemtl.models import create_model
from facemtl.tasks import get_task, list_tasks
from facemtl.train.losses import AGE_LOSSES, MultiTaskLoss, regression_head_for, task_loss

SPECS = tuple(get_task(t) for t in list_tasks())


def _missing(n: int) -> dict[str, torch.Tensor]:
    return {s.name: torch.full((n,), math.nan if s.kind == "regression" else -1.0) for s in SPECS}


def _outputs(n: int, regression_head: str = "bins") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {s.name: torch.randn(n, s.head_width(regression_head), requires_grad=True) for s in SPECS}


@pytest.mark.parametrize("name", list_tasks())
def test_task_loss_is_exactly_zero_without_labels(name):
    spec = get_task(name)
    raw = torch.randn(4, spec.head_width(), requires_grad=True)
    target = torch.full((4,), math.nan if spec.kind == "regression" else -1.0)
    loss = task_loss(spec, raw, target)
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    loss.backward()
    assert raw.grad is not None and torch.count_nonzero(raw.grad) == 0


@pytest.mark.parametrize("weighting", MultiTaskLoss.WEIGHTINGS)
def test_multitask_loss_is_zero_with_zero_grad_when_all_labels_are_missing(weighting):
    crit = MultiTaskLoss(SPECS, weighting)
    out = _outputs(5)
    total, parts = crit(out, _missing(5))
    assert total.item() == 0.0
    assert parts == {}
    total.backward()
    for v in out.values():
        assert v.grad is not None and torch.count_nonzero(v.grad) == 0
    for p in crit.parameters():  # uncertainty log-variances of absent tasks are not trained
        assert p.grad is None or torch.count_nonzero(p.grad) == 0


def test_mixed_labels_are_finite_and_ignore_unlabelled_rows():
    crit = MultiTaskLoss(SPECS, "static", label_smoothing=0.1)
    out = _outputs(4)
    t = _missing(4)
    t["age"][:2] = torch.tensor([25.0, 150.0])  # 150 is clamped to the value range, not NaN
    t["gender"][1:3] = torch.tensor([0.0, 1.0])
    t["emotion"][3] = 6.0
    total, parts = crit(out, t)
    assert math.isfinite(total.item()) and total.item() > 0
    assert set(parts) == {"age", "gender", "emotion"}  # ethnicity had no label
    total.backward()
    assert torch.count_nonzero(out["age"].grad[2:]) == 0 and torch.count_nonzero(out["age"].grad[:2]) > 0
    assert torch.count_nonzero(out["gender"].grad[[0, 3]]) == 0
    assert torch.count_nonzero(out["emotion"].grad[:3]) == 0
    assert torch.count_nonzero(out["ethnicity"].grad) == 0
    # the total is the static weighted sum of the parts
    expected = sum(get_task(k).loss_weight * v for k, v in parts.items())
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_classification_loss_is_cross_entropy():
    spec = get_task("gender")
    raw = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([0.0, -1.0])
    assert task_loss(spec, raw, target).item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-5)


def test_uncertainty_weighting_has_learnable_log_variances():
    crit = MultiTaskLoss(SPECS, "uncertainty")
    names = {n.split(".")[-1] for n, _ in crit.named_parameters()}
    assert names == set(list_tasks())
    assert all(p.requires_grad and p.item() == 0.0 for p in crit.parameters())
    out = _outputs(3)
    t = _missing(3)
    t["gender"][:] = torch.tensor([0.0, 1.0, 1.0])
    total, parts = crit(out, t)
    # s = 0: total = exp(0) * L + 0
    assert total.item() == pytest.approx(parts["gender"], rel=1e-5)
    total.backward()
    assert crit.log_vars["gender"].grad is not None and crit.log_vars["gender"].grad.item() != 0
    assert crit.log_vars["age"].grad is None
    with torch.no_grad():
        crit.log_vars["gender"].fill_(1.0)
    total2, parts2 = crit({k: v.detach() for k, v in out.items()}, t)
    assert total2.item() == pytest.approx(math.exp(-1.0) * parts2["gender"] + 1.0, rel=1e-5)


@pytest.mark.parametrize("age_loss", AGE_LOSSES)
def test_each_age_loss(age_loss):
    head = regression_head_for(age_loss)
    spec = get_task("age")
    torch.manual_seed(0)
    raw = torch.randn(4, spec.head_width(head), requires_grad=True)
    target = torch.tensor([3.0, 30.0, math.nan, 90.0])
    loss = task_loss(spec, raw, target, age_loss=age_loss)
    assert math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(raw.grad).all() and torch.count_nonzero(raw.grad[2]) == 0
    # a perfect prediction scores lower than a bad one
    if head == "scalar":
        good = spec.normalise(torch.tensor([[30.0]]))
        bad = spec.normalise(torch.tensor([[70.0]]))
    else:
        good = torch.full((1, spec.num_bins), -20.0)
        good[0, 30] = 0.0
        bad = torch.full((1, spec.num_bins), -20.0)
        bad[0, 70] = 0.0
    t = torch.tensor([30.0])
    assert task_loss(spec, good, t, age_loss=age_loss) < task_loss(spec, bad, t, age_loss=age_loss)
    if age_loss != "dldl":
        assert task_loss(spec, good, t, age_loss=age_loss).item() == pytest.approx(0.0, abs=1e-6)


def test_sample_weights():
    spec = get_task("gender")
    raw = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([0.0, 0.0])
    only_first = task_loss(spec, raw, target, sample_weight=torch.tensor([1.0, 0.0]))
    assert only_first.item() == pytest.approx(task_loss(spec, raw[:1], target[:1]).item(), rel=1e-5)


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="uncertanity"):
        MultiTaskLoss(SPECS, "uncertanity")
    with pytest.raises(UnknownNameError, match="huber"):
        MultiTaskLoss(SPECS, "static", age_loss="huber")
    with pytest.raises(UnknownNameError, match="huber"):
        regression_head_for("huber")
    assert regression_head_for("dldl") == "bins" and regression_head_for("l1") == "scalar"


def test_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = create_model("tiny", tasks=list_tasks(), input_size=64)
    x = torch.stack([torch.from_numpy(draw_face(64, seed=i, tone=100 + 18 * i)).permute(2, 0, 1) for i in range(8)])
    x = x.float() / 255.0
    targets = {
        "age": torch.tensor([2.0, 9.0, 18.0, 27.0, 35.0, 48.0, 62.0, 80.0]),
        "gender": torch.tensor([0, 1, 0, 1, 0, 1, 0, 1], dtype=torch.float32),
        "emotion": torch.tensor([0, 1, 2, 3, 4, 5, 6, 3], dtype=torch.float32),
        "ethnicity": torch.tensor([0, 1, 2, 3, 4, 0, 1, 2], dtype=torch.float32),
    }
    crit = MultiTaskLoss(model.tasks, "static", "dldl")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss, _ = crit(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    # training-mode loss (batch statistics, dropout on): the eval-mode figure lags behind the running averages
    final = sum(losses[-5:]) / 5
    assert final < 0.5 * losses[0], (losses[0], final)

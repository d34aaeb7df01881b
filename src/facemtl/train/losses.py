"""Masked per-task losses and multi-task weighting (static or learned uncertainty).

Targets are ``dict[str, Tensor]``: class index (-1 = missing) or value (NaN = missing). A task with
no labelled sample in the batch contributes exactly 0 (not NaN) and no gradient.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import unknown_name
from ..tasks import TaskSpec
from .config import AGE_LOSSES, LOSS_WEIGHTINGS

__all__ = ["AGE_LOSSES", "task_loss", "MultiTaskLoss", "regression_head_for"]



def regression_head_for(age_loss: str) -> str:
    """The head formulation each regression loss needs: distribution ("bins") or "scalar"."""
    if age_loss not in AGE_LOSSES:
        raise unknown_name("age loss", age_loss, AGE_LOSSES)
    return "bins" if age_loss == "dldl" else "scalar"


def label_mask(spec: TaskSpec, target: torch.Tensor) -> torch.Tensor:
    return target >= 0 if spec.kind == "classification" else ~torch.isnan(target)


def interval_loss(spec: TaskSpec, raw: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, age_loss: str = "dldl"
                  ) -> torch.Tensor:
    """Per-sample loss for a label known only as an interval [lo, hi) (FairFace's age bins; hi may be inf).

    Distribution head: minus the log of the probability mass inside the interval, plus the L1 distance of
    the expected value to the interval (0 inside it). Scalar head: that distance alone. Never a midpoint.
    """
    vlo, vhi = spec.value_range or (0.0, 1.0)
    lo_c, hi_c = lo.float().clamp(vlo, vhi), hi.float().clamp(vlo, vhi + 1.0)
    if age_loss == "dldl":
        centers = torch.from_numpy(spec.bin_centers()).to(raw.device)
        inside = (centers[None, :] >= lo_c[:, None]) & (centers[None, :] < hi_c[:, None])
        logp = raw.float().log_softmax(-1)
        log_mass = torch.logsumexp(logp.masked_fill(~inside, float("-inf")), dim=-1)
        expected = logp.exp() @ centers
    else:
        log_mass = torch.zeros(len(raw), device=raw.device)
        expected = raw[:, 0].float() * (vhi - vlo) + vlo
    outside = F.relu(lo_c - expected) + F.relu(expected - (hi_c - 1.0).clamp_min(lo_c))
    return -log_mass + outside / (vhi - vlo) * 10.0


def interval_mask(spec: TaskSpec, target: torch.Tensor, interval: tuple[torch.Tensor, torch.Tensor] | None
                  ) -> torch.Tensor | None:
    """Samples of a regression task labelled only by an interval (no point label), or None when there are none."""
    if interval is None or spec.kind != "regression":
        return None
    imask = ~label_mask(spec, target) & ~torch.isnan(interval[0])
    return imask if bool(imask.any()) else None


def _point_loss(spec: TaskSpec, raw: torch.Tensor, target: torch.Tensor, age_loss: str, label_smoothing: float,
                sigma: float, soft: torch.Tensor | None, soft_weight: float) -> torch.Tensor:
    """Per-sample loss of samples that all carry a label (class index or value)."""
    raw = raw.float()
    if spec.kind == "classification":
        if soft is not None and soft_weight > 0:
            k = raw.shape[-1]
            hard = F.one_hot(target.long(), k).float() * (1 - label_smoothing) + label_smoothing / k
            sm = soft.float()
            has = ~torch.isnan(sm).any(-1)
            dist = torch.where(has[:, None], (1 - soft_weight) * hard + soft_weight * sm.nan_to_num(0.0), hard)
            return -(dist * raw.log_softmax(-1)).sum(-1)
        return F.cross_entropy(raw, target.long(), reduction="none", label_smoothing=label_smoothing)
    lo, hi = spec.value_range or (0.0, 1.0)
    t = target.float().clamp(lo, hi)
    if age_loss == "dldl":
        centers = torch.from_numpy(spec.bin_centers()).to(raw.device)
        s = sigma + 0.05 * t  # label noise grows with age
        dist = torch.exp(-0.5 * ((centers[None, :] - t[:, None]) / s[:, None]) ** 2)
        dist = dist / dist.sum(1, keepdim=True)
        logp = raw.log_softmax(-1)
        kl = (dist * (torch.log(dist.clamp_min(1e-12)) - logp)).sum(-1)
        expected = logp.exp() @ centers
        return kl + (expected - t).abs() / (hi - lo) * 10.0
    pred = raw[:, 0]
    tn = spec.normalise(t)
    return (pred - tn).abs() if age_loss == "l1" else (pred - tn) ** 2


def task_loss(spec: TaskSpec, raw: torch.Tensor, target: torch.Tensor, age_loss: str = "dldl",
              label_smoothing: float = 0.0, sigma: float = 2.0, sample_weight: torch.Tensor | None = None,
              interval: tuple[torch.Tensor, torch.Tensor] | None = None, soft: torch.Tensor | None = None,
              soft_weight: float = 0.0) -> torch.Tensor:
    """Mean loss over the labelled samples of one task (exactly 0.0 when none is labelled).

    Regression "dldl" is label-distribution learning: KL to a Gaussian of width ``sigma`` (in task
    units, widened for older ages) around the true value, plus L1 on the expected value. ``interval``
    (lo, hi) adds samples labelled only by a range (:func:`interval_loss`). Classification ``soft`` (B, K)
    label distributions (NaN rows: none) are mixed into the target with weight ``soft_weight``.
    """
    mask = label_mask(spec, target)
    imask = interval_mask(spec, target, interval)
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (per-sample losses, the mask they belong to)
    if bool(mask.any()):
        parts.append((_point_loss(spec, raw[mask], target[mask], age_loss, label_smoothing, sigma,
                                  None if soft is None else soft[mask], soft_weight), mask))
    if imask is not None:
        lo, hi = interval  # type: ignore[misc]
        parts.append((interval_loss(spec, raw[imask], lo[imask], hi[imask], age_loss), imask))
    if not parts:
        return raw.sum() * 0.0
    per = torch.cat([p for p, _ in parts])
    if sample_weight is not None:
        w = torch.cat([sample_weight[m] for _, m in parts])
        return (per * w).sum() / w.sum().clamp_min(1e-6)
    return per.mean()


class MultiTaskLoss(nn.Module):
    """Weighted sum of masked task losses.

    ``weighting="static"`` uses each TaskSpec's ``loss_weight`` (original: 1.0/1.0/1.2/1.0);
    ``"uncertainty"`` learns a log-variance s_t per task (Kendall, Gal & Cipolla 2018):
    L = sum_t exp(-s_t) * L_t + s_t, counted only for tasks present in the batch.
    """

    WEIGHTINGS = LOSS_WEIGHTINGS

    def __init__(self, tasks: Sequence[TaskSpec], weighting: str = "static", age_loss: str = "dldl",
                 label_smoothing: float = 0.0, soft_weight: float = 0.0) -> None:
        super().__init__()
        if weighting not in self.WEIGHTINGS:
            raise unknown_name("loss weighting", weighting, self.WEIGHTINGS)
        regression_head_for(age_loss)
        self.tasks, self.weighting, self.age_loss, self.label_smoothing = tuple(tasks), weighting, age_loss, \
            label_smoothing
        self.soft_weight = float(soft_weight)
        self.log_vars = nn.ParameterDict({t.name: nn.Parameter(torch.zeros(())) for t in self.tasks}) \
            if weighting == "uncertainty" else None

    def forward(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
                sample_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        total = next(iter(outputs.values())).sum() * 0.0
        parts: dict[str, float] = {}
        for spec in self.tasks:
            if spec.name not in outputs or spec.name not in targets:
                continue
            t = targets[spec.name]
            lo, hi = targets.get(f"{spec.name}_lo"), targets.get(f"{spec.name}_hi")
            interval = (lo, hi) if lo is not None and hi is not None else None
            loss = task_loss(spec, outputs[spec.name], t, self.age_loss,
                             self.label_smoothing if spec.kind == "classification" else 0.0,
                             sample_weight=sample_weight, interval=interval,
                             soft=targets.get(f"{spec.name}_soft"), soft_weight=self.soft_weight)
            present = bool(label_mask(spec, t).any()) or interval_mask(spec, t, interval) is not None
            if self.log_vars is not None and present:
                s = self.log_vars[spec.name]
                total = total + torch.exp(-s) * loss + s
            else:
                total = total + spec.loss_weight * loss
            if present:
                parts[spec.name] = float(loss.detach())
        return total, parts

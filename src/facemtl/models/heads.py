"""Task heads built from each TaskSpec's head layout (the original design's four heads)."""
from __future__ import annotations

import torch
from torch import nn

from ..tasks import TaskSpec

__all__ = ["TaskHead", "build_head"]


class TaskHead(nn.Module):
    """Optional task-specific feature attention, then Linear-ReLU(-BN)(-Dropout) layers, then the output."""

    def __init__(self, spec: TaskSpec, in_features: int, out_features: int, attention: bool = False) -> None:
        super().__init__()
        # Attention: a learned per-task gate over the shared feature channels (squeeze-excitation style).
        self.attention = (
            nn.Sequential(nn.Linear(in_features, max(in_features // 8, 8)), nn.ReLU(inplace=True),
                          nn.Linear(max(in_features // 8, 8), in_features), nn.Sigmoid())
            if attention else None
        )
        layers: list[nn.Module] = []
        width = in_features
        for i, hidden in enumerate(spec.head_hidden):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            if i == 0:
                if spec.head_batchnorm:
                    layers.append(nn.BatchNorm1d(hidden))
                if spec.head_dropout > 0:
                    layers.append(nn.Dropout(spec.head_dropout))
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, out_features)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, out)
        if self.attention is not None:
            feats = feats * self.attention(feats)
        return self.out(self.mlp(feats))


def build_head(spec: TaskSpec, in_features: int, regression_head: str = "bins", attention: bool = False) -> TaskHead:
    """The head for ``spec``; its width comes from ``spec.head_width(regression_head)``."""
    return TaskHead(spec, in_features, spec.head_width(regression_head), attention)

"""MultiTaskNet: one shared backbone, an optional shared dense layer, one head per task."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..tasks import TaskSpec
from .backbones import Backbone
from .heads import build_head

if TYPE_CHECKING:
    from .config import ModelConfig

__all__ = ["MultiTaskNet"]


class MultiTaskNet(nn.Module):
    """Shared backbone + per-task heads.

    Input: float (B, 3, H, W) RGB in [0, 1]; the backbone's normalisation is applied inside, so
    every caller (training, analyzer, ONNX) feeds the same thing. Output: {task name: (B, W)}.
    """

    # Declared for the type checker only (no class attributes): the buffers registered in __init__, and the
    # config that create_model sets on the nets it builds.
    mean: torch.Tensor
    std: torch.Tensor
    config: ModelConfig

    def __init__(
        self,
        backbone: Backbone,
        tasks: Sequence[TaskSpec],
        shared_dim: int = 0,
        shared_dropout: float = 0.3,
        regression_head: str = "bins",
        attention: bool = False,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone.name
        self.backbone = backbone.module
        self.tasks = tuple(tasks)
        self.cam_layer = backbone.cam_layer
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)
        feat = backbone.num_features
        if shared_dim > 0:
            self.shared: nn.Module = nn.Sequential(nn.Linear(feat, shared_dim), nn.ReLU(inplace=True),
                                                   nn.Dropout(shared_dropout))
            feat = shared_dim
        else:
            self.shared = nn.Identity()
        self.heads = nn.ModuleDict({t.name: build_head(t, feat, regression_head, attention) for t in self.tasks})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> shared features (B, C)."""
        return self.shared(self.backbone((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)  # (B, C)
        return {name: head(feats) for name, head in self.heads.items()}

    def predict(self, x: torch.Tensor, flip_tta: bool = False) -> dict[str, torch.Tensor]:
        """Raw outputs for inference; ``flip_tta`` also runs the mirrored faces and averages the logits."""
        if not flip_tta:
            return self(x)
        out = self(torch.cat([x, x.flip(-1)]))  # (2B, W): one pass for both views
        b = x.shape[0]
        return {k: (v[:b] + v[b:]) / 2 for k, v in out.items()}

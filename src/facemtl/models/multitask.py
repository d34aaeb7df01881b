"""MultiTaskNet: one shared backbone, an optional shared dense layer, one head per task."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..tasks import TaskSpec
from .backbones import Backbone
from .heads import build_head

__all__ = ["MultiTaskNet", "predict_crops_raw"]


class MultiTaskNet(nn.Module):
    """Shared backbone + per-task heads.

    Input: float (B, 3, H, W) RGB in [0, 1]; the backbone's normalisation is applied inside, so
    every caller (training, analyzer, ONNX) feeds the same thing. Output: {task name: (B, W)}.
    """

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


@torch.no_grad()
def predict_crops_raw(model, crops, size: int, batch_size: int = 128, flip_tta: bool = True,
                      device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Raw head outputs for uint8 face crops (N, S, S, 3): the ONE inference function of training-time
    validation, ``facemtl evaluate`` and :class:`facemtl.FaceAnalyzer`.

    Crops larger than ``size`` are context crops from the training cache; their centre is the canonical crop
    (:func:`facemtl.preprocess.center_crop`). ``model`` is anything with ``predict(x, flip_tta)``: a
    :class:`MultiTaskNet` or an ONNX Runtime model.
    """
    from ..preprocess import center_crop, to_model_input

    if isinstance(model, nn.Module):
        model.eval()
        device = device or next(model.parameters()).device
    outs: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(crops), batch_size):
        chunk = center_crop(np.asarray(crops[i:i + batch_size]), size)
        x = to_model_input(chunk)
        if device is not None:
            x = x.to(device)
        for k, v in model.predict(x, flip_tta=flip_tta).items():
            outs.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in outs.items()}

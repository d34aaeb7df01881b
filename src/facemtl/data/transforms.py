"""Batch augmentation on uint8 tensors, identical for colour and grayscale sources, CPU or GPU.

Geometry (rotation, shift, zoom, flip) is one affine resampling that also resizes the source to
the model's input size, so each dataset can be cached at its own resolution.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "augment_batch", "resize_batch"]


@dataclass
class AugmentConfig:
    """The original design's augmentation (rotation 20 deg, shift, flip, brightness 0.8-1.2, zoom 20%),
    with shifts and zoom narrowed for face crops, plus contrast and grayscale jitter."""

    rotation_deg: float = 20.0
    shift: float = 0.08
    zoom: float = 0.15
    hflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    grayscale_p: float = 0.15

    def to_dict(self) -> dict:
        return asdict(self)


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> float (B, 3, size, size) in [0, 1], no augmentation (evaluation)."""
    x = x.float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return x


def augment_batch(x: torch.Tensor, size: int, cfg: AugmentConfig, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> augmented float (B, 3, size, size) in [0, 1]."""
    b, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=generator, device="cpu").to(dev) * (hi - lo) + lo

    x = x.float().div_(255.0)
    if x.shape[-1] > 2 * size:  # avoid aliasing when the source is much larger than the output
        x = F.interpolate(x, size=(2 * size, 2 * size), mode="bilinear", antialias=True, align_corners=False)
    angle = u(-cfg.rotation_deg, cfg.rotation_deg) * (math.pi / 180.0)
    scale = 1.0 / u(1.0 - cfg.zoom, 1.0 + cfg.zoom)  # >1 zooms out
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(b, device=dev)
    tx, ty = u(-cfg.shift, cfg.shift) * 2, u(-cfg.shift, cfg.shift) * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.grayscale_p > 0:
        gray = (x * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
        g = (u(0, 1) < cfg.grayscale_p).view(b, 1, 1, 1)
        x = torch.where(g, gray.expand_as(x), x)
    bright = u(1 - cfg.brightness, 1 + cfg.brightness).view(b, 1, 1, 1)
    contrast = u(1 - cfg.contrast, 1 + cfg.contrast).view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * bright
    return x.clamp_(0.0, 1.0)

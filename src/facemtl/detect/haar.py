"""OpenCV's Viola-Jones Haar cascade for frontal faces (``haarcascade_frontalface_default.xml``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError
from ._common import check_image, import_cv2, resize_for_detection, to_detections
from .base import Detection, register_detector

__all__ = ["HaarDetector"]


@register_detector("haar")
class HaarDetector:
    """Haar cascade: fast, no landmarks, frontal faces only.

    The score is the cascade's last-stage weight squashed to (0, 1) by a logistic function; it
    orders faces but is not a calibrated probability.

    Args:
        min_score: drop faces whose squashed weight is at or below this (0 keeps all).
        scale_factor: image pyramid step of ``detectMultiScale``.
        min_neighbors: overlapping raw hits needed to accept a face (higher: fewer false faces).
        min_size: smallest face side, in pixels of the (resized) detection image.
        max_side: images whose longer side exceeds this are downscaled first; None disables.
        min_side: images whose longer side is below this are upscaled first; None disables.
        cascade: path to a cascade XML; default is OpenCV's frontal-face cascade.

    Raises:
        MissingDependencyError: OpenCV 4 is not installed (OpenCV 5 dropped the cascades).
    """

    name = "haar"

    def __init__(
        self,
        min_score: float = 0.0,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_side: int | None = 640,
        min_side: int | None = 160,
        cascade: str | Path | None = None,
    ) -> None:
        cv2 = import_cv2()
        if not hasattr(cv2, "CascadeClassifier"):  # OpenCV 5 moved Haar cascades to opencv-contrib
            raise MissingDependencyError(
                f"OpenCV {cv2.__version__} has no Haar cascades; install an OpenCV 4 build: "
                'pip install "opencv-python-headless>=4.8,<5"'
            )
        if cascade is None:
            cascade = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        path = Path(cascade)
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise FileNotFoundError(f"cannot load the Haar cascade {path}")
        self.min_score, self.scale_factor = float(min_score), float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size, self.max_side, self.min_side = int(min_size), max_side, min_side

    def detect(self, image: np.ndarray) -> list[Detection]:
        check_image(image)
        cv2 = import_cv2()
        small, factor = resize_for_detection(image, self.max_side, self.min_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        rects, _, weights = self._classifier.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, dtype=np.float64).reshape(-1)))
        keep = scores > self.min_score
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)[keep]
        return to_detections(boxes, scores[keep], None, image.shape[:2], factor)

    def __repr__(self) -> str:
        return (
            f"HaarDetector(min_score={self.min_score}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, min_size={self.min_size}, max_side={self.max_side}, "
            f"min_side={self.min_side})"
        )

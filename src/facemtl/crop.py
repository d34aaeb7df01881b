"""The canonical face crop: ONE function shared by dataset preparation and inference.

Training images (UTKFace, FER2013) are already face crops, so their canonical crop is the whole
image made square and resized. At inference a detector box (and, when given, the eye landmarks)
is turned into the same framing: the square is centred on the box, ``scale`` times the box's
longer side, and shifted down by ``shift_y`` box heights. The constants were measured by running
the RetinaFace detector on 500 UTKFace images, each padded with a flat border so that the box is
not clipped at the frame (as it is not in a full photo), and fitting the box to the UTKFace frame
(``benchmarks/calibrate_crop.py``). A RetinaFace box is larger than the UTKFace frame and reaches
higher up the forehead, hence ``scale`` < 1 and a downward ``shift_y``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["CropGeometry", "DEFAULT_GEOMETRY", "crop_face", "crop_transform"]


@dataclass(frozen=True)
class CropGeometry:
    """How a detector box maps to the canonical crop.

    Attributes:
        scale: side of the crop square / max(box width, box height).
        shift_y: vertical offset of the square's centre, as a fraction of the box height
            (positive moves the crop down).
        align: rotate so that the eyes are level when landmarks are available.
    """

    scale: float = 0.92
    shift_y: float = 0.07
    align: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_GEOMETRY = CropGeometry()


def crop_transform(
    box: Sequence[float], landmarks: np.ndarray | None, size: int, geometry: CropGeometry = DEFAULT_GEOMETRY
) -> np.ndarray:
    """The 2x3 affine matrix that maps original-image pixels to the (size, size) canonical crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0 + geometry.shift_y * h
    side = max(w, h) * geometry.scale
    angle = 0.0
    if geometry.align and landmarks is not None and len(landmarks) >= 2:
        # Landmark order follows RetinaFace/MTCNN: left eye (image left), right eye, nose, mouth...
        (lx, ly), (rx, ry) = landmarks[0][:2], landmarks[1][:2]
        angle = float(np.arctan2(ry - ly, rx - lx))
    s = size / side
    cos, sin = np.cos(angle) * s, np.sin(angle) * s
    # Rotate by -angle about (cx, cy), scale, then move (cx, cy) to the crop centre.
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]], dtype=np.float64)
    m[:, 2] = np.array([size / 2.0, size / 2.0]) - m[:, :2] @ np.array([cx, cy])
    return m


def crop_face(
    image: np.ndarray,
    box: Sequence[float] | None = None,
    landmarks: np.ndarray | None = None,
    size: int = 112,
    geometry: CropGeometry = DEFAULT_GEOMETRY,
) -> np.ndarray:
    """Return the canonical (size, size, 3) uint8 RGB face crop.

    Args:
        image: RGB uint8 (H, W, 3).
        box: detector box (x1, y1, x2, y2) in pixels; None means the image already is a face crop
            (UTKFace, FER2013, the ``none`` detector): it is centre-padded to a square and resized.
        landmarks: optional (K, 2) landmarks; the first two are the eyes.
        size: output side in pixels.
        geometry: box-to-crop framing.
    """
    import cv2

    h, w = image.shape[:2]
    if box is None:
        side = max(h, w)
        if h != w:  # pad to a square with edge pixels, keeping the face centred
            top, left = (side - h) // 2, (side - w) // 2
            image = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
        if side == size:
            return np.ascontiguousarray(image)
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        return cv2.resize(image, (size, size), interpolation=interp)
    m = crop_transform(box, landmarks, size, geometry)
    # Downscaling a large face by an affine warp aliases; pre-shrink with INTER_AREA first.
    side = size / np.hypot(m[0, 0], m[0, 1])
    factor = int(side // (2 * size))
    if factor >= 2:
        image = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        m = m.copy()
        m[:, :2] *= factor
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

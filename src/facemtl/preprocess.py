"""From pixels to model input: ONE path for training, validation, evaluation and every inference command.

Two kinds of image reach the model:

* a **photo** (``predict``, ``batch``, ``serve``, video): a detector finds each face and
  :func:`facemtl.crop.crop_face` turns its box and eye landmarks into the canonical crop;
* a **face crop** (a dataset image such as UTKFace, FER2013, FairFace or CelebA, or the ``none``
  detector: "this image is the face"): :func:`frame_face_crop` pads it with a flat border (so the
  detector's box is not clipped at the frame, as it is not in a photo), runs the same detector on it
  and crops the found face with the same ``crop_face`` call, so a dataset image is framed and aligned
  exactly as the same face in a photo. When no face is found the image is kept as it is (padded to a
  square and resized: the dataset's own framing) and the result says so.

The training cache stores each face crop with extra context around it (``Framing.context``) so that
augmentation can jitter the framing without inventing pixels; :func:`center_crop` takes the exact
canonical crop back out of it. Model input is RGB float in [0, 1] (:func:`to_model_input`); the
backbone's normalisation is applied inside the model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .crop import DEFAULT_GEOMETRY, CropGeometry, crop_face
from .detect.base import Detection
from .results import Box

__all__ = ["Framing", "DEFAULT_FRAMING", "frame_face_crop", "photo_crop", "center_crop", "to_model_input",
           "pad_for_detection", "context_crop", "context_size", "crop_settings", "FRAMING_VERSION", "LEGACY_FRAMING"]

FRAMING_VERSION = 2  # bump when the output of frame_face_crop changes (keys the training cache)


@dataclass(frozen=True)
class Framing:
    """How a face crop is found and framed; stored in every checkpoint (``preprocess.framing``).

    Attributes:
        detector: detector run on face crops (the same one photos use by default).
        min_score: its confidence threshold (lower than for photos: the image is known to hold a face).
        pad: flat border added on each side before detection, as a fraction of the crop's longer side.
        min_side: crops whose longer side is smaller are upscaled to this first (FER2013 is 48 px).
        context: the training cache holds ``context`` x the canonical crop (same pixel density), so
            augmentation can move the frame; inference takes the centre of the same context crop.
    """

    detector: str = "retinaface"
    min_score: float = 0.5
    pad: float = 0.5
    min_side: int = 160
    context: float = 1.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_detector(self) -> bool:
        return self.detector != "none"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Framing:
        """The framing a checkpoint records; a checkpoint without one (facemtl 0.1) was trained on face crops
        taken as they are (:data:`LEGACY_FRAMING`)."""
        if d is None:
            return LEGACY_FRAMING
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


DEFAULT_FRAMING = Framing()
# facemtl 0.1.0 trained on dataset images padded to a square and resized, without detection or alignment.
LEGACY_FRAMING = Framing(detector="none", min_score=0.0, pad=0.0, min_side=0, context=1.0)


def crop_settings(preprocess: dict[str, Any] | None) -> tuple[CropGeometry, Framing]:
    """The crop geometry and framing a model's ``preprocess`` record (checkpoint or ONNX metadata) names."""
    pre = preprocess or {}
    geometry = CropGeometry(**pre["crop"]) if pre.get("crop") else CropGeometry()
    return geometry, Framing.from_dict(pre.get("framing"))


def pad_for_detection(image: np.ndarray, pad: float) -> tuple[np.ndarray, int]:
    """A copy of ``image`` with a flat border of its mean colour, ``pad`` x its longer side on each side."""
    h, w = image.shape[:2]
    b = int(round(pad * max(h, w)))
    if b <= 0:
        return image, 0
    colour = image.reshape(-1, 3).mean(0).astype(np.uint8)
    out = np.empty((h + 2 * b, w + 2 * b, 3), np.uint8)
    out[:] = colour
    out[b:b + h, b:b + w] = image
    return out, b


def _context_geometry(geometry: CropGeometry, context: float) -> CropGeometry:
    return replace(geometry, scale=geometry.scale * context)


def context_size(size: int, context: float) -> int:
    """Side of a context crop for an input side ``size`` (an even margin on each side)."""
    return size + 2 * int(round(size * (context - 1.0) / 2))


def context_crop(image: np.ndarray, det: Detection, size: int, geometry: CropGeometry = DEFAULT_GEOMETRY,
                 context: float = DEFAULT_FRAMING.context) -> np.ndarray:
    """One detected face with a margin: (S, S, 3), S = ``context_size(size, context)``, at the canonical
    crop's pixel density, so that ``center_crop(.., size)`` is the canonical crop."""
    lm = np.asarray(det.landmarks, dtype=np.float64) if det.landmarks else None
    side = context_size(size, context)
    return crop_face(image, det.box.xyxy, lm, side, _context_geometry(geometry, side / size))


def photo_crop(image: np.ndarray, det: Detection, size: int, geometry: CropGeometry = DEFAULT_GEOMETRY,
               framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The canonical (size, size, 3) crop of one detected face: the centre of its context crop, so that it is
    bit-identical to what the training cache holds for the same face."""
    return center_crop(context_crop(image, det, size, geometry, framing.context)[None], size)[0]


def frame_face_crop(image: np.ndarray, detector: Any, size: int, geometry: CropGeometry = DEFAULT_GEOMETRY,
                    framing: Framing = DEFAULT_FRAMING, with_context: bool = False
                    ) -> tuple[np.ndarray, Detection | None]:
    """Frame an image that *is* a face crop exactly like a detected face in a photo.

    Returns ``(crop, detection)``: the (side, side, 3) uint8 crop (side = ``size``, or the context size)
    (``with_context``: the context crop the training cache stores) and the face found, in the coordinates of
    ``image``; ``detection`` is None when the detector found
    no face, and the crop is then the whole image padded to a square and resized (its own framing).
    """
    import cv2

    if not framing.uses_detector:  # legacy: the image as it is
        return crop_face(image, None, size=context_size(size, framing.context) if with_context else size), None
    h, w = image.shape[:2]
    up = 1.0
    work = image
    if framing.min_side and max(h, w) < framing.min_side:
        up = framing.min_side / max(h, w)
        work = cv2.resize(image, (int(round(w * up)), int(round(h * up))), interpolation=cv2.INTER_CUBIC)
    padded, b = pad_for_detection(work, framing.pad)
    dets = detector.detect(padded)
    side = context_size(size, framing.context) if with_context else size
    if not dets:
        crop = crop_face(image, None, size=size)
        m = (side - size) // 2
        return (cv2.copyMakeBorder(crop, m, m, m, m, cv2.BORDER_REFLECT_101) if m else crop), None
    best = max(dets, key=lambda d: d.box.area * d.score)
    # Crop from the padded (flat-border) image, as the detector saw it: off-frame parts of the box get the
    # border colour rather than smeared edge pixels.
    crop = context_crop(padded, best, size, geometry, framing.context)
    x1, y1, x2, y2 = best.box.xyxy
    box = Box((x1 - b) / up, (y1 - b) / up, (x2 - b) / up, (y2 - b) / up)  # in the coordinates of ``image``
    lm = tuple(((x - b) / up, (y - b) / up) for x, y in best.landmarks) if best.landmarks else None
    return (crop if with_context else center_crop(crop[None], size)[0]), Detection(box, best.score, lm)


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) context crops -> their central (N, size, size, 3): exactly the canonical crops."""
    s = images.shape[1]
    if s == size:
        return images
    o = (s - size) // 2
    return images[:, o:o + size, o:o + size]


def to_model_input(crops: np.ndarray) -> np.ndarray:
    """uint8 crops (N, H, W, 3) -> float32 (N, 3, H, W) RGB in [0, 1]: the input of every backend."""
    x = np.asarray(crops)
    out = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
    out /= np.float32(255.0)
    return out

"""Typed, frozen results: Box, Prediction, Face, ImageResult. ``to_dict()`` is THE output schema."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SCHEMA_VERSION", "Box", "Prediction", "Face", "ImageResult"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixels of the original (EXIF-rotated) image."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2 - self.x1, self.y2 - self.y1)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Prediction:
    """One task's answer for one face.

    ``label`` is the class name (classification) or the age group (age); ``value`` is the class
    probability (classification) or the estimate in the task's unit (age: years); ``probs`` maps
    every label to its probability (None for a scalar regression head). Probabilities are calibrated when the
    model carries a calibration (``facemtl calibrate``). ``low``/``high`` (age): the conformal interval that
    contains the true age with probability ``level`` (None when the model has no age calibration).
    """

    task: str
    label: str | None
    value: float
    probs: dict[str, float] | None = None
    low: float | None = None
    high: float | None = None
    level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "value": round(float(self.value), 6)}
        if self.probs is not None:
            d["probs"] = {k: round(float(v), 6) for k, v in self.probs.items()}
        if self.low is not None and self.high is not None:
            d.update(low=round(float(self.low), 3), high=round(float(self.high), 3), level=self.level)
        return d


@dataclass(frozen=True)
class Face:
    """A detected face: its box, detection score, optional landmarks and per-task predictions.

    ``quality`` is "ok" or "low": "low" when something known to break the model was seen
    (``quality_reasons``, e.g. "small face (24 px)", "blurred", "turned away", "low detection score",
    "uncertain gender"; see :mod:`facemtl.quality`)."""

    box: Box
    score: float
    attributes: dict[str, Prediction]
    landmarks: tuple[tuple[float, float], ...] | None = None
    quality: str = "ok"
    quality_reasons: tuple[str, ...] = ()

    def __getitem__(self, task: str) -> Prediction:
        try:
            return self.attributes[task]
        except KeyError:
            raise KeyError(f"no prediction for task {task!r}; available: {', '.join(self.attributes)}") from None

    def __contains__(self, task: object) -> bool:
        return task in self.attributes

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box.xyxy],
            "score": round(float(self.score), 6),
        }
        if self.landmarks is not None:
            d["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks]
        d.update({name: p.to_dict() for name, p in self.attributes.items()})
        d.update(quality=self.quality, quality_reasons=list(self.quality_reasons))
        return d


@dataclass(frozen=True)
class ImageResult:
    """All faces found in one image."""

    source: str
    size_hw: tuple[int, int]
    faces: list[Face] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.faces)

    def __iter__(self) -> Iterator[Face]:
        return iter(self.faces)

    def __getitem__(self, i: int) -> Face:
        return self.faces[i]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source,
            "size_hw": list(self.size_hw),
            "faces": [f.to_dict() for f in self.faces],
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_rows(self) -> list[dict[str, Any]]:
        """This image's rows of the batch table (``facemtl batch`` CSV/Parquet, the video CSV,
        :func:`facemtl.to_dataframe`), from the same fields as :meth:`to_dict`: one per face, or one with
        ``n_faces`` 0 when there is none. Each task adds the columns of its kind (:func:`facemtl._rows.csv_columns`):
        a regression task its value, group and interval (``age``, ``age_group``, ``age_low``, ``age_high``), a
        classification task its label, probability and class probabilities (``emotion``, ``emotion_prob``,
        ``emotion.happy``...)."""
        from ._rows import safe_name
        from .tasks import get_task

        if not self.faces:
            return [{"file": safe_name(self.source), "face": "", "n_faces": 0, "error": ""}]
        rows = []
        for i, face in enumerate(self.faces):
            row: dict[str, Any] = {"file": safe_name(self.source), "face": i, "n_faces": len(self.faces), "error": "",
                                   "det_score": round(face.score, 4), "quality": face.quality,
                                   "quality_reasons": "; ".join(face.quality_reasons)}
            row.update(zip(("x1", "y1", "x2", "y2"), (round(v, 1) for v in face.box.xyxy)))
            for name, pred in face.attributes.items():
                if get_task(name).kind == "regression":
                    row[name], row[f"{name}_group"] = round(pred.value, 2), pred.label
                    if pred.low is not None and pred.high is not None:
                        row[f"{name}_low"], row[f"{name}_high"] = round(pred.low, 2), round(pred.high, 2)
                else:
                    row[name], row[f"{name}_prob"] = pred.label, round(pred.value, 4)
                    for lab, p in (pred.probs or {}).items():
                        row[f"{name}.{lab}"] = round(p, 4)
            rows.append(row)
        return rows

    def _pixels(self, image: Any = None, channels: str = "rgb") -> np.ndarray:
        """The RGB uint8 image the boxes belong to: ``image`` when given (anything ``analyze`` takes: a path,
        bytes, a PIL image or an array, BGR with ``channels="bgr"``), else the image kept by
        ``keep_image=True``, else ``source`` read again when it is a file.

        Raises:
            InvalidInputError: no pixels to be had (an array, bytes or PIL source analysed without
                ``keep_image=True`` and no ``image=``), or an image of another size than the one analysed.
        """
        from .errors import InvalidInputError
        from .image import load_image

        if image is not None:
            img, where = load_image(image, max_pixels=None, channels=channels), "the image passed"
        elif self.image is not None:
            return self.image
        elif _is_file(self.source):
            img, where = load_image(self.source, max_pixels=None), f"{self.source} (read again)"
        else:
            raise InvalidInputError(
                f"no image to draw on for {self.source!r}: the result keeps no pixels and its source is not a file "
                "to read again; pass the image (plot(image=...), save(path, image=...)) or analyse with "
                "keep_image=True")
        if tuple(img.shape[:2]) != tuple(self.size_hw):
            h, w = self.size_hw
            raise InvalidInputError(f"{where} is {img.shape[0]}x{img.shape[1]} (HxW) but {self.source!r} was "
                                    f"analysed at {h}x{w}: the boxes would not fit; pass the image analysed")
        return img

    def plot(self, image: Any = None, channels: str = "rgb") -> np.ndarray:
        """Draw boxes and labels; returns an RGB uint8 array.

        The pixels: ``image`` when given (a path, bytes, a PIL image or an array; BGR with ``channels="bgr"``),
        else the image kept by ``keep_image=True``, else ``source`` read again when it is a readable file.
        Without any of these (an array or bytes analysed without ``keep_image``) it raises InvalidInputError
        saying to pass ``image=`` or use ``keep_image=True``; an image of another size is refused too.
        """
        from ._draw import draw_faces

        return draw_faces(self._pixels(image, channels), self.faces)

    def save(self, path: str | Path, image: Any = None, channels: str = "rgb") -> Path:
        """Write the drawn image (:meth:`plot`, same ``image``/``channels``) to ``path`` (format from the
        extension); nothing is created when there are no pixels to draw on."""
        from PIL import Image

        drawn = self.plot(image, channels)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn).save(path)
        return path


def _is_file(source: str) -> bool:
    """Whether a result's ``source`` names a readable file (``<bytes>``, ``<array 64x64x3>`` do not)."""
    try:
        return bool(source) and Path(source).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False

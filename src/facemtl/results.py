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
    every label to its probability (None for a scalar regression head).
    """

    task: str
    label: str | None
    value: float
    probs: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"label": self.label, "value": round(float(self.value), 6)}
        if self.probs is not None:
            d["probs"] = {k: round(float(v), 6) for k, v in self.probs.items()}
        return d


@dataclass(frozen=True)
class Face:
    """A detected face: its box, detection score, optional landmarks and per-task predictions."""

    box: Box
    score: float
    attributes: dict[str, Prediction]
    landmarks: tuple[tuple[float, float], ...] | None = None

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

    def plot(self, image: np.ndarray | None = None) -> np.ndarray:
        """Draw boxes and labels; returns an RGB uint8 array (needs the image kept or passed in)."""
        from ._draw import draw_faces

        img = image if image is not None else self.image
        if img is None:
            raise ValueError("no image to draw on: pass image=... or analyse with keep_image=True")
        return draw_faces(img, self.faces)

    def save(self, path: str | Path, image: np.ndarray | None = None) -> Path:
        """Write the drawn image to ``path`` (format from the extension)."""
        from PIL import Image

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.plot(image)).save(path)
        return path

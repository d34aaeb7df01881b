"""The detector contract: :class:`Detection`, the :class:`FaceDetector` protocol and the registry."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from ..errors import unknown_name
from ..results import Box

__all__ = [
    "Detection",
    "FaceDetector",
    "register_detector",
    "create_detector",
    "list_detectors",
    "default_detector_name",
]

DEFAULT_DETECTOR = "retinaface"  # chosen by benchmarks/detectors.py: fewest misses, then speed


@dataclass(frozen=True)
class Detection:
    """One face found by a detector.

    Attributes:
        box: face box in pixels of the image given to ``detect``, clipped to that image.
        score: detector confidence in [0, 1].
        landmarks: (x, y) pixel points in the order left eye (image left), right eye, nose,
            mouth left, mouth right, truncated to what the detector provides; None if it gives none.
    """

    box: Box
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with a ``name`` and ``detect(image) -> list[Detection]``.

    ``image`` is RGB uint8 (H, W, 3); the result is sorted by score, highest first, and is empty
    (not an error) when the image has no face. A detector whose ``detect`` may run in several threads at once
    sets ``thread_safe = True`` (the analyzer then detects ahead in its worker threads); without it, calls are
    serialised.
    """

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


_D = TypeVar("_D", bound=Callable[..., FaceDetector])
_DETECTORS: dict[str, Callable[..., FaceDetector]] = {}


def register_detector(name: str) -> Callable[[_D], _D]:
    """Class decorator that makes a detector available to :func:`create_detector` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorator(factory: _D) -> _D:
        if name in _DETECTORS:
            raise ValueError(f"detector {name!r} is already registered")
        _DETECTORS[name] = factory
        return factory

    return decorator


def create_detector(name: str, **kwargs: object) -> FaceDetector:
    """Build the detector registered as ``name``; ``kwargs`` go to its constructor.

    Optional packages are imported here, not when :mod:`facemtl.detect` is imported.

    Args:
        name: one of :func:`list_detectors`.
        **kwargs: detector options, e.g. ``min_score=0.8`` or ``num_threads=2``.

    Raises:
        UnknownNameError: ``name`` is not registered.
        MissingDependencyError: the detector's optional package is not installed.

    Example:
        >>> det = create_detector("retinaface", min_score=0.8)
        >>> [d.box.xyxy for d in det.detect(load_image("group.jpg"))]
    """
    try:
        factory = _DETECTORS[name]
    except KeyError:
        raise unknown_name("detector", name, list_detectors()) from None
    return factory(**kwargs)


def list_detectors() -> list[str]:
    """Names of the registered detectors, sorted."""
    return sorted(_DETECTORS)


def default_detector_name() -> str:
    """The detector used when none is named (RetinaFace: see ``benchmarks/detectors.py``)."""
    return DEFAULT_DETECTOR

"""Face detectors behind one interface; ``create_detector(name)`` builds one by name.

Each adapter lives in its own module and imports its third-party package only when it is
constructed, so importing :mod:`facemtl.detect` is cheap.
"""
from __future__ import annotations

from . import blazeface, haar, none, retinaface  # noqa: F401 - register the adapters
from .base import (
    Detection,
    FaceDetector,
    create_detector,
    default_detector_name,
    list_detectors,
    register_detector,
)

__all__ = [
    "Detection",
    "FaceDetector",
    "create_detector",
    "default_detector_name",
    "list_detectors",
    "register_detector",
]

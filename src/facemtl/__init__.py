"""facemtl: one network, four answers (age, gender, emotion, ethnicity) about every face in a picture.

Example:
    >>> import facemtl
    >>> analyzer = facemtl.FaceAnalyzer.from_checkpoint()      # the shipped default model, offline
    >>> result = analyzer("photo.jpg")
    >>> [(f["age"].value, f["gender"].label) for f in result.faces]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._rows import to_dataframe
from .errors import (CheckpointError, DatasetError, DeviceError, FacemtlError, InvalidInputError,
                     MissingDependencyError, UnknownNameError)
from .models import create_model, list_backbones, load_checkpoint
from .results import Box, Face, ImageResult, Prediction
from .tasks import get_task, list_tasks

if TYPE_CHECKING:
    from .analyzer import FaceAnalyzer

__version__ = "0.2.0"
__all__ = ["FaceAnalyzer", "create_model", "load_checkpoint", "list_tasks", "get_task", "list_backbones", "Box",
           "Face", "ImageResult", "Prediction", "to_dataframe", "FacemtlError", "InvalidInputError",
           "UnknownNameError", "CheckpointError", "MissingDependencyError", "DatasetError", "DeviceError",
           "__version__"]


def __getattr__(name: str) -> Any:
    if name == "FaceAnalyzer":  # lazy: keeps `import facemtl` light (no OpenCV/onnxruntime until used)
        from .analyzer import FaceAnalyzer

        return FaceAnalyzer
    raise AttributeError(f"module 'facemtl' has no attribute {name!r}")

"""facemtl: one network, four answers (age, gender, emotion, ethnicity) about every face in a picture.

Example:
    >>> import facemtl
    >>> analyzer = facemtl.FaceAnalyzer.from_checkpoint()      # the shipped default model, offline
    >>> result = analyzer("photo.jpg")
    >>> [(f["age"].value, f["gender"].label) for f in result.faces]
"""
from __future__ import annotations

import os

# Before any OpenMP runtime loads (onnxruntime's, OpenCV's, torch's when installed): idle worker threads sleep
# instead of spinning, which on a small CPU otherwise starves the decoder's and detector's threads and other
# processes (measured: the Python API ran 3-7x slower than the CLI on a busy 2-core machine without it).
# A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from typing import TYPE_CHECKING, Any  # noqa: E402

from ._rows import to_dataframe  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    DatasetError,
    DeviceError,
    FacemtlError,
    InvalidInputError,
    MissingDependencyError,
    UnknownNameError,
)
from .models import load_model  # noqa: E402
from .results import Box, Face, ImageResult, Prediction  # noqa: E402
from .tasks import get_task, list_tasks  # noqa: E402

if TYPE_CHECKING:
    from .analyzer import FaceAnalyzer

from ._version import __version__  # noqa: E402

__all__ = ["FaceAnalyzer", "load_model", "create_model", "load_checkpoint", "list_tasks", "get_task",
           "list_backbones", "Box", "Face", "ImageResult", "Prediction", "to_dataframe", "FacemtlError",
           "InvalidInputError", "UnknownNameError", "CheckpointError", "ConfigError", "MissingDependencyError",
           "DatasetError", "DeviceError", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "FaceAnalyzer":  # lazy: keeps `import facemtl` light (no OpenCV/onnxruntime until used)
        from .analyzer import FaceAnalyzer

        return FaceAnalyzer
    if name in ("create_model", "list_backbones", "load_checkpoint"):  # PyTorch (the torch extra), on first use
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'facemtl' has no attribute {name!r}")

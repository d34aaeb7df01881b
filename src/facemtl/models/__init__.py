"""Models: the backend-neutral contract (:mod:`.base`), ONNX Runtime inference (:mod:`.onnx`, the default), and
the PyTorch network, backbones and checkpoints (:mod:`.factory`, :mod:`.multitask`; need the ``torch`` extra).

Importing this package imports neither torch nor onnxruntime: the PyTorch names load on first use.
"""
from __future__ import annotations

from typing import Any

from .base import FaceModel, as_face_model, predict_crops_raw
from .load import load_model

__all__ = ["FaceModel", "as_face_model", "predict_crops_raw", "load_model", "Backbone", "create_backbone",
           "list_backbones", "register_backbone", "ModelConfig", "create_model", "load_checkpoint",
           "save_checkpoint", "MultiTaskNet", "OnnxModel", "TorchModel"]

_LAZY = {
    "Backbone": "backbones", "create_backbone": "backbones", "list_backbones": "backbones",
    "register_backbone": "backbones", "ModelConfig": "factory", "create_model": "factory",
    "load_checkpoint": "factory", "save_checkpoint": "factory", "MultiTaskNet": "multitask",
    "OnnxModel": "onnx", "TorchModel": "torch_model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        from .._optional import require

        if _LAZY[name] not in ("onnx",):
            require("torch", extra="torch")  # names the extra to install instead of a bare ImportError
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

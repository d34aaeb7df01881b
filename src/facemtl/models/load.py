"""One resolver for "which weights": a bundled name, an ``.onnx`` file or a PyTorch checkpoint -> a FaceModel."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, MissingDependencyError
from .base import FaceModel

__all__ = ["load_model", "resolve_weights", "require_torch_for", "TORCH_SUFFIXES"]

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")


def resolve_weights(model: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``model`` -> (file, backend): None or a bundled name (``facemtl.weights.list_weights()``) gives the
    bundled file; a path gives itself, its backend read from the suffix (``.onnx``: onnxruntime, ``.pt``/``.pth``/
    ``.ckpt``: pytorch).

    Raises:
        CheckpointError: a path that does not exist, or a suffix that is neither.
        UnknownNameError: a name with no path separator or suffix that is not a bundled model.
    """
    from .. import weights

    if model is None or (isinstance(model, str) and model in weights.list_weights()):
        entry = weights.get_weights(model)
        return entry.path(), entry.backend
    path = Path(model)
    suffix = path.suffix.lower()
    if not path.exists():
        if not suffix and os.sep not in str(model) and "/" not in str(model):
            weights.get_weights(str(model))  # raises: not a bundled name, and no such file
        raise CheckpointError(f"model file not found: {path}")
    if suffix == ".onnx":
        return path, "onnxruntime"
    if suffix in TORCH_SUFFIXES:
        return path, "pytorch"
    raise CheckpointError(f"cannot tell the format of model file {path}: expected .onnx (ONNX Runtime) or "
                          f"{'/'.join(TORCH_SUFFIXES)} (PyTorch), or a bundled name "
                          f"({', '.join(weights.list_weights())})")


def load_model(model: str | os.PathLike | None = None, *, tasks: str | Sequence[str] | None = None,
               device: str | None = "cpu", threads: int | None = None) -> tuple[FaceModel, Path]:
    """Load inference weights as a :class:`~facemtl.models.base.FaceModel`; returns (model, file).

    Args:
        model: None (the bundled default, ONNX Runtime), a bundled name, a ``.onnx`` file or a PyTorch
            checkpoint (needs the ``torch`` extra).
        tasks: run only these tasks ("age,gender" or a list).
        device: auto, cpu, cuda or cuda:N.
        threads: CPU threads of the backend (None: its default).

    Raises:
        MissingDependencyError: a PyTorch checkpoint without torch installed (names the extra).
        CheckpointError: a missing, corrupt or foreign file.
    """
    path, backend = resolve_weights(model)
    if backend == "onnxruntime":
        from .onnx import OnnxModel

        return OnnxModel(path, threads=threads, tasks=tasks, device=device), path
    require_torch_for(path)
    return _load_torch(path, tasks, device, threads), path


def require_torch_for(path: Path) -> None:
    """Raise MissingDependencyError naming the extra when the PyTorch checkpoint ``path`` cannot be run here."""
    from .._optional import available

    if not available("torch"):
        raise MissingDependencyError(
            f"{path} is a PyTorch checkpoint, and PyTorch is not installed: install it with "
            f'pip install "facemtl[torch]", or use an ONNX model (the default, or `facemtl export`)')


def _load_torch(path: Path, tasks: Any, device: Any, threads: int | None) -> Any:
    import torch

    from .._device import resolve_device
    from .factory import load_checkpoint
    from .torch_model import TorchModel

    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    net, meta = load_checkpoint(path, tasks=tasks, device=dev)
    return TorchModel(net, meta, device=dev)

"""The model contract both inference backends keep (PyTorch and ONNX Runtime), and the one inference function.

A :class:`FaceModel` takes a float32 batch ``(B, 3, S, S)`` of RGB in [0, 1] (the canonical crops of
:mod:`facemtl.preprocess`) and returns raw head outputs ``{task: (B, W)}`` as numpy arrays; the task specs it
carries decode them (:meth:`facemtl.tasks.TaskSpec.decode_raw`). :class:`~facemtl.models.onnx.OnnxModel` and
:class:`~facemtl.models.torch_model.TorchModel` implement it; this module imports neither torch nor
onnxruntime.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..tasks import TaskSpec

__all__ = ["FaceModel", "as_face_model", "is_torch_module", "predict_crops_raw"]


@runtime_checkable
class FaceModel(Protocol):
    """What every inference backend offers.

    Attributes:
        tasks: the task specs of the heads it runs, in output order.
        input_size: side S of the square input.
        preprocess: the preprocessing record the weights were trained with (``input_size``, ``crop``,
            ``framing``; see :func:`facemtl.preprocess.crop_settings`).
        backend: "onnxruntime" or "pytorch".
        metadata: everything the file says about itself (tasks, preprocess, model_config, calibration,
            train_config...), JSON-like.
    """

    tasks: tuple[TaskSpec, ...]
    input_size: int
    preprocess: dict[str, Any]
    backend: str
    metadata: dict[str, Any]

    def predict(self, x: np.ndarray, flip_tta: bool = False) -> dict[str, np.ndarray]:
        """float32 (B, 3, S, S) RGB in [0, 1] -> {task: float32 (B, W)}; ``flip_tta`` averages each face with its
        mirror image (one pass for both)."""
        ...


def is_torch_module(model: Any) -> bool:
    """Whether ``model`` is a torch ``nn.Module`` (checked without importing torch)."""
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(model).__mro__)


def as_face_model(model: Any, device: Any = None) -> FaceModel:
    """``model`` as a :class:`FaceModel`: a bare ``MultiTaskNet`` (training, tests) is wrapped in a
    :class:`~facemtl.models.torch_model.TorchModel` on ``device`` (None: where its weights are)."""
    if is_torch_module(model):
        from .torch_model import TorchModel

        return TorchModel(model, device=device)
    return model


def predict_crops_raw(model: Any, crops: Sequence[np.ndarray] | np.ndarray, size: int, batch_size: int = 128,
                      flip_tta: bool = True, device: Any = None) -> dict[str, np.ndarray]:
    """Raw head outputs (numpy) for uint8 face crops (N, S, S, 3): the ONE inference function of training-time
    validation, ``facemtl evaluate`` and :class:`facemtl.FaceAnalyzer`, whichever backend runs the model.

    Crops larger than ``size`` are context crops from the training cache; their centre is the canonical crop
    (:func:`facemtl.preprocess.center_crop`). ``model`` is a :class:`FaceModel` or a bare ``MultiTaskNet``.
    """
    from ..preprocess import center_crop, to_model_input

    runner = as_face_model(model, device)
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(crops), batch_size):
        x = to_model_input(center_crop(np.asarray(crops[i:i + batch_size]), size))
        for k, v in runner.predict(x, flip_tta=flip_tta).items():
            outs.setdefault(k, []).append(np.asarray(v, dtype=np.float32))
    return {k: np.concatenate(v) for k, v in outs.items()}

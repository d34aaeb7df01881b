"""OnnxModel: an exported file run by ONNX Runtime, a drop-in for ``MultiTaskNet.predict``.

It reads the task specs and preprocessing from the file's metadata (written by
:func:`facemtl.export.export_onnx`), so :func:`facemtl.analyzer.decode_outputs` decodes its outputs
unchanged and :class:`~facemtl.analyzer.FaceAnalyzer` can use it in place of the PyTorch model.
Only ``onnxruntime`` is needed, not ``onnx``.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._optional import require
from ..errors import CheckpointError, InvalidInputError
from ..models.factory import ModelConfig
from ..tasks import TaskSpec, get_task, list_tasks

__all__ = ["OnnxModel", "read_metadata"]

_REQUIRED = ("tasks", "preprocess")


def _session_options(ort: Any, threads: int | None) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)  # 0: onnxruntime's default (one per physical core)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def _decode_metadata(raw: dict[str, str], path: Path) -> dict[str, Any]:
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise CheckpointError(f"{path} is not a facemtl ONNX model: metadata {', '.join(missing)} missing "
                              "(export it with `facemtl export`)")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value  # a foreign, non-JSON entry: keep it as text
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The facemtl metadata of an exported file, JSON-decoded (tasks, preprocess, model_config, parity...)."""
    ort = require("onnxruntime", extra="export")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX model not found: {path}")
    sess = ort.InferenceSession(str(path), _session_options(ort, 1), providers=["CPUExecutionProvider"])
    return _decode_metadata(dict(sess.get_modelmeta().custom_metadata_map), path)


class OnnxModel:
    """An exported facemtl model run by ONNX Runtime; ``predict`` matches ``MultiTaskNet.predict``.

    The session is created once. Attributes mirror the parts of MultiTaskNet that inference uses:
    ``tasks`` (TaskSpecs from the file), ``config`` (``.input_size``, backbone...), ``preprocess``.

    Args:
        path: ``.onnx`` file written by :func:`facemtl.export.export_onnx` (or quantized from one).
        threads: onnxruntime intra-op threads; None lets onnxruntime choose.
        tasks: run only these tasks ("age,gender" or a list); each must be in the file.
        providers: onnxruntime execution providers (default: CPU).

    Raises:
        CheckpointError: missing file, no facemtl metadata, or tasks/labels that contradict the request.

    Example:
        >>> model = OnnxModel("default.onnx", threads=2)
        >>> raw = model.predict(torch.rand(4, 3, 112, 112))      # {"age": (4, 101), "gender": (4, 2), ...}
        >>> decode_outputs(model.tasks, raw)
    """

    training = False  # duck-typing with nn.Module for code that checks or sets the mode

    def __init__(self, path: str | Path, threads: int | None = None, tasks: str | Iterable[str] | None = None,
                 providers: Sequence[str] | None = None) -> None:
        ort = require("onnxruntime", extra="export")
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model not found: {self.path}")
        self.threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), _session_options(ort, threads),
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
            raise CheckpointError(f"cannot load ONNX model {self.path}: {exc}") from None
        self.metadata = _decode_metadata(dict(self.session.get_modelmeta().custom_metadata_map), self.path)
        specs = [TaskSpec.from_dict(d) for d in self.metadata["tasks"]]
        outputs = [o.name for o in self.session.get_outputs()]
        absent = [s.name for s in specs if s.name not in outputs]
        if absent:
            raise CheckpointError(f"{self.path}: metadata lists task(s) {', '.join(absent)} but the graph outputs "
                                  f"only {', '.join(outputs)}")
        self.tasks: tuple[TaskSpec, ...] = tuple(self._select(specs, tasks))
        self.input_name = self.session.get_inputs()[0].name
        self.preprocess: dict[str, Any] = dict(self.metadata["preprocess"])
        self.input_size = int(self.preprocess["input_size"])
        self.config = self._config(self.metadata.get("model_config") or {})

    def _select(self, specs: list[TaskSpec], tasks: str | Iterable[str] | None) -> list[TaskSpec]:
        if tasks is None:
            return specs
        wanted = [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) else list(tasks)
        by_name = {s.name: s for s in specs}
        for name in wanted:
            if name not in by_name:
                raise CheckpointError(f"task {name!r} is not in ONNX model {self.path}; it has: {', '.join(by_name)}")
            if name in list_tasks() and get_task(name).labels != by_name[name].labels:
                raise CheckpointError(f"task {name!r}: ONNX model labels {list(by_name[name].labels)} contradict "
                                      f"the registry's {list(get_task(name).labels)}")
        return [s for s in specs if s.name in wanted]

    def _config(self, cfg: dict[str, Any]) -> ModelConfig:
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        cfg["input_size"] = self.input_size
        cfg.setdefault("tasks", tuple(s.name for s in self.tasks))
        try:
            return ModelConfig(**cfg)
        except Exception:  # noqa: BLE001 - a task or backbone this install does not register: keep the file's word
            config = ModelConfig.__new__(ModelConfig)
            config.__dict__.update(cfg)
            return config

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.tasks]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = self.output_names
        return dict(zip(names, self.session.run(names, {self.input_name: x}), strict=True))

    def _as_array(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        arr = x.detach().to("cpu", torch.float32).numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        s = self.input_size
        if arr.ndim != 4 or arr.shape[1] != 3 or arr.shape[2:] != (s, s):
            raise InvalidInputError(f"expected a float (B, 3, {s}, {s}) RGB batch in [0, 1], got shape "
                                    f"{tuple(arr.shape)}")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def __call__(self, x: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """Raw outputs {task: (B, W)}, as ``MultiTaskNet.forward``."""
        return {k: torch.from_numpy(v) for k, v in self._run(self._as_array(x)).items()}

    def predict(self, x: torch.Tensor | np.ndarray, flip_tta: bool = False) -> dict[str, torch.Tensor]:
        """Raw outputs for inference; ``flip_tta`` also runs the mirrored faces and averages the outputs.

        Args:
            x: float32 (B, 3, H, W) RGB in [0, 1] (a torch tensor on any device, or an ndarray).

        Returns:
            {task: (B, W)} CPU float32 tensors, the same values as ``MultiTaskNet.predict``.
        """
        arr = self._as_array(x)
        if not flip_tta:
            return {k: torch.from_numpy(v) for k, v in self._run(arr).items()}
        b = arr.shape[0]
        out = self._run(np.ascontiguousarray(np.concatenate([arr, arr[..., ::-1]])))  # one pass for both views
        return {k: torch.from_numpy((v[:b] + v[b:]) / 2) for k, v in out.items()}

    # nn.Module look-alikes, so code written for the PyTorch model keeps working
    def eval(self) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self

    def __repr__(self) -> str:
        return (f"OnnxModel({str(self.path)!r}, tasks={self.output_names}, input_size={self.input_size}, "
                f"threads={self.threads})")

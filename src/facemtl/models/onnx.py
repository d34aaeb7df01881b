"""OnnxModel: an exported facemtl file run by ONNX Runtime, the default inference backend (no torch).

It reads the task specs and preprocessing from the file's metadata (written by
:func:`facemtl.export.export_onnx`), so :func:`facemtl.analyzer.decode_outputs` decodes its outputs
unchanged; it keeps the :class:`~facemtl.models.base.FaceModel` contract. Only ``onnxruntime`` is needed
(a core dependency), not ``onnx`` or torch.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import CheckpointError, InvalidInputError
from ..tasks import TaskSpec, get_task, list_tasks

__all__ = ["OnnxModel", "read_metadata"]

_REQUIRED = ("tasks", "preprocess")


def _session_options(ort: Any, threads: int | None) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)  # 0: onnxruntime's default (one per physical core)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Idle ONNX Runtime workers sleep instead of spinning: on a small CPU spinning starves the detector's and
    # the decoder's threads (and other processes). Measured: no cost to the model's own latency.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _providers(device: str | None) -> list[str]:
    """ONNX Runtime execution providers for a device name (auto, cpu, cuda, cuda:N)."""
    from .._device import resolve_device_name

    if resolve_device_name(device or "cpu", "onnxruntime") == "cpu":
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


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
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX model not found: {path}")
    try:
        sess = ort.InferenceSession(str(path), _session_options(ort, 1), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
        raise CheckpointError(f"cannot load ONNX model {path}: {_first_line(exc)}") from None
    return _decode_metadata(dict(sess.get_modelmeta().custom_metadata_map), path)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class OnnxModel:
    """An exported facemtl model run by ONNX Runtime (a :class:`~facemtl.models.base.FaceModel`).

    The session is created once. ``tasks`` (TaskSpecs from the file), ``preprocess``, ``input_size``, and
    ``config`` (the file's model description: ``.backbone``, ``.input_size``...) come from the metadata.

    Args:
        path: ``.onnx`` file written by :func:`facemtl.export.export_onnx` (or quantized from one).
        threads: onnxruntime intra-op threads; None lets onnxruntime choose.
        tasks: run only these tasks ("age,gender" or a list); each must be in the file.
        device: "cpu" (default), "auto" or "cuda[:N]" (needs an onnxruntime with the CUDA provider).
        providers: onnxruntime execution providers (overrides ``device``).

    Raises:
        CheckpointError: missing file, no facemtl metadata, or tasks/labels that contradict the request.

    Example:
        >>> model = OnnxModel("default.onnx", threads=2)
        >>> raw = model.predict(np.random.rand(4, 3, 112, 112).astype("float32"))  # {"age": (4, 101), ...}
        >>> decode_outputs(model.tasks, raw)
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, tasks: str | Iterable[str] | None = None,
                 providers: Sequence[str] | None = None, device: str | None = None) -> None:
        import onnxruntime as ort
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model not found: {self.path}")
        self.threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), _session_options(ort, threads),
                                                providers=list(providers or _providers(device)))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
            raise CheckpointError(f"cannot load ONNX model {self.path}: {_first_line(exc)} (a corrupt or "
                                  "truncated file? re-export it with `facemtl export`)") from None
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

    def _config(self, cfg: dict[str, Any]) -> SimpleNamespace:
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        cfg["input_size"] = self.input_size
        cfg.setdefault("tasks", tuple(s.name for s in self.tasks))
        return SimpleNamespace(**cfg)

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.tasks]

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        names = self.output_names
        return dict(zip(names, self.session.run(names, {self.input_name: x}), strict=True))

    def _as_array(self, x: Any) -> np.ndarray:
        if hasattr(x, "detach"):  # a torch tensor (tests, parity checks): no torch import needed here
            x = x.detach().cpu().float().numpy()
        arr = np.asarray(x)
        s = self.input_size
        if arr.ndim != 4 or arr.shape[1] != 3 or arr.shape[2:] != (s, s):
            raise InvalidInputError(f"expected a float (B, 3, {s}, {s}) RGB batch in [0, 1], got shape "
                                    f"{tuple(arr.shape)}")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def __call__(self, x: Any) -> dict[str, np.ndarray]:
        """Raw outputs {task: (B, W)} numpy, as ``MultiTaskNet.forward``."""
        return self._run(self._as_array(x))

    def predict(self, x: Any, flip_tta: bool = False) -> dict[str, np.ndarray]:
        """Raw outputs for inference; ``flip_tta`` also runs the mirrored faces and averages the outputs.

        Args:
            x: float32 (B, 3, H, W) RGB in [0, 1] (an ndarray, or a torch tensor on any device).

        Returns:
            {task: (B, W)} float32 numpy arrays, the same values as ``MultiTaskNet.predict``.
        """
        arr = self._as_array(x)
        if not flip_tta:
            return self._run(arr)
        b = arr.shape[0]
        out = self._run(np.ascontiguousarray(np.concatenate([arr, arr[..., ::-1]])))  # one pass for both views
        return {k: (v[:b] + v[b:]) / 2 for k, v in out.items()}

    def __repr__(self) -> str:
        return (f"OnnxModel({str(self.path)!r}, tasks={self.output_names}, input_size={self.input_size}, "
                f"threads={self.threads})")

"""Export a MultiTaskNet to ONNX: one input ``image``, one output per task, self-describing metadata.

The graph takes exactly what :class:`~facemtl.models.multitask.MultiTaskNet` takes, a float32
``(B, 3, H, W)`` RGB batch in [0, 1] (the backbone's mean/std are applied inside the graph), and returns
the raw head outputs in task order, each output named after its task. The task specs and the
preprocessing travel in ``metadata_props`` as JSON strings, so a runtime reads label orders, the input
size and the crop geometry from the file instead of guessing them.
"""
from __future__ import annotations

import copy
import inspect
import io
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._hashing import file_sha256
from .._optional import require
from ..crop import DEFAULT_GEOMETRY
from ..models.factory import load_checkpoint
from ..models.multitask import MultiTaskNet
from ._meta import INPUT_NAME, METADATA_FORMAT, ExportError, set_metadata

__all__ = [
    "INPUT_NAME",
    "METADATA_FORMAT",
    "PARITY_ATOL",
    "ExportError",
    "ParityReport",
    "export_onnx",
    "verify_onnx",
]

# ONNX Runtime (fp32, all graph optimisations on) vs PyTorch fp32 on the same random batch: the largest
# absolute difference of any raw output (logits / age-bin logits). Measured on the default lite0 model:
# about 5e-6 (fused conv+BN and a different summation order); 1e-4 leaves a 20x margin and still catches
# any real mistake (a wrong op, a missing normalisation, a train-mode BatchNorm), which is >= 1e-2.
PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime vs PyTorch on seeded random inputs.

    Attributes:
        max_abs_diff: per task, the largest |onnxruntime - torch| over every raw output element.
        atol: the tolerance the check used.
        batch_sizes: the batch sizes that were run (two different ones exercise the dynamic batch axis).
    """

    max_abs_diff: dict[str, float]
    atol: float
    batch_sizes: tuple[int, ...]
    onnxruntime_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values()) if self.max_abs_diff else 0.0

    @property
    def passed(self) -> bool:
        return self.worst <= self.atol

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        d["passed"] = self.passed
        return d

    def __str__(self) -> str:
        per_task = ", ".join(f"{k} {v:.1e}" for k, v in self.max_abs_diff.items())
        batches = " and ".join(map(str, self.batch_sizes))
        verdict = "ok" if self.passed else "FAILED"
        return (f"max |onnxruntime - torch| = {self.worst:.2e} ({per_task}) on random inputs, batch {batches}: "
                f"{verdict} (atol {self.atol:g})")


class _TupleOutputs(nn.Module):
    """ONNX wants positional outputs: the task dict as a tuple in task order."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(t.name for t in model.tasks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (B, 3, H, W) -> ((B, W_task), ...)
        out = self.model(x)
        return tuple(out[name] for name in self.names)


def _resolve(model_or_checkpoint: MultiTaskNet | str | Path | None) -> tuple[MultiTaskNet, dict[str, Any], Path | None]:
    if isinstance(model_or_checkpoint, MultiTaskNet):
        return model_or_checkpoint, {}, None
    path = model_or_checkpoint
    if path is None:
        from ..weights import default_checkpoint_path

        path = default_checkpoint_path()
    path = Path(path)
    model, meta = load_checkpoint(path, device="cpu")
    return model, meta, path


def _preprocess(model: MultiTaskNet, meta: dict[str, Any]) -> dict[str, Any]:
    pre = dict(meta.get("preprocess") or {})
    config = getattr(model, "config", None)
    pre.setdefault("input_size", getattr(config, "input_size", None))
    pre.setdefault("crop", DEFAULT_GEOMETRY.to_dict())
    pre.setdefault("mean", [float(v) for v in model.mean.flatten()])
    pre.setdefault("std", [float(v) for v in model.std.flatten()])
    pre["pixel_scale"] = "rgb float in [0, 1]; mean/std applied inside the model"
    pre["input_name"] = INPUT_NAME
    pre["layout"] = "NCHW"
    if not pre["input_size"]:
        raise ExportError("the model has no input size (model.config.input_size); build it with create_model")
    return pre


def _model_config(model: MultiTaskNet, meta: dict[str, Any]) -> dict[str, Any]:
    if meta.get("model_config"):
        cfg = dict(meta["model_config"])
    else:
        config = getattr(model, "config", None)
        cfg = asdict(config) if config is not None else {"backbone": model.backbone_name}
    cfg["tasks"] = [t.name for t in model.tasks]  # what the file really outputs
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def _torch_export(wrapper: nn.Module, dummy: torch.Tensor, f: Any, names: Sequence[str], opset: int,
                  dynamic_batch: bool) -> None:
    kwargs: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # The TorchScript exporter: the torch.export-based one needs onnxscript, which facemtl does not require,
        # and this plain CNN gains nothing from it.
        kwargs["dynamo"] = False
    axes = {n: {0: "batch"} for n in (INPUT_NAME, *names)} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # "legacy TorchScript-based exporter"
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(wrapper, (dummy,), f, input_names=[INPUT_NAME], output_names=list(names),
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, **kwargs)


def verify_onnx(model: MultiTaskNet, onnx_model: str | Path | bytes, atol: float = PARITY_ATOL,
                batch_sizes: Sequence[int] = (1, 3), input_size: int | None = None, seed: int = 0) -> ParityReport:
    """Run seeded random ``(B, 3, H, W)`` inputs through ONNX Runtime and PyTorch and compare raw outputs.

    Args:
        onnx_model: file path or serialized bytes.
        batch_sizes: batch sizes to run (a fixed-batch export supports only its own).

    Returns:
        The per-task largest absolute difference; ``report.passed`` is ``worst <= atol``.
    """
    ort = require("onnxruntime", extra="export")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    session = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    given = input_size or model.config.input_size
    assert given is not None  # create_model fills in the input size of the config it sets on the net
    size = int(given)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    worst = {n: 0.0 for n in names}
    try:
        with torch.no_grad():
            for b in batch_sizes:
                x = torch.rand(b, 3, size, size, generator=gen)
                ref = model(x.to(next(model.parameters()).device))
                got = session.run(names, {INPUT_NAME: x.numpy()})
                for name, arr in zip(names, got, strict=True):
                    diff = float(np.max(np.abs(arr - ref[name].float().cpu().numpy())))
                    worst[name] = max(worst[name], diff if np.isfinite(diff) else float("inf"))
    finally:
        model.train(was_training)
    return ParityReport(worst, float(atol), tuple(int(b) for b in batch_sizes), ort.__version__)


def export_onnx(model_or_checkpoint: MultiTaskNet | str | Path | None, path: str | Path, opset: int = 17,
                dynamic_batch: bool = True, verify: bool = True, atol: float = PARITY_ATOL) -> Path:
    """Export a model (or a checkpoint file; None: the bundled default) to a self-describing ONNX file.

    Input ``image``: float32 (B, 3, H, W) RGB in [0, 1]. Outputs: one per task, named after it, in task
    order, with the same raw values as ``MultiTaskNet.forward``. ``metadata_props`` holds JSON strings:
    ``tasks`` ([TaskSpec.to_dict()]), ``preprocess`` (input size, crop geometry, mean/std, pixel scale),
    ``model_config``, ``facemtl_version``, ``source_checkpoint``, ``source_sha256`` and ``parity`` (the
    check below).

    Args:
        opset: ONNX opset version.
        dynamic_batch: make the batch axis symbolic (otherwise the file runs batch 1 only).
        verify: compare ONNX Runtime with PyTorch on random inputs (batch 1 and 3) before writing.
        atol: largest absolute difference of any raw output that the check accepts (see ``PARITY_ATOL``).

    Returns:
        The written path.

    Raises:
        ExportError: the export failed or the parity check did not pass (nothing is written).
        MissingDependencyError: ``onnx`` or ``onnxruntime`` is not installed.

    Example:
        >>> path = export_onnx("runs/exp1/best.pt", "best.onnx")
        >>> facemtl.FaceAnalyzer.from_checkpoint(path)("photo.jpg")
    """
    onnx = require("onnx", extra="export")
    from .._version import __version__

    model, meta, source = _resolve(model_or_checkpoint)
    pre = _preprocess(model, meta)
    size = int(pre["input_size"])
    names = [t.name for t in model.tasks]
    if next(model.parameters()).device.type != "cpu":
        model = copy.deepcopy(model).cpu()
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        _torch_export(_TupleOutputs(model), torch.rand(1, 3, size, size), buf, names, opset, dynamic_batch)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed (opset {opset}): {exc}") from exc
    finally:
        model.train(was_training)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    props = {
        "format": METADATA_FORMAT,
        "tasks": [t.to_dict() for t in model.tasks],
        "preprocess": pre,
        "model_config": _model_config(model, meta),
        "facemtl_version": __version__,
        "source_checkpoint": source.name if source else None,
        "source_sha256": file_sha256(source) if source else None,
    }
    if meta.get("calibration"):  # the checkpoint's temperatures and age intervals travel with the weights
        props["calibration"] = meta["calibration"]
    if verify:
        report = verify_onnx(model, proto.SerializeToString(), atol=atol,
                             batch_sizes=(1, 3) if dynamic_batch else (1,), input_size=size)
        if not report.passed:
            raise ExportError(f"ONNX export does not match PyTorch: {report}. Try another --opset, or report a bug "
                              "with the model config")
        props["parity"] = report.to_dict()
    set_metadata(proto, props)
    proto.producer_name = "facemtl"
    proto.doc_string = f"facemtl {__version__} multi-task face model ({', '.join(names)})"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)  # atomic: a crash never leaves a half-written model
    return path

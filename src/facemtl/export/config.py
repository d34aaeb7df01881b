"""The settings of an export (``facemtl export``): :class:`ExportConfig`, checked when made. Needs neither
PyTorch nor ``onnx``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import unknown_name
from .quantize import QUANT_METHODS

__all__ = ["FORMATS", "QUANTIZE", "ExportConfig"]

FORMATS = ("onnx",)
QUANTIZE = ("int8",)


@dataclass(frozen=True)
class ExportConfig:
    """What to export, how, and where. Frozen: change a copy with ``dataclasses.replace`` (checked again).

    Attributes:
        model: the checkpoint to export; None: the model shipped with facemtl.
        format: output format (``onnx``).
        quantize: None, or ``int8``: also quantize (the output is then the int8 file).
        method: int8 method, ``static`` (calibrated on ``calibration``) or ``dynamic`` (see
            :func:`facemtl.export.quantize_int8`).
        calibration: face crops (folders or images) for static int8 calibration.
        calibration_size: at most this many calibration images.
        out: the output file; None: ``<checkpoint stem>.onnx`` (or ``.int8.onnx``) in the current folder.
        opset: ONNX opset.
        fixed_batch: batch size 1 only (else a dynamic batch axis).
    """

    model: str | None = None
    format: str = "onnx"
    quantize: str | None = None
    method: str = "static"
    calibration: tuple[str, ...] | None = None
    calibration_size: int = 256
    out: str | None = None
    opset: int = 17
    fixed_batch: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise unknown_name("format", self.format, FORMATS)
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise unknown_name("quantize", self.quantize, QUANTIZE)
        if self.method not in QUANT_METHODS:
            raise unknown_name("method", self.method, QUANT_METHODS)
        if isinstance(self.calibration, (str, Path)):
            object.__setattr__(self, "calibration", (str(self.calibration),))
        elif self.calibration is not None:
            object.__setattr__(self, "calibration", tuple(str(c) for c in self.calibration))

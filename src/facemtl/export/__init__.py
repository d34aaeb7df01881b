"""Export to ONNX, int8 quantization and an ONNX Runtime inference backend (extra: export).

Example:
    >>> from facemtl.export import export_onnx, quantize_int8, OnnxModel
    >>> path = export_onnx(None, "default.onnx")            # the bundled default model
    >>> quantize_int8(path, "default.int8.onnx")
    >>> model = OnnxModel("default.int8.onnx", threads=2)   # drop-in for MultiTaskNet.predict

``onnx`` is imported only by :func:`export_onnx` and :func:`quantize_int8`; running an exported file
needs only ``onnxruntime``.
"""
from __future__ import annotations

from .onnx import PARITY_ATOL, ExportError, ParityReport, export_onnx, verify_onnx
from .quantize import QUANT_METHODS, quantize_int8
from .runtime import OnnxModel, read_metadata

__all__ = [
           "PARITY_ATOL",
           "QUANT_METHODS",
           "ExportError",
           "OnnxModel",
           "ParityReport",
           "export_onnx",
           "quantize_int8",
           "read_metadata",
           "verify_onnx",
]

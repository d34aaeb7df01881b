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

from typing import Any

__all__ = [
           "PARITY_ATOL",
           "QUANT_METHODS",
           "ExportConfig",
           "ExportError",
           "OnnxModel",
           "ParityReport",
           "export_onnx",
           "quantize_int8",
           "read_metadata",
           "verify_onnx",
]

# Exporting reads a PyTorch checkpoint (the torch extra) and writes with ``onnx`` (the export extra): the names
# load on first use, so `facemtl --help` and `import facemtl.export` need neither.
_HOME = {"PARITY_ATOL": ".onnx", "ExportConfig": ".config", "ExportError": "._meta", "ParityReport": ".onnx",
         "export_onnx": ".onnx", "verify_onnx": ".onnx", "QUANT_METHODS": ".quantize", "quantize_int8": ".quantize",
         "OnnxModel": "..models.onnx", "read_metadata": "..models.onnx"}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        if _HOME[name] == ".onnx":
            from .._optional import require

            require("torch", extra="export")
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

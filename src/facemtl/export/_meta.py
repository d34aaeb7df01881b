"""What every facemtl ONNX file shares (input name, metadata format and writer, the export error), without torch:
quantizing an exported file needs only ``onnx`` and ``onnxruntime``."""
from __future__ import annotations

import json
from typing import Any

from ..errors import FacemtlError

__all__ = ["INPUT_NAME", "METADATA_FORMAT", "ExportError", "set_metadata"]

INPUT_NAME = "image"
METADATA_FORMAT = "facemtl-onnx/1"


class ExportError(FacemtlError):
    """The exported file does not reproduce the PyTorch model, or the export itself failed."""


def set_metadata(proto: Any, props: dict[str, Any]) -> None:
    """Write ``props`` into an ``onnx.ModelProto``'s metadata_props as JSON strings (replacing same keys)."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in keep + [(k, json.dumps(v)) for k, v in props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value

"""The model files shipped inside the package (never downloaded): a catalogue, each entry verified by SHA-256.

``default`` (ONNX Runtime, int8) is what ``predict``, ``batch``, ``serve`` and ``video`` run, with no torch;
``default-pytorch`` is the same model's PyTorch checkpoint (training from it, Grad-CAM, ``facemtl export``).

Example:
    >>> from facemtl.weights import list_weights, get_weights
    >>> list_weights()
    ['default', 'default-pytorch']
    >>> get_weights("default").meta["backend"], get_weights("default").path()
    ('onnxruntime', PosixPath('.../facemtl/weights/default_lite0_112.int8.onnx'))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .._hashing import file_sha256
from ..errors import CheckpointError, unknown_name

__all__ = ["Weights", "list_weights", "get_weights", "default_checkpoint_path", "CATALOGUE", "DEFAULT_INFO"]

_HERE = Path(__file__).parent
CATALOGUE: dict[str, Any] = json.loads((_HERE / "catalogue.json").read_text())
DEFAULT_NAME: str = CATALOGUE["default"]
PYTORCH_NAME = "default-pytorch"


@dataclass(frozen=True)
class Weights:
    """One bundled model file: its catalogue name and metadata (file, sha256, backend, input_size, licence...)."""

    name: str
    meta: dict[str, Any]

    @property
    def backend(self) -> str:
        return str(self.meta["backend"])

    def path(self, verify: bool = True) -> Path:
        """The file inside the installation; raises CheckpointError if it is missing or (``verify``) corrupted."""
        return _verified(self.name, _HERE, verify)


@cache
def _verified(name: str, here: Path, verify: bool) -> Path:
    meta = CATALOGUE["weights"][name]
    path = here / meta["file"]
    if not path.is_file():
        raise CheckpointError(f"the bundled model {name!r} is missing from the installation: {path}; "
                              "reinstall facemtl")
    if verify:
        digest = file_sha256(path)
        if digest != meta["sha256"]:
            raise CheckpointError(f"the bundled model file {path} is corrupted (sha256 {digest[:12]}..., expected "
                                  f"{meta['sha256'][:12]}...); reinstall facemtl")
    return path


def list_weights() -> list[str]:
    """Names of the bundled models (usable as ``--model NAME`` and ``FaceAnalyzer.from_checkpoint(NAME)``)."""
    return list(CATALOGUE["weights"])


def get_weights(name: str | None = None) -> Weights:
    """A bundled model by name (None: the default); raises UnknownNameError listing the names."""
    name = DEFAULT_NAME if name is None else name
    if name not in CATALOGUE["weights"]:
        raise unknown_name("bundled model", name, list_weights())
    return Weights(name, dict(CATALOGUE["weights"][name]))


# The PyTorch checkpoint of the default model (export, Grad-CAM, fine-tuning), as before the catalogue.
DEFAULT_INFO: dict[str, Any] = dict(CATALOGUE["weights"][PYTORCH_NAME])


def default_checkpoint_path(verify: bool = True) -> Path:
    """Path of the default model's PyTorch checkpoint; raises CheckpointError if missing or corrupted."""
    return _verified(PYTORCH_NAME, _HERE, verify)


default_checkpoint_path.cache_clear = _verified.cache_clear  # type: ignore[attr-defined]

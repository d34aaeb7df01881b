"""The default model shipped inside the package (never downloaded), verified by its SHA-256."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["default_checkpoint_path", "DEFAULT_INFO"]

_HERE = Path(__file__).parent
DEFAULT_INFO = json.loads((_HERE / "default.json").read_text())


@lru_cache(maxsize=1)
def default_checkpoint_path(verify: bool = True) -> Path:
    """Path of the bundled default checkpoint; raises CheckpointError if missing or corrupted."""
    path = _HERE / DEFAULT_INFO["file"]
    if not path.is_file():
        raise CheckpointError(f"the default model file is missing from the installation: {path}; reinstall facemtl")
    if verify:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != DEFAULT_INFO["sha256"]:
            raise CheckpointError(f"the default model file {path} is corrupted (sha256 {digest[:12]}..., expected "
                                  f"{DEFAULT_INFO['sha256'][:12]}...); reinstall facemtl")
    return path

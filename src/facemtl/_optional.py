"""Import optional dependencies with an error that names the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install "facemtl[extra]"``
    (``extra="core"``: a dependency of the plain install, so the install itself is broken)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module
        if extra == "core":
            raise MissingDependencyError(f"{pkg!r}, a dependency of facemtl itself, cannot be imported ({exc}); "
                                         "reinstall facemtl: pip install --force-reinstall facemtl") from exc
        raise MissingDependencyError(
            f"{pkg!r} is required for this feature but is not installed; "
            f'install it with: pip install "facemtl[{extra}]"'
        ) from exc


def available(module: str) -> bool:
    """Whether ``module`` could be imported here, without importing it (a broken or blocked install: False)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

"""Exception hierarchy: every error a user can fix derives from :class:`FacemtlError`."""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "FacemtlError",
    "InvalidInputError",
    "UnknownNameError",
    "CheckpointError",
    "MissingDependencyError",
    "DatasetError",
    "DeviceError",
    "OutputError",
    "OutputLockedError",
    "unknown_name",
]


class FacemtlError(Exception):
    """Base: a problem the user can fix."""


class InvalidInputError(FacemtlError, ValueError):
    """Unreadable image, bad array shape or dtype, malformed file."""


class UnknownNameError(FacemtlError, ValueError):
    """A task, backbone, detector, metric or format name that is not registered."""


class CheckpointError(FacemtlError):
    """A checkpoint that is missing keys, has an unknown version or contradicts the request."""


class MissingDependencyError(FacemtlError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DatasetError(FacemtlError, ValueError):
    """A dataset folder or file that is missing, empty or malformed."""


class DeviceError(FacemtlError, ValueError):
    """A device this machine does not have (``cuda`` without a CUDA GPU, ``cuda:3`` with one GPU)."""


class OutputError(FacemtlError):
    """An output that cannot be written: a read-only place, a folder that cannot be created, an existing folder
    where a file is wanted (or a file where a folder is), a full disk; the message names the output and why."""


class OutputLockedError(OutputError):
    """An output another ``facemtl batch`` process is writing right now (it holds ``<out>.lock``)."""


def unknown_name(kind: str, value: object, valid: Iterable[str]) -> UnknownNameError:
    """Build the standard "unknown <kind> 'x'; valid: ... (did you mean ...?)" error."""
    valid = sorted(valid)
    msg = f"unknown {kind} {value!r}; valid: {', '.join(valid)}"
    close = difflib.get_close_matches(str(value), valid, n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return UnknownNameError(msg)

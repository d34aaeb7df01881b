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


class ConfigError(FacemtlError, ValueError):
    """A configuration value out of its range or inconsistent (an option, a config file field, a flag)."""


class DeviceError(FacemtlError, ValueError):
    """A device this machine does not have (``cuda`` without a CUDA GPU, ``cuda:3`` with one GPU)."""


class OutputError(FacemtlError):
    """An output that cannot be written: a read-only place, a folder that cannot be created, an existing folder
    where a file is wanted (or a file where a folder is), a full disk; the message names the output and why."""


class OutputLockedError(OutputError):
    """An output another ``facemtl batch`` process is writing right now (it holds ``<out>.lock``)."""


def without_traceback(exc: BaseException) -> BaseException:
    """``exc``, and the errors chained to it, with their tracebacks dropped; type, message and chain stay.

    For an error kept to be raised or reported later (a batch item's failure). A traceback holds every frame it
    went through, and each frame its locals (the image being decoded, the caller's frame): kept on a result, or
    raised again from a frame that also refers to it, it makes a reference cycle that holds those images until
    the cyclic garbage collector happens to run.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]
    return exc


def unknown_name(kind: str, value: object, valid: Iterable[str]) -> UnknownNameError:
    """Build the standard "unknown <kind> 'x'; valid: ... (did you mean ...?)" error."""
    valid = sorted(valid)
    msg = f"unknown {kind} {value!r}; valid: {', '.join(valid)}"
    close = difflib.get_close_matches(str(value), valid, n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return UnknownNameError(msg)

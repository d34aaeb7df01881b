"""One meaning for ``--device`` everywhere: ``auto`` (the first CUDA GPU when there is one, else the CPU),
``cpu``, ``cuda`` or ``cuda:N``. A name that is not one of these, or a GPU this machine does not have, is a
:class:`~facemtl.errors.FacemtlError` naming the value and the choices, never a torch traceback."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import DeviceError, unknown_name

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_CHOICES", "DEVICE_METAVAR", "check_device_name", "resolve_device", "resolve_device_name"]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")
DEVICE_METAVAR = "auto|cpu|cuda[:N]"
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def check_device_name(name: object) -> str:
    """``name`` as a device name (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), lower-cased; checks the spelling
    only (no torch import, no GPU query).

    Raises:
        UnknownNameError: any other value, with the valid choices.
    """
    text = str(name).strip().lower()
    if text in ("auto", "cpu", "cuda") or _CUDA_INDEX.fullmatch(text):
        return text
    raise unknown_name("device", name, DEVICE_CHOICES)


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` a device name means on this machine (None: ``auto``).

    ``auto`` takes ``cuda`` when a CUDA GPU is available and ``cpu`` otherwise; ``cuda`` and ``cuda:N`` must
    exist here.

    Raises:
        UnknownNameError: a name other than auto, cpu, cuda, cuda:N.
        DeviceError: ``cuda``/``cuda:N`` on a machine without a CUDA GPU, or ``N`` past the GPUs it has.
    """
    import torch

    text = check_device_name("auto" if name is None else name)
    has_cuda = torch.cuda.is_available()
    if text == "auto":
        return torch.device("cuda" if has_cuda else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not has_cuda:
        build = "this torch is a CPU-only build" if torch.version.cuda is None else "no GPU was found"
        raise DeviceError(f"device {text!r} is not available: no CUDA device is available ({build}); "
                          f"use 'cpu', or 'auto' to take a GPU only when there is one (valid: "
                          f"{', '.join(DEVICE_CHOICES)})")
    match = _CUDA_INDEX.fullmatch(text)
    if match is not None:
        count = torch.cuda.device_count()
        if int(match.group(1)) >= count:
            raise DeviceError(f"device {text!r} is not available: this machine has {count} CUDA device(s) "
                              f"(valid: cuda, {', '.join(f'cuda:{i}' for i in range(count))}, cpu, auto)")
    return torch.device(text)


def resolve_device_name(name: str | None = "auto", backend: str = "onnxruntime") -> str:
    """What a device name means for a model backend, as a string ("cpu", "cuda", "cuda:N"), checked before
    any model loads. ``pytorch`` asks torch (:func:`resolve_device`); ``onnxruntime`` (the default backend, no
    torch) has a GPU only when its CUDA execution provider is installed (``onnxruntime-gpu``).

    Raises:
        UnknownNameError: a name other than auto, cpu, cuda, cuda:N.
        DeviceError: a GPU the backend cannot use here.
    """
    if backend == "pytorch":
        return str(resolve_device(name))
    text = check_device_name("auto" if name is None else name)
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if text == "auto":
        return "cuda" if has_cuda else "cpu"
    if text == "cpu" or has_cuda:
        return text
    raise DeviceError(f"device {text!r} is not available: no CUDA device is available (this onnxruntime has no "
                      f"CUDA execution provider; pip install onnxruntime-gpu for one); use 'cpu', or 'auto' to take "
                      f"a GPU only when there is one (valid: {', '.join(DEVICE_CHOICES)})")

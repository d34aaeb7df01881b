"""Fit a model's calibration on held-out data and store it with the model (``facemtl calibrate``).

The fit uses the *calibration half* of each source's held-out images (the same split ``facemtl evaluate``
re-creates from the checkpoint; :func:`facemtl.calibration.calibration_half` picks the half), through the
dataset-crop path with the analyzer's flip TTA; ``facemtl evaluate`` then measures coverage and ECE on the
other half.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from ..calibration import Calibration, calibration_half, fit_age_intervals, fit_temperature
from ..data.datasets import target_arrays
from ..errors import CheckpointError, DatasetError, InvalidInputError
from .evaluate import EvaluateConfig, _crop_path, held_out_records

__all__ = ["fit_calibration", "write_calibrated", "MIN_LABELLED"]

MIN_LABELLED = 50  # fewer labelled faces for a head: its temperature is not fitted (left at 1)


def fit_calibration(cfg: EvaluateConfig, min_group: int = 100,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Calibration, Any, Path]:
    """Fit temperatures and age intervals for ``cfg.model`` on the calibration half of ``cfg.split``.

    Returns:
        (calibration, the loaded model, its file).

    Raises:
        DatasetError: no labelled face for any head in the calibration half.
    """
    from ..models.load import load_model

    if cfg.detector not in (None, "", "none"):
        raise InvalidInputError("calibration is fitted on the dataset crops (the training framing); leave out "
                                "--detector (evaluate measures both paths)")
    model, file = load_model(cfg.model, device=cfg.device, threads=cfg.threads)
    records, _, _ = held_out_records(cfg, model.metadata)
    half = [r for r in records if calibration_half(r.file_name)]
    kept, raw, _ = _crop_path(cfg, model, model.metadata, half, progress)
    ok = [half[i] for i in kept]
    targets = target_arrays(ok, [t.name for t in model.tasks])
    temperatures: dict[str, float] = {}
    used: dict[str, int] = {}
    age = None
    for spec in model.tasks:
        y = targets[spec.name]
        if spec.kind == "classification":
            labels = np.where(y >= 0, y, -1).astype(int)
            if (labels >= 0).sum() >= MIN_LABELLED:
                sources = [r.source for r in ok]  # every source weighs the same
                temperatures[spec.name] = round(fit_temperature(raw[spec.name], labels, groups=sources), 4)
                used[spec.name] = int((labels >= 0).sum())
        elif spec.interval and age is None and (~np.isnan(y)).sum() >= min_group:  # the interval task: age
            values, _ = spec.decode_raw(raw[spec.name])
            age = fit_age_intervals(y, np.asarray(values, float), min_group, spec.value_range or (0.0, 100.0))
            used[spec.name] = int((~np.isnan(y)).sum())
    if not temperatures and age is None:
        raise DatasetError(f"nothing to calibrate: the calibration half ({len(ok)} images) has fewer than "
                           f"{MIN_LABELLED} labelled faces for every head (give --utkface, --fer2013, --fairface, "
                           "--celeba-gender or a manifest)")
    fitted_on = {"model": file.name, "images": len(ok), "labelled": used,
                 "by_source": dict(Counter(r.source for r in ok)), "path": "crops", "flip_tta": cfg.flip_tta,
                 "part": f"calibration half of the {cfg.split!r} split"}
    return Calibration(temperatures, age, fitted_on), model, file


def write_calibrated(src: str | os.PathLike, out: str | os.PathLike, calibration: Calibration) -> Path:
    """Copy the model file ``src`` to ``out`` with ``calibration`` stored in it (an ``.onnx`` file's metadata,
    a ``.pt`` checkpoint's ``calibration`` key); written atomically.

    Raises:
        CheckpointError: ``out`` has another format than ``src``.
        MissingDependencyError: ``onnx`` (export extra) or torch (torch extra) missing for that format.
    """
    src, out = Path(src), Path(out)
    if src.suffix.lower() != out.suffix.lower():
        raise CheckpointError(f"--out {out} must have the model's own format ({src.suffix}), "
                              f"not {out.suffix or 'none'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if src.suffix.lower() == ".onnx":
        onnx = require("onnx", extra="export")
        from ..export._meta import set_metadata

        proto = onnx.load(str(src))
        set_metadata(proto, {"calibration": calibration.to_dict()})
        onnx.save(proto, str(tmp))
    else:
        torch = require("torch", extra="torch")
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        ckpt["calibration"] = calibration.to_dict()
        torch.save(ckpt, tmp)
    tmp.replace(out)
    return out

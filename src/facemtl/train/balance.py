"""Bias mitigation for training: per-sample weights that equalise demographic groups.

A *group* is a combination of attribute values read from a sample's own labels (the registry's slices,
:func:`facemtl.groups.slice_keys`: ``ethnicity``, ``gender`` and ``age_band``, the grouping keys of the fairness
audit; codes from :func:`facemtl.groups.group_codes`). Each group's weight is
``(1 / count) ** power``, normalised to mean 1 over the labelled samples of a source and clipped at
``max_ratio`` times the smallest weight, so a handful of rare samples cannot dominate training. Samples
missing any balancing attribute (e.g. FER2013 faces, which have no ethnicity) keep weight 1.

The weights are used in one of two ways (``TrainConfig.balance``):

- ``"sample"``: each epoch draws a source's samples with probability proportional to the weight
  (with replacement), so rare groups are seen more often;
- ``"reweight"``: the usual shuffled epoch, with each sample's loss multiplied by its weight.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, unknown_name
from ..groups import group_codes, slice_keys

if TYPE_CHECKING:
    import torch

__all__ = ["BALANCE_KEYS", "BALANCE_MODES", "check_balance", "group_ids", "group_weights"]

BALANCE_MODES: tuple[str, ...] = ("none", "sample", "reweight")
BALANCE_KEYS: tuple[str, ...] = slice_keys()


def check_balance(mode: str, keys: Sequence[str], power: float, max_ratio: float) -> None:
    """Raise a clear error for an unknown mode or key, or a meaningless power / ratio."""
    if mode not in BALANCE_MODES:
        raise unknown_name("balance mode", mode, BALANCE_MODES)
    if not keys:
        raise ConfigError(f"balance_by needs at least one of {', '.join(BALANCE_KEYS)}")
    for k in keys:
        if k not in BALANCE_KEYS:
            raise unknown_name("balance_by attribute", k, BALANCE_KEYS)
    if not 0.0 < power <= 2.0:
        raise ConfigError(f"balance_power must be in (0, 2], got {power}")
    if max_ratio < 1.0:
        raise ConfigError(f"balance_max_ratio must be at least 1, got {max_ratio}")


def group_ids(targets: Mapping[str, torch.Tensor], keys: Sequence[str]) -> np.ndarray:
    """(N,) group index per sample over the crossing of ``keys``; -1 where any attribute is missing."""
    n = len(next(iter(targets.values()))) if targets else 0
    codes = group_codes(targets, keys)
    missing = (codes < 0).any(1)
    ids = np.full(n, -1, dtype=np.int64)
    if (~missing).any():
        _, inverse = np.unique(codes[~missing], axis=0, return_inverse=True)
        ids[~missing] = inverse.reshape(-1)
    return ids


def group_weights(targets: Mapping[str, torch.Tensor], keys: Sequence[str], power: float = 1.0,
                  max_ratio: float = 10.0) -> np.ndarray:
    """(N,) float64 weights: inverse group frequency to ``power``, mean 1 over labelled samples, clipped.

    Example:
        >>> t = {"ethnicity": torch.tensor([0, 0, 0, 1])}
        >>> group_weights(t, ["ethnicity"]).round(3).tolist()   # the lone group-1 sample weighs 3x
        [0.667, 0.667, 0.667, 2.0]
    """
    ids = group_ids(targets, keys)
    w = np.ones(len(ids), dtype=np.float64)
    lab = ids >= 0
    if not lab.any():
        return w
    counts = np.bincount(ids[lab])
    gw = np.where(counts > 0, counts.astype(np.float64), np.inf) ** -power
    gw = np.minimum(gw, gw[counts > 0].min() * max_ratio)
    w[lab] = gw[ids[lab]]
    w[lab] /= w[lab].mean()
    return w

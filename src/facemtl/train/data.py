"""Training data in memory: per-source arrays of canonical crops plus per-task targets."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..crop import DEFAULT_GEOMETRY, CropGeometry
from ..data.cache import build_cache
from ..data.datasets import Record, extra_targets, target_arrays
from ..data.gather import gather_records
from ..preprocess import DEFAULT_FRAMING, Framing
from .config import NO_FACE_POLICIES

__all__ = ["SourceData", "gather_records", "build_sources"]

log = logging.getLogger(__name__)


@dataclass
class SourceData:
    """One dataset's context crops (N, S, S, 3) uint8, targets and split names."""

    name: str
    images: np.ndarray | torch.Tensor
    targets: dict[str, torch.Tensor]
    split: np.ndarray  # (N,) of "train" / "val" / "test"
    records: list[Record] = field(default_factory=list)

    def subset(self, split: str) -> SourceData:
        idx = np.flatnonzero(self.split == split)
        imgs = self.images[torch.from_numpy(idx)] if isinstance(self.images, torch.Tensor) else self.images[idx]
        return SourceData(self.name, imgs, {k: v[idx] for k, v in self.targets.items()}, self.split[idx],
                          [self.records[i] for i in idx] if self.records else [])

    def __len__(self) -> int:
        return len(self.split)




def build_sources(records: list[Record], input_size: int, cache_dir: Path | None = None,
                  workers: int = 2, geometry: CropGeometry = DEFAULT_GEOMETRY, framing: Framing = DEFAULT_FRAMING,
                  no_face: str = "keep", progress: bool = False) -> tuple[list[SourceData], dict[str, dict]]:
    """Frame (or load from the cache) every record's crop and group by source.

    ``no_face``: what to do with an image in which the detector finds no face: "keep" it with its own
    framing (the dataset crop) or "skip" it. Returns (sources, per-source counts of images, unreadable
    images and images without a detected face).
    """
    if no_face not in NO_FACE_POLICIES:
        from ..errors import unknown_name

        raise unknown_name("no_face policy", no_face, NO_FACE_POLICIES)
    by_source: dict[str, list[Record]] = {}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    out, stats = [], {}
    for name, recs in sorted(by_source.items()):
        cached = build_cache(recs, input_size, cache_dir, workers, geometry, framing, progress)
        ok, found = cached.ok, cached.found
        stats[name] = {"images": len(recs), "unreadable": int((~ok).sum()), "no_face": int((ok & ~found).sum()),
                       "no_face_policy": no_face}
        keep_mask = ok & (found | (no_face == "keep"))
        if not ok.all():
            log.warning("%s: %d unreadable image(s) skipped", name, int((~ok).sum()))
        if (ok & ~found).any():
            log.warning("%s: no face detected in %d of %d images (%s)", name, stats[name]["no_face"], len(recs),
                        "kept with their own framing" if no_face == "keep" else "skipped")
        keep = np.flatnonzero(keep_mask)
        recs = [recs[i] for i in keep]
        targets = {t: torch.from_numpy(v.astype(np.float32)) for t, v in target_arrays(recs).items()}
        targets.update({t: torch.from_numpy(v.astype(np.float32)) for t, v in extra_targets(recs).items()})
        imgs = cached.images if keep_mask.all() else np.asarray(cached.images)[keep]
        out.append(SourceData(name, imgs, targets, np.array([r.split for r in recs]), recs))
    return out, stats

"""Training data in memory: per-source arrays of canonical crops plus per-task targets."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.cache import build_cache
from ..data.datasets import (DatasetIndex, Record, deduplicate, load_fer2013, load_manifest, load_utkface,
                             target_arrays)
from ..data.split import make_split, write_split_manifest
from ..errors import DatasetError

__all__ = ["SourceData", "gather_records", "build_sources"]

log = logging.getLogger(__name__)


@dataclass
class SourceData:
    """One dataset's images (N, h, w, 3) uint8 at its own resolution, targets and split names."""

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


def gather_records(utkface: str | None = None, fer2013: str | None = None, manifests: tuple[str, ...] = (),
                   limit: int | None = None, val_fraction: float = 0.1, seed: int = 0,
                   manifest_out: Path | None = None) -> tuple[list[Record], dict, str | None]:
    """Load every given source, deduplicate, split; returns (records, counts, manifest sha256)."""
    index = DatasetIndex([])
    if utkface:
        index.extend(load_utkface(utkface, limit=limit))
    if fer2013:
        index.extend(load_fer2013(fer2013, limit=limit))
    for m in manifests:
        index.extend(load_manifest(m, limit=limit))
    if not index.records:
        raise DatasetError("no training data: give --utkface, --fer2013 and/or --manifest")
    index = deduplicate(index)
    records = make_split(index, val_fraction=val_fraction, seed=seed)
    counts = {"records": Counter(f"{r.source}/{r.split}" for r in records), "skipped": dict(index.skipped)}
    sha = write_split_manifest(records, manifest_out) if manifest_out else None
    return records, counts, sha


def native_size(source: str, input_size: int) -> int:
    # FER2013 is 48x48: caching it larger only costs memory; the batch transform upsamples.
    return min(48, input_size) if source == "fer2013" else input_size


def build_sources(records: list[Record], input_size: int, cache_dir: Path | None = None,
                  workers: int = 2) -> list[SourceData]:
    """Decode (or load from the cache) every record's crop and group by source."""
    by_source: dict[str, list[Record]] = {}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    out = []
    for name, recs in sorted(by_source.items()):
        imgs, ok = build_cache(recs, native_size(name, input_size), cache_dir, workers)
        if not ok.all():
            log.warning("%s: %d unreadable image(s) skipped", name, int((~ok).sum()))
        keep = np.flatnonzero(ok)
        recs = [recs[i] for i in keep]
        targets = {t: torch.from_numpy(v.astype(np.float32)) for t, v in target_arrays(recs).items()}
        out.append(SourceData(name, np.asarray(imgs)[keep] if not ok.all() else imgs, targets,
                              np.array([r.split for r in recs]), recs))
    return out

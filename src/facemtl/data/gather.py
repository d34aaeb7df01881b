"""gather_records: every labelled source a run names, loaded, deduplicated and split (the one recipe training and
``facemtl evaluate`` share, so evaluation re-creates the exact held-out part a checkpoint never trained on)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import DatasetError
from .datasets import (
    DatasetIndex,
    Record,
    deduplicate,
    load_celeba_gender,
    load_fairface,
    load_fer2013,
    load_manifest,
    load_utkface,
)
from .split import make_split, write_split_manifest

__all__ = ["gather_records"]


def gather_records(utkface: str | None = None, fer2013: str | None = None, manifests: tuple[str, ...] = (),
                   limit: int | None = None, val_fraction: float = 0.1, seed: int = 0,
                   manifest_out: Path | None = None, fairface: str | None = None, celeba_gender: str | None = None,
                   source_val_fraction: dict[str, float] | None = None, ferplus: bool = True
                   ) -> tuple[list[Record], dict, str | None]:
    """Load every given source, deduplicate (within and across sources), split; returns (records, counts,
    manifest sha256)."""
    index = DatasetIndex([])
    if utkface:
        index.extend(load_utkface(utkface, limit=limit))
    if fer2013:
        index.extend(load_fer2013(fer2013, limit=limit, ferplus="auto" if ferplus else None))
    if fairface:
        index.extend(load_fairface(fairface, limit=limit))
    if celeba_gender:
        index.extend(load_celeba_gender(celeba_gender, limit=limit))
    for m in manifests:
        index.extend(load_manifest(m, limit=limit))
    if not index.records:
        raise DatasetError("no training data: give --utkface, --fer2013, --fairface, --celeba-gender and/or --manifest")
    index = deduplicate(index)
    records = make_split(index, val_fraction=val_fraction, seed=seed, source_fractions=source_val_fraction)
    counts = {"records": Counter(f"{r.source}/{r.split}" for r in records), "skipped": dict(index.skipped)}
    sha = write_split_manifest(records, manifest_out) if manifest_out else None
    return records, counts, sha

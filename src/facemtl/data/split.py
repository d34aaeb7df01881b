"""Seeded, stratified train/val split written to a manifest CSV, so a run can be reproduced."""
from __future__ import annotations

import csv
import hashlib
import math
import random
from collections import defaultdict
from pathlib import Path

from ..tasks import age_band, list_tasks
from .datasets import DatasetIndex, Record

__all__ = ["make_split", "write_split_manifest", "read_split_manifest"]


def _stratum(r: Record) -> tuple:
    age = r.labels.get("age")
    return (r.source, r.labels.get("ethnicity"), r.labels.get("gender"),
            None if age is None else age_band(float(age)), r.labels.get("emotion"))


def make_split(index: DatasetIndex, val_fraction: float = 0.1, seed: int = 0) -> list[Record]:
    """Assign ``split`` to records that have none, stratified by source x ethnicity x gender x age band x
    emotion; records whose dataset fixes a split (FER2013) keep it. Deterministic for a seed."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction {val_fraction} must be in [0, 1)")
    strata: dict[tuple, list[Record]] = defaultdict(list)
    for r in index.records:
        if r.split is None:
            strata[_stratum(r)].append(r)
    rng = random.Random(seed)
    for key in sorted(strata, key=repr):
        recs = sorted(strata[key], key=lambda r: r.digest or r.key)
        rng.shuffle(recs)
        n_val = int(math.floor(len(recs) * val_fraction + rng.random()))  # unbiased rounding for small strata
        for i, r in enumerate(recs):
            r.split = "val" if i < n_val else "train"
    return index.records


_COLUMNS = ["path", "source", "split", "sha1", *list_tasks()]


def write_split_manifest(records: list[Record], path: str | Path) -> str:
    """Write the split as CSV (path, source, split, sha1, labels); returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(_COLUMNS)
        for r in sorted(records, key=lambda r: (r.source, r.key)):
            w.writerow([r.key, r.source, r.split, r.digest] + ["" if r.labels.get(t) is None else r.labels[t]
                                                               for t in list_tasks()])
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_split_manifest(path: str | Path) -> dict[str, str]:
    """sha1 digest -> split, from a manifest written by :func:`write_split_manifest`."""
    with open(path, newline="") as f:
        return {row["sha1"]: row["split"] for row in csv.DictReader(f)}

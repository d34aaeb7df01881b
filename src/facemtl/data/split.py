"""Seeded, stratified train/val split written to a manifest CSV, so a run can be reproduced."""
from __future__ import annotations

import csv
import hashlib
import math
import random
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError
from ..tasks import age_band, list_tasks
from .datasets import DatasetIndex, Record

__all__ = ["make_split", "write_split_manifest", "read_split_manifest"]


def _stratum(r: Record) -> tuple:
    age = r.labels.get("age")
    band = None if age is None else age_band(float(age))
    if band is None and "age" in r.intervals:  # an age bin: the band of its lower bound
        band = age_band(r.intervals["age"][0])
    return (r.source, r.labels.get("ethnicity"), r.labels.get("gender"), band, r.labels.get("emotion"))


def make_split(index: DatasetIndex, val_fraction: float = 0.1, seed: int = 0,
               source_fractions: dict[str, float] | None = None) -> list[Record]:
    """Assign ``split`` to records that have none, stratified by source x ethnicity x gender x age band x
    emotion; records whose dataset fixes a split (FER2013) keep it. Deterministic for a seed.

    Each source is split on its own (its own seeded generator), so adding a source never moves another
    source's images between train and val. ``source_fractions`` overrides ``val_fraction`` per source.
    """
    fractions = {**(source_fractions or {})}
    for f in (val_fraction, *fractions.values()):
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"val_fraction {f} must be in [0, 1)")
    by_source: dict[str, dict[tuple, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in index.records:
        if r.split is None:
            by_source[r.source][_stratum(r)].append(r)
    for source in sorted(by_source):
        strata = by_source[source]
        frac = fractions.get(source, val_fraction)
        rng = random.Random(seed)
        for key in sorted(strata, key=repr):
            recs = sorted(strata[key], key=lambda r: r.digest or r.key)
            rng.shuffle(recs)
            n_val = int(math.floor(len(recs) * frac + rng.random()))  # unbiased rounding for small strata
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

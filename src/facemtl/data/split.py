"""Seeded, stratified train/val split written to a manifest CSV, so a run can be reproduced."""
from __future__ import annotations

import csv
import hashlib
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..groups import bucket_name, key_spec, slice_keys
from ..tasks import get_task, list_tasks
from .datasets import DatasetIndex, Record

__all__ = ["make_split", "write_split_manifest", "read_split_manifest", "split_seed_of"]


def _strata_plan() -> tuple[list[tuple[str, Any]], list[str]]:
    """What a stratum reads: each slice key (ethnicity, gender, age band) with its task and bucketing (None: the
    label itself), then the other classification tasks (emotion)."""
    plan = []
    for key in slice_keys():
        found = key_spec(key)
        plan.append((found[0].name, found[1]) if found is not None else (key, None))
    sliced = {name for name, _ in plan}
    return plan, [n for n in list_tasks() if n not in sliced and get_task(n).kind == "classification"]


def _slice_value(r: Record, name: str, table: Any) -> Any:
    """A record's group for one slice: its label, or the bucket of its value (of the lower bound of a value known
    only as an interval, e.g. an age bin); None when it has neither."""
    value = r.labels.get(name)
    if table is None:
        return value
    if value is not None:
        return bucket_name(float(value), table)
    if name in r.intervals:  # a bin: the band of its lower bound
        return bucket_name(r.intervals[name][0], table)
    return None


def _stratum(r: Record, plan: tuple[list[tuple[str, Any]], list[str]]) -> tuple:
    """(source, ethnicity, gender, age band, emotion): the source, every slice, the other classification labels
    (``plan``: :func:`_strata_plan`, made once per split)."""
    slices, others = plan
    return (r.source, *[_slice_value(r, name, table) for name, table in slices],
            *[r.labels.get(n) for n in others])


def make_split(index: DatasetIndex, val_fraction: float = 0.1, seed: int = 0,
               source_fractions: dict[str, float] | None = None) -> list[Record]:
    """Assign ``split`` to records that have none, stratified by source x the slices (ethnicity x gender x age
    band) x the other classification labels (emotion); records whose dataset fixes a split (FER2013) keep it.
    Deterministic for a seed.

    Each source is split on its own (its own seeded generator), so adding a source never moves another
    source's images between train and val. ``source_fractions`` overrides ``val_fraction`` per source.
    """
    fractions = {**(source_fractions or {})}
    for f in (val_fraction, *fractions.values()):
        if not 0.0 <= f < 1.0:
            raise ConfigError(f"val_fraction {f} must be in [0, 1)")
    by_source: dict[str, dict[tuple, list[Record]]] = defaultdict(lambda: defaultdict(list))
    plan = _strata_plan()
    for r in index.records:
        if r.split is None:
            by_source[r.source][_stratum(r, plan)].append(r)
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


def write_split_manifest(records: list[Record], path: str | Path) -> str:
    """Write the split as CSV (path, source, split, sha1, labels); returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tasks = list_tasks()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "source", "split", "sha1", *tasks])
        for r in sorted(records, key=lambda r: (r.source, r.key)):
            w.writerow([r.key, r.source, r.split, r.digest] + ["" if r.labels.get(t) is None else r.labels[t]
                                                               for t in tasks])
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_split_manifest(path: str | Path) -> dict[str, str]:
    """sha1 digest -> split, from a manifest written by :func:`write_split_manifest`."""
    with open(path, newline="") as f:
        return {row["sha1"]: row["split"] for row in csv.DictReader(f)}


def split_seed_of(tcfg: dict[str, Any]) -> int:
    """The split seed a stored ``train_config`` was split with (older files have ``seed`` only)."""
    return int(tcfg["split_seed"] if tcfg.get("split_seed") is not None else tcfg.get("seed", 0))

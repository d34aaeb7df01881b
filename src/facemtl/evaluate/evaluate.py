"""Evaluate a checkpoint on labelled data: every metric per task, MAE per age band, confusion matrices,
calibration and a per-group fairness table (ethnicity x gender x age band)."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..data.cache import decode_record
from ..data.datasets import Record, target_arrays
from ..errors import DatasetError, FacemtlError, InvalidInputError
from ..models.factory import load_checkpoint
from ..train.data import gather_records
from .fairness import DEFAULT_GROUP_KEYS, build_records, fairness_report
from .metrics import compute_task_metrics

__all__ = ["SPLITS", "EvaluateConfig", "evaluate"]

log = logging.getLogger(__name__)
SPLITS = ("val", "test", "train", "all")


@dataclass
class EvaluateConfig:
    """What to evaluate on.

    Attributes:
        model: checkpoint path; None: the bundled default model.
        split: "val" (the seeded split the checkpoint was trained with, FER2013 PublicTest), "test", "train",
            or "all" (every labelled image given: for a separate test set).
        limit: at most this many images per source. With a split other than "all", the split is first
            re-created as in training (with the checkpoint's own training limit) and the images are then
            taken, evenly spaced, from that split.
        seed, val_fraction: the split's parameters; None: taken from the checkpoint's training config.
        keep_samples: also return ``report["samples"]``: one dict per image with its path, true and predicted
            labels and the class probabilities (for the HTML report's plots and gallery); off by default.
        group_keys: the attributes of the fairness tables (each alone and every crossing): any of
            ``ethnicity``, ``gender``, ``age_band``; a comma-separated string is accepted.
        fairness_min_count: groups with fewer labelled images are listed but left out of worst/best/gap.
        bootstrap: resamples per group for the fairness confidence intervals (0: none).
    """

    model: str | None = None
    utkface: str | None = None
    fer2013: str | None = None
    manifest: tuple[str, ...] = ()
    split: str = "val"
    limit: int | None = None
    batch_size: int = 128
    device: str = "cpu"
    seed: int | None = None
    val_fraction: float | None = None
    fairness_min_count: int = 30
    bootstrap: int = 200
    threads: int | None = None
    flip_tta: bool = True
    keep_samples: bool = False
    group_keys: tuple[str, ...] = DEFAULT_GROUP_KEYS

    def __post_init__(self) -> None:
        from ..errors import unknown_name

        if self.split not in SPLITS:
            raise unknown_name("split", self.split, SPLITS)
        self.manifest = tuple(self.manifest or ())
        self.group_keys = _parse_group_keys(self.group_keys)
        if self.fairness_min_count < 0:
            raise InvalidInputError(f"fairness_min_count must be >= 0; got {self.fairness_min_count}")
        if self.bootstrap < 0:
            raise InvalidInputError(f"bootstrap must be >= 0 (0: no confidence intervals); got {self.bootstrap}")
        if not (self.utkface or self.fer2013 or self.manifest):
            raise DatasetError("nothing to evaluate on: give --utkface, --fer2013 and/or --manifest")


def _parse_group_keys(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"ethnicity,gender"`` or ``("ethnicity", "gender,age_band")`` -> validated, de-duplicated keys."""
    from ..errors import unknown_name

    items = [value] if isinstance(value, str) else list(value or ())
    keys = [k.strip() for item in items for k in str(item).split(",") if k.strip()]
    for k in keys:
        if k not in DEFAULT_GROUP_KEYS:
            raise unknown_name("group attribute", k, DEFAULT_GROUP_KEYS)
    if not keys:
        raise InvalidInputError(f"no group attribute given; choose from {', '.join(DEFAULT_GROUP_KEYS)}")
    return tuple(dict.fromkeys(keys))


def _select(records: list[Record], split: str) -> list[Record]:
    return records if split == "all" else [r for r in records if r.split == split]


def _limit_per_source(records: list[Record], limit: int | None) -> list[Record]:
    """At most ``limit`` records per source, evenly spaced in their order (UTKFace's sorts by age)."""
    if limit is None:
        return records
    by_source: dict[str, list[Record]] = {}
    for r in records:
        by_source.setdefault(r.source, []).append(r)
    keep: set[int] = set()
    for recs in by_source.values():
        picked = recs if len(recs) <= limit else [recs[i] for i in np.linspace(0, len(recs) - 1, limit).astype(int)]
        keep.update(id(r) for r in picked)
    return [r for r in records if id(r) in keep]


@torch.no_grad()
def evaluate(cfg: EvaluateConfig, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the model over the chosen split; returns a JSON-serialisable report.

    Example:
        >>> report = evaluate(EvaluateConfig(utkface="data/utkface", fer2013="data/fer2013"))
        >>> report["metrics"]["age"]["mae"], report["metrics"]["emotion"]["accuracy"]
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    path = cfg.model
    if path is None:
        from ..weights import default_checkpoint_path

        path = str(default_checkpoint_path())
    model, meta = load_checkpoint(path, device=cfg.device)
    tcfg = meta.get("train_config") or {}
    seed = cfg.seed if cfg.seed is not None else int(tcfg.get("seed", 0))
    vf = cfg.val_fraction if cfg.val_fraction is not None else float(tcfg.get("val_fraction", 0.1))
    size = int(meta["preprocess"]["input_size"])
    if cfg.split == "all":
        records, counts, _ = gather_records(cfg.utkface, cfg.fer2013, cfg.manifest, cfg.limit, vf, seed)
    else:
        # Re-create the checkpoint's own split (gathered with its training --limit), then take at most
        # cfg.limit images per source from the chosen split: a subset of the images held out in training,
        # never a fresh split of a subsample (whose "val" images the model may have been trained on).
        train_limit = tcfg.get("limit")
        records, counts, _ = gather_records(cfg.utkface, cfg.fer2013, cfg.manifest, train_limit, vf, seed)
        records = _limit_per_source(_select(records, cfg.split), cfg.limit)
    if not records:
        raise DatasetError(f"no labelled images in split {cfg.split!r}; try --split all")
    specs = list(model.tasks)
    raw: dict[str, list[torch.Tensor]] = {s.name: [] for s in specs}
    ok: list[Record] = []
    failed: Counter = Counter()

    def load(r: Record) -> np.ndarray | None:
        try:
            return decode_record(r, size)
        except InvalidInputError as exc:
            log.warning("skipping unreadable image: %s", exc)
            return None

    with ThreadPoolExecutor(2) as pool:
        for i in range(0, len(records), cfg.batch_size):
            chunk = records[i:i + cfg.batch_size]
            crops = list(pool.map(load, chunk))
            keep = [j for j, c in enumerate(crops) if c is not None]
            failed["unreadable"] += len(chunk) - len(keep)
            if not keep:
                continue
            x = torch.from_numpy(np.stack([crops[j] for j in keep])).to(cfg.device).permute(0, 3, 1, 2)
            out = model.predict(x.float().div_(255.0), flip_tta=cfg.flip_tta)
            for name, v in out.items():
                raw[name].append(v.float().cpu())
            ok.extend(chunk[j] for j in keep)
            if progress:
                progress(min(i + cfg.batch_size, len(records)), len(records))
    if not ok:
        raise FacemtlError("no image could be read")
    targets = target_arrays(ok, [t.name for t in specs])
    metrics: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    all_probs: dict[str, np.ndarray] = {}
    for spec in specs:
        values, probs = spec.decode_raw(torch.cat(raw[spec.name]))
        preds[spec.name] = values.numpy()
        class_probs = probs.numpy() if (probs is not None and spec.kind == "classification") else None
        if cfg.keep_samples and class_probs is not None:
            all_probs[spec.name] = class_probs
        metrics[spec.name] = compute_task_metrics(spec, targets[spec.name], preds[spec.name], class_probs)
        if metrics[spec.name].get("n", 0) == 0:
            metrics[spec.name]["note"] = f"no {spec.name} labels in this data: task skipped"
    fair_records = build_records(targets, preds, tasks=[s.name for s in specs])
    # Every task of the model gets a table; one without labels carries the metrics' "task skipped" note.
    fairness = fairness_report(fair_records, tasks=[s.name for s in specs], group_keys=cfg.group_keys,
                               min_count=cfg.fairness_min_count, n_boot=cfg.bootstrap)
    for name, tab in fairness["tasks"].items():
        if metrics[name].get("note") and not tab.get("n"):
            tab["note"] = metrics[name]["note"]
    out: dict[str, Any] = {
        "model": {"checkpoint": str(path), **meta.get("model_config", {})},
        "data": {"split": cfg.split, "seed": seed, "val_fraction": vf, "n_images": len(ok),
                 "by_source": dict(Counter(f"{r.source}/{r.split}" for r in ok)),
                 "skipped": {**counts.get("skipped", {}), **{k: v for k, v in failed.items() if v}},
                 "config": {k: v for k, v in asdict(cfg).items() if k in ("utkface", "fer2013", "manifest", "limit")}},
        "metrics": metrics,
        "fairness": fairness,
    }
    if cfg.keep_samples:
        out["samples"] = _samples(ok, specs, fair_records, all_probs)
    return out


def _samples(ok: list[Record], specs: list, fair_records: list[dict[str, Any]],
             all_probs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-image true/predicted labels (names or years) and class probabilities, JSON-ready."""
    def num(v: Any) -> Any:
        return round(float(v), 2) if isinstance(v, (float, np.floating)) else v

    out = []
    for i, (r, fr) in enumerate(zip(ok, fair_records)):
        out.append({
            "path": r.path, "source": r.source,
            "true": {s.name: num(fr.get(s.name)) for s in specs},
            "pred": {k: num(v) for k, v in fr.get("pred", {}).items()},
            "probs": {k: [round(float(x), 4) for x in p[i]] for k, p in all_probs.items()},
        })
    return out

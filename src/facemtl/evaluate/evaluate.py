"""Evaluate a checkpoint on labelled data: every metric per task, MAE per age band, confusion matrices,
calibration and a per-group fairness table (ethnicity x gender x age band)."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import Record, extra_targets, target_arrays
from ..data.gather import gather_records
from ..data.split import read_split_manifest, split_seed_of
from ..errors import DatasetError, FacemtlError, InvalidInputError
from .fairness import DEFAULT_GROUP_KEYS, build_records, fairness_report
from .metrics import compute_task_metrics

__all__ = ["SPLITS", "EvaluateConfig", "evaluate", "interval_metrics"]

log = logging.getLogger(__name__)
SPLITS = ("val", "test", "train", "all")


@dataclass(frozen=True)
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
        detector: None or "none": the dataset-crop path (each image framed by the training code, the same
            crop as ``--detector none``); a detector name (e.g. "retinaface"): the photo path of
            ``facemtl predict``, the largest face of each image being the labelled one (images where no face
            is found are counted in ``data.skipped`` and left out of the metrics).
        cache_dir: where framed crops are cached (default: ``~/.cache/facemtl`` or ``$FACEMTL_CACHE``).
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
    fairface: str | None = None
    celeba_gender: str | None = None
    manifest: tuple[str, ...] = ()
    detector: str | None = None
    cache_dir: str | None = None
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
    age_interval: float = 0.9
    split_manifest: str | None = None

    def __post_init__(self) -> None:
        from ..calibration import check_level
        from ..errors import unknown_name

        object.__setattr__(self, "age_interval", check_level(self.age_interval))
        if self.split not in SPLITS:
            raise unknown_name("split", self.split, SPLITS)
        object.__setattr__(self, "manifest", tuple(self.manifest or ()))
        object.__setattr__(self, "group_keys", _parse_group_keys(self.group_keys))
        if self.fairness_min_count < 0:
            raise InvalidInputError(f"fairness_min_count must be >= 0; got {self.fairness_min_count}")
        if self.bootstrap < 0:
            raise InvalidInputError(f"bootstrap must be >= 0 (0: no confidence intervals); got {self.bootstrap}")
        if not (self.utkface or self.fer2013 or self.fairface or self.celeba_gender or self.manifest):
            raise DatasetError("nothing to evaluate on: give --utkface, --fer2013, --fairface, --celeba-gender "
                               "and/or --manifest")
        if self.detector not in (None, "", "none"):
            from ..detect import list_detectors

            if self.detector not in list_detectors():
                raise unknown_name("detector", self.detector, ["none", *list_detectors()])


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


def _by_source(records: list[Record]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        out.setdefault(r.source, []).append(i)
    return out


def _crop_path(cfg: EvaluateConfig, model: Any, meta: dict[str, Any], records: list[Record],
               progress: Callable[[int, int], None] | None) -> tuple[list[int], dict[str, np.ndarray], Counter]:
    """Dataset-crop path: every record framed by the training code (cached), then the one inference function.
    Returns (indices of the records that could be read, raw outputs, failure counts)."""
    from ..data.cache import build_cache, default_cache_dir
    from ..models.base import predict_crops_raw
    from ..preprocess import crop_settings

    pre = meta["preprocess"]
    size = int(pre["input_size"])
    geometry, framing = crop_settings(pre)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    kept: list[int] = []
    raw: dict[str, list[np.ndarray]] = {}
    failed: Counter = Counter()
    done = 0
    for src, idx in _by_source(records).items():
        recs = [records[i] for i in idx]
        cached = build_cache(recs, size, cache_dir, 2, geometry, framing)
        ok = np.flatnonzero(cached.ok)
        failed["unreadable"] += int(len(recs) - len(ok))
        if framing.uses_detector:
            missed = int((cached.ok & ~cached.found).sum())
            failed[f"{src}: no face found in the crop (kept with its own framing)"] += missed
        for j in range(0, len(ok), cfg.batch_size):
            part = ok[j:j + cfg.batch_size]
            out = predict_crops_raw(model, np.asarray(cached.images[part]), size, cfg.batch_size, cfg.flip_tta)
            for k, v in out.items():
                raw.setdefault(k, []).append(v)
            done += len(part)
            if progress:
                progress(done, len(records))
        kept.extend(idx[i] for i in ok)
    return kept, {k: np.concatenate(v) for k, v in raw.items()}, failed


def _detector_path(cfg: EvaluateConfig, model: Any, meta: dict[str, Any], records: list[Record],
                   progress: Callable[[int, int], None] | None, level: float = 0.9
                   ) -> tuple[list[int], dict[str, Any], Counter, tuple[np.ndarray, np.ndarray] | None,
                              list[str] | None]:
    """Photo path: exactly what ``facemtl predict --detector NAME`` does (a FaceAnalyzer around the model already
    loaded); the largest face of each image is the labelled one. Returns (indices of the records with a face,
    {task: (values, probs)}, failure counts)."""
    from ..analyzer import AnalyzerOptions, FaceAnalyzer, ItemError
    from ..detect import create_detector
    from ..preprocess import crop_settings

    assert cfg.detector, "the photo path needs a detector name"
    geometry, framing = crop_settings(meta["preprocess"])
    analyzer = FaceAnalyzer(model, create_detector(cfg.detector), int(meta["preprocess"]["input_size"]), geometry,
                            options=AnalyzerOptions(largest_only=True, batch_size=cfg.batch_size,
                                                    flip_tta=cfg.flip_tta, age_interval=level), framing=framing)
    kept: list[int] = []
    faces: list[Any] = []
    failed: Counter = Counter()
    for i, res in enumerate(analyzer.analyze_many((r.image_source() for r in records), errors="record")):
        if isinstance(res, ItemError):
            failed["unreadable"] += 1
        elif not res.faces:
            failed[f"{records[i].source}: no face detected ({cfg.detector})"] += 1
        else:
            kept.append(i)
            faces.append(res.faces[0])
        if progress and (i + 1) % cfg.batch_size == 0:
            progress(i + 1, len(records))
    out: dict[str, Any] = {}
    for spec in analyzer.tasks:
        if spec.kind == "classification":
            probs = np.array([[f[spec.name].probs[lab] for lab in spec.labels] for f in faces])
            probs = probs.reshape(-1, len(spec.labels))
            out[spec.name] = (probs.argmax(1).astype(float) if len(faces) else np.zeros(0), probs)
        else:
            out[spec.name] = (np.array([f[spec.name].value for f in faces], dtype=float), None)
    intervals = groups = None
    spec = _interval_spec(analyzer.tasks)
    if spec is not None and faces and spec.name in faces[0]:
        name = spec.name
        if faces[0][name].low is not None:
            intervals = (np.array([f[name].low for f in faces], float), np.array([f[name].high for f in faces], float))
        groups = [f[name].label for f in faces] if spec.label_grouping else None
    return kept, out, failed, intervals, groups


def _interval_spec(specs: Sequence[Any]) -> Any:
    """The model's interval task (age): its intervals are measured and its reported groups scored; None if none."""
    return next((s for s in specs if s.kind == "regression" and s.interval), None)


def interval_metrics(pred_years: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     pred_groups: list[str] | None = None, groups: Sequence[tuple[str, float]] | None = None
                     ) -> dict[str, Any]:
    """Values labelled by a bin [lo, hi) (ages): the share of predicted values inside the bin (whole units, as the
    groups count), the group accuracy (the reported group, ``pred_groups``, against the bin's group; without it the
    predicted value's group) over ``groups`` (default: the age groups), and the mean distance to the bin (0
    inside)."""
    from ..groups import bucket_names
    from ..tasks import AGE_GROUPS, in_interval

    table = groups if groups is not None else AGE_GROUPS
    m = ~np.isnan(lo)
    if not m.any():
        return {"n": 0}
    p, lo, hi = np.floor(pred_years[m]), lo[m], hi[m]
    inside = in_interval(pred_years[m], lo, hi)
    true_groups = bucket_names(lo, table)
    reported: list[str | None] = [g for g, k in zip(pred_groups, m) if k] if pred_groups is not None else \
        bucket_names(pred_years[m], table)
    dist = np.maximum(lo - p, 0) + np.maximum(p - (hi - 1), 0)
    return {"n": int(m.sum()), "in_bin": float(inside.mean()),
            "group_accuracy": float(np.mean([a == b for a, b in zip(true_groups, reported)])),
            "mean_years_outside": float(np.where(np.isfinite(dist), dist, 0).mean())}


def _run_manifest(cfg: EvaluateConfig, meta: dict[str, Any]) -> Path | None:
    """The split manifest a training run wrote (``split.csv`` beside the checkpoint, or ``cfg.split_manifest``),
    checked against the SHA-256 the checkpoint recorded; None when there is none to use (the bundled models: their
    split is re-created from the seed, which gives the same images).

    Raises:
        DatasetError: a manifest whose hash is not the checkpoint's (another run's split would mislabel held-out
            images as unseen).
    """
    from .._hashing import file_sha256

    want = meta.get("data_manifest_sha256")
    given = Path(cfg.split_manifest) if cfg.split_manifest else None
    path = given or (Path(cfg.model).parent / "split.csv" if cfg.model and Path(str(cfg.model)).is_file() else None)
    if path is None or not path.is_file():
        if given is not None:
            raise DatasetError(f"split manifest not found: {given}")
        return None
    got = file_sha256(path)
    if want and got != want:
        if given is None:
            log.warning("%s does not match the checkpoint's data_manifest_sha256; re-creating the split from the seed",
                        path)
            return None
        raise DatasetError(f"{path} is not the split this checkpoint was trained with (sha256 {got[:12]}..., the "
                           f"checkpoint records {want[:12]}...)")
    return path if want or given is not None else None


def held_out_records(cfg: EvaluateConfig, meta: dict[str, Any]) -> tuple[list[Record], dict, tuple[int, float, Any]]:
    """The records of ``cfg.split`` exactly as the checkpoint's own training split them (seed, val fractions and
    training ``--limit`` from its ``train_config``); returns (records, counts, (seed, val_fraction,
    source_val_fraction))."""
    tcfg = meta.get("train_config") or {}
    manifest = _run_manifest(cfg, meta)
    seed = cfg.seed if cfg.seed is not None else split_seed_of(tcfg)
    vf = cfg.val_fraction if cfg.val_fraction is not None else float(tcfg.get("val_fraction", 0.1))
    svf = tcfg.get("source_val_fraction") or {"fairface": 0.2, "celeba_gender": 0.2}
    sources: dict[str, Any] = dict(fairface=cfg.fairface, celeba_gender=cfg.celeba_gender, source_val_fraction=svf)
    if cfg.split == "all":
        records, counts, _ = gather_records(cfg.utkface, cfg.fer2013, cfg.manifest, cfg.limit, vf, seed, **sources)
    else:
        # Re-create the checkpoint's own split (gathered with its training --limit), then take at most
        # cfg.limit images per source from the chosen split: a subset of the images held out in training,
        # never a fresh split of a subsample (whose "val" images the model may have been trained on).
        train_limit = tcfg.get("limit")
        records, counts, _ = gather_records(cfg.utkface, cfg.fer2013, cfg.manifest, train_limit, vf, seed, **sources)
        if manifest is not None:  # the split the run wrote, by image digest, instead of one re-derived from the seed
            splits = read_split_manifest(manifest)
            for r in records:
                r.split = splits.get(r.compute_digest(), "not in the run")
            counts.setdefault("skipped", {})["not in the run's split manifest"] = \
                sum(r.split == "not in the run" for r in records)
        records = _limit_per_source(_select(records, cfg.split), cfg.limit)
    if not records:
        raise DatasetError(f"no labelled images in split {cfg.split!r}; try --split all")
    return records, counts, (seed, vf, svf)


def evaluate(cfg: EvaluateConfig, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the model over the chosen split; returns a JSON-serialisable report, pooled and per source.

    Example:
        >>> report = evaluate(EvaluateConfig(utkface="data/utkface", fer2013="data/fer2013"))
        >>> report["metrics"]["age"]["mae"], report["by_source"]["fer2013"]["emotion"]["accuracy"]
    """
    from ..models.load import load_model

    model, file = load_model(cfg.model, device=cfg.device, threads=cfg.threads)  # default: the bundled model
    path, meta = str(file), model.metadata
    records, counts, (seed, vf, svf) = held_out_records(cfg, meta)
    from ..calibration import Calibration, check_level

    level = check_level(cfg.age_interval)
    calibration = Calibration.from_dict(meta.get("calibration"))
    specs = list(model.tasks)
    raw_probs: dict[str, np.ndarray] = {}  # uncalibrated softmax, for the before/after figures
    age_groups: list[str] | None = None
    intervals: tuple[np.ndarray, np.ndarray] | None = None
    if cfg.detector in (None, "", "none"):
        kept, raw, failed = _crop_path(cfg, model, meta, records, progress)
        decoded = {}
        for spec in specs:
            values, probs = spec.decode_raw(raw[spec.name]) if kept else (np.zeros(0), None)
            if spec.kind == "classification" and probs is not None:
                raw_probs[spec.name] = probs
                if calibration is not None and spec.name in calibration.temperatures:
                    probs = calibration.probabilities(spec.name, raw[spec.name])
            if spec is _interval_spec(specs) and kept:
                ivs = calibration.intervals_for(spec.name) if calibration is not None else None
                if ivs is not None:
                    intervals = ivs.intervals(np.asarray(values, float), level)
                if probs is not None and spec.label_grouping:  # the label every output reports
                    age_groups = [spec.most_probable_group(g) for g in spec.group_probabilities(probs)]
            decoded[spec.name] = (values, probs if spec.kind == "classification" else None)
    else:
        kept, decoded, failed, intervals, age_groups = _detector_path(cfg, model, meta, records, progress, level)
    if not kept:
        raise FacemtlError("no image could be read" if not failed or "unreadable" in failed and len(failed) == 1
                           else f"no face in any image: {dict(failed)}")
    ok = [records[i] for i in kept]
    targets = target_arrays(ok, [t.name for t in specs])
    extra = extra_targets(ok)
    preds = {name: v for name, (v, _) in decoded.items()}
    all_probs = {name: p for name, (_, p) in decoded.items() if p is not None}
    metrics = _task_metrics(specs, targets, preds, all_probs, extra, np.arange(len(ok)), age_groups)
    by_source = {src: _task_metrics(specs, targets, preds, all_probs, extra, np.array(idx), age_groups)
                 for src, idx in _by_source(ok).items()}
    fair_records = build_records(targets, preds, tasks=[s.name for s in specs])
    # Every task of the model gets a table; one without labels carries the metrics' "task skipped" note.
    fairness = fairness_report(fair_records, tasks=[s.name for s in specs], group_keys=cfg.group_keys,
                               min_count=cfg.fairness_min_count, n_boot=cfg.bootstrap)
    for name, tab in fairness["tasks"].items():
        if metrics[name].get("note") and not tab.get("n"):
            tab["note"] = metrics[name]["note"]
    out: dict[str, Any] = {
        "model": {"checkpoint": str(path), **meta.get("model_config", {})},
        "data": {"split": cfg.split, "seed": seed, "val_fraction": vf, "source_val_fraction": svf,
                 "n_images": len(ok), "n_given": len(records), "path": cfg.detector or "crops",
                 "by_source": dict(Counter(f"{r.source}/{r.split}" for r in ok)),
                 "skipped": {**counts.get("skipped", {}), **{k: v for k, v in failed.items() if v}},
                 "config": {k: v for k, v in asdict(cfg).items()
                            if k in ("utkface", "fer2013", "fairface", "celeba_gender", "manifest", "limit",
                                     "detector")}},
        "metrics": metrics,
        "by_source": by_source,
        "fairness": fairness,
    }
    if calibration is not None:
        from .calibration_report import calibration_report

        kept_raw = {k: v for k, v in raw_probs.items()}
        out["calibration"] = calibration_report(ok, targets, all_probs, kept_raw, intervals, level,
                                                calibration, cfg.bootstrap)
    if cfg.keep_samples:
        out["samples"] = _samples(ok, specs, fair_records, all_probs)
    return out


def _task_metrics(specs: list, targets: dict[str, np.ndarray], preds: dict[str, np.ndarray],
                  probs: dict[str, np.ndarray], extra: dict[str, np.ndarray], idx: np.ndarray,
                  age_groups: list[str] | None = None) -> dict[str, Any]:
    """Every metric of every task on the rows ``idx``, plus interval (age bin) and FER+ label-set metrics.
    ``age_groups``: the group labels the interval task (age) reported (its most probable group), aligned with the
    rows."""
    out: dict[str, Any] = {}
    grouped = _interval_spec(specs)
    for spec in specs:
        p = probs.get(spec.name)
        groups = [age_groups[i] for i in idx] if (age_groups is not None and spec is grouped) else None
        out[spec.name] = compute_task_metrics(spec, targets[spec.name][idx], preds[spec.name][idx],
                                              None if p is None else p[idx], pred_groups=groups)
        if spec.kind == "regression" and f"{spec.name}_lo" in extra:
            iv = interval_metrics(preds[spec.name][idx], extra[f"{spec.name}_lo"][idx], extra[f"{spec.name}_hi"][idx],
                                  groups, spec.grouping(spec.label_grouping) if spec.label_grouping else None)
            if iv["n"]:
                out[spec.name]["interval"] = iv
        soft = extra.get(f"{spec.name}_soft")
        if soft is not None and spec.kind == "classification":
            s = soft[idx]
            has = ~np.isnan(s).any(1)
            if has.any():
                maj = s[has].argmax(1)
                out[spec.name]["ferplus"] = {"n": int(has.sum()),
                                             "accuracy": float((preds[spec.name][idx][has] == maj).mean())}
        if out[spec.name].get("n", 0) == 0 and "interval" not in out[spec.name]:
            out[spec.name]["note"] = f"no {spec.name} labels in this data: task skipped"
    return out


def _samples(ok: list[Record], specs: list, fair_records: list[dict[str, Any]],
             all_probs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-image true/predicted labels (names or years) and class probabilities, JSON-ready; ``key`` names the
    image uniquely (a zip member as ``zip!member``), so two models' samples can be paired."""
    def num(v: Any) -> Any:
        return round(float(v), 2) if isinstance(v, (float, np.floating)) else v

    out = []
    for i, (r, fr) in enumerate(zip(ok, fair_records)):
        out.append({
            "path": r.path, "source": r.source, "key": r.key, "split": r.split,
            "true": {s.name: num(fr.get(s.name)) for s in specs},
            # labels known as a range (FairFace's age bins) and crowd-vote majorities (FER+), when the image has them
            "true_interval": {t: [float(lo), float(hi)] for t, (lo, hi) in r.intervals.items()},
            "true_majority": {s.name: s.labels[int(np.argmax(r.soft[s.name]))] for s in specs
                              if s.name in r.soft and s.kind == "classification"},
            # predictions unrounded: an age of 29.996 is inside "20-29", and 30.0 would not be
            "pred": {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in fr.get("pred", {}).items()},
            "probs": {k: [round(float(x), 4) for x in p[i]] for k, p in all_probs.items()},
        })
    return out

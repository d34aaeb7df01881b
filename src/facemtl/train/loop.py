"""The training loop: mixed datasets, masked multi-task loss, freeze-then-unfreeze, warmup + cosine
learning rate, per-epoch validation, metrics CSV, self-describing checkpoints, resume, early stopping."""
from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.split import split_seed_of
from ..data.transforms import AugmentConfig, augment_batch
from ..errors import FacemtlError, unknown_name
from ..evaluate.metrics import get_metric
from ..models.base import predict_crops_raw
from ..models.factory import ModelConfig, create_model, load_checkpoint, save_checkpoint
from ..models.multitask import MultiTaskNet
from ..tasks import get_task, in_interval, list_tasks
from .balance import group_weights
from .config import TrainConfig
from .data import SourceData, build_sources, gather_records
from .distributed import DistInfo, dist_info, init_distributed, shard_batches, shard_steps
from .losses import MultiTaskLoss, regression_head_for

__all__ = ["TrainConfig", "WeightAverage", "predict_arrays", "quick_metrics", "selection_score", "train"]

log = logging.getLogger(__name__)


def _device(name: str) -> torch.device:
    from .._device import resolve_device

    return resolve_device(name)


def selection_score(m: dict[str, float]) -> float:
    """One number to pick the best epoch: the mean over sources of each source's mean of its tasks' headline
    figures (accuracies; a lower-is-better headline as ``1 - v / selection_scale``: 1 - age MAE / 10) and the
    share of values inside their labelled interval (``in_bin``: ages inside their bin); every held-out source
    counts equally. The terms come from the task specs (:meth:`facemtl.tasks.TaskSpec.selection_term`).

    Keys are ``source/task/metric`` (per source) or ``task/metric`` (one pooled source)."""
    by_source: dict[str, list[float]] = {}
    for k, v in m.items():
        parts = k.split("/")
        src, key = ("", k) if len(parts) == 2 else (parts[0], "/".join(parts[1:]))
        task, _, metric = key.partition("/")
        if task not in list_tasks() or "/" in metric:
            continue
        term = get_task(task).selection_term(metric, v)
        if term is not None:
            by_source.setdefault(src, []).append(term)
    scores = [float(np.mean(v)) for v in by_source.values() if v]
    return float(np.mean(scores)) if scores else 0.0


# The headline figures quick_metrics computes on tensors (any other headline goes through the metric registry).
_QUICK: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "accuracy": lambda p, t: (p == t).float().mean(),
    "mae": lambda p, t: (p - t).abs().mean(),
}


def predict_arrays(model: torch.nn.Module, images: np.ndarray | torch.Tensor, size: int, batch_size: int = 256,
                   device: torch.device | None = None, flip_tta: bool = True) -> dict[str, torch.Tensor]:
    """Raw head outputs for uint8 (N, S, S, 3) cached crops, without augmentation: the same inference as
    ``facemtl evaluate`` (:func:`facemtl.models.base.predict_crops_raw`), as CPU tensors."""
    imgs = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    return {k: torch.from_numpy(v) for k, v in predict_crops_raw(model, imgs, size, batch_size, flip_tta,
                                                                 device).items()}


def quick_metrics(model: torch.nn.Module, sources: list[SourceData], size: int, device: torch.device,
                  flip_tta: bool = True) -> dict[str, float]:
    """Headline validation metrics per source and task (``source/task/metric``): each task's headline (age MAE,
    accuracies), the share of values inside their bin (interval labels: ages), and the counts."""
    m: dict[str, float] = {}
    for src in sources:
        if len(src) == 0:
            continue
        raw = predict_arrays(model, src.images, size, device=device, flip_tta=flip_tta)
        for name, r in raw.items():
            spec = get_task(name)
            t = src.targets[name]
            mask = t >= 0 if spec.kind == "classification" else ~torch.isnan(t)
            values, _ = spec.decode_raw(r)
            if mask.any():
                p, tt = values[mask].float(), t[mask].float()
                quick = _QUICK.get(spec.headline)
                m[f"{src.name}/{name}/{spec.headline}"] = float(quick(p, tt)) if quick is not None else \
                    float(get_metric(spec.headline)(tt.numpy(), p.numpy().astype(np.int64) if spec.kind ==
                                                    "classification" else p.numpy()))
                m[f"{src.name}/{name}/n"] = float(mask.sum())
            lo = src.targets.get(f"{name}_lo")
            if lo is not None and (~torch.isnan(lo)).any():
                im = ~torch.isnan(lo)
                inside = in_interval(values[im], lo[im], src.targets[f"{name}_hi"][im])
                m[f"{src.name}/{name}/in_bin"] = float(inside.float().mean())
                m[f"{src.name}/{name}/n_bin"] = float(im.sum())
    return m


class WeightAverage:
    """An exponential moving average of a model's weights, updated after every optimiser step.

    Floating-point parameters and buffers (batch-norm statistics too) are averaged; integer buffers are copied.
    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so the average starts close
    to the weights it starts from instead of being dominated by them (the usual schedule of timm / YOLO EMAs).
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ours = self.model.state_dict()
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                ours[k].lerp_(v.detach(), 1.0 - d)
            else:
                ours[k].copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"state_dict": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["state_dict"])
        self.updates = int(state["updates"])


class _Sampler:
    """Mixes sources by ratio; the order of epoch e is a pure function of (seed, e), so resume can skip.

    With ``weights`` (one array or None per source) a source's samples are drawn with probability
    proportional to their weight, with replacement (group-balanced sampling).
    """

    def __init__(self, sources: list[SourceData], batch_size: int, ratio: dict[str, float] | None, seed: int,
                 weights: Sequence[np.ndarray | None] | None = None, epoch_size: int | None = None):
        self.sources, self.batch_size, self.seed = sources, batch_size, seed
        self.probs = [None if w is None or np.allclose(w, w[0]) else w / w.sum()
                      for w in (weights or [None] * len(sources))]
        total = epoch_size or sum(len(s) for s in sources)
        if ratio:
            unknown = [k for k in ratio if k not in {s.name for s in sources}]
            if unknown:
                raise unknown_name("source in sample_ratio", unknown[0], [s.name for s in sources])
            z = sum(ratio.get(s.name, 0.0) for s in sources)
            self.counts = [int(round(total * ratio.get(s.name, 0.0) / z)) for s in sources]
        else:
            n = sum(len(s) for s in sources)
            self.counts = [int(round(total * len(s) / n)) for s in sources] if epoch_size else [len(s) for s in sources]
        self.steps = max(1, sum(self.counts) // batch_size)

    def epoch(self, e: int) -> list[list[tuple[int, np.ndarray]]]:
        rng = np.random.default_rng([self.seed, e])
        tags, idxs = [], []
        for k, (src, n) in enumerate(zip(self.sources, self.counts)):
            if n == 0 or len(src) == 0:
                continue
            if self.probs[k] is not None:
                perm = rng.choice(len(src), size=n, replace=True, p=self.probs[k])
            else:
                reps = int(math.ceil(n / len(src)))
                perm = np.concatenate([rng.permutation(len(src)) for _ in range(reps)])[:n]
            tags.append(np.full(n, k))
            idxs.append(perm)
        tag, idx = np.concatenate(tags), np.concatenate(idxs)
        order = rng.permutation(len(tag))
        tag, idx = tag[order], idx[order]
        batches = []
        for b in range(self.steps):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            batches.append([(k, np.sort(idx[sl][tag[sl] == k])) for k in np.unique(tag[sl])])
        return batches


def _make_batch(sources: list[SourceData], parts: list[tuple[int, np.ndarray]], size: int, aug: AugmentConfig,
                device: torch.device, gen: torch.Generator, weights: Sequence[np.ndarray | None] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
    """Augmented images, targets and (with ``weights``) per-sample loss weights of one batch."""
    xs, ws = [], []
    ts: dict[str, list[torch.Tensor]] = {}
    for k, idx in parts:
        src = sources[k]
        imgs = src.images
        if isinstance(imgs, torch.Tensor):
            x = imgs[torch.from_numpy(idx).to(imgs.device)]
        else:
            x = torch.from_numpy(np.ascontiguousarray(imgs[idx]))
        x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)
        xs.append(augment_batch(x, size, aug, gen, context=x.shape[-1] / size))
        for name, t in src.targets.items():
            ts.setdefault(name, []).append(t[idx])
        if weights is not None:
            w = weights[k]
            ws.append(torch.from_numpy(w[idx]).float() if w is not None else torch.ones(len(idx)))
    sample_weight = torch.cat(ws).to(device) if weights is not None else None
    return torch.cat(xs), {k: torch.cat(v).to(device) for k, v in ts.items()}, sample_weight


def _set_backbone_trainable(model: MultiTaskNet, trainable: bool) -> None:
    for p in model.backbone.parameters():
        p.requires_grad_(trainable)


def _barrier(dinfo: DistInfo) -> None:
    if dinfo.enabled:
        torch.distributed.barrier()


def _from_rank0(dinfo: DistInfo, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a collective: every rank calls it)."""
    if not dinfo.enabled:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def _sync_extra_grads(params: list[torch.nn.Parameter], dinfo: DistInfo) -> None:
    """Average the gradients of parameters outside the DDP-wrapped model (the loss's learned task weights)."""
    if not dinfo.enabled or not params:
        return
    for p in params:
        if p.grad is None:  # a task absent from this rank's batch: it still takes part in the sum
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad)
        p.grad /= dinfo.world_size


def _test_kill_hook(rank: int, gstep: int) -> None:
    """Test hook (tests/test_train_distributed.py), not an option: ``FACEMTL_TEST_KILL_RANK_AT_STEP=RANK:STEP``
    makes that rank die at that global step (0-based), ``os._exit(17)`` with nothing flushed, as a crashed worker
    would."""
    spec = os.environ.get("FACEMTL_TEST_KILL_RANK_AT_STEP")
    if spec and spec == f"{rank}:{gstep}":
        os._exit(17)


def train(cfg: TrainConfig, sources: list[SourceData] | None = None,
          progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns {"best": path, "last": path, "history": [...], ...}.

    Under ``torchrun`` (RANK / WORLD_SIZE in the environment, world size > 1) it trains data-parallel
    (:mod:`facemtl.train.distributed`): every rank builds the same split and epoch order and trains its own
    share of the batches; rank 0 alone validates and writes checkpoints, metrics.csv, split.csv and logs.

    Args:
        sources: pre-built in-memory data (used by scripts that pack data); default: built from cfg paths.
        progress: called after every step with {"epoch", "step", "steps", "loss", ...} (CLI progress bar);
            on rank 0 only.
    """
    import torch.distributed as dist

    dinfo = dist_info()
    if not dinfo.enabled:
        return _train(cfg, sources, progress, dinfo, _device(cfg.device))
    owns_group = not dist.is_initialized()
    device = init_distributed(dinfo, _device(cfg.device))
    try:
        return _train(cfg, sources, progress if dinfo.is_main else None, dinfo, device)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, sources: list[SourceData] | None, progress: Callable[[dict[str, Any]], None] | None,
           dinfo: DistInfo, device: torch.device) -> dict[str, Any]:
    """Setup, resume, then one ``_train_epoch`` + ``_end_epoch`` per epoch until the last, a stop or the budget."""
    run = _setup(cfg, sources, progress, dinfo, device)
    _resume(run)
    run.last_ck = time.time()
    for epoch in range(run.start_epoch, cfg.epochs):
        stats = _train_epoch(run, epoch)
        if not _end_epoch(run, epoch, stats):
            break
    return _finish(run)


def lr_at(step: int, spent_s: float | None, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """The learning rate of global step ``step`` (0-based): linear warmup over ``cfg.warmup_epochs``, then a
    cosine to 0 at the last epoch; with a time budget the cosine also ends with the budget when ``spent_s``
    (seconds of training so far) runs out before the epochs do. ``spent_s`` only counts with a time budget."""
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    total_steps = steps_per_epoch * cfg.epochs
    progress = (step - warm) / max(1, total_steps - warm)
    if cfg.time_budget_min and spent_s is not None:
        progress = max(progress, spent_s / (cfg.time_budget_min * 60 * 0.97))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass(eq=False)
class _Run:
    """One training run: what ``_setup`` builds, then the state that the epochs carry on and last.pt keeps."""

    cfg: TrainConfig
    dinfo: DistInfo
    device: torch.device
    out: Path
    model: MultiTaskNet
    size: int
    train_src: list[SourceData]
    val_src: list[SourceData]
    criterion: MultiTaskLoss
    opt: torch.optim.Optimizer
    sampler: _Sampler
    loss_weights: list[np.ndarray] | None  # per-sample loss weights (balance=reweight)
    steps_per_epoch: int  # this rank's steps (all of them: one process)
    counts: dict[str, Any]
    extra_base: dict[str, Any]  # what every checkpoint of the run records besides the weights
    progress: Callable[[dict[str, Any]], None] | None
    ema: WeightAverage | None  # the weight average (ema_decay > 0): validated, selected and written as best.pt
    gen: torch.Generator  # the augmentation's, reseeded every epoch
    t0: float  # wall clock at the start of this session
    elapsed_before: float = 0.0  # training seconds of earlier sessions (resume)
    start_epoch: int = 0
    start_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float = -math.inf
    bad_epochs: int = 0
    stopped: str = "completed"
    last_ck: float = 0.0  # wall clock of the last write of last.pt
    ddp: torch.nn.Module | None = None
    ddp_frozen: bool | None = None
    crit_params: list[torch.nn.Parameter] = field(init=False)  # the loss's own (learned task weights)

    def __post_init__(self) -> None:
        self.crit_params = list(self.criterion.parameters())

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"

    @property
    def scored_model(self) -> MultiTaskNet:
        """The model that is validated, selected and written as best.pt: the weight average when there is one."""
        return self.ema.model if self.ema is not None else self.model  # type: ignore[return-value]

    def elapsed(self) -> float:
        """Seconds of training so far (this process's clock)."""
        return self.elapsed_before + time.time() - self.t0

    def spent_s(self) -> float:
        """Seconds of training so far; rank 0's clock on every rank (the same lr and stop on all of them).
        A collective under DDP: every rank calls it."""
        spent = self.elapsed()
        if self.dinfo.enabled:
            device = self.device if self.device.type == "cuda" else "cpu"
            box = torch.tensor([spent], dtype=torch.float64, device=device)
            torch.distributed.broadcast(box, src=0)
            spent = float(box.item())
        return spent

    def lr(self, step: int, spent: float | None = None) -> float:
        """:func:`lr_at` for this run; ``spent`` defaults to this process's clock."""
        if spent is None and self.cfg.time_budget_min:
            spent = self.elapsed()
        return lr_at(step, spent, self.cfg, self.steps_per_epoch)


@dataclass
class _EpochStats:
    """What one epoch's steps leave for its end: this rank's (or, after ``_gather_epoch``, every rank's) sums."""

    frozen: bool
    steps: int  # this rank's batches in the epoch
    train_s: float
    n_seen: int
    n_batches: int
    part_sums: dict[str, float]


def _setup(cfg: TrainConfig, sources: list[SourceData] | None, progress: Callable[[dict[str, Any]], None] | None,
           dinfo: DistInfo, device: torch.device) -> _Run:
    """Seeds, run folder, model (and its init checkpoint), data, criterion, optimiser, sampler, weight average."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = _prepare_out(cfg, dinfo)
    model = _build_model(cfg)
    size = model.config.input_size
    assert isinstance(size, int)
    manifest_sha: str | None = None
    counts: dict[str, Any] = {}
    if sources is None:
        sources, counts, manifest_sha = _load_sources(cfg, size, out, dinfo)
    train_src, val_src = _split(sources, device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    criterion = MultiTaskLoss(model.tasks, cfg.loss_weighting, cfg.age_loss, cfg.label_smoothing,
                              cfg.ferplus_weight).to(device)
    params = [p for p in model.parameters()] + list(criterion.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    weights = _balance_weights(cfg, train_src, dinfo.is_main)
    sampler = _Sampler(train_src, cfg.batch_size, cfg.sample_ratio, cfg.seed,
                       weights if cfg.balance == "sample" else None, cfg.epoch_size)
    extra_base = {"train_config": cfg.to_dict(), "data_manifest_sha256": manifest_sha,
                  "data_counts": {k: dict(v) for k, v in counts.items()}}
    return _Run(cfg=cfg, dinfo=dinfo, device=device, out=out, model=model, size=size, train_src=train_src,
                val_src=val_src, criterion=criterion, opt=opt, sampler=sampler,
                loss_weights=weights if cfg.balance == "reweight" else None,
                steps_per_epoch=shard_steps(sampler.steps, dinfo.world_size), counts=counts, extra_base=extra_base,
                progress=progress, ema=WeightAverage(model, cfg.ema_decay) if cfg.ema_decay > 0 else None,
                gen=torch.Generator().manual_seed(cfg.seed), t0=time.time())


def _prepare_out(cfg: TrainConfig, dinfo: DistInfo) -> Path:
    """The run folder, emptied of an earlier run with ``overwrite`` (refused without it, unless resuming)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if not cfg.resume and (last_path.exists() or (out / "metrics.csv").exists()):
        if not cfg.overwrite:
            raise FacemtlError(f"{out} already holds a training run; continue it with --resume, choose another "
                               "--out, or pass --overwrite to replace it")
        if dinfo.is_main:
            for f in (last_path, best_path, out / "metrics.csv"):
                f.unlink(missing_ok=True)
    _barrier(dinfo)  # every rank has looked at the run folder before rank 0 writes into it
    return out


def _build_model(cfg: TrainConfig) -> MultiTaskNet:
    """The run's model, with its weights from ``init_checkpoint`` and/or ``init_backbone`` when given."""
    model_cfg = ModelConfig(backbone=cfg.backbone, tasks=cfg.tasks, input_size=cfg.input_size,
                            shared_dim=cfg.shared_dim, regression_head=regression_head_for(cfg.age_loss),
                            attention=cfg.attention, pretrained=cfg.pretrained)
    model = create_model(config=model_cfg)
    if cfg.init_checkpoint:  # fine-tune: every weight from a checkpoint of the same architecture
        init, init_meta = load_checkpoint(cfg.init_checkpoint)
        init_backbone = init_meta["model_config"].get("backbone")
        if init_backbone != cfg.backbone or list(init.heads) != list(model.heads):
            raise FacemtlError(f"init_checkpoint {cfg.init_checkpoint} is a {init_backbone} model with tasks "
                               f"{list(init.heads)}; this run builds {cfg.backbone} with {list(model.heads)}")
        model.load_state_dict(init.state_dict())
        _warn_split_change(cfg, init_meta.get("train_config") or {})
    if cfg.init_backbone:  # backbone weights from a file (ImageNet weights carried to a machine without the package)
        state = torch.load(cfg.init_backbone, map_location="cpu", weights_only=True)
        model.backbone.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


SPLIT_KEYS = ("val_fraction", "source_val_fraction", "limit")  # with the split seed: what decides the split


def _warn_split_change(cfg: TrainConfig, init_tcfg: dict[str, Any]) -> None:
    """Warn when a fine-tuning run splits its data otherwise than the run that made its init_checkpoint: images
    that model was trained on would then be in this run's validation part (optimistic, leaking figures)."""
    if not init_tcfg:
        return
    mine = {"split_seed": cfg.effective_split_seed, **{k: getattr(cfg, k) for k in SPLIT_KEYS}}
    theirs = {"split_seed": split_seed_of(init_tcfg), **{k: init_tcfg.get(k) for k in SPLIT_KEYS}}
    changed = {k: (theirs[k], mine[k]) for k in mine if theirs[k] != mine[k]}
    if changed:
        detail = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        log.warning("init_checkpoint %s was split otherwise (%s): images it was trained on can be in this run's "
                    "validation part, whose figures are then optimistic; set split_seed (and the fractions) as it "
                    "had them to keep its held-out images held out", cfg.init_checkpoint, detail)


def _load_sources(cfg: TrainConfig, size: int, out: Path, dinfo: DistInfo
                  ) -> tuple[list[SourceData], dict[str, Any], str | None]:
    """The sources of ``cfg``'s data paths, split (split.csv) and framed at ``size``; rank 0 first."""
    main = dinfo.is_main
    if not main:  # rank 0 goes first: it writes split.csv and fills the crop cache the others then read
        _barrier(dinfo)
    records, counts, manifest_sha = gather_records(
        cfg.utkface, cfg.fer2013, cfg.manifest, cfg.limit, cfg.val_fraction, cfg.effective_split_seed,
        out / "split.csv" if main else None, fairface=cfg.fairface, celeba_gender=cfg.celeba_gender,
        source_val_fraction=cfg.source_val_fraction, ferplus=cfg.ferplus_weight > 0)
    sources, framed = build_sources(records, size, Path(cfg.cache_dir) if cfg.cache_dir else None, cfg.workers,
                                    cfg.geometry, cfg.framing, cfg.no_face)
    if main:
        _barrier(dinfo)
    counts["framing"] = framed
    if main:
        log.info("data: %s", json.dumps({k: dict(v) for k, v in counts.items()}))
    return sources, counts, manifest_sha


def _split(sources: list[SourceData], device: torch.device) -> tuple[list[SourceData], list[SourceData]]:
    """The training and validation parts of every source (on the accelerator when there is one)."""
    train_src = [s.subset("train") for s in sources]
    val_src = [s.subset("val") for s in sources]
    if sum(len(s) for s in train_src) == 0:
        raise FacemtlError("no training images after the split; check the data paths and --val-fraction")
    if device.type == "cuda":  # the whole dataset fits on the accelerator: no host round-trips
        for s in train_src + val_src:
            if not isinstance(s.images, torch.Tensor):
                s.images = torch.from_numpy(np.ascontiguousarray(s.images)).to(device)
    return train_src, val_src


def _balance_weights(cfg: TrainConfig, train_src: list[SourceData], main: bool) -> list[np.ndarray] | None:
    """Per-sample group weights of every training source (``balance`` sample or reweight); None without."""
    if cfg.balance == "none":
        return None
    weights = [group_weights(s.targets, cfg.balance_by, cfg.balance_power, cfg.balance_max_ratio)
               for s in train_src]
    for s, w in zip(train_src, weights if main else []):
        log.info("%s: balance=%s by %s, weights %.2f..%.2f", s.name, cfg.balance, ",".join(cfg.balance_by),
                 w.min() if len(w) else 1.0, w.max() if len(w) else 1.0)
    return weights


def _resume(run: _Run) -> None:
    """With ``resume``: the weights, optimiser, criterion, weight average, position and history of last.pt."""
    cfg, dinfo, last_path = run.cfg, run.dinfo, run.last_path
    if cfg.resume and last_path.exists():
        ck = torch.load(last_path, map_location="cpu", weights_only=False)
        run.model.load_state_dict(ck["state_dict"])
        run.opt.load_state_dict(ck["optimizer"])
        run.criterion.load_state_dict(ck["criterion"])
        run.start_epoch, run.start_step = ck["epoch"], ck["step"]
        run.history, run.best_score, run.bad_epochs = ck["history"], ck["best_score"], ck["bad_epochs"]
        run.elapsed_before = ck.get("elapsed_s", 0.0)
        if run.ema is not None:
            if ck.get("ema"):
                run.ema.load_state_dict(ck["ema"])
            else:  # a run started without the average: it starts from the resumed weights
                run.ema = WeightAverage(run.model, cfg.ema_decay)
        if run.start_step and ck.get("world_size", 1) != dinfo.world_size:
            raise FacemtlError(f"{last_path} stopped mid-epoch in a run of {ck.get('world_size', 1)} process(es); "
                               f"resume it with the same number of processes (this one has {dinfo.world_size})")
        if dinfo.is_main:
            log.info("resumed from %s at epoch %d step %d", last_path, run.start_epoch, run.start_step)
    elif cfg.resume and dinfo.is_main:
        log.warning("--resume given but %s does not exist; starting fresh", last_path)


def _save_last(run: _Run, epoch: int, step: int) -> None:
    """last.pt (rank 0 only): everything a resume at (epoch, step) needs."""
    if not run.dinfo.is_main:
        return
    cfg = run.cfg
    save_checkpoint(run.last_path, run.model, geometry=cfg.geometry, framing=cfg.framing, extra={
        **run.extra_base, "optimizer": run.opt.state_dict(), "criterion": run.criterion.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None, "epoch": epoch,
        "step": step, "history": run.history, "best_score": run.best_score, "bad_epochs": run.bad_epochs,
        "elapsed_s": run.elapsed(), "world_size": run.dinfo.world_size})
    log.debug("rank %d wrote %s", run.dinfo.rank, run.last_path)


def _start_epoch(run: _Run, epoch: int) -> tuple[bool, torch.nn.Module, list[list[tuple[int, np.ndarray]]]]:
    """Freeze or unfreeze the backbone (rewrapping DDP), seed the augmentation; (frozen, net, this rank's batches)."""
    cfg, dinfo, device, model = run.cfg, run.dinfo, run.device, run.model
    frozen = epoch < cfg.freeze_epochs
    _set_backbone_trainable(model, not frozen)
    if dinfo.enabled and frozen != run.ddp_frozen:  # DDP syncs the parameters that train: rewrap when they change
        from torch.nn.parallel import DistributedDataParallel

        run.ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        run.ddp_frozen = frozen
    net = run.ddp if run.ddp is not None else model
    net.train()
    if frozen:
        model.backbone.eval()  # frozen batch-norm statistics too
    run.gen.manual_seed(cfg.seed * 1000 + epoch + 7919 * dinfo.rank)  # each rank its own augmentations
    return frozen, net, shard_batches(run.sampler.epoch(epoch), dinfo.rank, dinfo.world_size)


def _train_epoch(run: _Run, epoch: int) -> _EpochStats:
    """The steps of one epoch (from the resumed step in the first): lr, batch, optimiser step, progress, the
    periodic last.pt and the time budget (which sets ``run.stopped``)."""
    cfg, dinfo = run.cfg, run.dinfo
    frozen, net, batches = _start_epoch(run, epoch)
    te, n_seen = time.time(), 0
    part_sums: dict[str, float] = {}
    for step in range(run.start_step if epoch == run.start_epoch else 0, len(batches)):
        gstep = epoch * run.steps_per_epoch + step
        _test_kill_hook(dinfo.rank, gstep)
        spent = run.spent_s() if cfg.time_budget_min else None  # rank 0's clock under DDP
        for g in run.opt.param_groups:
            g["lr"] = run.lr(gstep, spent)
        n, loss, parts = _step(run, net, batches[step])
        n_seen += n
        for k, v in parts.items():
            part_sums[k] = part_sums.get(k, 0.0) + v
        if run.progress:
            run.progress({"epoch": epoch, "epochs": cfg.epochs, "step": step + 1, "steps": len(batches),
                          "loss": float(loss.detach()) if run.device.type == "cpu" else None,
                          "images_per_s": n_seen / max(1e-6, time.time() - te)})
        if time.time() - run.last_ck > cfg.checkpoint_every_min * 60:
            _save_last(run, epoch, step + 1)
            run.last_ck = time.time()
        if cfg.time_budget_min and run.spent_s() > cfg.time_budget_min * 60:
            run.stopped = "time budget"
            break
    run.start_step = 0
    return _EpochStats(frozen=frozen, steps=len(batches), train_s=time.time() - te, n_seen=n_seen,
                       n_batches=len(batches), part_sums=part_sums)


def _step(run: _Run, net: torch.nn.Module, parts: list[tuple[int, np.ndarray]]
          ) -> tuple[int, torch.Tensor, dict[str, float]]:
    """One optimiser step on one batch (and the weight average's update); (images, loss, loss per task)."""
    cfg, device = run.cfg, run.device
    x, targets, sample_weight = _make_batch(run.train_src, parts, run.size, cfg.augment, device, run.gen,
                                            run.loss_weights)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
        outputs = net(x)
    loss, losses = run.criterion({k: v.float() for k, v in outputs.items()}, targets, sample_weight)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    _sync_extra_grads(run.crit_params, run.dinfo)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 5.0)
    run.opt.step()
    if run.ema is not None:
        run.ema.update(run.model)
    return len(x), loss, losses


def _gather_epoch(dinfo: DistInfo, stats: _EpochStats) -> _EpochStats:
    """The epoch's images, batches and loss sums over every rank's batches (a collective under DDP)."""
    if not dinfo.enabled:
        return stats
    shares: list[Any] = [None] * dinfo.world_size
    torch.distributed.all_gather_object(shares, (stats.n_seen, stats.part_sums, stats.n_batches))
    part_sums: dict[str, float] = {}
    for _, sums, _ in shares:
        for k, v in sums.items():
            part_sums[k] = part_sums.get(k, 0.0) + v
    return replace(stats, n_seen=sum(s[0] for s in shares), n_batches=sum(s[2] for s in shares),
                   part_sums=part_sums)


def _epoch_row(run: _Run, epoch: int, stats: _EpochStats, val: dict[str, float], score: float) -> dict[str, Any]:
    """The epoch's metrics.csv row (and history entry)."""
    train_s = stats.train_s
    return {"epoch": epoch + 1, "train_s": round(train_s, 1),
            "images_per_s": round(stats.n_seen / max(train_s, 1e-6), 1),
            "lr": run.lr(epoch * run.steps_per_epoch + stats.steps - 1), "frozen": stats.frozen,
            **{f"train_loss/{k}": round(v / max(1, stats.n_batches), 4) for k, v in stats.part_sums.items()},
            **{f"val/{k}": round(v, 4) for k, v in val.items()}, "val/score": round(score, 4)}


def _end_epoch(run: _Run, epoch: int, stats: _EpochStats) -> bool:
    """Validation (rank 0), selection, best.pt / last.pt / metrics.csv (rank 0), the barrier, early stopping;
    returns whether training goes on."""
    cfg, dinfo, main = run.cfg, run.dinfo, run.dinfo.is_main
    stats = _gather_epoch(dinfo, stats)
    row, val, score = None, {}, 0.0
    if main:  # validation on rank 0; the others wait for its result
        val = quick_metrics(run.scored_model, run.val_src, run.size, run.device, cfg.val_flip_tta)
        score = selection_score(val)
        row = _epoch_row(run, epoch, stats, val, score)
    row, score = _from_rank0(dinfo, (row, score))
    run.history.append(row)
    if score > run.best_score:
        run.best_score, run.bad_epochs = score, 0
        if main:
            save_checkpoint(run.best_path, run.scored_model, geometry=cfg.geometry, framing=cfg.framing,
                            extra={**run.extra_base, "epoch": epoch + 1, "val_metrics": val})
            log.debug("rank %d wrote %s", dinfo.rank, run.best_path)
    else:
        run.bad_epochs += 1
    _save_last(run, epoch + 1, 0)
    run.last_ck = time.time()
    if main:
        _append_csv(run.out / "metrics.csv", row)
        log.info("epoch %d: %s", epoch + 1, json.dumps(row))
    # No rank starts the next epoch before rank 0 has written this one's checkpoints and metrics row: a rank
    # that dies early in the next epoch then never takes an unwritten epoch with it.
    _barrier(dinfo)
    if run.progress:
        run.progress({"epoch_end": row})
    if run.stopped != "completed":
        return False
    if run.bad_epochs >= cfg.patience:
        run.stopped = "early stopping"
        return False
    return True


def _finish(run: _Run) -> dict[str, Any]:
    """best.pt when no epoch wrote one (rank 0), the final barrier, and train()'s result."""
    if run.dinfo.is_main and not run.best_path.exists():
        save_checkpoint(run.best_path, run.scored_model, geometry=run.cfg.geometry, framing=run.cfg.framing,
                        extra=run.extra_base)
    _barrier(run.dinfo)  # every file is written before any rank returns
    return {"best": str(run.best_path), "last": str(run.last_path), "history": run.history, "stopped": run.stopped,
            "best_score": run.best_score, "data_counts": run.counts, "elapsed_s": run.elapsed()}


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    exists = path.exists()
    header = list(row)
    if exists:
        with open(path, newline="") as f:
            old = next(csv.reader(f), [])
        if old != header:  # columns changed (e.g. a task appeared): rewrite with the union
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            header = old + [h for h in header if h not in old]
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, header)
                w.writeheader()
                w.writerows(rows)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, header, extrasaction="ignore")
        if not exists:
            w.writeheader()
        w.writerow(row)

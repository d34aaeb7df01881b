"""create_model, and checkpoints that describe themselves (save_checkpoint / load_checkpoint)."""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._hashing import file_sha256
from ..crop import DEFAULT_GEOMETRY, CropGeometry
from ..errors import CheckpointError, ConfigError
from ..tasks import TaskSpec, get_task, list_tasks, resolve_tasks
from .backbones import create_backbone
from .config import ModelConfig
from .multitask import MultiTaskNet

__all__ = ["ModelConfig", "create_model", "save_checkpoint", "load_checkpoint", "FORMAT_VERSION",
           "file_sha256"]

FORMAT_VERSION = 1


def create_model(
    backbone: str | None = None,
    tasks: str | Iterable[str] | None = None,
    *,
    config: ModelConfig | None = None,
    task_specs: Iterable[TaskSpec] | None = None,
    **kwargs: Any,
) -> MultiTaskNet:
    """Build a bare multi-task ``nn.Module``: from a backbone name, tasks and ModelConfig fields, or from a whole
    ``config`` (not both: mixing them is a ConfigError rather than one silently winning). The config given is not
    changed; the model's own (``model.config``) has the input size filled in.

    Example:
        >>> model = create_model("tiny", tasks=("age", "gender"))
        >>> out = model(torch.rand(2, 3, 64, 64))   # {"age": (2, 101), "gender": (2, 2)}
    """
    if config is None:
        config = ModelConfig(backbone=backbone or "lite0", tasks=tuple(s.name for s in resolve_tasks(tasks)),
                             **kwargs)
    elif backbone is not None or tasks is not None or kwargs:
        given = [n for n, v in (("backbone", backbone), ("tasks", tasks)) if v is not None] + list(kwargs)
        raise ConfigError(f"create_model takes either config= or {', '.join(given)}, not both: put them in the "
                          "ModelConfig (dataclasses.replace(config, ...))")
    specs = tuple(task_specs) if task_specs is not None else tuple(get_task(t) for t in config.tasks)
    bb = create_backbone(config.backbone, pretrained=config.pretrained)
    if config.input_size is None:  # a filled-in copy: the caller's config stays as given
        config = copy.copy(config)  # not dataclasses.replace: an _unchecked_config would not validate again
        object.__setattr__(config, "input_size", bb.input_size)
    model = MultiTaskNet(bb, specs, shared_dim=config.shared_dim, regression_head=config.regression_head,
                         attention=config.attention)
    model.config = config
    return model


def save_checkpoint(
    path: str | Path,
    model: MultiTaskNet,
    *,
    geometry: CropGeometry = DEFAULT_GEOMETRY,
    framing: Any = None,
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint: format version, model config, task specs, preprocessing, weights.

    Args:
        half: store floating-point weights as float16 (half the size; loaded back as float32).
        geometry, framing: the crop geometry and face-crop framing the weights were trained with
            (:mod:`facemtl.preprocess`); inference takes them from here.
        extra: anything else to keep (training config, data manifest hash, metrics, optimizer state...).
    """
    from ..preprocess import DEFAULT_FRAMING

    framing = framing or DEFAULT_FRAMING
    config: ModelConfig = model.config
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    ckpt = {
        "format_version": FORMAT_VERSION,
        "model_config": asdict(config),
        "tasks": [t.to_dict() for t in model.tasks],
        "preprocess": {
            "input_size": config.input_size,
            "crop": geometry.to_dict(),
            "framing": framing.to_dict(),
            "pixel_scale": "rgb float in [0, 1]; mean/std applied inside the model",
            "mean": [float(v) for v in model.mean.flatten()],
            "std": [float(v) for v in model.std.flatten()],
        },
        "state_dict": state,
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)  # atomic: a crash mid-write never leaves a corrupt checkpoint
    return path


def load_checkpoint(
    path: str | Path,
    tasks: str | Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[MultiTaskNet, dict[str, Any]]:
    """Rebuild a model from a checkpoint alone; returns (model in eval mode, checkpoint dict without weights).

    Args:
        tasks: optionally restrict to these tasks; each must exist in the checkpoint with the
            registry's labels.

    Raises:
        CheckpointError: missing file or keys, unknown version, or tasks/labels that contradict the request.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # a hostile .pt cannot run code
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a facemtl checkpoint (got {type(ckpt).__name__})")
    missing = [k for k in ("format_version", "model_config", "tasks", "state_dict") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a facemtl checkpoint: missing {', '.join(missing)}")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {ckpt['format_version']}; this facemtl reads up to "
                              f"{FORMAT_VERSION}: upgrade facemtl")
    _check_preprocess(ckpt, path)
    specs = [TaskSpec.from_dict(d) for d in ckpt["tasks"]]
    by_name = {s.name: s for s in specs}
    if tasks is not None:
        wanted = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
        for name in wanted:
            if name not in by_name:
                raise CheckpointError(f"task {name!r} is not in checkpoint {path}; it has: {', '.join(by_name)}")
            try:
                reg = get_task(name)
            except Exception:  # noqa: BLE001 - unregistered task: the file's spec is the truth
                continue
            if reg.labels != by_name[name].labels:
                raise CheckpointError(f"task {name!r}: checkpoint labels {list(by_name[name].labels)} contradict "
                                      f"the registry's {list(reg.labels)}")
    cfg = dict(ckpt["model_config"])
    cfg["tasks"] = tuple(cfg["tasks"])
    cfg["pretrained"] = False  # weights come from the file
    config = ModelConfig(**cfg) if all(s.name in list_tasks() for s in specs) else _unchecked_config(cfg)
    model = create_model(config=config, task_specs=specs)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not match its own description: {exc}") from None
    if tasks is not None:
        keep = set(t.strip() for t in tasks.split(",")) if isinstance(tasks, str) else set(tasks)
        model.heads = torch.nn.ModuleDict({k: v for k, v in model.heads.items() if k in keep})
        model.tasks = tuple(s for s in model.tasks if s.name in keep)
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta


def _check_preprocess(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose stored crop geometry or framing contradicts its own training record."""
    pre, tcfg = ckpt.get("preprocess") or {}, ckpt.get("train_config") or {}
    for key, trained_key in (("crop", "geometry"), ("framing", "framing")):
        stored, trained = pre.get(key), tcfg.get(trained_key)
        if stored is None or trained is None:
            continue
        diff = {k: (stored.get(k), v) for k, v in trained.items() if stored.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: stored {a!r}, trained with {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{path}: preprocess.{key} contradicts the weights' training record "
                                  f"(train_config.{trained_key}): {detail}; the answers would be wrong")
    tsize, size = tcfg.get("input_size"), pre.get("input_size")
    if tsize is not None and size is not None and int(tsize) != int(size):
        raise CheckpointError(f"{path}: preprocess.input_size {size} contradicts the training record's {tsize}")


def _unchecked_config(cfg: dict[str, Any]) -> ModelConfig:
    """A ModelConfig of a checkpoint's tasks outside the registry, built without validating them."""
    config = ModelConfig.__new__(ModelConfig)
    config.__dict__.update(cfg)  # frozen: no setattr, but the instance dict takes the fields
    return config

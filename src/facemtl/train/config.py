"""TrainConfig: everything a training run needs, as a plain frozen dataclass (no torch: ``facemtl train --help``,
YAML recipes and saved run configs load without it; building the model and the loop need the ``train`` extra).
It is validated when built and cannot change after: ``dataclasses.replace(cfg, epochs=20)`` makes (and
validates) a changed copy."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..crop import DEFAULT_GEOMETRY, CropGeometry
from ..data.augment import AugmentConfig
from ..errors import ConfigError, unknown_name
from ..preprocess import DEFAULT_FRAMING, Framing
from ..tasks import list_tasks, resolve_tasks
from .balance import BALANCE_KEYS, check_balance

__all__ = ["TrainConfig", "AGE_LOSSES", "LOSS_WEIGHTINGS", "NO_FACE_POLICIES"]

AGE_LOSSES = ("dldl", "l1", "mse")
LOSS_WEIGHTINGS = ("static", "uncertainty")
# What training does with an image in which the framing detector finds no face: keep it (its own framing) or skip.
NO_FACE_POLICIES = ("keep", "skip")


@dataclass(frozen=True, eq=True)
class TrainConfig:
    """Everything a training run needs; the CLI flags are these field names with dashes. Frozen: change a
    copy with ``dataclasses.replace`` (validated again). Not for hashing: ``sample_ratio`` and
    ``source_val_fraction`` may be dicts.

    Example:
        >>> cfg = TrainConfig(utkface="data/utkface", fer2013="data/fer2013", backbone="lite0", epochs=5)
        >>> result = train(cfg)   # writes runs/<name>/best.pt, last.pt, metrics.csv, split.csv
    """

    utkface: str | None = None
    fer2013: str | None = None
    fairface: str | None = None
    celeba_gender: str | None = None
    manifest: tuple[str, ...] = ()
    source_val_fraction: dict[str, float] | None = None
    ferplus_weight: float = 0.0
    no_face: str = "keep"
    out: str = "runs/facemtl"
    backbone: str = "lite0"
    tasks: tuple[str, ...] = tuple(list_tasks())  # every registered task
    input_size: int | None = None
    pretrained: bool = True
    init_backbone: str | None = None
    init_checkpoint: str | None = None
    shared_dim: int = 0
    attention: bool = False
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.3
    freeze_epochs: int = 0
    loss_weighting: str = "static"
    age_loss: str = "dldl"
    label_smoothing: float = 0.05
    patience: int = 15
    val_fraction: float = 0.1
    limit: int | None = None
    sample_ratio: dict[str, float] | None = None
    epoch_size: int | None = None
    val_flip_tta: bool = True
    balance: str = "none"
    balance_by: tuple[str, ...] = BALANCE_KEYS[:1]  # the first slice: ethnicity
    balance_power: float = 1.0
    balance_max_ratio: float = 10.0
    seed: int = 0
    split_seed: int | None = None
    device: str = "auto"
    threads: int | None = None
    channels_last: bool = True
    amp: bool = True
    time_budget_min: float | None = None
    checkpoint_every_min: float = 10.0
    ema_decay: float = 0.0
    resume: bool = False
    overwrite: bool = False
    cache_dir: str | None = None
    workers: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    geometry: CropGeometry = field(default_factory=lambda: DEFAULT_GEOMETRY)
    framing: Framing = field(default_factory=lambda: DEFAULT_FRAMING)

    def __post_init__(self) -> None:
        for name, cls in (("augment", AugmentConfig), ("geometry", CropGeometry), ("framing", Framing)):
            value = getattr(self, name)
            if isinstance(value, dict):
                bad = [k for k in value if k not in cls.__dataclass_fields__]
                if bad:
                    raise unknown_name(f"{name} option", bad[0], list(cls.__dataclass_fields__))
                object.__setattr__(self, name, cls(**value))
        if self.no_face not in NO_FACE_POLICIES:
            raise unknown_name("no_face", self.no_face, NO_FACE_POLICIES)
        if not 0.0 <= self.ferplus_weight <= 1.0:
            raise ConfigError(f"ferplus_weight must be in [0, 1], got {self.ferplus_weight}")
        object.__setattr__(self, "manifest", tuple(self.manifest or ()))
        object.__setattr__(self, "balance_by", tuple(self.balance_by or ()))
        check_balance(self.balance, self.balance_by, self.balance_power, self.balance_max_ratio)
        object.__setattr__(self, "tasks", tuple(s.name for s in resolve_tasks(self.tasks)))
        if self.age_loss not in AGE_LOSSES:
            raise unknown_name("age_loss", self.age_loss, AGE_LOSSES)
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise unknown_name("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise unknown_name("device", self.device, ("auto", "cpu", "cuda"))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 turns the weight average off), got {self.ema_decay}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        from ..models.factory import ModelConfig  # the backbone registry is PyTorch: training needs it anyway

        ModelConfig(backbone=self.backbone, tasks=self.tasks, input_size=self.input_size)  # validates names

    @property
    def effective_split_seed(self) -> int:
        """The seed of the train/validation split: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

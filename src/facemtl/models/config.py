"""ModelConfig: the architecture of a multi-task model (backbone, tasks, input size, heads), validated and frozen."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError, unknown_name
from ..tasks import list_tasks, resolve_tasks
from .backbones import list_backbones

__all__ = ["ModelConfig", "REGRESSION_HEADS"]

REGRESSION_HEADS = ("bins", "scalar")


@dataclass(frozen=True, eq=True)
class ModelConfig:
    """Architecture of a multi-task model (frozen: ``dataclasses.replace`` makes a changed, validated copy).

    Attributes:
        backbone: registered backbone name (see ``list_backbones()``) or ``timm:<name>``.
        tasks: task names, in registry order.
        input_size: square input side in pixels (None: the backbone's default).
        shared_dim: width of the optional shared Dense -> ReLU -> Dropout layer (0: none).
        regression_head: "bins" (distribution over years, expected value) or "scalar" (plain regression).
        attention: task-specific feature attention in front of each head.
        pretrained: start from ImageNet weights where available offline.
    """

    backbone: str = "lite0"
    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(list_tasks()))
    input_size: int | None = None
    shared_dim: int = 0
    regression_head: str = "bins"
    attention: bool = False
    pretrained: bool = False

    def __post_init__(self) -> None:
        if not self.backbone.startswith("timm:") and self.backbone not in list_backbones():
            raise unknown_name("backbone", self.backbone, list_backbones())
        object.__setattr__(self, "tasks", tuple(s.name for s in resolve_tasks(self.tasks)))
        if self.regression_head not in REGRESSION_HEADS:
            raise unknown_name("regression_head", self.regression_head, REGRESSION_HEADS)
        if self.input_size is not None and self.input_size < 32:
            raise ConfigError(f"input_size {self.input_size} is too small; use at least 32 pixels")

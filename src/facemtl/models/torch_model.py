"""TorchModel: a PyTorch ``MultiTaskNet`` behind the :class:`~facemtl.models.base.FaceModel` contract (numpy in,
numpy out), for training-time validation, ``--model some.pt`` and Grad-CAM. Needs the ``torch`` extra."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..tasks import TaskSpec

if TYPE_CHECKING:
    from .multitask import MultiTaskNet

__all__ = ["TorchModel"]


class TorchModel:
    """A ``MultiTaskNet`` as a :class:`~facemtl.models.base.FaceModel`.

    Args:
        net: the network (``load_checkpoint`` or ``create_model``); put in eval mode here.
        meta: its checkpoint record without the weights (``preprocess``, ``model_config``, ...).
        device: where to run it (None: where its weights are).
    """

    backend = "pytorch"

    def __init__(self, net: MultiTaskNet, meta: dict[str, Any] | None = None, device: Any = None) -> None:
        self.net = net.eval()
        self.metadata = dict(meta or {})
        if device is None:
            self.device = next(net.parameters()).device
        else:
            from .._device import resolve_device

            self.device = resolve_device(device)
            net.to(self.device)
        self.tasks: tuple[TaskSpec, ...] = tuple(net.tasks)
        config = getattr(net, "config", None)
        self.preprocess: dict[str, Any] = dict(self.metadata.get("preprocess") or {})
        self.input_size = int(self.preprocess.get("input_size") or config.input_size)  # type: ignore[union-attr]
        self.config = config

    @torch.no_grad()
    def predict(self, x: np.ndarray, flip_tta: bool = False) -> dict[str, np.ndarray]:
        """float32 (B, 3, S, S) RGB in [0, 1] -> {task: float32 (B, W)} numpy (``MultiTaskNet.predict``)."""
        self.net.eval()
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        return {k: v.float().cpu().numpy() for k, v in self.net.predict(t, flip_tta=flip_tta).items()}

    def __repr__(self) -> str:
        return (f"TorchModel({type(self.net).__name__}, tasks={[s.name for s in self.tasks]}, "
                f"input_size={self.input_size}, device={self.device})")

"""Grad-CAM heat maps for every head of a :class:`~facemtl.models.multitask.MultiTaskNet`.

The hooked layer is the backbone's registered ``cam_layer`` (``model.cam_layer``), so every registered
backbone is explained without per-architecture code. One forward pass serves all tasks; each task then
gets its own backward pass from its target scalar down to the hooked activations only:

* classification: the logit of the predicted class (or of a class the caller names);
* age with a distribution head ``(1, num_bins)``: the expected value ``softmax(logits) @ bin_centers``,
  the same number ``TaskSpec.decode_raw`` reports;
* a scalar regression head ``(1, 1)``: the raw output itself.

Reference: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FacemtlError, InvalidInputError, unknown_name
from ..tasks import TaskSpec

if TYPE_CHECKING:
    from ..models.multitask import MultiTaskNet

__all__ = ["GradCAM", "normalise_cam", "task_target"]


def task_target(spec: TaskSpec, raw: torch.Tensor, label: str | int | None = None) -> torch.Tensor:
    """The scalar Grad-CAM explains for one task, from its raw head output (1, W).

    Args:
        spec: the task.
        raw: the head's raw output for one face, shape (1, W).
        label: classification only: explain this class (name or index) instead of the predicted one.
    """
    if spec.kind == "classification":
        if label is None:
            k = int(raw[0].argmax())
        elif isinstance(label, str):
            k = spec.label_index(label)
        else:
            k = int(label)
            if not 0 <= k < raw.shape[-1]:
                raise InvalidInputError(f"{spec.name} class index {k} is out of range 0..{raw.shape[-1] - 1}")
        return raw[0, k]
    if label is not None:
        raise InvalidInputError(f"task {spec.name!r} is a regression: it has no class to choose, got {label!r}")
    if raw.shape[-1] == 1:  # scalar head: the (normalised) value is monotonic in the decoded one
        return raw[0, 0]
    # The expected value, e.g. the age in years.
    return raw[0].float().softmax(-1) @ torch.from_numpy(spec.bin_centers()).to(raw.device)


def normalise_cam(cam: torch.Tensor) -> np.ndarray:
    """Min-max scale a map to [0, 1]; a constant (e.g. all-zero) map becomes all zeros, never NaN."""
    cam = cam.detach().double().cpu()
    lo, hi = float(cam.min()), float(cam.max())
    span = hi - lo
    # Relative test: an untrained net's activations can be ~1e-14 and still carry a real (tiny) map, while a
    # constant map only differs by rounding after the bilinear upsampling.
    if not (math.isfinite(span) and span > 1e-6 * max(abs(hi), abs(lo)) and span > 0.0):
        return np.zeros(tuple(cam.shape), dtype=np.float32)
    return ((cam - lo) / span).clamp_(0.0, 1.0).numpy().astype(np.float32)


def _as_grid(act: torch.Tensor, layer: str) -> torch.Tensor:
    """Activations -> (B, C, h, w); token sequences (B, N, C) of ViT-like layers become a square grid."""
    if act.dim() == 4:
        return act
    if act.dim() == 3:
        n = act.shape[1]
        for extra in range(min(n, 9)):  # leading class/register tokens are dropped
            side = math.isqrt(n - extra)
            if side * side == n - extra and side > 0:
                tokens = act[:, extra:, :]  # (B, h*w, C)
                return tokens.transpose(1, 2).reshape(act.shape[0], act.shape[2], side, side)
    raise FacemtlError(f"cam layer {layer!r} gives activations of shape {tuple(act.shape)}; Grad-CAM needs "
                       "(B, C, H, W) feature maps (or a square grid of tokens)")


class GradCAM:
    """Grad-CAM on the backbone layer named by ``model.cam_layer``.

    Hooks are attached for the duration of one :meth:`heatmaps` call and removed afterwards; the model is
    put in eval mode for the call (its previous mode is restored) and parameter ``.grad`` fields are not
    touched, so a training loop can use the same model.

    Example:
        >>> model = create_model("tiny", input_size=64).eval()
        >>> maps = GradCAM(model).heatmaps(torch.rand(1, 3, 64, 64))   # {"age": (64, 64), ...}
    """

    def __init__(self, model: MultiTaskNet) -> None:
        if not isinstance(model, nn.Module) or not hasattr(model, "backbone"):
            raise FacemtlError(f"Grad-CAM needs gradients, so a PyTorch multi-task model (a .pt checkpoint); got "
                               f"{type(model).__name__} (an exported ONNX model cannot be explained: use the .pt "
                               "file it was exported from)")
        layer = getattr(model, "cam_layer", "")
        modules = dict(model.backbone.named_modules())
        if not layer or layer not in modules:
            hint = ", ".join(n for n, _ in list(model.backbone.named_children())[:8])
            raise FacemtlError(f"backbone {getattr(model, 'backbone_name', '?')!r} has no usable cam layer "
                               f"({layer!r}); its top-level modules: {hint}")
        self.model = model
        self.layer_name = layer
        self.layer = modules[layer]

    def heatmaps(
        self,
        x: torch.Tensor,
        tasks: Iterable[str] | None = None,
        labels: Mapping[str, str | int] | None = None,
    ) -> dict[str, np.ndarray]:
        """One Grad-CAM heat map per task for a single face.

        Args:
            x: float (1, 3, H, W) RGB in [0, 1], as the model takes it (normalisation happens inside).
            tasks: tasks to explain (default: every head of the model), in the model's order.
            labels: classification tasks only: {task: class name or index} to explain instead of the
                predicted class.

        Returns:
            {task: float32 (H, W) map in [0, 1]}; 1 marks the region that most raises the target.

        Raises:
            InvalidInputError: ``x`` is not one (1, 3, H, W) image; a label is unknown.
            UnknownNameError: a task is not a head of this model.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidInputError(f"Grad-CAM takes one image as a float tensor (1, 3, H, W), got {shape}")
        specs = {s.name: s for s in self.model.tasks if s.name in self.model.heads}
        wanted = list(specs) if tasks is None else list(tasks)
        for name in wanted:
            if name not in specs:
                raise unknown_name("task", name, specs)
        for name in labels or {}:
            if name not in wanted:
                raise unknown_name("task", name, wanted)
        size_hw = (int(x.shape[2]), int(x.shape[3]))
        device = next(self.model.parameters()).device
        x = x.detach().to(device=device, dtype=torch.float32)

        store: dict[str, Any] = {}

        def keep_grad(g: torch.Tensor) -> None:
            store["grad"] = g

        def forward_hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            store["act"] = out
            store.setdefault("tensor_hooks", []).append(out.register_hook(keep_grad))

        was_training = self.model.training
        handle = self.layer.register_forward_hook(forward_hook)
        try:
            self.model.eval()
            with torch.enable_grad():
                # x requires grad so the graph reaches the cam layer even when the weights are frozen.
                raw = self.model(x.requires_grad_(True))  # {task: (1, W)}
                if "act" not in store:
                    raise FacemtlError(f"cam layer {self.layer_name!r} was not run by the forward pass")
                act = store["act"]
                out: dict[str, np.ndarray] = {}
                for i, name in enumerate(wanted):
                    target = task_target(specs[name], raw[name], (labels or {}).get(name))
                    store.pop("grad", None)
                    # Backpropagate only down to the hooked activations; the tensor hook records the gradient.
                    torch.autograd.grad(target, act, retain_graph=i < len(wanted) - 1)
                    out[name] = self._cam(act.detach(), store["grad"].detach(), size_hw)
        finally:
            handle.remove()
            for h in store.get("tensor_hooks", []):
                h.remove()
            self.model.train(was_training)
        return out

    def _cam(self, act: torch.Tensor, grad: torch.Tensor, size_hw: tuple[int, int]) -> np.ndarray:
        act, grad = _as_grid(act.float(), self.layer_name), _as_grid(grad.float(), self.layer_name)  # (1, C, h, w)
        weights = grad.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1): channel importance
        cam = F.relu((weights * act).sum(dim=1, keepdim=True))  # (1, 1, h, w)
        cam = F.interpolate(cam, size=size_hw, mode="bilinear", align_corners=False)
        return normalise_cam(torch.nan_to_num(cam[0, 0], nan=0.0, posinf=0.0, neginf=0.0).clamp_(min=0.0))

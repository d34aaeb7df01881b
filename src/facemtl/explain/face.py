"""Explain one face of a photo: the analyzer's own detection and crop, Grad-CAM per head, a side-by-side panel."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FacemtlError, InvalidInputError, unknown_name
from ..image import ImageInput
from ..results import Face, ImageResult, Prediction
from ..tasks import find_task
from .gradcam import GradCAM

if TYPE_CHECKING:  # the analyzer sits above explain in the dependency order; it is only passed in
    from ..analyzer import FaceAnalyzer

__all__ = ["MIN_FACE_PX", "ExplainResult", "explain_face", "explain_net", "render_panel"]

# Below this box side the crop is mostly upsampled blur and the cam layer's few cells cover the whole face.
MIN_FACE_PX = 24


@dataclass(frozen=True)
class ExplainResult:
    """Grad-CAM heat maps for one face.

    Attributes:
        crop: the (S, S, 3) uint8 RGB crop the model saw (S = the analyzer's input size).
        heatmaps: {task: float32 (S, S) map in [0, 1]}, aligned with ``crop``.
        face: the detected face with every task's prediction (as ``facemtl predict`` reports it).
        predictions: {task: Prediction} for the explained tasks.
        targets: {task: explained class label}; None for regression (the target is the estimated value).
        source: the image's name; face_index: which of its faces (detector order, as in ``predict``).
    """

    crop: np.ndarray
    heatmaps: dict[str, np.ndarray]
    face: Face
    predictions: dict[str, Prediction]
    targets: dict[str, str | None]
    source: str = ""
    face_index: int = 0


def explain_net(analyzer: FaceAnalyzer) -> Any:
    """The PyTorch network Grad-CAM differentiates for this analyzer's model.

    A PyTorch model is its own network. The bundled default runs on ONNX Runtime, which has no gradients: its
    PyTorch checkpoint (``default-pytorch``, the weights it was exported from) is loaded once and kept on the
    analyzer. Any other ONNX file cannot be explained.

    Raises:
        FacemtlError: an ONNX model other than the bundled default (use the .pt it was exported from).
    """
    net = getattr(analyzer.model, "net", None)
    if net is not None:
        return net
    cached = getattr(analyzer, "_explain_net", None)
    if cached is not None:
        return cached
    from .. import weights

    bundled = str(weights.get_weights().path(verify=False))
    if analyzer.info.get("checkpoint") != bundled:
        raise FacemtlError(f"Grad-CAM needs gradients, so a PyTorch checkpoint; {analyzer.info.get('checkpoint')} "
                           "runs on ONNX Runtime: explain the .pt file it was exported from (--model FILE.pt)")
    from ..models.factory import load_checkpoint

    net, _ = load_checkpoint(weights.default_checkpoint_path(), tasks=[t.name for t in analyzer.tasks])
    analyzer._explain_net = net  # type: ignore[attr-defined]
    return net


def explain_face(
    analyzer: FaceAnalyzer,
    image: ImageInput,
    face_index: int = 0,
    tasks: str | Iterable[str] | None = None,
    labels: Mapping[str, str] | None = None,
    min_face: int = MIN_FACE_PX,
) -> ExplainResult:
    """Grad-CAM heat maps of every head for one face, with the analyzer's own preprocessing.

    Detection, face selection (``min_face``/``max_faces`` options...) and the canonical crop are the
    analyzer's, so the crop and predictions are exactly those of ``analyzer(image)``. Each classification
    map explains the predicted class (or the class in ``labels``); the age map explains the estimate.

    Args:
        analyzer: a :class:`~facemtl.analyzer.FaceAnalyzer`.
        image: a path, bytes, PIL image or RGB array.
        face_index: which face, in the order ``analyzer(image).faces`` lists them.
        tasks: tasks to explain ("age,emotion" or a list); None: all of the analyzer's tasks.
        labels: {task: class label} to explain instead of the predicted class.
        min_face: refuse faces whose box is narrower than this many pixels.

    Raises:
        InvalidInputError: unreadable image, no face, ``face_index`` out of range, or a face too small.
        UnknownNameError: a task the analyzer does not run, or an unknown class label.

    Example:
        >>> res = explain_face(FaceAnalyzer.from_checkpoint(), "group.jpg", face_index=1)
        >>> Image.fromarray(render_panel(res)).save("cam.png")
    """
    available = [t.name for t in analyzer.tasks]
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    wanted = available if tasks is None else list(tasks)
    for name in wanted:
        if name not in available:
            raise unknown_name("task", name, available)
    if not wanted:
        raise InvalidInputError(f"no task to explain; valid: {', '.join(available)}")

    prepared = analyzer._prepare(image)  # load -> detect -> select -> canonical crop, as in prediction
    name, _img, dets, crops, _timings, exc = prepared
    if exc is not None:
        raise exc
    if not dets:
        raise InvalidInputError(f"no face found in {name} (detector: {getattr(analyzer.detector, 'name', '?')})")
    if not 0 <= face_index < len(dets):
        raise InvalidInputError(f"face index {face_index} is out of range: {len(dets)} face(s) found in {name}; "
                                f"use 0..{len(dets) - 1}")
    box = dets[face_index].box
    side = min(box.width, box.height)
    if side < min_face:
        raise InvalidInputError(f"face {face_index} in {name} is only {side:.0f} px wide: too small for a "
                                f"meaningful heat map (need at least {min_face} px); use a larger image or "
                                "another face")
    result = next(iter(analyzer._finish([prepared], errors="raise")))  # the predictions `predict` reports
    assert isinstance(result, ImageResult)  # errors="raise": a failure raises instead of yielding an ItemError
    face = result.faces[face_index]
    crop = np.ascontiguousarray(crops[face_index])

    targets: dict[str, str | None] = {}
    for t in wanted:
        spec = next(s for s in analyzer.tasks if s.name == t)
        if spec.kind == "classification":
            label = (labels or {}).get(t) or face[t].label
            assert label is not None  # a classification prediction always has a class label
            targets[t] = label
            spec.label_index(label)  # an unknown label names the valid ones
        else:
            if labels and t in labels:
                raise InvalidInputError(f"task {t!r} is a regression: it has no class to choose, got {labels[t]!r}")
            targets[t] = None
    for t in labels or {}:
        if t not in wanted:
            raise unknown_name("task", t, wanted)

    import torch

    from ..preprocess import to_model_input

    x = torch.from_numpy(to_model_input(crop[None]))  # (1, 3, S, S), as every prediction
    maps = GradCAM(explain_net(analyzer)).heatmaps(x, wanted, {t: v for t, v in targets.items() if v is not None})
    return ExplainResult(crop, maps, face, {t: face[t] for t in wanted}, targets, name, face_index)


def _jet(heat: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 RGB, the jet colour map (blue = low, red = high)."""
    import cv2

    return cv2.applyColorMap(np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]


def _caption(task: str, pred: Prediction, target: str | None) -> list[str]:
    if pred.probs is not None and target is not None:  # classification
        line = f"{pred.label} {pred.value:.0%}"
        if target != pred.label:
            line += f" (map: {target} {pred.probs.get(target, 0.0):.0%})"
        return [task, line]
    spec = find_task(task)
    unit = spec.unit if spec is not None else ""
    value = f"{pred.value:.1f}" + (f" {unit}" if unit else "")
    return [task, value + (f" ({pred.label})" if pred.label else "")]


def render_panel(result: ExplainResult, tile: int = 224, alpha: float = 0.5) -> np.ndarray:
    """The crop, then one heat-map overlay per task, side by side and captioned; an RGB uint8 array.

    Args:
        result: from :func:`explain_face`.
        tile: side of each image in pixels (the crop is resized to it).
        alpha: weight of the colour map in each overlay.
    """
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    def fit(a: np.ndarray) -> np.ndarray:
        interp = cv2.INTER_AREA if a.shape[0] > tile else cv2.INTER_LINEAR
        return cv2.resize(a, (tile, tile), interpolation=interp)

    crop = fit(result.crop).astype(np.float32)
    tiles = [(crop.astype(np.uint8), ["input", f"face {result.face_index}, score {result.face.score:.2f}"])]
    for task, heat in result.heatmaps.items():
        colour = _jet(fit(heat.astype(np.float32))).astype(np.float32)
        blend = np.clip((1.0 - alpha) * crop + alpha * colour + 0.5, 0, 255).astype(np.uint8)
        tiles.append((blend, _caption(task, result.predictions[task], result.targets.get(task))))

    try:
        font = ImageFont.load_default(size=max(11, tile // 15))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    gap, pad = max(4, tile // 40), max(3, tile // 60)
    line_h = int(font.getbbox("Ag")[3]) + pad  # already an int at run time; typed float for FreeTypeFont
    bar_h = max(8, tile // 24)
    cap_h = 2 * line_h + 2 * pad
    width = len(tiles) * tile + (len(tiles) + 1) * gap
    height = gap + tile + cap_h + bar_h + line_h + gap
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for i, (img, lines) in enumerate(tiles):
        x = gap + i * (tile + gap)
        panel.paste(Image.fromarray(img), (x, gap))
        for j, text in enumerate(lines):
            draw.text((x + pad, gap + tile + pad + j * line_h), text, fill=(20, 20, 20) if j else (0, 0, 0), font=font)
    # Colour scale under the overlays: what low and high heat look like.
    x0, y0 = gap + tile + gap, gap + tile + cap_h
    bar_w = width - x0 - gap
    if bar_w > 0:
        ramp = _jet(np.tile(np.linspace(0.0, 1.0, bar_w, dtype=np.float32), (bar_h, 1)))
        panel.paste(Image.fromarray(np.ascontiguousarray(ramp)), (x0, y0))
        draw.text((x0, y0 + bar_h + 1), "low", fill=(60, 60, 60), font=font)
        hi = "high: raises the explained class score / the age estimate"
        draw.text((x0 + bar_w - draw.textlength(hi, font=font), y0 + bar_h + 1), hi, fill=(60, 60, 60), font=font)
    return np.asarray(panel)

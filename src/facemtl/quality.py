"""An "unsure" signal per face: what is known to break the model, checked on what inference already has.

Each rule looks at one thing (the box, the detection score, the landmarks, the model's crop, the answers) and
names itself when it fires; a face with any reason is ``quality="low"``. The thresholds are
:class:`QualityRules` fields (measured on held-out data, see MODEL_CARD.md "When to distrust an answer").
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import unknown_name

__all__ = ["QualityRules", "DEFAULT_RULES", "assess", "sharpness", "yaw_ratio", "QUALITY_LEVELS"]

QUALITY_LEVELS = ("low", "ok")  # --min-quality: keep faces of at least this quality


@dataclass(frozen=True)
class QualityRules:
    """Thresholds of the quality flag.

    Attributes:
        min_face_px: a box whose shorter side is below this (pixels of the photo) is a small face.
        min_sharpness: variance of the Laplacian of the model's grayscale crop (0-255 scale) below this is blurred.
        max_yaw: ``|nose - eye midpoint| / eye distance`` (from the 5 landmarks) above this is turned away.
        min_score: a detection score below this is a doubtful face (detectors without scores give 1.0).
        min_top_prob: {task: p}: the top class probability below ``p`` is an uncertain answer (default: each
            registered task's ``min_top_prob``: gender 0.6).
        guess_below: {task: (other task, value)}: the answer of ``task`` is a guess when the predicted value of
            ``other task`` is below ``value`` (default: each registered task's ``guess_below``: gender below a
            predicted age of 3).
    """

    min_face_px: float = 32.0
    min_sharpness: float = 25.0
    max_yaw: float = 0.45
    min_score: float = 0.95
    min_top_prob: Mapping[str, float] = None  # type: ignore[assignment]
    guess_below: Mapping[str, tuple[str, float]] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        from .tasks import resolve_tasks

        specs = resolve_tasks(None)  # every registered task
        if self.min_top_prob is None:
            object.__setattr__(self, "min_top_prob", {s.name: s.min_top_prob for s in specs if s.min_top_prob > 0})
        if self.guess_below is None:
            object.__setattr__(self, "guess_below", {s.name: s.guess_below for s in specs if s.guess_below})


DEFAULT_RULES = QualityRules()


def check_min_quality(value: str) -> str:
    """``--min-quality`` value: "low" (keep every face, flag the doubtful ones) or "ok" (drop the doubtful)."""
    if value not in QUALITY_LEVELS:
        raise unknown_name("min_quality", value, QUALITY_LEVELS)
    return value


def sharpness(crop: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of an RGB uint8 crop's luminance (higher = sharper)."""
    g = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def yaw_ratio(landmarks: Sequence[tuple[float, float]] | None) -> float | None:
    """How far the nose sits from the eyes' midpoint, in eye distances (0 = frontal); None without landmarks."""
    if not landmarks or len(landmarks) < 3:
        return None
    (lx, ly), (rx, ry), (nx, _) = landmarks[0], landmarks[1], landmarks[2]
    eye = float(np.hypot(rx - lx, ry - ly))
    if eye <= 1e-6:
        return float("inf")
    return abs(nx - (lx + rx) / 2) / eye


def assess(box_min_side: float, score: float, landmarks: Sequence[tuple[float, float]] | None, crop: np.ndarray,
           attributes: Mapping[str, Any], rules: QualityRules = DEFAULT_RULES) -> tuple[str, tuple[str, ...]]:
    """("ok" | "low", reasons) for one face."""
    reasons = []
    if box_min_side < rules.min_face_px:
        reasons.append(f"small face ({box_min_side:.0f} px)")
    if score < rules.min_score:
        reasons.append(f"low detection score ({score:.2f})")
    yaw = yaw_ratio(landmarks)
    if yaw is not None and yaw > rules.max_yaw:
        reasons.append("turned away")
    if sharpness(crop) < rules.min_sharpness:
        reasons.append("blurred")
    for task, p in rules.min_top_prob.items():
        pred = attributes.get(task)
        if pred is not None and pred.probs and max(pred.probs.values()) < p:
            reasons.append(f"uncertain {task}")
    for task, (by, below) in rules.guess_below.items():
        pred, given = attributes.get(task), attributes.get(by)
        if pred is not None and given is not None and given.value is not None and given.value < below:
            reasons.append(f"{task} is a guess at this {by}")
    return ("low" if reasons else "ok"), tuple(reasons)

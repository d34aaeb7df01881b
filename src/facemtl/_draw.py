"""Draw boxes and labels on an RGB image (used by ImageResult.plot)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
            (240, 50, 230), (210, 245, 60)]


def face_caption(face) -> list[str]:
    lines = []
    if "age" in face:
        lines.append(f"age {face['age'].value:.0f}")
    for task in ("gender", "emotion", "ethnicity"):
        if task in face:
            p = face[task]
            lines.append(f"{p.label} {p.value:.0%}")
    return lines


def _free_y(placed: Sequence[tuple[float, float, float, float]], x: float, y: float, w: float, h: float,
            height: int) -> float:
    """The nearest y at or below (else above) ``y`` where a w x h caption overlaps none already placed."""
    def hits(yy: float) -> bool:
        return any(x < px + pw and px < x + w and yy < py + ph and py < yy + h for px, py, pw, ph in placed)

    yy = y
    while hits(yy) and yy + 2 * h <= height:
        yy += h
    if hits(yy):
        yy = y
        while hits(yy) and yy - h >= 0:
            yy -= h
    return yy


def draw_faces(image: np.ndarray, faces: Sequence, labels: Sequence[str] | None = None,
               colour_ids: Sequence[int] | None = None) -> np.ndarray:
    """Boxes with captions. ``labels`` adds a first caption line per face (e.g. a track id) and
    ``colour_ids`` picks each face's colour (default: its position)."""
    img = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    draw = ImageDraw.Draw(img)
    side = max(img.size)
    width = max(2, side // 400)
    try:
        font = ImageFont.load_default(size=max(11, side // 70))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    placed: list[tuple[float, float, float, float]] = []  # captions drawn so far: none covers another
    for i, face in enumerate(faces):
        c = _COLOURS[(colour_ids[i] if colour_ids is not None else i) % len(_COLOURS)]
        x1, y1, x2, y2 = face.box.xyxy
        draw.rectangle([x1, y1, x2, y2], outline=c, width=width)
        text = "\n".join(([labels[i]] if labels is not None else []) + face_caption(face))
        if not text:
            continue
        bb = draw.multiline_textbbox((0, 0), text, font=font)
        tw, th = bb[2] + 6, bb[3] + 6  # text is drawn at (+3, +3): the box must reach its far corner
        ty = y2 + 2 if y2 + th + 2 < img.height else max(0, y1 - th - 2)
        tx = min(max(0, x1), max(0, img.width - tw))
        ty = _free_y(placed, tx, ty, tw, th, img.height)
        placed.append((tx, ty, tw, th))
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=c)
        draw.multiline_text((tx + 3, ty + 3), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)

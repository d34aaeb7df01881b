"""Draw boxes and labels on an RGB image (used by ImageResult.plot)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
            (240, 50, 230), (210, 245, 60)]


CROWD = 6  # more faces than this: one short caption line each (the full answers are in the JSON / CSV)


def face_caption(face, short: bool = False) -> list[str]:
    """The caption lines of one face: one line per registered task it answers, in registry order, as the task's
    spec captions it (age "age 34", the top class of every other task with its probability); ``short``: one line
    of the short captions (age, gender initial and emotion, for crowded images)."""
    from .tasks import get_task, list_tasks

    parts = [get_task(name).caption_text(face[name], short) for name in list_tasks() if name in face]
    parts = [p for p in parts if p]
    if short:
        return [" ".join(parts)] if parts else []
    return parts


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


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))


def draw_faces(image: np.ndarray, faces: Sequence, labels: Sequence[str] | None = None,
               colour_ids: Sequence[int] | None = None) -> np.ndarray:
    """Boxes with captions. ``labels`` adds a first caption line per face (e.g. a track id) and
    ``colour_ids`` picks each face's colour (default: its position).

    Each caption touches its own box (below, above, or inside its top edge: the first place that covers no other
    face and no caption already drawn; when there is none, below it, stepped past the captions already drawn) and
    stays inside the image; with more than :data:`CROWD` faces captions shrink to one line (age, gender initial,
    emotion) in a font sized to the faces."""
    img = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    draw = ImageDraw.Draw(img)
    side = max(img.size)
    width = max(2, side // 400)
    crowd = len(faces) > CROWD
    size = max(11, side // 70)
    if crowd:  # a font in proportion to the faces, not to the whole photo
        heights = sorted(f.box.height for f in faces)
        size = max(10, min(size, int(heights[len(heights) // 2] / 5)))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    boxes = [(f.box.x1, f.box.y1, f.box.width, f.box.height) for f in faces]
    placed: list[tuple[float, float, float, float]] = []  # captions drawn so far: none covers another
    for i, face in enumerate(faces):
        c = _COLOURS[(colour_ids[i] if colour_ids is not None else i) % len(_COLOURS)]
        x1, y1, x2, y2 = face.box.xyxy
        draw.rectangle([x1, y1, x2, y2], outline=c, width=width)
        text = "\n".join(([labels[i]] if labels is not None else []) + face_caption(face, short=crowd))
        if not text:
            continue
        bb = draw.multiline_textbbox((0, 0), text, font=font)
        tw, th = bb[2] + 6, bb[3] + 6  # text is drawn at (+3, +3): the box must reach its far corner
        tx = min(max(0, x1), max(0, img.width - tw))
        candidates = [y2 + 2, y1 - th - 2, y1 + width]  # below, above, inside the top edge
        candidates = [min(max(0, y), max(0, img.height - th)) for y in candidates]

        def cost(y: float, tx: float = tx, tw: float = tw, th: float = th, i: int = i) -> float:
            rect = (tx, y, tw, th)
            return sum(_overlap(rect, b) for j, b in enumerate(boxes) if j != i) + \
                10 * sum(_overlap(rect, q) for q in placed)

        clean = [y for y in candidates if cost(y) == 0]
        # the first place that covers nothing; else below the box, stepped past the captions already drawn
        ty = clean[0] if clean else _free_y(placed, tx, candidates[0], tw, th, img.height)
        placed.append((tx, ty, tw, th))
        draw.rectangle([tx, ty, tx + tw, ty + th], fill=c)
        draw.multiline_text((tx + 3, ty + 3), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)

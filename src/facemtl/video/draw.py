"""Drawing a processed frame: boxes, track ids and smoothed labels laid out as ``ImageResult.plot`` lays them out,
with captions rendered once and cached (text rendering is most of a frame's drawing)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..results import Face


class _Tracked(Protocol):
    """What drawing needs of a tracked face (:class:`facemtl.video.frames.TrackedFace` has it)."""

    @property
    def track_id(self) -> int: ...

    @property
    def face(self) -> Face: ...


_CAPTIONS: OrderedDict[tuple[str, tuple[int, int, int], int], np.ndarray] = OrderedDict()
_CAPTIONS_MAX = 512
_CAPTIONS_LOCK = threading.Lock()


def _caption_patch(text: str, colour: tuple[int, int, int], font_size: int) -> np.ndarray:
    """A caption as ``ImageResult.plot`` draws it (white text on the face's colour), rendered once and cached:
    captions change only when a track's answers are refreshed, and text rendering is most of a frame's drawing."""
    key = (text, colour, font_size)
    with _CAPTIONS_LOCK:
        patch = _CAPTIONS.get(key)
        if patch is not None:
            _CAPTIONS.move_to_end(key)
            return patch
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    bb = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox((0, 0), text, font=font)
    size = (int(bb[2]) + 7, int(bb[3]) + 7)  # as _draw: text at (+3, +3), box to its far corner
    img = Image.new("RGB", size, colour)
    ImageDraw.Draw(img).multiline_text((3, 3), text, fill=(255, 255, 255), font=font)
    patch = np.asarray(img)
    with _CAPTIONS_LOCK:
        _CAPTIONS[key] = patch
        while len(_CAPTIONS) > _CAPTIONS_MAX:
            _CAPTIONS.popitem(last=False)
    return patch


def _draw_tracked(image: np.ndarray, faces: Sequence[_Tracked]) -> np.ndarray:
    """Boxes and captions laid out as ``ImageResult.plot`` lays them out, with the track id first and a colour
    per track; boxes drawn by OpenCV and captions pasted from a cache (a few milliseconds less per frame)."""
    import cv2

    from .._draw import _COLOURS, _free_y, face_caption

    out = np.array(image, dtype=np.uint8, copy=True, order="C")
    h, w = out.shape[:2]
    side = max(h, w)
    width, font_size = max(2, side // 400), max(11, side // 70)
    placed: list[tuple[float, float, float, float]] = []
    for t in faces:
        colour = _COLOURS[(t.track_id - 1) % len(_COLOURS)]
        x1, y1, x2, y2 = t.face.box.xyxy
        inset = width // 2  # PIL draws the outline inside the box, OpenCV centred on it
        cv2.rectangle(out, (round(x1) + inset, round(y1) + inset), (round(x2) - inset, round(y2) - inset), colour,
                      width)
        patch = _caption_patch("\n".join([f"#{t.track_id}", *face_caption(t.face)]), colour, font_size)
        th, tw = patch.shape[0] - 1, patch.shape[1] - 1
        ty = y2 + 2 if y2 + th + 2 < h else max(0, y1 - th - 2)
        tx = min(max(0, x1), max(0, w - tw))
        ty = _free_y(placed, tx, ty, tw, th, h)
        placed.append((tx, ty, tw, th))
        px, py = round(tx), round(ty)
        region = out[max(py, 0):py + patch.shape[0], max(px, 0):px + patch.shape[1]]
        region[:] = patch[max(-py, 0):max(-py, 0) + region.shape[0], max(-px, 0):max(-px, 0) + region.shape[1]]
    return out

"""Drawn captions: inside the image, fully covering their text, never on top of each other."""
from __future__ import annotations

import numpy as np

from facemtl._draw import _free_y, draw_faces
from facemtl.results import Box, Face, Prediction


def _face(x1: float, y1: float, x2: float, y2: float) -> Face:
    return Face(box=Box(x1, y1, x2, y2), score=0.99, attributes={
        "gender": Prediction(task="gender", label="male", value=0.9, probs={"male": 0.9, "female": 0.1})})


def test_free_y_steps_away_from_placed_captions():
    placed = [(0.0, 100.0, 50.0, 20.0)]
    assert _free_y(placed, 200, 100, 50, 20, 400) == 100  # no horizontal overlap: stays
    assert _free_y(placed, 10, 100, 50, 20, 400) == 120  # overlaps: moves down one caption height
    assert _free_y(placed, 10, 100, 50, 20, 135) == 80  # no room below: moves up
    assert _free_y([], 10, 100, 50, 20, 400) == 100


def test_side_by_side_faces_get_separate_captions():
    img = np.zeros((200, 300, 3), np.uint8)
    # overlapping boxes at the top edge: no place covers nothing, so both captions go below, one stepped past the other
    out = draw_faces(img, [_face(10, 0, 110, 120), _face(60, 5, 160, 125)])
    assert out.shape == img.shape and out.any()
    # each caption's background rows (below the boxes) are disjoint: the second stepped below the first
    from facemtl._draw import _COLOURS

    below = out[126:]
    rows = [set(np.flatnonzero((below == np.array(_COLOURS[i], np.uint8)).all(-1).sum(1) > 20)) for i in (0, 1)]
    assert rows[0] and rows[1] and not rows[0] & rows[1]


def test_a_caption_goes_where_it_covers_no_other_face():
    """A face right above another: its caption is not drawn below it (over the lower face) but above its box."""
    from facemtl._draw import _COLOURS

    img = np.zeros((300, 200, 3), np.uint8)
    out = draw_faces(img, [_face(50, 60, 150, 150), _face(50, 152, 150, 250)])
    first = (out == np.array(_COLOURS[0], np.uint8)).all(-1)
    rows = np.flatnonzero(first.sum(1) > 40)  # the caption's filled background, and the box's top/bottom edges
    assert rows[rows < 58].size > 5  # the caption sits above its own box (its top edge is at 60)
    assert not rows[(rows > 152) & (rows < 250)].size  # nothing of it over the face below

"""What :func:`facemtl.video.iter_video` yields and raises: :class:`VideoFrame` (one processed frame),
:class:`TrackedFace` (a face with its track) and :class:`VideoStoppedError` (a video that broke mid-way)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError
from ..results import Face, ImageResult
from .draw import _draw_tracked

__all__ = ["TrackedFace", "VideoFrame", "VideoStoppedError"]


class VideoStoppedError(InvalidInputError):
    """A video that could not be read to its end: raised by :func:`iter_video` after the last good frame.

    Attributes:
        frame: the 0-based index of the first source frame that could not be read (= frames read).
        reason: why (a decoding or network error, a file shorter than its header says).
    """

    def __init__(self, source: str, frame: int, reason: str) -> None:
        super().__init__(f"{source}: stopped at frame {frame}: {reason}")
        self.frame, self.reason = int(frame), reason


@dataclass(frozen=True)
class TrackedFace:
    """A face in one frame with its track: ``face`` carries the smoothed answers, ``raw`` the track's latest
    unsmoothed ones (from its last refresh). Both have this frame's box: the detection on a detection frame, the
    tracker's prediction in between (``face.score`` is the last detection's score)."""

    track_id: int
    face: Face
    raw: Face


@dataclass(frozen=True)
class VideoFrame:
    """One processed frame.

    Attributes:
        index: 0-based frame number in the source.
        time_s: seconds from the start (frame number / fps for files; stream timestamps or the wall clock for
            live sources and cameras).
        faces: the tracked faces that are visible, in the order of this or the last detection.
        image: the frame, RGB uint8 (H, W, 3).
        timings_ms: this frame's "track" time, and "detect" / "predict" on frames where those ran.
    """

    index: int
    time_s: float
    faces: list[TrackedFace]
    image: np.ndarray = field(repr=False, compare=False)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def result(self, source: str) -> ImageResult:
        """The smoothed faces as an ImageResult (the image schema: ``to_dict()``, CSV rows, ``plot()``)."""
        return ImageResult(source, (int(self.image.shape[0]), int(self.image.shape[1])),
                           [t.face for t in self.faces], dict(self.timings_ms))

    def plot(self) -> np.ndarray:
        """The frame with boxes, track ids and smoothed labels drawn; RGB uint8."""
        return _draw_tracked(self.image, self.faces)

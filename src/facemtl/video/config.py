"""The settings of a video run: :class:`VideoConfig` (sampling, detection, tracking, refresh, smoothing, output),
validated when made."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .io import X264_PRESETS

__all__ = ["VideoConfig"]


@dataclass(frozen=True)
class VideoConfig:
    """How a video is sampled, detected, tracked, refreshed, smoothed and written. Frozen: change a copy with
    ``dataclasses.replace`` (checked again).

    Every frame of the source is processed (tracked, written to the CSV and the annotated video) unless
    ``every_n`` or ``target_fps`` thin them out; "frames" below are processed frames.

    Attributes:
        every_n: process every n-th frame of the source; None: every frame (or about ``target_fps`` per second
            when that is given).
        target_fps: with ``every_n`` None, process about this many frames per second of video (None: all).
        max_frames: stop after processing this many frames (None: the whole video; a webcam or live stream runs
            until interrupted).
        detect_every: run the face detector on every k-th frame; the tracker predicts the boxes in between.
        refresh_every: re-run the attribute model for a track at most every this many frames, on the first
            detection frame when it is due (a new track at once). 1 with ``detect_every=1``: every frame.
        detect_max_side: the frame is shrunk so that its longer side is at most this before detection (None:
            the detector's own sizing).
        detect_min_face: when every tracked face would still be at least this many pixels, detection runs on a
            smaller input still (down to 192 px); 0: always ``detect_max_side``.
        full_detect_every: every n-th detection runs at ``detect_max_side`` anyway, to find new small faces.
        ema_alpha: weight of the newest refresh in each track's moving average (1 = no smoothing).
        high_score: detections scoring at least this are matched first and may start tracks; lower ones only
            continue tracks (ByteTrack's second stage).
        iou_threshold: smallest IoU between a track's predicted box and a detection for them to match.
        max_missed: frames a track that lost its face is kept (hidden) for re-matching before it ends.
        stream_timeout: seconds to wait for a stream URL to open and for each read from it.
        video_preset: x264 preset of the annotated video (ultrafast costs least CPU; slower ones make smaller
            files).
        video_crf: x264 quality of the annotated video (lower is better; 23 is x264's default).
    """

    every_n: int | None = None
    target_fps: float | None = None
    max_frames: int | None = None
    detect_every: int = 3
    refresh_every: int = 6
    detect_max_side: int | None = 640
    detect_min_face: int = 64
    full_detect_every: int = 4
    ema_alpha: float = 0.3
    high_score: float = 0.5
    iou_threshold: float = 0.2
    max_missed: int = 60
    stream_timeout: float = 10.0
    video_preset: str = "ultrafast"
    video_crf: int = 23

    def __post_init__(self) -> None:
        for name in ("every_n", "max_frames"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {v}")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ConfigError(f"target_fps must be > 0 or None, got {self.target_fps}")
        for name in ("detect_every", "refresh_every", "full_detect_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.detect_max_side is not None and self.detect_max_side < 32:
            raise ConfigError(f"detect_max_side must be >= 32 or None, got {self.detect_max_side}")
        if self.detect_min_face < 0:
            raise ConfigError(f"detect_min_face must be >= 0 (0: off), got {self.detect_min_face}")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ConfigError(f"ema_alpha must be in (0, 1] (1 = no smoothing), got {self.ema_alpha}")
        if not 0.0 <= self.high_score <= 1.0:
            raise ConfigError(f"high_score must be in [0, 1], got {self.high_score}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed < 0:
            raise ConfigError(f"max_missed must be >= 0, got {self.max_missed}")
        if not self.stream_timeout > 0:
            raise ConfigError(f"stream_timeout must be > 0 seconds, got {self.stream_timeout}")
        if self.video_preset not in X264_PRESETS:
            raise ConfigError(f"video_preset must be one of {', '.join(X264_PRESETS)}, got {self.video_preset!r}")
        if not 0 <= self.video_crf <= 51:
            raise ConfigError(f"video_crf must be in [0, 51], got {self.video_crf}")

    def resolve_every_n(self, fps: float | None) -> int:
        """The sampling step for a video of this fps (None: unknown): ``every_n``, else from ``target_fps``,
        else 1 (every frame)."""
        if self.every_n is not None:
            return int(self.every_n)
        if self.target_fps is None or fps is None:
            return 1
        return max(1, round(fps / self.target_fps))

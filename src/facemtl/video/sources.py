"""Where the frames come from: a file path, a stream URL or a camera index opened for reading with a decoder
running ahead of the analysis, and the time of each frame (:class:`FrameClock`)."""
from __future__ import annotations

import os
import time

from .io import Prefetcher, VideoReader, open_video

__all__ = ["FrameClock", "VideoSource"]

VideoSource = str | os.PathLike | int  # a file path or URL, or an integer camera index


def _source_label(source: VideoSource) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


def _open_source(source: VideoSource, timeout_s: float) -> tuple[VideoReader, Prefetcher]:
    """The opened reader and a :class:`Prefetcher` decoding ahead of it: a few frames for a live source, which
    drops its oldest frame rather than fall behind; more for a file, which waits."""
    reader = open_video(source if isinstance(source, int) else os.fspath(source), timeout_s)
    return reader, Prefetcher(iter(reader), depth=2 if reader.live else 6, drop=reader.live)


class FrameClock:
    """Seconds from the start of each frame: frame number / fps for files (the frame's timestamp when the fps is
    unknown); for live streams their timestamps from the first one; the wall clock for cameras (and live streams
    without timestamps). The wall clock starts when the clock is made."""

    def __init__(self, source: VideoSource, reader: VideoReader) -> None:
        self._camera = isinstance(source, int)
        self._wall = self._camera or reader.live
        self._fps = reader.fps
        self._start = time.perf_counter()
        self._first: float | None = None  # a live stream's first timestamp

    def time_s(self, index: int, frame_time: float | None) -> float:
        """The time of source frame ``index`` (0-based), whose decoder timestamp is ``frame_time`` (None: none)."""
        if not self._wall:
            return index / self._fps if self._fps else (frame_time or 0.0)
        time_s = time.perf_counter() - self._start
        if frame_time is not None and not self._camera:
            self._first = frame_time if self._first is None else self._first
            time_s = frame_time - self._first
        return time_s

"""The whole run on one source: :func:`analyze_video` reads it through :func:`iter_video`, writes the CSV and the
annotated video as it goes and returns a summary of what was done."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .config import VideoConfig
from .frames import VideoFrame, VideoStoppedError
from .io import H264Writer
from .output import _AnnotatedVideo, _CsvRows
from .pipeline import iter_video
from .sources import VideoSource, _source_label

__all__ = ["analyze_video"]


def analyze_video(analyzer: Any, source: VideoSource, config: VideoConfig | None = None,
                  csv_path: str | os.PathLike | None = None, video_out: str | os.PathLike | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Analyse a video file, stream or camera: a per-frame CSV of tracked, smoothed faces and an optional
    annotated H.264 video at the source frame rate.

    Rows are written and flushed frame by frame, and both files are finalised on an error or Ctrl-C, so an
    interrupted run leaves valid output for the frames done. A video that breaks mid-way (damaged or truncated
    data, a stream that stops answering) is not an exception here: the frames before the break are in both
    outputs and the summary says where it stopped (``complete`` False, ``stopped_at``, ``error``).

    Args:
        analyzer: a :class:`facemtl.FaceAnalyzer`.
        source: a video path, a URL (``rtsp://``, ``http(s)://``...) or an integer camera index.
        config: sampling, detection, tracking and smoothing; None: ``VideoConfig()``.
        csv_path: write one row per face per processed frame (and one row for a frame without faces) here:
            :func:`video_csv_columns`, with the smoothed answers.
        video_out: write every processed frame, drawn with boxes, track ids and smoothed labels, here: H.264
            (yuv420p) in .mp4 (or .m4v, .mov, .mkv), at the source frame rate (divided by ``every_n``).
        progress: called after each processed frame with (frames processed, expected total or None).

    Returns:
        A summary: source, fps, every_n, detect_every, refresh_every, frames_read, frames_analysed (processed),
        detections, refreshes, tracks, faces, frames_dropped, seconds, frames_per_second (processed per wall
        second), complete, stopped_at, error, csv, video.

    Raises:
        InvalidInputError: the source cannot be opened or gives no frame.
        OutputError: the annotated video cannot be written.
        MissingDependencyError: ``video_out`` without PyAV installed.

    Example:
        >>> analyzer = FaceAnalyzer.from_checkpoint()
        >>> analyze_video(analyzer, "clip.mp4", csv_path="clip.csv", video_out="clip_out.mp4")
        {'source': 'clip.mp4', 'fps': 25.0, 'every_n': 1, 'frames_read': 250, 'frames_analysed': 250, ...}
    """
    config = config or VideoConfig()
    name = _source_label(source)
    if video_out is not None:
        H264Writer.check(video_out)  # no PyAV, or a suffix H.264 cannot go in: said before anything is read
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    frames = iter_video(analyzer, source, config, info)
    first, stopped = _next_frame(frames)  # opens the source (and raises) before any output file is created
    video: _AnnotatedVideo | None = None
    with ExitStack() as stack:
        stack.callback(frames.close)  # releases the source, also on an error or Ctrl-C
        rows: _CsvRows | None = None
        if csv_path is not None:
            csv_path = Path(csv_path)
            rows = _CsvRows(csv_path, stack)
        if video_out is not None:
            video = _AnnotatedVideo(video_out, config.video_preset, config.video_crf, info, stack)
        analysed, broke = _write_frames(first, frames, name, rows, video, progress, _expected_total(info, config))
    stopped = stopped if stopped is not None else broke
    summary = _summary(name, info, config, analysed, time.perf_counter() - t0, stopped)
    summary.update(csv=str(csv_path) if csv_path is not None else None,
                   video=str(video_out) if video is not None and video.writer is not None else None)
    return summary


def _write_frames(frame: VideoFrame | None, frames: Generator[VideoFrame, None, None], name: str,
                  rows: _CsvRows | None, video: _AnnotatedVideo | None,
                  progress: Callable[[int, int | None], None] | None, total: int | None
                  ) -> tuple[int, VideoStoppedError | None]:
    """Write ``frame`` and every following one to the outputs; returns the number of frames written and the
    error of a video that broke on the way."""
    analysed, stopped = 0, None
    while frame is not None:
        analysed += 1
        if rows is not None:
            rows.write(frame, name)
        if video is not None:
            video.submit(frame)
        if progress is not None:
            progress(analysed, total)
        frame, stopped = _next_frame(frames)
    if video is not None:
        video.finish()
    return analysed, stopped

def _next_frame(frames: Generator[VideoFrame, None, None]) -> tuple[VideoFrame | None, VideoStoppedError | None]:
    """The next frame (None at the end), or None and the error of a video that broke."""
    try:
        return next(frames, None), None
    except VideoStoppedError as exc:
        return None, exc


def _expected_total(info: dict[str, Any], config: VideoConfig) -> int | None:
    """The number of frames to be processed, when known (for ``progress``)."""
    total = info.get("frame_count")
    if total is not None:
        total = -(-total // info["every_n"])
        total = min(total, config.max_frames) if config.max_frames else total
    elif config.max_frames:
        total = config.max_frames
    return total


def _summary(name: str, info: dict[str, Any], config: VideoConfig, analysed: int, seconds: float,
             stopped: VideoStoppedError | None) -> dict[str, Any]:
    """The summary of :func:`analyze_video`, less its ``csv`` and ``video``."""
    return {
        "source": name,
        "fps": info.get("fps"),
        "every_n": info.get("every_n"),
        "detect_every": config.detect_every,
        "refresh_every": config.refresh_every,
        "frames_read": info.get("frames_read", 0),
        "frames_analysed": analysed,
        "detections": info.get("detections", 0),
        "refreshes": info.get("refreshes", 0),
        "tracks": info.get("tracks", 0),
        "faces": info.get("faces", 0),
        "frames_dropped": info.get("frames_dropped", 0),
        "seconds": round(seconds, 3),
        "frames_per_second": round(analysed / seconds, 2) if seconds > 0 else None,
        "complete": stopped is None,
        "stopped_at": stopped.frame if stopped is not None else None,
        "error": stopped.reason if stopped is not None else None,
    }

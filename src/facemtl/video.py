"""Video and webcam analysis: sample frames, track faces across frames, smooth each track's answers over time.

The pipeline per sampled frame is the image pipeline (``FaceAnalyzer.analyze``: detect -> crop -> heads ->
decode through the TaskSpecs), followed by a greedy IoU tracker that gives every face a stable ``track_id``
and an exponential moving average (EMA) of each track's class probabilities and age.

Frames come from OpenCV in BGR order and are converted to RGB before analysis (the analyzer takes RGB).
"""
from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._rows import csv_columns, csv_rows
from .errors import InvalidInputError
from .results import Box, Face, ImageResult, Prediction
from .tasks import TaskSpec, age_group

__all__ = [
    "AttributeSmoother",
    "IouTracker",
    "TrackedFace",
    "VideoConfig",
    "VideoFrame",
    "analyze_video",
    "iter_video",
    "video_csv_columns",
]

logger = logging.getLogger(__name__)

VideoSource = str | os.PathLike | int  # a file path or URL, or an integer camera index


@dataclass
class VideoConfig:
    """How a video is sampled, tracked and smoothed.

    Attributes:
        every_n: analyse every n-th frame; None: chosen from the video's fps so that about ``target_fps``
            frames per second are analysed (every frame when the fps is unknown).
        target_fps: analysed frames per second aimed at when ``every_n`` is None.
        max_frames: stop after analysing this many frames (None: the whole video; a webcam runs until
            interrupted).
        ema_alpha: weight of the newest frame in each track's moving average (1 = no smoothing).
        iou_threshold: smallest box IoU between a track's last box and a detection for them to match.
        max_missed: a track ends after this many consecutive analysed frames without a matching face.
    """

    every_n: int | None = None
    target_fps: float = 5.0
    max_frames: int | None = None
    ema_alpha: float = 0.3
    iou_threshold: float = 0.3
    max_missed: int = 5

    def __post_init__(self) -> None:
        if self.every_n is not None and self.every_n < 1:
            raise ValueError(f"every_n must be >= 1 or None, got {self.every_n}")
        if not self.target_fps > 0:
            raise ValueError(f"target_fps must be > 0, got {self.target_fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must be in (0, 1] (1 = no smoothing), got {self.ema_alpha}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {self.max_missed}")

    def resolve_every_n(self, fps: float | None) -> int:
        """The sampling step for a video of this fps (None: unknown)."""
        if self.every_n is not None:
            return int(self.every_n)
        if fps is None:
            return 1
        return max(1, round(fps / self.target_fps))


@dataclass(frozen=True)
class TrackedFace:
    """A face in one frame with its track: ``face`` carries the smoothed answers, ``raw`` this frame's own."""

    track_id: int
    face: Face
    raw: Face


@dataclass(frozen=True)
class VideoFrame:
    """One analysed frame.

    Attributes:
        index: 0-based frame number in the source.
        time_s: seconds from the start (frame number / fps for files; wall clock for cameras).
        faces: the tracked faces, in detection order.
        image: the frame, RGB uint8 (H, W, 3).
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


# -- tracking ------------------------------------------------------------------------------------------
@dataclass
class _Track:
    track_id: int
    box: Box
    missed: int = 0


class IouTracker:
    """Greedy IoU tracker: each detection joins the free track whose last box overlaps it most.

    Pairs are taken in decreasing IoU order while the IoU is at least ``iou_threshold``; a detection left
    over starts a new track; a track unmatched for more than ``max_missed`` consecutive updates ends.
    Track ids start at 1 and are never reused.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.tracks: dict[int, _Track] = {}
        self.ended: list[int] = []  # ids ended by the last update
        self.num_tracks = 0  # tracks started so far

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Match one frame's boxes to tracks; returns the track id of each box, in order."""
        pairs = sorted(((t.box.iou(b), tid, j) for tid, t in self.tracks.items() for j, b in enumerate(boxes)),
                       key=lambda p: (-p[0], p[1], p[2]))
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for iou, tid, j in pairs:
            if iou < self.iou_threshold:
                break
            if tid in used or ids[j] is not None:
                continue
            ids[j] = tid
            used.add(tid)
            self.tracks[tid].box, self.tracks[tid].missed = boxes[j], 0
        self.ended = []
        for tid, track in list(self.tracks.items()):
            if tid not in used:
                track.missed += 1
                if track.missed > self.max_missed:
                    del self.tracks[tid]
                    self.ended.append(tid)
        for j, b in enumerate(boxes):
            if ids[j] is None:
                self.num_tracks += 1
                ids[j] = self.num_tracks
                self.tracks[self.num_tracks] = _Track(self.num_tracks, b)
        return [int(i) for i in ids]  # type: ignore[arg-type]


# -- smoothing -----------------------------------------------------------------------------------------
class AttributeSmoother:
    """Exponential moving average of each track's predictions.

    Classification: the probabilities are averaged; the label is the arg-max of the averaged
    probabilities and the value its probability. Regression: the value (age: years) and, when present,
    its group probabilities are averaged; the age group is recomputed from the averaged age.
    The first observation of a track is taken as is.
    """

    def __init__(self, tasks: Sequence[TaskSpec], alpha: float = 0.3) -> None:
        self.kinds = {t.name: t.kind for t in tasks}
        self.alpha = float(alpha)
        self._state: dict[int, dict[str, tuple[float, dict[str, float] | None]]] = {}

    def update(self, track_id: int, attributes: dict[str, Prediction]) -> dict[str, Prediction]:
        """Fold one frame's predictions into the track's average; returns new (frozen) smoothed predictions."""
        state = self._state.setdefault(track_id, {})
        a = self.alpha
        out: dict[str, Prediction] = {}
        for name, pred in attributes.items():
            prev = state.get(name)
            value, probs = float(pred.value), (dict(pred.probs) if pred.probs is not None else None)
            if prev is not None:
                value = a * value + (1.0 - a) * prev[0]
                if probs is not None and prev[1] is not None:
                    probs = {k: a * p + (1.0 - a) * prev[1].get(k, p) for k, p in probs.items()}
            state[name] = (value, probs)
            if self.kinds.get(name) == "classification" and probs:
                label = max(probs, key=probs.__getitem__)  # first label wins a tie, as argmax does
                out[name] = Prediction(name, label, probs[label], probs)
            else:
                label = age_group(value) if name == "age" else pred.label
                out[name] = Prediction(name, label, value, probs)
        return out

    def drop(self, track_id: int) -> None:
        """Forget an ended track."""
        self._state.pop(track_id, None)


# -- reading -------------------------------------------------------------------------------------------
def _source_label(source: VideoSource) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


def _open(source: VideoSource) -> Any:
    import cv2

    if not isinstance(source, int):
        text = str(source)
        if "://" not in text and not Path(text).is_file():  # URLs (rtsp://, http://) go straight to OpenCV
            raise InvalidInputError(f"no such video file: {text}")
    cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not cap.isOpened():
        cap.release()
        what = f"camera index {source} (is a camera connected?)" if isinstance(source, int) else \
            f"video {source} (not a video file, or a codec OpenCV lacks)"
        raise InvalidInputError(f"cannot open {what}")
    return cap


def iter_video(analyzer: Any, source: VideoSource, config: VideoConfig | None = None,
               info: dict[str, Any] | None = None) -> Iterator[VideoFrame]:
    """Yield each analysed frame of a video file, URL or camera, with tracked and smoothed faces.

    Args:
        analyzer: a :class:`facemtl.FaceAnalyzer`.
        source: a video path or URL, or an integer camera index.
        config: sampling, tracking and smoothing; None: ``VideoConfig()``.
        info: if given, filled (before the first frame) with ``fps``, ``every_n``, ``frame_count`` and kept
            up to date with ``frames_read``, ``tracks`` and ``faces``.

    Raises:
        InvalidInputError: the source cannot be opened or gives no frame.
    """
    import cv2

    config = config or VideoConfig()
    info = info if info is not None else {}
    live = isinstance(source, int)
    name = _source_label(source)
    cap = _open(source)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps_known = math.isfinite(fps) and 0.0 < fps < 1000.0
        every_n = config.resolve_every_n(fps if fps_known else None)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
        info.update(fps=fps if fps_known else None, every_n=every_n, frame_count=count if count > 0 else None,
                    frames_read=0, tracks=0, faces=0)
        tracker = IouTracker(config.iou_threshold, config.max_missed)
        smoother = AttributeSmoother(analyzer.tasks, config.ema_alpha)
        t_start = time.perf_counter()
        index = -1
        analysed = 0
        while config.max_frames is None or analysed < config.max_frames:
            if not cap.grab():  # grab() without retrieve() skips decoding the frames that are not sampled
                break
            index += 1
            info["frames_read"] = index + 1
            if index % every_n:
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                break
            if live or not fps_known:
                pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC) if not live else 0.0
                time_s = pos_ms / 1000.0 if pos_ms > 0 else time.perf_counter() - t_start
            else:
                time_s = index / fps
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGR2RGB)
            res = analyzer.analyze(rgb)
            ids = tracker.update([f.box for f in res.faces])
            for tid in tracker.ended:
                smoother.drop(tid)
            tracked = [TrackedFace(tid, replace(f, attributes=smoother.update(tid, f.attributes)), f)
                       for tid, f in zip(ids, res.faces)]
            analysed += 1
            info["tracks"] = tracker.num_tracks
            info["faces"] += len(tracked)
            yield VideoFrame(index, round(time_s, 4), tracked, rgb, dict(res.timings_ms))
        if index < 0:
            raise InvalidInputError(f"could not read any frame from {name}")
    finally:
        cap.release()


# -- writing -------------------------------------------------------------------------------------------
def video_csv_columns() -> list[str]:
    """Per-frame CSV columns: frame, time_s, track_id, then the ``facemtl batch`` per-face columns."""
    return ["frame", "time_s", "track_id"] + csv_columns()


def _frame_rows(frame: VideoFrame, source: str) -> list[dict[str, Any]]:
    rows = csv_rows(frame.result(source))  # one row per face (smoothed), or one empty row when no face
    for row, tracked in zip(rows, frame.faces):
        row["track_id"] = tracked.track_id
    for row in rows:
        row.update(frame=frame.index, time_s=frame.time_s)
    return rows


def _draw_tracked(image: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
    """Boxes and captions as ``ImageResult.plot`` draws them, with the track id first and a colour per track."""
    from ._draw import draw_faces

    return draw_faces(image, [t.face for t in faces], labels=[f"#{t.track_id}" for t in faces],
                      colour_ids=[t.track_id - 1 for t in faces])


def _open_writer(path: Path, fps: float, size_wh: tuple[int, int]) -> Any:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size_wh)
    if not writer.isOpened():
        writer.release()
        raise InvalidInputError(f"cannot write the annotated video {path} (use a .mp4 path in a writable folder)")
    return writer


def analyze_video(analyzer: Any, source: VideoSource, config: VideoConfig | None = None,
                  csv_path: str | os.PathLike | None = None, video_out: str | os.PathLike | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """Analyse a video file or camera: per-frame CSV of tracked, smoothed faces and an optional annotated video.

    Rows are written and flushed frame by frame, and both files are closed properly on an error or Ctrl-C,
    so an interrupted run leaves valid output for the frames done.

    Args:
        analyzer: a :class:`facemtl.FaceAnalyzer`.
        source: a video path or URL, or an integer camera index.
        config: sampling, tracking and smoothing; None: ``VideoConfig()``.
        csv_path: write one row per face per analysed frame (and one row for a frame without faces) here:
            :func:`video_csv_columns`, with the smoothed answers.
        video_out: write every analysed frame, drawn with boxes, track ids and smoothed labels, here (mp4v).
        progress: called after each analysed frame with (frames analysed, expected total or None).

    Returns:
        A summary: source, fps, every_n, frames_read, frames_analysed, tracks, faces, seconds, csv, video.

    Raises:
        InvalidInputError: the source cannot be opened or read, or the annotated video cannot be written.

    Example:
        >>> analyzer = FaceAnalyzer.from_checkpoint()
        >>> analyze_video(analyzer, "clip.mp4", VideoConfig(every_n=5), csv_path="clip.csv", video_out="clip_out.mp4")
        {'source': 'clip.mp4', 'fps': 25.0, 'every_n': 5, 'frames_read': 250, 'frames_analysed': 50, ...}
    """
    config = config or VideoConfig()
    name = _source_label(source)
    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    frames = iter_video(analyzer, source, config, info)
    first = next(frames, None)  # opens the source (and raises) before any output file is created
    analysed = 0
    writer = rows = None
    with ExitStack() as stack:
        stack.callback(frames.close)  # releases the capture, also on an error or Ctrl-C
        if csv_path is not None:
            csv_path = Path(csv_path)
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            csv_file = stack.enter_context(open(csv_path, "w", newline=""))
            rows = csv.DictWriter(csv_file, video_csv_columns(), extrasaction="ignore")
            rows.writeheader()
        total = info.get("frame_count")
        if total is not None:
            total = -(-total // info["every_n"])
            total = min(total, config.max_frames) if config.max_frames else total
        elif config.max_frames:
            total = config.max_frames
        frame = first
        while frame is not None:
            analysed += 1
            if rows is not None:
                rows.writerows(_frame_rows(frame, name))
                csv_file.flush()  # every analysed frame is on disk: Ctrl-C loses nothing already done
            if video_out is not None:
                import cv2

                if writer is None:
                    out_fps = info["fps"] / info["every_n"] if info["fps"] else config.target_fps
                    writer = _open_writer(Path(video_out), out_fps, (frame.image.shape[1], frame.image.shape[0]))
                    stack.callback(writer.release)  # finalises the file, also on an error or Ctrl-C
                writer.write(cv2.cvtColor(frame.plot(), cv2.COLOR_RGB2BGR))
            if progress is not None:
                progress(analysed, total)
            frame = next(frames, None)
    return {
        "source": name,
        "fps": info.get("fps"),
        "every_n": info.get("every_n"),
        "frames_read": info.get("frames_read", 0),
        "frames_analysed": analysed,
        "tracks": info.get("tracks", 0),
        "faces": info.get("faces", 0),
        "seconds": round(time.perf_counter() - t0, 3),
        "csv": str(csv_path) if csv_path is not None else None,
        "video": str(video_out) if video_out is not None and writer is not None else None,
    }

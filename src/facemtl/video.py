"""Video, stream and webcam analysis in real time on a CPU: every frame tracked, attributes refreshed per track.

The pipeline per frame of the source:

- **detection every k frames** (``detect_every``): the analyzer's detector on a reduced copy of the frame (longer
  side at most ``detect_max_side``, smaller still when every tracked face is large: see ``detect_min_face``),
  the boxes mapped back and passed through the analyzer's selection rules (``min_face``, ``max_faces``,
  ``largest_only``);
- **tracking on every frame** (:class:`facemtl.track.ByteTracker`): a Kalman filter predicts each face's box
  between detections; on detection frames tracks and detections are matched in two stages (high, then low
  detection scores) and a face that was hidden for a moment takes its old id back;
- **attributes refreshed per track** every ``refresh_every`` frames (and at once for a new track), on a
  detection frame so that the crop has the detector's landmarks: the faces due on that frame go through
  ``analyzer.predict_canonical`` in one batch, and each track's answers are smoothed (exponential moving
  average, :class:`AttributeSmoother`);
- :func:`analyze_video` writes a per-frame CSV and the annotated video as H.264 (yuv420p, plays in browsers) at
  the source frame rate, drawing and encoding in a background thread.

Files and stream URLs (``rtsp://``, ``http(s)://``) are read by PyAV with timeouts, camera indices by OpenCV
(:mod:`facemtl._video_io`). Frames are RGB uint8. torch is not needed.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ._rows import csv_columns, csv_rows
from ._video_io import X264_PRESETS, BackgroundWorker, H264Writer, Prefetcher, VideoReader, open_video
from .detect.base import Detection
from .errors import ConfigError, InvalidInputError
from .results import Box, Face, ImageResult, Prediction
from .tasks import TaskSpec, age_group, most_probable_group
from .track import ByteTracker, Track

__all__ = [
    "AttributeSmoother",
    "ByteTracker",
    "IouTracker",
    "TrackedFace",
    "VideoConfig",
    "VideoFrame",
    "VideoStoppedError",
    "analyze_video",
    "iter_video",
    "video_csv_columns",
]

logger = logging.getLogger(__name__)

VideoSource = str | os.PathLike | int  # a file path or URL, or an integer camera index

_DETECT_SIDES = (640, 512, 416, 320, 256, 192)  # reduced detector inputs (longer side), a few sizes only


@dataclass
class VideoConfig:
    """How a video is sampled, detected, tracked, refreshed, smoothed and written.

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
        self._state: dict[int, dict[str, tuple[float, dict[str, float] | None, float | None, float | None]]] = {}

    def update(self, track_id: int, attributes: dict[str, Prediction]) -> dict[str, Prediction]:
        """Fold one frame's predictions into the track's average; returns new (frozen) smoothed predictions."""
        state = self._state.setdefault(track_id, {})
        a = self.alpha
        out: dict[str, Prediction] = {}
        for name, pred in attributes.items():
            prev = state.get(name)
            value, probs = float(pred.value), (dict(pred.probs) if pred.probs is not None else None)
            low, high = pred.low, pred.high
            if prev is not None:
                value = a * value + (1.0 - a) * prev[0]
                if probs is not None and prev[1] is not None:
                    probs = {k: a * p + (1.0 - a) * prev[1].get(k, p) for k, p in probs.items()}
                if low is not None and high is not None and prev[2] is not None and prev[3] is not None:
                    low, high = a * low + (1.0 - a) * prev[2], a * high + (1.0 - a) * prev[3]  # the interval too
            state[name] = (value, probs, low, high)
            if self.kinds.get(name) == "classification" and probs:
                label = max(probs, key=probs.__getitem__)  # first label wins a tie, as argmax does
                out[name] = Prediction(name, label, probs[label], probs)
            else:
                label = (most_probable_group(probs) if probs else age_group(value)) if name == "age" else pred.label
                out[name] = Prediction(name, label, value, probs, low, high, pred.level)
        return out

    def drop(self, track_id: int) -> None:
        """Forget an ended track."""
        self._state.pop(track_id, None)



# -- the pipeline --------------------------------------------------------------------------------------
def _source_label(source: VideoSource) -> str:
    return f"camera {source}" if isinstance(source, int) else str(source)


def _detect_side(frame_hw: tuple[int, int], tracks: Sequence[Track], config: VideoConfig, n_detections: int
                 ) -> int:
    """Longer side of the detector input for this detection: ``detect_max_side``, or a smaller one of
    ``_DETECT_SIDES`` when the smallest tracked face would still measure ``detect_min_face`` pixels."""
    side = max(frame_hw)
    full = min(side, config.detect_max_side) if config.detect_max_side else side
    if not config.detect_min_face or not tracks or n_detections % config.full_detect_every == 0:
        return full
    smallest = min(min(t.kalman.mean[2], t.kalman.mean[3]) for t in tracks)
    need = side * config.detect_min_face / max(smallest, 1.0)  # input side at which that face is min_face px
    fits = [s for s in _DETECT_SIDES if need <= s <= full]
    return min(fits) if fits else full


def _detect(analyzer: Any, rgb: np.ndarray, side: int) -> list[Detection]:
    """The analyzer's detector on the frame shrunk to a longer side of ``side``, boxes and landmarks mapped back,
    then its selection rules (min_face, max_faces, largest_only)."""
    import cv2

    h, w = rgb.shape[:2]
    factor = side / max(h, w)
    small = rgb if factor >= 1.0 else cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))),
                                                 interpolation=cv2.INTER_AREA)
    lock = getattr(analyzer, "_detect_lock", None)  # detectors are not thread-safe (a server shares one)
    with lock if lock is not None else contextlib.nullcontext():
        dets = analyzer.detector.detect(small)
    if small is not rgb:
        fx, fy = w / small.shape[1], h / small.shape[0]
        dets = [Detection(Box(max(0.0, d.box.x1 * fx), max(0.0, d.box.y1 * fy), min(float(w), d.box.x2 * fx),
                              min(float(h), d.box.y2 * fy)), d.score,
                          tuple((x * fx, y * fy) for x, y in d.landmarks) if d.landmarks else None) for d in dets]
    return analyzer.select(dets)


def _crop(analyzer: Any, rgb: np.ndarray, det: Detection) -> np.ndarray:
    """The model input for one detected face, as the image pipeline makes it."""
    if getattr(analyzer.detector, "name", None) == "none":  # the frame is the face: framed as in training
        return analyzer.frame_crop(rgb)[0]
    from .preprocess import photo_crop

    return photo_crop(rgb, det, analyzer.input_size, analyzer.geometry, analyzer.framing)


def _clip(box: Box, w: int, h: int) -> Box:
    return Box(min(max(box.x1, 0.0), w), min(max(box.y1, 0.0), h), min(max(box.x2, 0.0), w),
               min(max(box.y2, 0.0), h))


def iter_video(analyzer: Any, source: VideoSource, config: VideoConfig | None = None,
               info: dict[str, Any] | None = None) -> Iterator[VideoFrame]:
    """Yield every processed frame of a video file, stream URL or camera, with tracked and smoothed faces.

    Args:
        analyzer: a :class:`facemtl.FaceAnalyzer` (its detector, selection rules, crop settings and
            ``predict_canonical``).
        source: a video path, a URL (``rtsp://``, ``http(s)://``...) or an integer camera index.
        config: sampling, detection, tracking and smoothing; None: ``VideoConfig()``.
        info: if given, filled (before the first frame) with ``fps``, ``rate`` (a Fraction), ``every_n``,
            ``frame_count`` and ``live``, and kept up to date with ``frames_read``, ``frames_processed``,
            ``detections``, ``refreshes``, ``tracks``, ``faces`` and ``frames_dropped`` (live sources drop frames
            when the analysis falls behind); ``stopped_at`` and ``error`` when the video broke.

    Raises:
        InvalidInputError: the source cannot be opened or gives no frame.
        VideoStoppedError: the video broke (damaged or truncated data, a stream that stopped answering); raised
            after every frame before it was yielded.
    """
    config = config or VideoConfig()
    info = info if info is not None else {}
    name = _source_label(source)
    reader: VideoReader = open_video(source if isinstance(source, int) else os.fspath(source), config.stream_timeout)
    ahead = Prefetcher(iter(reader), depth=2 if reader.live else 6, drop=reader.live)
    try:
        fps = reader.fps
        every_n = config.resolve_every_n(fps)
        info.update(fps=fps, rate=reader.rate, every_n=every_n, frame_count=reader.frame_count, live=reader.live,
                    detect_every=config.detect_every, refresh_every=config.refresh_every, frames_read=0,
                    frames_processed=0, detections=0, refreshes=0, tracks=0, faces=0, frames_dropped=0,
                    stopped_at=None, error=None)
        tracker: ByteTracker | None = None
        smoother = AttributeSmoother(analyzer.tasks, config.ema_alpha)
        t_start = time.perf_counter()
        first_time: float | None = None
        index = -1
        processed = 0
        for rgb, frame_time in ahead:
            index += 1
            info["frames_read"] = index + 1
            info["frames_dropped"] = ahead.dropped
            if index % every_n:
                continue
            h, w = rgb.shape[:2]
            if tracker is None:
                tracker = ByteTracker(high_score=config.high_score, match_iou=config.iou_threshold,
                                      coast=1, max_lost=config.max_missed, frame_size=(h, w))
            if isinstance(source, int) or reader.live:
                time_s = time.perf_counter() - t_start
                if frame_time is not None and not isinstance(source, int):
                    first_time = frame_time if first_time is None else first_time
                    time_s = frame_time - first_time
            else:
                time_s = index / fps if fps else (frame_time or 0.0)
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            if processed % config.detect_every == 0:
                side = _detect_side((h, w), tracker.tracked + tracker.lost, config, info["detections"])
                dets = _detect(analyzer, rgb, side)
                info["detections"] += 1
                t1 = time.perf_counter()
                timings["detect"] = (t1 - t0) * 1e3
                tracks = tracker.step(dets)
            else:
                t1 = t0
                tracks = tracker.step(None)
            for tid in tracker.ended:
                smoother.drop(tid)
            due = [t for t in tracks if t.detection is not None and t.detection.score >= config.high_score
                   and ("refreshed" not in t.data or processed - t.data["refreshed"] >= config.refresh_every)]
            due += [t for t in tracks if "smoothed" not in t.data and t not in due and t.detection is not None]
            t2 = time.perf_counter()
            timings["track"] = (t2 - t1) * 1e3
            if due:
                preds = analyzer.predict_canonical([_crop(analyzer, rgb, t.detection) for t in due])
                for t, pred in zip(due, preds):
                    t.data.update(raw=pred, smoothed=smoother.update(t.track_id, pred), refreshed=processed)
                info["refreshes"] += len(due)
                timings["predict"] = (time.perf_counter() - t2) * 1e3
            tracked = []
            for t in tracks:
                if "smoothed" not in t.data:  # never seen well enough to predict: not reported yet
                    continue
                box = _clip(t.box, w, h)
                if box.area <= 0:
                    continue
                face = Face(box, float(t.score), t.data["smoothed"], t.landmarks)
                tracked.append(TrackedFace(t.track_id, face, Face(box, face.score, t.data["raw"], face.landmarks)))
            processed += 1
            info["frames_processed"] = processed
            info["tracks"] = tracker.num_tracks
            info["faces"] += len(tracked)
            yield VideoFrame(index, round(time_s, 4), tracked, rgb, timings)
            if config.max_frames is not None and processed >= config.max_frames:
                break
        else:  # the source ended (not max_frames): at its end, or broken
            if reader.error is not None:
                info.update(stopped_at=index + 1, error=reader.error)
                logger.warning("%s: stopped at frame %d: %s", name, index + 1, reader.error)
                raise VideoStoppedError(name, index + 1, reader.error)
            if index < 0:
                raise InvalidInputError(f"could not read any frame from {name}")
    finally:
        ahead.close(timeout_s=config.stream_timeout + 5.0)
        reader.close()


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
    img = Image.new("RGB", (bb[2] + 7, bb[3] + 7), colour)  # as _draw: text at (+3, +3), box to its far corner
    ImageDraw.Draw(img).multiline_text((3, 3), text, fill=(255, 255, 255), font=font)
    patch = np.asarray(img)
    with _CAPTIONS_LOCK:
        _CAPTIONS[key] = patch
        while len(_CAPTIONS) > _CAPTIONS_MAX:
            _CAPTIONS.popitem(last=False)
    return patch


def _draw_tracked(image: np.ndarray, faces: Sequence[TrackedFace]) -> np.ndarray:
    """Boxes and captions laid out as ``ImageResult.plot`` lays them out, with the track id first and a colour
    per track; boxes drawn by OpenCV and captions pasted from a cache (a few milliseconds less per frame)."""
    import cv2

    from ._draw import _COLOURS, _free_y, face_caption

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
    stopped: VideoStoppedError | None = None
    try:
        first = next(frames, None)  # opens the source (and raises) before any output file is created
    except VideoStoppedError as exc:  # broke before its first frame: nothing to write
        first, stopped = None, exc
    analysed = 0
    writer: H264Writer | None = None
    with ExitStack() as stack:
        stack.callback(frames.close)  # releases the source, also on an error or Ctrl-C
        rows = None
        if csv_path is not None:
            csv_path = Path(csv_path)
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            csv_file = stack.enter_context(open(csv_path, "w", newline=""))
            rows = csv.DictWriter(csv_file, video_csv_columns(), extrasaction="ignore")
            rows.writeheader()
        worker: BackgroundWorker | None = None
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
                csv_file.flush()  # every processed frame is on disk: Ctrl-C loses nothing already done
            if video_out is not None:
                if writer is None:
                    rate = info.get("rate") or Fraction(25)
                    writer = H264Writer(video_out, rate / info["every_n"], (frame.image.shape[1],
                                                                            frame.image.shape[0]),
                                        config.video_preset, config.video_crf)
                    stack.callback(writer.close)  # finalises the file, also on an error or Ctrl-C
                    worker = BackgroundWorker(lambda f, w=writer: w.write(f.plot()))
                    stack.callback(worker.close)  # runs before writer.close: every frame submitted is encoded
                worker.submit(frame)
            if progress is not None:
                progress(analysed, total)
            try:
                frame = next(frames, None)
            except VideoStoppedError as exc:
                frame, stopped = None, exc
        if worker is not None:
            worker.close()  # raise an encoding error here rather than lose it
    seconds = time.perf_counter() - t0
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
        "csv": str(csv_path) if csv_path is not None else None,
        "video": str(video_out) if video_out is not None and writer is not None else None,
    }

"""The per-frame loop of :func:`iter_video`: sample the source's frames, detect every k-th processed frame, track
every frame, refresh each track's attributes when due (one batch per frame) and smooth them."""
from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any, cast

import numpy as np

from ..detect.base import Detection
from ..errors import InvalidInputError
from ..results import Box, Face
from .config import VideoConfig
from .detection import _detect, _detect_side
from .frames import TrackedFace, VideoFrame, VideoStoppedError
from .io import VideoReader
from .smoothing import AttributeSmoother
from .sources import FrameClock, VideoSource, _open_source, _source_label
from .track import ByteTracker, Track

__all__ = ["iter_video"]

logger = logging.getLogger(__name__)


def _crop(analyzer: Any, rgb: np.ndarray, det: Detection) -> np.ndarray:
    """The model input for one detected face, as the image pipeline makes it."""
    if getattr(analyzer.detector, "name", None) == "none":  # the frame is the face: framed as in training
        return analyzer.frame_crop(rgb)[0]
    from ..preprocess import photo_crop

    return photo_crop(rgb, det, analyzer.input_size, analyzer.geometry, analyzer.framing)


def _clip(box: Box, w: int, h: int) -> Box:
    return Box(min(max(box.x1, 0.0), w), min(max(box.y1, 0.0), h), min(max(box.x2, 0.0), w),
               min(max(box.y2, 0.0), h))


class _FrameAnalysis:
    """The work on each processed frame: detection when due, a tracker step, the refreshes due, the report.

    ``info`` is kept up to date (``detections``, ``refreshes``, ``frames_processed``, ``tracks``, ``faces``);
    :meth:`start` makes the tracker once the frame size is known.
    """

    def __init__(self, analyzer: Any, config: VideoConfig, info: dict[str, Any]) -> None:
        self.analyzer, self.config, self.info = analyzer, config, info
        self.smoother = AttributeSmoother(analyzer.tasks, config.ema_alpha)
        self.tracker: ByteTracker | None = None
        self.processed = 0  # frames processed so far

    def start(self, frame_hw: tuple[int, int]) -> ByteTracker:
        """The tracker, made at the first processed frame (it drops tracks whose box leaves the frame)."""
        if self.tracker is None:
            c = self.config
            self.tracker = ByteTracker(high_score=c.high_score, match_iou=c.iou_threshold, coast=1,
                                       max_lost=c.max_missed, frame_size=frame_hw)
        return self.tracker

    def process(self, rgb: np.ndarray, index: int, time_s: float) -> VideoFrame:
        """Analyse source frame ``index`` (shown at ``time_s``): its tracked, smoothed faces and timings."""
        h, w = rgb.shape[:2]
        tracker = self.start((h, w))
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        tracks, t1 = self._step(tracker, rgb, timings, t0)
        for tid in tracker.ended:
            self.smoother.drop(tid)
        due = self._due(tracks)
        t2 = time.perf_counter()
        timings["track"] = (t2 - t1) * 1e3
        if due:
            self._refresh(rgb, due)
            timings["predict"] = (time.perf_counter() - t2) * 1e3
        tracked = self._report(tracks, w, h)
        self.processed += 1
        self.info["frames_processed"] = self.processed
        self.info["tracks"] = tracker.num_tracks
        self.info["faces"] += len(tracked)
        return VideoFrame(index, round(time_s, 4), tracked, rgb, timings)

    def _step(self, tracker: ByteTracker, rgb: np.ndarray, timings: dict[str, float], t0: float
              ) -> tuple[list[Track], float]:
        """The tracker's step, with this frame's detections on every ``detect_every``-th processed frame;
        returns the tracked tracks and the time the detection ended (``t0`` without one)."""
        config = self.config
        if self.processed % config.detect_every:
            return tracker.step(None), t0
        h, w = rgb.shape[:2]
        side = _detect_side((h, w), tracker.tracked + tracker.lost, config, self.info["detections"])
        dets = _detect(self.analyzer, rgb, side)
        self.info["detections"] += 1
        t1 = time.perf_counter()
        timings["detect"] = (t1 - t0) * 1e3
        return tracker.step(dets), t1

    def _due(self, tracks: list[Track]) -> list[Track]:
        """The tracks to refresh now: matched on this frame by a high-score detection and not refreshed for
        ``refresh_every`` frames, then any matched track never predicted yet."""
        config, processed = self.config, self.processed
        due = [t for t in tracks if t.detection is not None and t.detection.score >= config.high_score
               and ("refreshed" not in t.data or processed - t.data["refreshed"] >= config.refresh_every)]
        due += [t for t in tracks if "smoothed" not in t.data and t not in due and t.detection is not None]
        return due

    def _refresh(self, rgb: np.ndarray, due: list[Track]) -> None:
        """The attribute model on the due faces in one batch; each track's raw and smoothed answers updated."""
        preds = self.analyzer.predict_canonical([_crop(self.analyzer, rgb, cast(Detection, t.detection))
                                                 for t in due])
        for t, pred in zip(due, preds):
            t.data.update(raw=pred, smoothed=self.smoother.update(t.track_id, pred), refreshed=self.processed)
        self.info["refreshes"] += len(due)

    @staticmethod
    def _report(tracks: list[Track], w: int, h: int) -> list[TrackedFace]:
        """The tracks to report on this frame, boxes clipped to it: those predicted at least once."""
        tracked = []
        for t in tracks:
            if "smoothed" not in t.data:  # never seen well enough to predict: not reported yet
                continue
            box = _clip(t.box, w, h)
            if box.area <= 0:
                continue
            face = Face(box, float(t.score), t.data["smoothed"], t.landmarks)
            tracked.append(TrackedFace(t.track_id, face, Face(box, face.score, t.data["raw"], face.landmarks)))
        return tracked


def _start_info(info: dict[str, Any], reader: VideoReader, config: VideoConfig, every_n: int) -> None:
    info.update(fps=reader.fps, rate=reader.rate, every_n=every_n, frame_count=reader.frame_count, live=reader.live,
                detect_every=config.detect_every, refresh_every=config.refresh_every, frames_read=0,
                frames_processed=0, detections=0, refreshes=0, tracks=0, faces=0, frames_dropped=0,
                stopped_at=None, error=None)


def _check_end(reader: VideoReader, name: str, frames_read: int, info: dict[str, Any]) -> None:
    """At the end of the source (not ``max_frames``): raise when it broke or gave no frame."""
    if reader.error is not None:
        info.update(stopped_at=frames_read, error=reader.error)
        logger.warning("%s: stopped at frame %d: %s", name, frames_read, reader.error)
        raise VideoStoppedError(name, frames_read, reader.error)
    if frames_read == 0:
        raise InvalidInputError(f"could not read any frame from {name}")


def iter_video(analyzer: Any, source: VideoSource, config: VideoConfig | None = None,
               info: dict[str, Any] | None = None) -> Generator[VideoFrame, None, None]:
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
    reader, ahead = _open_source(source, config.stream_timeout)
    try:
        every_n = config.resolve_every_n(reader.fps)
        _start_info(info, reader, config, every_n)
        run = _FrameAnalysis(analyzer, config, info)
        clock = FrameClock(source, reader)
        index = -1
        for rgb, frame_time in ahead:
            index += 1
            info["frames_read"] = index + 1
            info["frames_dropped"] = ahead.dropped
            if index % every_n:
                continue
            yield run.process(rgb, index, clock.time_s(index, frame_time))
            if config.max_frames is not None and run.processed >= config.max_frames:
                break
        else:  # the source ended (not max_frames): at its end, or broken
            _check_end(reader, name, index + 1, info)
    finally:
        ahead.close(timeout_s=config.stream_timeout + 5.0)
        reader.close()

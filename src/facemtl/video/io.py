"""Reading and writing video for :mod:`facemtl.video`: one reader for files, stream URLs and cameras, an H.264
writer, and background threads that decode ahead and encode behind the analysis.

Files and URLs (``rtsp://``, ``http(s)://``, ...) are read by PyAV (FFmpeg), with a timeout on opening and on
every read, so a stream that does not answer fails instead of hanging; an integer camera index is read by
OpenCV (its camera back ends are the portable ones). Without PyAV, files and URLs fall back to OpenCV (with its
open/read timeouts) and only writing needs PyAV. Frames come out as RGB uint8 (H, W, 3).
"""
from __future__ import annotations

import logging
import math
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError, OutputError

__all__ = [
    "X264_PRESETS",
    "BackgroundWorker",
    "H264Writer",
    "Prefetcher",
    "VideoReader",
    "is_stream_url",
    "open_video",
]

logger = logging.getLogger(__name__)

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "srt", "tcp")
H264_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv")
_TRUNCATION_SLACK = 0.02  # a file ending more than 2 % (and 2 frames) short of its announced length was cut


def _import_av() -> Any:
    try:
        import av
    except ImportError:
        return None
    return av


def is_stream_url(source: Any) -> bool:
    """Whether ``source`` is a URL (``scheme://...``) rather than a file path or camera index."""
    return isinstance(source, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source) is not None


def _scheme(text: str) -> str:
    return text.split("://", 1)[0].lower() if is_stream_url(text) else ""


class VideoReader:
    """An opened video source. Iterate to get ``(rgb, time_s)`` per frame, in order.

    Attributes:
        name: the source as shown to users ("camera 0", the path or URL).
        rate: the frame rate as a fraction (None: unknown).
        frame_count: the number of frames the container announces (None: unknown or a live source).
        live: a camera or a live stream (frames are dropped rather than queued when analysis falls behind).
        error: why reading stopped early (a decoding or network error, a truncated file), else None;
            set once iteration has ended.
    """

    name: str
    rate: Fraction | None = None
    frame_count: int | None = None
    live: bool = False
    error: str | None = None

    @property
    def fps(self) -> float | None:
        return float(self.rate) if self.rate else None

    def __iter__(self) -> Iterator[tuple[np.ndarray, float | None]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _check_length(self, frames: int) -> None:
        """Set ``error`` when a file ended well short of the length its header announces."""
        expected = self.frame_count
        if self.error is None and expected and frames < expected - max(2, int(expected * _TRUNCATION_SLACK)):
            self.error = (f"the video ended after {frames} of the {expected} frames its header announces "
                          "(a truncated or damaged file?)")


class _AvReader(VideoReader):
    def __init__(self, text: str, timeout_s: float) -> None:
        av = _import_av()
        self.name, self.timeout_s = text, float(timeout_s)
        url = is_stream_url(text)
        try:
            self._container = av.open(text, timeout=(self.timeout_s, self.timeout_s) if url else None)
        except av.error.ExitError:
            raise InvalidInputError(f"no answer from {text} within {self.timeout_s:g} s (stream_timeout); is the "
                                    "stream running and the address right?") from None
        except av.error.FFmpegError as exc:
            reason = _ffmpeg_reason(exc)
            if url:
                raise InvalidInputError(f"cannot open the stream {text}: {reason}") from None
            raise InvalidInputError(f"cannot open video {text}: {reason} (not a video file, a truncated one, or "
                                    "a codec FFmpeg lacks)") from None
        if not self._container.streams.video:
            self._container.close()
            raise InvalidInputError(f"{text} has no video stream")
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads in the decoder
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.rate = Fraction(rate) if rate and 0 < float(rate) < 1000 else None
        duration = self._container.duration  # microseconds, None when unknown
        self.live = _scheme(text) in LIVE_SCHEMES or (url and not duration)
        if not self.live:
            if stream.frames and stream.frames > 0:
                self.frame_count = int(stream.frames)
            elif duration and self.rate and _scheme(text) == "" and Path(text).suffix.lower() in (".mkv", ".webm"):
                self.frame_count = round(duration / 1e6 * float(self.rate))  # Matroska headers hold the duration

    def __iter__(self) -> Iterator[tuple[np.ndarray, float | None]]:
        av = _import_av()
        n = 0
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    n += 1
                    yield frame.to_ndarray(format="rgb24"), frame.time
        except av.error.ExitError:
            self.error = f"no data from {self.name} for {self.timeout_s:g} s (stream_timeout)"
        except av.error.EOFError:
            pass
        except (av.error.FFmpegError, ValueError) as exc:  # damaged or truncated data: stop, keep what was read
            self.error = f"the video cannot be decoded past this point: {_ffmpeg_reason(exc)}"
        self._check_length(n)

    def close(self) -> None:
        self._container.close()


class _CvReader(VideoReader):
    def __init__(self, source: int | str, timeout_s: float) -> None:
        import cv2

        self.name = f"camera {source}" if isinstance(source, int) else str(source)
        self.live = isinstance(source, int) or _scheme(str(source)) in LIVE_SCHEMES
        if isinstance(source, int):
            self._cap = cv2.VideoCapture(source)
        else:
            ms = int(timeout_s * 1000)
            self._cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        if not self._cap.isOpened():
            self._cap.release()
            what = f"camera index {source} (is a camera connected?)" if isinstance(source, int) else \
                f"video {source} (not a video file, a stream that does not answer, or a codec OpenCV lacks)"
            raise InvalidInputError(f"cannot open {what}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.rate = Fraction(fps).limit_denominator(1001) if math.isfinite(fps) and 0 < fps < 1000 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None

    def __iter__(self) -> Iterator[tuple[np.ndarray, float | None]]:
        import cv2

        n = 0
        while True:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                break
            n += 1
            pos = self._cap.get(cv2.CAP_PROP_POS_MSEC) if not self.live else 0.0
            yield cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB if bgr.ndim == 2 else cv2.COLOR_BGR2RGB), \
                (pos / 1000.0 if pos > 0 else None)
        self._check_length(n)

    def close(self) -> None:
        self._cap.release()


def _ffmpeg_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".")


def open_video(source: int | str, timeout_s: float = 10.0) -> VideoReader:
    """Open a video file, stream URL or camera index.

    Args:
        source: a path, a URL (``rtsp://``, ``http(s)://``...) or an integer camera index.
        timeout_s: for URLs, the longest wait for the stream to open and for each read.

    Raises:
        InvalidInputError: a missing file, a file that is not a video, a stream that refuses or does not answer
            within ``timeout_s``, a camera that cannot be opened; the message names the source.
    """
    if isinstance(source, int):
        return _CvReader(source, timeout_s)
    text = str(source)
    if not is_stream_url(text) and not Path(text).is_file():
        raise InvalidInputError(f"no such video file: {text}")
    if _import_av() is not None:
        return _AvReader(text, timeout_s)
    return _CvReader(text, timeout_s)


class Prefetcher:
    """Decodes ahead in a background thread: iterate to get what the reader yields, in order.

    For a live source (``drop=True``) a full queue drops its oldest frame instead of blocking, so the analysis
    stays current; ``dropped`` counts those frames. Errors raised in the thread are raised in the consumer.

    Args:
        items: the iterator to run ahead (it must not be touched elsewhere meanwhile).
        depth: frames held at most.
        drop: drop the oldest frame when the queue is full rather than wait.
    """

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int = 4, drop: bool = False) -> None:
        self._items, self._drop = items, drop
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="facemtl-video-read", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._drop and item is not self._END and not isinstance(item, BaseException):
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(exc)
            return
        self._put(self._END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread and wait for it (it finishes its current read first)."""
        self._stop.set()
        while True:  # unblock a thread waiting to put
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout_s)


class BackgroundWorker:
    """Runs ``fn(item)`` for each submitted item in one background thread, in order (drawing and encoding the
    annotated video while the next frame is analysed). An error in ``fn`` is raised by the next ``submit`` or by
    ``close``; ``close`` waits for every item submitted before it.

    Args:
        fn: the work per item.
        depth: items queued at most (``submit`` waits when the queue is full).
    """

    _END = object()

    def __init__(self, fn: Callable[[Any], None], depth: int = 8) -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="facemtl-video-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def submit(self, item: Any) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        """Finish every submitted item, stop the thread, raise an error met on the way."""
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join()
        self._raise()


class H264Writer:
    """Writes RGB frames as H.264 (yuv420p, browser-playable) at a fixed frame rate, through PyAV.

    An ``.mp4`` / ``.m4v`` / ``.mov`` file gets its index at the front (``+faststart``) when closed, so a browser
    starts playing before the whole file has arrived. Odd frame sizes are padded by one pixel (yuv420p needs
    even sides).

    Args:
        path: the output file (.mp4, .m4v, .mov or .mkv); its folder is created.
        rate: frames per second (a Fraction keeps 30000/1001 exact).
        size_wh: (width, height) of every frame.
        preset: x264 speed preset (see :data:`X264_PRESETS`); "ultrafast" costs least CPU.
        crf: x264 constant rate factor (quality; lower is better, 23 is x264's default).

    Raises:
        MissingDependencyError: PyAV is not installed.
        OutputError: the path has another suffix, or the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike, rate: Fraction | float, size_wh: tuple[int, int],
                 preset: str = "ultrafast", crf: int = 23) -> None:
        av = self.check(path)
        path = Path(path)
        rate = Fraction(rate).limit_denominator(1001) if not isinstance(rate, Fraction) else rate
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        w, h = (int(v) for v in size_wh)
        self.size_wh, self._even = (w, h), (w + w % 2, h + h % 2)
        self.path, self.frames = path, 0
        options = {"movflags": "+faststart"} if path.suffix.lower() != ".mkv" else {}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(path), "w", options=options)
        except (OSError, av.error.FFmpegError) as exc:
            raise OutputError(f"cannot write the annotated video {path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self._even
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = 1 / rate
        self._stream.options = {"preset": preset, "crf": str(int(crf))}
        self._av = av

    @staticmethod
    def check(path: str | os.PathLike) -> Any:
        """Refuse, before any work, what would fail at the first frame; returns the ``av`` module.

        Raises:
            MissingDependencyError: PyAV is not installed.
            OutputError: a suffix other than .mp4, .m4v, .mov or .mkv.
        """
        av = _import_av()
        if av is None:
            raise MissingDependencyError("writing the annotated video (H.264) needs PyAV, which is not installed; "
                                         'install it with: pip install "facemtl[video]"')
        path = Path(path)
        if path.suffix.lower() not in H264_SUFFIXES:
            raise OutputError(f"cannot write the annotated video {path}: H.264 goes into "
                              f"{', '.join(H264_SUFFIXES)} files, not {path.suffix or 'a file without suffix'}")
        return av

    def write(self, rgb: np.ndarray) -> None:
        """Encode one RGB uint8 (H, W, 3) frame of the size given at opening."""
        h, w = rgb.shape[:2]
        if (w, h) != self.size_wh:
            raise ValueError(f"frame of {w}x{h} for a video of {self.size_wh[0]}x{self.size_wh[1]}")
        if self._even != (w, h):
            rgb = np.pad(rgb, ((0, self._even[1] - h), (0, self._even[0] - w), (0, 0)), mode="edge")
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        self._container.mux(self._stream.encode(frame))

    def close(self) -> None:
        """Flush the encoder and finalise the file (idempotent)."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

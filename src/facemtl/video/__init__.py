"""Video, stream and webcam analysis in real time on a CPU: every frame tracked, attributes refreshed per track.

The pipeline per frame of the source:

- **detection every k frames** (``detect_every``): the analyzer's detector on a reduced copy of the frame (longer
  side at most ``detect_max_side``, smaller still when every tracked face is large: see ``detect_min_face``),
  the boxes mapped back and passed through the analyzer's selection rules (``min_face``, ``max_faces``,
  ``largest_only``);
- **tracking on every frame** (:class:`facemtl.video.track.ByteTracker`): a Kalman filter predicts each face's
  box between detections; on detection frames tracks and detections are matched in two stages (high, then low
  detection scores) and a face that was hidden for a moment takes its old id back;
- **attributes refreshed per track** every ``refresh_every`` frames (and at once for a new track), on a
  detection frame so that the crop has the detector's landmarks: the faces due on that frame go through
  ``analyzer.predict_canonical`` in one batch, and each track's answers are smoothed (exponential moving
  average, :class:`AttributeSmoother`);
- :func:`analyze_video` writes a per-frame CSV and the annotated video as H.264 (yuv420p, plays in browsers) at
  the source frame rate, drawing and encoding in a background thread.

Files and stream URLs (``rtsp://``, ``http(s)://``) are read by PyAV with timeouts, camera indices by OpenCV
(:mod:`facemtl.video.io`). Frames are RGB uint8. torch is not needed.

The modules: ``config`` (:class:`VideoConfig`), ``sources`` (opening a source, frame times), ``detection``
(detecting on a reduced frame), ``track`` (the trackers), ``smoothing`` (:class:`AttributeSmoother`),
``pipeline`` (:func:`iter_video`), ``frames`` (what it yields), ``draw`` (drawn frames), ``output`` (the CSV and
the annotated video), ``analyze`` (:func:`analyze_video`), ``io`` (readers, the H.264 writer, threads).
"""
from __future__ import annotations

from .analyze import analyze_video
from .config import VideoConfig
from .frames import TrackedFace, VideoFrame, VideoStoppedError
from .output import video_csv_columns
from .pipeline import iter_video
from .smoothing import AttributeSmoother
from .track import ByteTracker, IouTracker

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

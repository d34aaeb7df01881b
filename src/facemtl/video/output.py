"""The outputs of a video run, written frame by frame: the per-frame CSV (:func:`video_csv_columns`) and the
annotated H.264 video (drawn and encoded in a background thread). Both register their closing on an ExitStack,
so that they are finalised on an error or Ctrl-C too."""
from __future__ import annotations

import csv
import os
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any

from .._rows import csv_columns, csv_rows
from .frames import VideoFrame
from .io import BackgroundWorker, H264Writer

__all__ = ["video_csv_columns"]


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


class _CsvRows:
    """The per-frame CSV, created (with its folder) and given its header at once; every frame's rows are flushed
    as they are written, so Ctrl-C loses nothing already done."""

    def __init__(self, path: Path, stack: ExitStack) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = stack.enter_context(open(path, "w", newline=""))
        self._rows = csv.DictWriter(self._file, video_csv_columns(), extrasaction="ignore")
        self._rows.writeheader()

    def write(self, frame: VideoFrame, source: str) -> None:
        self._rows.writerows(_frame_rows(frame, source))
        self._file.flush()


class _AnnotatedVideo:
    """The drawn frames as H.264 at the source rate divided by ``every_n`` (read from ``info`` at the first
    frame, 25 fps when unknown), opened at the first frame (its size); drawing and encoding run in a background
    thread. On the stack, the thread finishes every frame submitted before the file is finalised."""

    def __init__(self, path: str | os.PathLike, preset: str, crf: int, info: dict[str, Any],
                 stack: ExitStack) -> None:
        self._path, self._preset, self._crf, self._info, self._stack = path, preset, crf, info, stack
        self.writer: H264Writer | None = None  # None until the first frame
        self._worker: BackgroundWorker | None = None

    def _open(self, frame: VideoFrame) -> BackgroundWorker:
        rate = self._info.get("rate") or Fraction(25)
        writer = H264Writer(self._path, rate / self._info["every_n"], (frame.image.shape[1], frame.image.shape[0]),
                            self._preset, self._crf)
        self._stack.callback(writer.close)  # finalises the file, also on an error or Ctrl-C

        def encode(f: VideoFrame) -> None:
            writer.write(f.plot())

        worker = BackgroundWorker(encode)
        self._stack.callback(worker.close)  # runs before writer.close: every frame submitted is encoded
        self.writer, self._worker = writer, worker
        return worker

    def submit(self, frame: VideoFrame) -> None:
        worker = self._worker if self._worker is not None else self._open(frame)
        worker.submit(frame)

    def finish(self) -> None:
        """Wait for every frame submitted; raise an encoding error here rather than lose it."""
        if self._worker is not None:
            self._worker.close()

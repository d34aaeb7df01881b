"""One inference thread in front of the analyzer: concurrent requests are queued and batched across requests.

The model and detector are not safe to call from several threads at once (and Grad-CAM hooks the model), so
every call that touches them runs on this single thread. Images that wait together share forward passes.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np

from ..analyzer import ItemError

__all__ = ["InferenceWorker"]

log = logging.getLogger(__name__)

_STOP = object()


class InferenceWorker:
    """Runs analyzer work on one daemon thread; ``submit_images`` batches images of concurrent callers.

    Args:
        analyzer: a :class:`~facemtl.analyzer.FaceAnalyzer`.
        max_batch: most images taken from the queue for one ``analyze_many`` call.
    """

    def __init__(self, analyzer: Any, max_batch: int = 16) -> None:
        self.analyzer = analyzer
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches_run = 0  # for tests and /health: how many analyze_many calls served the images
        self.images_done = 0

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="facemtl-inference", daemon=True)
                self._thread.start()

    def submit_images(self, images: list[tuple[str, np.ndarray]]) -> list[Future]:
        """Queue decoded RGB images; each future gives an ImageResult (its ``source`` set) or an ItemError."""
        self._ensure_started()
        futures = []
        for name, arr in images:
            fut: Future = Future()
            self._queue.put(("image", (name, arr), fut))
            futures.append(fut)
        return futures

    def submit_call(self, fn: Callable[[], Any]) -> Future:
        """Queue any call that uses the model (e.g. Grad-CAM), to run alone on the inference thread."""
        self._ensure_started()
        fut: Future = Future()
        self._queue.put(("call", fn, fut))
        return fut

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items = [first]
            while len(items) < self.max_batch:  # take what is already waiting: that is the cross-request batch
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                items.append(nxt)
            images = [it for it in items if it[0] == "image"]
            if images:
                self._run_images(images)
            for _kind, fn, fut in (it for it in items if it[0] == "call"):
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                        fut.set_exception(exc)

    def _run_images(self, items: list) -> None:
        live = [it for it in items if it[2].set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = list(self.analyzer.analyze_many([arr for _k, (_n, arr), _f in live], errors="record"))
        except BaseException as exc:
            log.exception("inference failed for a batch of %d image(s)", len(live))
            for _k, _p, fut in live:
                fut.set_exception(exc)
            # exc's traceback holds this frame: its locals must not hold the futures and images (a reference cycle)
            items = live = _p = fut = None  # type: ignore[assignment]
            return
        self.batches_run += 1
        self.images_done += len(live)
        for (_k, (name, _a), fut), res in zip(live, results):
            if isinstance(res, ItemError):
                fut.set_result(ItemError(name, res.error))
            else:
                fut.set_result(replace(res, source=name))

"""What the routes share, as one explicit object on ``app.state.service``: the analyzer and its inference worker,
the limits (:class:`ServeSettings`), the concurrency slots and the budget of decoded pixels in flight."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ._worker import InferenceWorker
from .errors import ServeError
from .info import model_info

__all__ = ["PixelBudget", "RequestSlots", "ServeSettings", "ServiceState"]


@dataclass(frozen=True)
class ServeSettings:
    """The limits of :func:`facemtl.serve.app.create_app` (see there), checked: ConfigError when not positive."""

    max_upload_mb: float = 20
    max_pixels: int = 40_000_000
    max_batch: int = 16
    max_concurrency: int = 4
    body_timeout: float = 10
    max_batch_mb: float = 64
    max_pixels_in_flight: int | None = None

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_pixels <= 0 or self.max_batch < 1 or self.max_concurrency < 1:
            raise ConfigError("max_upload_mb, max_pixels, max_batch and max_concurrency must be positive, got "
                              f"{self.max_upload_mb}, {self.max_pixels}, {self.max_batch}, {self.max_concurrency}")
        if self.body_timeout <= 0 or self.max_batch_mb <= 0 or (
                self.max_pixels_in_flight is not None and self.max_pixels_in_flight < 1):
            raise ConfigError("body_timeout, max_batch_mb and max_pixels_in_flight must be positive, got "
                              f"{self.body_timeout}, {self.max_batch_mb}, {self.max_pixels_in_flight}")

    @property
    def max_bytes(self) -> int:
        """Largest image file, in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_batch_bytes(self) -> int:
        """Largest /predict/batch body (decoded images together), in bytes."""
        return int(self.max_batch_mb * 1024 * 1024)

    @property
    def pixels_capacity(self) -> int:
        """Most decoded pixels in flight: ``max_pixels_in_flight``, by default ``max_pixels * max_concurrency``."""
        return int(self.max_pixels_in_flight or self.max_pixels * self.max_concurrency)


class PixelBudget:
    """Decoded pixels in flight across all requests; ``hold(n)`` is 503 at once when they would pass ``capacity``.

    Args:
        capacity: most pixels decoded (or being decoded) at once, all requests together.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.used = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[PixelBudget]:
        if pixels > self.capacity:
            raise ServeError(413, f"the image(s) of this request total {pixels / 1e6:.1f} megapixels, above the "
                             f"{self.capacity / 1e6:.1f} the server decodes at once; send fewer or smaller images")
        with self._lock:
            if self.used + pixels > self.capacity:
                raise ServeError(503, f"server busy: {self.used / 1e6:.1f} of {self.capacity / 1e6:.1f} megapixels "
                                 "in flight; retry shortly", headers={"Retry-After": "1"})
            self.used += pixels
        try:
            yield self
        finally:
            with self._lock:
                self.used -= pixels


class RequestSlots:
    """Counts the requests in work; beyond ``capacity``, ``hold()`` is 503 at once instead of an ever longer queue.

    Args:
        capacity: most requests in work at once (``max_concurrency``).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._counts = {"active": 0, "served": 0, "rejected": 0}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self._counts["active"] >= self.capacity:
                self._counts["rejected"] += 1
                raise ServeError(503, f"server busy: {self.capacity} request(s) already in work; retry shortly",
                                 headers={"Retry-After": "1"})
            self._counts["active"] += 1
        try:
            yield
        finally:
            with self._lock:
                self._counts["active"] -= 1
                self._counts["served"] += 1

    def counters(self) -> dict[str, int]:
        """``active``, ``served`` and ``rejected`` requests, as /health reports them."""
        with self._lock:
            return dict(self._counts)


@dataclass
class ServiceState:
    """Everything a route needs, built once per app by :meth:`build` and kept on ``app.state.service``."""

    analyzer: Any
    settings: ServeSettings
    worker: InferenceWorker
    pixels: PixelBudget
    slots: RequestSlots
    info: dict[str, Any]  # what /info reports of the model (without the limits)
    limits: dict[str, Any]  # what /info reports as "limits"
    task_names: list[str]

    @classmethod
    def build(cls, analyzer: Any, settings: ServeSettings) -> ServiceState:
        pixels = PixelBudget(settings.pixels_capacity)
        worker = InferenceWorker(analyzer, max_batch=settings.max_batch)
        limits = {"max_upload_mb": settings.max_upload_mb, "max_pixels": settings.max_pixels,
                  "max_batch": settings.max_batch, "max_concurrency": settings.max_concurrency,
                  "body_timeout_s": settings.body_timeout, "max_batch_mb": settings.max_batch_mb,
                  "max_pixels_in_flight": pixels.capacity}
        return cls(analyzer=analyzer, settings=settings, worker=worker, pixels=pixels,
                   slots=RequestSlots(settings.max_concurrency), info=model_info(analyzer), limits=limits,
                   task_names=[t.name for t in analyzer.tasks])

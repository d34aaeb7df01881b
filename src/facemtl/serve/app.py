"""The HTTP service: ``create_app(analyzer)`` -> a FastAPI app with /predict, /predict/batch, /explain and a page.

Responses use the Python schema (``ImageResult.to_dict()``). Every error is JSON ``{"error": "..."}``:
400 unreadable/empty image, malformed body or a ``Host`` not allowed, 408 body not received in time, 413 too
large (bytes or pixels), 415 not an image content type, 422 missing, repeated or bad field, bad base64 or unknown
name, 503 overloaded (with ``Retry-After``). Inference runs on one worker thread that batches images of
concurrent requests (see :mod:`facemtl.serve._worker`).

Under hostile load: a request takes a concurrency slot only once its body is fully read, and reading a body has a
deadline (``body_timeout``), so idle or dribbling connections cannot hold the slots; a batch body has its own
total limit (``max_batch_mb``), refused from ``Content-Length`` before reading or as soon as a streamed body
passes it; decoded pixels in flight across all requests are bounded (``max_pixels_in_flight``).

Layout: :mod:`.state` (the limits and the state the routes share, on ``app.state.service``), :mod:`.parsing`
(reading bodies, images and fields), :mod:`.errors` (the error type and the JSON error handlers), :mod:`.schemas`
(OpenAPI bodies and response documents), :mod:`.security` (the ``Host`` check and security headers),
:mod:`.info` (/info) and :mod:`.routes` (the endpoints). FastAPI is imported inside :func:`create_app` (an
optional dependency): ``import facemtl.serve.app`` does not need it.
"""
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .._optional import require
from .._version import __version__
from .errors import ServeError, install_error_handlers
from .info import model_info as model_info
from .security import PAGE_CSP as PAGE_CSP
from .security import HostGuard
from .state import PixelBudget, ServeSettings, ServiceState

__all__ = ["PixelBudget", "ServeError", "create_app"]


def _description() -> str:
    """The OpenAPI description: the registered tasks, and where the result schema is defined."""
    from ..tasks import list_tasks

    return (f"Face attributes ({', '.join(list_tasks())}) for every face in a photo. "
            "Results use the same schema as `ImageResult.to_dict()` in Python and `facemtl predict --json`.")


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> AsyncIterator[None]:  # pragma: no cover - runs under uvicorn
    yield
    app.state.service.worker.stop()


def _app_class() -> Callable[..., Any]:
    """FastAPI, or its offline variant: Swagger UI / ReDoc assets served from the package, not a CDN (/docs works
    offline)."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:  # pragma: no cover - the serve extra brings it
        from fastapi import FastAPI

        return FastAPI
    return FastAPIOffline


def create_app(analyzer: Any, max_upload_mb: float = 20, max_pixels: int = 40_000_000, max_batch: int = 16,
               max_concurrency: int = 4, body_timeout: float = 10, max_batch_mb: float = 64,
               max_pixels_in_flight: int | None = None, allowed_hosts: Sequence[str] | None = None) -> Any:
    """Build the FastAPI app serving ``analyzer``.

    Args:
        analyzer: a :class:`~facemtl.analyzer.FaceAnalyzer`.
        max_upload_mb: largest accepted image file, in megabytes (base64 counts its decoded size).
        max_pixels: largest accepted image, in pixels (checked from the header, before decoding).
        max_batch: most images per /predict/batch request, and per forward-pass group across requests.
        max_concurrency: requests processed or waiting at once; more get 503 with ``Retry-After``. A request
            counts once its body is read.
        body_timeout: seconds to receive a whole request body; slower (or stalled) bodies get 408.
        max_batch_mb: largest /predict/batch body, in megabytes, all images together (base64 counts its decoded
            size); refused from ``Content-Length`` before reading, or as soon as a streamed body passes it.
        max_pixels_in_flight: most decoded pixels held at once, all requests together (None:
            ``max_pixels * max_concurrency``); a request over what is left gets 503, one over the whole 413.
        allowed_hosts: ``Host`` header names served (port ignored; "*.example.com" for sub-domains); others
            get 400. None or "*": any (``facemtl serve`` defaults to the loopback names when bound to loopback).

    Returns:
        A FastAPI application: ``GET /`` (page), ``/health``, ``/info``, ``POST /predict``,
        ``/predict/batch``, ``/explain``; OpenAPI at ``/docs`` and ``/openapi.json``.

    Raises:
        MissingDependencyError: FastAPI (or python-multipart) is not installed: ``pip install "facemtl[serve]"``.

    Example:
        >>> app = create_app(FaceAnalyzer.from_checkpoint(), max_upload_mb=10)
        >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)
    """
    require("fastapi", extra="serve")
    require("multipart", extra="serve", package="python-multipart")
    from .routes import include_routes

    settings = ServeSettings(max_upload_mb=max_upload_mb, max_pixels=max_pixels, max_batch=max_batch,
                             max_concurrency=max_concurrency, body_timeout=body_timeout, max_batch_mb=max_batch_mb,
                             max_pixels_in_flight=max_pixels_in_flight)
    if isinstance(allowed_hosts, str):
        allowed_hosts = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
    service = ServiceState.build(analyzer, settings)
    app = _app_class()(title="facemtl", version=__version__, lifespan=_lifespan, description=_description())
    app.state.service = service
    app.state.worker = service.worker  # the parts tests and tools look at, under their own names
    app.state.pixels = service.pixels
    app.add_middleware(HostGuard, allowed=allowed_hosts)
    install_error_handlers(app)
    include_routes(app)
    return app

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

Note: no ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at runtime, and
FastAPI itself is imported inside :func:`create_app` (an optional dependency).
"""
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._optional import require
from .._version import __version__
from ..analyzer import ItemError
from ..errors import ConfigError, FacemtlError, InvalidInputError, UnknownNameError
from ..image import load_image, too_many_pixels_message
from ._worker import InferenceWorker

__all__ = ["PixelBudget", "ServeError", "create_app"]

log = logging.getLogger(__name__)

# Content types accepted as an image file; others get 415. Empty = the client did not say (decode and see).
_IMAGE_TYPES_OK = ("", "application/octet-stream")
_JSON_SLACK = 64 * 1024  # JSON framing around the base64 text
# The web page is self-contained (inline style and script, same-origin fetch, blob: Grad-CAM images).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))


class ServeError(Exception):
    """An HTTP error with a status and a message; rendered as ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _status_for(exc: Exception) -> int:
    if isinstance(exc, UnknownNameError):
        return 422
    if isinstance(exc, InvalidInputError):
        return 400
    return 400 if isinstance(exc, FacemtlError) else 500


def _image_pixels(data: bytes, name: str, max_bytes: int, max_pixels: int) -> int:
    """Width x height from the image header alone; raises ServeError 400 (unreadable/empty) or 413 (over a limit)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ServeError(400, f"{name}: empty upload: no image data")
    if len(data) > max_bytes:
        raise ServeError(413, f"{name}: {_mb(len(data))} is above the upload limit of {_mb(max_bytes)}")
    try:  # the header alone gives the size: refuse huge images before decoding them
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ServeError(400, f"{name}: not a readable image (JPEG, PNG, WebP, BMP, TIFF, GIF...)") from None
    except Image.DecompressionBombError as exc:
        raise ServeError(413, f"{name}: {too_many_pixels_message(exc, max_pixels)}") from None
    if w * h > max_pixels:
        raise ServeError(413, f"{name}: {w}x{h} = {w * h / 1e6:.1f} megapixels is above the limit of "
                         f"{max_pixels / 1e6:.1f}; downscale it")
    return w * h


def _decode_image(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Bytes -> RGB array; raises ServeError 400 (unreadable/empty) or 413 (bytes or pixels over the limit)."""
    _image_pixels(data, name, max_bytes, max_pixels)
    try:
        return load_image(data, max_pixels=None)
    except InvalidInputError as exc:
        raise ServeError(400, f"{name}: {str(exc).replace('<bytes>', 'upload')}") from None


def _mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


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
    def hold(self, pixels: int):
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


def _face_index(value: Any) -> int:
    """The ``face`` field (JSON int or form string) -> a non-negative int; ServeError 422 otherwise."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():  # 2.0 is 2; 1e400 (inf) and NaN are not integers
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6:
        return value
    raise ServeError(422, f"face must be a non-negative integer index, got {str(value)[:40]!r}")


def _checkpoint_label(path: Any) -> str | None:
    """What /info shows of the checkpoint: its file name, or "bundled default"; never the server's folders."""
    if not path:
        return None
    try:
        from .. import weights

        for name in weights.list_weights():
            if Path(str(path)).resolve() == weights.get_weights(name).path(verify=False).resolve():
                return "bundled default" if name == weights.DEFAULT_NAME else f"bundled {name}"
    except Exception:  # noqa: BLE001 - no bundled file: just the name
        pass
    return Path(str(path)).name


def _host_name(host: str) -> str:
    """A Host header -> the lower-case name without port ("[::1]:8000" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Guard:
    """ASGI middleware: 400 for a ``Host`` not in ``allowed`` (None or "*": any), and security headers."""

    def __init__(self, app: Any, allowed: Sequence[str] | None) -> None:
        self.app = app
        names = [h.strip().lower().strip("[]") for h in (allowed or ["*"]) if h.strip()]
        self.any = "*" in names
        self.exact = {h for h in names if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in names if h.startswith("*."))

    def allowed(self, host: str) -> bool:
        name = _host_name(host)
        return self.any or name in self.exact or (bool(name) and name.endswith(self.suffixes))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), "")

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _v in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        if not self.allowed(host):
            body = json.dumps({"error": f"Host {host[:100]!r} is not allowed here (see --allowed-hosts)"}).encode()
            await send_secured({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send_secured({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secured)


def _b64(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise ServeError(422, f"{field} must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:  # a data URL, as FileReader.readAsDataURL gives
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServeError(422, f"{field} is not valid base64: {exc}") from None


def model_info(analyzer: Any) -> dict[str, Any]:
    """What /info reports: version, backbone, input size, detector, tasks with their labels."""
    from ..tasks import AGE_GROUPS

    info = dict(getattr(analyzer, "info", {}) or {})
    model = analyzer.model
    tasks = []
    for spec in analyzer.tasks:
        t: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
        if spec.kind == "classification":
            t["labels"] = list(spec.labels)
        else:
            t["value_range"] = list(spec.value_range) if spec.value_range else None
            if spec.name == "age":
                t["labels"] = [name for name, _lo in AGE_GROUPS]  # the age group names in `label`
        tasks.append(t)
    det = analyzer.detector
    return {
        "facemtl_version": __version__,
        "backbone": getattr(getattr(model, "config", None), "backbone", None) or info.get("backbone"),
        "input_size": analyzer.input_size,
        "detector": getattr(det, "name", type(det).__name__),
        "tasks": tasks,
        "checkpoint": _checkpoint_label(info.get("checkpoint")),
        "backend": getattr(model, "backend", None),
        "flip_tta": analyzer.options.flip_tta,
        "explain": _explainable(analyzer),
    }


def _explainable(analyzer: Any) -> bool:
    """Whether /explain can run: PyTorch is installed and the model is a PyTorch one with a cam layer, or the
    bundled default (explained through its PyTorch checkpoint, see :func:`facemtl.explain.face.explain_net`)."""
    from .._optional import available

    if not available("torch"):
        return False
    net = getattr(analyzer.model, "net", None)
    if net is not None:
        return bool(getattr(net, "cam_layer", None))
    from .. import weights

    return analyzer.info.get("checkpoint") == str(weights.get_weights().path(verify=False))


_TASKS_FIELD = {"type": "string", "description": "comma-separated tasks to answer, as --tasks (default: all); "
                                                "also ?tasks=age,gender"}
_PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"},
                                                          "tasks": _TASKS_FIELD}}},
        "application/json": {"schema": {"type": "object", "required": ["image_base64"],
                                        "properties": {"image_base64": {"type": "string"},
                                                       "name": {"type": "string"}, "tasks": _TASKS_FIELD}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
_BATCH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}, "tasks": _TASKS_FIELD}}},
        "application/json": {"schema": {"type": "object", "required": ["images_base64"], "properties": {
            "images_base64": {"type": "array", "items": {"type": "string"}},
            "names": {"type": "array", "items": {"type": "string"}}, "tasks": _TASKS_FIELD}}},
    },
}
_EXPLAIN_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}, "face": {"type": "integer", "default": 0},
            "tasks": {"type": "string", "description": "comma-separated; default: all"}}}},
        "application/json": {"schema": {"type": "object", "required": ["image_base64"], "properties": {
            "image_base64": {"type": "string"}, "face": {"type": "integer", "default": 0},
            "tasks": {"type": "string"}}}},
    },
}
_ERR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}}
_ERRORS = {str(s): {"description": d, **_ERR} for s, d in (
    (400, "unreadable, truncated or empty image, malformed body"), (408, "request body not received in time"),
    (413, "upload or image too large"),
    (415, "not an image content type"), (422, "missing, repeated or bad field, bad base64 or unknown name"),
    (503, "overloaded; retry after Retry-After seconds"))}


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
    fastapi = require("fastapi", extra="serve")
    require("multipart", extra="serve", package="python-multipart")
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if max_upload_mb <= 0 or max_pixels <= 0 or max_batch < 1 or max_concurrency < 1:
        raise ConfigError("max_upload_mb, max_pixels, max_batch and max_concurrency must be positive, got "
                         f"{max_upload_mb}, {max_pixels}, {max_batch}, {max_concurrency}")
    if body_timeout <= 0 or max_batch_mb <= 0 or (max_pixels_in_flight is not None and max_pixels_in_flight < 1):
        raise ConfigError("body_timeout, max_batch_mb and max_pixels_in_flight must be positive, got "
                         f"{body_timeout}, {max_batch_mb}, {max_pixels_in_flight}")
    if isinstance(allowed_hosts, str):
        allowed_hosts = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
    max_bytes = int(max_upload_mb * 1024 * 1024)
    max_batch_bytes = int(max_batch_mb * 1024 * 1024)
    pixels = PixelBudget(max_pixels_in_flight or max_pixels * max_concurrency)
    worker = InferenceWorker(analyzer, max_batch=max_batch)
    state = {"active": 0, "served": 0, "rejected": 0}
    state_lock = threading.Lock()
    info = model_info(analyzer)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any):  # pragma: no cover - runs under uvicorn
        yield
        worker.stop()

    try:  # Swagger UI / ReDoc assets served from the package, not a CDN: /docs works offline
        from fastapi_offline import FastAPIOffline as App
    except ImportError:  # pragma: no cover - the serve extra brings it
        App = FastAPI
    app = App(title="facemtl", version=__version__, lifespan=lifespan,
                  description="Face attributes (age, gender, emotion, ethnicity) for every face in a photo. "
                  "Results use the same schema as `ImageResult.to_dict()` in Python and `facemtl predict --json`.")
    app.state.worker = worker
    app.state.pixels = pixels
    app.state.limits = {"max_upload_mb": max_upload_mb, "max_pixels": max_pixels, "max_batch": max_batch,
                        "max_concurrency": max_concurrency, "body_timeout_s": body_timeout,
                        "max_batch_mb": max_batch_mb, "max_pixels_in_flight": pixels.capacity}
    app.add_middleware(_Guard, allowed=allowed_hosts)

    # -- errors: always {"error": "..."} -------------------------------------------------------------
    @app.exception_handler(ServeError)
    async def _serve_error(_req: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(FacemtlError)
    async def _facemtl_error(_req: Request, exc: FacemtlError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=_status_for(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "; ".join(str(e.get("msg")) for e in exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - a bug, logged
        log.exception("unexpected error")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

    # -- request reading ----------------------------------------------------------------------------
    class _Slot:
        """Counts the requests in work; beyond max_concurrency, 503 at once instead of an ever longer queue."""

        def __enter__(self) -> "_Slot":  # noqa: PYI034 - a local helper class
            with state_lock:
                if state["active"] >= max_concurrency:
                    state["rejected"] += 1
                    raise ServeError(503, f"server busy: {max_concurrency} request(s) already in work; retry "
                                     "shortly", headers={"Retry-After": "1"})
                state["active"] += 1
            return self

        def __exit__(self, *exc: object) -> None:
            with state_lock:
                state["active"] -= 1
                state["served"] += 1

    async def read_body(request: Request, many: bool) -> bytes:
        """The whole body, within its byte limit (413) and ``body_timeout`` (408); no slot is held meanwhile."""
        from starlette.requests import ClientDisconnect

        scale = 4 / 3 if media_type(request) == "application/json" else 1  # base64 inflates by 4/3
        limit = int((max_batch_bytes if many else max_bytes) * scale) + 16 + _JSON_SLACK
        what = f"{max_batch_mb:g} MB per batch, all images together" if many else f"{max_upload_mb:g} MB per image"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ServeError(413, f"request body of {_mb(int(declared))} is above the limit ({what})",
                             headers={"Connection": "close"})
        chunks, size = [], 0

        async def collect() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ServeError(413, f"request body is above the limit ({what})", headers={"Connection": "close"})
                chunks.append(chunk)

        try:
            await asyncio.wait_for(collect(), body_timeout)
        except asyncio.TimeoutError:
            raise ServeError(408, f"request body not received within {body_timeout:g} s ({size} bytes came)",
                             headers={"Connection": "close"}) from None
        except ClientDisconnect:
            raise ServeError(400, "client disconnected before the body was complete") from None
        return b"".join(chunks)

    def replay(request: Request, body: bytes) -> Request:
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return Request(request.scope, receive)

    def media_type(request: Request) -> str:
        return request.headers.get("content-type", "").split(";")[0].strip().lower()

    def check_part_type(ctype: str | None, name: str) -> None:
        ctype = (ctype or "").split(";")[0].strip().lower()
        if not (ctype in _IMAGE_TYPES_OK or ctype.startswith("image/")):
            raise ServeError(415, f"{name}: content type {ctype!r} is not an image; send image/jpeg, image/png...")

    async def parse_json(body: bytes) -> Any:
        if not body:
            raise ServeError(400, "empty request body: send a multipart file or a JSON object")
        try:
            obj = json.loads(body)
        except RecursionError:
            raise ServeError(400, "request body is not valid JSON: nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers past Python's digit limit
            raise ServeError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(obj, dict):
            raise ServeError(422, f"JSON body must be an object, got {type(obj).__name__}")
        return obj

    async def read_images(request: Request, body: bytes, many: bool) -> tuple[list[tuple[str, Any]], dict]:
        """Parse a body read by read_body -> [(name, bytes | ServeError)], extra fields. Single mode raises
        instead of recording errors."""
        mtype = media_type(request)
        field = "files" if many else "file"
        if mtype == "multipart/form-data":
            if not body:
                raise ServeError(400, "empty request body: no multipart data")
            try:
                form = await replay(request, body).form(max_files=max_batch + 1, max_fields=100)
            except Exception as exc:  # noqa: BLE001 - python-multipart and Starlette raise several kinds
                raise ServeError(400, f"malformed multipart body: {exc}") from None
            uploads = [u for u in form.getlist(field) if hasattr(u, "read")]
            if not uploads:
                raise ServeError(422, f"missing form field {field!r}: upload the image(s) as {field}=@photo.jpg")
            if not many and len(uploads) > 1:
                raise ServeError(422, f"{len(uploads)} {field!r} parts: send one image here (several: "
                                 "/predict/batch with field 'files')")
            extra = {k: v for k, v in form.items() if isinstance(v, str)}
            items: list[tuple[str, Any]] = []
            for i, up in enumerate(uploads):
                name = up.filename or f"{field}[{i}]"
                try:
                    check_part_type(up.content_type, name)
                    items.append((name, await up.read()))
                except ServeError as exc:
                    if not many:
                        raise
                    items.append((name, exc))
            return items, extra
        if mtype == "application/json":
            obj = await parse_json(body)
            key = "images_base64" if many else "image_base64"
            if key not in obj:
                raise ServeError(422, f"missing JSON field {key!r}" + (" (a list of base64 strings)" if many else
                                                                       " (the image file as base64)"))
            extra = {k: v for k, v in obj.items() if k not in (key, "names")}
            if not many:
                return [(str(obj.get("name") or "<base64>"), _b64(obj[key], key))], extra
            values = obj[key]
            if not isinstance(values, list):
                raise ServeError(422, f"{key} must be a list of base64 strings, got {type(values).__name__}")
            names = obj.get("names") if isinstance(obj.get("names"), list) else []
            out: list[tuple[str, Any]] = []
            for i, v in enumerate(values):
                name = str(names[i]) if i < len(names) else f"{key}[{i}]"
                try:
                    out.append((name, _b64(v, f"{key}[{i}]")))
                except ServeError as exc:
                    out.append((name, exc))
            return out, extra
        if not many and (mtype.startswith("image/") or mtype == "application/octet-stream"):
            return [("<upload>", body)], {}
        if not body and not mtype:
            raise ServeError(400, "empty request body: send a multipart file or a JSON object")
        raise ServeError(415, f"unsupported content type {mtype or '(none)'!r}; send multipart/form-data (field "
                         f"{field!r}), application/json ({'images_base64' if many else 'image_base64'})"
                         + ("" if many else " or an image/* body"))

    task_names = [t.name for t in analyzer.tasks]

    def requested_tasks(request: Request, extra: dict) -> list[str] | None:
        """The ``tasks`` field (form, JSON or query string; comma-separated or a JSON list), as for the CLI's
        ``--tasks``; None = all. An unknown name is a 422 naming the valid ones."""
        value = extra.get("tasks", request.query_params.get("tasks"))
        if value is None or value == "":
            return None
        if isinstance(value, str):
            names = [t.strip() for t in value.split(",") if t.strip()]
        elif isinstance(value, list) and all(isinstance(t, str) for t in value):
            names = [t.strip() for t in value]
        else:
            raise ServeError(422, "tasks must be a comma-separated string or a list of task names")
        bad = [t for t in names if t not in task_names]
        if bad or not names:
            raise ServeError(422, f"unknown task {(bad or [''])[0]!r} in 'tasks'; valid: {', '.join(task_names)}")
        return names

    def only_tasks(doc: dict, tasks: list[str] | None) -> dict:
        """An ImageResult dict with just the requested tasks' answers in each face."""
        if tasks is None or "faces" not in doc:
            return doc
        drop = set(task_names) - set(tasks)
        return {**doc, "faces": [{k: v for k, v in f.items() if k not in drop} for f in doc["faces"]]}

    async def analyze(items: list[tuple[str, np.ndarray]], load_ms: list[float]) -> list:
        futures = worker.submit_images(items)
        out = []
        for f, ms in zip(futures, load_ms):
            res = await asyncio.wrap_future(f)
            if not isinstance(res, ItemError):  # the image was decoded here, not in the analyzer
                res = replace(res, timings_ms={**res.timings_ms, "load": ms})
            out.append(res)
        return out

    def decode_timed(data: bytes, name: str) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        arr = _decode_image(data, name, max_bytes, max_pixels)
        return arr, (time.perf_counter() - t0) * 1e3

    def header_pixels(items: list[tuple[str, Any]]) -> list[Any]:
        """Per item: pixels from its header, or the ServeError it gave (already one, unreadable, too large)."""
        out: list[Any] = []
        for name, data in items:
            try:
                out.append(data if isinstance(data, ServeError) else _image_pixels(data, name, max_bytes, max_pixels))
            except ServeError as exc:
                out.append(exc)
        return out

    # -- endpoints ----------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files(__package__).joinpath("static/index.html").read_text("utf-8"),
                            headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/health", summary="Liveness and counters")
    def health() -> dict:
        with state_lock:
            counters = dict(state)
        return {"status": "ok", **counters, "batches_run": worker.batches_run, "images_done": worker.images_done}

    @app.get("/info", summary="Model, tasks with labels, detector and limits")
    def get_info() -> dict:
        return {**info, "limits": app.state.limits}

    @app.post("/predict", summary="Every face in one image", openapi_extra={"requestBody": _PREDICT_BODY},
              responses=_ERRORS)
    async def predict(request: Request) -> JSONResponse:
        body = await read_body(request, many=False)
        with _Slot():
            ((name, data),), extra = await read_images(request, body, many=False)
            tasks = requested_tasks(request, extra)
            del body
            (px,) = header_pixels([(name, data)])
            if isinstance(px, ServeError):
                raise px
            with pixels.hold(px):
                arr, load_ms = await run_in_threadpool(decode_timed, data, name)
                (res,) = await analyze([(name, arr)], [load_ms])
                del arr
        if isinstance(res, ItemError):
            raise ServeError(400, f"{res.source}: {res.error}")
        return JSONResponse(only_tasks(res.to_dict(), tasks))

    @app.post("/predict/batch", summary="Every face in several images; per-image errors are recorded",
              openapi_extra={"requestBody": _BATCH_BODY}, responses=_ERRORS)
    async def predict_batch(request: Request) -> JSONResponse:
        body = await read_body(request, many=True)
        with _Slot():
            items, extra = await read_images(request, body, many=True)
            tasks = requested_tasks(request, extra)
            del body
            if not items:
                raise ServeError(422, "no images in the request")
            if len(items) > max_batch:
                raise ServeError(413, f"{len(items)} images in one request; the limit is {max_batch}")
            sizes = await run_in_threadpool(header_pixels, items)
            items = [(name, px if isinstance(px, ServeError) else data) for (name, data), px in zip(items, sizes)]

            def decode_all() -> list:
                out = []
                for name, data in items:
                    try:
                        out.append(data if isinstance(data, ServeError) else decode_timed(data, name))
                    except ServeError as exc:
                        out.append(exc)
                return out

            with pixels.hold(sum(px for px in sizes if not isinstance(px, ServeError))):
                decoded = await run_in_threadpool(decode_all)
                good = [(name, d) for (name, _d), d in zip(items, decoded) if not isinstance(d, ServeError)]
                results = iter(await analyze([(n, d[0]) for n, d in good], [d[1] for _n, d in good]) if good else ())
                del good  # the decoded arrays go with the pixels held; only the errors are needed below
                decoded = [d if isinstance(d, ServeError) else None for d in decoded]
        out = []
        for (name, _d), arr in zip(items, decoded):
            res = {"source": name, "error": arr.message} if isinstance(arr, ServeError) else next(results)
            if isinstance(res, ItemError):
                res = {"source": res.source, "error": res.error}
            out.append(res if isinstance(res, dict) else only_tasks(res.to_dict(), tasks))
        return JSONResponse(out)

    @app.post("/explain", summary="Grad-CAM panel (PNG) for one face", openapi_extra={"requestBody": _EXPLAIN_BODY},
              responses={"200": {"content": {"image/png": {}}, "description": "the panel"}, **_ERRORS})
    async def explain(request: Request) -> Response:
        if not _explainable(analyzer):
            raise ServeError(422, "this model cannot be explained (Grad-CAM needs PyTorch, pip install "
                                  "\"facemtl[explain]\", and a PyTorch checkpoint or the bundled default model)")
        body = await read_body(request, many=False)
        with _Slot():
            items, extra = await read_images(request, body, many=False)
            del body
            (name, data), = items
            face = _face_index(extra.get("face", 0))
            tasks = extra.get("tasks") or None
            if tasks is not None and not (isinstance(tasks, str) or (isinstance(tasks, list) and all(
                    isinstance(t, str) for t in tasks))):
                raise ServeError(422, "tasks must be a comma-separated string or a list of task names")
            (px,) = header_pixels([(name, data)])
            if isinstance(px, ServeError):
                raise px
            with pixels.hold(px):
                arr = await run_in_threadpool(_decode_image, data, name, max_bytes, max_pixels)

                def run() -> bytes:
                    from PIL import Image

                    from ..explain import explain_face, render_panel

                    panel = render_panel(explain_face(analyzer, arr, face_index=face, tasks=tasks))
                    buf = io.BytesIO()
                    Image.fromarray(panel).save(buf, format="PNG")
                    return buf.getvalue()

                png = await asyncio.wrap_future(worker.submit_call(run))
        return Response(png, media_type="image/png")

    _ = fastapi  # imported through require() so a missing package names the extra
    return app

"""The endpoints, which :func:`include_routes` registers on the app: ``GET /``, ``/health``, ``/info``,
``POST /predict``, ``/predict/batch``, ``/explain``. Each reads what it shares with the others from
``request.app.state.service`` (a :class:`~facemtl.serve.state.ServiceState`).

They are added to the app itself, not through an ``APIRouter``: recent FastAPI versions keep an included router
as one nested entry of ``app.routes``, and the app lists its endpoints as it always has.

Imported by ``create_app`` only, after it has checked that FastAPI is installed. No ``from __future__ import
annotations`` here: FastAPI reads the handlers' annotations at runtime.
"""
import asyncio
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib import resources
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..analyzer import ItemError
from .errors import ServeError
from .parsing import (
    decode_each,
    decode_image,
    decode_timed,
    explain_tasks,
    face_index,
    header_pixels,
    image_pixels,
    read_body,
    read_images,
    requested_tasks,
)
from .schemas import (
    BATCH_BODY,
    ERROR_RESPONSES,
    EXPLAIN_BODY,
    EXPLAIN_RESPONSES,
    PREDICT_BODY,
    batch_item_error,
    only_tasks,
)
from .security import PAGE_CSP
from .state import ServiceState

__all__ = ["include_routes"]

_ROUTES: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []  # (path, endpoint, add_api_route options)


def _route(path: str, method: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Like ``@app.get`` / ``@app.post``, for :func:`include_routes` to register on each app."""
    def record(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        _ROUTES.append((path, endpoint, {"methods": [method], **options}))
        return endpoint

    return record


def include_routes(app: Any) -> None:
    """Register the endpoints on ``app``, in order."""
    for path, endpoint, options in _ROUTES:
        app.add_api_route(path, endpoint, **options)


def _service(request: Request) -> ServiceState:
    return request.app.state.service


async def _analyze(service: ServiceState, items: list[tuple[str, np.ndarray]], load_ms: list[float]) -> list:
    """Results (ImageResult or ItemError) of decoded images, from the inference worker; ``load`` timings added."""
    futures = service.worker.submit_images(items)
    out = []
    for f, ms in zip(futures, load_ms):
        res = await asyncio.wrap_future(f)
        if not isinstance(res, ItemError):  # the image was decoded here, not in the analyzer
            res = replace(res, timings_ms={**res.timings_ms, "load": ms})
        out.append(res)
    return out


@functools.cache
def _page_html() -> str:
    """The web page, read from the package once."""
    return resources.files(__package__).joinpath("static/index.html").read_text("utf-8")


@_route("/", "GET", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(_page_html(), headers={"Content-Security-Policy": PAGE_CSP})


@_route("/health", "GET", summary="Liveness and counters")
def health(request: Request) -> dict:
    service = _service(request)
    return {"status": "ok", **service.slots.counters(), "batches_run": service.worker.batches_run,
            "images_done": service.worker.images_done}


@_route("/info", "GET", summary="Model, tasks with labels, detector and limits")
def get_info(request: Request) -> dict:
    service = _service(request)
    return {**service.info, "limits": service.limits}


@_route("/predict", "POST", summary="Every face in one image", openapi_extra={"requestBody": PREDICT_BODY},
        responses=ERROR_RESPONSES)
async def predict(request: Request) -> JSONResponse:
    service = _service(request)
    settings = service.settings
    body = await read_body(request, many=False, settings=settings)
    with service.slots.hold():
        ((name, data),), extra = await read_images(request, body, many=False, max_batch=settings.max_batch)
        tasks = requested_tasks(request, extra, service.task_names)
        del body
        px = image_pixels(data, name, settings.max_bytes, settings.max_pixels)
        with service.pixels.hold(px):
            arr, load_ms = await run_in_threadpool(decode_timed, data, name, settings)
            (res,) = await _analyze(service, [(name, arr)], [load_ms])
            del arr
    if isinstance(res, ItemError):
        raise ServeError(400, f"{res.source}: {res.error}")
    return JSONResponse(only_tasks(res.to_dict(), tasks, service.task_names))


@_route("/predict/batch", "POST", summary="Every face in several images; per-image errors are recorded",
        openapi_extra={"requestBody": BATCH_BODY}, responses=ERROR_RESPONSES)
async def predict_batch(request: Request) -> JSONResponse:
    service = _service(request)
    settings = service.settings
    body = await read_body(request, many=True, settings=settings)
    with service.slots.hold():
        items, extra = await read_images(request, body, many=True, max_batch=settings.max_batch)
        tasks = requested_tasks(request, extra, service.task_names)
        del body
        if not items:
            raise ServeError(422, "no images in the request")
        if len(items) > settings.max_batch:
            raise ServeError(413, f"{len(items)} images in one request; the limit is {settings.max_batch}")
        sizes = await run_in_threadpool(header_pixels, items, settings)
        items = [(name, px if isinstance(px, ServeError) else data) for (name, data), px in zip(items, sizes)]
        with service.pixels.hold(sum(px for px in sizes if not isinstance(px, ServeError))):
            decoded = await run_in_threadpool(decode_each, items, settings)
            good = [(name, d) for (name, _d), d in zip(items, decoded) if not isinstance(d, ServeError)]
            results = iter(await _analyze(service, [(n, d[0]) for n, d in good], [d[1] for _n, d in good])
                           if good else ())
            del good  # the decoded arrays go with the pixels held; only the errors are needed below
            decoded = [d if isinstance(d, ServeError) else None for d in decoded]
    return JSONResponse(_batch_documents(items, decoded, results, tasks, service.task_names))


def _batch_documents(items: list[tuple[str, Any]], errors: list[ServeError | None], results: Iterator[Any],
                     tasks: list[str] | None, task_names: list[str]) -> list[dict]:
    """One document per image, in order: its ServeError, its ItemError or its (task-filtered) ImageResult."""
    out = []
    for (name, _d), err in zip(items, errors):
        res = batch_item_error(name, err.message) if isinstance(err, ServeError) else next(results)
        if isinstance(res, ItemError):
            res = batch_item_error(res.source, res.error)
        out.append(res if isinstance(res, dict) else only_tasks(res.to_dict(), tasks, task_names))
    return out


def _render_explanation(analyzer: Any, arr: np.ndarray, face: int, tasks: Any) -> bytes:
    """The Grad-CAM panel of face ``face`` as PNG bytes (runs on the inference thread)."""
    from PIL import Image

    from ..explain import explain_face, render_panel

    panel = render_panel(explain_face(analyzer, arr, face_index=face, tasks=tasks))
    buf = io.BytesIO()
    Image.fromarray(panel).save(buf, format="PNG")
    return buf.getvalue()


@_route("/explain", "POST", summary="Grad-CAM panel (PNG) for one face",
        openapi_extra={"requestBody": EXPLAIN_BODY}, responses=EXPLAIN_RESPONSES)
async def explain(request: Request) -> Response:
    service = _service(request)
    settings = service.settings
    if not service.info["explain"]:  # decided once, when the service was built (model_info)
        raise ServeError(422, "this model cannot be explained (Grad-CAM needs PyTorch, pip install "
                              "\"facemtl[explain]\", and a PyTorch checkpoint or the bundled default model)")
    body = await read_body(request, many=False, settings=settings)
    with service.slots.hold():
        items, extra = await read_images(request, body, many=False, max_batch=settings.max_batch)
        del body
        (name, data), = items
        face = face_index(extra.get("face", 0))
        tasks = explain_tasks(extra)
        px = image_pixels(data, name, settings.max_bytes, settings.max_pixels)
        with service.pixels.hold(px):
            arr = await run_in_threadpool(decode_image, data, name, settings.max_bytes, settings.max_pixels)
            run = functools.partial(_render_explanation, service.analyzer, arr, face, tasks)
            png = await asyncio.wrap_future(service.worker.submit_call(run))
    return Response(png, media_type="image/png")

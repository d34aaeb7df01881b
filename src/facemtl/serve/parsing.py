"""Reading requests: the body within its limits and deadline, the image(s) from multipart / JSON base64 / a raw
image body, the ``tasks`` and ``face`` fields, and each image's size (checked from its header before decoding).

Every problem is a :class:`~facemtl.serve.errors.ServeError` with its status. Starlette is imported only inside
the functions that need it (FastAPI is an optional dependency).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError
from ..image import load_image, too_many_pixels_message
from .errors import ServeError

if TYPE_CHECKING:
    from starlette.requests import Request

    from .state import ServeSettings

__all__ = ["b64", "check_part_type", "decode_each", "decode_image", "decode_timed", "explain_tasks", "face_index",
           "header_pixels", "image_pixels", "mb", "media_type", "parse_json", "read_body", "read_images",
           "replay", "requested_tasks"]

# Content types accepted as an image file; others get 415. Empty = the client did not say (decode and see).
_IMAGE_TYPES_OK = ("", "application/octet-stream")
_JSON_SLACK = 64 * 1024  # JSON framing around the base64 text
_TASKS_TYPE = "tasks must be a comma-separated string or a list of task names"
_EMPTY_BODY = "empty request body: send a multipart file or a JSON object"

Items = list[tuple[str, Any]]  # (name, bytes | the ServeError that image gave)


def mb(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


# -- images: size from the header, then decoding ---------------------------------------------------------------
def image_pixels(data: bytes, name: str, max_bytes: int, max_pixels: int) -> int:
    """Width x height from the image header alone; raises ServeError 400 (unreadable/empty) or 413 (over a limit)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ServeError(400, f"{name}: empty upload: no image data")
    if len(data) > max_bytes:
        raise ServeError(413, f"{name}: {mb(len(data))} is above the upload limit of {mb(max_bytes)}")
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


def decode_image(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Bytes -> RGB array; raises ServeError 400 (unreadable/empty) or 413 (bytes or pixels over the limit)."""
    image_pixels(data, name, max_bytes, max_pixels)
    try:
        return load_image(data, max_pixels=None)
    except InvalidInputError as exc:
        raise ServeError(400, f"{name}: {str(exc).replace('<bytes>', 'upload')}") from None


def decode_timed(data: bytes, name: str, settings: ServeSettings) -> tuple[np.ndarray, float]:
    """:func:`decode_image` within ``settings``' limits -> (RGB array, milliseconds it took)."""
    t0 = time.perf_counter()
    arr = decode_image(data, name, settings.max_bytes, settings.max_pixels)
    return arr, (time.perf_counter() - t0) * 1e3


def header_pixels(items: Items, settings: ServeSettings) -> list[Any]:
    """Per item: pixels from its header, or the ServeError it gave (already one, unreadable, too large)."""
    out: list[Any] = []
    for name, data in items:
        try:
            out.append(data if isinstance(data, ServeError) else
                       image_pixels(data, name, settings.max_bytes, settings.max_pixels))
        except ServeError as exc:
            out.append(exc)
    return out


def decode_each(items: Items, settings: ServeSettings) -> list[Any]:
    """Per item: :func:`decode_timed`'s (array, ms), or the ServeError it gave (already one, or decoding)."""
    out: list[Any] = []
    for name, data in items:
        try:
            out.append(data if isinstance(data, ServeError) else decode_timed(data, name, settings))
        except ServeError as exc:
            out.append(exc)
    return out


# -- fields ---------------------------------------------------------------------------------------------------
def face_index(value: Any) -> int:
    """The ``face`` field (JSON int or form string) -> a non-negative int; ServeError 422 otherwise."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        return int(value.strip())
    if isinstance(value, float) and value.is_integer():  # 2.0 is 2; 1e400 (inf) and NaN are not integers
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6:
        return value
    raise ServeError(422, f"face must be a non-negative integer index, got {str(value)[:40]!r}")


def requested_tasks(request: Request, extra: dict, task_names: list[str]) -> list[str] | None:
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
        raise ServeError(422, _TASKS_TYPE)
    bad = [t for t in names if t not in task_names]
    if bad or not names:
        raise ServeError(422, f"unknown task {(bad or [''])[0]!r} in 'tasks'; valid: {', '.join(task_names)}")
    return names


def explain_tasks(extra: dict) -> Any:
    """/explain's ``tasks`` field as given (a string or a list of strings; names are checked by explain_face);
    None = all."""
    tasks = extra.get("tasks") or None
    if tasks is not None and not (isinstance(tasks, str) or (isinstance(tasks, list) and all(
            isinstance(t, str) for t in tasks))):
        raise ServeError(422, _TASKS_TYPE)
    return tasks


def b64(text: Any, field: str) -> bytes:
    """A base64 string (or data URL) -> bytes; ServeError 422 when not a string or not valid base64."""
    if not isinstance(text, str):
        raise ServeError(422, f"{field} must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:") and "," in text:  # a data URL, as FileReader.readAsDataURL gives
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServeError(422, f"{field} is not valid base64: {exc}") from None


# -- the body -------------------------------------------------------------------------------------------------
def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def check_part_type(ctype: str | None, name: str) -> None:
    ctype = (ctype or "").split(";")[0].strip().lower()
    if not (ctype in _IMAGE_TYPES_OK or ctype.startswith("image/")):
        raise ServeError(415, f"{name}: content type {ctype!r} is not an image; send image/jpeg, image/png...")


async def read_body(request: Request, many: bool, settings: ServeSettings) -> bytes:
    """The whole body, within its byte limit (413) and ``body_timeout`` (408); no slot is held meanwhile."""
    from starlette.requests import ClientDisconnect

    scale = 4 / 3 if media_type(request) == "application/json" else 1  # base64 inflates by 4/3
    limit = int((settings.max_batch_bytes if many else settings.max_bytes) * scale) + 16 + _JSON_SLACK
    what = (f"{settings.max_batch_mb:g} MB per batch, all images together" if many
            else f"{settings.max_upload_mb:g} MB per image")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServeError(413, f"request body of {mb(int(declared))} is above the limit ({what})",
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
        await asyncio.wait_for(collect(), settings.body_timeout)
    except asyncio.TimeoutError:
        raise ServeError(408, f"request body not received within {settings.body_timeout:g} s ({size} bytes came)",
                         headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise ServeError(400, "client disconnected before the body was complete") from None
    return b"".join(chunks)


def replay(request: Request, body: bytes) -> Request:
    """A copy of ``request`` whose body is ``body`` (already read), for Starlette's form parser."""
    from starlette.requests import Request as StarletteRequest

    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return StarletteRequest(request.scope, receive)


def parse_json(body: bytes) -> dict:
    """A JSON object body; ServeError 400 (empty, not JSON) or 422 (not an object)."""
    if not body:
        raise ServeError(400, _EMPTY_BODY)
    try:
        obj = json.loads(body)
    except RecursionError:
        raise ServeError(400, "request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, integers past Python's digit limit
        raise ServeError(400, f"request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise ServeError(422, f"JSON body must be an object, got {type(obj).__name__}")
    return obj


async def read_images(request: Request, body: bytes, many: bool, max_batch: int) -> tuple[Items, dict]:
    """Parse a body read by read_body -> [(name, bytes | ServeError)], extra fields. Single mode raises
    instead of recording errors."""
    mtype = media_type(request)
    field = "files" if many else "file"
    if mtype == "multipart/form-data":
        return await _read_multipart(request, body, many, max_batch)
    if mtype == "application/json":
        return _read_json(body, many)
    if not many and (mtype.startswith("image/") or mtype == "application/octet-stream"):
        return [("<upload>", body)], {}
    if not body and not mtype:
        raise ServeError(400, _EMPTY_BODY)
    raise ServeError(415, f"unsupported content type {mtype or '(none)'!r}; send multipart/form-data (field "
                     f"{field!r}), application/json ({'images_base64' if many else 'image_base64'})"
                     + ("" if many else " or an image/* body"))


async def _read_multipart(request: Request, body: bytes, many: bool, max_batch: int) -> tuple[Items, dict]:
    from starlette.datastructures import UploadFile

    field = "files" if many else "file"
    if not body:
        raise ServeError(400, "empty request body: no multipart data")
    try:
        form = await replay(request, body).form(max_files=max_batch + 1, max_fields=100)
    except Exception as exc:  # noqa: BLE001 - python-multipart and Starlette raise several kinds
        raise ServeError(400, f"malformed multipart body: {exc}") from None
    uploads = [u for u in form.getlist(field) if isinstance(u, UploadFile)]
    if not uploads:
        raise ServeError(422, f"missing form field {field!r}: upload the image(s) as {field}=@photo.jpg")
    if not many and len(uploads) > 1:
        raise ServeError(422, f"{len(uploads)} {field!r} parts: send one image here (several: "
                         "/predict/batch with field 'files')")
    extra = {k: v for k, v in form.items() if isinstance(v, str)}
    items: Items = []
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


def _read_json(body: bytes, many: bool) -> tuple[Items, dict]:
    obj = parse_json(body)
    key = "images_base64" if many else "image_base64"
    if key not in obj:
        raise ServeError(422, f"missing JSON field {key!r}" + (" (a list of base64 strings)" if many else
                                                               " (the image file as base64)"))
    extra = {k: v for k, v in obj.items() if k not in (key, "names")}
    if not many:
        return [(str(obj.get("name") or "<base64>"), b64(obj[key], key))], extra
    values = obj[key]
    if not isinstance(values, list):
        raise ServeError(422, f"{key} must be a list of base64 strings, got {type(values).__name__}")
    names = obj.get("names")
    if not isinstance(names, list):
        names = []
    out: Items = []
    for i, v in enumerate(values):
        name = str(names[i]) if i < len(names) else f"{key}[{i}]"
        try:
            out.append((name, b64(v, f"{key}[{i}]")))
        except ServeError as exc:
            out.append((name, exc))
    return out, extra

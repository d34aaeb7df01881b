"""The shapes of requests and responses: the OpenAPI request bodies and error responses the routes declare (the
handlers read raw bodies, so these document them), and the result documents the routes answer with."""
from __future__ import annotations

from typing import Any

__all__ = ["BATCH_BODY", "ERROR_RESPONSES", "EXPLAIN_BODY", "EXPLAIN_RESPONSES", "PREDICT_BODY", "batch_item_error",
           "only_tasks"]

_TASKS_FIELD = {"type": "string", "description": "comma-separated tasks to answer, as --tasks (default: all); "
                                                "also ?tasks=age,gender"}
PREDICT_BODY: dict[str, Any] = {
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
BATCH_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}}, "tasks": _TASKS_FIELD}}},
        "application/json": {"schema": {"type": "object", "required": ["images_base64"], "properties": {
            "images_base64": {"type": "array", "items": {"type": "string"}},
            "names": {"type": "array", "items": {"type": "string"}}, "tasks": _TASKS_FIELD}}},
    },
}
EXPLAIN_BODY: dict[str, Any] = {
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
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {str(s): {"description": d, **_ERR} for s, d in (
    (400, "unreadable, truncated or empty image, malformed body"), (408, "request body not received in time"),
    (413, "upload or image too large"),
    (415, "not an image content type"), (422, "missing, repeated or bad field, bad base64 or unknown name"),
    (503, "overloaded; retry after Retry-After seconds"))}
EXPLAIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    "200": {"content": {"image/png": {}}, "description": "the panel"}, **ERROR_RESPONSES}


def only_tasks(doc: dict, tasks: list[str] | None, task_names: list[str]) -> dict:
    """An ImageResult dict with just the requested tasks' answers in each face (``tasks`` None: all)."""
    if tasks is None or "faces" not in doc:
        return doc
    drop = set(task_names) - set(tasks)
    return {**doc, "faces": [{k: v for k, v in f.items() if k not in drop} for f in doc["faces"]]}


def batch_item_error(source: str, error: str) -> dict[str, str]:
    """The entry of an image /predict/batch could not answer for, in place of its ImageResult dict."""
    return {"source": source, "error": error}

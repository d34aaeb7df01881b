"""The service's errors and the one JSON error shape every failed response has: ``{"error": "..."}``.

FastAPI is imported only inside the functions that build responses (an optional dependency).
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import FacemtlError, InvalidInputError, UnknownNameError

__all__ = ["ServeError", "error_body", "error_response", "install_error_handlers", "status_for"]

log = logging.getLogger("facemtl.serve.app")  # the logger the service has always reported under


class ServeError(Exception):
    """An HTTP error with a status and a message; rendered as ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_body(message: str) -> dict[str, str]:
    """The JSON document of every error response."""
    return {"error": message}


def status_for(exc: Exception) -> int:
    """The HTTP status of a library error: 422 an unknown name, 400 other input errors, 500 anything else."""
    if isinstance(exc, UnknownNameError):
        return 422
    if isinstance(exc, InvalidInputError):
        return 400
    return 400 if isinstance(exc, FacemtlError) else 500


def error_response(message: str, status: int, headers: Any = None) -> Any:
    """A ``JSONResponse`` of :func:`error_body`."""
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(message), status_code=status, headers=headers)


async def _serve_error(_req: Any, exc: ServeError) -> Any:
    return error_response(exc.message, exc.status, exc.headers)


async def _facemtl_error(_req: Any, exc: FacemtlError) -> Any:
    return error_response(str(exc), status_for(exc))


async def _http_error(_req: Any, exc: Any) -> Any:  # Starlette's HTTPException: 404, 405...
    return error_response(str(exc.detail), exc.status_code, exc.headers)


async def _validation_error(_req: Any, exc: Any) -> Any:  # FastAPI's RequestValidationError
    return error_response("; ".join(str(e.get("msg")) for e in exc.errors()), 422)


async def _unexpected(_req: Any, exc: Exception) -> Any:  # pragma: no cover - a bug, logged
    log.exception("unexpected error")
    return error_response(f"internal error: {type(exc).__name__}", 500)


def install_error_handlers(app: Any) -> None:
    """Make every error of ``app`` a JSON ``{"error": "..."}`` with its status (and headers, e.g. ``Retry-After``)."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(ServeError, _serve_error)
    app.add_exception_handler(FacemtlError, _facemtl_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)

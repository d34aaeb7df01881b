"""The ``Host`` check and security headers (an ASGI middleware), and the web page's Content-Security-Policy."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import error_body

__all__ = ["PAGE_CSP", "SECURITY_HEADERS", "HostGuard", "host_name"]

# The web page is self-contained (inline style and script, same-origin fetch, blob: Grad-CAM images).
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))


def host_name(host: str) -> str:
    """A Host header -> the lower-case name without port ("[::1]:8000" -> "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostGuard:
    """ASGI middleware: 400 for a ``Host`` not in ``allowed`` (None or "*": any), and security headers."""

    def __init__(self, app: Any, allowed: Sequence[str] | None) -> None:
        self.app = app
        names = [h.strip().lower().strip("[]") for h in (allowed or ["*"]) if h.strip()]
        self.any = "*" in names
        self.exact = {h for h in names if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in names if h.startswith("*."))

    def allowed(self, host: str) -> bool:
        name = host_name(host)
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
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        if not self.allowed(host):
            body = json.dumps(error_body(f"Host {host[:100]!r} is not allowed here (see --allowed-hosts)")).encode()
            await send_secured({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send_secured({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secured)

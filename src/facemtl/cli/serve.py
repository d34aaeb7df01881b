"""facemtl serve [--model CKPT] [--host 127.0.0.1] [--port 8000] : the HTTP service and its web page."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from .._optional import require
from ._common import add_analyzer_args, build_analyzer

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")


def default_allowed_hosts(host: str) -> tuple[list[str], str | None]:
    """The ``Host`` names served when --allowed-hosts is not given -> (names, a warning to print or None).

    Loopback (or any one address): localhost, 127.0.0.1, ::1 and the bound host. Every address (0.0.0.0, ::):
    "*", any name, with a warning, since the names the service is reached by are not known here.
    """
    if host.strip() in _ANY_ADDRESS:
        return ["*"], (f"warning: bound to {host or 'every address'} with any Host header accepted; pass "
                       "--allowed-hosts NAME[,NAME...] to serve only the names this machine is reached by")
    names = list(LOOPBACK_HOSTS)
    bound = host.strip().strip("[]").lower()
    if bound and bound not in names:
        names.append(bound)
    return names, None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP service (POST /predict) and a web page at /",
                       description="Serve the model over HTTP: GET / (web page), /health, /info, /docs; "
                       "POST /predict, /predict/batch, /explain. Binds to 127.0.0.1 unless --host says otherwise.")
    add_analyzer_args(p)  # includes --max-pixels; the service lowers its default below
    p.set_defaults(max_pixels=40_000_000)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0 exposes "
                   "the service to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=20, help="largest image upload in MB (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=16, help="most images per /predict/batch request "
                   "(default: %(default)s)")
    p.add_argument("--max-concurrency", type=int, default=4, help="requests in work at once (once their body "
                   "is read); more get 503 (default: %(default)s)")
    p.add_argument("--body-timeout", type=float, default=10, help="seconds to receive a request body; slower "
                   "ones get 408 (default: %(default)s)")
    p.add_argument("--max-batch-mb", type=float, default=64, help="largest /predict/batch body in MB, all images "
                   "together (default: %(default)s)")
    p.add_argument("--max-pixels-in-flight", type=int, default=None, help="most decoded pixels held at once, all "
                   "requests together; more get 503 (default: --max-pixels x --max-concurrency)")
    p.add_argument("--allowed-hosts", default=None, metavar="NAME[,NAME...]", help="Host header names served, "
                   "others get 400; '*' for any (default: localhost, 127.0.0.1, ::1 and --host; '*' with a warning "
                   "when bound to 0.0.0.0)")
    p.set_defaults(func=run, usage_error=p.error)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        args.usage_error(f"--port must be in 1..65535, got {args.port}")
    uvicorn = require("uvicorn", extra="serve")
    from ..serve.app import create_app

    for flag, value in (("--body-timeout", args.body_timeout), ("--max-batch-mb", args.max_batch_mb),
                        ("--max-pixels-in-flight", args.max_pixels_in_flight)):
        if value is not None and value <= 0:
            args.usage_error(f"{flag} must be positive, got {value}")
    if args.allowed_hosts is None:
        allowed, warning = default_allowed_hosts(args.host)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    else:
        allowed = [h.strip() for h in args.allowed_hosts.split(",") if h.strip()]
        if not allowed:
            args.usage_error("--allowed-hosts needs at least one name (or '*')")
        if "*" in allowed and not _is_loopback(args.host):
            print(f"warning: bound to {args.host} with any Host header accepted (--allowed-hosts '*')",
                  file=sys.stderr, flush=True)
    app = create_app(build_analyzer(args), max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
                     max_batch=args.max_batch, max_concurrency=args.max_concurrency, body_timeout=args.body_timeout,
                     max_batch_mb=args.max_batch_mb, max_pixels_in_flight=args.max_pixels_in_flight,
                     allowed_hosts=allowed)
    print(f"facemtl serve: http://{args.host}:{args.port}/  (API docs: /docs; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.verbose
                else "error" if getattr(args, "quiet", False) else "warning")
    return 0

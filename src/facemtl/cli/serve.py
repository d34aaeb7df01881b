"""facemtl serve [--model CKPT] [--host 127.0.0.1] [--port 8000] : the HTTP service and its web page."""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import logging
import sys
from dataclasses import dataclass

from .._optional import require
from ._args import Arg, add_config_arg, add_dataclass_args, config_from_args, config_values
from ._common import ANALYZER_SKIP, add_analyzer_args, analyzer_classes, build_analyzer

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


@dataclass(frozen=True)
class ListenConfig:
    """Where ``facemtl serve`` listens and which ``Host`` names it serves (None: :func:`default_allowed_hosts`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: str | None = None


LISTEN_HELP: dict[str, str | Arg] = {
    "host": Arg("address to bind (default: %(default)s; 0.0.0.0 exposes the service to the network)",
                annotate=False),
    "port": "port",
    "allowed_hosts": Arg("Host header names served, others get 400; '*' for any (default: localhost, 127.0.0.1, ::1 "
                         "and --host; '*' with a warning when bound to 0.0.0.0)", metavar="NAME[,NAME...]"),
}

LIMITS_HELP = {  # ServeSettings (max_pixels is the analyzer's --max-pixels, its default lowered for the service)
    "max_upload_mb": "largest image upload in MB",
    "max_batch": "most images per /predict/batch request",
    "max_concurrency": "requests in work at once (once their body is read); more get 503",
    "body_timeout": "seconds to receive a request body; slower ones get 408",
    "max_batch_mb": "largest /predict/batch body in MB, all images together",
    "max_pixels_in_flight": "most decoded pixels held at once, all requests together; more get 503 (default: "
                            "--max-pixels x --max-concurrency)",
}


def register(sub: argparse._SubParsersAction) -> None:
    from ..serve.state import ServeSettings

    p = sub.add_parser("serve", help="HTTP service (POST /predict) and a web page at /",
                       description="Serve the model over HTTP: GET / (web page), /health, /info, /docs; "
                       "POST /predict, /predict/batch, /explain. Binds to 127.0.0.1 unless --host says otherwise.")
    add_config_arg(p, *analyzer_classes(), ListenConfig, ServeSettings, skip=ANALYZER_SKIP)
    add_analyzer_args(p)  # includes --max-pixels; the service lowers its default below
    p.set_defaults(max_pixels=ServeSettings.max_pixels)
    add_dataclass_args(p, ListenConfig, help_=LISTEN_HELP, fill_defaults=True)
    add_dataclass_args(p, ServeSettings, skip=("max_pixels",), help_=LIMITS_HELP, fill_defaults=True)
    p.set_defaults(func=run, usage_error=p.error)


def run(args: argparse.Namespace) -> int:
    from ..serve.state import ServeSettings

    listen = config_from_args(ListenConfig, args)  # the flags, over the --config file
    if not 0 < listen.port < 65536:
        args.usage_error(f"--port must be in 1..65535, got {listen.port}")
    uvicorn = require("uvicorn", extra="serve")
    from ..serve.app import create_app

    limits = config_values(ServeSettings, args)
    for flag, name in (("--body-timeout", "body_timeout"), ("--max-batch-mb", "max_batch_mb"),
                       ("--max-pixels-in-flight", "max_pixels_in_flight")):
        value = limits.get(name)
        if value is not None and value <= 0:
            args.usage_error(f"{flag} must be positive, got {value}")
    if listen.allowed_hosts is None:
        allowed, warning = default_allowed_hosts(listen.host)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    else:
        allowed = [h.strip() for h in listen.allowed_hosts.split(",") if h.strip()]
        if not allowed:
            args.usage_error("--allowed-hosts needs at least one name (or '*')")
        if "*" in allowed and not _is_loopback(listen.host):
            print(f"warning: bound to {listen.host} with any Host header accepted (--allowed-hosts '*')",
                  file=sys.stderr, flush=True)
    settings = ServeSettings(**limits)  # checked: a limit that is not positive is one ConfigError
    app = create_app(build_analyzer(args), **dataclasses.asdict(settings), allowed_hosts=allowed)
    print(f"facemtl serve: http://{listen.host}:{listen.port}/  (API docs: /docs; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=listen.host, port=listen.port, log_level="debug" if args.verbose
                else "error" if getattr(args, "quiet", False) else "warning")
    return 0

"""facemtl serve [--model CKPT] [--host 127.0.0.1] [--port 8000] : the HTTP service and its web page."""
from __future__ import annotations

import argparse
import logging

from .._optional import require
from ._common import add_analyzer_args, build_analyzer

log = logging.getLogger(__name__)


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
    p.add_argument("--max-concurrency", type=int, default=4, help="requests in work at once; more get 503 "
                   "(default: %(default)s)")
    p.set_defaults(func=run, usage_error=p.error)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        args.usage_error(f"--port must be in 1..65535, got {args.port}")
    uvicorn = require("uvicorn", extra="serve")
    from ..serve.app import create_app

    app = create_app(build_analyzer(args), max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
                     max_batch=args.max_batch, max_concurrency=args.max_concurrency)
    print(f"facemtl serve: http://{args.host}:{args.port}/  (API docs: /docs; Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.verbose
                else "error" if getattr(args, "quiet", False) else "warning")
    return 0

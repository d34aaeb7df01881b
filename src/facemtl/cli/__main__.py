"""The ``facemtl`` command: one subcommand module each; parsing and printing only."""
from __future__ import annotations

import argparse
import logging
import os
import sys

# Before torch loads OpenMP: idle PyTorch threads otherwise spin and starve the detector's threads (and any
# other process) on a small CPU; measured 15x slower video analysis under load without this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from collections.abc import Sequence

from ..errors import FacemtlError  # noqa: E402
from . import audit, batch, calibrate, evaluate, explain, export, predict, serve, train
from ._args import file_values

COMMANDS = (predict, batch, train, evaluate, calibrate, audit, explain, export, serve)


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="facemtl", description="Face attributes (age, gender, emotion, ethnicity) "
                                     "with one multi-task network.")
    parser.add_argument("--version", action="version", version=f"facemtl {__version__}")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    loud.add_argument("-q", "--quiet", action="store_true", help="only results and errors: no progress bars, "
                      "notes or logged warnings")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 a FacemtlError or every file failed, 2 usage, 3 some files
    failed (predict, batch), 130 interrupted)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._argv = argv  # the command line as given (`facemtl train --nproc-per-node N` relaunches it)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True  # every command's progress bars go with -q (see also _common.note)
    try:
        file_values(args)  # a --config file is read, and its keys checked, before the command starts
        return int(args.func(args) or 0)
    except FacemtlError as exc:  # what a user can fix; anything else is a bug and shows as one
        if args.verbose:
            raise
        print(f"facemtl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `facemtl predict ... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

"""Build argparse flags from a config dataclass: flags are the field names with dashes; defaults live
only in the dataclass (flags left unset are not passed)."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

from ..errors import FacemtlError

SUPPRESS = argparse.SUPPRESS


def _base(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                       help_: dict[str, str] | None = None) -> None:
    hints = typing.get_type_hints(cls)
    help_ = help_ or {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp, _ = _base(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        h = help_.get(f.name, "") + (f" (default: {default})" if default not in (None, ()) else "")
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=SUPPRESS, help=h)
        elif typing.get_origin(tp) is tuple:
            parser.add_argument(flag, action="append", default=SUPPRESS, help=h + " (repeatable)")
        elif tp in (int, float, str):
            parser.add_argument(flag, type=tp, default=SUPPRESS, help=h)


def config_from_args(cls: type, args: argparse.Namespace, base: dict[str, Any] | None = None) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    values = dict(base or {})
    values.update({k: v for k, v in vars(args).items() if k in names})
    for k, v in list(values.items()):
        if isinstance(v, list):
            values[k] = tuple(v)
    return cls(**values)


def load_yaml_config(path: str, cls: type) -> dict[str, Any]:
    """Read a YAML config; unknown keys are an error with close-match suggestions."""
    from .._optional import require

    yaml = require("yaml", extra="train", package="pyyaml")

    p = Path(path)
    if not p.is_file():
        raise FacemtlError(f"config file not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise FacemtlError(f"config file {p} must hold a mapping of option: value")
    names = [f.name for f in dataclasses.fields(cls)]
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    bad = [k for k in data if k not in names]
    if bad:
        msgs = []
        for k in bad:
            close = difflib.get_close_matches(k, names, n=1)
            msgs.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise FacemtlError(f"unknown key(s) in {p}: {', '.join(msgs)}; valid: {', '.join(names)}")
    for k, v in data.items():
        if isinstance(v, list):
            data[k] = tuple(v)
    return data

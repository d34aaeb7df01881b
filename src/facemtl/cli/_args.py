"""Build argparse flags from a config dataclass, and read ``--config FILE.yaml`` for the same fields.

Each command's flags are its config dataclasses' fields, the name with dashes (``min_face`` -> ``--min-face``);
their help text, and any choices, metavar, type or aliases, come from one dict per dataclass in the command's
module (``{field: "help"}`` or ``{field: Arg(...)}``). Defaults live only in the dataclass: either flags left
unset are not in the parsed namespace at all (``fill_defaults=False``, the dataclass applies its default), or the
namespace holds the field's default (``fill_defaults=True``; a command may lower one with ``set_defaults``).

A ``--config`` file (:func:`add_config_arg`) is a YAML mapping whose keys are the same field names; flags given on
the command line override it, and an unknown key is one error naming it, close matches and the valid keys.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import FacemtlError

SUPPRESS = argparse.SUPPRESS
GIVEN = "_flags_given"  # namespace attribute: the dests of generated flags given on the command line
DEFAULTED = "_flags_defaulted"  # parser default: dests whose namespace value is a default unless in GIVEN
CONFIG_CLASSES = "_config_classes"  # parser default: (classes, skipped fields) a command's --config may set
_CONFIG_VALUES = "_config_values"  # namespace attribute: (path, values) of the --config file, read once


@dataclasses.dataclass(frozen=True)
class Arg:
    """How one dataclass field appears on the command line (a plain string in a help dict is ``Arg(help=...)``).

    Attributes:
        help: the help text. ``annotate`` appends " (default: X)" when the field has a default other than None or
            empty, and " (repeatable)" to a repeatable flag; ``%(default)s`` in the text is argparse's.
        flags: the option strings (default: ``--field-name``), e.g. ``("--min-count", "--fairness-min-count")``.
        type: argparse ``type`` (default: the field's int, float or str), e.g. a parser that validates.
        choices, metavar: as argparse's.
        action: instead of the one the field's type implies (bool: ``--x/--no-x``; tuple: repeatable):
            "store_true" (a switch without a --no- form), "store" (one value, e.g. comma-separated) or "append".
        annotate: append the generated default / repeatable notes to ``help``.
    """

    help: str = ""
    flags: tuple[str, ...] = ()
    type: Callable[[str], Any] | None = None
    choices: Sequence[Any] | None = None
    metavar: str | None = None
    action: str | None = None
    annotate: bool = True


class _Given(argparse.Action):
    """Records the flag's dest in ``namespace._flags_given`` when it is on the command line."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        super().__call__(parser, namespace, values, option_string)
        setattr(namespace, GIVEN, {*getattr(namespace, GIVEN, ()), self.dest})


class _Store(_Given, argparse._StoreAction):
    pass


class _StoreTrue(_Given, argparse._StoreTrueAction):
    pass


class _Append(_Given, argparse._AppendAction):
    pass


class _BooleanOptional(_Given, argparse.BooleanOptionalAction):
    pass


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1 (counts of processes, CPUs, actors, files)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return n


def _base(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_dataclass_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                       skip: tuple[str, ...] = (), help_: Mapping[str, str | Arg] | None = None, *,
                       fill_defaults: bool = False) -> None:
    """Add a flag for each field of ``cls`` (but ``skip``), described by ``help_`` (field -> help or Arg).

    A field of a type with no flag form (a dict, a nested dataclass) gets none unless its Arg names an action.
    ``fill_defaults``: the parsed namespace holds each field's default (else an unset flag is absent from it).
    """
    hints = typing.get_type_hints(cls)
    help_ = help_ or {}
    filled = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        spec = help_.get(f.name, "")
        if isinstance(spec, str):
            spec = Arg(help=spec)
        tp, _ = _base(hints[f.name])
        action = spec.action or ("bool" if tp is bool else "append" if typing.get_origin(tp) is tuple else
                                 "store" if tp in (int, float, str) or spec.type is not None else None)
        if action is None:
            continue
        default = _field_default(f)
        kw: dict[str, Any] = {"dest": f.name, "default": default if fill_defaults else SUPPRESS}
        if spec.metavar is not None:
            kw["metavar"] = spec.metavar
        h = spec.help
        if spec.annotate and default not in (None, ()) and not (action == "bool" and fill_defaults):
            # with a default in the namespace, argparse's BooleanOptionalAction adds this note itself
            h += " (default: %(default)s)" if fill_defaults else f" (default: {default})"
        if action == "bool":
            kw["action"] = _BooleanOptional
        elif action == "store_true":
            kw["action"] = _StoreTrue
        else:
            kw["action"] = _Append if action == "append" else _Store
            kw["type"] = spec.type or (tp if tp in (int, float, str) and action == "store" else None)
            if spec.choices is not None:
                kw["choices"] = spec.choices
            if action == "append" and spec.annotate:
                h += " (repeatable)"
        parser.add_argument(*(spec.flags or ("--" + f.name.replace("_", "-"),)), help=h, **kw)
        filled.append(f.name)
    if fill_defaults:
        parser.set_defaults(**{DEFAULTED: frozenset(parser.get_default(DEFAULTED) or ()) | set(filled)})


def add_config_arg(parser: argparse.ArgumentParser, *classes: type, skip: tuple[str, ...] = ()) -> None:
    """``--config FILE.yaml``: the fields of ``classes`` (but ``skip``) the command's flags set, from a file."""
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file of options: the flags' names with underscores as keys (max_faces: 1); "
                             "flags given on the command line override it (needs PyYAML)")
    parser.set_defaults(**{CONFIG_CLASSES: (classes, tuple(skip))})


def file_values(args: argparse.Namespace) -> dict[str, Any]:
    """The values of the command's ``--config`` file (read and checked once), or {} without one."""
    path = getattr(args, "config", None)
    spec = getattr(args, CONFIG_CLASSES, None)
    if not path or spec is None:
        return {}
    cached = getattr(args, _CONFIG_VALUES, None)
    if cached is None or cached[0] != path:
        classes, skip = spec
        cached = (path, load_yaml_config(path, *classes, skip=skip))
        setattr(args, _CONFIG_VALUES, cached)
    return cached[1]


def config_values(cls: type, args: argparse.Namespace, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values of ``cls``'s fields that ``args`` and ``base`` (None: the ``--config`` file) set: a flag given on
    the command line overrides the file, which overrides a default; fields set by neither are left out."""
    names = {f.name for f in dataclasses.fields(cls)}
    base = file_values(args) if base is None else base
    values = {k: v for k, v in base.items() if k in names}
    given: set[str] = getattr(args, GIVEN, set())
    defaulted: frozenset[str] = getattr(args, DEFAULTED, frozenset())
    for k, v in vars(args).items():
        if k in names and (k in given or k not in defaulted or k not in values):
            values[k] = v
    for k, v in list(values.items()):
        if isinstance(v, list):
            values[k] = tuple(v)
    return values


def config_from_args(cls: type, args: argparse.Namespace, base: Mapping[str, Any] | None = None,
                     **overrides: Any) -> Any:
    """``cls`` made from :func:`config_values` (and ``overrides``), validated by the dataclass."""
    return cls(**{**config_values(cls, args, base), **overrides})


def _coerce(name: str, value: Any, tp: Any, path: Path) -> Any:
    """A YAML value for a field of type ``tp``: numbers written as strings (``1e-3``, which YAML reads as text)
    become the number, as on the command line; anything else is left to the dataclass to check."""
    if isinstance(value, str) and tp in (int, float):
        try:
            return tp(value)
        except ValueError:
            raise FacemtlError(f"{path}: {name} must be a{'n integer' if tp is int else ' number'}, "
                               f"got {value!r}") from None
    return tuple(value) if isinstance(value, list) else value


def load_yaml_config(path: str, *classes: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """Read a YAML config for the fields of ``classes`` (but ``skip``); unknown keys are one error with
    close-match suggestions and the valid keys. Needs PyYAML (a clear "install ..." error without it)."""
    from .._optional import require

    yaml = require("yaml", extra="train", package="pyyaml")

    p = Path(path)
    if not p.is_file():
        raise FacemtlError(f"config file not found: {p}")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise FacemtlError(f"config file {p} must hold a mapping of option: value")
    skipped = set(skip)
    types_: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in skipped:
                types_.setdefault(f.name, _base(hints[f.name])[0])
    names = list(types_)
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    bad = [k for k in data if k not in types_]
    if bad:
        msgs = []
        for k in bad:
            close = difflib.get_close_matches(k, names, n=1)
            msgs.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise FacemtlError(f"unknown key(s) in {p}: {', '.join(msgs)}; valid: {', '.join(names)}")
    return {k: _coerce(k, v, types_[k], p) for k, v in data.items()}

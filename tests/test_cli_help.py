"""Every command and every flag says what it does in `facemtl <command> --help`."""
from __future__ import annotations

import argparse

from facemtl.cli.__main__ import build_parser


def test_every_flag_of_every_command_has_help_text():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = {name: [a.option_strings[0] if a.option_strings else a.dest for a in sp._actions
                           if not a.help and not isinstance(a, argparse._HelpAction)]
                    for name, sp in sub.choices.items()}
    assert not {k: v for k, v in undocumented.items() if v}, undocumented
    assert all(sp.description or sp.format_help() for sp in sub.choices.values())
    assert set(sub.choices) >= {"predict", "batch", "train", "evaluate", "calibrate", "audit", "explain", "export",
                                "serve"}

"""The ``activerm-fast`` command: simulate, select, export, import, embed, info.

Each command lives in its own module with an ``add(commands)`` that registers its sub-parser
and handler. Every failure ends in one line on stderr, ``activerm-fast: error: ...`` naming the
file or flag at fault, and exit status 2 (130 when interrupted); never a traceback. A warning
is one line too, ``activerm-fast: warning: ...``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from . import embed, info, preference_files, select, simulate
from .common import Parser, report


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="activerm-fast",
        description="Choose which comparison pairs to label for Bradley-Terry reward models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (simulate, select, preference_files, embed, info):
        command.add(commands)
    for sub_parser in commands.choices.values():  # the defaults refuse_given compares with
        sub_parser.set_defaults(command_parser=sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what started it (select --processes)
    with warnings.catch_warnings():  # restores the caller's way of showing warnings
        warnings.showwarning = _warning_line
        try:
            handler: Callable[[argparse.Namespace], int] = args.handler
            return handler(args)
        except KeyboardInterrupt:
            resume = "activerm-fast: interrupted; run the same command again to resume"
            print(resume, file=sys.stderr)
            return 130
        except Exception as err:
            return report(err)


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    """A warning as one line on stderr, without the file, line and source that Python adds."""
    print(f"activerm-fast: warning: {message}", file=sys.stderr)

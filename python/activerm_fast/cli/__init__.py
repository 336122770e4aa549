"""The ``activerm-fast`` command: simulate, select, export, import, embed, info.

Each command lives in its own module with an ``add(commands)`` that registers its sub-parser
and handler. Every failure ends in one line on stderr, ``activerm-fast: error: ...`` naming the
file or flag at fault, and exit status 2 (130 when interrupted); never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from . import embed, info, preference_files, select, simulate
from .common import Failure, Parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="activerm-fast",
        description="Choose which comparison pairs to label for Bradley-Terry reward models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (simulate, select, preference_files, embed, info):
        command.add(commands)
    return parser


# what bad input (arguments, files, data) raises: reported by its message alone
_INPUT_ERRORS = (Failure, ValueError, TypeError, OSError)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        print("activerm-fast: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except _INPUT_ERRORS as err:
        print(f"activerm-fast: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug rather than bad input: one line too, unless asked
        if os.environ.get("ACTIVERM_FAST_TRACEBACK"):
            raise
        print(
            f"activerm-fast: internal error: {type(err).__name__}: {_one_line(err)} "
            "(set ACTIVERM_FAST_TRACEBACK=1 for the traceback)",
            file=sys.stderr,
        )
        return 2

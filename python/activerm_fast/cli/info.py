"""``activerm-fast info``: build and device information."""

from __future__ import annotations

import argparse
from typing import Any

from .._launch import build_info


def add(commands: Any) -> None:
    """Register the command on the ``commands`` sub-parsers."""
    info = commands.add_parser("info", help="build and device information")
    info.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    info = build_info()
    width = max(len(key) for key in info)
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0

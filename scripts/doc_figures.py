"""Regenerate the measured blocks of README.md and docs/*.md from saved benchmark runs.

A measured block is the fenced block right after a marker line

    <!-- figures: python bench/bench_greedy.py > bench/results/console/bench_greedy.txt -->

and its text is ``$ `` plus the command, then the saved file as the command printed it. Save a
run with the marker's command (``python bench/bench_greedy.py >
bench/results/console/bench_greedy.txt``), then run this script to put it into the docs;
``--check`` changes nothing and exits 1 naming every block that differs from its saved run
(tests/test_doc_figures.py runs the check in CI). No figure in the docs is typed by hand: each
one is in a saved run that a command in the marker regenerates.

Examples
--------
>>> text = "<!-- figures: echo hi > out.txt -->\\n```\\nold\\n```\\n"
>>> render(text, lambda path: "hi\\n")
'<!-- figures: echo hi > out.txt -->\\n```\\n$ echo hi\\nhi\\n```\\n'
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(
    r"^(?P<marker><!-- figures: (?P<command>[^>]+?) > (?P<path>\S+) -->\n)"
    r"```\n(?P<body>.*?)```\n",
    re.MULTILINE | re.DOTALL,
)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str, read: Callable[[str], str]) -> str:
    """``text`` with every measured block replaced by its saved run (``read(path)``)."""

    def block(found: re.Match[str]) -> str:
        saved = read(found["path"])
        if not saved.endswith("\n"):
            saved += "\n"
        return f"{found['marker']}```\n$ {found['command']}\n{saved}```\n"

    return MARKER.sub(block, text)


def saved_run(path: str) -> str:
    file = ROOT / path
    if not file.is_file():
        raise SystemExit(f"doc_figures: {path} is missing: run the command in its marker")
    return file.read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on a diff")
    args = parser.parse_args(argv)
    stale = []
    for doc in documents():
        text = doc.read_text(encoding="utf-8")
        new = render(text, saved_run)
        if new != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(new, encoding="utf-8")
    if args.check and stale:
        names = ", ".join(str(name) for name in stale)
        print(f"doc_figures: {names} differ from the saved runs", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every measured block of README.md and docs/ is its saved run, as scripts/doc_figures.py
renders it: regenerating the docs from bench/results/console/ changes nothing, and every
marker names a benchmark script that exists."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import doc_figures  # noqa: E402


def markers() -> list[tuple[Path, str, str]]:
    return [
        (doc, found["command"], found["path"])
        for doc in doc_figures.documents()
        for found in doc_figures.MARKER.finditer(doc.read_text(encoding="utf-8"))
    ]


def test_the_docs_are_their_saved_runs():
    assert doc_figures.main(["--check"]) == 0


def test_every_marker_names_a_saved_run_of_a_benchmark_script():
    found = markers()
    assert len(found) >= 5  # README's three, DISTRIBUTED.md's and DATA.md's
    for doc, command, path in found:
        script = next(word for word in command.split() if word.endswith(".py"))
        assert (ROOT / script).is_file(), (doc.name, command)
        assert path.startswith("bench/results/console/") and (ROOT / path).is_file(), path


def test_a_stale_block_is_found():
    """The check is not vacuous: a block that differs from its saved run is rewritten."""
    text = "<!-- figures: python bench/x.py > out.txt -->\n```\n$ python bench/x.py\nold\n```\n"
    assert doc_figures.render(text, lambda path: "new\n") != text
    assert doc_figures.render(text, lambda path: "old\n") == text

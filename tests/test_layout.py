"""docs/DESIGN.md's Layout section names every module of the package on its folder's line (a
sub-package's ``__init__.py`` may go unnamed: it re-exports), and names nothing that is not
there: a new module cannot go unlisted."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "activerm_fast"
FOLDER_LINE = re.compile(r"^(\S+/)\s+(.*)$")
MODULE = re.compile(r"\b[\w]+\.pyi?\b")


def layout_lines() -> dict[str, str]:
    """Each folder of the Layout block and the text of its line (with continuation lines)."""
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```\n", 1)[1].split("```", 1)[0]
    folders: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        found = FOLDER_LINE.match(line)
        if found:
            current = found.group(1)
            folders[current] = found.group(2)
        elif current is not None:
            folders[current] += " " + line.strip()
    return folders


def modules(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir() if path.suffix in (".py", ".pyi")}


def test_every_module_is_named_on_its_folders_line_and_every_named_one_exists():
    folders = layout_lines()
    package_folders = {"python/activerm_fast/": PACKAGE}
    for sub in sorted(PACKAGE.iterdir()):
        if (sub / "__init__.py").exists():
            package_folders[f"{sub.name}/"] = sub
    for name, folder in package_folders.items():
        assert name in folders, f"docs/DESIGN.md's Layout has no line for {name}"
        named = set(MODULE.findall(folders[name]))
        present = modules(folder) - ({"__init__.py"} if folder != PACKAGE else set())
        assert present <= named, f"{name}: {sorted(present - named)} not in docs/DESIGN.md"
        missing = named - modules(folder)
        assert not missing, f"{name}: {sorted(missing)} named but not in the tree"
    for name in set(folders) - set(package_folders):
        assert (ROOT / name).is_dir(), f"docs/DESIGN.md's Layout names {name}, not in the tree"


def test_the_layout_check_sees_a_missing_module():
    """The check is not vacuous: a line that leaves a module out fails it."""
    folders = layout_lines()
    assert "selection/" in folders and "design.py" in folders["selection/"]
    named = set(MODULE.findall(folders["selection/"].replace("design.py", "")))
    assert not modules(PACKAGE / "selection") <= named

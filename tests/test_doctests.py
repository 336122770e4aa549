"""The docstring examples of every module of the package, run as doctests, and the convention
that keeps them there: each public function and class of the public API (and each public
method of its classes) documents itself in NumPy style with an Examples section."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import activerm_fast

# packages some modules import at the top that an install may lack: their modules are skipped
OPTIONAL = {"transformers", "tokenizers", "label_studio_sdk", "argilla", "sentence_transformers"}

# the public API whose docstrings follow the convention (issue 19): module -> names checked
# (None: the module's __all__, or every public name defined in it when it has none)
DOCUMENTED: dict[str, list[str] | None] = {
    "activerm_fast.kernels": None,
    "activerm_fast.selection.api": ["select", "select_with_model"],
    "activerm_fast.distributed": None,
    "activerm_fast.model.reward_model": None,
    "activerm_fast.model.metrics": None,
    "activerm_fast.simulation.loop": ["ActiveLoop", "LoopConfig"],
    "activerm_fast.simulation.oracle": None,
    "activerm_fast.simulation.simulate": None,
    "activerm_fast.simulation.report": None,
    "activerm_fast.simulation.verdicts": None,
    "activerm_fast.data.dataset": None,
    "activerm_fast.data.pairs": None,
    "activerm_fast.data.annotation": None,
    "activerm_fast.data.preference_data": None,
}

MODULE_NAMES = sorted(
    info.name
    for info in pkgutil.walk_packages(activerm_fast.__path__, "activerm_fast.")
    if info.name.rsplit(".", 1)[-1] != "__main__"  # importing it runs the command
)


def imported(name: str) -> ModuleType:
    """The module, or a skip when it needs an optional package that is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs {err.name}, not installed")
        raise


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_doctests(name: str) -> None:
    module = imported(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_the_package_has_doctests() -> None:
    """The walk found the package's modules and their examples (a broken walk runs nothing)."""
    assert set(DOCUMENTED) <= set(MODULE_NAMES)
    finder = doctest.DocTestFinder(exclude_empty=True)
    examples = sum(
        len(test.examples)
        for name in DOCUMENTED
        for test in finder.find(importlib.import_module(name), name)
    )
    assert examples >= 400, examples


def documented_objects(name: str) -> list[tuple[str, object]]:
    """(qualified name, object) of each public function, class and class method to check."""
    module = importlib.import_module(name)
    names = DOCUMENTED[name]
    if names is None:
        names = getattr(module, "__all__", None) or [
            key
            for key, value in vars(module).items()
            if not key.startswith("_")
            and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == name
        ]
    found: list[tuple[str, object]] = []
    for key in names:
        value = getattr(module, key)
        if not (inspect.isfunction(value) or inspect.isclass(value)):
            continue  # constants
        found.append((f"{name}.{key}", value))
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                if attribute.startswith("_"):
                    continue
                function = (
                    member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                )
                if inspect.isfunction(function):
                    found.append((f"{name}.{key}.{attribute}", function))
    return found


def has_examples(doc: str) -> bool:
    """A one-line summary, then an Examples section (its underline included) with an example."""
    summary, _, rest = doc.partition("\n")
    section = rest.partition("\nExamples\n--------\n")[2]
    one_line = not rest or rest.startswith("\n")  # a blank line after the summary
    return bool(summary.strip()) and one_line and ">>> " in section


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_public_api_has_examples(name: str) -> None:
    missing = [
        qualified
        for qualified, value in documented_objects(name)
        if not has_examples(inspect.cleandoc(value.__doc__ or ""))
    ]
    assert not missing, f"no Examples section (NumPy style) in: {', '.join(missing)}"

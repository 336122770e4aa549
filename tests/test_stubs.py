"""The typed stubs of the extension modules (_core.pyi, _cuda.pyi) against the compiled
bindings: every name the module exports is in its stub and every stub name is exported, and
every function, method and constructor has the bindings' parameter names in the bindings'
order, with defaults in the same places. A kernel renamed or given a parameter in
csrc/python/bindings.h without its stub fails here."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "activerm_fast"


def stub_definitions(module: str) -> dict[str, ast.AST]:
    """The names a stub defines or re-exports (``from ._core import x as x``), resolved to
    their definitions in the stub that holds them."""
    tree = ast.parse((PACKAGE / f"{module}.pyi").read_text())
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            source = stub_definitions(node.module.lstrip("."))
            for alias in node.names:
                found[alias.asname or alias.name] = source[alias.name]
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = node
    return found


def split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for at, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:at].strip())
            start = at + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def bound_parameters(function: object) -> list[tuple[str, bool]]:
    """(name, has a default) of each parameter, from the signature pybind11 writes as the first
    line of the docstring; ``self`` left out."""
    line = (function.__doc__ or "").strip().splitlines()[0]
    inside = line[line.index("(") + 1 : line.rindex(") ->")]
    parameters = []
    for part in split_top_level(inside):
        name = part.split(":")[0].strip()
        if name != "self":
            parameters.append((name, "=" in part))
    return parameters


def stub_parameters(node: ast.FunctionDef) -> list[tuple[str, bool]]:
    args = node.args.posonlyargs + node.args.args
    defaults = [False] * (len(args) - len(node.args.defaults)) + [True] * len(node.args.defaults)
    return [(a.arg, d) for a, d in zip(args, defaults, strict=True) if a.arg != "self"]


def exported(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def modules() -> list[str]:
    names = ["_core"]
    try:
        importlib.import_module("activerm_fast._cuda")
        names.append("_cuda")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", modules())
def test_every_binding_has_its_stub_and_the_same_parameters(name):
    module = importlib.import_module(f"activerm_fast.{name}")
    stub = stub_definitions(name)
    assert exported(module) == set(stub), (
        f"{name}: only bound {sorted(exported(module) - set(stub))}, "
        f"only in the stub {sorted(set(stub) - exported(module))}"
    )
    checked = 0
    for attribute in sorted(exported(module)):
        bound, node = getattr(module, attribute), stub[attribute]
        if inspect.isbuiltin(bound):
            assert isinstance(node, ast.FunctionDef), attribute
            assert stub_parameters(node) == bound_parameters(bound), f"{name}.{attribute}"
            checked += 1
        elif inspect.isclass(bound):
            assert isinstance(node, ast.ClassDef), attribute
            methods = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
            members = exported(bound) | ({"__init__"} if "__init__" in methods else set())
            assert members == set(methods) | {
                n.target.id
                for n in node.body
                if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            }, f"{name}.{attribute}"
            for method, definition in methods.items():
                member = inspect.getattr_static(bound, method)
                if isinstance(member, property):
                    continue
                function = member.__func__ if isinstance(member, staticmethod) else member
                got = bound_parameters(getattr(bound, method) if method != "__init__" else function)
                assert stub_parameters(definition) == got, f"{name}.{attribute}.{method}"
                checked += 1
    assert checked >= 10  # the kernels, the engine's primitives and the views' constructors


def test_the_check_reads_parameters_as_the_bindings_write_them():
    from activerm_fast import _core

    assert bound_parameters(_core.fisher_matrix) == [
        ("features", False),
        ("pairs", False),
        ("weights", False),
        ("out", False),
        ("stream", False),
    ]
    assert bound_parameters(_core.FeatureView.__init__)[-1] == ("scale", True)

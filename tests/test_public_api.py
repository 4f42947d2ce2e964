"""The public surface: every exported name exists and is documented, and every public module
says what it exports.

- Every name in ``__all__`` of ``shortinfer`` and of its public subpackages exists. A function
  or class has a docstring with an ``Examples:`` section (run as a doctest); a constant has a
  ``#:`` comment above its assignment or a docstring below it (what mkdocstrings shows).
- Every module whose dotted name has no component starting with ``_`` defines ``__all__``.

Exceptions are exempt from ``Examples:``: they are documented by the ``Raises:`` sections of
what raises them.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

import shortinfer

ROOT = Path(shortinfer.__file__).resolve().parent


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _public_modules() -> list[str]:
    found = ["shortinfer"]
    for info in pkgutil.walk_packages(shortinfer.__path__, "shortinfer."):
        if _is_public(info.name):
            found.append(info.name)
    return found


def _public_packages() -> list[str]:
    packages = ["shortinfer"]
    for info in pkgutil.iter_modules(shortinfer.__path__, "shortinfer."):
        if info.ispkg and _is_public(info.name):
            packages.append(info.name)
    return packages


def _exports() -> list[tuple[str, str]]:
    return [
        (package, name)
        for package in _public_packages()
        for name in importlib.import_module(package).__all__
    ]


@cache
def _documented_constants() -> frozenset[str]:
    """Names assigned at the top of any module of the package, with a ``#:`` comment on the
    line above or a string literal as the next statement."""
    documented = set()
    for path in ROOT.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        body = ast.parse(source).body
        for index, node in enumerate(body):
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            else:
                continue
            above = lines[node.lineno - 2].strip() if node.lineno >= 2 else ""
            after = body[index + 1] if index + 1 < len(body) else None
            below = (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            )
            if above.startswith("#:") or below:
                documented.update(targets)
    return frozenset(documented)


def test_the_public_packages_are_the_expected_ones():
    # A new public subpackage is checked automatically; this catches one vanishing.
    assert set(_public_packages()) >= {
        "shortinfer",
        "shortinfer.bench",
        "shortinfer.data",
        "shortinfer.metrics",
        "shortinfer.models",
        "shortinfer.train",
    }


@pytest.mark.parametrize(("package", "name"), _exports(), ids=lambda v: v)
def test_every_exported_name_exists_and_is_documented(package: str, name: str):
    module = importlib.import_module(package)
    assert hasattr(module, name), f"{package}.__all__ lists {name!r}, which does not exist"
    obj = getattr(module, name)
    qualified = f"{package}.{name}"
    if inspect.isclass(obj) or inspect.isroutine(obj):
        doc = inspect.getdoc(obj)
        assert doc, f"{qualified} has no docstring"
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            return
        has_examples = "\nExamples:\n" in f"\n{doc}\n"
        assert has_examples, f"{qualified}'s docstring has no 'Examples:' section"
    elif isinstance(obj, ModuleType):
        assert inspect.getdoc(obj), f"{qualified} (a module) has no docstring"
    elif name.startswith("__") and name.endswith("__"):
        pass  # __version__ and the like: standard, documented by their module
    else:
        assert name in _documented_constants(), (
            f"{qualified} (a constant) needs a '#:' comment above its assignment or a "
            "docstring below it"
        )


@pytest.mark.parametrize("name", _public_modules())
def test_every_public_module_defines_all(name: str):
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, (list, tuple)), f"{name} has no __all__"
    assert all(isinstance(item, str) for item in exported), f"{name}.__all__ holds a non-str"
    assert len(set(exported)) == len(exported), f"{name}.__all__ lists a name twice"

"""LangGraph's own store tests, taken from the tests/ folders of LangGraph's sdists that
mk/langgraph-tests.mk unpacks into ``$TOOLS_DIR/langgraph-tests/`` (MIT License, Copyright
(c) LangChain, Inc.; the LICENSE file sits beside each folder).

An upstream test module imports the store it was written for (``SqliteStore``,
``PostgresStore`` with psycopg, ``InMemoryStore``) and its sibling helpers as
``tests.<module>``, which here would be our own ``tests`` package. So a module is not
imported as a whole: :func:`load` compiles its source (with its own file name and line
numbers, so a failure points into upstream's file) without the imports of those stores and
without the definitions the caller replaces (the fixtures and helpers that build a store),
runs it with the caller's replacements in their place, and hands over its test functions
unchanged, less those the caller names as not applying, each with its reason.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[3]
_FRAGMENT = _REPO / "mk" / "langgraph-tests.mk"


def _version(dist: str) -> str:
    """The version mk/langgraph-tests.mk fetched: langgraph-checkpoint's is the installed
    (locked) one; the others are pinned in the fragment."""
    if dist == "langgraph-checkpoint":
        return importlib.metadata.version(dist)
    variable = dist.upper().replace("-", "_") + "_VERSION"
    match = re.search(rf"^{variable} \?= (\S+)$", _FRAGMENT.read_text(), re.MULTILINE)
    if match is None:
        raise LookupError(f"{_FRAGMENT} does not pin {variable}")
    return match.group(1)


def tests_folder(dist: str) -> Path:
    """The unpacked tests/ folder of ``dist``'s sdist; fails (not skips) when absent."""
    tools = Path(os.environ.get("TOOLS_DIR") or Path.home() / ".cache" / "memstore-tools")
    folder = tools / "langgraph-tests" / f"{dist.replace('-', '_')}-{_version(dist)}" / "tests"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is missing: run `make langgraph-tests` (or `make tools`)"
        )
    return folder


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return [alias.name for alias in node.names]


def _defined_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        targets = [node.target]
    if len(targets) == 1 and isinstance(targets[0], ast.Name):
        return targets[0].id
    return None


def load(
    dist: str,
    filename: str,
    *,
    absent: tuple[str, ...],
    replaced: Mapping[str, Any],
    not_run: Mapping[str, str],
) -> dict[str, Any]:
    """The test functions and classes of ``dist``'s ``tests/<filename>``, but those in
    ``not_run`` (name: why it does not apply).

    ``absent``: modules (and their submodules) whose imports are left out: the stores
    this suite does not use and upstream's own ``tests`` package. ``replaced``: names the
    module gets from the caller instead of its own definition or import (the ``store``
    fixture's makers, the store classes its annotations and bodies name). Each name in
    ``replaced`` and ``not_run`` must be defined or imported by the module, so that a
    LangGraph upgrade that renames one fails here instead of running less.
    """
    path = tests_folder(dist) / filename
    tree = ast.parse(path.read_text(), filename=str(path))
    kept: list[ast.stmt] = []
    seen: set[str] = set()
    tests: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {(alias.asname or alias.name).split(".")[0] for alias in node.names}
            seen |= names
            if any(
                module == prefix or module.startswith(prefix + ".")
                for module in _imported_modules(node)
                for prefix in absent
            ):
                continue
            if isinstance(node, ast.ImportFrom):
                aliases = [a for a in node.names if (a.asname or a.name) not in replaced]
                if not aliases:
                    continue
                trimmed = ast.ImportFrom(module=node.module, names=aliases, level=node.level)
                kept.append(ast.copy_location(trimmed, node))
                continue
            kept.append(node)
            continue
        name = _defined_name(node)
        if name is not None:
            seen.add(name)
            if name in replaced or name in not_run:
                continue
            if name.startswith(("test_", "Test")) and not isinstance(node, ast.Assign):
                tests.append(name)
        kept.append(node)
    unknown = (set(replaced) | set(not_run)) - seen
    if unknown:
        raise LookupError(f"{path} has no {sorted(unknown)}")

    module_name = f"langgraph_upstream.{dist.replace('-', '_')}.{path.stem}"
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    module.__dict__.update(replaced)
    sys.modules[module_name] = module
    code = compile(ast.Module(body=kept, type_ignores=[]), str(path), "exec")
    exec(code, module.__dict__)
    return {name: module.__dict__[name] for name in tests}


def module_globals(tests: Mapping[str, Any]) -> dict[str, Any]:
    """The globals the loaded tests run with (for a fixture that swaps one in per test)."""
    first = next(iter(tests.values()))
    globals_: dict[str, Any] = sys.modules[first.__module__].__dict__
    return globals_


def load_helper(dist: str, filename: str) -> types.ModuleType:
    """A helper module of ``dist``'s tests/ that imports only installed packages (such as
    ``embed_test_utils.py``), imported as it is."""
    path = tests_folder(dist) / filename
    name = f"langgraph_upstream.{dist.replace('-', '_')}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

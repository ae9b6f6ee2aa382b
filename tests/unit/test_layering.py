"""The layering rules that import-linter does not check, and proof that the contracts bite.

* no import cycle between modules of the service (imports made only for type checking
  excluded, as in the contracts);
* no module reads another package's private (``_``-prefixed) names;
* ``lint-imports`` fails on a deliberate violation.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service" / "memstore"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that import each other in a ring."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_strongly_connected_finds_a_ring() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    for package in ("memstore", "memstore_operator"):
        graph = grimp.build_graph(package, exclude_type_checking_imports=True)
        edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
        assert strongly_connected(edges) == [], f"import cycles in {package}"


def _package_of(module: str) -> str:
    # memstore.backends.redis.backend -> memstore.backends.redis
    return module.rsplit(".", 1)[0]


def private_reaches(path: Path, module: str) -> list[str]:
    """``from other.package import _name`` and ``other_module._name`` in one file."""
    tree = ast.parse(path.read_text(), str(path))
    here = _package_of(module)
    imported: dict[str, str] = {}  # local alias -> module it names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith(("memstore", "memstore_operator")):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and _package_of(node.module + ".x") != here:
                    found.append(f"{module}: from {node.module} import {alias.name}")
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("memstore"):
                    imported[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.value.id in imported
            and _package_of(imported[node.value.id] + ".x") != here
        ):
            found.append(f"{module}: {node.value.id}.{node.attr}")
    return found


def test_private_reach_detector_sees_both_forms(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from memstore.core.errors import _hidden\n"
        "from memstore.backends.redis import keys\n"
        "keys._slot_table\n"
    )
    assert private_reaches(source, "memstore.server.m") == [
        "memstore.server.m: from memstore.core.errors import _hidden",
        "memstore.server.m: keys._slot_table",
    ]


def test_no_private_names_across_packages() -> None:
    found = []
    for top in (SERVICE, ROOT / "operator" / "memstore_operator"):
        for path in sorted(top.rglob("*.py")):
            parts = path.relative_to(top.parent).with_suffix("").parts
            module = ".".join(p for p in parts if p != "__init__")
            found += private_reaches(path, module)
    assert found == []


def test_import_contracts_fail_on_a_violation(tmp_path: Path) -> None:
    """A copy of the service in which a backend imports the server breaks the layers."""
    copy = tmp_path / "service"
    shutil.copytree(SERVICE, copy / "memstore", ignore=shutil.ignore_patterns("__pycache__"))
    embedded = copy / "memstore" / "backends" / "embedded.py"
    embedded.write_text(embedded.read_text() + "\nfrom memstore.server import routes  # noqa\n")

    def lint(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
            cwd=ROOT,
            env={"PYTHONPATH": f"{path}:{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    broken = lint(copy)
    assert broken.returncode != 0
    assert "memstore.backends is not allowed to import memstore.server" in broken.stdout
    assert lint(ROOT / "service").returncode == 0

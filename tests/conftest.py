"""Root fixtures. Real servers are started by plugins in ``tests/servers/`` (one module
per technology, discovered here so adding one touches no other file)."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"tests.servers.{p.stem}"
    for p in (Path(__file__).parent / "servers").glob("*.py")
    if p.stem != "__init__"
)

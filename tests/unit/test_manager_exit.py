"""A script that forgets to close its manager still exits when ``asyncio.run`` returns
(the embedded backend's SQLite threads are not daemons), and is told about it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio

from memstore import DistributedMemoryManager


async def main():
    memory = DistributedMemoryManager(memory_type="embedded", namespace="my-agent")
    await memory.save_entity("user", "ada", {"name": "Ada"})
    print(await memory.load_entity("user", "ada"))


asyncio.run(main())
print("loop ended")
"""


def test_unclosed_manager_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "script.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,  # a process kept alive by the manager fails here
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["{'name': 'Ada'}", "loop ended"]
    assert "ResourceWarning: DistributedMemoryManager was not closed" in result.stderr
    assert "Traceback" not in result.stderr


async def test_closing_the_manager_gives_no_warning(tmp_path: Path) -> None:
    """filterwarnings=error: a warning from an explicitly closed manager fails here."""
    from memstore.core.settings import Settings
    from memstore.memory.manager import DistributedMemoryManager

    settings = Settings(memory_type="embedded", data_path=tmp_path / "m.db")
    async with DistributedMemoryManager(settings=settings) as memory:
        await memory.save_entity("user", "ada", {"name": "Ada"})
    # Reopening after close works (the guard of the first start is gone).
    async with DistributedMemoryManager(settings=settings) as memory:
        assert await memory.load_entity("user", "ada") == {"name": "Ada"}

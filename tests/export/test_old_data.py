"""Data written by the release before export existed (tests/migration's fixtures, loaded
raw into every backend) exports, and the dump imports into a fresh store as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.migration.dataset import NAMESPACES
from tests.migration.test_old_format import EXPECTED, old_store

__all__ = ["old_store"]  # the fixture, shared with tests/migration


async def test_old_data_exports_and_imports(
    old_store: tuple[str, DistributedMemoryBackend], tmp_path: Path
) -> None:
    kind, backend = old_store
    await backend.close()  # the manager connects it again (closing twice is safe)
    old = DistributedMemoryManager(settings=Settings(), backend=backend)
    fresh = DistributedMemoryManager(
        settings=Settings(memory_type="embedded", data_path=tmp_path / "fresh.db")
    )
    try:
        for ns in NAMESPACES:
            lines = [line async for line in old.for_namespace(ns).export_namespace()]
            counts = orjson.loads(lines[-1])["counts"]
            expected = EXPECTED[kind][ns]
            assert counts["entity"] == len(expected["entities"])
            assert counts["conversation"] == len(expected["conversations"])
            assert counts["feedback"] == len(expected["feedback"])

            async def chunks(data: list[bytes] = lines) -> AsyncIterator[bytes]:
                for line in data:
                    yield line

            await fresh.for_namespace(ns).import_namespace(chunks())
            again = [line async for line in fresh.for_namespace(ns).export_namespace()]
            assert again[1:] == lines[1:]
    finally:
        await fresh.close()
        await old.close()

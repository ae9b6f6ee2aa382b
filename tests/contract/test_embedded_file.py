"""The embedded backend's file: the page size a new file gets (and an existing one keeps),
whether a 1 KB entity stays on its B-tree page, the memory map, checkpoints (in their own
thread, the WAL bounded under steady writes), and the settings' errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.core.settings import Settings

NS = "file"


def _settings(path: Path, **overrides: int) -> Settings:
    settings = Settings(memory_type="embedded", data_path=path)
    return settings.model_copy(update=overrides)


def _pragma(path: Path, name: str) -> int:
    with sqlite3.connect(path) as conn:
        value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    assert isinstance(value, int)
    return value


def _overflow_pages(path: Path) -> int:
    """Overflow pages of the entities table (the dbstat table lists each page and its kind)."""
    with sqlite3.connect(path) as conn:
        count = conn.execute(
            "SELECT count(*) FROM dbstat WHERE name = 'entities' AND pagetype = 'overflow'"
        ).fetchone()[0]
    assert isinstance(count, int)
    return count


async def _fill(settings: Settings, count: int) -> EmbeddedMemoryBackend:
    backend = EmbeddedMemoryBackend(settings)
    await backend.connect()
    for i in range(count):
        await backend.save_entity(NS, "doc", f"d{i}", {"text": "x" * 1000, "i": i})
    return backend


async def test_a_new_file_gets_the_page_size_and_an_entity_stays_on_its_page(
    tmp_path: Path,
) -> None:
    path = tmp_path / "memstore.db"
    backend = await _fill(_settings(path), 200)
    try:
        record = await backend.load_entity(NS, "doc", "d7")
        assert record is not None and record.data["i"] == 7
    finally:
        await backend.close()
    assert _pragma(path, "page_size") == 8192
    # no entity row spilled to an overflow page (with 4 KiB pages each has one of its own)
    assert _overflow_pages(path) == 0


async def test_with_4_kib_pages_a_1_kb_entity_spills_to_an_overflow_page(tmp_path: Path) -> None:
    # The other side of the test above: what the default of SQLite costs.
    path = tmp_path / "memstore.db"
    backend = await _fill(_settings(path, embedded_page_size=4096), 50)
    await backend.close()
    assert _pragma(path, "page_size") == 4096
    assert _overflow_pages(path) >= 50


async def test_an_existing_file_keeps_its_page_size_and_its_data(tmp_path: Path) -> None:
    path = tmp_path / "memstore.db"
    backend = await _fill(_settings(path, embedded_page_size=4096), 20)
    await backend.close()
    reopened = EmbeddedMemoryBackend(_settings(path, embedded_page_size=16384))
    await reopened.connect()
    try:
        record = await reopened.load_entity(NS, "doc", "d19")
        assert record is not None and record.data["i"] == 19
        await reopened.save_entity(NS, "doc", "new", {"text": "y"})
    finally:
        await reopened.close()
    assert _pragma(path, "page_size") == 4096


async def test_the_connections_read_through_the_memory_map(tmp_path: Path) -> None:
    backend = await _fill(_settings(tmp_path / "memstore.db", embedded_mmap_size=1 << 24), 1)
    try:
        for thread in (backend._writer, backend._reader):
            assert thread is not None
            sizes = await thread.call(lambda conn: conn.execute("PRAGMA mmap_size").fetchone())
            assert sizes == (1 << 24,)
    finally:
        await backend.close()


async def test_writes_leave_checkpoints_to_their_own_connection(tmp_path: Path) -> None:
    backend = await _fill(_settings(tmp_path / "memstore.db"), 1)
    try:
        assert backend._writer is not None
        auto = await backend._writer.call(
            lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()
        )
        assert auto == (0,)
    finally:
        await backend.close()


async def test_the_wal_stays_bounded_under_steady_writes_and_is_emptied_at_close(
    tmp_path: Path,
) -> None:
    # 40,000 saves of 1 KB by 16 writers put ~270 MB through the WAL (~6.8 KB a save);
    # without checkpoints, or with passive ones alone (which cannot start the WAL over
    # while writes go on), the file grows to all of it.
    path = tmp_path / "memstore.db"
    wal = tmp_path / "memstore.db-wal"
    backend = EmbeddedMemoryBackend(_settings(path))
    await backend.connect()
    count, writers, largest = 40_000, 16, 0
    payload = {"text": "x" * 1000}

    async def write(first: int) -> None:
        nonlocal largest
        for i in range(first, count, writers):
            await backend.save_entity(NS, "doc", f"d{i}", payload)
            if i % 256 == 0:
                largest = max(largest, wal.stat().st_size)

    try:
        await asyncio.gather(*(write(w) for w in range(writers)))
    finally:
        await backend.close()
    assert 0 < largest < 160 << 20
    # the last connection to close checkpointed everything and removed the WAL
    assert not wal.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM entities").fetchone() == (count,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("size", ["4000", "256", "131072", "0", "-8192", "big"])
def test_a_page_size_sqlite_does_not_have_is_refused(
    size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMSTORE_EMBEDDED_PAGE_SIZE", size)
    with pytest.raises(ValidationError, match="MEMSTORE_EMBEDDED_PAGE_SIZE"):
        Settings()


def test_a_negative_memory_map_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTORE_EMBEDDED_MMAP_SIZE", "-1")
    with pytest.raises(ValidationError, match="MEMSTORE_EMBEDDED_MMAP_SIZE"):
        Settings()

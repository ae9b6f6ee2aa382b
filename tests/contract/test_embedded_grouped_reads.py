"""Grouped reads on the embedded backend: reads made while one is on the reader thread go
there together, each still gets its own rows (or its own error), sees every write that
committed before it was made, and is answered when the store closes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.core.errors import BackendUnavailableError
from memstore.core.settings import Settings

NS = "reads"


class ReadGroupRecordingBackend(EmbeddedMemoryBackend):
    """Records how many reads each call to the reader thread takes (a read alone: 1; a
    group: at most 32)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.hops: list[int] = []

    async def _read_group(self, group: list[Any]) -> list[Any]:
        self.hops.append(len(group))
        return await super()._read_group(group)


@pytest.fixture
async def embedded(embedded_settings: Settings) -> AsyncIterator[ReadGroupRecordingBackend]:
    backend = ReadGroupRecordingBackend(embedded_settings)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


async def test_reads_made_together_share_hops_and_get_their_own_rows(
    embedded: ReadGroupRecordingBackend,
) -> None:
    for i in range(50):
        await embedded.save_entity(NS, "user", f"u{i}", {"n": i})
    embedded.hops.clear()
    records = await asyncio.gather(*(embedded.load_entity(NS, "user", f"u{i}") for i in range(50)))
    assert [r.data["n"] if r else None for r in records] == list(range(50))
    # the first alone (nothing was on the thread), then the 49 that waited: 32, then 17
    assert embedded.hops == [1, 32, 17]


async def test_a_failing_read_fails_alone_in_its_group(
    embedded: ReadGroupRecordingBackend,
) -> None:
    await embedded.save_entity(NS, "user", "u1", {"n": 1})
    embedded.hops.clear()
    outcomes = await asyncio.gather(
        embedded.load_entity(NS, "user", "u1"),  # alone
        embedded._fetchall("SELECT * FROM no_such_table", ()),  # these three: one group
        embedded.load_entity(NS, "user", "u1"),
        embedded.load_entity(NS, "user", "u2"),
        return_exceptions=True,
    )
    assert embedded.hops == [1, 3]
    first, failed, again, missing = outcomes
    assert getattr(first, "version", None) == 1
    assert isinstance(failed, BackendUnavailableError)
    assert "no_such_table" in str(failed)
    assert getattr(again, "version", None) == 1
    assert missing is None


async def test_a_read_sees_every_write_committed_before_it_was_made(
    embedded: ReadGroupRecordingBackend,
) -> None:
    """Readers keep the thread busy, so every read of the writer's task goes in a group;
    each must still see the write its task just had acknowledged."""
    await embedded.save_entity(NS, "user", "hot", {"n": 0})
    stop = False

    async def reader(i: int) -> None:
        while not stop:
            await embedded.load_entity(NS, "user", f"other{i}")

    readers = [asyncio.create_task(reader(i)) for i in range(16)]
    try:
        for n in range(1, 101):
            await embedded.save_entity(NS, "user", "hot", {"n": n})
            record = await embedded.load_entity(NS, "user", "hot")
            assert record is not None and record.data == {"n": n}
    finally:
        stop = True
        await asyncio.gather(*readers)
    assert max(embedded.hops) > 1  # the reads were grouped


async def test_a_cancelled_reader_takes_only_its_own_read_away(
    embedded: ReadGroupRecordingBackend,
) -> None:
    await embedded.save_entity(NS, "user", "u1", {"n": 1})
    first = asyncio.create_task(embedded.load_entity(NS, "user", "u1"))
    waiting = [asyncio.create_task(embedded.load_entity(NS, "user", "u1")) for _ in range(5)]
    await asyncio.sleep(0)  # all six made: the first on the thread, five waiting
    waiting[2].cancel()
    assert (await first) is not None
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert all(getattr(r, "version", None) == 1 for i, r in enumerate(results) if i != 2)


async def test_a_close_answers_every_read(embedded_settings: Settings) -> None:
    backend = ReadGroupRecordingBackend(embedded_settings)
    await backend.connect()
    await backend.save_entity(NS, "user", "u1", {"n": 1})
    reads = [asyncio.create_task(backend.load_entity(NS, "user", "u1")) for _ in range(100)]
    await asyncio.sleep(0)  # one read on the thread, 99 waiting
    await backend.close()
    # a read left waiting would hang: the deadline turns that into a failure
    done = await asyncio.wait_for(asyncio.gather(*reads, return_exceptions=True), 30)
    assert all(
        getattr(r, "version", None) == 1 or isinstance(r, BackendUnavailableError) for r in done
    )
    assert any(isinstance(r, BackendUnavailableError) for r in done)
    with pytest.raises(BackendUnavailableError):
        await backend.load_entity(NS, "user", "u1")

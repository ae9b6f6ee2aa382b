"""The manager's read-your-writes path: ``get_entity(min_version=..., use_cache=...)``, and
the claim that a manager needs no token for its own writes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.core.errors import InvalidInputError
from memstore.core.records import EntityRecord
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager

NS = "unit"


@pytest.fixture
async def manager(embedded_settings: Settings) -> AsyncIterator[DistributedMemoryManager]:
    async with DistributedMemoryManager(settings=embedded_settings, namespace=NS) as m:
        yield m


def cache_figures(manager: DistributedMemoryManager) -> dict[str, int]:
    c = manager.get_metrics()["cache"]
    keys = ("hits", "misses", "min_version_hits", "min_version_misses", "min_version_refused")
    return {k: c[k] for k in (*keys, "bypasses")}


async def stale_copy(manager: DistributedMemoryManager) -> None:
    """The manager caches version 1 of doc/a while the store holds version 2 (another
    replica's write whose invalidation has not arrived)."""
    await manager.save_entity("doc", "a", {"v": 1})
    assert (await manager.get_entity("doc", "a")) is not None  # cached now
    await manager.backend.save_entity(NS, "doc", "a", {"v": 2})
    cached = await manager.get_entity("doc", "a")
    assert cached is not None
    assert cached.version == 1


async def test_a_cached_copy_older_than_min_version_is_not_served(
    manager: DistributedMemoryManager,
) -> None:
    await stale_copy(manager)
    before = cache_figures(manager)
    fresh = await manager.get_entity("doc", "a", min_version=2)
    assert fresh is not None
    assert (fresh.version, fresh.data) == (2, {"v": 2})
    after = cache_figures(manager)
    assert after["min_version_refused"] == before["min_version_refused"] + 1
    assert after["min_version_misses"] == before["min_version_misses"] + 1
    assert after["misses"] == before["misses"] + 1
    assert after["hits"] == before["hits"]
    # The fresh copy replaced the old one: readers without a token get it from the cache.
    again = await manager.get_entity("doc", "a")
    assert again is fresh
    assert cache_figures(manager)["hits"] == after["hits"] + 1


async def test_a_cached_copy_at_or_past_min_version_is_served(
    manager: DistributedMemoryManager,
) -> None:
    await stale_copy(manager)
    before = cache_figures(manager)
    for floor in (1, 1):
        cached = await manager.get_entity("doc", "a", min_version=floor)
        assert cached is not None
        assert cached.version == 1  # the token asks for no more than it knows
    after = cache_figures(manager)
    assert after["min_version_hits"] == before["min_version_hits"] + 2
    assert after["hits"] == before["hits"] + 2
    assert after["min_version_refused"] == before["min_version_refused"]


async def test_min_version_is_not_a_precondition(manager: DistributedMemoryManager) -> None:
    """A floor above the stored version reads the backend and answers what is stored; so
    does a floor for a deleted entity."""
    await manager.save_entity("doc", "a", {"v": 1})
    record = await manager.get_entity("doc", "a", min_version=9)
    assert record is not None
    assert record.version == 1
    assert await manager.get_entity("doc", "missing", min_version=3) is None


async def test_use_cache_false_reads_the_backend(manager: DistributedMemoryManager) -> None:
    await stale_copy(manager)
    before = cache_figures(manager)
    fresh = await manager.get_entity("doc", "a", use_cache=False)
    assert fresh is not None
    assert fresh.version == 2
    after = cache_figures(manager)
    assert after["bypasses"] == before["bypasses"] + 1
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
    cached = await manager.get_entity("doc", "a")
    assert cached is fresh  # the fresh copy was cached for everyone


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "2"])
async def test_a_bad_min_version_is_invalid_input(
    manager: DistributedMemoryManager, bad: Any
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        await manager.get_entity("doc", "a", min_version=bad)
    assert caught.value.details == {"field": "min_version"}


# -- the manager's own writes need no token ------------------------------------------


class GatedBackend(EmbeddedMemoryBackend):
    """Entity loads read the store, then wait for ``gate`` before answering: a load that
    read the old state can be held until after a write has come and gone."""

    gate: asyncio.Event | None = None
    loaded: asyncio.Event | None = None

    async def load_entity(self, *args: Any, **kwargs: Any) -> EntityRecord | None:
        record = await super().load_entity(*args, **kwargs)
        if self.gate is not None and self.loaded is not None:
            self.loaded.set()
            await self.gate.wait()
        return record


async def test_a_load_that_read_before_an_own_write_does_not_cache_the_old_state(
    embedded_settings: Settings,
) -> None:
    backend = GatedBackend(embedded_settings)
    async with DistributedMemoryManager(
        settings=embedded_settings, namespace=NS, backend=backend
    ) as manager:
        await manager.save_entity("doc", "a", {"v": 1})
        backend.gate = asyncio.Event()
        backend.loaded = asyncio.Event()
        slow_read = asyncio.create_task(manager.get_entity("doc", "a"))
        await backend.loaded.wait()  # it has read version 1 and waits to answer
        written = await manager.save_entity("doc", "a", {"v": 2})
        backend.gate.set()
        old = await slow_read
        assert old is not None
        assert old.version == 1  # concurrent with the write: either answer is right
        backend.gate = None
        after = await manager.get_entity("doc", "a")
        assert after is not None
        assert after.version == written.version == 2
        assert await manager.get_entity("doc", "a") is after  # and that is what is cached


@pytest.mark.parametrize("store", ["embedded", "redis"])
async def test_own_writes_are_never_read_stale_under_concurrent_readers(
    store: str, request: pytest.FixtureRequest
) -> None:
    """Write-then-read pairs through one manager while other readers keep loading the
    same keys into its cache: no pair reads a version older than its write."""
    settings: Settings = request.getfixturevalue(f"{store}_settings")
    settings = settings.model_copy(update={"cache_ttl_seconds": 300.0})
    keys = [f"k{i}" for i in range(8)]
    stale: list[tuple[str, int, int]] = []
    done = asyncio.Event()
    async with DistributedMemoryManager(settings=settings, namespace=NS) as manager:
        rng = random.Random(7)

        async def reader() -> None:
            while not done.is_set():
                await manager.get_entity("doc", rng.choice(keys))
                await asyncio.sleep(0)  # a cache hit never yields

        async def pairs(own: list[str]) -> None:
            for i in range(150):
                eid = own[i % len(own)]
                written = await manager.save_entity("doc", eid, {"i": i})
                read = await manager.get_entity("doc", eid)
                if read is None or read.version < written.version:
                    stale.append((eid, written.version, -1 if read is None else read.version))

        readers = [asyncio.create_task(reader()) for _ in range(4)]
        try:
            await asyncio.gather(*(pairs(keys[w::4]) for w in range(4)))
        finally:
            done.set()
            await asyncio.gather(*readers)
        assert stale == []
        assert manager.get_metrics()["cache"]["hits"] > 0  # the cache was in use


@pytest.mark.parametrize("read", ["min_version", "no_cache"])
async def test_a_deleted_entity_found_by_a_fresh_read_leaves_the_cache(
    manager: DistributedMemoryManager, read: str
) -> None:
    """Another replica deleted doc/a; a reader who knows it reads the backend (nothing
    there), and readers without a token stop getting the cached copy too."""
    await manager.save_entity("doc", "a", {"v": 1})
    assert (await manager.get_entity("doc", "a")) is not None  # cached now
    await manager.backend.delete_entity(NS, "doc", "a")
    assert (await manager.get_entity("doc", "a")) is not None  # the stale copy
    if read == "min_version":
        assert await manager.get_entity("doc", "a", min_version=2) is None
    else:
        assert await manager.get_entity("doc", "a", use_cache=False) is None
    assert await manager.get_entity("doc", "a") is None

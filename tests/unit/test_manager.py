"""The manager over the real embedded backend: cache use, invalidation hook, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from memstore.core.errors import ConflictError, InvalidInputError
from memstore.core.keys import conversation_change_key
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager


@pytest.fixture
async def manager(embedded_settings: Settings) -> AsyncIterator[DistributedMemoryManager]:
    async with DistributedMemoryManager(settings=embedded_settings, namespace="unit") as m:
        yield m


async def test_reads_are_served_from_the_cache_until_invalidated(
    manager: DistributedMemoryManager,
) -> None:
    await manager.save_entity("user", "u1", {"v": 1})
    assert await manager.load_entity("user", "u1") == {"v": 1}
    # Another replica writes straight to the shared store: this replica still has its copy.
    await manager.backend.save_entity("unit", "user", "u1", {"v": 2})
    assert await manager.load_entity("user", "u1") == {"v": 1}
    # ... until the invalidation for that key arrives through the backend's hook.
    await manager._on_invalidation("entity/unit/user/u1")
    assert await manager.load_entity("user", "u1") == {"v": 2}


async def test_another_replicas_conversation_change_leaves_the_cache_alone(
    manager: DistributedMemoryManager,
) -> None:
    """A conversation's change key arrives on the bus once per append made on another
    replica: its listeners hear it, but the entity cache neither drops an entry nor moves
    its generation (an entity load in flight would otherwise not be cached)."""
    heard: list[str | None] = []
    manager.add_change_listener(heard.append)
    await manager.save_entity("user", "u1", {"v": 1})
    await manager.load_entity("user", "u1")
    cache = manager._shared.cache
    generation = cache.begin_load()
    before = manager.get_metrics()["cache"]
    await manager._on_invalidation(conversation_change_key("unit", "u1"))
    assert heard[-1] == "conversation/unit/u1"
    assert cache.begin_load() == generation
    after = manager.get_metrics()["cache"]
    assert (after["entries"], after["invalidations"], after["flushes"]) == (
        before["entries"],
        before["invalidations"],
        before["flushes"],
    )
    # still a hit: the copy was kept
    await manager.backend.save_entity("unit", "user", "u1", {"v": 2})
    assert await manager.load_entity("user", "u1") == {"v": 1}


async def test_invalidate_all_when_the_channel_drops(manager: DistributedMemoryManager) -> None:
    for i in range(3):
        await manager.save_entity("doc", f"d{i}", {"i": i})
        await manager.load_entity("doc", f"d{i}")
    await manager.backend.save_entity("unit", "doc", "d0", {"i": 100})
    await manager._on_invalidation(None)
    assert await manager.load_entity("doc", "d0") == {"i": 100}
    assert manager.get_metrics()["cache"]["flushes"] == 1


async def test_own_writes_and_deletes_are_seen_immediately(
    manager: DistributedMemoryManager,
) -> None:
    await manager.save_entity("user", "u1", {"v": 1})
    await manager.load_entity("user", "u1")
    await manager.save_entity("user", "u1", {"v": 2})
    assert await manager.load_entity("user", "u1") == {"v": 2}
    assert await manager.delete_entity("user", "u1")
    assert await manager.load_entity("user", "u1") is None


async def test_metrics_count_operations_errors_and_cache(manager: DistributedMemoryManager) -> None:
    await manager.save_entity("user", "u1", {"v": 1})
    await manager.load_entity("user", "u1")  # miss, then cached
    await manager.load_entity("user", "u1")  # hit
    with pytest.raises(ConflictError):
        await manager.save_entity("user", "u1", {"v": 2}, expected_version=7)
    with pytest.raises(InvalidInputError):
        await manager.save_entity("user", "bad/id", {})

    metrics = manager.get_metrics()
    assert metrics["backend"] == "embedded"
    assert metrics["cache"]["hits"] == 1
    assert metrics["cache"]["misses"] == 1
    assert metrics["operations"]["save_entity"]["count"] >= 2
    assert metrics["operations"]["save_entity"]["errors"] >= 1
    assert metrics["total_errors"] >= 1
    await manager.load_entity("user", "u1")
    assert manager.clear_cache() == 1
    assert manager.get_metrics()["cache"]["entries"] == 0


async def test_namespace_views_share_cache_but_not_data(manager: DistributedMemoryManager) -> None:
    other = manager.for_namespace("other")
    await manager.save_entity("user", "u1", {"owner": "unit"})
    assert await other.load_entity("user", "u1") is None
    await other.save_entity("user", "u1", {"owner": "other"})
    assert await manager.load_entity("user", "u1") == {"owner": "unit"}
    assert other.get_metrics() == manager.get_metrics() | {
        "uptime_seconds": other.get_metrics()["uptime_seconds"]
    }


async def test_integers_wider_than_64_bits_are_invalid_input_as_over_http(
    manager: DistributedMemoryManager,
) -> None:
    # The same rule as the HTTP API's body reader (bounds.JSON_INTEGER): refused, never
    # rounded; the edges are kept exactly.
    for wide in (2**64, -(2**63) - 1):
        with pytest.raises(InvalidInputError):
            await manager.save_entity("n", "wide", {"x": [1, {"y": wide}]})
        with pytest.raises(InvalidInputError):
            await manager.append_messages([{"n": wide}], "c")
    assert await manager.get_entity("n", "wide") is None
    saved = await manager.save_entity("n", "edge", {"x": 2**64 - 1, "y": -(2**63)})
    assert saved.data == {"x": 2**64 - 1, "y": -(2**63)}


async def test_change_listeners_hear_every_write_and_the_bus(
    manager: DistributedMemoryManager, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[str | None] = []

    def broken(key: str | None) -> None:
        raise RuntimeError("a listener's bug")

    remove = manager.add_change_listener(heard.append)
    remove_broken = manager.add_change_listener(broken)
    other = manager.for_namespace("other")
    await manager.save_entity("doc", "d1", {"v": 1})
    with pytest.raises(ConflictError):  # failed writes are told too: they may have landed
        await manager.save_entity("doc", "d1", {"v": 2}, expected_version=5)
    await other.delete_entity("doc", "d1")
    await manager.append_messages([{"m": 1}], "c1")
    await manager.pop_message("c1")
    await manager.save_conversation_history([], "c1")
    await manager.delete_conversation("c1")
    await manager._on_invalidation("entity/unit/doc/d2")  # another replica's write
    await manager._on_invalidation(None)  # the bus dropped
    assert heard == [
        "entity/unit/doc/d1",
        "entity/unit/doc/d1",
        "entity/other/doc/d1",
        "conversation/unit/c1",
        "conversation/unit/c1",
        "conversation/unit/c1",
        "conversation/unit/c1",
        "entity/unit/doc/d2",
        None,
    ]
    assert "change listener failed" in caplog.text  # logged, the writes went on
    remove()
    remove_broken()
    await manager.save_entity("doc", "d3", {})
    assert len(heard) == 9

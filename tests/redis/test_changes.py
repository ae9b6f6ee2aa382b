"""The Redis change log beyond the contract: a writer dying between its write and its
relay (Cluster), the background round (relay, expiry prune, retention), and the events
only the Redis backend's own clean-ups write (``entity.expired``, ``tool_usage.pruned``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memstore.backends.redis import RedisMemoryBackend, scripts
from memstore.core import changes
from memstore.core.records import ChangeEvent, ToolUsageRecord
from memstore.core.settings import Settings


class DiesAfterTheWrite(RedisMemoryBackend):
    """A writer whose process dies right after a write script ran: the data step alone
    (the script, with its change block), and no relay. The reply is returned as the
    plain backend would, so the caller can go on as if nothing happened."""

    async def _write(
        self, script: scripts.Script, ns: str, tag: str, keys: list[str], args: list[Any]
    ) -> Any:
        reply = await self.connection.write(script, keys, args)
        return reply[0] if self.cluster_mode else reply


@pytest.fixture
def ns() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


async def log_of(backend: RedisMemoryBackend, ns: str) -> list[ChangeEvent]:
    return (await backend.read_changes(ns, after=0, limit=1000)).events


async def outbox_lengths(backend: RedisMemoryBackend, ns: str) -> int:
    outboxes = backend._outboxes(ns, await backend._types_ever(ns))
    return sum(int(n) for n in await backend.connection.pipeline([("XLEN", o) for o in outboxes]))


@pytest.fixture
async def dying(any_redis_settings: Settings) -> AsyncIterator[RedisMemoryBackend]:
    backend = DiesAfterTheWrite(any_redis_settings)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


async def test_a_writer_that_dies_before_the_relay_loses_no_event(
    redis_backend: RedisMemoryBackend, dying: RedisMemoryBackend, ns: str
) -> None:
    await redis_backend.save_entity(ns, "doc", "before", {"n": 0})
    await dying.save_entity(ns, "doc", "lost", {"n": 1})
    await dying.append_messages(ns, "conv", [{"n": 2}, {"n": 3}])
    shown = [(e.kind, e.entity_id, e.conversation_id) for e in await log_of(redis_backend, ns)]
    if redis_backend.cluster_mode:
        # the events wait in their slots' outboxes: nothing relayed them yet
        assert shown == [(changes.ENTITY_SAVED, "before", None)]
        assert await outbox_lengths(redis_backend, ns) >= 2
    for _ in range(2):  # the round is idempotent: a second one relays nothing again
        await redis_backend.purge_expired()
        events = await log_of(redis_backend, ns)
        assert [(e.position, e.kind, e.entity_id, e.conversation_id) for e in events] == [
            (1, changes.ENTITY_SAVED, "before", None),
            (2, changes.ENTITY_SAVED, "lost", None),
            (3, changes.CONVERSATION_APPENDED, None, "conv"),
        ]
    assert (events[1].version, events[2].version, events[2].count) == (1, 2, 2)
    assert await outbox_lengths(redis_backend, ns) == 0  # relayed entries are dropped
    await redis_backend.save_entity(ns, "doc", "after", {"n": 4})
    assert [e.position for e in await log_of(redis_backend, ns)] == [1, 2, 3, 4]


async def test_the_next_writer_of_the_shard_relays_a_dead_writers_event_first(
    redis_backend: RedisMemoryBackend, dying: RedisMemoryBackend, ns: str
) -> None:
    """Per key the log keeps write order even when the first writer died before its
    relay: the next write on the same slot relays the outbox oldest first."""
    await dying.save_entity(ns, "doc", "k", {"n": 1})
    await redis_backend.save_entity(ns, "doc", "k", {"n": 2})
    events = await log_of(redis_backend, ns)
    assert [(e.position, e.entity_id, e.version) for e in events] == [(1, "k", 1), (2, "k", 2)]
    await redis_backend.purge_expired()
    assert len(await log_of(redis_backend, ns)) == 2


@pytest.fixture
async def small_log(any_redis_settings: Settings) -> AsyncIterator[RedisMemoryBackend]:
    settings = any_redis_settings.model_copy(
        update={"changes_max_events": 5, "changes_retention_seconds": 0.5}
    )
    backend = RedisMemoryBackend(settings)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


async def test_the_background_round_applies_retention_to_every_namespace(
    small_log: RedisMemoryBackend, ns: str
) -> None:
    other = f"{ns}o"
    for i in range(12):
        await small_log.save_entity(ns, f"t{i % 3}", f"e{i}", {"i": i})
        await small_log.append_messages(other, f"c{i}", [{"i": i}])
    await small_log.purge_expired()
    for name in (ns, other):
        page = await small_log.read_changes(name, after=0, limit=100)
        assert [e.position for e in page.events] == [8, 9, 10, 11, 12]
        assert await outbox_lengths(small_log, name) == 0
    await asyncio.sleep(0.6)
    await small_log.purge_expired()
    for name in (ns, other):
        page = await small_log.read_changes(name, after=0, limit=100)
        assert (page.events, page.first_position, page.last_position) == ([], 13, 12)


async def test_retention_by_age_removes_only_old_events(
    small_log: RedisMemoryBackend, ns: str
) -> None:
    await small_log.save_entity(ns, "doc", "old", {})
    await asyncio.sleep(0.6)
    await small_log.save_entity(ns, "doc", "new", {})
    await small_log.trim_changes(ns)
    page = await small_log.read_changes(ns, after=0, limit=100)
    assert [(e.position, e.entity_id) for e in page.events] == [(2, "new")]
    assert (page.first_position, page.last_position) == (2, 2)


async def test_expired_entities_are_logged_when_the_backend_removes_them(
    redis_backend: RedisMemoryBackend, ns: str
) -> None:
    await redis_backend.save_entity(ns, "doc", "short", {"a": 1}, ttl=0.2)
    await redis_backend.save_entity(ns, "doc", "short", {"a": 2}, ttl=0.2)
    await redis_backend.save_entity(ns, "doc", "leftover", {"a": 3}, ttl=0.2)
    await redis_backend.save_entity(ns, "doc", "kept", {"a": 4})
    await asyncio.sleep(0.3)
    # a delete of an expired entity finds nothing, but removes what is left of it
    assert await redis_backend.delete_entity(ns, "doc", "leftover") is False
    await redis_backend.purge_expired()  # the prune of the indexes (summary, listing alike)
    await redis_backend.purge_expired()  # pruned once, logged once
    events = await log_of(redis_backend, ns)
    assert [(e.kind, e.entity_type, e.entity_id, e.version, e.actor) for e in events[4:]] == [
        (changes.ENTITY_EXPIRED, "doc", "leftover", 1, None),
        (changes.ENTITY_EXPIRED, "doc", "short", 2, None),
    ]
    assert [e.position for e in events] == [1, 2, 3, 4, 5, 6]


async def test_pruned_tool_usage_is_logged_with_its_count(
    any_redis_settings: Settings, ns: str
) -> None:
    settings = any_redis_settings.model_copy(update={"redis_tool_usage_retention_seconds": 1.0})
    backend = RedisMemoryBackend(settings)
    await backend.connect()
    try:
        for i in range(10):
            record = ToolUsageRecord(
                id=f"u{i:03d}",
                tool_name="search",
                input={},
                output=None,
                duration_ms=1.0,
                success=True,
                timestamp=time.time(),
            )
            await backend.record_tool_usage(ns, record)
        await asyncio.sleep(1.2)
        assert (await backend.summary(ns)).tool_usage_counts == {}  # trims every shard
        await backend.purge_expired()  # on a cluster: relays the trims' outbox entries
        await backend.summary(ns)  # nothing left to trim, nothing logged
        events = await log_of(backend, ns)
        assert [e.kind for e in events[:10]] == [changes.TOOL_USAGE_RECORDED] * 10
        pruned = events[10:]
        assert {(e.kind, e.actor, e.record_id) for e in pruned} == {
            (changes.TOOL_USAGE_PRUNED, None, None)
        }
        assert sum(e.count or 0 for e in pruned) == 10
        assert [e.position for e in events] == list(range(1, len(events) + 1))
    finally:
        await backend.close()

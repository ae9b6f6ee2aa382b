"""Redis analytics over data written before its indexes existed (an upgrade in place)."""

from __future__ import annotations

import uuid

import pytest

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.analytics import BucketWindow
from tests.contract.test_analytics import H0, HOUR, T0, Clock, counts


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


async def test_a_replace_backfills_the_creation_index(
    redis_backend: RedisMemoryBackend, clock: Clock
) -> None:
    ns = f"up{uuid.uuid4().hex[:8]}"
    clock.now = T0 + 600
    await redis_backend.save_entity(ns, "doc", "old", {"n": 1})
    k = redis_backend.keys
    # the pre-upgrade state: the entity is stored, the creation-time index does not exist
    await redis_backend.connection.execute("DEL", k.entity_created(k.entity_tag(ns, "doc", "old")))
    clock.now = T0 + 2 * HOUR
    await redis_backend.save_entity(ns, "doc", "old", {"n": 2})
    overview = (await redis_backend.analytics_overview(ns)).to_dict()
    assert overview["entities"] == {
        "count": 1,
        "bytes": 7,
        "oldest": T0 + 600,
        "newest": T0 + 600,
    }
    growth = await redis_backend.analytics_growth(ns, "entities", BucketWindow("hour", H0, H0 + 3))
    assert counts(growth.to_dict()) == {0: 1}


async def test_the_entity_scripts_touch_the_creation_index_they_are_given(
    redis_backend: RedisMemoryBackend,
) -> None:
    """Every key a script touches comes in its KEYS: given another (same-slot) name for the
    creation-time index, save, prune and delete use that one."""
    import time

    from memstore.backends.redis import scripts

    backend = redis_backend
    ns = f"keys{uuid.uuid4().hex[:8]}"
    k = backend.keys
    tag = k.entity_tag(ns, "doc", "a")
    created = f"test:{{{tag}}}:created"
    # index, expiry, sizes, bytes, the creation index under test, history index
    shard = [*backend._entity_shard_keys(tag)[:4], created, k.entity_history_index(tag)]
    tomb = k.entity_tombstone(tag, "a")
    now = time.time()

    def entity_keys(entity_id: str) -> list[str]:
        return [k.entity(tag, entity_id), *shard, k.entity_history(tag, entity_id)]

    async def save(entity_id: str, expires_at: float | None) -> None:
        exp = repr(expires_at) if expires_at is not None else ""
        args = [entity_id, b"{}", repr(now), exp, "", f"op-{entity_id}", ""]
        reply = await backend.connection.write(scripts.SAVE_ENTITY, entity_keys(entity_id), args)
        assert reply[0] == b"ok"

    await save("a", None)
    await save("b", now + 5)
    execute = backend.connection.execute
    assert await execute("ZRANGE", created, 0, -1) == [b"a", b"b"]
    # b expired by "now + 10": the prune of a count drops it from the index it was given
    # (no change block; then the entity and history key prefixes)
    no_log = ["", "", "", ""]
    prefixes = [k.entity(tag, ""), k.entity_history(tag, ""), k.entity_version_prefix(tag)]
    count = ("SCRIPT", scripts.COUNT_ENTITIES, shard, [repr(now + 10), *no_log, *prefixes])
    assert await backend.connection.pipeline([count]) == [1]
    assert await execute("ZRANGE", created, 0, -1) == [b"a"]
    reply = await backend.connection.write(
        scripts.DELETE_ENTITY,
        [*entity_keys("a"), tomb],
        # id, now, expected, op, no announcement, no change block, no actor, version prefix
        ["a", repr(now), "", "op-del", *[""] * 3, *no_log, "", k.entity_version_prefix(tag)],
    )
    assert reply == [b"ok", b"1"]
    assert await execute("EXISTS", created) == 0

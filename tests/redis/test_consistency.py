"""Exact listings and counts after concurrent writers and deleters, and TTL, on
standalone Redis and on the Redis Cluster."""

from __future__ import annotations

import asyncio
import random
import uuid

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.records import EntityRecord
from memstore.core.settings import Settings


async def _walk(backend: RedisMemoryBackend, ns: str, etype: str, limit: int) -> list[EntityRecord]:
    out: list[EntityRecord] = []
    cursor: str | None = None
    while True:
        page = await backend.list_entities(ns, etype, limit=limit, cursor=cursor)
        out += page.items
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


async def test_list_and_summary_exact_after_concurrent_writes_and_deletes(
    any_redis_settings: Settings,
) -> None:
    # Two backend instances = two service replicas on the same data.
    replicas = [RedisMemoryBackend(any_redis_settings) for _ in range(2)]
    for r in replicas:
        await r.connect()
    ns = f"exact{uuid.uuid4().hex[:8]}"
    rng = random.Random(7)
    ids = [f"e{i:04d}" for i in range(400)]
    # Each id is owned by one task, so the final state per id is known exactly; tasks on
    # both replicas interleave freely across shards.
    plan: dict[str, list[str]] = {i: rng.choices(["save", "delete"], k=6) for i in ids}
    try:

        async def worker(chunk: list[str], backend: RedisMemoryBackend) -> None:
            for eid in chunk:
                for op in plan[eid]:
                    if op == "save":
                        await backend.save_entity(ns, "item", eid, {"id": eid})
                    else:
                        await backend.delete_entity(ns, "item", eid)

        chunks = [ids[j::16] for j in range(16)]
        await asyncio.gather(*(worker(c, replicas[j % 2]) for j, c in enumerate(chunks)))
        # conversations and tool usage at the same time
        convs = [f"c{i}" for i in range(12)]

        async def talker(cid: str, backend: RedisMemoryBackend) -> None:
            for n in range(10):
                await backend.append_messages(ns, cid, [{"n": n}, {"n": n, "b": True}])

        await asyncio.gather(*(talker(c, replicas[i % 2]) for i, c in enumerate(convs)))
        for cid in convs[:3]:
            assert await replicas[1].delete_conversation(ns, cid)

        alive = sorted(i for i in ids if plan[i][-1] == "save")
        for backend in replicas:
            listed = await _walk(backend, ns, "item", limit=37)
            assert [e.id for e in listed] == alive
            summary = await backend.summary(ns)
            assert summary.entity_counts == ({"item": len(alive)} if alive else {})
            assert summary.conversations == 9
            assert summary.messages == 9 * 20
            assert await backend.get_entity_types(ns) == ["item"]
            history = await backend.load_messages(ns, "c5")
            assert [m.seq for m in history] == list(range(1, 21))
            last = await backend.load_messages(ns, "c5", limit=3)
            assert [m.seq for m in last] == [18, 19, 20]
    finally:
        for r in replicas:
            await r.close()


async def test_expired_entities_vanish_into_their_history(
    redis_backend: RedisMemoryBackend,
) -> None:
    backend = redis_backend
    ns = f"ttl{uuid.uuid4().hex[:8]}"
    for i in range(40):
        await backend.save_entity(ns, "tmp", f"t{i:02d}", {"i": i}, ttl=1.0)
    for i in range(10):
        await backend.save_entity(ns, "keep", f"k{i}", {"i": i})
    # a TTL entity made permanent again, and a permanent one given a TTL
    await backend.save_entity(ns, "tmp", "t00", {"i": 0})
    await backend.save_entity(ns, "keep", "k0", {"i": 0}, ttl=1.0)

    client = backend.connection.client
    key, _, _, _, _, _, _, history = backend._entity_keys(ns, "tmp", "t05")
    # no Redis expiry: the expired row must outlive its expiry to join the history
    assert int(await client.execute_command("PTTL", key)) == -1

    summary = await backend.summary(ns)
    assert summary.entity_counts == {"tmp": 40, "keep": 10}

    await asyncio.sleep(1.3)
    assert await backend.load_entity(ns, "tmp", "t05") is None
    assert [e.id for e in await _walk(backend, ns, "tmp", limit=7)] == ["t00"]
    assert [e.id for e in await _walk(backend, ns, "keep", limit=7)] == [
        f"k{i}" for i in range(1, 10)
    ]
    summary = await backend.summary(ns)
    assert summary.entity_counts == {"tmp": 1, "keep": 9}
    # the listing's prune moved the expired row into the entity's history
    assert int(await client.execute_command("EXISTS", key)) == 0
    assert int(await client.execute_command("ZCARD", history)) == 1
    k = backend.keys
    renamed = k.entity_version(k.entity_tag(ns, "tmp", "t05"), 1, "t05")
    assert int(await client.execute_command("PTTL", renamed)) == -1  # a row never expires
    versions = (await backend.list_entity_versions(ns, "tmp", "t05")).items
    assert [(v.version, v.deleted, v.data) for v in versions] == [(1, False, {"i": 5})]
    # re-creating an expired entity numbers on from it
    again = await backend.save_entity(ns, "tmp", "t05", {"again": True})
    assert again.version == 2
    assert (await backend.summary(ns)).entity_counts == {"tmp": 2, "keep": 9}


async def test_expired_index_entries_are_pruned(redis_backend: RedisMemoryBackend) -> None:
    backend = redis_backend
    ns = f"prune{uuid.uuid4().hex[:8]}"
    for i in range(30):
        await backend.save_entity(ns, "tmp", f"t{i:02d}", {"i": i}, ttl=0.5)
    await asyncio.sleep(0.8)
    assert (await backend.summary(ns)).entity_counts == {}
    client = backend.connection.client
    k = backend.keys
    leftovers = 0
    for tag in k.entity_tags(ns, "tmp"):
        leftovers += int(await client.execute_command("ZCARD", k.entity_index(tag)))
        leftovers += int(await client.execute_command("ZCARD", k.entity_expiry(tag)))
    assert leftovers == 0  # counting pruned the indexes: no unbounded growth


async def test_tool_usage_retention_bound(any_redis_settings: Settings) -> None:
    import time

    from memstore.core.records import ToolUsageRecord

    settings = any_redis_settings.model_copy(update={"redis_tool_usage_retention_seconds": 100.0})
    backend = RedisMemoryBackend(settings)
    await backend.connect()
    ns = f"keep{uuid.uuid4().hex[:8]}"
    now = time.time()

    def use(i: int, ts: float) -> ToolUsageRecord:
        return ToolUsageRecord(
            id=f"u{i:03d}", tool_name="search" if i % 2 else "fetch", input={"i": i},
            output=None, duration_ms=1.0, success=True, timestamp=ts,
        )  # fmt: skip

    try:
        for i in range(20):
            await backend.record_tool_usage(ns, use(i, now - 500 + i))  # beyond retention
        for i in range(20, 30):
            await backend.record_tool_usage(ns, use(i, now - 10 + i / 10))
        page = await backend.query_tool_usage(ns, limit=100)
        assert [r.id for r in page.items] == [f"u{i:03d}" for i in range(20, 30)]
        ranged = await backend.query_tool_usage(
            ns, tool_name="search", start=now - 10 + 2.15, end=now - 10 + 2.75, limit=100
        )
        assert [r.id for r in ranged.items] == ["u023", "u025", "u027"]
        summary = await backend.summary(ns)
        assert summary.tool_usage_counts == {"fetch": 5, "search": 5}
    finally:
        await backend.close()


async def test_a_retried_write_is_applied_once(redis_backend: RedisMemoryBackend) -> None:
    """The same script call sent twice (a retry after a lost reply) has one effect and
    the retry reports the first outcome."""
    import time

    from memstore.backends.redis import scripts

    backend = redis_backend
    ns = f"idem{uuid.uuid4().hex[:8]}"
    keys = backend._entity_keys(ns, "doc", "a")
    now = repr(time.time())
    save_args = ["a", b'{"v":1}', now, "", "0", "op-save", ""]
    first = await backend.connection.write(scripts.SAVE_ENTITY, keys, save_args)
    retry = await backend.connection.write(scripts.SAVE_ENTITY, keys, save_args)
    assert first[0] == retry[0] == b"ok"
    assert int(first[1]) == int(retry[1]) == 1  # create-only (expected 0) did not conflict
    rec = await backend.load_entity(ns, "doc", "a")
    assert rec is not None
    assert rec.version == 1

    tomb = backend.keys.entity_tombstone(backend.keys.entity_tag(ns, "doc", "a"), "a")
    # id, now, expected, op, no announcement, no change block, no actor, version prefix
    prefix = backend.keys.entity_version_prefix(backend.keys.entity_tag(ns, "doc", "a"))
    del_args = ["a", now, "1", "op-del", *[""] * 8, prefix]
    first = await backend.connection.write(scripts.DELETE_ENTITY, [*keys, tomb], del_args)
    retry = await backend.connection.write(scripts.DELETE_ENTITY, [*keys, tomb], del_args)
    assert first == retry == [b"ok", b"1"]  # not a conflict on "version 1 expected"
    assert await backend.load_entity(ns, "doc", "a") is None
    assert (await backend.summary(ns)).entity_counts == {}


async def test_a_retried_pop_returns_the_same_message(redis_backend: RedisMemoryBackend) -> None:
    """A pop sent twice with one operation id (a retry after a lost reply) pops once and
    the retry returns the same message, also when the pop emptied the conversation."""
    import time

    from memstore.backends.redis import scripts

    backend = redis_backend
    ns = f"idem{uuid.uuid4().hex[:8]}"
    await backend.append_messages(ns, "c", [{"n": 1}, {"n": 2}])
    k = backend.keys
    keys = [
        *backend._conversation_keys(ns, "c"),
        k.conversation_last_pop(k.conversation_tag(ns, "c"), "c"),
    ]
    for op, expected in (("op-pop-1", 2), ("op-pop-2", 1)):
        args = ["c", repr(time.time()), op]
        first = await backend.connection.write(scripts.POP_MESSAGE, keys, args)
        retry = await backend.connection.write(scripts.POP_MESSAGE, keys, args)
        assert first == retry
        assert first.startswith(f"{expected}\n".encode())
    assert await backend.load_messages(ns, "c") == []
    summary = await backend.summary(ns)
    assert (summary.conversations, summary.messages) == (0, 0)
    assert await backend.stored_bytes(ns) == 0
    # A new op id is a new pop: nothing left.
    assert await backend.connection.write(scripts.POP_MESSAGE, keys, ["c", "1.0", "op-3"]) is None

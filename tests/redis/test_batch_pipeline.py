"""A batch write on Redis and the cluster costs one pipeline, not a call per item."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.errors import BackendUnavailableError
from memstore.core.keys import entity_cache_key
from memstore.core.records import EntityWrite, MessagesWrite


def count_calls(backend: RedisMemoryBackend) -> Counter[str]:
    """Count the connection's calls (each is at least one round trip) made by this task
    (not the backend's background rounds), still made."""
    calls: Counter[str] = Counter()
    connection = backend.connection
    task = asyncio.current_task()
    # every command or script the backend sends goes through one of these
    for name in ("eval_once", "pipeline", "execute", "_durable_once"):
        real: Callable[..., Awaitable[Any]] = getattr(connection, name)

        async def counted(*args: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            if asyncio.current_task() is task:
                calls[_name] += 1
            return await _real(*args, **kw)

        setattr(connection, name, counted)
    return calls


@pytest.mark.parametrize("kind", ["entities", "messages"])
async def test_fifty_items_take_one_pipeline(redis_backend: RedisMemoryBackend, kind: str) -> None:
    ns = f"p{uuid.uuid4().hex[:10]}"
    await redis_backend.save_entity(ns, "note", "first", {})  # registers the namespace, type
    await redis_backend.append_messages(ns, "first", [{}])
    calls = count_calls(redis_backend)
    if kind == "entities":
        records = await redis_backend.save_entities(
            ns, [EntityWrite("note", f"n{i}", {"i": i}) for i in range(50)]
        )
        assert [r.version for r in records] == [1] * 50
    else:
        appended = await redis_backend.append_messages_batch(
            ns, [MessagesWrite(f"c{i}", [{"i": i}]) for i in range(50)]
        )
        assert [r[0].seq for r in appended] == [1] * 50
    assert calls["pipeline"] == 1
    # the cluster relays every slot's outbox to the namespace's log in one more call
    assert calls["eval_once"] == (1 if redis_backend.cluster_mode else 0), calls
    assert calls["execute"] == calls["_durable_once"] == 0, calls
    events = (await redis_backend.read_changes(ns, after=2, limit=100)).events
    assert len(events) == 50


async def test_an_item_the_server_refuses_is_named_with_the_items_written(
    redis_backend: RedisMemoryBackend,
) -> None:
    """A script error on one item (here WRONGTYPE: its key holds a list; out of memory on
    one node fails alike) leaves the other items written: the error says which."""
    ns = f"p{uuid.uuid4().hex[:10]}"
    keys = redis_backend.keys
    await redis_backend.connection.execute(
        "RPUSH", keys.entity(keys.entity_tag(ns, "note", "bad"), "bad"), "not an entity"
    )
    with pytest.raises(BackendUnavailableError) as failed:
        await redis_backend.save_entities(
            ns, [EntityWrite("note", i, {"i": i}) for i in ("a", "bad", "c")]
        )
    assert failed.value.details["item"] == 1
    assert failed.value.details["written"] == [0, 2]
    assert "WRONGTYPE" in failed.value.message
    for i in ("a", "c"):
        assert (await redis_backend.load_entity(ns, "note", i)).data == {"i": i}  # type: ignore[union-attr]


async def test_a_later_write_forgets_the_keys_a_batch_announced(
    redis_backend: RedisMemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's scripts publish its keys, so ``publish_invalidation`` skips them once;
    a key left behind (a caller that never asked) must not swallow the publish a later
    write of that key needs."""
    bus = redis_backend.invalidation_bus
    assert bus is not None
    published: list[str] = []
    real = bus.publish

    async def publish(key: str) -> None:
        published.append(key)
        await real(key)

    monkeypatch.setattr(bus, "publish", publish)
    ns = f"p{uuid.uuid4().hex[:10]}"
    await redis_backend.save_entities(ns, [EntityWrite("note", "a", {})])
    await redis_backend.save_entity(ns, "note", "b", {})
    key = entity_cache_key(ns, "note", "a")
    await redis_backend.publish_invalidation(key)
    assert published == [key]

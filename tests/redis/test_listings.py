"""What a listing page costs on Redis and the Redis Cluster, counted on the servers.

An entity page and a tool-usage page are one script call per index shard, sent as one
pipeline (one round trip: a cluster client sends each node its part in parallel); the
last N messages are one ``LRANGE``. The commands are counted from the servers' slow log
with a 0 µs threshold, which logs every command a client sends (the commands a script
runs are logged with the script's own client, ``?:0``, and left out here). A page whose
items sit on one shard beyond the share each shard returns on the first try takes one
more round trip, and is still exact."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memstore.backends.redis import RedisMemoryBackend
from memstore.backends.redis.keys import shard_of
from memstore.core.records import ToolUsageRecord
from memstore.core.settings import Settings
from tests.servers.redis import LocalCluster, LocalRedis

SHARDS = 16


@pytest.fixture(params=["redis", "redis_cluster"])
def target(request: pytest.FixtureRequest) -> tuple[Settings, list[LocalRedis]]:
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    if request.param == "redis":
        server: LocalRedis = request.getfixturevalue("redis_server")
        return settings, [server]
    cluster: LocalCluster = request.getfixturevalue("redis_cluster")
    return settings, cluster.masters()


@pytest.fixture
async def backend(
    target: tuple[Settings, list[LocalRedis]],
) -> AsyncIterator[RedisMemoryBackend]:
    instance = RedisMemoryBackend(target[0])
    assert instance.keys.shards == SHARDS
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()


class Counted:
    """The requests the backend waits for (a command, a script or a pipeline), counted
    by wrapping the sending methods of this test's own connection object."""

    def __init__(self, backend: RedisMemoryBackend) -> None:
        self.round_trips = 0
        connection = backend.connection
        for name in ("execute", "eval", "pipeline", "read"):
            setattr(connection, name, self._counted(getattr(connection, name)))

    def _counted(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.round_trips += 1
            return await call(*args, **kwargs)

        return counted


@contextmanager
def sent_commands(servers: list[LocalRedis], prefix: str) -> Iterator[list[str]]:
    """The names of the commands clients sent the ``servers`` in the block that name a
    key under ``prefix`` (filled in when the block ends)."""
    settings = ("slowlog-log-slower-than", "slowlog-max-len")
    saved = [{name: str(s.client.config_get(name)[name]) for name in settings} for s in servers]
    for s in servers:
        s.client.config_set("slowlog-log-slower-than", 0)
        s.client.config_set("slowlog-max-len", 100_000)
        s.client.slowlog_reset()
    names: list[str] = []
    try:
        yield names
        for s in servers:
            for entry in s.client.slowlog_get(100_000):
                command = entry["command"]
                if isinstance(command, bytes):
                    command = command.decode(errors="replace")
                address = entry["client_address"]
                if isinstance(address, bytes):
                    address = address.decode()
                if address in ("?:0", "") or prefix not in command:
                    continue
                names.append(command.split(" ", 1)[0].lower())
    finally:
        for s, values in zip(servers, saved, strict=True):
            for name, value in values.items():
                s.client.config_set(name, value)


def ids_on_shard(shard: int, n: int, stem: str) -> list[str]:
    """``n`` ids that all belong to index shard ``shard``."""
    found = (f"{stem}{i:05d}" for i in itertools.count())
    return sorted(itertools.islice((i for i in found if shard_of(i, SHARDS) == shard), n))


def tool_use(record_id: str, ts: float) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=record_id,
        tool_name="search",
        input={"q": record_id},
        output={"r": 1},
        duration_ms=1.0,
        success=True,
        timestamp=ts,
    )


async def test_an_entity_page_is_one_script_call_per_shard_in_one_round_trip(
    backend: RedisMemoryBackend, target: tuple[Settings, list[LocalRedis]]
) -> None:
    ns = f"ls{uuid.uuid4().hex[:8]}"
    ids = [f"e{i:04d}" for i in range(120)]
    await asyncio.gather(*(backend.save_entity(ns, "doc", i, {"i": i}) for i in ids))
    await backend.list_entities(ns, "doc", limit=50)  # the script is loaded on each node
    counted = Counted(backend)
    with sent_commands(target[1], target[0].effective_redis_prefix) as commands:
        first = await backend.list_entities(ns, "doc", limit=50)
        second = await backend.list_entities(ns, "doc", limit=50, cursor=first.next_cursor)
    assert [e.id for e in first.items + second.items] == ids[:100]
    assert [e.data for e in first.items[:2]] == [{"i": "e0000"}, {"i": "e0001"}]
    assert counted.round_trips == 2
    assert commands == ["evalsha"] * (2 * SHARDS)


async def test_an_entity_page_held_by_one_shard_takes_a_second_round_trip(
    backend: RedisMemoryBackend,
) -> None:
    ns = f"ls{uuid.uuid4().hex[:8]}"
    crowded = ids_on_shard(3, 58, "a")
    others = [i for i in (f"b{n:03d}" for n in range(40)) if shard_of(i, SHARDS) != 3]
    await asyncio.gather(*(backend.save_entity(ns, "doc", i, {}) for i in crowded + others))
    await backend.list_entities(ns, "doc", limit=50)
    counted = Counted(backend)
    first = await backend.list_entities(ns, "doc", limit=50)
    second = await backend.list_entities(ns, "doc", limit=50, cursor=first.next_cursor)
    assert second.next_cursor is None
    assert [e.id for e in first.items + second.items] == sorted(crowded + others)
    # the first page is all on shard 3 (beyond the share of 10 each shard returns on a
    # first try): two round trips; the second has 8 there and the rest spread: one
    assert counted.round_trips == 3


async def test_expired_entities_stay_hidden_when_a_shard_has_more_than_one_prune_holds(
    backend: RedisMemoryBackend,
) -> None:
    """More expired entities on a shard than one listing call prunes (256): the rest are
    checked one by one against the expiry index."""
    ns = f"ls{uuid.uuid4().hex[:8]}"
    expiring = ids_on_shard(5, 300, "a")
    live = ids_on_shard(5, 10, "z")
    await asyncio.gather(*(backend.save_entity(ns, "doc", i, {}, ttl=1.0) for i in expiring))
    await asyncio.gather(*(backend.save_entity(ns, "doc", i, {"live": True}) for i in live))
    await asyncio.sleep(1.3)
    page = await backend.list_entities(ns, "doc", limit=5)
    assert [e.id for e in page.items] == live[:5]
    rest = await backend.list_entities(ns, "doc", limit=50, cursor=page.next_cursor)
    assert [e.id for e in rest.items] == live[5:]
    assert rest.next_cursor is None


async def test_a_tool_usage_range_is_one_script_call_per_shard_in_one_round_trip(
    backend: RedisMemoryBackend, target: tuple[Settings, list[LocalRedis]]
) -> None:
    ns = f"ls{uuid.uuid4().hex[:8]}"
    records = [tool_use(f"t{i:04d}", 1_000.0 + i) for i in range(200)]
    await asyncio.gather(*(backend.record_tool_usage(ns, r) for r in records))
    await backend.query_tool_usage(ns, limit=50)
    counted = Counted(backend)
    with sent_commands(target[1], target[0].effective_redis_prefix) as commands:
        first = await backend.query_tool_usage(ns, start=1_020.0, end=1_150.0, limit=50)
        second = await backend.query_tool_usage(
            ns, start=1_020.0, end=1_150.0, limit=50, cursor=first.next_cursor
        )
    assert [r.id for r in first.items + second.items] == [r.id for r in records[20:120]]
    assert first.items[0] == records[20]
    assert counted.round_trips == 2
    assert commands == ["evalsha"] * (2 * SHARDS)


async def test_tool_usage_pages_through_many_equal_timestamps_on_one_shard(
    backend: RedisMemoryBackend,
) -> None:
    """More records sharing the cursor's timestamp on one shard than a first try returns:
    the page takes a second try and loses or repeats none."""
    ns = f"ls{uuid.uuid4().hex[:8]}"
    same = ids_on_shard(7, 40, "s")
    later = [f"u{i:03d}" for i in range(30)]
    await asyncio.gather(*(backend.record_tool_usage(ns, tool_use(i, 5.0)) for i in same))
    await asyncio.gather(*(backend.record_tool_usage(ns, tool_use(i, 6.0)) for i in later))
    listed: list[str] = []
    cursor = None
    while True:
        page = await backend.query_tool_usage(ns, limit=5, cursor=cursor)
        listed += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert listed == same + later


async def test_the_last_messages_are_one_command(
    backend: RedisMemoryBackend, target: tuple[Settings, list[LocalRedis]]
) -> None:
    ns = f"ls{uuid.uuid4().hex[:8]}"
    await backend.append_messages(ns, "c", [{"n": i} for i in range(120)])
    counted = Counted(backend)
    with sent_commands(target[1], target[0].effective_redis_prefix) as commands:
        last = await backend.load_messages(ns, "c", limit=50)
    assert [m.message for m in last] == [{"n": i} for i in range(70, 120)]
    assert [m.seq for m in last] == list(range(71, 121))
    assert counted.round_trips == 1
    assert commands == ["lrange"]

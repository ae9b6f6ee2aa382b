"""Cache coherence between replicas sharing one Redis (standalone or cluster).

Two managers with their own backend connections stand for two service replicas (a test
at the end runs two real ``memstore serve`` processes). The cache TTL is long (300 s)
where a test proves invalidation, so only an invalidation message can explain a fresh
read; the TTL-bound test makes the TTL short and loses the message on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memstore.backends.redis import RedisMemoryBackend
from memstore.client import MemoryClient
from memstore.core.records import JSONObject
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from redis import Redis as SyncRedis
from tests.servers.redis import LocalCluster, LocalRedis
from tests.support.procs import ServiceProcess

LONG_TTL = 300.0


async def wait_for(cond: Callable[..., bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``cond``; the bound only keeps a broken build from hanging the suite."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def bus(manager: DistributedMemoryManager) -> object:
    backend = manager.backend
    assert isinstance(backend, RedisMemoryBackend)
    assert backend.invalidation_bus is not None
    return backend.invalidation_bus


def invalidations(manager: DistributedMemoryManager) -> int:
    return manager._shared.cache.stats.invalidations


def flushes(manager: DistributedMemoryManager) -> int:
    return manager._shared.cache.stats.flushes


def node_clients(request: pytest.FixtureRequest, settings: Settings) -> list[SyncRedis]:
    if settings.redis_cluster_nodes:
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        return [n.client for n in cluster.nodes if n.alive()]
    server: LocalRedis = request.getfixturevalue("redis_server")
    return [server.client]


def kill_clients(clients: list[SyncRedis], name_prefix: str) -> int:
    killed = 0
    for c in clients:
        for info in c.client_list():
            if info.get("name", "").startswith(name_prefix):
                killed += int(c.client_kill_filter(_id=info["id"]))
    return killed


class SilentRedisBackend(RedisMemoryBackend):
    """A writer whose entity writes publish no invalidation (a lost message)."""

    def _announcement(self, cache_key: str, tag: str) -> list[Any] | None:
        return None


async def lost_write(manager: DistributedMemoryManager, eid: str, data: JSONObject) -> None:
    """A write to the Redis ``manager`` uses whose invalidation is lost: the writer's
    scripts publish nothing, and no manager (whose fallback publish would tell the
    others) is involved."""
    writer = SilentRedisBackend(manager.settings)
    await writer.connect()
    try:
        await writer.save_entity(manager.namespace, "doc", eid, data)
    finally:
        await writer.close()


async def cache_in(manager: DistributedMemoryManager, eid: str) -> None:
    """Read until the entity is served from the manager's cache (a load racing an
    invalidation of any key is deliberately not cached, so one read may not be enough)."""
    for _ in range(100):
        first = await manager.get_entity("doc", eid)
        if first is not None and await manager.get_entity("doc", eid) is first:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("entity never got cached")


@pytest.fixture
async def replicas(
    any_redis_settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[DistributedMemoryManager, DistributedMemoryManager]]:
    ttl = getattr(request, "param", LONG_TTL)
    settings = any_redis_settings.model_copy(update={"cache_ttl_seconds": ttl})
    ns = f"inv{uuid.uuid4().hex[:8]}"
    a = DistributedMemoryManager(settings=settings, namespace=ns)
    b = DistributedMemoryManager(settings=settings, namespace=ns)
    await a.start()
    await b.start()
    for m in (a, b):
        await asyncio.wait_for(bus(m).subscribed.wait(), 15)  # type: ignore[attr-defined]
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_write_on_one_replica_is_never_read_stale_on_the_other(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
) -> None:
    a, b = replicas
    ids = [f"k{i}" for i in range(6)]  # several keys: on a cluster, several channels
    for eid in ids:
        await a.save_entity("doc", eid, {"v": 0})
    for round_ in range(1, 6):
        for eid in ids:
            await cache_in(b, eid)  # B serves this key from its cache now
            seen = invalidations(b)
            written = await a.save_entity("doc", eid, {"v": round_})  # acknowledged here
            await wait_for(lambda s=seen: invalidations(b) > s, "B to receive the invalidation")
            fresh = await b.get_entity("doc", eid)
            assert fresh is not None
            assert fresh.version == written.version
            assert fresh.data == {"v": round_}
    # deletes invalidate too
    await b.get_entity("doc", "k0")
    seen = invalidations(b)
    assert await a.delete_entity("doc", "k0")
    await wait_for(lambda: invalidations(b) > seen, "B to receive the invalidation")
    assert await b.get_entity("doc", "k0") is None


async def test_readers_under_concurrent_writes_never_go_back(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
) -> None:
    """B's readers run while A writes; once B has seen the invalidation for version n,
    no later read on B returns a version below n."""
    a, b = replicas
    await a.save_entity("doc", "hot", {"v": 0})
    floor = 0  # highest version whose invalidation B has processed
    stale: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            must_see = floor
            rec = await b.get_entity("doc", "hot")
            assert rec is not None
            if rec.version < must_see:
                stale.append((rec.version, must_see))
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    try:
        for i in range(60):
            seen = invalidations(b)
            written = await a.save_entity("doc", "hot", {"v": "x"})
            await wait_for(lambda s=seen: invalidations(b) > s, "B to receive the invalidation")
            floor = written.version
            if i % 10 == 0:
                # The message now arrives within the write's own round trip, so back-to-back
                # writes leave B's readers no quiet moment to cache a load; pause for one.
                await cache_in(b, "hot")
    finally:
        done.set()
        await asyncio.gather(*readers)
    assert stale == []
    assert b._shared.cache.stats.hits > 0  # the cache was really in use


async def test_channel_drop_flushes_the_whole_cache(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
    any_redis_settings: Settings,
    request: pytest.FixtureRequest,
) -> None:
    a, b = replicas
    for eid in ("x", "y"):
        await a.save_entity("doc", eid, {"v": 1})
    for eid in ("x", "y"):
        await cache_in(b, eid)
    await lost_write(a, "x", {"v": 2})  # a write whose invalidation is lost
    stale = await b.get_entity("doc", "x")
    assert stale is not None
    assert stale.data == {"v": 1}  # B serves its cache: the message was lost

    b_bus = bus(b)
    drops_before = b_bus.drops  # type: ignore[attr-defined]
    flushes_before = flushes(b)
    killed = kill_clients(node_clients(request, any_redis_settings), b_bus.client_name)  # type: ignore[attr-defined]
    assert killed >= 1
    await wait_for(lambda: b_bus.drops > drops_before, "B to notice the drop")  # type: ignore[attr-defined]
    assert flushes(b) > flushes_before
    fresh = await b.get_entity("doc", "x")
    assert fresh is not None
    assert fresh.data == {"v": 2}

    # B re-subscribes by itself and invalidations flow again
    await asyncio.wait_for(b_bus.subscribed.wait(), 15)  # type: ignore[attr-defined]
    await cache_in(b, "y")
    seen = invalidations(b)
    await a.save_entity("doc", "y", {"v": 3})
    await wait_for(lambda: invalidations(b) > seen, "B to receive the invalidation")
    again = await b.get_entity("doc", "y")
    assert again is not None
    assert again.data == {"v": 3}


@pytest.mark.parametrize("replicas", [2.0], indirect=True)
async def test_cache_ttl_bounds_staleness_when_a_message_is_lost(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
) -> None:
    a, b = replicas
    await a.save_entity("doc", "x", {"v": 1})
    await cache_in(b, "x")
    lost_at = time.monotonic()
    await lost_write(a, "x", {"v": 2})  # no invalidation sent
    # Poll B: it may serve v1 only until its cache TTL (2 s) runs out, never after.
    while True:
        rec = await b.get_entity("doc", "x")
        assert rec is not None
        if rec.data == {"v": 2}:
            break
        assert time.monotonic() - lost_at < 2.0 + 0.5, "stale beyond the cache TTL bound"
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def running_service(data_dir: Path, env: dict[str, str]) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(data_dir, env).start()
    try:
        yield svc
    finally:
        svc.stop()


async def test_two_service_processes(
    redis_server: LocalRedis, redis_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two real ``memstore serve`` processes on one Redis: a write through one is read
    fresh through the other; killing the other's invalidation connection flushes it."""
    env = {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "REDIS_PREFIX": str(redis_settings.redis_prefix),
        "MEMSTORE_CACHE_TTL_SECONDS": str(LONG_TTL),
    }
    base = tmp_path_factory.mktemp("two-services")
    with (
        running_service(base / "a", env) as svc_a,
        running_service(base / "b", env) as svc_b,
    ):
        async with (
            MemoryClient(svc_a.url, namespace="agent") as ca,
            MemoryClient(svc_b.url, namespace="agent") as cb,
        ):
            await ca.ping()
            await cb.ping()  # both connected and subscribed before the first read

            async def b_invalidations() -> int:
                return int((await cb.get_metrics())["cache"]["invalidations"])

            await ca.save_entity("doc", "p", {"v": 1})
            assert (await cb.load_entity("doc", "p")) == {"v": 1}  # cached in B
            for v in range(2, 6):
                seen = await b_invalidations()
                await ca.save_entity("doc", "p", {"v": v})
                deadline = time.monotonic() + 15
                while await b_invalidations() <= seen:
                    assert time.monotonic() < deadline, "B never got the invalidation"
                    await asyncio.sleep(0.02)
                assert (await cb.load_entity("doc", "p")) == {"v": v}

            # lose a message on purpose, then kill every memstore invalidation connection
            backend = SilentRedisBackend(redis_settings)  # the write's message is lost
            await backend.connect()
            try:
                await backend.save_entity("agent", "doc", "p", {"v": "lost"})
            finally:
                await backend.close()
            assert (await cb.load_entity("doc", "p")) == {"v": 5}  # stale, from B's cache
            flushes = int((await cb.get_metrics())["cache"]["flushes"])
            assert kill_clients([redis_server.client], "memstore-inv-") >= 2
            deadline = time.monotonic() + 15
            while int((await cb.get_metrics())["cache"]["flushes"]) <= flushes:
                assert time.monotonic() < deadline, "B never flushed its cache"
                await asyncio.sleep(0.02)
            assert (await cb.load_entity("doc", "p")) == {"v": "lost"}


async def test_a_write_publishes_inside_its_script(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
) -> None:
    """The invalidation goes out in the write's own script: the manager's publish after
    the write is a no-op (no second round trip), yet B still gets every message."""
    a, b = replicas
    a_bus = bus(a)
    sent: list[str] = []
    real_publish = a_bus.publish  # type: ignore[attr-defined]

    async def counting(key: str) -> None:
        sent.append(key)
        await real_publish(key)

    a_bus.publish = counting  # type: ignore[attr-defined]
    await a.save_entity("doc", "one", {"v": 0})
    await cache_in(b, "one")
    for v in range(1, 4):
        seen = invalidations(b)
        await a.save_entity("doc", "one", {"v": v})
        await wait_for(lambda s=seen: invalidations(b) > s, "B to receive the invalidation")
        rec = await b.get_entity("doc", "one")
        assert rec is not None
        assert rec.data == {"v": v}
    seen = invalidations(b)
    assert await a.delete_entity("doc", "one")
    await wait_for(lambda: invalidations(b) > seen, "B to receive the invalidation")
    assert await b.get_entity("doc", "one") is None
    assert sent == []  # no separate PUBLISH round trip


async def test_conversation_writes_reach_the_other_replicas_listeners(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
) -> None:
    """Append, replace, pop and delete on B each tell A's change listeners, from inside
    the write script (no separate PUBLISH), and leave A's entity cache alone."""
    a, b = replicas
    heard: list[str | None] = []
    a.add_change_listener(heard.append)
    b_bus = bus(b)
    sent: list[str] = []
    real_publish = b_bus.publish  # type: ignore[attr-defined]

    async def counting(key: str) -> None:
        sent.append(key)
        await real_publish(key)

    b_bus.publish = counting  # type: ignore[attr-defined]
    key = f"conversation/{a.namespace}/talk"
    cache_invalidations = invalidations(a)
    writes: list[tuple[str, Callable[[], Any]]] = [
        ("append", lambda: b.append_messages([{"n": 1}, {"n": 2}], "talk")),
        ("replace", lambda: b.save_conversation_history([{"n": 3}, {"n": 4}], "talk")),
        ("pop", lambda: b.pop_message("talk")),
        ("delete", lambda: b.delete_conversation("talk")),
    ]
    for what, write in writes:
        count = len(heard)
        await write()
        await wait_for(lambda c=count: len(heard) > c, f"A to hear B's {what}")
        assert heard[count:] == [key], what
    assert sent == []
    assert invalidations(a) == cache_invalidations


async def test_a_replica_hears_its_own_conversation_change_once(
    replicas: tuple[DistributedMemoryManager, DistributedMemoryManager],
) -> None:
    """The writer's listeners are told directly; its script's message comes back on the
    bus and is ignored. B then writes a conversation of the same slot (so the same
    channel, in order after A's message): when A hears B's, A's own echo would have come
    first."""
    a, b = replicas
    backend = a.backend
    assert isinstance(backend, RedisMemoryBackend)
    tag = backend.keys.conversation_tag(a.namespace, "mine")
    theirs = next(
        f"theirs{i}"
        for i in range(10_000)
        if backend.keys.conversation_tag(a.namespace, f"theirs{i}") == tag
    )
    heard: list[str | None] = []
    a.add_change_listener(heard.append)
    await a.append_messages([{"n": 1}], "mine")
    assert heard == [f"conversation/{a.namespace}/mine"]
    await b.append_messages([{"n": 1}], theirs)
    their_key = f"conversation/{a.namespace}/{theirs}"
    await wait_for(lambda: their_key in heard, "A to hear B's append")
    assert heard == [f"conversation/{a.namespace}/mine", their_key]


@pytest.mark.parametrize("round_", range(4))
async def test_close_does_not_wait_for_the_invalidation_reader(
    round_: int, redis_settings: Settings
) -> None:
    """A manager closed right after a few writes and reads closes at once. redis-py's
    read with a timeout can swallow the cancellation that ``stop`` sends the subscriber's
    reader (it answers None when the cancellation meets its timeout); the reader kept
    pinging and ``close`` waited for it forever, in one run out of two here (each round
    is a new event loop: the hang showed from the second on)."""
    memory = DistributedMemoryManager(settings=redis_settings, namespace=f"close{round_}")
    await memory.append_messages([{"n": 1}], "c")
    await memory.append_messages([{"n": 2}], "c")
    await memory.load_messages("c", limit=2)
    closing = asyncio.ensure_future(memory.close())
    done, _ = await asyncio.wait([closing], timeout=10)
    assert done, "close() still waiting after 10 s"

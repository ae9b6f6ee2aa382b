"""The shared second-level cache (memory/l2cache.py) on a real Memcached, over real
backends (MongoDB-wire = FerretDB, Redis): hits, no stale read after a write through
another manager, deletes, entity TTL, Memcached killed mid-test, single-flight loads.

Backend reads are counted by a subclass of the real backend (``counting``), never by a
hook in the production code.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from memstore.backends.factory import DistributedMemoryFactory
from memstore.core.errors import DataShreddedError
from memstore.core.payload_codec import new_kek_line
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.servers.memcached import LocalMemcached

BACKENDS = ["mongodb_settings", "redis_settings"]


def counting(settings: Settings, *, delay: float = 0.0) -> Any:
    """The real backend of ``settings`` in a subclass that counts entity loads (and can
    make each one take ``delay`` seconds, to hold concurrent readers in a miss)."""
    real = type(DistributedMemoryFactory.create_memory_backend(settings))

    class Counting(real):  # type: ignore[valid-type,misc]
        loads = 0

        async def load_entity(self, *args: Any, **kwargs: Any) -> Any:
            type(self).loads += 1
            if delay:
                await asyncio.sleep(delay)
            return await super().load_entity(*args, **kwargs)

    return Counting(settings)


def with_l2(settings: Settings, url: str, prefix: str, **more: Any) -> Settings:
    return settings.model_copy(update={"l2_cache_url": url, "l2_cache_prefix": prefix, **more})


@pytest.fixture(params=BACKENDS)
def backend_settings(request: pytest.FixtureRequest) -> Settings:
    settings: Settings = request.getfixturevalue(request.param)
    return settings


@pytest.fixture
def l2_settings(
    backend_settings: Settings, memcached_server: LocalMemcached, memcached_prefix: str
) -> Settings:
    # No local cache: every read reaches the shared cache, so what it answers is seen.
    # A read deadline for a loaded machine (a missed one sends the read to the backend).
    return with_l2(
        backend_settings,
        memcached_server.url,
        memcached_prefix,
        cache_ttl_seconds=0.0,
        l2_cache_timeout_seconds=2.0,
    )


async def test_a_read_fills_the_cache_for_another_replica(l2_settings: Settings) -> None:
    backend_a, backend_b = counting(l2_settings), counting(l2_settings)
    async with (
        DistributedMemoryManager(settings=l2_settings, backend=backend_a) as a,
        DistributedMemoryManager(settings=l2_settings, backend=backend_b) as b,
    ):
        await b.save_entity("user", "u1", {"name": "Ada"})
        first = await a.get_entity("user", "u1")
        assert first is not None and first.data == {"name": "Ada"}
        assert type(backend_a).loads == 1
        # Another replica (its own process memory, the same Memcached) reads without
        # touching the backend, and so does a second read on the first.
        again = await b.get_entity("user", "u1")
        assert again == first
        assert await a.get_entity("user", "u1") == first
        assert type(backend_b).loads == 0 and type(backend_a).loads == 1
        figures = a.get_metrics()["l2_cache"]
        assert figures["hits"] == 1 and figures["misses"] == 1 and figures["stores"] == 1
        assert figures["errors"] == 0 and figures["available"] is True


async def test_no_stale_read_after_a_write_through_another_replica(
    l2_settings: Settings,
) -> None:
    """Writes through B, reads through A right after each acknowledgement, with readers
    on A hammering the same keys all along (they fill the cache with whatever they read,
    racing the writes): A never answers a version older than the one B acknowledged."""
    keys = [f"k{i}" for i in range(4)]
    rounds = 150
    async with (
        DistributedMemoryManager(settings=l2_settings) as a,
        DistributedMemoryManager(settings=l2_settings) as b,
    ):
        stop = asyncio.Event()

        async def hammer() -> None:
            while not stop.is_set():
                await a.get_entity("doc", random.choice(keys))

        async def writer(key: str) -> int:
            stale = 0
            for n in range(1, rounds + 1):
                saved = await b.save_entity("doc", key, {"n": n})
                read = await a.get_entity("doc", key)
                assert read is not None
                if read.version < saved.version or read.data != {"n": n}:
                    stale += 1
            return stale

        hammers = [asyncio.create_task(hammer()) for _ in range(4)]
        try:
            stale = await asyncio.gather(*(writer(k) for k in keys))
        finally:
            stop.set()
            await asyncio.gather(*hammers)
        # A failed bump (B) is the documented window where A may read stale: show it.
        assert sum(stale) == 0, b.get_metrics()["l2_cache"]
        # The shared cache did serve reads (the hammering readers' repeats). Errors are
        # not asserted: on a loaded machine a read may exceed its deadline and go to the
        # backend, which is correct.
        assert a.get_metrics()["l2_cache"]["hits"] > 0


async def test_deletes_and_namespaces(l2_settings: Settings) -> None:
    async with (
        DistributedMemoryManager(settings=l2_settings) as a,
        DistributedMemoryManager(settings=l2_settings) as b,
    ):
        other_a, other_b = a.for_namespace("other"), b.for_namespace("other")
        await b.save_entity("user", "u1", {"ns": "agent"})
        await other_b.save_entity("user", "u1", {"ns": "other"})
        for _ in range(2):  # the second pass is served by the shared cache
            one = await a.get_entity("user", "u1")
            two = await other_a.get_entity("user", "u1")
            assert one is not None and one.data == {"ns": "agent"}
            assert two is not None and two.data == {"ns": "other"}
        assert a.get_metrics()["l2_cache"]["hits"] == 2
        assert await b.delete_entity("user", "u1")
        assert await a.get_entity("user", "u1") is None
        # The other namespace's entity of the same type and id is untouched.
        still = await other_a.get_entity("user", "u1")
        assert still is not None and still.data == {"ns": "other"}
        # Re-created after the delete: versions restart, the new state is what is read.
        await b.save_entity("user", "u1", {"ns": "agent", "again": True})
        back = await a.get_entity("user", "u1")
        assert back is not None and back.data == {"ns": "agent", "again": True}


async def test_entity_ttl_expires_in_the_shared_cache(l2_settings: Settings) -> None:
    async with (
        DistributedMemoryManager(settings=l2_settings) as a,
        DistributedMemoryManager(settings=l2_settings) as b,
    ):
        await b.save_entity("session", "s1", {"x": 1}, ttl=1.0)
        assert await a.get_entity("session", "s1") is not None
        assert await a.get_entity("session", "s1") is not None  # a shared-cache hit
        assert a.get_metrics()["l2_cache"]["hits"] == 1
        time.sleep(1.3)
        assert await a.get_entity("session", "s1") is None


@pytest.mark.parametrize("backend_settings", ["mongodb_settings"], indirect=True)
async def test_memcached_killed_mid_test_reads_are_still_served(
    backend_settings: Settings, memcached_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = LocalMemcached()
    try:
        settings = with_l2(
            backend_settings,
            server.url,
            memcached_prefix,
            cache_ttl_seconds=0.0,
            l2_cache_timeout_seconds=0.2,
        )
        async with (
            DistributedMemoryManager(settings=settings) as a,
            DistributedMemoryManager(settings=settings) as b,
        ):
            await b.save_entity("user", "u1", {"v": 1})
            assert (await a.get_entity("user", "u1")) is not None
            assert (await a.get_entity("user", "u1")) is not None
            assert a.get_metrics()["l2_cache"]["hits"] == 1

            server.kill9()
            # Reads and writes go on, from and to the backend; nothing raises.
            for n in range(2, 6):
                await b.save_entity("user", "u1", {"v": n})
                read = await a.get_entity("user", "u1")
                assert read is not None and read.data == {"v": n}
            figures = a.get_metrics()["l2_cache"]
            assert figures["errors"] >= 1 and figures["bypasses"] >= 1
            assert figures["available"] is False
            assert "Memcached (second-level cache) unavailable" in caplog.text
            # No payload or key in the logs.
            assert '"v"' not in caplog.text and "u1" not in caplog.text

            server.start()  # same port, empty
            deadline = time.monotonic() + 10
            while not (a.get_metrics()["l2_cache"]["available"]):
                await a.get_entity("user", "u1")
                assert time.monotonic() < deadline, "the shared cache was never used again"
                await asyncio.sleep(0.1)
            await b.save_entity("user", "u1", {"v": 6})
            hits = a.get_metrics()["l2_cache"]["hits"]
            for _ in range(3):
                read = await a.get_entity("user", "u1")
                assert read is not None and read.data == {"v": 6}
            assert a.get_metrics()["l2_cache"]["hits"] > hits
    finally:
        server.stop()


@pytest.mark.parametrize("with_shared_cache", [True, False])
async def test_concurrent_misses_share_one_backend_read(
    mongodb_settings: Settings,
    memcached_server: LocalMemcached,
    memcached_prefix: str,
    with_shared_cache: bool,
) -> None:
    settings = (
        with_l2(mongodb_settings, memcached_server.url, memcached_prefix)
        if with_shared_cache
        else mongodb_settings
    )
    backend = counting(settings, delay=0.05)
    async with DistributedMemoryManager(settings=settings, backend=backend) as memory:
        await memory.save_entity("user", "u1", {"name": "Ada"})
        results = await asyncio.gather(*(memory.get_entity("user", "u1") for _ in range(20)))
        assert type(backend).loads == 1
        assert {r.data["name"] for r in results if r is not None} == {"Ada"}
        assert all(r is not None for r in results)


async def test_a_reader_after_a_write_does_not_join_an_older_load(
    mongodb_settings: Settings, memcached_server: LocalMemcached, memcached_prefix: str
) -> None:
    settings = with_l2(mongodb_settings, memcached_server.url, memcached_prefix)
    backend = counting(settings, delay=0.2)
    async with DistributedMemoryManager(settings=settings, backend=backend) as memory:
        await memory.save_entity("user", "u1", {"v": 1})
        early = asyncio.create_task(memory.get_entity("user", "u1"))
        await asyncio.sleep(0.05)  # the early load is under way (it read the old state)
        await memory.save_entity("user", "u1", {"v": 2})
        late = await memory.get_entity("user", "u1")
        assert late is not None and late.data == {"v": 2}
        assert await early is not None
        assert type(backend).loads == 2
        # A reader that knows a newer version than a shared load answers does not take it.
        again = await memory.get_entity("user", "u1", min_version=late.version)
        assert again is not None and again.version == late.version


class CuttableProxy:
    """A TCP proxy to Memcached on loopback that a test can cut and restore: one
    replica's path to Memcached fails while the other's works."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()
        self.server = None


@pytest.mark.parametrize("backend_settings", ["mongodb_settings"], indirect=True)
@pytest.mark.parametrize("max_owed", [10_000, 2])
async def test_a_writer_cut_off_from_memcached_repays_its_bumps(
    backend_settings: Settings,
    memcached_server: LocalMemcached,
    memcached_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    max_owed: int,
) -> None:
    """B reaches Memcached through a proxy that is cut while B writes. B's writes succeed
    and B reads them; A, which still reaches Memcached, serves the older state until B
    can send the bumps it owes (the documented residual window), then the new one. With
    more owed bumps than the bound, B bumps the namespace's epoch instead."""
    from memstore.memory import l2cache

    monkeypatch.setattr(l2cache, "MAX_OWED_KEYS", max_owed)
    proxy = CuttableProxy(memcached_server.port)
    await proxy.start()
    direct = with_l2(
        backend_settings, memcached_server.url, memcached_prefix, cache_ttl_seconds=0.0
    )
    via_proxy = with_l2(
        backend_settings,
        f"memcached://127.0.0.1:{proxy.port}",
        memcached_prefix,
        cache_ttl_seconds=0.0,
        l2_cache_timeout_seconds=0.2,
    )
    keys = ["k0", "k1", "k2", "k3"]
    async with (
        DistributedMemoryManager(settings=direct) as a,
        DistributedMemoryManager(settings=via_proxy) as b,
    ):
        for key in keys:
            await b.save_entity("doc", key, {"v": 1})
            await a.get_entity("doc", key)  # cached at v1
        await proxy.cut()
        for key in keys:
            await b.save_entity("doc", key, {"v": 2})
            mine = await b.get_entity("doc", key)
            assert mine is not None and mine.data == {"v": 2}
        assert b.get_metrics()["l2_cache"]["available"] is False
        old = await a.get_entity("doc", "k0")
        assert old is not None and old.data == {"v": 1}  # the residual window

        await proxy.start()  # same port
        deadline = time.monotonic() + 10
        while not b.get_metrics()["l2_cache"]["available"]:
            assert time.monotonic() < deadline, "the owed bumps were never sent"
            await asyncio.sleep(0.05)
        for key in keys:
            read = await a.get_entity("doc", key)
            assert read is not None and read.data == {"v": 2}, key
        await proxy.cut()


@pytest.mark.parametrize("backend_settings", ["redis_settings"], indirect=True)
async def test_prometheus_exports_the_shared_cache_figures(l2_settings: Settings) -> None:
    from prometheus_client import generate_latest

    from memstore.observability.metrics import PrometheusMetrics

    prometheus = PrometheusMetrics()
    async with DistributedMemoryManager(settings=l2_settings, prometheus=prometheus) as memory:
        await memory.save_entity("user", "u1", {"name": "Ada"})
        await memory.get_entity("user", "u1")
        await memory.get_entity("user", "u1")
        text = generate_latest(prometheus.registry).decode()
    for line in (
        "memstore_l2_cache_hits_total 1.0",
        "memstore_l2_cache_misses_total 1.0",
        "memstore_l2_cache_stores_total 1.0",
        "memstore_l2_cache_invalidations_total 1.0",
        "memstore_l2_cache_errors_total 0.0",
    ):
        assert line in text


async def test_a_pinned_entity_stays_pinned_in_the_shared_cache(l2_settings: Settings) -> None:
    async with (
        DistributedMemoryManager(settings=l2_settings) as a,
        DistributedMemoryManager(settings=l2_settings) as b,
    ):
        await b.save_entity("user", "u1", {"name": "Ada"})
        assert await b.pin_entity("user", "u1") is not None
        for _ in range(2):  # the second read is served by the shared cache
            got = await a.get_entity("user", "u1")
            assert got is not None and got.pinned is True
        assert a.get_metrics()["l2_cache"]["hits"] == 1


async def test_a_shredded_namespace_is_not_served_from_the_shared_cache(
    l2_settings: Settings, tmp_path: Path
) -> None:
    kek = tmp_path / "kek"
    kek.write_text(new_kek_line("k1") + "\n")
    # No cached data key (MongoDB has no bus to drop one): what is tested is Memcached.
    settings = l2_settings.model_copy(
        update={"encryption_key_file": kek, "data_key_cache_seconds": 0.0}
    )
    async with (
        DistributedMemoryManager(settings=settings) as a,
        DistributedMemoryManager(settings=settings) as b,
    ):
        await a.save_entity("user", "u1", {"secret": "s"})
        for _ in range(2):  # the second read is served by the shared cache
            got = await b.get_entity("user", "u1")
            assert got is not None and got.data == {"secret": "s"}
        assert b.get_metrics()["l2_cache"]["hits"] == 1
        await a.shred_data_key()
        # Another replica: its plaintext in Memcached is unreachable, the backend says why.
        with pytest.raises(DataShreddedError):
            await b.get_entity("user", "u1")


async def test_with_encryption_the_shared_cache_holds_entities_encrypted(
    l2_settings: Settings,
    memcached_server: LocalMemcached,
    memcached_prefix: str,
    tmp_path: Path,
) -> None:
    kek = tmp_path / "kek"
    kek.write_text(new_kek_line("k1") + "\n")
    sealed = l2_settings.model_copy(
        update={"encryption_key_file": kek, "data_key_cache_seconds": 0.0}
    )
    secret, plain = "PLANTED-l2-sealed-7f3a", "PLANTED-l2-plain-91c4"
    async with (
        DistributedMemoryManager(settings=sealed, namespace="enc") as a,
        DistributedMemoryManager(settings=sealed, namespace="enc") as b,
        # the same Memcached without encryption: the control that the check can see text
        DistributedMemoryManager(settings=l2_settings, namespace="clear") as c,
    ):
        await a.save_entity("user", "u1", {"secret": secret, "n": [1, 2.5, None]})
        for _ in range(2):  # the second read is a hit, opened with the namespace's key
            got = await b.get_entity("user", "u1")
            assert got is not None and got.data == {"secret": secret, "n": [1, 2.5, None]}
        assert b.get_metrics()["l2_cache"]["hits"] == 1
        await c.save_entity("user", "u1", {"secret": plain})
        for _ in range(2):
            await c.get_entity("user", "u1")
        values = memcached_server.values(memcached_prefix)
        records = [v for k, v in values.items() if k.startswith(f"{memcached_prefix}:v:".encode())]
        assert len(records) == 2
        assert any(plain.encode() in v for v in records)
        assert not any(secret.encode() in v for v in values.values())
        assert any(b"memstore:sealed" in v for v in records)
        # A value the key no longer opens is a miss: the backend answers (shredded here).
        await a.shred_data_key()
        with pytest.raises(DataShreddedError):
            await b.get_entity("user", "u1")

"""Two real ``memstore serve`` processes on one FerretDB (MongoDB wire, which has no
invalidation bus) sharing one real Memcached: writes through one, reads through the other
over HTTP, never stale."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiohttp

from memstore.client import MemoryClient
from tests.servers.memcached import LocalMemcached
from tests.servers.mongodb import FerretDB
from tests.support.procs import running_service


async def test_two_service_processes_share_memcached_without_stale_reads(
    ferretdb: FerretDB,
    mongodb_database: str,
    memcached_server: LocalMemcached,
    memcached_prefix: str,
    tmp_path: Path,
) -> None:
    env = {
        "MEMORY_TYPE": "mongodb",
        "MONGODB_URI": ferretdb.uri,
        "MONGODB_DB": mongodb_database,
        "MEMSTORE_L2_CACHE_URL": memcached_server.url,
        "MEMSTORE_L2_CACHE_PREFIX": memcached_prefix,
        # No local cache: MongoDB has no bus, so a local copy would be stale up to its TTL
        # by design; what is tested here is the shared cache.
        "MEMSTORE_CACHE_TTL_SECONDS": "0",
        "MEMSTORE_L2_CACHE_TIMEOUT_SECONDS": "2",
    }
    keys = ["k0", "k1", "k2"]
    rounds = 60
    with (
        running_service(tmp_path / "a", env) as a,
        running_service(tmp_path / "b", env) as b,
    ):
        async with (
            MemoryClient(b.url, namespace="l2") as writer,
            aiohttp.ClientSession() as http,
        ):
            stop = asyncio.Event()

            async def read(key: str) -> dict[str, object] | None:
                # Plain GETs: no version token that would make a stale copy a miss.
                url = f"{a.url}/v1/namespaces/l2/entities/doc/{key}"
                async with http.get(url) as resp:
                    if resp.status == 404:
                        return None
                    assert resp.status == 200, await resp.text()
                    body: dict[str, object] = await resp.json()
                    return body

            async def hammer() -> None:
                while not stop.is_set():
                    await read(random.choice(keys))

            async def write_then_read(key: str) -> int:
                stale = 0
                for n in range(1, rounds + 1):
                    await writer.save_entity("doc", key, {"n": n})
                    got = await read(key)
                    if got is None or got["data"] != {"n": n}:
                        stale += 1
                return stale

            hammers = [asyncio.create_task(hammer()) for _ in range(3)]
            try:
                stale = await asyncio.gather(*(write_then_read(k) for k in keys))
            finally:
                stop.set()
                await asyncio.gather(*hammers)
            assert sum(stale) == 0

            async with MemoryClient(a.url) as reader:
                figures = (await reader.get_metrics())["l2_cache"]
            assert figures["hits"] > 0
            assert figures["url"] == memcached_server.url

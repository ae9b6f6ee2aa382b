"""A primary Redis this package's tests may kill (its own process, writes fsynced, so a
kill loses nothing it acknowledged) and a replicated backend over it and FerretDB."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.replicated import ReplicatedMemoryBackend
from memstore.core.settings import Settings
from tests.servers.mongodb import FerretDB
from tests.servers.redis import LocalRedis


@pytest.fixture
def primary_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path / "primary", appendonly=True)
    yield server
    server.stop()


@pytest.fixture
def replicated_settings(primary_redis: LocalRedis, ferretdb: FerretDB) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "memory_type": "redis",
            "redis_host": "127.0.0.1",
            "redis_port": primary_redis.port,
            "redis_prefix": f"t{uuid.uuid4().hex[:12]}:",
            "redis_retries": 1,
            "redis_socket_timeout_seconds": 0.5,
            "redis_connect_timeout_seconds": 0.5,
            "secondary_backend": "mongodb",
            "mongodb_uri": ferretdb.uri,
            "mongodb_db": f"t{uuid.uuid4().hex[:16]}",
            "health_check_interval_seconds": 0.2,
            "failover_after_failures": 2,
            "failback_after_successes": 2,
            "replication_poll_seconds": 0.05,
            **overrides,
        }
        return Settings(**values)

    return build


@pytest.fixture
async def replicated(
    replicated_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    opened: list[ReplicatedMemoryBackend] = []

    async def open_backend(settings: Settings | None = None) -> ReplicatedMemoryBackend:
        backend = DistributedMemoryFactory.create_memory_backend(settings or replicated_settings())
        assert isinstance(backend, ReplicatedMemoryBackend)
        await backend.connect()
        opened.append(backend)
        return backend

    yield open_backend
    for backend in opened:
        await backend.close()


async def eventually(check: Callable[[], Any], timeout: float = 30.0) -> float:
    """Seconds until ``check()`` (sync or async) is true; fails after ``timeout``."""
    began = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.02)


async def caught_up(backend: ReplicatedMemoryBackend, namespaces: list[str]) -> bool:
    """Every namespace's change log replicated up to its end (as the primary has it now)."""
    for ns in namespaces:
        page = await backend.primary.read_changes(ns, after=0, limit=1)
        if backend.forward.positions.get(ns, 0) < page.last_position:
            return False
    return True

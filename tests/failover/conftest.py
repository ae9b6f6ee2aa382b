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


async def _behind(backend: ReplicatedMemoryBackend, namespaces: list[str]) -> dict[str, str]:
    """The namespaces whose change log, as the primary has it now, is not yet replicated
    to its end: ``{namespace: "position p of n"}``."""
    behind: dict[str, str] = {}
    for ns in namespaces:
        page = await backend.primary.read_changes(ns, after=0, limit=1)
        position = backend.forward.positions.get(ns, 0)
        if position < page.last_position:
            behind[ns] = f"position {position} of {page.last_position}"
    return behind


async def caught_up(backend: ReplicatedMemoryBackend, namespaces: list[str]) -> bool:
    """Every namespace's change log replicated up to its end (as the primary has it now)."""
    return not await _behind(backend, namespaces)


async def wait_replicated(
    backend: ReplicatedMemoryBackend, namespaces: list[str], timeout: float = 30.0
) -> None:
    """Wait until the secondary holds every write the primary acknowledged so far in
    ``namespaces``; fail after ``timeout`` naming what is behind.

    The replication is asynchronous and goes namespace by namespace, so neither a write
    seen on the secondary in one namespace nor ``status()["lag_events"] == 0`` (the lag
    as of each namespace's last replication step: 0 right after a write, until the next
    step reads the log) says an earlier write in another namespace is there. The
    replicator's position against the end of the primary's log, read after the writes
    returned, does: the position only moves once the events before it are applied."""
    began = time.monotonic()
    while True:
        behind = await _behind(backend, namespaces)
        if not behind:
            return
        if time.monotonic() - began > timeout:
            raise AssertionError(
                f"replication not caught up within {timeout} s: {behind}; "
                f"status: {backend.status()}"
            )
        await asyncio.sleep(0.02)

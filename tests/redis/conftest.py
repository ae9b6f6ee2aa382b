"""Shared fixtures for the Redis backend's own tests (on top of tests/servers/redis.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.crc import key_slot

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.settings import Settings
from tests.servers.redis import LocalCluster


@pytest.fixture(params=["redis", "redis_cluster"])
def any_redis_settings(request: pytest.FixtureRequest) -> Settings:
    """The same test on standalone Redis and on the Redis Cluster."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    return settings


@pytest.fixture
async def redis_backend(any_redis_settings: Settings) -> AsyncIterator[RedisMemoryBackend]:
    backend = RedisMemoryBackend(any_redis_settings)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


def slot_owners(cluster: LocalCluster) -> dict[int, int]:
    """slot -> port of the master serving it, as the cluster itself reports."""
    node = cluster.masters()[0]
    owners: dict[int, int] = {}
    for start, end, master, *_ in node.client.execute_command("CLUSTER", "SLOTS"):
        for slot in range(int(start), int(end) + 1):
            owners[slot] = int(master[1])
    return owners


def slot_of(key: str) -> int:
    return int(key_slot(key.encode()))

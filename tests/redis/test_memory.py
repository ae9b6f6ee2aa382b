"""Redis memory per entity: a record is one string value (header + payload JSON), so a
1 KB entity costs at most 1.3 x payload + 200 bytes (``MEMORY USAGE`` of its key)."""

from __future__ import annotations

import uuid

import orjson
import pytest

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.settings import Settings
from tests.servers.redis import LocalRedis


@pytest.mark.parametrize("size", [1024, 10240])
async def test_entity_memory_within_budget(
    redis_server: LocalRedis, redis_settings: Settings, size: int
) -> None:
    backend = RedisMemoryBackend(redis_settings)
    await backend.connect()
    ns = f"mem{uuid.uuid4().hex[:8]}"
    try:
        usages = []
        for i in range(20):
            data = {"id": i, "text": "x" * (size - 22)}
            payload = len(orjson.dumps(data))
            assert abs(payload - size) < 8
            saved = await backend.save_entity(ns, "doc", f"d{i:03d}", data)
            key = backend._entity_key(ns, "doc", f"d{i:03d}")
            usage = redis_server.client.memory_usage(key, samples=0)
            assert usage is not None
            usages.append((usage, payload))
            loaded = await backend.load_entity(ns, "doc", f"d{i:03d}")
            assert loaded == saved
        for usage, payload in usages:
            assert usage <= 1.3 * payload + 200, (usage, payload)
    finally:
        await backend.close()

"""The Redis backend by name through the factory, from env and from the seed's config,
durable mode's 503 on a server without replicas, and no secret in reprs or errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.redis import RedisMemoryBackend
from memstore.backends.redis.backend import parse_nodes
from memstore.core.errors import BackendUnavailableError, ConfigurationError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.server.app import create_app
from tests.servers.redis import LocalCluster, LocalRedis, free_port, unique_prefix


async def test_factory_builds_cluster_backend_from_env(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORY_TYPE", "redis")
    monkeypatch.setenv("MEMSTORE_REDIS_CLUSTER_NODES", f"redis+cluster://{redis_cluster.seed}")
    monkeypatch.setenv("REDIS_PREFIX", unique_prefix())
    monkeypatch.setenv("MEMSTORE_REDIS_POOL_SIZE", "8")
    monkeypatch.setenv("MEMSTORE_REDIS_MIN_REPLICAS_ACK", "1")
    settings = Settings()
    assert settings.redis_wait_replicas == 1
    backend = DistributedMemoryFactory.create_memory_backend(settings)
    assert isinstance(backend, RedisMemoryBackend)
    assert backend.describe()["mode"] == "cluster"
    await backend.connect()
    try:
        saved = await backend.save_entity("envns", "doc", "a", {"x": 1})  # WAITs for 1 replica
        assert saved.version == 1
        assert await backend.ping()
    finally:
        await backend.close()


async def test_seed_style_manager_on_redis(redis_server: LocalRedis) -> None:
    ns = f"seed{uuid.uuid4().hex[:8]}"
    async with DistributedMemoryManager(
        memory_type="redis",
        config={"host": "127.0.0.1", "port": redis_server.port, "db": 0, "prefix": unique_prefix()},
        namespace=ns,
    ) as memory:
        await memory.save_entity("user", "u1", {"name": "John Doe"})
        assert await memory.load_entity("user", "u1") == {"name": "John Doe"}
        await memory.save_conversation_history([{"role": "user", "content": "hi"}])
        assert await memory.load_conversation_history() == [{"role": "user", "content": "hi"}]
        assert "user: 1" in await memory.get_memory_summary()
        assert await memory.ping()


async def test_durable_mode_without_replicas_answers_503(redis_settings: Settings) -> None:
    """Standalone test server has no replica: WAIT 1 cannot be had, so the write is
    refused with 503 (it may still exist on the master; the caller may retry)."""
    settings = redis_settings.model_copy(
        update={"redis_wait_replicas": 1, "redis_wait_timeout_ms": 50}
    )
    manager = DistributedMemoryManager(settings=settings, namespace="durable")
    with pytest.raises(BackendUnavailableError) as info:
        await manager.save_entity("doc", "a", {"x": 1})
    assert info.value.details["acknowledged_replicas"] == 0
    await manager.close()

    app = create_app(settings)
    async with TestClient(TestServer(app)) as http:
        resp = await http.put("/v1/namespaces/durable/entities/doc/b", json={"data": {"x": 2}})
        assert resp.status == 503
        body: dict[str, Any] = await resp.json()
        assert body["code"] == "backend_unavailable"
        resp = await http.post(
            "/v1/namespaces/durable/conversations/c1/messages",
            json={"messages": [{"role": "user", "content": "x"}]},
        )
        assert resp.status == 503


async def test_password_never_shown() -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    port = free_port()  # nothing listens there
    settings = Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=port,
        redis_password=secret,
        redis_retries=1,
    )
    backend = RedisMemoryBackend(settings)
    assert secret not in repr(backend)
    assert secret not in str(backend.describe())
    with pytest.raises(BackendUnavailableError) as info:
        await backend.connect()
    assert secret not in str(info.value)
    assert secret not in repr(info.value.to_dict())
    assert not await backend.ping()


def test_cluster_node_list_is_validated() -> None:
    assert parse_nodes("redis+cluster://a:1, b:2/") == [("a", 1), ("b", 2)]
    assert parse_nodes("[::1]:7000") == [("::1", 7000)]
    for bad in ("", "a", "a:b", "a:0", ":7000"):
        with pytest.raises(ConfigurationError):
            parse_nodes(bad)

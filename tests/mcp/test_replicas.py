"""Update notifications across replicas: two real ``memstore serve`` processes on one
Redis; a client listening through replica A hears of writes made through replica B (its
REST API or its MCP endpoint), entities and conversations alike, carried by the backend's
invalidation bus."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp.client.subscriptions import ResourceUpdated, ServerEvent, Subscription
from mcp_types import TextResourceContents

from memstore.client import MemoryClient
from memstore.core.settings import Settings
from tests.mcp.conftest import connect
from tests.servers.redis import LocalRedis
from tests.support.procs import running_service

NS = "agent"


async def next_event(sub: Subscription, seconds: float = 15.0) -> ServerEvent:
    with anyio.fail_after(seconds):
        async for event in sub:
            return event
    raise AssertionError("the listen stream ended")


async def test_a_listener_on_one_replica_hears_writes_through_another(
    redis_server: LocalRedis, redis_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "REDIS_PREFIX": str(redis_settings.redis_prefix),
    }
    base = tmp_path_factory.mktemp("mcp-replicas")
    warm_uri = f"memstore://{NS}/entities/doc/warm-up"
    uri = f"memstore://{NS}/entities/doc/shared"
    conversation_uri = f"memstore://{NS}/conversations/chat"
    with running_service(base / "a", env) as a, running_service(base / "b", env) as b:
        async with (
            connect(a.url) as on_a,
            connect(b.url) as on_b,
            MemoryClient(a.url, NS) as rest_a,
            MemoryClient(b.url, NS) as rest_b,
        ):
            subscribed = [warm_uri, uri, conversation_uri]
            async with on_a.listen(resource_subscriptions=subscribed) as sub:
                assert sub.honored is not None
                assert sub.honored.resource_subscriptions == subscribed
                # A subscribes to the bus as it starts: write until it hears one.
                for attempt in range(30):
                    await rest_b.save_entity("doc", "warm-up", {"attempt": attempt})
                    try:
                        if await next_event(sub, 1.0) == ResourceUpdated(uri=warm_uri):
                            break
                    except TimeoutError:
                        continue
                else:
                    raise AssertionError("replica A never heard of replica B's writes")

                # Through B's REST API; a write to an entity nobody asked for is not told.
                await rest_b.save_entity("doc", "unwatched", {"v": 0})
                await rest_b.save_entity("doc", "shared", {"v": 1})
                assert await next_event(sub) == ResourceUpdated(uri=uri)
                # Through B's MCP endpoint.
                written = await on_b.call_tool(
                    "remember",
                    {"entity_type": "doc", "entity_id": "shared", "data": {"v": 2},
                     "expected_version": 1},
                )  # fmt: skip
                assert not written.is_error, written.content
                assert await next_event(sub) == ResourceUpdated(uri=uri)
                # A serves B's write (its cache was invalidated by the same message).
                contents = (await on_a.read_resource(uri)).contents[0]
                assert isinstance(contents, TextResourceContents)
                assert json.loads(contents.text)["data"] == {"v": 2}
                # A delete through B.
                assert await rest_b.delete_entity("doc", "shared")
                assert await next_event(sub) == ResourceUpdated(uri=uri)
                # Conversations through B: each write script announces the change.
                hi, bye = {"role": "user", "content": "hi"}, {"role": "user", "content": "bye"}
                conversation_writes = [
                    ("append", lambda: rest_b.append_message(hi, "chat")),
                    ("replace", lambda: rest_b.save_conversation_history([hi, bye], "chat")),
                    ("pop", lambda: rest_b.pop_message("chat")),
                    ("delete", lambda: rest_b.delete_conversation("chat")),
                ]
                for what, write in conversation_writes:
                    await write()
                    assert await next_event(sub) == ResourceUpdated(uri=conversation_uri), what
                # Through the listening replica: told once (its own bus message is ignored;
                # B's entity write after it shares the one standalone channel, so an echo
                # would arrive before it).
                await rest_a.append_message(hi, "chat")
                assert await next_event(sub) == ResourceUpdated(uri=conversation_uri)
                await rest_b.save_entity("doc", "shared", {"v": 3})
                assert await next_event(sub) == ResourceUpdated(uri=uri)

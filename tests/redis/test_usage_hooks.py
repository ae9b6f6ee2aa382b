"""The bytes quota and the admin summary (``GET /v1/summary``) on Redis, through the real
HTTP app, on standalone Redis and on the cluster. They rest on the backend's
``stored_bytes`` and ``list_namespaces`` hooks; the contract suite checks the hooks
themselves, these tests check that the app uses them as the embedded backend does and that
the counters are shared by replicas (two apps, one Redis)."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.records import Page, ToolUsageRecord
from memstore.core.settings import Settings
from memstore.server.app import create_app
from tests.security.conftest import NS_A, NS_B, write_tokens_file

Client = TestClient[Any, Any]
A = f"/v1/namespaces/{NS_A}"
B = f"/v1/namespaces/{NS_B}"


class Creds:
    def __init__(self, tmp_path: Path) -> None:
        self.writer = secrets.token_urlsafe(24)
        self.admin = secrets.token_urlsafe(24)
        self.path = write_tokens_file(
            tmp_path / "tokens.json",
            [
                ("writer", self.writer, [NS_A, NS_B], ["read", "write"]),
                ("admin", self.admin, ["*"], ["read", "write", "admin"]),
            ],
        )

    @staticmethod
    def h(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def creds(tmp_path: Path) -> Creds:
    return Creds(tmp_path)


@pytest.fixture
async def make_http(
    any_redis_settings: Settings, creds: Creds
) -> AsyncIterator[Callable[..., Any]]:
    """A real app (one "replica") on the test's Redis key space, auth on."""
    clients: list[Client] = []
    base = any_redis_settings.model_copy(
        update={"auth_enabled": True, "auth_tokens_file": creds.path}
    )

    async def make(**overrides: Any) -> Client:
        client: Client = TestClient(TestServer(create_app(base.model_copy(update=overrides))))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_bytes_quota_on_redis(make_http: Any, creds: Creds) -> None:
    http: Client = await make_http(quota_max_bytes=4000, quota_refresh_seconds=3600)
    h = creds.h(creds.writer)
    chunk = {"text": "x" * 1000}
    accepted = 0
    for _ in range(10):
        resp = await http.post(
            f"{A}/conversations/c/messages", json={"messages": [chunk]}, headers=h
        )
        if resp.status == 403:
            body = await resp.json()
            assert body["code"] == "quota_exceeded"
            assert body["details"]["quota"] == "bytes"
            break
        assert resp.status == 201, await resp.text()
        accepted += 1
    assert 1 <= accepted <= 3
    # Deleting the conversation frees the bytes (the usage is read again after a delete).
    assert (await http.delete(f"{A}/conversations/c", headers=h)).status == 204
    resp = await http.post(f"{A}/conversations/c/messages", json={"messages": [chunk]}, headers=h)
    assert resp.status == 201


async def test_a_second_replica_sees_the_bytes_already_stored(
    make_http: Any, creds: Creds, any_redis_settings: Settings
) -> None:
    """A fresh replica has reserved nothing: it can only refuse by reading the counters."""
    h = creds.h(creds.writer)
    first: Client = await make_http()
    payload = {"text": "y" * 1500}
    for i in range(2):
        resp = await first.put(f"{A}/entities/doc/d{i}", json={"data": payload}, headers=h)
        assert resp.status == 201, await resp.text()
    backend = RedisMemoryBackend(any_redis_settings)
    await backend.connect()
    try:
        assert await backend.stored_bytes(NS_A) == 2 * len(orjson.dumps(payload))
    finally:
        await backend.close()
    second: Client = await make_http(quota_max_bytes=4000, quota_refresh_seconds=3600)
    refused = await second.put(f"{A}/entities/doc/d2", json={"data": payload}, headers=h)
    assert refused.status == 403
    body = await refused.json()
    assert body["details"]["quota"] == "bytes"
    assert body["details"]["used"] == 2 * len(orjson.dumps(payload))
    # Another namespace on the same replica is not affected.
    other = await second.put(f"{B}/entities/doc/d2", json={"data": payload}, headers=h)
    assert other.status == 201


async def test_admin_summary_lists_every_namespace_on_redis(make_http: Any, creds: Creds) -> None:
    http: Client = await make_http()
    h = creds.h(creds.writer)
    admin = creds.h(creds.admin)
    empty = await (await http.get("/v1/summary", headers=admin)).json()
    assert empty == {"items": [], "skipped": [], "next_after": None, "complete": True}
    assert (await http.put(f"{B}/entities/note/n", json={"data": {}}, headers=h)).status == 201
    for i in range(2):
        resp = await http.put(f"{A}/entities/note/n{i}", json={"data": {"i": i}}, headers=h)
        assert resp.status == 201
    resp = await http.post(f"{A}/conversations/c/messages", json={"messages": [{}]}, headers=h)
    assert resp.status == 201
    everything = await (await http.get("/v1/summary", headers=admin)).json()
    assert everything["complete"] is True
    assert [s["namespace"] for s in everything["items"]] == [NS_A, NS_B]
    a = everything["items"][0]
    assert (a["total_entities"], a["conversations"], a["messages"]) == (2, 1, 1)
    paged = await (await http.get("/v1/summary", params={"limit": "1"}, headers=admin)).json()
    assert [s["namespace"] for s in paged["items"]] == [NS_A]
    assert paged["next_after"] == NS_A
    # A namespace whose entities are all deleted still holds their tombstones (version
    # history, which keeps the numbering), so it stays listed.
    assert (await http.delete(f"{B}/entities/note/n", headers=h)).status == 204
    after = await (await http.get("/v1/summary", headers=admin)).json()
    assert [s["namespace"] for s in after["items"]] == [NS_A, NS_B]


# -- the backend's accounting where Redis differs from the embedded store ------------------


async def test_bytes_of_an_entity_whose_key_redis_already_dropped(
    redis_backend: RedisMemoryBackend,
) -> None:
    """A record written before version history has a Redis expiry (``PXAT``), so Redis
    deletes it on its own; the size must still be subtracted once."""
    ns = f"u{secrets.token_hex(6)}"
    keep = {"keep": "k" * 40}
    await redis_backend.save_entity(ns, "doc", "keep", keep)
    gone = await redis_backend.save_entity(ns, "doc", "gone", {"text": "g" * 300}, ttl=0.5)
    await redis_backend.save_entity(ns, "doc", "later", {"text": "l" * 100}, ttl=0.5)
    key = redis_backend._entity_keys(ns, "doc", "gone")[0]
    client = redis_backend.connection.client
    assert gone.expires_at is not None
    # what the release before version history wrote: the key expires with the entity
    await client.execute_command("PEXPIREAT", key, math.ceil(gone.expires_at * 1000))
    deadline = 50
    while int(await client.execute_command("EXISTS", key)) and deadline:
        await asyncio.sleep(0.2)  # wait for Redis itself to drop the key (lazy or active)
        deadline -= 1
    assert int(await client.execute_command("EXISTS", key)) == 0
    assert await redis_backend.stored_bytes(ns) == len(orjson.dumps(keep))
    assert await redis_backend.stored_bytes(ns) == len(orjson.dumps(keep))  # pruned once
    # A save over the other expired one counts the new payload only.
    await redis_backend.save_entity(ns, "doc", "later", {"v": 1})
    assert await redis_backend.stored_bytes(ns) == len(orjson.dumps(keep)) + len(b'{"v":1}')
    assert await redis_backend.list_namespaces() == [ns]


async def test_tool_usage_retention_trim_gives_bytes_back(any_redis_settings: Settings) -> None:
    backend = RedisMemoryBackend(
        any_redis_settings.model_copy(update={"redis_tool_usage_retention_seconds": 1.0})
    )
    await backend.connect()
    try:
        ns = f"u{secrets.token_hex(6)}"
        rec = ToolUsageRecord(
            id=secrets.token_hex(8),
            tool_name="search",
            input={"q": "x" * 50},
            output={"hits": [1, 2, 3]},
            duration_ms=1.0,
            success=True,
            timestamp=time.time(),
        )
        await backend.record_tool_usage(ns, rec)
        assert await backend.stored_bytes(ns) == len(orjson.dumps(rec.input)) + len(
            orjson.dumps(rec.output)
        )
        await asyncio.sleep(1.5)
        assert await backend.stored_bytes(ns) == 0
        assert (await backend.summary(ns)).tool_usage_counts == {}
    finally:
        await backend.close()


async def test_history_alone_keeps_a_namespace_listed(redis_backend: RedisMemoryBackend) -> None:
    """``list_namespaces`` counts version history: revisions of a conversation emptied by
    pops, the tombstone of a deleted entity."""
    revs, tomb = f"r{secrets.token_hex(6)}", f"t{secrets.token_hex(6)}"
    await redis_backend.append_messages(revs, "c", [{"m": 1}])
    await redis_backend.replace_conversation(revs, "c", [{"m": 2}])
    assert await redis_backend.pop_message(revs, "c") is not None  # empty: gone
    await redis_backend.save_entity(tomb, "doc", "d", {"v": 1})
    assert await redis_backend.delete_entity(tomb, "doc", "d")
    assert await redis_backend.list_conversations(revs, limit=10) == Page([], None)
    assert await redis_backend.list_namespaces() == sorted([revs, tomb])
    # purging the history erases the revisions; the tombstone holds the numbering
    assert await redis_backend.purge_history(revs) == 1
    assert await redis_backend.purge_history(tomb) == 1  # the deleted version, not its tombstone
    assert await redis_backend.list_namespaces() == [tomb]

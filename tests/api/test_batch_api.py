"""The batch routes over HTTP (embedded backend): answers, error bodies, quotas, client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient
from memstore.core.bounds import MAX_BATCH_ITEMS
from memstore.core.errors import ConflictError, InvalidInputError
from memstore.core.records import EntityWrite, MessagesWrite
from memstore.core.settings import Settings
from memstore.server.app import create_app
from tests.api.conftest import SpecChecker

Client = TestClient[Any, Any]
NS = "/v1/namespaces/agent"
BATCH = "/v1/namespaces/{namespace}/entities:batch"
MESSAGES = "/v1/namespaces/{namespace}/conversations:batch"


async def changes(http: Client) -> list[dict[str, Any]]:
    resp = await http.get(f"{NS}/changes", params={"after": "0"})
    assert resp.status == 200, await resp.text()
    events: list[dict[str, Any]] = (await resp.json())["events"]
    return events


async def test_a_batch_saves_every_item(http: Client, spec: SpecChecker) -> None:
    assert (await http.put(f"{NS}/entities/note/a", json={"data": {"v": 1}})).status == 201
    resp = await http.post(
        f"{NS}/entities:batch",
        json={
            "items": [
                # an integral float is the integer (the document's "integer" admits it)
                {"type": "note", "id": "a", "data": {"v": 2}, "expected_version": 1.0},
                {"type": "note", "id": "b", "data": {"v": 1}, "create_only": True},
                {"type": "user", "id": "u", "data": {}, "ttl_seconds": 60},
            ]
        },
    )
    body = await resp.json()
    assert resp.status == 200, body
    spec.check("POST", BATCH, 200, body)
    assert [(i["id"], i["version"]) for i in body["items"]] == [("a", 2), ("b", 1), ("u", 1)]
    assert body["created"] == [1, 2]
    got = await http.get(f"{NS}/entities/note/a")
    assert (await got.json())["data"] == {"v": 2}
    assert got.headers["ETag"] == '"2"'
    assert len(await changes(http)) == 4

    appended = await http.post(
        f"{NS}/conversations:batch",
        json={"items": [{"conversation_id": "c1", "messages": [{"m": 1}, {"m": 2}]},
                        {"conversation_id": "c2", "messages": [{"m": 3}]}]},
    )  # fmt: skip
    out = await appended.json()
    assert appended.status == 201, out
    spec.check("POST", MESSAGES, 201, out)
    assert [[m["seq"] for m in item["items"]] for item in out["items"]] == [[1, 2], [1]]


async def test_a_bad_item_is_a_400_naming_it_and_nothing_is_written(
    http: Client, spec: SpecChecker
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"type": "note", "id": "b", "data": []}, "items.1.data"),
        ({"type": "no/te", "id": "b", "data": {}}, "items.1.type"),
        ({"type": "note", "id": "b", "data": {}, "ttl_seconds": -1}, "items.1.ttl_seconds"),
        ({"type": "note", "id": "a", "data": {}}, "items"),  # the same key twice
        ({"type": "note", "id": "b", "data": {}, "expected_version": 2, "create_only": True},
         "items.1.create_only"),
    ]  # fmt: skip
    for bad, field in cases:
        resp = await http.post(
            f"{NS}/entities:batch",
            json={"items": [{"type": "note", "id": "a", "data": {}}, bad]},
        )
        body = await resp.json()
        assert resp.status == 400, body
        spec.check("POST", BATCH, 400, body)
        assert body["code"] == "invalid_input"
        assert body["details"]["item"] == 1, body
        assert body["details"]["field"] == field, body
    too_many = [{"type": "note", "id": f"n{i}", "data": {}} for i in range(MAX_BATCH_ITEMS + 1)]
    resp = await http.post(f"{NS}/entities:batch", json={"items": too_many})
    assert resp.status == 400
    assert (await resp.json())["details"]["field"] == "items"
    assert (await http.get(f"{NS}/entities/note/a")).status == 404
    assert await changes(http) == []


async def test_an_item_too_large_is_a_413_naming_it(http: Client, spec: SpecChecker) -> None:
    # api_settings: MEMSTORE_MAX_BODY_BYTES 64 KiB per payload
    resp = await http.post(
        f"{NS}/entities:batch",
        json={"items": [{"type": "note", "id": "a", "data": {}},
                        {"type": "note", "id": "b", "data": {"x": "y" * 70_000}}]},
    )  # fmt: skip
    body = await resp.json()
    assert resp.status == 413, body
    spec.check("POST", BATCH, 413, body)
    assert body["code"] == "payload_too_large"
    assert body["details"]["item"] == 1
    assert await changes(http) == []


async def test_a_conflict_is_a_412_naming_the_item_and_writes_nothing(
    http: Client, spec: SpecChecker
) -> None:
    assert (await http.put(f"{NS}/entities/note/a", json={"data": {"v": 1}})).status == 201
    resp = await http.post(
        f"{NS}/entities:batch",
        json={"items": [{"type": "note", "id": "b", "data": {}},
                        {"type": "note", "id": "a", "data": {}, "create_only": True}]},
    )  # fmt: skip
    body = await resp.json()
    assert resp.status == 412, body
    spec.check("POST", BATCH, 412, body)
    assert body["code"] == "version_conflict"
    assert body["details"]["item"] == 1
    assert body["details"]["written"] == []
    assert body["details"]["current_version"] == 1
    assert (await http.get(f"{NS}/entities/note/b")).status == 404
    assert len(await changes(http)) == 1


@pytest.fixture
async def quota_http(api_settings: Settings) -> AsyncIterator[Client]:
    settings = api_settings.model_copy(
        update={"quota_max_entities": 3, "quota_max_bytes": 3000, "quota_refresh_seconds": 3600}
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def test_quotas_are_checked_for_the_whole_batch(quota_http: Client) -> None:
    http = quota_http
    assert (await http.put(f"{NS}/entities/note/a", json={"data": {}})).status == 201
    # a, b, c, d: three new entities on top of one would make four
    items = [{"type": "note", "id": i, "data": {}} for i in "abcd"]
    full = await http.post(f"{NS}/entities:batch", json={"items": items})
    body = await full.json()
    assert full.status == 403, body
    assert body["code"] == "quota_exceeded"
    assert body["details"]["quota"] == "entities"
    assert (await http.get(f"{NS}/entities/note/b")).status == 404
    # a bad key is the handler's 400 naming its item, not the quota layer's lookup (four
    # keys where two fit: the quota looks up which exist)
    for bad in ({"type": "no/te", "id": "x", "data": {}}, {"type": "note", "id": "", "data": {}}):
        resp = await http.post(f"{NS}/entities:batch", json={"items": [*items[:3], bad]})
        body = await resp.json()
        assert resp.status == 400, body
        assert body["details"]["item"] == 3, body
    # two new and one replaced fit, and are counted: the next create is refused
    ok = await http.post(f"{NS}/entities:batch", json={"items": items[:3]})
    assert ok.status == 200, await ok.text()
    assert (await http.put(f"{NS}/entities/note/z", json={"data": {}})).status == 403
    # bytes: the whole body counts
    big = [{"conversation_id": f"c{i}", "messages": [{"t": "x" * 800}]} for i in range(4)]
    refused = await http.post(f"{NS}/conversations:batch", json={"items": big})
    assert refused.status == 403
    assert (await refused.json())["details"]["quota"] == "bytes"
    assert (await http.get(f"{NS}/conversations/c0/messages")).status == 404


async def test_the_client_sends_batches(remote: MemoryClient) -> None:
    await remote.save_entity("note", "a", {"v": 1})
    records = await remote.save_entities(
        [
            EntityWrite("note", "a", {"v": 2}, expected_version=1),
            EntityWrite("note", "b", {"v": 1}, expected_version=0, ttl=60),
        ]
    )
    assert [(r.id, r.version) for r in records] == [("a", 2), ("b", 1)]
    assert remote.versions.floor((remote.namespace, "note", "a")) == 2
    with pytest.raises(ConflictError) as conflict:
        await remote.save_entities([EntityWrite("note", "c", {}), EntityWrite("note", "a", {}, 1)])
    assert conflict.value.details["item"] == 1
    assert conflict.value.details["written"] == []
    with pytest.raises(InvalidInputError) as bad:
        await remote.save_entities([EntityWrite("note", "c", {}), EntityWrite("note", "c", {})])
    assert bad.value.details["item"] == 1
    results = await remote.append_messages_batch(
        [MessagesWrite("c1", [{"m": 1}]), MessagesWrite("c2", [{"m": 2}, {"m": 3}])]
    )
    assert [[m.seq for m in r] for r in results] == [[1], [1, 2]]


async def test_the_client_records_the_versions_a_conflict_wrote(redis_settings: Settings) -> None:
    """On a backend that is not all or nothing (Redis), a 412 lists the items written
    with their versions, and the client keeps them as read-your-writes floors."""
    async with (
        TestClient(TestServer(create_app(redis_settings))) as http,
        MemoryClient(str(http.make_url("/")).rstrip("/"), namespace="agent") as remote,
    ):
        await remote.save_entity("note", "a", {"v": 1})
        with pytest.raises(ConflictError) as conflict:
            await remote.save_entities(
                [EntityWrite("note", "b", {}), EntityWrite("note", "a", {}, expected_version=5)]
            )
        assert conflict.value.details["written"] == [0], conflict.value.details
        assert conflict.value.details["versions"] == [1]
        assert remote.versions.floor(("agent", "note", "b")) == 1

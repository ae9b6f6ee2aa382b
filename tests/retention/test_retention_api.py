"""Retention through the HTTP API and the client: pins, the policy, dry runs, enforcement."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient
from memstore.core.errors import InvalidInputError
from memstore.core.retention import RetentionConfig, RetentionPolicy
from memstore.core.settings import Settings
from memstore.server.app import create_app
from tests.api.conftest import SpecChecker

HOUR = 3600.0
P = "/v1/namespaces/{namespace}"


@pytest.fixture
def retention_settings(embedded_settings: Settings) -> Settings:
    config = RetentionConfig(
        default=RetentionPolicy(entity_idle_seconds=HOUR, conversation_max_messages=2),
        namespaces={"other": {"entity_idle_seconds": None}},
    )
    # declared, not enforced in the background: the test enforces through the API
    return embedded_settings.model_copy(update={"retention": config, "retention_enforce": False})


@pytest.fixture
async def http(retention_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(retention_settings))) as client:
        yield client


@pytest.fixture
async def spec(http: TestClient[Any, Any]) -> SpecChecker:
    return SpecChecker(await (await http.get("/openapi.json")).json())


@pytest.fixture
async def remote(http: TestClient[Any, Any]) -> AsyncIterator[MemoryClient]:
    async with MemoryClient(str(http.make_url("/")).rstrip("/"), namespace="agent") as client:
        yield client


async def test_pin_over_http(http: TestClient[Any, Any], spec: SpecChecker) -> None:
    await http.put("/v1/namespaces/agent/entities/note/n1", json={"data": {"x": 1}})
    resp = await http.put("/v1/namespaces/agent/entities/note/n1/pin")
    body = await resp.json()
    assert resp.status == 200 and body["pinned"] is True and resp.headers["ETag"] == '"1"'
    spec.check("PUT", P + "/entities/{entity_type}/{entity_id}/pin", 200, body)
    got = await (await http.get("/v1/namespaces/agent/entities/note/n1")).json()
    assert got["pinned"] is True
    resp = await http.delete("/v1/namespaces/agent/entities/note/n1/pin")
    assert resp.status == 200 and (await resp.json())["pinned"] is False
    missing = await http.put("/v1/namespaces/agent/entities/note/nope/pin")
    assert missing.status == 404
    spec.check("PUT", P + "/entities/{entity_type}/{entity_id}/pin", 404, await missing.json())


async def test_policy_dry_run_and_enforce_over_http(
    http: TestClient[Any, Any], spec: SpecChecker
) -> None:
    for i in ("a", "b", "c"):
        await http.put(f"/v1/namespaces/agent/entities/note/{i}", json={"data": {"i": i}})
    await http.put("/v1/namespaces/agent/entities/note/c/pin")
    await http.post(
        "/v1/namespaces/agent/conversations/c1/messages",
        json={"messages": [{"i": i} for i in range(5)]},
    )
    policy = await (await http.get("/v1/namespaces/agent/retention/policy")).json()
    assert policy["entity_idle_seconds"] == HOUR and policy["conversation_max_messages"] == 2
    other = await (await http.get("/v1/namespaces/other/retention/policy")).json()
    assert other["entity_idle_seconds"] is None and other["conversation_max_messages"] == 2

    at = time.time() + 2 * HOUR
    resp = await http.get("/v1/namespaces/agent/retention/dry-run", params={"at": str(at)})
    later = await resp.json()
    assert resp.status == 200, later
    spec.check("GET", P + "/retention/dry-run", 200, later)
    assert [(e["id"], e["reason"]) for e in later["entities"]] == [("a", "idle"), ("b", "idle")]
    assert later["counts"]["messages"] == 3 and later["complete"]

    now = await (await http.get("/v1/namespaces/agent/retention/dry-run")).json()
    assert now["entities"] == []  # nothing is idle yet
    assert [(c["id"], c["through_seq"], c["messages"]) for c in now["conversations"]] == [
        ("c1", 3, 3)
    ]
    resp = await http.post("/v1/namespaces/agent/retention:enforce")
    done = await resp.json()
    assert resp.status == 200, done
    spec.check("POST", P + "/retention:enforce", 200, done)
    assert done["conversations"] == now["conversations"] and not done["dry_run"]
    messages = await (await http.get("/v1/namespaces/agent/conversations/c1/messages")).json()
    assert [m["seq"] for m in messages["items"]] == [4, 5]
    # the entities are still there: enforcement judged at the real time
    assert (await http.get("/v1/namespaces/agent/entities/note/a")).status == 200

    bad = await http.get("/v1/namespaces/agent/retention/dry-run", params={"at": "soon"})
    assert bad.status == 400 and (await bad.json())["details"]["field"] == "at"
    bad = await http.get("/v1/namespaces/agent/retention/dry-run", params={"limit": "0"})
    assert bad.status == 400


async def test_client_mirrors_the_routes(remote: MemoryClient) -> None:
    await remote.save_entity("note", "a", {"x": 1})
    pinned = await remote.pin_entity("note", "a")
    assert pinned is not None and pinned.pinned and pinned.version == 1
    assert (await remote.get_entity("note", "a", use_cache=False)).pinned  # type: ignore[union-attr]
    assert await remote.pin_entity("note", "missing") is None
    await remote.save_entity("note", "b", {"x": 2})
    report = await remote.retention_dry_run(at=time.time() + 2 * HOUR, limit=10)
    assert [e.id for e in report.entities] == ["b"] and report.dry_run
    policy = await remote.get_retention_policy()
    assert policy.entity_idle_seconds == HOUR
    done = await remote.enforce_retention()
    assert done.items == 0 and not done.dry_run
    with pytest.raises(InvalidInputError):
        await remote.retention_dry_run(at=float("nan"))

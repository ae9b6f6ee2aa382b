"""Version history through real HTTP: the routes (checked against /openapi.json), the
client's methods over them, roles with auth on, and the retention of versions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient
from memstore.core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from memstore.core.retention import RetentionConfig, RetentionPolicy
from memstore.core.settings import Settings
from memstore.server.app import create_app
from tests.api.conftest import SpecChecker
from tests.security.conftest import write_tokens_file

P = "/v1/namespaces/{namespace}"
E = P + "/entities/{entity_type}/{entity_id}"
DOC = "/v1/namespaces/agent/entities/doc/d"


async def _tick() -> float:
    await asyncio.sleep(0.01)
    mark = time.time()
    await asyncio.sleep(0.01)
    return mark


async def _save(http: TestClient[Any, Any], n: int, path: str = DOC) -> dict[str, Any]:
    resp = await http.put(path, json={"data": {"n": n, "tags": [f"t{n}"]}})
    assert resp.status in (200, 201)
    body: dict[str, Any] = await resp.json()
    return body


async def test_acceptance_over_http(http: TestClient[Any, Any], spec: SpecChecker) -> None:
    marks: dict[int, float] = {}
    for n in range(1, 6):
        if n == 4:
            marks[34] = await _tick()
        saved = await _save(http, n)
        assert saved["version"] == n

    # the versions, newest first, in pages
    resp = await http.get(DOC + "/versions", params={"limit": "2"})
    page = await resp.json()
    assert resp.status == 200
    spec.check("GET", E + "/versions", 200, page)
    assert [v["version"] for v in page["items"]] == [5, 4] and page["next_cursor"]
    rest = await (
        await http.get(DOC + "/versions", params={"cursor": page["next_cursor"], "limit": "10"})
    ).json()
    assert [v["version"] for v in rest["items"]] == [3, 2, 1] and rest["next_cursor"] is None

    # one version; as of a version; as of an instant (seconds and RFC 3339)
    resp = await http.get(DOC + "/versions/2")
    two = await resp.json()
    spec.check("GET", E + "/versions/{version}", 200, two)
    assert two["data"] == {"n": 2, "tags": ["t2"]} and resp.headers["ETag"] == '"2"'
    resp = await http.get(DOC, params={"as_of_version": "2"})
    assert (await resp.json())["data"] == two["data"]
    spec.check("GET", E, 200, await resp.json())
    resp = await http.get(DOC, params={"as_of": repr(marks[34])})
    at = await resp.json()
    spec.check("GET", E, 200, at)
    assert at["version"] == 3 and resp.headers["ETag"] == '"3"'
    rfc3339 = datetime.fromtimestamp(marks[34], UTC).isoformat()
    assert (await (await http.get(DOC, params={"as_of": rfc3339})).json())["version"] == 3
    assert (await http.get(DOC, params={"as_of": "100"})).status == 404
    assert (await http.get(DOC + "/versions/9")).status == 404

    # the diff v2..v4 as RFC 6902
    resp = await http.get(DOC + "/diff", params={"from": "2", "to": "4"})
    diff = await resp.json()
    spec.check("GET", E + "/diff", 200, diff)
    assert sorted(diff["patch"], key=lambda op: op["path"]) == [
        {"op": "replace", "path": "/n", "value": 4},
        {"op": "replace", "path": "/tags/0", "value": "t4"},
    ]

    # revert to v2 writes v6 == v2's data; a stale If-Match is refused
    resp = await http.post(DOC + "/revert", json={"version": 2}, headers={"If-Match": '"4"'})
    assert resp.status == 412
    resp = await http.post(DOC + "/revert", json={"version": 2}, headers={"If-Match": '"5"'})
    six = await resp.json()
    spec.check("POST", E + "/revert", 200, six)
    assert six["version"] == 6 and six["data"] == two["data"] and resp.headers["ETag"] == '"6"'

    # delete; re-create continues at 7; If-Match "1" fails
    assert (await http.delete(DOC, headers={"If-Match": '"6"'})).status == 204
    resp = await http.put(DOC, json={"data": {"n": 1}}, headers={"If-Match": '"1"'})
    assert resp.status == 412
    resp = await http.put(DOC, json={"data": {"n": 7}}, headers={"If-None-Match": "*"})
    assert resp.status == 201 and resp.headers["ETag"] == '"7"'
    assert (await resp.json())["version"] == 7
    resp = await http.put(DOC, json={"data": {"n": 1}}, headers={"If-Match": '"1"'})
    assert resp.status == 412
    listed = await (await http.get(DOC + "/versions")).json()
    assert [(v["version"], v["deleted"]) for v in listed["items"]][:3] == [
        (7, False),
        (6, True),
        (6, False),
    ]


async def test_bad_version_requests_are_400(http: TestClient[Any, Any], spec: SpecChecker) -> None:
    await _save(http, 1)
    for path, params in (
        (DOC + "/versions/0", {}),
        (DOC + "/versions/x", {}),
        (DOC, {"as_of_version": "1", "as_of": "5"}),
        (DOC, {"as_of": "yesterday"}),
        (DOC, {"as_of": "2026-12-05T18:00:00"}),  # no offset
        (DOC, {"as_of_version": "0"}),
        (DOC + "/diff", {"from": "1"}),
        (DOC + "/versions", {"cursor": "bm90LWEtY3Vyc29y"}),
    ):
        resp = await http.get(path, params=params)
        body = await resp.json()
        assert resp.status == 400, (path, params, body)
        assert body["code"] == "invalid_input" and body["details"]["field"]
    resp = await http.post(DOC + "/revert", json={"version": 0})
    assert resp.status == 400 and (await resp.json())["details"]["field"] == "version"
    resp = await http.post(DOC + "/revert", json={"version": 9})
    assert resp.status == 404
    resp = await http.get(DOC + "/diff", params={"from": "1", "to": "9"})
    assert resp.status == 404 and (await resp.json())["details"]["field"] == "to"
    # nothing was written by the refused requests
    assert [v["version"] for v in (await (await http.get(DOC + "/versions")).json())["items"]] == [
        1
    ]


async def test_conversation_revisions_over_http(
    http: TestClient[Any, Any], spec: SpecChecker
) -> None:
    conv = "/v1/namespaces/agent/conversations/c1"
    await http.post(conv + "/messages", json={"messages": [{"m": 1}, {"m": 2}]})
    resp = await http.put(conv + "/messages", json={"messages": [{"m": "new"}]})
    assert resp.status == 200
    resp = await http.get(conv + "/revisions")
    page = await resp.json()
    spec.check("GET", P + "/conversations/{conversation_id}/revisions", 200, page)
    assert [(r["revision"], r["message_count"]) for r in page["items"]] == [(1, 2)]
    resp = await http.get(conv + "/revisions/1")
    one = await resp.json()
    spec.check("GET", P + "/conversations/{conversation_id}/revisions/{revision}", 200, one)
    assert [m["message"] for m in one["messages"]] == [{"m": 1}, {"m": 2}]
    resp = await http.post(conv + "/revisions/1/restore")
    restored = await resp.json()
    spec.check(
        "POST", P + "/conversations/{conversation_id}/revisions/{revision}/restore", 200, restored
    )
    assert [m["message"] for m in restored["items"]] == [{"m": 1}, {"m": 2}]
    got = await (await http.get(conv + "/messages")).json()
    assert [m["message"] for m in got["items"]] == [{"m": 1}, {"m": 2}]
    # the restore kept what it replaced
    revisions = await (await http.get(conv + "/revisions")).json()
    assert [(r["revision"], r["message_count"]) for r in revisions["items"]] == [(2, 1), (1, 2)]
    assert (await http.get(conv + "/revisions/7")).status == 404
    assert (await http.post(conv + "/revisions/7/restore")).status == 404


async def test_snapshot_and_revert_over_http(http: TestClient[Any, Any], spec: SpecChecker) -> None:
    base = "/v1/namespaces/agent"
    await _save(http, 1, base + "/entities/doc/kept")
    await _save(http, 1, base + "/entities/doc/changed")
    await _save(http, 1, base + "/entities/doc/deleted")
    resp = await http.post(base + "/snapshots", json={"name": "before-run"})
    snap = await resp.json()
    spec.check("POST", P + "/snapshots", 201, snap)
    assert resp.status == 201 and snap["name"] == "before-run"
    resp = await http.post(base + "/snapshots", json={"name": "before-run"})
    assert resp.status == 409 and (await resp.json())["code"] == "already_exists"
    await _tick()
    # the agent goes wrong: changes one, deletes one, creates one
    await _save(http, 2, base + "/entities/doc/changed")
    await http.delete(base + "/entities/doc/deleted")
    await _save(http, 1, base + "/entities/doc/created")

    listed = await (await http.get(base + "/snapshots")).json()
    spec.check("GET", P + "/snapshots", 200, listed)
    assert [s["name"] for s in listed["items"]] == ["before-run"]
    resp = await http.post(base + "/snapshots/before-run/revert")
    done = await resp.json()
    spec.check("POST", P + "/snapshots/{snapshot}/revert", 200, done)
    assert (done["saved"], done["deleted"], done["unchanged"], done["conflicts"]) == (2, 1, 1, [])
    changed = await (await http.get(base + "/entities/doc/changed")).json()
    assert changed["data"] == {"n": 1, "tags": ["t1"]} and changed["version"] == 3
    deleted = await (await http.get(base + "/entities/doc/deleted")).json()
    assert deleted["version"] == 2  # re-created, numbered on from the tombstone
    assert (await http.get(base + "/entities/doc/created")).status == 404
    kept = await (await http.get(base + "/entities/doc/kept")).json()
    assert kept["version"] == 1
    # a second revert finds nothing to do
    again = await (await http.post(base + "/snapshots/before-run/revert")).json()
    assert (again["saved"], again["deleted"]) == (0, 0)
    assert (await http.delete(base + "/snapshots/before-run")).status == 204
    assert (await http.delete(base + "/snapshots/before-run")).status == 404
    assert (await http.post(base + "/snapshots/before-run/revert")).status == 404
    resp = await http.post(base + "/snapshots", json={"name": "bad name"})
    assert resp.status == 400 and (await resp.json())["details"]["field"] == "name"


async def test_purge_history_over_http(http: TestClient[Any, Any], spec: SpecChecker) -> None:
    for n in range(1, 4):
        await _save(http, n)
    resp = await http.post("/v1/namespaces/agent/history:purge")
    body = await resp.json()
    spec.check("POST", P + "/history:purge", 200, body)
    assert body == {"removed": 2, "erase_pending": False}
    listed = await (await http.get(DOC + "/versions")).json()
    assert [v["version"] for v in listed["items"]] == [3]


async def test_the_client_mirrors_the_routes(remote: MemoryClient) -> None:
    for n in range(1, 4):
        await remote.save_entity("doc", "d", {"n": n})
    mark = await _tick()
    await remote.save_entity("doc", "d", {"n": 4})
    page = await remote.list_entity_versions("doc", "d", limit=3)
    assert [v.version for v in page.items] == [4, 3, 2] and page.next_cursor is not None
    rest = await remote.list_entity_versions("doc", "d", cursor=page.next_cursor)
    assert [v.version for v in rest.items] == [1]
    two = await remote.get_entity_version("doc", "d", 2)
    assert two is not None and two.data == {"n": 2}
    assert await remote.get_entity_version("doc", "d", 9) is None
    at = await remote.get_entity_as_of("doc", "d", at=mark)
    assert at is not None and at.version == 3
    assert (
        await remote.get_entity_as_of("doc", "d", version=1)
    ) == await remote.get_entity_version("doc", "d", 1)
    assert await remote.get_entity_as_of("doc", "d", at=100.0) is None
    with pytest.raises(InvalidInputError):
        await remote.get_entity_as_of("doc", "d")
    assert await remote.diff_entity_versions("doc", "d", 1, 4) == [
        {"op": "replace", "path": "/n", "value": 4}
    ]
    with pytest.raises(NotFoundError):
        await remote.diff_entity_versions("doc", "d", 1, 40)
    with pytest.raises(ConflictError):
        await remote.revert_entity("doc", "d", 2, expected_version=3)
    reverted = await remote.revert_entity("doc", "d", 2, expected_version=4)
    assert (reverted.version, reverted.data) == (5, {"n": 2})
    assert (await remote.get_entity("doc", "d")) == reverted

    await remote.save_conversation_history([{"a": 1}], "c")
    await remote.save_conversation_history([{"b": 2}], "c")
    revisions = await remote.list_conversation_revisions("c")
    assert [r.revision for r in revisions.items] == [1]
    found = await remote.get_conversation_revision(1, "c")
    assert found is not None and [m.message for m in found[1]] == [{"a": 1}]
    assert await remote.get_conversation_revision(5, "c") is None
    restored = await remote.restore_conversation_revision(1, "c")
    assert [m.message for m in restored] == [{"a": 1}]

    snap = await remote.create_snapshot("s1")
    assert snap.name == "s1" and await remote.get_snapshot("s1") == snap
    with pytest.raises(AlreadyExistsError):
        await remote.create_snapshot("s1")
    await remote.save_entity("doc", "d", {"n": "after"})
    assert [s.name for s in await remote.list_snapshots()] == ["s1"]
    result = await remote.revert_to_snapshot("s1")
    assert (result.saved, result.deleted, result.unchanged) == (1, 0, 0)
    assert (await remote.get_entity("doc", "d")).data == {"n": 2}  # type: ignore[union-attr]
    assert await remote.delete_snapshot("s1") and not await remote.delete_snapshot("s1")
    assert await remote.purge_history() > 0


@pytest.fixture
def auth_settings(embedded_settings: Settings, tmp_path: Path) -> Settings:
    path = write_tokens_file(
        tmp_path / "tokens.json",
        [
            ("ro", "reader-token", ["agent"], ["read"]),
            ("alice", "writer-token", ["agent"], ["read", "write"]),
            ("root", "admin-token", ["agent"], ["read", "write", "admin"]),
        ],
    )
    return embedded_settings.model_copy(update={"auth_enabled": True, "auth_tokens_file": path})


@pytest.fixture
async def auth_http(auth_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(auth_settings))) as client:
        yield client


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_roles_and_the_actor_with_auth(auth_http: TestClient[Any, Any]) -> None:
    http = auth_http
    resp = await http.put(DOC, json={"data": {"n": 1}}, headers=_as("writer-token"))
    assert resp.status == 201
    await http.put(DOC, json={"data": {"n": 2}}, headers=_as("admin-token"))
    listed = await (await http.get(DOC + "/versions", headers=_as("reader-token"))).json()
    # who wrote each version: the token's name, never the token
    assert [(v["version"], v["actor"]) for v in listed["items"]] == [(2, "root"), (1, "alice")]
    assert "writer-token" not in str(listed)
    # a reader reads history but cannot revert; a writer cannot revert a namespace
    resp = await http.post(DOC + "/revert", json={"version": 1}, headers=_as("reader-token"))
    assert resp.status == 403
    resp = await http.post(DOC + "/revert", json={"version": 1}, headers=_as("writer-token"))
    assert resp.status == 200
    snap = "/v1/namespaces/agent/snapshots"
    assert (await http.post(snap, json={"name": "s"}, headers=_as("writer-token"))).status == 201
    resp = await http.post(snap + "/s/revert", headers=_as("writer-token"))
    assert resp.status == 403
    assert (await http.post(snap + "/s/revert", headers=_as("admin-token"))).status == 200
    resp = await http.post("/v1/namespaces/agent/history:purge", headers=_as("writer-token"))
    assert resp.status == 403


@pytest.fixture
def versions_settings(embedded_settings: Settings) -> Settings:
    config = RetentionConfig(default=RetentionPolicy(versions_keep=1))
    return embedded_settings.model_copy(update={"retention": config, "retention_enforce": False})


@pytest.fixture
async def versions_http(versions_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(versions_settings))) as client:
        yield client


async def test_retention_of_versions_over_http(versions_http: TestClient[Any, Any]) -> None:
    http = versions_http
    spec = SpecChecker(await (await http.get("/openapi.json")).json())
    for n in range(1, 5):
        await _save(http, n)
    resp = await http.get("/v1/namespaces/agent/retention/dry-run")
    dry = await resp.json()
    spec.check("GET", P + "/retention/dry-run", 200, dry)
    assert dry["counts"]["versions"] == 2
    assert [(v["type"], v["id"], v["version"], v["reason"]) for v in dry["versions"]] == [
        ("doc", "d", 1, "max_versions"),
        ("doc", "d", 2, "max_versions"),
    ]
    resp = await http.post("/v1/namespaces/agent/retention:enforce")
    done = await resp.json()
    spec.check("POST", P + "/retention:enforce", 200, done)
    assert done["versions"] == dry["versions"]
    listed = await (await http.get(DOC + "/versions")).json()
    assert [v["version"] for v in listed["items"]] == [4, 3]

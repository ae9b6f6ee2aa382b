"""Tenant isolation, table-driven over every route of the route table.

For each route there is one concrete request (``CASES``); the table must name every
route, so a new route fails here until its access rule is decided. For every namespaced
route, a token for tenant A asking for tenant B's namespace gets 403 ``forbidden`` with the
same body whether or not B holds data, and B's data is unchanged afterwards. Admin routes
refuse non-admin tokens; open routes need no token; everything else answers 401 with
``WWW-Authenticate`` without a token or with a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from memstore.core import dump
from memstore.server.routes import ROUTES
from tests.security.conftest import NS_A, NS_B, Tokens

Client = TestClient[Any, Any]

SECRET_MARK = "b-private-7f3a"  # planted in tenant B's data; must never reach A


@dataclass(frozen=True)
class Case:
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None
    #: a raw body (sent as is), for the routes whose body is not JSON
    data: bytes | None = None


#: A valid dump of an empty namespace (the import route's body).
EMPTY_DUMP = dump.manifest_line("elsewhere", {}) + dump.Tally().trailer_line()

CASES: dict[str, Case] = {
    "livez": Case(),
    "readyz": Case(),
    "prometheusMetrics": Case(),
    "openapi": Case(),
    "getMetrics": Case(),
    "clearCache": Case(),
    "listDataKeys": Case(),
    "rotateDataKeys": Case(),
    "shredDataKey": Case(),
    "listMemorySummaries": Case(),
    "getMemorySummary": Case(),
    "getEntityTypes": Case(),
    "listEntities": Case({"entity_type": "note"}),
    "getEntity": Case({"entity_type": "note", "entity_id": "n1"}),
    "saveEntity": Case({"entity_type": "note", "entity_id": "n1"}, body={"data": {"x": "A"}}),
    "deleteEntity": Case({"entity_type": "note", "entity_id": "n1"}),
    "pinEntity": Case({"entity_type": "note", "entity_id": "n1"}),
    "unpinEntity": Case({"entity_type": "note", "entity_id": "n1"}),
    "getRetentionPolicy": Case(),
    "retentionDryRun": Case(query={"at": "4000000000"}),
    "enforceRetention": Case(),
    "listConversations": Case(),
    "loadMessages": Case({"conversation_id": "c1"}),
    "appendMessages": Case({"conversation_id": "c1"}, body={"messages": [{"m": "A"}]}),
    "saveEntities": Case(body={"items": [{"type": "note", "id": "n1", "data": {"x": "A"}}]}),
    "appendMessagesBatch": Case(
        body={"items": [{"conversation_id": "c1", "messages": [{"m": "A"}]}]}
    ),
    "saveConversationHistory": Case({"conversation_id": "c1"}, body={"messages": []}),
    "popMessage": Case({"conversation_id": "c1"}),
    "deleteConversation": Case({"conversation_id": "c1"}),
    "saveToolUsage": Case(body={"tool_name": "search", "input": "A", "output": "A"}),
    "queryToolUsage": Case(query={"tool_name": "search"}),
    "getToolNames": Case(),
    "saveLearningFeedback": Case(body={"agent_name": "bot", "feedback_type": "t", "data": 1}),
    "getLearningFeedback": Case(query={"agent_name": "bot"}),
    "listWebhooks": Case(),
    "getWebhook": Case({"webhook_name": "w1"}),
    "saveWebhook": Case({"webhook_name": "w1"}, body={"url": "http://127.0.0.1:9/a"}),
    "deleteWebhook": Case({"webhook_name": "w1"}),
    "getChanges": Case(query={"after": "0"}),
    # Searches for B's planted mark: an answer in A's own namespace must not hold it.
    "searchEntities": Case(body={"query": SECRET_MARK}),
    "searchMessages": Case(body={"query": SECRET_MARK}),
    "searchToolUsage": Case(body={"query": SECRET_MARK}),
    "exportAudit": Case(query={"after": "0"}),
    "exportNamespace": Case(),
    "importNamespace": Case(data=EMPTY_DUMP),
    # version history
    "listEntityVersions": Case({"entity_type": "note", "entity_id": "n1"}),
    "getEntityVersion": Case({"entity_type": "note", "entity_id": "n1", "version": "1"}),
    "diffEntityVersions": Case(
        {"entity_type": "note", "entity_id": "n1"}, query={"from": "1", "to": "1"}
    ),
    "revertEntity": Case({"entity_type": "note", "entity_id": "n1"}, body={"version": 1}),
    "listConversationRevisions": Case({"conversation_id": "c1"}),
    "getConversationRevision": Case({"conversation_id": "c1", "revision": "1"}),
    "restoreConversationRevision": Case({"conversation_id": "c1", "revision": "1"}),
    "createSnapshot": Case(body={"name": "s1"}),
    "listSnapshots": Case(),
    "getSnapshot": Case({"snapshot": "s1"}),
    "deleteSnapshot": Case({"snapshot": "s1"}),
    "revertToSnapshot": Case({"snapshot": "s1"}),
    "purgeHistory": Case(),
    # analytics
    "getAnalyticsOverview": Case(),
    "getAnalyticsGrowth": Case(query={"kind": "entities"}),
    "getAnalyticsTools": Case(query={"tool_name": "search"}),
    "getAnalyticsFeedback": Case(query={"bucket": "day"}),
}

# What this suite expects; the route table's ``role`` column must say the same.
OPEN_ROUTES = frozenset({"livez", "readyz", "prometheusMetrics", "openapi"})
ADMIN_ROUTES = frozenset(
    {"getMetrics", "clearCache", "listMemorySummaries", "listDataKeys", "rotateDataKeys"}
)
# Namespaced, but admin there: the audit trail, export and import (the whole namespace),
# the webhooks (they hold secrets and send the namespace's changes out), and shredding
# the namespace's data key.
NAMESPACE_ADMIN_ROUTES = frozenset(
    {
        "exportAudit",
        "exportNamespace",
        "importNamespace",
        "listWebhooks",
        "getWebhook",
        "saveWebhook",
        "deleteWebhook",
        "shredDataKey",
        # bulk removal across the namespace
        "enforceRetention",
        # bulk changes across the namespace: rolling its entities back, erasing history,
        # and forgetting a snapshot (a writer must not take the way back away)
        "revertToSnapshot",
        "deleteSnapshot",
        "purgeHistory",
    }
)
# Reads with a body (a search's filter is a nested object): POST, role read.
POST_READ_ROUTES = frozenset({"searchEntities", "searchMessages", "searchToolUsage"})

BY_OP = {r.operation_id: r for r in ROUTES}
NAMESPACED = sorted(op for op, r in BY_OP.items() if "{namespace}" in r.path)
PROTECTED = sorted(op for op in BY_OP if op not in OPEN_ROUTES)


def request_for(op: str, namespace: str) -> tuple[str, str, dict[str, Any]]:
    route = BY_OP[op]
    case = CASES[op]
    path = route.path.format(namespace=namespace, **case.params)
    kwargs: dict[str, Any] = {"params": case.query}
    if case.body is not None:
        kwargs["json"] = case.body
    if case.data is not None:
        kwargs["data"] = case.data
    return route.method, path, kwargs


async def seed_b(http: Client, tokens: Tokens) -> None:
    h = tokens.header(tokens.b)
    ns = f"/v1/namespaces/{NS_B}"
    for path, method, body in [
        (f"{ns}/entities/note/n1", "PUT", {"data": {"secret": SECRET_MARK}}),
        (f"{ns}/conversations/c1/messages", "POST", {"messages": [{"text": SECRET_MARK}]}),
        (f"{ns}/tool-usage", "POST", {"tool_name": "search", "input": SECRET_MARK}),
        (f"{ns}/feedback", "POST", {"agent_name": "bot", "feedback_type": "t", "data": 1}),
    ]:
        resp = await http.request(method, path, json=body, headers=h)
        assert resp.status in (200, 201), await resp.text()
    resp = await http.put(
        f"{ns}/webhooks/w1",
        json={"url": f"http://127.0.0.1:9/{SECRET_MARK}"},
        headers=tokens.header(tokens.b_admin),
    )
    assert resp.status in (200, 201), await resp.text()


async def snapshot_b(http: Client, tokens: Tokens) -> list[Any]:
    h = tokens.header(tokens.b)
    ns = f"/v1/namespaces/{NS_B}"
    out = []
    for path in (
        f"{ns}/summary",
        f"{ns}/entities/note/n1",
        f"{ns}/conversations/c1/messages",
        f"{ns}/tool-usage",
        f"{ns}/feedback",
        f"{ns}/webhooks",
    ):
        resp = await http.get(
            path, headers=tokens.header(tokens.b_admin) if "webhooks" in path else h
        )
        body = await resp.json()
        for item in body.get("items", []) if isinstance(body, dict) else []:
            item.pop("created_at", None)
        out.append((resp.status, body))
    return out


def test_the_table_names_every_route() -> None:
    assert set(CASES) == set(BY_OP)
    # Every route's access rule is deliberate: open, admin, or namespaced (read for GET
    # and the searches, write for anything else).
    for op, route in BY_OP.items():
        if op in OPEN_ROUTES:
            expected = None
        elif op in ADMIN_ROUTES:
            expected = "admin"
        elif op in NAMESPACE_ADMIN_ROUTES:
            assert "{namespace}" in route.path, op
            expected = "admin"
        else:
            assert "{namespace}" in route.path, op
            reads = route.method == "GET" or op in POST_READ_ROUTES
            expected = "read" if reads else "write"
        assert route.role == expected, op


@pytest.mark.parametrize("op", NAMESPACED)
async def test_token_for_a_gets_nothing_of_b(make_http: Any, tokens: Tokens, op: str) -> None:
    http: Client = await make_http()
    a_tokens = (tokens.a, tokens.a_reader, tokens.a_admin)
    # First against an empty B, then against a B holding data: the answers must be equal.
    method, path, kwargs = request_for(op, NS_B)
    empty = {}
    for token in a_tokens:
        resp = await http.request(method, path, headers=tokens.header(token), **kwargs)
        assert resp.status == 403, await resp.text()
        empty[token] = await resp.json()
    await seed_b(http, tokens)
    before = await snapshot_b(http, tokens)
    for token in a_tokens:
        resp = await http.request(method, path, headers=tokens.header(token), **kwargs)
        text = await resp.text()
        assert resp.status == 403, text
        assert (await resp.json()) == empty[token]
        assert resp.content_type == "application/json"
        assert (await resp.json())["code"] == "forbidden"
        assert SECRET_MARK not in text
    assert await snapshot_b(http, tokens) == before
    # The same request in A's own namespace is let through (the table reaches the handler).
    own_token = tokens.a_admin if op in NAMESPACE_ADMIN_ROUTES else tokens.a
    method, path, kwargs = request_for(op, NS_A)
    own = await http.request(method, path, headers=tokens.header(own_token), **kwargs)
    assert own.status not in (401, 403), await own.text()
    assert SECRET_MARK not in await own.text()
    if op in NAMESPACE_ADMIN_ROUTES:
        # Configuring a namespace needs the admin role there: read/write tokens cannot.
        for token in (tokens.a, tokens.a_reader):
            resp = await http.request(method, path, headers=tokens.header(token), **kwargs)
            assert resp.status == 403, await resp.text()


@pytest.mark.parametrize("op", PROTECTED)
@pytest.mark.parametrize("credential", ["none", "wrong", "not-bearer"])
async def test_protected_routes_need_a_valid_token(
    make_http: Any, tokens: Tokens, op: str, credential: str
) -> None:
    http: Client = await make_http()
    await seed_b(http, tokens)
    method, path, kwargs = request_for(op, NS_B)
    headers = {
        "none": {},
        # Another token (a random one may already end in "xx").
        "wrong": {
            "Authorization": "Bearer " + tokens.b[:-2] + ("yy" if tokens.b[-2:] == "xx" else "xx")
        },
        "not-bearer": {"Authorization": "Basic " + tokens.b},
    }[credential]
    resp = await http.request(method, path, headers=headers, **kwargs)
    text = await resp.text()
    assert resp.status == 401, text
    assert (await resp.json())["code"] == "unauthorized"
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) == (credential == "wrong")
    assert SECRET_MARK not in text
    assert tokens.b not in text


@pytest.mark.parametrize("op", sorted(ADMIN_ROUTES))
async def test_admin_routes_need_the_admin_role(make_http: Any, tokens: Tokens, op: str) -> None:
    http: Client = await make_http()
    await seed_b(http, tokens)
    method, path, kwargs = request_for(op, NS_B)
    for token in (tokens.a, tokens.b, tokens.a_reader):
        resp = await http.request(method, path, headers=tokens.header(token), **kwargs)
        assert resp.status == 403, await resp.text()
        assert SECRET_MARK not in await resp.text()
    resp = await http.request(method, path, headers=tokens.header(tokens.admin), **kwargs)
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("op", sorted(NAMESPACE_ADMIN_ROUTES))
async def test_namespace_admin_routes_need_the_admin_role_there(
    make_http: Any, tokens: Tokens, op: str
) -> None:
    http: Client = await make_http()
    method, path, kwargs = request_for(op, NS_A)
    for token in (tokens.a, tokens.a_reader, tokens.b):
        resp = await http.request(method, path, headers=tokens.header(token), **kwargs)
        assert resp.status == 403, await resp.text()
        assert (await resp.json())["code"] == "forbidden"
    for token in (tokens.a_admin, tokens.admin):
        resp = await http.request(method, path, headers=tokens.header(token), **kwargs)
        # Let through: 200, or what the route answers there (a webhook not created: 404).
        assert resp.status not in (401, 403), await resp.text()


@pytest.mark.parametrize("op", sorted(OPEN_ROUTES))
async def test_open_routes_need_no_token(make_http: Any, op: str) -> None:
    http: Client = await make_http()
    method, path, kwargs = request_for(op, NS_B)
    resp = await http.request(method, path, **kwargs)
    assert resp.status == 200, await resp.text()


async def test_cross_namespace_summary_is_scoped_to_the_token(
    make_http: Any, tokens: Tokens, tmp_path: Any
) -> None:
    from tests.security.conftest import write_tokens_file

    scoped_admin = "scoped-admin-token-0123456789"
    path = write_tokens_file(
        tmp_path / "more-tokens.json",
        [
            ("admin", tokens.admin, ["*"], ["read", "write", "admin"]),
            ("b", tokens.b, [NS_B], ["read", "write"]),
            ("b-admin", tokens.b_admin, [NS_B], ["read", "write", "admin"]),
            ("a-admin", scoped_admin, [NS_A], ["admin"]),
        ],
    )
    http: Client = await make_http(auth_tokens_file=path)
    await seed_b(http, tokens)
    await http.put(
        f"/v1/namespaces/{NS_A}/entities/note/x",
        json={"data": {}},
        headers=tokens.header(tokens.admin),
    )
    everything = await (await http.get("/v1/summary", headers=tokens.header(tokens.admin))).json()
    assert [s["namespace"] for s in everything["items"]] == [NS_A, NS_B]
    assert everything["complete"] is True
    paged = await (
        await http.get("/v1/summary", params={"limit": "1"}, headers=tokens.header(tokens.admin))
    ).json()
    assert [s["namespace"] for s in paged["items"]] == [NS_A]
    assert paged["next_after"] == NS_A
    mine = await (await http.get("/v1/summary", headers=tokens.header(scoped_admin))).json()
    assert [s["namespace"] for s in mine["items"]] == [NS_A]
    assert SECRET_MARK not in str(mine)


@pytest.mark.parametrize("op", sorted(POST_READ_ROUTES))
async def test_searches_need_only_the_read_role(make_http: Any, tokens: Tokens, op: str) -> None:
    """A search is a read although it is a POST: a read-only token may search its own
    namespace, and finds nothing of another's."""
    http: Client = await make_http()
    await seed_b(http, tokens)
    method, path, kwargs = request_for(op, NS_A)
    resp = await http.request(method, path, headers=tokens.header(tokens.a_reader), **kwargs)
    text = await resp.text()
    assert resp.status == 200, text
    assert (await resp.json())["items"] == []
    assert SECRET_MARK not in text
    # B's own token finds B's mark: the search above had something to miss.
    method, path, kwargs = request_for(op, NS_B)
    resp = await http.request(method, path, headers=tokens.header(tokens.b), **kwargs)
    assert resp.status == 200, await resp.text()
    assert SECRET_MARK in await resp.text()


async def test_data_keys_are_scoped_to_the_token(make_http: Any, tokens: Tokens) -> None:
    """An admin of some namespaces lists their data keys only, and cannot rotate every
    namespace's key; an admin of all namespaces lists and rotates them all."""
    http: Client = await make_http()
    for ns in (NS_A, NS_B):
        resp = await http.put(
            f"/v1/namespaces/{ns}/entities/note/x",
            json={"data": {"s": 1}},
            headers=tokens.header(tokens.admin),
        )
        assert resp.status in (200, 201), await resp.text()
    everything = await (await http.get("/v1/keys", headers=tokens.header(tokens.admin))).json()
    assert sorted(k["namespace"] for k in everything["items"]) == [NS_A, NS_B]
    mine = await (await http.get("/v1/keys", headers=tokens.header(tokens.a_admin))).json()
    assert [k["namespace"] for k in mine["items"]] == [NS_A]

    refused = await http.post("/v1/keys/rotate", headers=tokens.header(tokens.a_admin))
    assert refused.status == 403
    body = await refused.json()
    assert body["code"] == "forbidden" and "all namespaces" in body["message"]
    rotated = await http.post("/v1/keys/rotate", headers=tokens.header(tokens.admin))
    assert rotated.status == 200, await rotated.text()
    assert (await rotated.json())["unchanged"] == 2

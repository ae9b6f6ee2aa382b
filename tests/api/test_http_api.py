"""The HTTP API driven through a real socket; every response is checked against the
server's own /openapi.json."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import SpecChecker

Client = TestClient[Any, Any]

NS = "/v1/namespaces/agent"
ENTITY = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"


async def call(
    http: Client,
    spec: SpecChecker,
    method: str,
    template: str,
    path: str,
    *,
    expect: int,
    **kwargs: Any,
) -> Any:
    resp = await http.request(method, path, **kwargs)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    assert resp.status == expect, body
    spec.check(
        method, template, resp.status, body if resp.content_type == "application/json" else None
    )
    return body


async def test_entity_crud_with_etags(http: Client, spec: SpecChecker) -> None:
    path = f"{NS}/entities/user/u1"
    created = await http.put(path, json={"data": {"name": "Ada"}})
    assert created.status == 201
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"] == path
    spec.check("PUT", ENTITY, 201, await created.json())

    got = await http.get(path)
    assert got.status == 200
    assert got.headers["ETag"] == '"1"'
    body = await got.json()
    spec.check("GET", ENTITY, 200, body)
    assert body["data"] == {"name": "Ada"}
    assert body["version"] == 1

    not_modified = await http.get(path, headers={"If-None-Match": '"1"'})
    assert not_modified.status == 304

    replaced = await http.put(path, json={"data": {"name": "Ada L."}}, headers={"If-Match": '"1"'})
    assert replaced.status == 200
    assert replaced.headers["ETag"] == '"2"'

    stale = await call(
        http, spec, "PUT", ENTITY, path, expect=412,
        json={"data": {"name": "lost update"}}, headers={"If-Match": '"1"'},
    )  # fmt: skip
    assert stale["code"] == "version_conflict"
    assert stale["details"] == {"expected_version": 1, "current_version": 2}

    create_only = await call(
        http, spec, "PUT", ENTITY, path, expect=412,
        json={"data": {}}, headers={"If-None-Match": "*"},
    )  # fmt: skip
    assert create_only["code"] == "version_conflict"
    assert (await (await http.get(path)).json())["data"] == {"name": "Ada L."}

    await call(http, spec, "DELETE", ENTITY, path, expect=412, headers={"If-Match": '"1"'})
    deleted = await http.delete(path, headers={"If-Match": '"2"'})
    assert deleted.status == 204
    gone = await call(http, spec, "GET", ENTITY, path, expect=404)
    assert gone["code"] == "not_found"
    await call(http, spec, "DELETE", ENTITY, path, expect=404)


async def test_entity_ttl_over_http(http: Client, spec: SpecChecker) -> None:
    body = await call(
        http, spec, "PUT", ENTITY, f"{NS}/entities/session/s1", expect=201,
        json={"data": {"a": 1}, "ttl_seconds": 60},
    )  # fmt: skip
    assert body["expires_at"] == pytest.approx(body["updated_at"] + 60, abs=1)


async def test_listing_pages_and_types(http: Client, spec: SpecChecker) -> None:
    for i in range(7):
        await http.put(f"{NS}/entities/note/n{i}", json={"data": {"i": i}})
    template = "/v1/namespaces/{namespace}/entities/{entity_type}"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = await call(
            http, spec, "GET", template, f"{NS}/entities/note", expect=200, params=params
        )
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"n{i}" for i in range(7)]
    types = await call(
        http, spec, "GET", "/v1/namespaces/{namespace}/entities", f"{NS}/entities", expect=200
    )
    assert types == {"types": ["note"]}


async def test_conversations_over_http(http: Client, spec: SpecChecker) -> None:
    msgs = "/v1/namespaces/{namespace}/conversations/{conversation_id}/messages"
    path = f"{NS}/conversations/chat-1/messages"
    appended = await call(
        http, spec, "POST", msgs, path, expect=201,
        json={"messages": [{"role": "user", "content": f"m{i}"} for i in range(5)]},
    )  # fmt: skip
    assert [m["seq"] for m in appended["items"]] == [1, 2, 3, 4, 5]
    last2 = await call(http, spec, "GET", msgs, path, expect=200, params={"limit": "2"})
    assert [m["seq"] for m in last2["items"]] == [4, 5]
    assert last2["next_before"] == 4
    older = await call(
        http, spec, "GET", msgs, path, expect=200, params={"limit": "2", "before": "4"}
    )
    assert [m["message"]["content"] for m in older["items"]] == ["m1", "m2"]
    first = await call(http, spec, "GET", msgs, path, expect=200, params={"before": "2"})
    assert first["next_before"] is None
    replaced = await call(http, spec, "PUT", msgs, path, expect=200, json={"messages": [{"a": 1}]})
    assert [m["seq"] for m in replaced["items"]] == [1]
    convs = await call(
        http, spec, "GET", "/v1/namespaces/{namespace}/conversations",
        f"{NS}/conversations", expect=200,
    )  # fmt: skip
    assert convs["items"][0]["conversation_id"] == "chat-1"
    assert convs["items"][0]["message_count"] == 1
    conv = "/v1/namespaces/{namespace}/conversations/{conversation_id}"
    # Before the first message of an existing conversation: an empty page.
    empty = await call(http, spec, "GET", msgs, path, expect=200, params={"before": "1"})
    assert empty == {"items": [], "next_before": None}
    await call(http, spec, "DELETE", conv, f"{NS}/conversations/chat-1", expect=204)
    await call(http, spec, "DELETE", conv, f"{NS}/conversations/chat-1", expect=404)
    # Deleted: 404 whatever page is asked for.
    await call(http, spec, "GET", msgs, path, expect=404)
    await call(http, spec, "GET", msgs, path, expect=404, params={"limit": "37", "before": "2229"})


async def test_tool_usage_feedback_and_summary(http: Client, spec: SpecChecker) -> None:
    tu = "/v1/namespaces/{namespace}/tool-usage"
    for i in range(3):
        await call(
            http, spec, "POST", tu, f"{NS}/tool-usage", expect=201,
            json={"tool_name": "search", "input": {"q": i}, "output": ["r"], "duration_ms": 5,
                  "timestamp": 1000.0 + i},
        )  # fmt: skip
    rec = await call(
        http, spec, "POST", tu, f"{NS}/tool-usage", expect=201,
        json={"tool_name": "calc", "input": "1+1", "output": 2, "success": False, "id": "fixed"},
    )  # fmt: skip
    assert rec["id"] == "fixed"
    assert rec["success"] is False
    window = await call(
        http, spec, "GET", tu, f"{NS}/tool-usage", expect=200,
        params={"tool_name": "search", "start": "1001", "end": "1003"},
    )  # fmt: skip
    assert [r["input"] for r in window["items"]] == [{"q": 1}, {"q": 2}]
    tools = await call(
        http, spec, "GET", "/v1/namespaces/{namespace}/tools", f"{NS}/tools", expect=200
    )
    assert tools == {"tools": ["calc", "search"]}
    fb = "/v1/namespaces/{namespace}/feedback"
    await call(
        http, spec, "POST", fb, f"{NS}/feedback", expect=201,
        json={"agent_name": "planner", "feedback_type": "rating", "data": {"score": 5}},
    )  # fmt: skip
    got = await call(
        http, spec, "GET", fb, f"{NS}/feedback", expect=200, params={"agent_name": "planner"}
    )
    assert got["items"][0]["data"] == {"score": 5}
    summary = await call(
        http, spec, "GET", "/v1/namespaces/{namespace}/summary", f"{NS}/summary", expect=200
    )
    assert summary["tool_usage_counts"] == {"calc": 1, "search": 3}
    assert summary["feedback_count"] == 1
    md = await http.get(f"{NS}/summary", params={"format": "markdown"})
    assert md.content_type == "text/markdown"
    assert "- search: 3" in await md.text()


async def test_health_and_meta_endpoints(http: Client, spec: SpecChecker) -> None:
    assert (await call(http, spec, "GET", "/livez", "/livez", expect=200))["status"] == "alive"
    ready = await call(http, spec, "GET", "/readyz", "/readyz", expect=200)
    assert ready == {"status": "ready", "backend": "embedded"}
    await http.get(f"{NS}/entities/user/u1")
    metrics = await call(http, spec, "GET", "/v1/metrics", "/v1/metrics", expect=200)
    assert metrics["operations"]["load_entity"]["count"] == 1
    cleared = await call(http, spec, "POST", "/v1/cache/clear", "/v1/cache/clear", expect=200)
    assert cleared == {"cleared": 0}
    prom = await http.get("/metrics")
    text = await prom.text()
    assert (
        'memstore_http_requests_total{method="GET",'
        'route="/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}",'
        'status_class="4xx"} 1.0'
    ) in text


# -- bad input: a clear 4xx JSON error with a stable code, and nothing written ----------------

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("PUT", f"{NS}/entities/user/u1", {"data": b"{not json"}, 400, "invalid_input"),
    ("PUT", f"{NS}/entities/user/u1", {"json": [1, 2]}, 400, "invalid_input"),
    ("PUT", f"{NS}/entities/user/u1", {"json": {"data": [1]}}, 400, "invalid_input"),
    ("PUT", f"{NS}/entities/user/u1", {"json": {"data": {}, "extra": 1}}, 400, "invalid_input"),
    (
        "PUT",
        f"{NS}/entities/user/u1",
        {"json": {"data": {}, "ttl_seconds": -1}},
        400,
        "invalid_input",
    ),
    (
        "PUT",
        f"{NS}/entities/user/u1",
        {"json": {"data": {}, "ttl_seconds": "x"}},
        400,
        "invalid_input",
    ),
    ("PUT", f"{NS}/entities/user/u1", {}, 400, "invalid_input"),
    ("PUT", f"{NS}/entities/us%20er/u1", {"json": {"data": {}}}, 400, "invalid_input"),
    ("PUT", f"{NS}/entities/user/a%7Bb%7D", {"json": {"data": {}}}, 400, "invalid_input"),
    ("PUT", f"{NS}/entities/user/{'x' * 300}", {"json": {"data": {}}}, 400, "invalid_input"),
    (
        "PUT",
        "/v1/namespaces/bad%20ns/entities/user/u1",
        {"json": {"data": {}}},
        400,
        "invalid_input",
    ),
    (
        "PUT",
        f"{NS}/entities/user/u1",
        {"json": {"data": {"big": "x" * 70_000}}},
        413,
        "payload_too_large",
    ),
    (
        "PUT",
        f"{NS}/entities/user/u1",
        {"json": {"data": {}}, "headers": {"If-Match": "abc"}},
        400,
        "invalid_input",
    ),
    (
        "PUT",
        f"{NS}/entities/user/u1",
        {"json": {"data": {}}, "headers": {"If-None-Match": '"3"'}},
        400,
        "invalid_input",
    ),
    ("PUT", f"{NS}/entities/user/u1", {"data": b'{"data": {"n": NaN}}'}, 400, "invalid_input"),
    ("GET", f"{NS}/entities/user", {"params": {"limit": "0"}}, 400, "invalid_input"),
    ("GET", f"{NS}/entities/user", {"params": {"limit": "51"}}, 400, "invalid_input"),
    ("GET", f"{NS}/entities/user", {"params": {"limit": "ten"}}, 400, "invalid_input"),
    ("GET", f"{NS}/entities/user", {"params": {"cursor": "garbage"}}, 400, "invalid_input"),
    ("POST", f"{NS}/conversations/c/messages", {"json": {"messages": []}}, 400, "invalid_input"),
    (
        "POST",
        f"{NS}/conversations/c/messages",
        {"json": {"messages": ["hi"]}},
        400,
        "invalid_input",
    ),
    (
        "POST",
        f"{NS}/conversations/c/messages",
        {"json": {"messages": {"a": 1}}},
        400,
        "invalid_input",
    ),
    ("GET", f"{NS}/conversations/c/messages", {"params": {"before": "0"}}, 400, "invalid_input"),
    ("POST", f"{NS}/tool-usage", {"json": {"input": 1}}, 400, "invalid_input"),
    (
        "POST",
        f"{NS}/tool-usage",
        {"json": {"tool_name": "t", "duration_ms": -5}},
        400,
        "invalid_input",
    ),
    ("POST", f"{NS}/tool-usage", {"json": {"tool_name": "bad name"}}, 400, "invalid_input"),
    ("GET", f"{NS}/tool-usage", {"params": {"start": "yesterday"}}, 400, "invalid_input"),
    ("GET", f"{NS}/tool-usage", {"params": {"end": "nan"}}, 400, "invalid_input"),
    ("GET", f"{NS}/summary", {"params": {"format": "xml"}}, 400, "invalid_input"),
    ("GET", "/v1/nothing-here", {}, 404, "not_found"),
    ("PATCH", f"{NS}/entities/user/u1", {"json": {}}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), BAD_REQUESTS)
async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    http: Client, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    before = await (await http.get(f"{NS}/summary")).json()
    resp = await http.request(method, path, **kwargs)
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert "Traceback" not in body["message"]
    after = await (await http.get(f"{NS}/summary")).json()
    assert after == before


async def test_oversized_body_is_rejected_before_reading_it_all(http: Client) -> None:
    resp = await http.put(f"{NS}/entities/user/u1", data=b"x" * (200 * 1024))
    assert resp.status == 413
    assert (await resp.json())["code"] == "payload_too_large"

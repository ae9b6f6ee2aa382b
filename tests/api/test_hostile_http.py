"""What a hostile client sends that a friendly one never does: every answer stays in the
JSON error contract ({"code", "message", "details"?}), with the headers HTTP requires, and
nothing stored changes."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.api.conftest import SpecChecker

Client = TestClient[Any, Any]

NS = "/v1/namespaces/agent"
ENTITY = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"


async def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.content_type == "application/json", await resp.text()
    body: dict[str, Any] = await resp.json()
    assert resp.status == status, body
    assert body["code"] == code, body
    assert body["message"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", f"{NS}/entities/user/u1", "DELETE, GET, PUT"),
        ("TRACE", "/livez", "GET"),
        ("DELETE", f"{NS}/conversations/c/messages", "GET, POST, PUT"),
        ("GET", "/v1/cache/clear", "POST"),
    ],
)
async def test_405_names_the_allowed_methods(
    http: Client, method: str, path: str, allowed: str
) -> None:
    resp = await http.request(method, path)
    await error_of(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == allowed


@pytest.mark.parametrize("value", ["", " ", "abc", '"0"', "*", '"1", "2"', "01"])
async def test_a_malformed_if_none_match_on_get_is_a_400(
    http: Client, spec: SpecChecker, value: str
) -> None:
    path = f"{NS}/entities/user/inm"
    assert (await http.put(path, json={"data": {"a": 1}})).status == 201
    for target in (path, f"{NS}/entities/user/absent"):
        resp = await http.get(target, headers={"If-None-Match": value})
        body = await error_of(resp, 400, "invalid_input")
        assert body["details"]["field"] == "If-None-Match"
        spec.check("GET", ENTITY, 400, body)


@pytest.mark.parametrize("value", ['"1"', "1", 'W/"1"'])
async def test_a_matching_if_none_match_is_304_in_every_documented_form(
    http: Client, value: str
) -> None:
    path = f"{NS}/entities/user/inm304"
    assert (await http.put(path, json={"data": {}})).status == 201
    resp = await http.get(path, headers={"If-None-Match": value})
    assert resp.status == 304
    assert resp.headers["ETag"] == '"1"'
    assert (await http.get(path, headers={"If-None-Match": '"2"'})).status == 200


async def test_if_match_zero_is_a_400_on_delete_as_on_put(http: Client) -> None:
    path = f"{NS}/entities/user/zero"
    assert (await http.put(path, json={"data": {}})).status == 201
    bodies: tuple[tuple[str, Any], ...] = (("DELETE", None), ("PUT", {"data": {"b": 1}}))
    for method, body in bodies:
        resp = await http.request(method, path, headers={"If-Match": "0"}, json=body)
        body = await error_of(resp, 400, "invalid_input")
        assert body["details"]["field"] == "If-Match"
    assert (await (await http.get(path)).json())["data"] == {}

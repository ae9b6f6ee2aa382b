"""What a hostile client sends that a friendly one never does: every answer stays in the
JSON error contract ({"code", "message", "details"?}), with the headers HTTP requires, and
nothing stored changes."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.server.app import create_app
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


@pytest.mark.parametrize("value", ["", " ", "abc", '"0"', "**", '"1",', '"1", *', "01"])
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


@pytest.mark.parametrize("value", ['"1"', "1", 'W/"1"', "*", '"2", "1"', '"7",W/"1"'])
async def test_a_matching_if_none_match_is_304_in_every_documented_form(
    http: Client, value: str
) -> None:
    path = f"{NS}/entities/user/inm304"
    assert (await http.put(path, json={"data": {}})).status == 201
    resp = await http.get(path, headers={"If-None-Match": value})
    assert resp.status == 304
    assert resp.headers["ETag"] == '"1"'
    assert (await http.get(path, headers={"If-None-Match": '"2"'})).status == 200
    assert (await http.get(path, headers={"If-None-Match": '"2", "3"'})).status == 200
    # "*" on an entity that does not exist: no match to report, the 404 stands.
    assert (
        await http.get(f"{NS}/entities/user/none", headers={"If-None-Match": "*"})
    ).status == 404


async def test_if_match_zero_is_a_400_on_delete_as_on_put(http: Client) -> None:
    path = f"{NS}/entities/user/zero"
    assert (await http.put(path, json={"data": {}})).status == 201
    bodies: tuple[tuple[str, Any], ...] = (("DELETE", None), ("PUT", {"data": {"b": 1}}))
    for method, body in bodies:
        resp = await http.request(method, path, headers={"If-Match": "0"}, json=body)
        body = await error_of(resp, 400, "invalid_input")
        assert body["details"]["field"] == "If-Match"
    assert (await (await http.get(path)).json())["data"] == {}


# -- request bodies: content codings ----------------------------------------------------

BODY = b'{"data": {"name": "Ada", "n": [1, 2.5, null]}}'


def gzip_bytes(raw: bytes) -> bytes:
    return gzip.compress(raw)


def zlib_bytes(raw: bytes) -> bytes:
    return zlib.compress(raw)


def raw_deflate_bytes(raw: bytes) -> bytes:
    # What some clients send as "deflate": the stream without the zlib wrapper.
    c = zlib.compressobj(wbits=-15)
    return c.compress(raw) + c.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip_bytes),
        ("GZIP", gzip_bytes),
        ("deflate", zlib_bytes),
        ("deflate", raw_deflate_bytes),
        ("identity", bytes),
    ],
)
async def test_a_compressed_body_is_decoded(
    http: Client, spec: SpecChecker, coding: str, encode: Any
) -> None:
    path = f"{NS}/entities/user/zipped"
    resp = await http.put(path, data=encode(BODY), headers={"Content-Encoding": coding})
    body = await resp.json()
    assert resp.status == 201, body
    spec.check("PUT", ENTITY, 201, body)
    assert body["data"] == {"name": "Ada", "n": [1, 2.5, None]}


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_is_a_400(http: Client, coding: str) -> None:
    path = f"{NS}/entities/user/notzipped"
    for data in (BODY, gzip_bytes(BODY)[:-12] + b"garbage-tail"):
        resp = await http.put(path, data=data, headers={"Content-Encoding": coding})
        body = await error_of(resp, 400, "invalid_input")
        assert body["details"]["field"] == "body"
    assert (await http.get(path)).status == 404


async def test_a_compression_bomb_is_a_413(http: Client, api_settings: Any) -> None:
    # 100 MB of JSON compressed to ~100 KB: the decoded size is what the limit counts.
    c = zlib.compressobj(wbits=31)
    parts = [c.compress(b'{"data": {"x": "')]
    chunk = b"0" * (1 << 20)
    parts += [c.compress(chunk) for _ in range(100)]
    parts.append(c.compress(b'"}}') + c.flush())
    bomb = b"".join(parts)
    assert len(bomb) < api_settings.max_body_bytes * 4
    path = f"{NS}/entities/user/bomb"
    resp = await http.put(path, data=bomb, headers={"Content-Encoding": "gzip"})
    await error_of(resp, 413, "payload_too_large")
    assert (await http.get(path)).status == 404


@pytest.mark.parametrize("coding", ["compress", "xyz", "x-gzip", "gzip, gzip", "gzip, xyz"])
async def test_an_unsupported_coding_is_a_415_naming_the_accepted_ones(
    http: Client, spec: SpecChecker, coding: str
) -> None:
    path = f"{NS}/entities/user/coded"
    resp = await http.put(path, data=BODY, headers={"Content-Encoding": coding})
    body = await error_of(resp, 415, "unsupported_media_type")
    assert resp.headers["Accept-Encoding"] == "gzip, deflate, identity"
    spec.check("PUT", ENTITY, 415, body)
    assert (await http.get(path)).status == 404


async def test_the_document_says_which_codings_bodies_may_use(spec: SpecChecker) -> None:
    for item in spec.doc["paths"].values():
        for op in item.values():
            if "requestBody" in op:
                assert "gzip | deflate | identity" in op["requestBody"]["description"]
                assert "Accept-Encoding" in op["responses"]["415"]["headers"]
            else:
                assert "415" not in op["responses"]


# -- integers wider than 64 bits ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("PUT", f"{NS}/entities/user/wide", b'{"data": {"x": 18446744073709551616}}', "data.x"),
        (
            "PUT",
            f"{NS}/entities/user/wide",
            b'{"data": {"a": {"b": [1, -9223372036854775809]}}}',
            "data.a.b.1",
        ),
        (
            "POST",
            f"{NS}/conversations/wide/messages",
            b'{"messages": [{"n": 1}, {"n": 123456789012345678901234567890}]}',
            "messages.1.n",
        ),
        (
            "POST",
            f"{NS}/tool-usage",
            b'{"tool_name": "t", "input": 1e2, "output": 99999999999999999999}',
            "output",
        ),
    ],
)
async def test_an_integer_wider_than_64_bits_is_a_400_naming_its_path(
    http: Client, method: str, path: str, raw: bytes, field: str
) -> None:
    before = await (await http.get(f"{NS}/summary")).json()
    resp = await http.request(method, path, data=raw)
    body = await error_of(resp, 400, "invalid_input")
    assert body["details"]["field"] == field
    assert "64 bits" in body["message"]
    assert "99999" not in body["message"]  # payloads are never echoed
    assert await (await http.get(f"{NS}/summary")).json() == before


async def test_64_bit_integers_and_long_digit_strings_are_stored_exactly(http: Client) -> None:
    raw = (
        b'{"data": {"max": 18446744073709551615, "min": -9223372036854775808,'
        b' "s": "123456789012345678901234567890", "f": 1.00000000000000000001}}'
    )
    path = f"{NS}/entities/user/exact"
    resp = await http.put(path, data=raw)
    assert resp.status == 201, await resp.text()
    got = await (await http.get(path)).read()
    assert b'"max":18446744073709551615' in got
    assert b'"min":-9223372036854775808' in got
    assert b'"s":"123456789012345678901234567890"' in got


# -- cursors: opaque, only the server's own ----------------------------------------------

PAGED = {
    "/v1/namespaces/{namespace}/entities/{entity_type}": f"{NS}/entities/user",
    "/v1/namespaces/{namespace}/conversations": f"{NS}/conversations",
    "/v1/namespaces/{namespace}/tool-usage": f"{NS}/tool-usage",
    "/v1/namespaces/{namespace}/feedback": f"{NS}/feedback",
}


async def test_the_document_says_cursors_are_the_servers_own(spec: SpecChecker) -> None:
    for template in PAGED:
        op = spec.doc["paths"][template]["get"]
        (cursor,) = (p for p in op["parameters"] if p["name"] == "cursor")
        assert cursor["schema"] == {"type": "string", "pattern": "^([A-Za-z0-9_-]+)?$"}
        assert "next_cursor" in cursor["description"]
        assert "400" in cursor["description"]
        assert "cursor" in op["responses"]["400"]["description"]


async def test_a_cursor_the_server_did_not_issue_is_a_400(http: Client, spec: SpecChecker) -> None:
    for i in range(3):
        assert (await http.put(f"{NS}/entities/user/c{i}", json={"data": {}})).status == 201
    first = await (await http.get(f"{NS}/entities/user", params={"limit": "1"})).json()
    issued = first["next_cursor"]
    assert issued
    ok = await http.get(f"{NS}/entities/user", params={"limit": "1", "cursor": issued})
    assert ok.status == 200
    # Characters outside the cursor's alphabet are not skipped: the cursor is read exactly
    # as it was issued, or refused.
    forged = [issued + "!", "!" + issued, issued[:2] + " " + issued[2:], "garbage", "W10"]
    for template, path in PAGED.items():
        for cursor in forged:
            resp = await http.get(path, params={"cursor": cursor})
            body = await error_of(resp, 400, "invalid_input")
            assert body["details"]["field"] == "cursor"
            spec.check("GET", template, 400, body)
        # Empty: the first page, as when absent.
        assert (await http.get(path, params={"cursor": ""})).status == 200


async def test_the_document_states_the_64_bit_rule_without_refusing_floats(
    spec: SpecChecker,
) -> None:
    schemas = spec.doc["components"]["schemas"]
    assert "64 bits" in schemas["JsonValue"]["description"]
    entity_put = {**schemas["EntityPut"], "components": spec.doc["components"]}
    validator = jsonschema.Draft202012Validator(entity_put)
    # A float with an exponent is an "integer" to JSON Schema, and the server stores it:
    # the document must not call it invalid.
    for ok in ({"a": 2**64 - 1}, {"a": [-(2**63), {"b": 1.5}]}, {"s": "9" * 30}, {"f": 6.02e23}):
        assert validator.is_valid({"data": ok}), ok


async def test_a_float_with_an_exponent_is_stored_as_a_float(http: Client) -> None:
    path = f"{NS}/entities/t/exp"
    raw = b'{"data": {"f": 9.476912698588421e+152, "g": 6.02e23}}'
    resp = await http.put(path, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status in (200, 201), await resp.text()
    data = (await (await http.get(path)).json())["data"]
    assert data == {"f": 9.476912698588421e152, "g": 6.02e23}


# -- a deleted conversation reads as deleted --------------------------------------------

MESSAGES = "/v1/namespaces/{namespace}/conversations/{conversation_id}/messages"


async def test_messages_of_a_deleted_or_unknown_conversation_are_a_404(
    http: Client, spec: SpecChecker, remote: Any
) -> None:
    path = f"{NS}/conversations/gone/messages"
    assert (await http.post(path, json={"messages": [{"m": 1}]})).status == 201
    assert (await http.get(path)).status == 200
    assert (await http.delete(f"{NS}/conversations/gone")).status == 204
    for target in (path, f"{NS}/conversations/never/messages"):
        resp = await http.get(target)
        body = await error_of(resp, 404, "not_found")
        spec.check("GET", MESSAGES, 404, body)
    # Replacing a history with none keeps what it replaced as a revision (restorable) and
    # the conversation with no messages: its messages read as none (404), the listing
    # shows it with 0, and only the delete erases it with its revisions.
    assert (await http.post(path, json={"messages": [{"m": 1}]})).status == 201
    assert (await http.put(path, json={"messages": []})).status == 200
    body = await error_of(await http.get(path), 404, "not_found")
    listed = await (await http.get(f"{NS}/conversations")).json()
    assert [c["message_count"] for c in listed["items"] if c["conversation_id"] == "gone"] == [0]
    revisions = await (await http.get(f"{NS}/conversations/gone/revisions")).json()
    assert [r["message_count"] for r in revisions["items"]] == [1]
    assert (await http.delete(f"{NS}/conversations/gone")).status == 204
    revisions = await (await http.get(f"{NS}/conversations/gone/revisions")).json()
    assert revisions["items"] == []
    # The client reads it as the manager does: an empty history, no error.
    assert await remote.load_messages("gone") == []
    assert await remote.load_conversation_history("never") == []


async def test_coded_bodies_are_read_alike_when_the_quota_check_reads_them_first(
    api_settings: Any,
) -> None:
    # With quotas on, the security middleware reads the body before the view does.
    settings = api_settings.model_copy(update={"quota_max_bytes": 10**6})
    async with TestClient(TestServer(create_app(settings))) as http:
        path = f"{NS}/entities/user/quota"
        resp = await http.put(path, data=gzip_bytes(BODY), headers={"Content-Encoding": "gzip"})
        assert resp.status == 201, await resp.text()
        resp = await http.put(path, data=BODY, headers={"Content-Encoding": "gzip"})
        await error_of(resp, 400, "invalid_input")
        resp = await http.put(path, data=BODY, headers={"Content-Encoding": "xyz"})
        await error_of(resp, 415, "unsupported_media_type")
        assert (await (await http.get(path)).json())["version"] == 1

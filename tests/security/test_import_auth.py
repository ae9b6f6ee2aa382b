"""Importing a sealed dump of another namespace: this store's data key of that namespace
opens it only for a token covering that namespace too, so an admin of one namespace does
not read another's data by importing its dump."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.security.conftest import NS_A, NS_B, Tokens

Client = TestClient[Any, Any]

SECRET = "a-private-91c2"


async def export_a(http: Client, tokens: Tokens, **query: str) -> bytes:
    resp = await http.get(
        f"/v1/namespaces/{NS_A}/export", params=query, headers=tokens.header(tokens.a_admin)
    )
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def import_into(http: Client, token: str, namespace: str, body: bytes) -> Any:
    return await http.post(
        f"/v1/namespaces/{namespace}/import",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )


async def test_a_scoped_admin_cannot_open_another_namespaces_dump_with_the_store_key(
    make_http: Any, tokens: Tokens
) -> None:
    http: Client = await make_http()
    resp = await http.put(
        f"/v1/namespaces/{NS_A}/entities/note/n1",
        json={"data": {"secret": SECRET}},
        headers=tokens.header(tokens.a),
    )
    assert resp.status in (200, 201), await resp.text()
    backup = await export_a(http, tokens)
    assert SECRET.encode() not in backup  # sealed

    refused = await import_into(http, tokens.b_admin, NS_B, backup)
    assert refused.status == 403
    body = await refused.json()
    assert body["code"] == "forbidden"
    assert NS_A in body["message"]
    got = await http.get(
        f"/v1/namespaces/{NS_B}/entities/note/n1", headers=tokens.header(tokens.b_admin)
    )
    assert got.status == 404
    summary = await http.get(f"/v1/namespaces/{NS_B}/summary", headers=tokens.header(tokens.b))
    assert summary.status == 200 and (await summary.json())["total_entities"] == 0

    # A dump carrying its key opens with that key: its exporter chose to hand it over.
    carried = await export_a(http, tokens, with_key="true")
    resp = await import_into(http, tokens.b_admin, NS_B, carried)
    assert resp.status == 200, await resp.text()
    got = await http.get(
        f"/v1/namespaces/{NS_B}/entities/note/n1", headers=tokens.header(tokens.b_admin)
    )
    assert (await got.json())["data"] == {"secret": SECRET}

    # A token covering the source restores the keyless dump under another name.
    resp = await import_into(http, tokens.admin, "restored", backup)
    assert resp.status == 200, await resp.text()
    got = await http.get(
        "/v1/namespaces/restored/entities/note/n1", headers=tokens.header(tokens.admin)
    )
    assert (await got.json())["data"] == {"secret": SECRET}

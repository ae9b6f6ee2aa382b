"""Who wrote: the server runs every request as the caller's token name and address, and the
change log records them (REST routes and /mcp alike), through real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from memstore.core.records import ChangeEvent, ChangePage
from memstore.server.state import MANAGER
from tests.mcp.conftest import connect
from tests.security.conftest import NS_A, NS_B, Tokens


async def changes_of(client: TestClient[Any, Any], namespace: str) -> list[ChangeEvent]:
    assert client.app is not None
    manager = client.app[MANAGER].for_namespace(namespace)
    page: ChangePage = await manager.read_changes(after=0, limit=100)
    return page.events


def session_from(address: str, token: str) -> aiohttp.ClientSession:
    """A client whose connections leave from ``address`` (any 127.x is loopback)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0)),
        headers=Tokens.header(token),
    )


async def test_writes_record_the_token_name_and_the_client_address(
    make_http: Any, tokens: Tokens
) -> None:
    client = await make_http()
    base = str(client.make_url(f"/v1/namespaces/{NS_A}"))
    async with (
        session_from("127.0.0.2", tokens.a) as a,
        session_from("127.0.0.3", tokens.admin) as admin,
    ):
        r = await a.put(f"{base}/entities/note/n1", json={"data": {"x": 1}})
        assert r.status == 201
        r = await admin.post(
            f"{base}/conversations/c1/messages", json={"messages": [{"content": "hi"}]}
        )
        assert r.status == 201
        r = await a.post(
            f"{base}/tool-usage",
            json={"tool_name": "search", "input": {}, "output": None, "duration_ms": 1},
        )
        assert r.status == 201
        r = await admin.delete(f"{base}/entities/note/n1")
        assert r.status == 204
        # A refused write runs no handler and leaves no event.
        r = await a.put(
            str(client.make_url(f"/v1/namespaces/{NS_B}/entities/note/x")), json={"data": {}}
        )
        assert r.status == 403
    events = await changes_of(client, NS_A)
    assert [(e.kind, e.actor, e.address) for e in events] == [
        ("entity.saved", "tenant-a", "127.0.0.2"),
        ("conversation.appended", "admin", "127.0.0.3"),
        ("tool_usage.recorded", "tenant-a", "127.0.0.2"),
        ("entity.deleted", "admin", "127.0.0.3"),
    ]
    assert await changes_of(client, NS_B) == []


async def test_with_auth_off_the_actor_has_no_name_but_the_address(make_http: Any) -> None:
    client = await make_http(auth_enabled=False)
    url = str(client.make_url(f"/v1/namespaces/{NS_A}/entities/note/n1"))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=("127.0.0.4", 0))
    ) as anyone:
        r = await anyone.put(url, json={"data": {"x": 1}})
        assert r.status == 201
    events = await changes_of(client, NS_A)
    assert [(e.actor, e.address) for e in events] == [(None, "127.0.0.4")]


@pytest.mark.parametrize("auth", [True, False])
async def test_mcp_tool_calls_record_the_actor(make_http: Any, tokens: Tokens, auth: bool) -> None:
    client = await make_http(auth_enabled=auth)
    base = str(client.make_url("")).rstrip("/")
    async with connect(base, tokens.a if auth else None) as mcp:
        result = await mcp.call_tool(
            "remember",
            {"namespace": NS_A, "entity_type": "note", "entity_id": "m1", "data": {"x": 1}},
        )
        assert not result.is_error, result
    events = await changes_of(client, NS_A)
    assert [(e.kind, e.entity_id, e.actor, e.address) for e in events] == [
        ("entity.saved", "m1", "tenant-a" if auth else None, "127.0.0.1")
    ]

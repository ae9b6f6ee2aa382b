"""``/mcp`` of a real ``memstore serve`` (auth on), driven by the official MCP client over
Streamable HTTP: every tool, the resources, bad input, tokens, namespaces and Host checks."""

from __future__ import annotations

import json
import signal
import uuid
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextResourceContents

from tests.mcp.conftest import NS_A, NS_B, PUBLIC_HOST, McpTokens, connect
from tests.mcp.scenarios import TOOLS, error, exercise_every_tool, ok
from tests.support.procs import ServiceProcess, running_service


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


@pytest.fixture
def ns() -> str:
    return f"mcp-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def tokens(mcp_tokens: tuple[McpTokens, Any]) -> McpTokens:
    return mcp_tokens[0]


async def summary_of(client: Client, namespace: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(await client.call_tool("summary", {"namespace": namespace}))
    return body


async def test_tools_are_listed_with_their_schemas(
    auth_service: ServiceProcess, tokens: McpTokens
) -> None:
    async with connect(auth_service.url, tokens.a) as client:
        assert client.protocol_version == "2026-07-28"  # stateless per-request envelopes
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    remember = tools["remember"]
    assert remember.input_schema["required"] == ["entity_type", "entity_id", "data"]
    props = remember.input_schema["properties"]
    assert {"namespace", "ttl_seconds", "expected_version"} <= props.keys()
    assert "version_conflict" in props["expected_version"]["description"]
    assert props["entity_id"]["pattern"]  # the name rule, for the model
    assert remember.input_schema["additionalProperties"] is False
    assert all(t.description for t in tools.values())
    assert tools["recall"].annotations is not None and tools["recall"].annotations.read_only_hint
    assert remember.annotations is not None and not remember.annotations.read_only_hint


async def test_every_tool(auth_service: ServiceProcess, tokens: McpTokens, ns: str) -> None:
    async with connect(auth_service.url, tokens.admin) as client:
        await exercise_every_tool(client, ns)


async def test_resources(auth_service: ServiceProcess, tokens: McpTokens, ns: str) -> None:
    async with connect(auth_service.url, tokens.admin) as client:
        ok(await client.call_tool(
            "remember",
            {"namespace": ns, "entity_type": "doc", "entity_id": "d1", "data": {"v": 1}},
        ))  # fmt: skip
        ok(await client.call_tool(
            "append_messages", {"namespace": ns, "conversation_id": "c1", "messages": [{"m": 1}]}
        ))  # fmt: skip

        uri = f"memstore://{ns}/entities/doc/d1"
        contents = (await client.read_resource(uri)).contents
        assert isinstance(contents[0], TextResourceContents)
        assert contents[0].mime_type == "application/json"
        entity = json.loads(contents[0].text)
        assert (entity["data"], entity["version"]) == ({"v": 1}, 1)
        conv = (await client.read_resource(f"memstore://{ns}/conversations/c1")).contents[0]
        assert isinstance(conv, TextResourceContents)
        assert [m["message"] for m in json.loads(conv.text)["items"]] == [{"m": 1}]
        summary = (await client.read_resource(f"memstore://{ns}/summary")).contents[0]
        assert isinstance(summary, TextResourceContents)
        assert json.loads(summary.text)["entity_counts"] == {"doc": 1}

        templates = (await client.list_resource_templates()).resource_templates
        assert {t.name for t in templates} == {"entity", "conversation", "summary"}

        with pytest.raises(MCPError, match="not_found"):
            await client.read_resource(f"memstore://{ns}/entities/doc/missing")
        with pytest.raises(MCPError, match="unknown memstore resource") as refused:
            await client.read_resource(f"memstore://{ns}/nothing-here")
        assert refused.value.data["details"] == {"field": "uri"}
        with pytest.raises(MCPError, match="entity_id"):
            await client.read_resource(f"memstore://{ns}/entities/doc/a b")

    # The token's own namespace is the default of resources/list.
    async with connect(auth_service.url, tokens.a) as client:
        ok(await client.call_tool(
            "remember", {"entity_type": "doc", "entity_id": "listed", "data": {}}
        ))  # fmt: skip
        listed = {r.uri for r in (await client.list_resources()).resources}
        assert f"memstore://{NS_A}/summary" in listed
        assert f"memstore://{NS_A}/entities/doc/listed" in listed


async def test_bad_input_is_a_tool_error_naming_the_field_and_writes_nothing(
    auth_service: ServiceProcess, tokens: McpTokens, ns: str
) -> None:
    async with connect(auth_service.url, tokens.admin) as client:
        before = await summary_of(client, ns)
        with pytest.raises(MCPError, match="unknown tool 'rember'"):
            await client.call_tool("rember", {"namespace": ns})
        cases: list[tuple[dict[str, Any], str]] = [
            ({"entity_type": "user", "data": {}}, "entity_id"),
            ({"entity_type": "user", "entity_id": "u", "data": [1, 2]}, "data"),
            ({"entity_type": "user", "entity_id": "u", "data": {}, "colour": "red"}, "colour"),
            ({"entity_type": "user", "entity_id": "a b", "data": {}}, "entity_id"),
            ({"entity_type": "user", "entity_id": "u", "data": {}, "ttl_seconds": -1},
             "ttl_seconds"),
            ({"entity_type": "user", "entity_id": "u", "data": {}, "expected_version": "x"},
             "expected_version"),
        ]  # fmt: skip
        for arguments, field in cases:
            body = error(await client.call_tool("remember", {"namespace": ns, **arguments}))
            assert body["code"] == "invalid_input", (arguments, body)
            assert body["details"]["field"] == field, (arguments, body)
            assert field in body["message"]
        body = error(await client.call_tool(
            "append_messages", {"namespace": ns, "conversation_id": "c", "messages": []}
        ))  # fmt: skip
        assert body["details"]["field"] == "messages"
        body = error(await client.call_tool("summary", {"namespace": "bad namespace"}))
        assert body["code"] == "invalid_input" and body["details"]["field"] == "namespace"
        assert await summary_of(client, ns) == before  # nothing was written


async def test_tokens_namespaces_and_roles(auth_service: ServiceProcess, tokens: McpTokens) -> None:
    entity = {"entity_type": "note", "entity_id": "n1", "data": {"by": "a"}}
    async with connect(auth_service.url, tokens.a) as client:
        # No namespace named: the token's only namespace.
        written = ok(await client.call_tool("remember", entity))
        assert written["entity"]["data"] == {"by": "a"}
        # Another namespace: refused, the REST API's 403 body, nothing written there.
        refused = error(await client.call_tool("remember", {**entity, "namespace": NS_B}))
        assert refused == {
            "code": "forbidden",
            "message": "this token is not allowed in this namespace",
        }
        refused = error(await client.call_tool("summary", {"namespace": NS_B}))
        assert refused["code"] == "forbidden"
        with pytest.raises(MCPError, match="forbidden"):
            await client.read_resource(f"memstore://{NS_B}/entities/note/n1")
        with pytest.raises(MCPError, match="forbidden"):
            async with client.listen(resource_subscriptions=[f"memstore://{NS_B}/summary"]):
                pass
    async with connect(auth_service.url, tokens.admin) as admin:
        assert ok(await admin.call_tool(
            "recall", {"namespace": NS_B, "entity_type": "note", "entity_id": "n1"}
        ))["found"] is False  # fmt: skip
        assert ok(await admin.call_tool(
            "recall", {"namespace": NS_A, "entity_type": "note", "entity_id": "n1"}
        ))["found"]  # fmt: skip
    async with connect(auth_service.url, tokens.ab) as both:
        # Two namespaces and not the default one: the call must say which.
        unnamed = error(await both.call_tool("summary", {}))
        assert unnamed["code"] == "invalid_input" and unnamed["details"] == {"field": "namespace"}
        assert f"{NS_A}, {NS_B}" in unnamed["message"]
        assert ok(await both.call_tool("summary", {"namespace": NS_B}))["namespace"] == NS_B
    async with connect(auth_service.url, tokens.admin) as admin:
        assert ok(await admin.call_tool("summary", {}))["namespace"] == "agent"  # the default
    async with connect(auth_service.url, tokens.a_reader) as reader:
        assert ok(await reader.call_tool("recall", {"entity_type": "note", "entity_id": "n1"}))[
            "found"
        ]
        lacking = error(
            await reader.call_tool("forget", {"entity_type": "note", "entity_id": "n1"})
        )
        assert lacking["code"] == "forbidden" and lacking["details"] == {"role": "write"}


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_no_or_wrong_token_is_refused(
    auth_service: ServiceProcess, token: str | None
) -> None:
    # The client's task groups raise it inside an exception group.
    with pytest.raises((MCPError, BaseExceptionGroup)) as caught:
        async with connect(auth_service.url, token):
            pass
    assert any(isinstance(e, MCPError) for e in leaves(caught.value))
    headers = {"Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient() as http:
        answer = await http.post(f"{auth_service.url}/mcp", headers=headers, json={})
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"


async def test_host_and_origin_checks(auth_service: ServiceProcess, tokens: McpTokens) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}

    async def post(**headers: str) -> httpx2.Response:
        async with httpx2.AsyncClient() as http:
            return await http.post(
                f"{auth_service.url}/mcp",
                json=request,
                headers={
                    "Authorization": f"Bearer {tokens.a}",
                    "Accept": "application/json, text/event-stream",
                    "MCP-Protocol-Version": "2025-11-25",
                    **headers,
                },
            )

    assert (await post()).status_code == 200  # loopback
    assert (await post(Host=PUBLIC_HOST)).status_code == 200  # configured
    assert (await post(Host=f"{PUBLIC_HOST}:8443")).status_code == 200
    assert (await post(Host="attacker.example")).status_code == 421  # DNS rebinding
    assert (await post(Origin=f"https://{PUBLIC_HOST}")).status_code == 200
    assert (await post(Origin="https://attacker.example")).status_code == 403
    # The official client behind the real hostname.
    async with connect(auth_service.url, tokens.a, host=PUBLIC_HOST) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS


async def test_a_handshake_era_client_works_statelessly(
    auth_service: ServiceProcess, tokens: McpTokens
) -> None:
    """Clients of earlier protocol versions (initialize handshake) are served without a
    session: no Mcp-Session-Id, any replica answers each request."""
    async with connect(auth_service.url, tokens.a, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        written = ok(await client.call_tool(
            "remember", {"entity_type": "note", "entity_id": "legacy", "data": {"ok": True}}
        ))  # fmt: skip
        assert written["entity"]["version"] >= 1
        contents = (await client.read_resource(f"memstore://{NS_A}/entities/note/legacy")).contents
        assert isinstance(contents[0], TextResourceContents)
        assert json.loads(contents[0].text)["data"] == {"ok": True}


async def test_writes_count_against_the_namespace_quotas(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The REST routes' quotas hold through /mcp too (one tracker per replica)."""
    env = {"MEMSTORE_QUOTA_MAX_ENTITIES": "2", "MEMSTORE_QUOTA_MAX_BYTES": "2000"}
    with running_service(tmp_path_factory.mktemp("mcp-quotas"), env) as svc:
        async with connect(svc.url) as client:

            async def remember(entity_id: str, data: dict[str, Any]) -> CallToolResult:
                return await client.call_tool(
                    "remember", {"entity_type": "doc", "entity_id": entity_id, "data": data}
                )

            ok(await remember("d1", {}))
            ok(await remember("d2", {}))
            ok(await remember("d1", {"again": True}))  # a replacement creates nothing
            refused = error(await remember("d3", {}))
            assert refused["code"] == "quota_exceeded"
            assert refused["details"]["quota"] == "entities"
            assert ok(await client.call_tool("summary", {}))["entity_counts"] == {"doc": 2}
            big = error(await client.call_tool(
                "append_messages", {"conversation_id": "c", "messages": [{"t": "x" * 3000}]}
            ))  # fmt: skip
            assert big["code"] == "quota_exceeded" and big["details"]["quota"] == "bytes"
            assert ok(await client.call_tool("forget", {"entity_type": "doc", "entity_id": "d2"}))[
                "deleted"
            ]
            ok(await remember("d3", {}))  # room again after the delete


async def test_get_and_delete_are_405(auth_service: ServiceProcess, tokens: McpTokens) -> None:
    """Stateless: no standalone GET stream, no session to DELETE (the protocol's 405)."""
    headers = {"Authorization": f"Bearer {tokens.a}", "Accept": "text/event-stream"}
    async with httpx2.AsyncClient() as http:
        for method in ("GET", "DELETE"):
            answer = await http.request(method, f"{auth_service.url}/mcp", headers=headers)
            assert answer.status_code == 405, method
            assert answer.headers["Allow"] == "POST"


def test_host_checks_follow_the_listen_address_unless_hosts_are_listed() -> None:
    from memstore.core.errors import ConfigurationError
    from memstore.core.settings import Settings
    from memstore.server.mcp.http import transport_security

    loopback = transport_security(Settings(host="127.0.0.1"))
    assert loopback.enable_dns_rebinding_protection
    assert "localhost:*" in loopback.allowed_hosts
    assert not transport_security(Settings(host="0.0.0.0")).enable_dns_rebinding_protection
    listed = transport_security(Settings(host="0.0.0.0", mcp_allowed_hosts=[PUBLIC_HOST]))
    assert listed.enable_dns_rebinding_protection
    assert PUBLIC_HOST in listed.allowed_hosts and "127.0.0.1:*" in listed.allowed_hosts
    off = transport_security(Settings(host="127.0.0.1", mcp_allowed_hosts=["*"]))
    assert not off.enable_dns_rebinding_protection
    # The SDK checks Origin only with Host: origins without a Host check are refused.
    for hosts in ([], ["*"]):
        unchecked = Settings(
            host="0.0.0.0", mcp_allowed_hosts=hosts, mcp_allowed_origins=["https://app.example"]
        )
        with pytest.raises(ConfigurationError, match="MEMSTORE_MCP_ALLOWED_HOSTS"):
            transport_security(unchecked)


async def test_stopping_the_service_ends_listen_streams_gracefully(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """SIGTERM ends open listen streams with their final result (not a drop), so the
    service stops without waiting out its shutdown timeout for them."""
    env = {"MEMSTORE_SHUTDOWN_TIMEOUT_SECONDS": "120"}
    svc = ServiceProcess(tmp_path_factory.mktemp("mcp-stop"), env).start()
    try:
        async with (
            connect(svc.url) as client,
            client.listen(resource_subscriptions=["memstore://agent/summary"]) as sub,
        ):
            svc.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            with anyio.fail_after(60):
                events = [event async for event in sub]  # ends; a drop would raise
            assert events == []
        assert await anyio.to_thread.run_sync(lambda: svc.proc.wait(60)) == 0  # type: ignore[union-attr]
    finally:
        svc.stop()

"""``memstore mcp`` over stdio, started by the official MCP client as a desktop client
starts it: in process on the embedded store, and as a proxy to a real service (whose
tokens, namespaces and roles then apply)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import ResourceUpdatedNotification, TextResourceContents

from tests.mcp.conftest import NS_A, NS_B, McpTokens
from tests.mcp.scenarios import TOOLS, error, exercise_every_tool, ok
from tests.support.procs import ServiceProcess

MEMSTORE = str(Path(sys.executable).parent / "memstore")


@asynccontextmanager
async def stdio(
    *args: str, env: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MEMSTORE_", "MEMORY_"))}
    params = StdioServerParameters(
        command=MEMSTORE, args=["mcp", *args], env={**clean, **(env or {})}
    )
    async with Client(params, mode=mode) as client:
        yield client


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_in_process_serves_every_tool_and_resource(tmp_path: Path, mode: str) -> None:
    data = str(tmp_path / "desktop.db")
    async with stdio("--in-process", "--data-path", data, "-n", "desk", mode=mode) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        await exercise_every_tool(client, "desk")
        ok(
            await client.call_tool(
                "remember", {"entity_type": "note", "entity_id": "n1", "data": {"t": 1}}
            )
        )  # fmt: skip — no namespace: -n
        contents = (await client.read_resource("memstore://desk/entities/note/n1")).contents[0]
        assert isinstance(contents, TextResourceContents)
        assert json.loads(contents.text)["data"] == {"t": 1}
        body = error(await client.call_tool("remember", {"entity_type": "note", "data": {}}))
        assert body["details"]["field"] == "entity_id"
    # The data is in the file the command was given.
    async with stdio("--in-process", "--data-path", data, "-n", "desk") as client:
        assert ok(await client.call_tool("recall", {"entity_type": "note", "entity_id": "n1"}))[
            "entity"
        ]["data"] == {"t": 1}


async def test_in_process_listen_hears_its_writes(tmp_path: Path) -> None:
    uri = "memstore://desk/conversations/c1"
    data = str(tmp_path / "m.db")
    async with (
        stdio("--in-process", "--data-path", data, "-n", "desk") as client,
        client.listen(resource_subscriptions=[uri]) as sub,
    ):
        ok(await client.call_tool(
            "append_messages", {"conversation_id": "c1", "messages": [{"m": 1}]}
        ))  # fmt: skip
        with anyio.fail_after(15):
            assert await anext(aiter(sub)) == ResourceUpdated(uri=uri)


async def test_proxy_to_a_service_with_a_token(
    auth_service: ServiceProcess, mcp_tokens: tuple[McpTokens, Any]
) -> None:
    tokens = mcp_tokens[0]
    env = {"MEMSTORE_TOKEN": tokens.a}
    async with stdio("--url", auth_service.url, "-n", NS_A, env=env) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        ok(await client.call_tool(
            "remember", {"entity_type": "note", "entity_id": "via-stdio", "data": {"p": 1}}
        ))  # fmt: skip
        refused = error(await client.call_tool("summary", {"namespace": NS_B}))
        assert refused["code"] == "forbidden"  # the service's answer to the token
        contents = (
            await client.read_resource(f"memstore://{NS_A}/entities/note/via-stdio")
        ).contents[0]
        assert isinstance(contents, TextResourceContents)
        assert json.loads(contents.text)["data"] == {"p": 1}
    async with stdio("--url", auth_service.url, env={"MEMSTORE_TOKEN": "wrong"}) as client:
        assert error(await client.call_tool("summary", {}))["code"] == "unauthorized"


def legacy_api() -> contextlib.AbstractContextManager[Any]:
    """The SDK marks resources/subscribe deprecated (the 2026 protocol dropped it); it is
    what 2025-era clients use."""
    return pytest.warns(MCPDeprecationWarning)


async def test_a_handshake_era_client_gets_resource_updates(tmp_path: Path) -> None:
    """Desktop clients of the 2025 protocol subscribe with resources/subscribe and hear
    notifications/resources/updated on the same stdio connection."""
    updates: list[str] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.append(message.params.uri)
            arrived.set()

    uri = "memstore://desk/entities/note/watched"
    params = StdioServerParameters(
        command=MEMSTORE,
        args=["mcp", "--in-process", "--data-path", str(tmp_path / "m.db"), "-n", "desk"],
    )
    async with Client(params, mode="legacy", message_handler=on_message) as client:
        caps = client.server_capabilities.resources
        assert caps is not None and caps.subscribe
        with legacy_api():
            await client.session.subscribe_resource(uri)
        ok(await client.call_tool(
            "remember", {"entity_type": "note", "entity_id": "other", "data": {}}
        ))  # fmt: skip
        ok(await client.call_tool(
            "remember", {"entity_type": "note", "entity_id": "watched", "data": {}}
        ))  # fmt: skip
        with anyio.fail_after(15):
            await arrived.wait()
        assert updates == [uri]
        with legacy_api():
            await client.session.unsubscribe_resource(uri)
        ok(await client.call_tool(
            "remember", {"entity_type": "note", "entity_id": "watched", "data": {"v": 2}}
        ))  # fmt: skip
        await client.call_tool("summary", {})  # a round trip after the write
        assert updates == [uri]
        with pytest.raises(MCPError, match="unknown memstore resource"), legacy_api():
            await client.session.subscribe_resource("memstore://desk/nothing")

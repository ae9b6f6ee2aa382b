"""What the MCP tests do through each transport (Streamable HTTP, stdio)."""

from __future__ import annotations

import json
from typing import Any

from mcp import Client
from mcp_types import CallToolResult

TOOLS = {
    "remember",
    "recall",
    "list_entities",
    "forget",
    "append_messages",
    "read_conversation",
    "list_conversations",
    "record_tool_use",
    "query_tool_usage",
    "summary",
}


def ok(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def error(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    body: dict[str, Any] = result.structured_content["error"]
    return body


async def exercise_every_tool(client: Client, ns: str) -> None:
    """Call every tool in namespace ``ns`` (empty) and check what each answers."""

    async def call(name: str, **arguments: Any) -> CallToolResult:
        return await client.call_tool(name, {"namespace": ns, **arguments})

    ada = {"entity_type": "user", "entity_id": "ada"}
    first = ok(await call("remember", **ada, data={"name": "Ada"}))
    assert first["created"] and first["entity"]["version"] == 1
    second = ok(await call("remember", **ada, data={"name": "Ada L."}, expected_version=1))
    assert not second["created"] and second["entity"]["version"] == 2
    # Another agent still holding version 1 is refused and overwrites nothing.
    stale = error(await call("remember", **ada, data={"name": "stale"}, expected_version=1))
    assert stale["code"] == "version_conflict"
    assert stale["details"] == {"expected_version": 1, "current_version": 2}
    assert error(await call("remember", **ada, data={}, expected_version=0))["code"] == (
        "version_conflict"
    )
    recalled = ok(await call("recall", **ada))
    assert recalled["found"] and recalled["entity"]["data"] == {"name": "Ada L."}
    assert recalled["entity"]["version"] == 2
    assert ok(await call("recall", entity_type="user", entity_id="nobody")) == {
        "found": False,
        "entity": None,
    }
    assert ok(await call("list_entities")) == {"types": ["user"]}
    page = ok(await call("list_entities", entity_type="user", limit=10))
    assert [e["id"] for e in page["items"]] == ["ada"] and page["next_cursor"] is None

    appended = ok(
        await call(
            "append_messages",
            conversation_id="c1",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
            ],
        )
    )
    assert [m["seq"] for m in appended["items"]] == [1, 2]
    last = ok(await call("read_conversation", conversation_id="c1", limit=1))
    assert [m["message"]["content"] for m in last["items"]] == ["yo"]
    assert last["next_before"] == 2
    older = ok(await call("read_conversation", conversation_id="c1", before_seq=2))
    assert [m["seq"] for m in older["items"]] == [1] and older["next_before"] is None
    conversations = ok(await call("list_conversations"))
    assert [c["conversation_id"] for c in conversations["items"]] == ["c1"]

    use = {"tool_name": "search", "input": {"q": "x"}, "output": ["hit"], "usage_id": "u1"}
    recorded = ok(await call("record_tool_use", **use, duration_ms=12.5))
    assert recorded["tool_name"] == "search" and recorded["duration_ms"] == 12.5
    ok(await call("record_tool_use", **use))  # a retry with the same id: stored once
    uses = ok(await call("query_tool_usage", tool_name="search"))
    assert [u["output"] for u in uses["items"]] == [["hit"]]

    summary = ok(await call("summary"))
    assert summary["namespace"] == ns
    assert summary["entity_counts"] == {"user": 1}
    assert (summary["conversations"], summary["messages"]) == (1, 2)
    assert summary["tool_usage_counts"] == {"search": 1}

    assert error(await call("forget", **ada, expected_version=1))["code"] == ("version_conflict")
    assert ok(await call("forget", **ada)) == {"deleted": True}
    assert ok(await call("forget", **ada)) == {"deleted": False}
    # Text content carries the same JSON for clients that only read text.
    result = await call("recall", **ada)
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]

"""MemoryClient against the real app: same names, records and errors as the manager."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from memstore.client import MemoryClient
from memstore.core.errors import (
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    MemoryStoreError,
    NotFoundError,
    RateLimitedError,
    RequestTimeoutError,
)
from memstore.core.records import EntityRecord


async def test_client_mirrors_the_manager(remote: MemoryClient) -> None:
    record = await remote.save_entity("user", "u1", {"name": "Ada"})
    assert isinstance(record, EntityRecord)
    assert record.version == 1
    assert await remote.load_entity("user", "u1") == {"name": "Ada"}
    with pytest.raises(ConflictError) as info:
        await remote.save_entity("user", "u1", {"x": 1}, expected_version=0)
    assert info.value.current_version == 1
    await remote.save_entity("user", "u1", {"name": "B"}, expected_version=1)
    assert await remote.load_entities_by_type("user") == {"u1": {"name": "B"}}
    assert await remote.get_entity_types() == ["user"]
    assert await remote.delete_entity("user", "u1")
    assert not await remote.delete_entity("user", "u1")
    assert await remote.load_entity("user", "u1") is None

    await remote.save_conversation_history([{"role": "system", "content": "be brief"}])
    for i in range(120):  # more than one default page
        await remote.append_message({"role": "user", "content": str(i)})
    history = await remote.load_conversation_history()
    assert len(history) == 121
    assert history[0] == {"role": "system", "content": "be brief"}
    assert history[-1] == {"role": "user", "content": "119"}
    assert [m["content"] for m in await remote.load_conversation_history(limit=2)] == ["118", "119"]

    await remote.save_tool_usage("search", {"q": "x"}, ["hit"], duration_ms=3.5)
    uses = await remote.load_tool_usage("search")
    assert [(u["input"], u["output"]) for u in uses] == [({"q": "x"}, ["hit"])]
    assert await remote.get_tool_names() == ["search"]

    await remote.save_learning_feedback("planner", "rating", {"score": 4})
    assert [f["data"] for f in await remote.get_learning_feedback("planner")] == [{"score": 4}]

    summary = await remote.get_memory_summary_data()
    assert summary.messages == 121
    assert "## Tool usage" in await remote.get_memory_summary()
    assert await remote.ping()
    assert "operations" in await remote.get_metrics()


async def test_client_raises_typed_errors(remote: MemoryClient) -> None:
    with pytest.raises(InvalidInputError) as info:
        await remote.save_entity("user", "bad id", {})
    assert info.value.code == "invalid_input"
    unreachable = MemoryClient("http://127.0.0.1:9", timeout=2)
    async with unreachable:
        with pytest.raises(BackendUnavailableError):
            await unreachable.load_entity("user", "u1")
        assert not await unreachable.ping()
    assert "token" not in repr(MemoryClient("http://x", token="s3cret-value"))
    assert "s3cret" not in repr(MemoryClient("http://x", token="s3cret-value"))


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "code"),
    [
        # The body's code names the class, whatever the status says.
        (504, {"code": "timeout", "message": "slow"}, {}, RequestTimeoutError, "timeout"),
        (500, {"code": "version_conflict", "message": "stale",
               "details": {"expected_version": 1, "current_version": 2}}, {},
         ConflictError, "version_conflict"),
        # Unknown code or no JSON body: the class that owns the status, the code kept.
        (404, {"code": "gone", "message": "m"}, {}, NotFoundError, "gone"),
        (405, {"code": "method_not_allowed", "message": "m"}, {}, InvalidInputError,
         "method_not_allowed"),
        (502, None, {}, BackendUnavailableError, "backend_unavailable"),
        (429, None, {"Retry-After": "9"}, RateLimitedError, "rate_limited"),
        (500, None, {}, MemoryStoreError, "internal_error"),
    ],
)  # fmt: skip
async def test_client_raises_by_the_code_in_the_body(
    status: int,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    expected: type[MemoryStoreError],
    code: str,
) -> None:
    """Against a server that answers what the case says (as a proxy or a newer service
    may): the exception is chosen by the body's ``code``."""

    async def answer(request: web.Request) -> web.Response:
        if body is None:
            return web.Response(status=status, text="upstream says no", headers=headers)
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app) as server:
        url = str(server.make_url("/")).rstrip("/")
        # no retries: a 429 is retried after its Retry-After, which is not the point here
        async with MemoryClient(url, retries=0) as client:
            with pytest.raises(expected) as info:
                await client.get_entity_types()
    assert type(info.value) is expected
    assert info.value.code == code
    if isinstance(info.value, ConflictError):
        assert info.value.current_version == 2
    if isinstance(info.value, RateLimitedError):
        assert info.value.retry_after == 9

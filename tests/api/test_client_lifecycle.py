"""MemoryClient: the pop operation over HTTP, retries of 429/503 against a real local
server that refuses first, and a clean exit for a script that never closes its client."""

from __future__ import annotations

import asyncio
import email.utils
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from memstore.client import MemoryClient
from memstore.client.memory_client import retry_after_seconds
from memstore.core.errors import BackendUnavailableError, RateLimitedError
from memstore.core.records import MessageRecord
from tests.api.conftest import SpecChecker

POP = "/v1/namespaces/{namespace}/conversations/{conversation_id}/messages:pop"

# -- pop ----------------------------------------------------------------------------------


async def test_pop_over_http_and_through_the_client(
    remote: MemoryClient, http: TestClient[Any, Any], spec: SpecChecker
) -> None:
    await remote.append_messages([{"n": 1}, {"n": 2}, {"n": 3}], "c")
    popped = await remote.pop_message("c")
    assert isinstance(popped, MessageRecord)
    assert (popped.conversation_id, popped.seq, popped.message) == ("c", 3, {"n": 3})

    resp = await http.post("/v1/namespaces/agent/conversations/c/messages:pop")
    assert resp.status == 200
    body = await resp.json()
    spec.check("POST", POP, 200, body)
    assert (body["seq"], body["message"]) == (2, {"n": 2})

    assert (await remote.pop_message("c")) is not None
    # Nothing left: 404 like reading it, and None from the client (as from the manager).
    resp = await http.post("/v1/namespaces/agent/conversations/c/messages:pop")
    assert resp.status == 404
    spec.check("POST", POP, 404, await resp.json())
    assert await remote.pop_message("c") is None
    assert (await remote.list_conversations()).items == []
    # A bad conversation id is the same error in process and over HTTP.
    resp = await http.post("/v1/namespaces/agent/conversations/bad%20id/messages:pop")
    assert resp.status == 400
    assert (await resp.json())["details"]["field"] == "conversation_id"


async def test_concurrent_pops_through_the_client_get_each_message_once(
    remote: MemoryClient,
) -> None:
    await remote.append_messages([{"i": i} for i in range(10)], "busy")
    popped = await asyncio.gather(*(remote.pop_message("busy") for _ in range(20)))
    got = sorted(p.message["i"] for p in popped if p is not None)
    assert got == list(range(10))
    assert popped.count(None) == 10


# -- retries ------------------------------------------------------------------------------


class Flaky:
    """A real HTTP server that answers each request with the next scripted refusal, then
    with success; it records when each request came."""

    def __init__(self) -> None:
        self.refusals: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[str, float]] = []

    def refuse(self, status: int, times: int = 1, retry_after: str | None = "0") -> None:
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self.refusals += [(status, headers)] * times

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, time.monotonic()))
        if self.refusals:
            status, headers = self.refusals.pop(0)
            code = "rate_limited" if status == 429 else "backend_unavailable"
            return web.json_response(
                {"code": code, "message": "not now", "details": {}},
                status=status,
                headers=headers,
            )
        if request.method == "GET":
            return web.json_response(
                {
                    "type": "user",
                    "id": "u1",
                    "data": {"ok": True},
                    "version": 1,
                    "created_at": 1.0,
                    "updated_at": 1.0,
                    "expires_at": None,
                }
            )
        if request.method == "PUT":
            return web.json_response(
                {
                    "type": "user",
                    "id": "u1",
                    "data": {"ok": True},
                    "version": 2,
                    "created_at": 1.0,
                    "updated_at": 2.0,
                    "expires_at": None,
                }
            )
        if request.path.endswith("/tool-usage"):
            body = await request.json()
            return web.json_response(
                {**body, "duration_ms": 0.0, "success": True, "timestamp": 1.0}, status=201
            )
        return web.json_response(
            {
                "items": [{"conversation_id": "c", "seq": 1, "message": {}, "created_at": 1.0}],
                "next_before": None,
            },
            status=201,
        )


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, Callable[..., MemoryClient]]]:
    server = Flaky()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    async with TestServer(app, host="127.0.0.1") as ts:
        url = str(ts.make_url("")).rstrip("/")
        clients: list[MemoryClient] = []

        def client(**kwargs: Any) -> MemoryClient:
            clients.append(MemoryClient(url, "agent", **kwargs))
            return clients[-1]

        yield server, client
        for c in clients:
            await c.close()


async def test_503_then_success_is_retried_for_a_read(flaky) -> None:
    server, client = flaky
    server.refuse(503, times=2)
    record = await client().get_entity("user", "u1")
    assert record is not None and record.data == {"ok": True}
    assert [m for m, _ in server.seen] == ["GET"] * 3


async def test_429_is_retried_for_any_request_503_only_for_idempotent_ones(flaky) -> None:
    server, client = flaky
    memory = client()
    server.refuse(429)
    await memory.append_messages([{"a": 1}], "c")
    assert len(server.seen) == 2  # refused before it ran: safe to send again
    server.seen.clear()
    server.refuse(503)
    with pytest.raises(BackendUnavailableError):
        await memory.append_messages([{"a": 1}], "c")  # may have landed: not resent
    assert len(server.seen) == 1
    server.seen.clear()
    server.refuse(503)
    with pytest.raises(BackendUnavailableError):
        await memory.pop_message("c")
    assert len(server.seen) == 1
    server.seen.clear()
    server.refuse(503)
    with pytest.raises(BackendUnavailableError):  # a landed conditional write would 412
        await memory.save_entity("user", "u1", {"ok": True}, expected_version=1)
    assert len(server.seen) == 1
    server.seen.clear()
    server.refuse(503)
    await memory.save_entity("user", "u1", {"ok": True})
    assert len(server.seen) == 2
    server.seen.clear()
    server.refuse(503)
    await memory.save_tool_usage("search", {}, {}, usage_id="use-1")  # stored once per id
    assert len(server.seen) == 2
    server.seen.clear()
    server.refuse(503)
    with pytest.raises(BackendUnavailableError):  # a landed delete would answer 404
        await memory.delete_entity("user", "u1")
    assert len(server.seen) == 1


async def test_retries_are_bounded_by_count(flaky) -> None:
    server, client = flaky
    server.refuse(503, times=10)
    with pytest.raises(BackendUnavailableError):
        await client(retries=2).get_entity("user", "u1")
    assert len(server.seen) == 3
    server.refuse(503, times=10)
    server.seen.clear()
    with pytest.raises(BackendUnavailableError):
        await client(retries=0).get_entity("user", "u1")
    assert len(server.seen) == 1


async def test_retries_are_bounded_by_total_wait(flaky) -> None:
    server, client = flaky
    # Asked to wait longer than the budget: the error comes at once, with the server's hint.
    server.refuse(429, retry_after="120")
    with pytest.raises(RateLimitedError) as info:
        await client(retry_max_wait=10).get_entity("user", "u1")
    assert info.value.details["retry_after"] == 120
    assert len(server.seen) == 1


async def test_retry_after_is_honoured_in_seconds_and_as_an_http_date(flaky) -> None:
    server, client = flaky
    server.refuse(503, retry_after="1")
    await client().get_entity("user", "u1")
    (_, first), (_, second) = server.seen
    assert second - first >= 1.0  # not sooner than the server asked
    server.seen.clear()
    server.refuse(429, retry_after=email.utils.formatdate(time.time() - 5, usegmt=True))
    await client().get_entity("user", "u1")
    assert len(server.seen) == 2


def test_retry_after_values() -> None:
    now = time.time()
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds("soon") is None
    # HTTP dates have whole seconds: 30 s from now reads as 29 to 30.
    later = retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True))
    assert later is not None and 28.0 < later <= 30.0
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True)) == 0.0


# -- closing ------------------------------------------------------------------------------

FORGETFUL_SCRIPT = """
import asyncio, sys
from memstore.client import MemoryClient

memory = MemoryClient(sys.argv[1], namespace="agent")

async def main() -> None:
    # never closed, never used as a context manager
    assert await memory.ping()
    other = memory.for_namespace("other")
    await other.append_message({"role": "user", "content": "hi"}, "c")
    print(len(await other.load_messages("c")))

asyncio.run(main())
asyncio.run(main())  # a second event loop: a second session, closed with its loop too
print(len(memory._sessions.by_loop))  # nothing kept of the ended loops
"""


async def test_a_client_never_closed_exits_without_warnings(
    http: TestClient[Any, Any], tmp_path: Path
) -> None:
    script = tmp_path / "forgetful.py"
    script.write_text(textwrap.dedent(FORGETFUL_SCRIPT))
    url = str(http.make_url("/")).rstrip("/")
    # -X dev shows every warning (ResourceWarning included) and asyncio's debug reports.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "dev",
        "-W",
        "always",
        str(script),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["1", "2", "0"]
    assert err.decode() == ""


async def test_close_closes_the_sessions_of_other_running_loops(flaky) -> None:
    """A client used on another running loop (the adapters' background loop) gets a session
    there; ``close()`` on the caller's loop has that loop close it too."""
    from memstore.integrations.background_loop import BackgroundLoop

    _server, client = flaky
    memory = client()
    other = BackgroundLoop(name="test-other-loop")
    try:
        # from a worker thread: this loop must keep serving the test server meanwhile
        assert await asyncio.to_thread(other.run, memory.ping())
        assert await memory.ping()
        sessions = [session for session, _ in memory._sessions.by_loop.values()]
        assert len(sessions) == 2
        await memory.close()
        for _ in range(100):  # the other loop closes its session on its own turn
            if all(s.closed for s in sessions):
                break
            await asyncio.sleep(0.01)
        assert all(s.closed for s in sessions)
        assert len(memory._sessions.by_loop) == 0
    finally:
        other.stop()

"""The change feed over HTTP (``GET /v1/namespaces/{ns}/changes``) on the real app and a
real embedded store: the JSON page and its long-poll, the event stream, resuming, filters,
bad parameters, pruned resume points (before and during a stream), the request deadline;
and ``MemoryClient.read_changes``/``watch`` over it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.client import MemoryClient
from memstore.core import changes
from memstore.core.errors import ChangesPrunedError
from memstore.core.records import ChangePage
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.server.app import create_app
from memstore.server.state import MANAGER
from tests.api.conftest import SpecChecker

Client = TestClient[Any, Any]
NS = "agent"
FEED = f"/v1/namespaces/{NS}/changes"
TEMPLATE = "/v1/namespaces/{namespace}/changes"
STREAM = {"Accept": "text/event-stream"}


async def write_some(http: Client) -> None:
    """Four changes: an entity saved, a message appended, a tool use, a feedback."""
    ns = f"/v1/namespaces/{NS}"
    for method, path, body in [
        ("PUT", f"{ns}/entities/user/ada", {"data": {"name": "Ada"}}),
        ("POST", f"{ns}/conversations/c1/messages", {"messages": [{"m": 1}]}),
        ("POST", f"{ns}/tool-usage", {"tool_name": "search", "id": "t1", "conversation_id": "c1"}),
        ("POST", f"{ns}/feedback", {"agent_name": "bot", "feedback_type": "rating", "data": 5}),
    ]:
        resp = await http.request(method, path, json=body)
        assert resp.status in (200, 201), await resp.text()


async def page(http: Client, spec: SpecChecker | None = None, **query: Any) -> dict[str, Any]:
    resp = await http.get(FEED, params={k: str(v) for k, v in query.items()})
    body = await resp.json()
    assert resp.status == 200, body
    if spec is not None:
        spec.check("GET", TEMPLATE, 200, body)
    return body  # type: ignore[no-any-return]


async def test_a_json_page_lists_changes_in_order_without_the_address(
    http: Client, spec: SpecChecker
) -> None:
    empty = await page(http, spec)
    assert empty == {"events": [], "next_after": 0, "first_position": 1, "last_position": 0}
    await write_some(http)
    body = await page(http, spec)
    assert [e["position"] for e in body["events"]] == [1, 2, 3, 4]
    assert [e["kind"] for e in body["events"]] == [
        changes.ENTITY_SAVED,
        changes.CONVERSATION_APPENDED,
        changes.TOOL_USAGE_RECORDED,
        changes.FEEDBACK_SAVED,
    ]
    for event in body["events"]:
        assert "address" not in event  # the audit export's, not the feed's
        assert event["actor"] is None  # auth is off: no token name
    assert (body["next_after"], body["first_position"], body["last_position"]) == (4, 1, 4)
    two = await page(http, spec, after=1, limit=2)
    assert [e["position"] for e in two["events"]] == [2, 3]
    assert two["next_after"] == 3


async def test_filters_keep_some_changes_and_still_advance_next_after(
    http: Client, spec: SpecChecker
) -> None:
    await write_some(http)
    tools = await page(http, spec, kind="tool_usage.recorded,feedback.saved")
    assert [e["position"] for e in tools["events"]] == [3, 4]
    users = await page(http, spec, type="user")
    assert [e["entity_id"] for e in users["events"]] == ["ada"]
    chat = await page(http, spec, conversation="c1")
    assert [e["kind"] for e in chat["events"]] == [
        changes.CONVERSATION_APPENDED,
        changes.TOOL_USAGE_RECORDED,
    ]
    # A page of two scanned changes that the filter drops: nothing, but next_after moves.
    none = await page(http, spec, kind="feedback.saved", limit=2)
    assert none["events"] == [] and none["next_after"] == 2
    repeated = await http.get(FEED, params=[("kind", "entity.saved"), ("kind", "feedback.saved")])
    assert [e["position"] for e in (await repeated.json())["events"]] == [1, 4]


@pytest.fixture
def quiet_settings(api_settings: Settings) -> Settings:
    # Nothing but a wake-up can end a wait early: the poll interval is longer than it.
    return api_settings.model_copy(update={"changes_poll_seconds": 300.0})


@pytest.fixture
async def quiet_http(quiet_settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(quiet_settings))) as client:
        yield client


async def test_a_long_poll_is_woken_by_a_write(quiet_http: Client) -> None:
    waiting = asyncio.create_task(page(quiet_http, wait=30))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await quiet_http.put(f"/v1/namespaces/{NS}/entities/user/ada", json={"data": {}})
    # Without the wake-up this would answer after 30 s with no events.
    body = await asyncio.wait_for(waiting, 25)
    assert [e["kind"] for e in body["events"]] == [changes.ENTITY_SAVED]


async def test_a_long_poll_with_nothing_new_answers_empty(http: Client) -> None:
    await write_some(http)
    body = await page(http, after=4, wait=0.2)
    assert body["events"] == [] and body["next_after"] == 4 and body["last_position"] == 4


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ({"after": "-1"}, {}, "after"),
        ({"after": "x"}, {}, "after"),
        ({"after": "1" * 19}, {}, "after"),
        ({}, {"Last-Event-ID": "seven"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "-3", **STREAM}, "Last-Event-ID"),
        ({"kind": "entity.renamed"}, {}, "kind"),
        ({"kind": "entity.saved,"}, STREAM, "kind"),
        ({"type": "a b"}, {}, "type"),
        ({"conversation": "a/b"}, STREAM, "conversation"),
        ({"wait": "-1"}, {}, "wait"),
        ({"wait": "nan"}, {}, "wait"),
        ({"wait": "31"}, {}, "wait"),  # above MEMSTORE_CHANGES_MAX_WAIT_SECONDS
        ({"limit": "0"}, {}, "limit"),
        ({"limit": "many"}, {}, "limit"),
        ({"limit": "0"}, STREAM, "limit"),
        ({"wait": "-2"}, STREAM, "wait"),
    ],
)
async def test_bad_parameters_are_a_400_naming_them(
    http: Client, spec: SpecChecker, query: dict[str, str], headers: dict[str, str], field: str
) -> None:
    resp = await http.get(FEED, params=query, headers=headers)
    body = await resp.json()
    assert resp.status == 400, body
    assert resp.content_type == "application/json"
    assert body["code"] == "invalid_input"
    assert body["details"]["field"] == field
    spec.check("GET", TEMPLATE, 400, body)


class Stream:
    """An event stream read the way the standard says, line by line."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.comments = 0

    async def next_block(self) -> dict[str, str]:
        """The fields of the next block (comments counted, not returned)."""
        fields: dict[str, str] = {}
        while True:
            raw = await asyncio.wait_for(self.resp.content.readline(), 20)
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if not line:
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(": ")
            fields[name] = value

    async def events(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            block = await self.next_block()
            if "data" in block:
                assert block["event"] == json.loads(block["data"])["kind"]
                assert block["id"] == str(json.loads(block["data"])["position"])
                out.append(json.loads(block["data"]))
        return out


async def test_an_event_stream_resumes_from_last_event_id(http: Client) -> None:
    await write_some(http)
    async with http.get(FEED, headers=STREAM) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        events = await Stream(resp).events(4)
        assert [e["position"] for e in events] == [1, 2, 3, 4]
        assert all("address" not in e for e in events)
    await http.put(f"/v1/namespaces/{NS}/entities/user/bob", json={"data": {}})
    # Last-Event-ID (what an EventSource sends when it reconnects) wins over ?after=.
    async with http.get(
        FEED, params={"after": "0"}, headers={**STREAM, "Last-Event-ID": "3"}
    ) as resp:
        stream = Stream(resp)
        assert [e["position"] for e in await stream.events(2)] == [4, 5]
        await http.delete(f"/v1/namespaces/{NS}/entities/user/bob")
        [live] = await stream.events(1)  # a change made while the stream is open
        assert (live["position"], live["kind"]) == (6, changes.ENTITY_DELETED)


@pytest.fixture
def keepalive_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"changes_keepalive_seconds": 0.1})


@pytest.fixture
async def keepalive_http(keepalive_settings: Settings) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(keepalive_settings))) as client:
        yield client


async def test_a_quiet_stream_gets_keepalives_carrying_the_scanned_position(
    keepalive_http: Client,
) -> None:
    http = keepalive_http
    await write_some(http)
    async with http.get(FEED, params={"kind": "entity.deleted"}, headers=STREAM) as resp:
        stream = Stream(resp)
        # Four changes scanned, none wanted: a bare id tells the client where to resume.
        assert await stream.next_block() == {"id": "4"}
        while stream.comments < 3:  # then comments only, while nothing happens
            line = await asyncio.wait_for(resp.content.readline(), 10)
            assert line in (b": keep-alive\n", b"\n"), line
            stream.comments += line.startswith(b":")
        await http.delete(f"/v1/namespaces/{NS}/entities/user/ada")
        [deleted] = await stream.events(1)
        assert deleted["position"] == 5


@pytest.fixture
def short_deadline_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"request_timeout_seconds": 0.3})


async def test_a_stream_outlives_the_request_deadline(short_deadline_settings: Settings) -> None:
    app = create_app(short_deadline_settings)
    async with TestClient(TestServer(app)) as http, http.get(FEED, headers=STREAM) as resp:
        assert resp.status == 200
        await asyncio.sleep(1.0)  # three deadlines
        await http.put(f"/v1/namespaces/{NS}/entities/user/ada", json={"data": {}})
        [saved] = await Stream(resp).events(1)
        assert saved["kind"] == changes.ENTITY_SAVED


@pytest.fixture
def small_log_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(update={"changes_max_events": 3})


async def test_a_pruned_resume_point_is_a_410_before_any_stream(
    small_log_settings: Settings,
) -> None:
    app = create_app(small_log_settings)
    async with TestClient(TestServer(app)) as http:
        for i in range(6):
            await http.put(f"/v1/namespaces/{NS}/entities/item/i{i}", json={"data": {}})
        await app[MANAGER].for_namespace(NS).trim_changes()
        spec = SpecChecker(await (await http.get("/openapi.json")).json())
        for headers in ({}, STREAM):
            resp = await http.get(FEED, params={"after": "1"}, headers=headers)
            body = await resp.json()
            assert resp.status == 410, body
            assert body["code"] == "changes_pruned"
            assert body["details"] == {"after": 1, "first_position": 4}
            spec.check("GET", TEMPLATE, 410, body)
        ok = await page(http, spec, after=3)  # right before the oldest retained: fine
        assert [e["position"] for e in ok["events"]] == [4, 5, 6]
        url = str(http.make_url("/")).rstrip("/")
        async with MemoryClient(url, NS) as client:
            with pytest.raises(ChangesPrunedError) as info:
                await client.read_changes(after=2)
            assert info.value.first_position == 4
            with pytest.raises(ChangesPrunedError):
                async for _ in client.watch(after=1):
                    pass


async def test_a_reader_without_a_position_starts_at_the_oldest_retained_change(
    small_log_settings: Settings,
) -> None:
    """A namespace whose oldest changes retention removed: a new reader (no ``after``,
    ``after=0``, no ``Last-Event-ID``) is not refused, it starts at the oldest kept."""
    app = create_app(small_log_settings)
    async with TestClient(TestServer(app)) as http:
        for i in range(6):
            await http.put(f"/v1/namespaces/{NS}/entities/item/i{i}", json={"data": {}})
        await app[MANAGER].for_namespace(NS).trim_changes()
        for query in ({}, {"after": 0}):
            body = await page(http, None, **query)
            assert [e["position"] for e in body["events"]] == [4, 5, 6]
        async with http.get(FEED, headers=STREAM) as resp:
            assert resp.status == 200
            assert [e["position"] for e in await Stream(resp).events(3)] == [4, 5, 6]
        url = str(http.make_url("/")).rstrip("/")
        async with MemoryClient(url, NS) as client:
            assert [e.position for e in (await client.read_changes()).events] == [4, 5, 6]
            seen = []
            async for change in client.watch():
                seen.append(change.position)
                if len(seen) == 3:
                    break
            assert seen == [4, 5, 6]
            exported = [e.position async for e in client.export_audit()]
            assert exported == [4, 5, 6]
        manager = app[MANAGER].for_namespace(NS)
        assert [e.position for e in (await manager.read_changes()).events] == [4, 5, 6]


class GatedBackend(EmbeddedMemoryBackend):
    """The embedded store whose change-log reads wait while ``closed`` is set: a test
    can let a stream fall behind retention between two of its reads."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.gate = asyncio.Event()
        self.gate.set()

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        await self.gate.wait()
        return await super().read_changes(namespace, after=after, limit=limit)


async def test_a_stream_that_falls_behind_retention_ends_with_a_pruned_event(
    small_log_settings: Settings,
) -> None:
    backend = GatedBackend(small_log_settings)
    manager = DistributedMemoryManager(settings=small_log_settings, backend=backend)
    app = create_app(small_log_settings, manager=manager)
    async with TestClient(TestServer(app)) as http:
        await http.put(f"/v1/namespaces/{NS}/entities/item/first", json={"data": {}})
        async with http.get(FEED, headers=STREAM) as resp:
            stream = Stream(resp)
            assert [e["position"] for e in await stream.events(1)] == [1]
            backend.gate.clear()  # the stream's next read waits...
            for i in range(6):  # ...while six changes come and retention keeps three
                await http.put(f"/v1/namespaces/{NS}/entities/item/i{i}", json={"data": {}})
            await manager.for_namespace(NS).trim_changes()
            backend.gate.set()
            last = await stream.next_block()
            assert last["event"] == "pruned"
            assert json.loads(last["data"]) == {
                "code": "changes_pruned",
                "message": json.loads(last["data"])["message"],
                "details": {"after": 1, "first_position": 5},
            }
            assert await resp.content.read() == b""  # and the stream ends
        url = str(http.make_url("/")).rstrip("/")
        async with MemoryClient(url, NS) as client:
            backend.gate.clear()
            seen = []

            async def follow() -> None:
                async for change in client.watch(after=4):
                    seen.append(change.position)

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            await http.put(f"/v1/namespaces/{NS}/entities/item/late", json={"data": {}})
            await manager.for_namespace(NS).trim_changes()
            backend.gate.set()
            with pytest.raises(ChangesPrunedError):
                await asyncio.wait_for(task, 20)


async def test_the_client_reads_and_watches_the_feed(http: Client, remote: MemoryClient) -> None:
    await write_some(http)
    first = await remote.read_changes(after=1, limit=2)
    assert [e.position for e in first.events] == [2, 3]
    assert (first.first_position, first.last_position) == (1, 4)
    assert first.events[1].record_id == "t1"
    seen = []
    async for change in remote.watch(kinds=changes.CONVERSATION_APPENDED, conversation_id="c1"):
        seen.append(change)
        await http.post(f"/v1/namespaces/{NS}/conversations/c1/messages", json={"messages": [{}]})
        if len(seen) == 3:
            break
    assert [(e.position, e.version) for e in seen] == [(2, 1), (5, 2), (6, 3)]

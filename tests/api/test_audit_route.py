"""``GET /v1/namespaces/{ns}/audit`` on the real app (auth off): JSON lines across pages,
the ``after``/``since``/``until`` filters, retention's 410, the document, and the read
audit log (``MEMSTORE_AUDIT_READS``)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.client import MemoryClient
from memstore.core.errors import ChangesPrunedError, InvalidInputError
from memstore.core.records import ChangePage
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.observability.logs import JsonFormatter
from memstore.server.app import create_app
from memstore.server.state import MANAGER

Client = TestClient[Any, Any]
AUDIT = "/v1/namespaces/agent/audit"


async def lines(http: Client, **query: str) -> list[dict[str, Any]]:
    resp = await http.get(AUDIT, params=query)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/x-ndjson"
    return [orjson.loads(line) for line in (await resp.read()).splitlines()]


async def test_the_export_streams_every_event_across_pages(
    http: Client, remote: MemoryClient
) -> None:
    # max_page_size is 50 here: 120 events are three reads of the log.
    for i in range(60):
        await remote.save_entity("item", f"i{i:03d}", {"i": i})
        await remote.append_messages([{"i": i}], "chat")
    events = await lines(http)
    assert [e["position"] for e in events] == list(range(1, 121))
    assert [e["kind"] for e in events[:2]] == ["entity.saved", "conversation.appended"]
    assert {e["actor"] for e in events} == {None}  # auth off: no token name
    assert {e["address"] for e in events} == {"127.0.0.1"}
    assert [e["position"] for e in await lines(http, after="117")] == [118, 119, 120]
    assert await lines(http, after="120") == []
    exported = [e.to_dict() async for e in remote.export_audit(after=100)]
    assert exported == events[100:]


async def test_since_and_until_select_by_time(http: Client, remote: MemoryClient) -> None:
    await remote.save_entity("t", "early", {})
    await asyncio.sleep(0.05)
    middle = time.time()
    await remote.save_entity("t", "late", {})
    await asyncio.sleep(0.05)
    end = time.time()
    assert [e["entity_id"] for e in await lines(http, since=str(middle))] == ["late"]
    assert [e["entity_id"] for e in await lines(http, until=str(middle))] == ["early"]
    assert await lines(http, since=str(end)) == []
    picked = [e.entity_id async for e in remote.export_audit(since=middle, until=end)]
    assert picked == ["late"]


@pytest.mark.parametrize(
    ("query", "field"),
    [({"after": "-1"}, "after"), ({"after": "x"}, "after"), ({"since": "soon"}, "since")],
)
async def test_bad_parameters_are_a_400_naming_them(
    http: Client, query: dict[str, str], field: str
) -> None:
    resp = await http.get(AUDIT, params=query)
    assert resp.status == 400
    body = await resp.json()
    assert (body["code"], body["details"]["field"]) == ("invalid_input", field)


async def test_the_client_checks_its_arguments(remote: MemoryClient) -> None:
    with pytest.raises(InvalidInputError):
        _ = [e async for e in remote.export_audit(after=-1)]
    with pytest.raises(InvalidInputError):
        _ = [e async for e in remote.export_audit(since=float("nan"))]


async def test_after_a_pruned_position_is_a_410_and_without_after_the_oldest_retained(
    api_settings: Settings,
) -> None:
    settings = api_settings.model_copy(update={"changes_max_events": 3})
    async with TestClient(TestServer(create_app(settings))) as http:
        url = str(http.make_url("/")).rstrip("/")
        async with MemoryClient(url, namespace="agent") as remote:
            for i in range(6):
                await remote.save_entity("t", f"e{i}", {})
            assert http.app is not None
            await http.app[MANAGER].for_namespace("agent").trim_changes()
            assert [e["position"] for e in await lines(http)] == [4, 5, 6]
            assert [e["position"] for e in await lines(http, after="3")] == [4, 5, 6]
            resp = await http.get(AUDIT, params={"after": "1"})
            assert resp.status == 410
            body = await resp.json()
            assert body["code"] == "changes_pruned"
            assert body["details"] == {"after": 1, "first_position": 4}
            with pytest.raises(ChangesPrunedError) as caught:
                _ = [e async for e in remote.export_audit(after=2)]
            assert caught.value.first_position == 4


class TrimmingBackend(EmbeddedMemoryBackend):
    """The embedded store whose second change-log read comes after retention ran: an
    export is overtaken by retention between two of its pages."""

    reads = 0

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        self.reads += 1
        if self.reads == 2:
            await self.trim_changes(namespace)
        return await super().read_changes(namespace, after=after, limit=limit)


async def test_an_export_overtaken_by_retention_ends_with_an_error_line(
    api_settings: Settings,
) -> None:
    settings = api_settings.model_copy(
        update={"changes_max_events": 3, "max_page_size": 2, "default_page_size": 2}
    )
    backend = TrimmingBackend(settings)
    manager = DistributedMemoryManager(settings=settings, backend=backend)
    async with TestClient(TestServer(create_app(settings, manager=manager))) as http:
        for i in range(6):
            await http.put(f"/v1/namespaces/agent/entities/t/e{i}", json={"data": {}})
        resp = await http.get(AUDIT)
        assert resp.status == 200
        raw = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert [e["position"] for e in raw[:-1]] == [1, 2]
        assert raw[-1]["error"]["code"] == "changes_pruned"
        assert raw[-1]["error"]["details"] == {"after": 2, "first_position": 4}
        for i in range(3):  # positions 7-9: 4-9 kept until the next trim
            await manager.for_namespace("agent").save_entity("t", f"more{i}", {})
        backend.reads = 0
        url = str(http.make_url("/")).rstrip("/")
        async with MemoryClient(url, namespace="agent") as remote:
            got: list[int] = []

            async def export() -> None:
                async for event in remote.export_audit(after=3):
                    got.append(event.position)

            with pytest.raises(ChangesPrunedError):
                await export()
            assert got == [4, 5]


async def test_the_route_is_in_the_document(http: Client) -> None:
    doc = await (await http.get("/openapi.json")).json()
    op = doc["paths"]["/v1/namespaces/{namespace}/audit"]["get"]
    assert op["operationId"] == "exportAudit"
    assert "application/x-ndjson" in op["responses"]["200"]["content"]
    assert {"400", "410", "503"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["namespace", "after", "since", "until"]


async def test_reads_are_logged_with_the_audit_setting_and_writes_are_not(
    api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = api_settings.model_copy(update={"audit_reads": True})
    async with TestClient(TestServer(create_app(settings))) as http:
        with caplog.at_level(logging.INFO, logger="memstore.audit"):
            await http.put("/v1/namespaces/agent/entities/note/n1", json={"data": {"s": "PAY"}})
            await http.get("/v1/namespaces/agent/entities/note/n1")
            await http.get("/v1/namespaces/agent/entities/note/missing")
            await http.get("/v1/namespaces/agent/tool-usage", params={"tool_name": "search"})
            await http.get("/livez")
    records = [r for r in caplog.records if r.name == "memstore.audit"]
    shown = [orjson.loads(JsonFormatter().format(r)) for r in records]
    assert [(x["operation"], x["keys"], x["status"]) for x in shown] == [
        ("getEntity", {"entity_type": "note", "entity_id": "n1"}, 200),
        ("getEntity", {"entity_type": "note", "entity_id": "missing"}, 404),
        ("queryToolUsage", {"tool_name": "search"}, 200),
    ]
    for line in shown:
        assert (line["msg"], line["namespace"], line["actor"]) == ("read", "agent", None)
        assert line["address"] == "127.0.0.1"
        assert "PAY" not in orjson.dumps(line).decode()


async def test_without_the_setting_reads_are_not_logged(
    http: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="memstore.audit"):
        await http.get("/v1/namespaces/agent/entities/note/n1")
    assert [r for r in caplog.records if r.name == "memstore.audit"] == []

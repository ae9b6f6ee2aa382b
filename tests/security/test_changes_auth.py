"""The change feed with bearer tokens: the `read` role on a namespace is enough to watch
it (event stream and JSON), other namespaces are refused before anything streams, events
name the writer's token (never the token itself or the client address), and an in-flight
cap counts an open stream as one request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from memstore.client import MemoryClient
from memstore.core.errors import PermissionDeniedError
from tests.security.conftest import NS_A, NS_B, Tokens

Client = TestClient[Any, Any]
STREAM = {"Accept": "text/event-stream"}


def feed(ns: str) -> str:
    return f"/v1/namespaces/{ns}/changes"


async def test_a_reader_watches_its_namespace_and_sees_who_wrote(
    make_http: Any, tokens: Tokens
) -> None:
    http: Client = await make_http()
    put = await http.put(
        f"/v1/namespaces/{NS_A}/entities/note/n1",
        json={"data": {"x": 1}},
        headers=tokens.header(tokens.a),
    )
    assert put.status == 201
    headers = {**STREAM, **tokens.header(tokens.a_reader)}
    async with http.get(feed(NS_A), headers=headers) as resp:
        assert resp.status == 200
        lines = [(await resp.content.readline()).decode() for _ in range(3)]
    event = json.loads(lines[2].removeprefix("data: "))
    assert (event["kind"], event["actor"]) == ("entity.saved", "tenant-a")
    assert "address" not in event
    assert tokens.a not in "".join(lines)
    url = str(http.make_url("/")).rstrip("/")
    async with MemoryClient(url, NS_A, token=tokens.a_reader) as reader:
        [change] = (await reader.read_changes()).events
        assert change.actor == "tenant-a"
    async with MemoryClient(url, NS_B, token=tokens.a_reader) as outsider:
        with pytest.raises(PermissionDeniedError) as refused:
            await anext(outsider.watch())
        assert refused.value.code == "forbidden"


async def test_an_open_stream_holds_one_in_flight_slot(make_http: Any, tokens: Tokens) -> None:
    http: Client = await make_http(max_inflight_per_caller=1)
    headers = tokens.header(tokens.a_reader)
    async with http.get(feed(NS_A), headers={**STREAM, **headers}) as stream:
        assert stream.status == 200
        busy = await http.get(feed(NS_A), headers=headers)
        assert busy.status == 429  # the caller's one slot is the open stream
    for _ in range(50):  # the slot is given back when the stream ends
        if (await http.get(feed(NS_A), headers=headers)).status == 200:
            break
    else:
        raise AssertionError("the stream's in-flight slot was never released")

"""Search (recall) over HTTP, end to end: a real ``memstore serve`` process, its three
search routes driven with raw HTTP (every answer checked against the server's own
/openapi.json) and through ``MemoryClient``; bad searches answered 400 naming the field,
with nothing written; and the same routes on a second backend (Redis).

The expected hits are written here from the data each test stores (which documents hold
the words), not computed by the code under test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from memstore.client import MemoryClient
from memstore.core.errors import InvalidInputError
from memstore.core.records import EntityHit, EntityRecord, MessageHit, ToolUsageHit
from tests.api.conftest import SpecChecker
from tests.support.procs import ServiceProcess, running_service
from tests.support.shared_backend import backend_env

ENTITIES = "/v1/namespaces/{namespace}/search"
MESSAGES = "/v1/namespaces/{namespace}/conversations:search"
TOOL_USAGE = "/v1/namespaces/{namespace}/tool-usage/search"

NOTES: dict[str, dict[str, Any]] = {
    "n1": {"title": "Paris trip", "text": "Flights to Paris in spring", "stars": 5},
    "n2": {"title": "Groceries", "text": "milk eggs bread", "stars": 2},
    "n3": {
        "title": "Rome",
        "text": "A week in Rome, then the museums",
        "stars": 4,
        "author": {"name": "Ada"},
    },
}
TASKS: dict[str, dict[str, Any]] = {"t1": {"text": "book a hotel in Paris", "stars": 3}}


class Api:
    """One service: raw HTTP calls checked against its document, and a client."""

    def __init__(self, url: str, session: aiohttp.ClientSession, spec: SpecChecker) -> None:
        self.url = url
        self.session = session
        self.spec = spec
        self.namespace = f"search-{uuid.uuid4().hex[:8]}"

    async def post(self, template: str, body: Any, *, expect: int = 200) -> Any:
        path = template.format(namespace=self.namespace)
        async with self.session.post(self.url + path, json=body) as resp:
            answer = await resp.json()
            assert resp.status == expect, answer
            self.spec.check("POST", template, resp.status, answer)
            return answer

    async def get(self, path: str) -> Any:
        async with self.session.get(f"{self.url}/v1/namespaces/{self.namespace}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def written(self) -> tuple[int, Any]:
        """What the namespace holds: its change log's last position and its summary."""
        changes = await self.get("/changes")
        summary = await self.get("/summary")
        return changes["last_position"], summary

    def client(self) -> MemoryClient:
        return MemoryClient(self.url, self.namespace)


@pytest.fixture
def redis_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceProcess]:
    env = backend_env(request, "redis", tmp_path) | {"MEMSTORE_LOG_LEVEL": "WARNING"}
    with running_service(tmp_path / "redis-service", env) as svc:
        yield svc


async def _api(url: str) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/openapi.json") as resp:
            spec = SpecChecker(await resp.json())
        yield Api(url, session, spec)


@pytest.fixture
async def api(live_service: ServiceProcess) -> AsyncIterator[Api]:
    async for a in _api(live_service.url):
        yield a


@pytest.fixture
async def redis_api(redis_service: ServiceProcess) -> AsyncIterator[Api]:
    async for a in _api(redis_service.url):
        yield a


async def store_notes(api: Api) -> None:
    async with api.client() as memory:
        for entity_id, data in NOTES.items():
            await memory.save_entity("note", entity_id, data)
        for entity_id, data in TASKS.items():
            await memory.save_entity("task", entity_id, data)


async def store_conversations(api: Api) -> None:
    async with api.client() as memory:
        await memory.append_messages(
            [
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris is the capital of France."},
            ],
            "c1",
        )
        await memory.append_messages([{"role": "user", "content": "A recipe for pancakes"}], "c2")


async def store_tool_uses(api: Api) -> None:
    async with api.client() as memory:
        await memory.save_tool_usage("web_search", {"q": "weather in Oslo"}, ["Rainy in Oslo"])
        await memory.save_tool_usage("calculator", {"expr": "2+2"}, {"text": "four"})


def entity_ids(answer: dict[str, Any]) -> list[str]:
    return [hit["entity"]["id"] for hit in answer["items"]]


# -- each route, end to end -------------------------------------------------------------


async def check_entity_search(api: Api) -> None:
    await store_notes(api)
    before = await api.written()

    # Keywords: "paris" is twice in n1 (title and text), once in t1, nowhere else.
    words = await api.post(ENTITIES, {"query": "paris", "mode": "keyword"})
    assert entity_ids(words) == ["n1", "t1"]
    assert words["mode"] == "keyword" and words["embedder"] is None
    assert words["next_cursor"] is None
    assert words["items"][0]["entity"]["data"] == NOTES["n1"]
    assert words["items"][0]["score"] > words["items"][1]["score"] > 0
    only_notes = await api.post(ENTITIES, {"query": "paris", "types": ["note"], "mode": "keyword"})
    assert entity_ids(only_notes) == ["n1"]

    # Filters: operators, and a nested path.
    stars = await api.post(ENTITIES, {"filter": {"stars": {"$gte": 4}}, "types": ["note"]})
    assert stars["mode"] == "filter"
    assert sorted(entity_ids(stars)) == ["n1", "n3"]
    assert {hit["score"] for hit in stars["items"]} == {1.0}
    nested = await api.post(ENTITIES, {"filter": {"author.name": "Ada"}, "mode": "filter"})
    assert entity_ids(nested) == ["n3"]
    both = await api.post(
        ENTITIES, {"query": "paris", "filter": {"stars": {"$lt": 5}}, "mode": "keyword"}
    )
    assert entity_ids(both) == ["t1"]

    # Pages: one hit at a time, in the same order, never a repeat, never a silent cap.
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        body: dict[str, Any] = {"filter": {"stars": {"$gt": 0}}, "limit": 1}
        if cursor is not None:
            body["cursor"] = cursor
        page = await api.post(ENTITIES, body)
        assert len(page["items"]) == 1
        seen.extend(entity_ids(page))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == ["n1", "n2", "n3", "t1"]

    # The client: the same answers as records.
    async with api.client() as memory:
        hits = await memory.search_entities("paris", mode="keyword")
        assert [type(h) for h in hits.items] == [EntityHit, EntityHit]
        assert [h.entity.id for h in hits.items] == ["n1", "t1"]
        assert isinstance(hits.items[0].entity, EntityRecord)
        assert hits.items[0].entity.data == NOTES["n1"]
        assert hits.items[0].score == words["items"][0]["score"]
        assert (hits.mode, hits.embedder, hits.next_cursor) == ("keyword", None, None)
        first = await memory.search_entities(filter={"stars": {"$gte": 4}}, limit=1)
        assert first.next_cursor is not None
        rest = await memory.search_entities(
            filter={"stars": {"$gte": 4}}, limit=1, cursor=first.next_cursor
        )
        assert {first.items[0].entity.id, rest.items[0].entity.id} == {"n1", "n3"}
        assert rest.next_cursor is None

    # A search writes nothing.
    assert await api.written() == before


async def check_message_search(api: Api) -> None:
    await store_conversations(api)
    before = await api.written()
    answer = await api.post(MESSAGES, {"query": "pancakes", "mode": "keyword"})
    assert [(h["message"]["conversation_id"], h["message"]["seq"]) for h in answer["items"]] == [
        ("c2", 1)
    ]
    assert answer["items"][0]["message"]["message"]["content"] == "A recipe for pancakes"
    assert answer["mode"] == "keyword"
    one = await api.post(
        MESSAGES, {"query": "capital france", "conversation_id": "c2", "mode": "keyword"}
    )
    assert one["items"] == []
    async with api.client() as memory:
        hits = await memory.search_messages("capital france", conversation_id="c1", mode="keyword")
        assert all(isinstance(h, MessageHit) for h in hits.items)
        assert sorted(h.message.seq for h in hits.items) == [1, 2]
        assert {h.message.conversation_id for h in hits.items} == {"c1"}
        paged = await memory.search_messages("capital", mode="keyword", limit=1)
        assert len(paged.items) == 1 and paged.next_cursor is not None
        rest = await memory.search_messages(
            "capital", mode="keyword", limit=1, cursor=paged.next_cursor
        )
        assert {paged.items[0].message.seq, rest.items[0].message.seq} == {1, 2}
        assert rest.next_cursor is None
    assert await api.written() == before


async def check_tool_usage_search(api: Api) -> None:
    await store_tool_uses(api)
    before = await api.written()
    answer = await api.post(TOOL_USAGE, {"query": "oslo", "mode": "keyword"})
    assert [h["record"]["tool_name"] for h in answer["items"]] == ["web_search"]
    assert answer["items"][0]["record"]["input"] == {"q": "weather in Oslo"}
    other_tool = await api.post(
        TOOL_USAGE, {"query": "oslo", "tool_name": "calculator", "mode": "keyword"}
    )
    assert other_tool["items"] == []
    async with api.client() as memory:
        hits = await memory.search_tool_usage("four", mode="keyword")
        assert all(isinstance(h, ToolUsageHit) for h in hits.items)
        assert [h.record.tool_name for h in hits.items] == ["calculator"]
        assert hits.items[0].record.output == {"text": "four"}
    assert await api.written() == before


async def test_search_entities(api: Api) -> None:
    await check_entity_search(api)


async def test_search_messages(api: Api) -> None:
    await check_message_search(api)


async def test_search_tool_usage(api: Api) -> None:
    await check_tool_usage_search(api)


async def test_search_entities_on_redis(redis_api: Api) -> None:
    await check_entity_search(redis_api)


async def test_search_messages_on_redis(redis_api: Api) -> None:
    await check_message_search(redis_api)


async def test_search_tool_usage_on_redis(redis_api: Api) -> None:
    await check_tool_usage_search(redis_api)


# -- bad searches -----------------------------------------------------------------------

BAD: list[tuple[str, dict[str, Any], str]] = [
    # (route, body, the field the answer names)
    (ENTITIES, {"filter": {"stars": {"$foo": 1}}}, "filter.stars.$foo"),
    (ENTITIES, {"filter": {"stars": {"$in": 3}}}, "filter.stars.$in"),
    (ENTITIES, {"filter": {"stars": {"$gt": {"a": 1}}}}, "filter.stars.$gt"),
    (ENTITIES, {"filter": [1, 2]}, "filter"),
    (ENTITIES, {"query": 5}, "query"),
    (ENTITIES, {"query": ""}, "query"),
    (ENTITIES, {"query": "   "}, "query"),
    (ENTITIES, {"query": "x", "limit": 1_000_000}, "limit"),
    (ENTITIES, {"query": "x", "limit": 0}, "limit"),
    (ENTITIES, {"query": "x", "limit": "ten"}, "limit"),
    (ENTITIES, {"query": "x", "mode": "fuzzy"}, "mode"),
    (ENTITIES, {"mode": "keyword"}, "query"),
    (ENTITIES, {"types": "note"}, "types"),
    (ENTITIES, {"types": ["bad type"]}, "types"),
    (ENTITIES, {"query": "x", "cursor": "not-one-of-ours"}, "cursor"),
    (ENTITIES, {"query": "x", "bogus": 1}, "bogus"),
    (MESSAGES, {}, "query"),
    (MESSAGES, {"query": ""}, "query"),
    (MESSAGES, {"query": "x", "conversation_id": "bad id"}, "conversation_id"),
    (MESSAGES, {"query": "x", "limit": 1_000_000}, "limit"),
    (MESSAGES, {"query": "x", "mode": "filter"}, "mode"),
    (TOOL_USAGE, {"query": ["x"]}, "query"),
    (TOOL_USAGE, {"query": "x", "tool_name": "bad tool"}, "tool_name"),
    (TOOL_USAGE, {"query": "x", "limit": -1}, "limit"),
]


async def test_bad_searches_are_a_400_naming_the_field_and_write_nothing(api: Api) -> None:
    await store_notes(api)
    await store_conversations(api)
    await store_tool_uses(api)
    before = await api.written()
    for template, body, field in BAD:
        answer = await api.post(template, body, expect=400)
        assert answer["code"] == "invalid_input", (body, answer)
        assert answer["details"]["field"] == field, (body, answer)
    # Not JSON at all: the body is named.
    async with api.session.post(
        api.url + ENTITIES.format(namespace=api.namespace), data=b"{not json"
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["details"]["field"] == "body"
    assert await api.written() == before


async def test_the_client_refuses_bad_searches_before_sending() -> None:
    """The client runs the manager's own check before any request: with no service at
    its URL, a bad search is still the InvalidInputError naming the field."""
    from tests.support.procs import free_port

    async with MemoryClient(f"http://127.0.0.1:{free_port()}", "nobody", retries=0) as memory:
        for call, field in [
            (memory.search_entities(filter={"stars": {"$foo": 1}}), "filter.stars.$foo"),
            (memory.search_entities(filter={"stars": {"$in": 3}}), "filter.stars.$in"),
            (memory.search_entities("x", types=["bad type"]), "types"),
            (memory.search_entities(mode="keyword"), "query"),
            (memory.search_messages("  "), "query"),
            (memory.search_messages("x", mode="filter"), "mode"),
            (memory.search_tool_usage("x", tool_name="bad tool"), "tool_name"),
        ]:
            with pytest.raises(InvalidInputError) as refused:
                await call
            assert refused.value.details["field"] == field


async def test_the_client_gets_the_servers_error(api: Api) -> None:
    """What only the server knows (its page sizes, the cursors it issued) it checks: the
    client raises the same InvalidInputError naming the field."""
    async with api.client() as memory:
        for call, field in [
            (memory.search_entities("x", limit=10**9), "limit"),
            (memory.search_messages("x", limit=0), "limit"),
            (memory.search_tool_usage("x", cursor="forged"), "cursor"),
        ]:
            with pytest.raises(InvalidInputError) as refused:
                await call
            assert refused.value.details["field"] == field


async def test_without_an_embedder_auto_is_keyword_and_semantic_a_400(tmp_path: Path) -> None:
    """MEMSTORE_EMBEDDER=none: the document offers no vector mode, `auto` ranks by
    keywords, and asking for `semantic` or `hybrid` is a 400 naming `mode`."""
    env = {"MEMSTORE_EMBEDDER": "none", "MEMSTORE_LOG_LEVEL": "WARNING"}
    with running_service(tmp_path / "no-embedder", env) as svc:
        async for api in _api(svc.url):
            modes = api.spec.doc["components"]["schemas"]["EntitySearch"]["properties"]["mode"]
            assert modes["enum"] == ["auto", "filter", "keyword"]
            await store_notes(api)
            words = await api.post(ENTITIES, {"query": "paris"})
            assert (words["mode"], words["embedder"]) == ("keyword", None)
            assert entity_ids(words) == ["n1", "t1"]
            for mode in ("semantic", "hybrid"):
                refused = await api.post(MESSAGES, {"query": "x", "mode": mode}, expect=400)
                assert refused["details"]["field"] == "mode"
                assert "MEMSTORE_EMBEDDER=none" in refused["message"]

"""The one-line swap: ``DistributedMemoryManager`` and ``MemoryClient`` (against a real
service on a loopback socket) give the same outcome for the same call.

``test_same_mistake_same_error`` makes each bad call on both and compares the exception's
class, code, message and details; the behaviour tests below run once per side
(``memory`` is parametrized over the two).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from memstore import (
    ConflictError,
    DistributedMemoryManager,
    InvalidInputError,
    MemoryClient,
    MemoryStoreError,
    PayloadTooLargeError,
)
from memstore.core.records import EntityWrite as EW
from memstore.core.records import MessagesWrite as MW
from memstore.core.settings import Settings
from memstore.memory.api import MemoryAPI


@pytest.fixture
async def manager(api_settings: Settings) -> AsyncIterator[DistributedMemoryManager]:
    # The service's settings on a file of its own (the service owns its file).
    settings = api_settings.model_copy(
        update={"data_path": api_settings.data_path.with_name("in-process.db")}
    )
    async with DistributedMemoryManager(settings=settings, namespace="agent") as memory:
        yield memory


@pytest.fixture(params=["manager", "client"])
def memory(request: pytest.FixtureRequest) -> MemoryAPI:
    side: MemoryAPI = request.getfixturevalue("manager" if request.param == "manager" else "remote")
    return side


class NotJSON:
    pass


Call = Callable[[MemoryAPI], Awaitable[Any]]
BAD = "a b"  # a name with a space
CID = "conversation_id"

# (id, call, field named in the details)
MISTAKES: list[tuple[str, Call, str]] = [
    ("empty id", lambda m: m.save_entity("user", "", {"a": 1}), "entity_id"),
    ("empty type", lambda m: m.save_entity("", "x", {"a": 1}), "entity_type"),
    ("id with a slash", lambda m: m.save_entity("user", "a/b", {"a": 1}), "entity_id"),
    ("id with a space", lambda m: m.get_entity("user", "a b"), "entity_id"),
    ("empty id on get", lambda m: m.get_entity("user", ""), "entity_id"),
    ("empty id on delete", lambda m: m.delete_entity("user", ""), "entity_id"),
    ("NaN ttl", lambda m: m.save_entity("user", "x", {"a": 1}, ttl=math.nan), "ttl"),
    ("infinite ttl", lambda m: m.save_entity("user", "x", {"a": 1}, ttl=math.inf), "ttl"),
    ("zero ttl", lambda m: m.save_entity("user", "x", {"a": 1}, ttl=0), "ttl"),
    ("boolean ttl", lambda m: m.save_entity("user", "x", {"a": 1}, ttl=True), "ttl"),
    ("string ttl", lambda m: m.save_entity("user", "x", {"a": 1}, ttl="5"), "ttl"),  # type: ignore[arg-type]
    ("data not an object", lambda m: m.save_entity("user", "x", [1, 2]), "data"),  # type: ignore[arg-type]
    ("data not JSON", lambda m: m.save_entity("user", "x", {"a": NotJSON()}), "data"),
    ("data with an int key", lambda m: m.save_entity("user", "x", {1: "a"}), "data"),  # type: ignore[dict-item]
    ("NaN in data", lambda m: m.save_entity("user", "x", {"a": [math.nan]}), "data"),
    ("infinity in a message", lambda m: m.append_messages([{"p": math.inf}], "c1"), "messages"),
    ("data with a huge int", lambda m: m.save_entity("user", "x", {"n": 2**70}), "data"),
    ("negative version", lambda m: m.save_entity("user", "x", {}, expected_version=-1), "version"),
    ("version -1, delete", lambda m: m.delete_entity("u", "x", expected_version=-1), "version"),
    ("limit 0", lambda m: m.list_entities("user", limit=0), "limit"),
    ("limit above the cap", lambda m: m.list_entities("user", limit=51), "limit"),
    ("fractional limit", lambda m: m.list_entities("user", limit=1.5), "limit"),  # type: ignore[arg-type]
    ("forged cursor", lambda m: m.list_entities("user", cursor="not-a-cursor"), "cursor"),
    ("bad type on list", lambda m: m.list_entities("a b"), "entity_type"),
    ("no messages", lambda m: m.append_messages([], "c1"), "messages"),
    ("message not an object", lambda m: m.append_messages([1], "c1"), "message"),  # type: ignore[list-item]
    ("message not JSON", lambda m: m.append_messages([{"a": NotJSON()}], "c1"), "messages"),
    ("messages not a list", lambda m: m.append_messages({"a": 1}, "c1"), "messages"),  # type: ignore[arg-type]
    ("bad conversation id", lambda m: m.append_messages([{"a": 1}], "a b"), "conversation_id"),
    ("replace with a non-object", lambda m: m.save_conversation_history([1], "c1"), "message"),  # type: ignore[list-item]
    ("before 0", lambda m: m.load_messages("c1", before_seq=0), "before"),
    ("last 0 messages", lambda m: m.load_messages("c1", limit=0), "limit"),
    ("last True messages", lambda m: m.load_messages("c1", limit=True), "limit"),
    ("boolean limit", lambda m: m.list_conversations(limit=True), "limit"),
    ("bad conversation on delete", lambda m: m.delete_conversation("a b"), "conversation_id"),
    ("empty tool name", lambda m: m.save_tool_usage("", {}, {}), "tool_name"),
    ("negative duration", lambda m: m.save_tool_usage("t", {}, {}, duration_ms=-1), "duration_ms"),
    ("NaN duration", lambda m: m.save_tool_usage("t", {}, {}, duration_ms=math.nan), "duration_ms"),
    ("NaN timestamp", lambda m: m.save_tool_usage("t", {}, {}, timestamp=math.nan), "timestamp"),
    ("empty usage id", lambda m: m.save_tool_usage("t", {}, {}, usage_id=""), "entity_id"),
    ("tool input not JSON", lambda m: m.save_tool_usage("t", NotJSON(), {}), "tool usage"),
    ("tool use, bad cid", lambda m: m.save_tool_usage("t", 1, 2, conversation_id=BAD), CID),
    ("NaN start", lambda m: m.query_tool_usage(start=math.nan), "start"),
    ("negative end", lambda m: m.query_tool_usage(end=-1), "end"),
    ("bad tool filter", lambda m: m.query_tool_usage("a b"), "tool_name"),
    ("empty agent name", lambda m: m.save_learning_feedback("", "rating", {}), "agent_name"),
    ("feedback not JSON", lambda m: m.save_learning_feedback("a", "r", NotJSON()), "feedback"),
    ("bad feedback filter", lambda m: m.query_learning_feedback(None, "a b"), "feedback_type"),
    ("negative change position", lambda m: m.read_changes(after=-1), "after"),
    ("boolean change position", lambda m: m.read_changes(after=True), "after"),
    ("changes limit 0", lambda m: m.read_changes(limit=0), "limit"),
    ("watch from -1", lambda m: anext(m.watch(after=-1)), "after"),
    ("watch an unknown kind", lambda m: anext(m.watch(kinds=["entity.renamed"])), "kinds"),
    ("watch no kind", lambda m: anext(m.watch(kinds=[])), "kinds"),
    ("watch a bad type", lambda m: anext(m.watch(entity_type="a b")), "entity_type"),
    ("watch a bad conversation", lambda m: anext(m.watch(conversation_id=BAD)), CID),
    # analytics
    ("growth of an unknown kind", lambda m: m.analytics_growth("planets"), "kind"),
    ("growth by the week", lambda m: m.analytics_growth("entities", bucket="week"), "bucket"),
    ("tools since after until", lambda m: m.analytics_tools(since=20.0, until=10.0), "since"),
    ("tools over 1001 hours", lambda m: m.analytics_tools(since=0.0, until=3_600_000.0), "since"),
    ("tools, NaN until", lambda m: m.analytics_tools(until=math.nan), "until"),
    ("tools, 101 listed", lambda m: m.analytics_tools(limit=101), "limit"),
    ("tools, bad tool name", lambda m: m.analytics_tools(tool_name=BAD), "tool_name"),
    ("feedback by the minute", lambda m: m.analytics_feedback(bucket="minute"), "bucket"),
    ("empty namespace", lambda m: _view(m, ""), "namespace"),
    ("unknown operator", lambda m: m.search_entities(filter={"n": {"$foo": 1}}), "filter.n.$foo"),
    ("$in not a list", lambda m: m.search_entities(filter={"n": {"$in": 3}}), "filter.n.$in"),
    ("$gt an object", lambda m: m.search_entities(filter={"n": {"$gt": {}}}), "filter.n.$gt"),
    ("op and field", lambda m: m.search_entities(filter={"n": {"$gt": 1, "a": 2}}), "filter.n"),
    ("filter not an object", lambda m: m.search_entities(filter=[1]), "filter"),  # type: ignore[arg-type]
    ("empty search query", lambda m: m.search_entities(""), "query"),
    ("blank message query", lambda m: m.search_messages("  "), "query"),
    ("query not a string", lambda m: m.search_tool_usage(5), "query"),  # type: ignore[arg-type]
    ("query too long", lambda m: m.search_messages("x" * 4097), "query"),
    ("unknown search mode", lambda m: m.search_entities("x", mode="fuzzy"), "mode"),  # type: ignore[arg-type]
    ("filter mode with a query", lambda m: m.search_entities("x", mode="filter"), "query"),
    ("keyword without a query", lambda m: m.search_entities(mode="keyword"), "query"),
    ("no filter mode for messages", lambda m: m.search_messages("x", mode="filter"), "mode"),
    ("types not a list", lambda m: m.search_entities("x", types="note"), "types"),  # type: ignore[arg-type]
    ("no types", lambda m: m.search_entities("x", types=[]), "types"),
    ("bad search type", lambda m: m.search_entities("x", types=[BAD]), "types"),
    ("bad search conversation", lambda m: m.search_messages("x", conversation_id=BAD), CID),
    ("bad search tool", lambda m: m.search_tool_usage("x", tool_name=BAD), "tool_name"),
    ("search limit 0", lambda m: m.search_entities("x", limit=0), "limit"),
    ("search limit above the cap", lambda m: m.search_messages("x", limit=51), "limit"),
    ("fractional search limit", lambda m: m.search_tool_usage("x", limit=1.5), "limit"),  # type: ignore[arg-type]
    ("boolean search limit", lambda m: m.search_entities("x", limit=True), "limit"),
    ("forged search cursor", lambda m: m.search_entities("x", cursor="not-a-cursor"), "cursor"),
    # batch writes: every item checked first, the error names the item
    ("empty batch", lambda m: m.save_entities([]), "items"),
    ("batch of 501", lambda m: m.save_entities([EW("u", f"{i}", {}) for i in range(501)]), "items"),
    ("batch item not an item", lambda m: m.save_entities([{"a": 1}]), "items"),  # type: ignore[list-item]
    ("batch item, bad id", lambda m: m.save_entities([EW("u", "x", {}), EW("u", BAD, {})]), "entity_id"),  # noqa: E501
    ("batch item, NaN ttl", lambda m: m.save_entities([EW("u", "x", {}, ttl=math.nan)]), "ttl"),
    ("one key twice", lambda m: m.save_entities([EW("u", "x", {}), EW("u", "x", {})]), "items"),
    ("append batch, no messages", lambda m: m.append_messages_batch([MW("c", [])]), "messages"),
    ("append batch, bad cid", lambda m: m.append_messages_batch([MW(BAD, [{}])]), CID),
    ("append batch, cid twice", lambda m: m.append_messages_batch([MW("c", [{}]), MW("c", [{}])]), "items"),  # noqa: E501
]  # fmt: skip


async def _view(m: MemoryAPI, namespace: str) -> MemoryAPI:
    return m.for_namespace(namespace)


async def outcome(call: Call, memory: MemoryAPI) -> MemoryStoreError:
    with pytest.raises(MemoryStoreError) as info:
        await call(memory)
    return info.value


@pytest.mark.parametrize(("call", "field"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
async def test_same_mistake_same_error(
    call: Call, field: str, manager: DistributedMemoryManager, remote: MemoryClient
) -> None:
    local = await outcome(call, manager)
    over_http = await outcome(call, remote)
    assert type(local) is InvalidInputError
    assert local.details.get("field") == field, local.details
    assert (type(over_http), over_http.code, over_http.message, over_http.details) == (
        type(local),
        local.code,
        local.message,
        local.details,
    )


async def test_a_mistake_stores_nothing(memory: MemoryAPI) -> None:
    with pytest.raises(InvalidInputError):
        await memory.save_entity("user", "x", {"a": 1}, ttl=math.nan)
    assert await memory.get_entity("user", "x") is None
    assert await memory.get_entity_types() == []


async def test_missing_is_none_or_false_not_an_error(memory: MemoryAPI) -> None:
    assert await memory.get_entity("user", "nobody") is None
    assert await memory.load_entity("user", "nobody") is None
    assert await memory.delete_entity("user", "nobody") is False
    assert await memory.delete_conversation("nothing") is False
    assert await memory.load_messages("nothing") == []
    assert await memory.load_entities_by_type("user") == {}


async def test_conflicts_carry_the_same_details(memory: MemoryAPI) -> None:
    await memory.save_entity("user", "ada", {"v": 1})
    with pytest.raises(ConflictError) as created:
        await memory.save_entity("user", "ada", {"v": 2}, expected_version=0)
    assert created.value.details == {"expected_version": 0, "current_version": 1}
    with pytest.raises(ConflictError) as stale:
        await memory.delete_entity("user", "ada", expected_version=7)
    assert stale.value.details == {"expected_version": 7, "current_version": 1}
    with pytest.raises(ConflictError) as missing:
        await memory.save_entity("user", "nobody", {"v": 1}, expected_version=3)
    assert missing.value.details == {"expected_version": 3, "current_version": None}
    assert await memory.load_entity("user", "ada") == {"v": 1}


async def test_replacing_a_history_with_nothing_clears_it(memory: MemoryAPI) -> None:
    await memory.append_messages([{"role": "user", "content": "hi"}], "c1")
    assert await memory.save_conversation_history([], "c1") == []
    assert await memory.load_conversation_history("c1") == []
    # ... keeps what it replaced as a revision and the conversation with no messages,
    # alike on both sides; the delete erases both.
    listed = await memory.list_conversations()
    assert [c.message_count for c in listed.items if c.conversation_id == "c1"] == [0]
    assert [r.message_count for r in (await memory.list_conversation_revisions("c1")).items] == [1]
    assert await memory.delete_conversation("c1") is True
    assert (await memory.list_conversation_revisions("c1")).items == []


async def test_values_round_trip_alike(memory: MemoryAPI) -> None:
    data = {"big": 2**63 - 1, "small": 1e-300, "nested": {"list": [1, "two", None, True]}}
    record = await memory.save_entity("user", "ada", data, ttl=60)
    assert record.data == data
    assert await memory.load_entity("user", "ada") == data
    used = await memory.save_tool_usage("search", {"q": "x"}, ["r"], success=1)  # type: ignore[arg-type]
    assert used.success is True
    assert used.input == {"q": "x"}


async def test_the_change_feed_reads_alike(memory: MemoryAPI) -> None:
    await memory.save_entity("user", "ada", {"n": 1})
    await memory.append_messages([{"m": 1}], "c1")
    await memory.save_entity("note", "n1", {})
    page = await memory.read_changes()
    assert [(e.position, e.kind) for e in page.events] == [
        (1, "entity.saved"),
        (2, "conversation.appended"),
        (3, "entity.saved"),
    ]
    assert (page.first_position, page.last_position) == (1, 3)
    assert page.events[0].address is None  # neither side shows it
    notes = memory.watch(entity_type="note")
    assert (await anext(notes)).entity_id == "n1"
    pending = asyncio.ensure_future(anext(notes))  # waits for the next note
    await memory.save_entity("user", "bob", {})
    await memory.save_entity("note", "n2", {})
    later = await asyncio.wait_for(pending, 20)
    assert (later.position, later.entity_id) == (5, "n2")
    await notes.aclose()


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.save_entity("user", "big", {"x": "a" * 70_000}),
        lambda m: m.append_messages([{"x": "a" * 40_000}, {"y": "b" * 40_000}], "c1"),
        lambda m: m.save_learning_feedback("agent", "rating", "a" * 70_000),
    ],
    ids=["entity", "messages", "feedback"],
)
async def test_too_large_is_the_same_error(
    call: Call, manager: DistributedMemoryManager, remote: MemoryClient
) -> None:
    """The size limit only the server knows (64 KiB here): checked there by the manager's
    own check, so the client gets exactly what an in-process caller gets."""
    local = await outcome(call, manager)
    over_http = await outcome(call, remote)
    assert type(local) is PayloadTooLargeError
    assert local.details["limit"] == 64 * 1024
    assert (type(over_http), over_http.message, over_http.details) == (
        type(local),
        local.message,
        local.details,
    )


async def test_search_reads_alike(memory: MemoryAPI) -> None:
    await memory.save_entity("note", "n1", {"text": "Paris in May, then Paris again", "stars": 5})
    await memory.save_entity("note", "n2", {"text": "milk and eggs", "stars": 2})
    await memory.save_entity("task", "t1", {"text": "a hotel in Paris", "stars": 3})
    words = await memory.search_entities("paris", mode="keyword")
    assert [(h.entity.type, h.entity.id) for h in words.items] == [("note", "n1"), ("task", "t1")]
    assert (words.mode, words.embedder, words.next_cursor) == ("keyword", None, None)
    first = await memory.search_entities(filter={"stars": {"$gte": 3}}, limit=1)
    rest = await memory.search_entities(
        filter={"stars": {"$gte": 3}}, limit=1, cursor=first.next_cursor
    )
    assert first.mode == "filter" and rest.next_cursor is None
    assert {h.entity.id for h in first.items + rest.items} == {"n1", "t1"}
    await memory.append_messages([{"content": "pancakes"}, {"content": "waffles"}], "c1")
    messages = await memory.search_messages("waffles", mode="keyword")
    assert [(h.message.conversation_id, h.message.seq) for h in messages.items] == [("c1", 2)]
    await memory.save_tool_usage("web_search", {"q": "weather in Oslo"}, ["rain"])
    uses = await memory.search_tool_usage("oslo", tool_name="web_search", mode="keyword")
    assert [h.record.output for h in uses.items] == [["rain"]]

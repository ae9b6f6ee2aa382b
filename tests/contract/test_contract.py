"""The backend contract: every test runs against every backend in CONTRACT_BACKENDS.

The embedded backend defines the expected behaviour. Each test uses its own namespace
(``ns`` fixture) so tests on a shared server never see each other's data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.errors import ConflictError, InvalidInputError
from memstore.core.records import (
    EntityRecord,
    EntityRow,
    FeedbackRecord,
    MessageRecord,
    ToolUsageRecord,
)


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def tool(
    name: str, ts: float, *, uid: str | None = None, conv: str | None = None
) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=uid or uuid.uuid4().hex,
        tool_name=name,
        input={"q": name},
        output=[1, "two", None],
        duration_ms=12.5,
        success=True,
        timestamp=ts,
        conversation_id=conv,
    )


# -- entities ---------------------------------------------------------------------------


async def test_entity_roundtrip_and_versions(backend: DistributedMemoryBackend, ns: str) -> None:
    assert await backend.load_entity(ns, "user", "u1") is None
    data = {"name": "Ada", "nested": {"list": [1, 2.5, None, True, "x"]}, "$weird.key": {"a.b": 1}}
    first = await backend.save_entity(ns, "user", "u1", data)
    assert first.version == 1
    assert first.data == data
    loaded = await backend.load_entity(ns, "user", "u1")
    assert loaded is not None
    assert loaded.data == data
    assert loaded.version == 1
    assert loaded.type == "user"
    assert loaded.id == "u1"
    assert loaded.expires_at is None
    second = await backend.save_entity(ns, "user", "u1", {"name": "Ada L."})
    assert second.version == 2
    assert second.created_at == pytest.approx(first.created_at, abs=1e-3)
    assert second.updated_at >= first.updated_at
    reloaded = await backend.load_entity(ns, "user", "u1")
    assert reloaded is not None
    assert reloaded.data == {"name": "Ada L."}
    assert reloaded.version == 2


async def test_unicode_and_empty_payloads_roundtrip(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    data = {"": "", "emoji": "🧠 ✓", "zero": 0, "neg": -1.5e-300, "big": 2**62, "empty": {}}
    await backend.save_entity(ns, "doc", "d", data)
    loaded = await backend.load_entity(ns, "doc", "d")
    assert loaded is not None
    assert loaded.data == data


async def test_namespaces_and_types_are_isolated(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    other = ns + "x"
    await backend.save_entity(ns, "user", "same", {"v": 1})
    await backend.save_entity(other, "user", "same", {"v": 2})
    await backend.save_entity(ns, "team", "same", {"v": 3})
    a = await backend.load_entity(ns, "user", "same")
    b = await backend.load_entity(other, "user", "same")
    c = await backend.load_entity(ns, "team", "same")
    assert a is not None and b is not None and c is not None
    assert (a.data, b.data, c.data) == ({"v": 1}, {"v": 2}, {"v": 3})
    assert await backend.delete_entity(other, "user", "same")
    assert await backend.load_entity(ns, "user", "same") is not None


async def test_expected_version_rules(backend: DistributedMemoryBackend, ns: str) -> None:
    created = await backend.save_entity(ns, "t", "e", {"v": 1}, expected_version=0)
    assert created.version == 1
    with pytest.raises(ConflictError) as info:
        await backend.save_entity(ns, "t", "e", {"v": "nope"}, expected_version=0)
    assert info.value.current_version == 1
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "t", "e", {"v": "nope"}, expected_version=7)
    updated = await backend.save_entity(ns, "t", "e", {"v": 2}, expected_version=1)
    assert updated.version == 2
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "t", "missing", {"v": 1}, expected_version=1)
    assert await backend.load_entity(ns, "t", "missing") is None
    current = await backend.load_entity(ns, "t", "e")
    assert current is not None
    assert current.data == {"v": 2}  # nothing written by the rejected saves


async def test_delete_and_conditional_delete(backend: DistributedMemoryBackend, ns: str) -> None:
    assert not await backend.delete_entity(ns, "t", "x")
    await backend.save_entity(ns, "t", "x", {})
    with pytest.raises(ConflictError):
        await backend.delete_entity(ns, "t", "x", expected_version=2)
    assert await backend.load_entity(ns, "t", "x") is not None
    assert await backend.delete_entity(ns, "t", "x", expected_version=1)
    assert await backend.load_entity(ns, "t", "x") is None
    assert not await backend.delete_entity(ns, "t", "x")
    with pytest.raises(ConflictError):
        await backend.delete_entity(ns, "t", "x", expected_version=1)
    # After a delete the id is free again; its versions go on from the deleted one's
    # (version history: a tombstone holds the number, so no old version can match).
    again = await backend.save_entity(ns, "t", "x", {"again": True})
    assert again.version == 2


async def test_list_pagination_is_ordered_and_complete(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    ids = [f"item-{i:03d}" for i in range(23)]
    for i in reversed(ids):
        await backend.save_entity(ns, "note", i, {"i": i})
    await backend.save_entity(ns, "other", "zzz", {})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await backend.list_entities(ns, "note", limit=5, cursor=cursor)
        assert len(page.items) <= 5
        seen += [e.id for e in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids
    assert pages == 5
    exact = await backend.list_entities(ns, "note", limit=23)
    assert len(exact.items) == 23
    assert exact.next_cursor is None
    assert [e.data for e in exact.items] == [{"i": i} for i in ids]
    empty = await backend.list_entities(ns, "nothing", limit=10)
    assert empty.items == []
    assert empty.next_cursor is None
    assert await backend.get_entity_types(ns) == ["note", "other"]


ENTITY_SHAPES: list[dict[str, Any]] = [
    {"text": 'héllo ✓ 😀 \u0000 "quoted" \\ back', "n": [1, -2.5, 1e-7, 2**64 - 1, -(2**63)]},
    {"o": {"$x": {}, "a.b": [[], [{}]]}, "t": True, "f": None},
    {},
]


async def test_entity_rows_are_the_entities_with_their_json_as_stored(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for i, data in enumerate(ENTITY_SHAPES * 3):
        await backend.save_entity(ns, "row", f"r{i}", data, ttl=3600 if i % 2 else None)
    await backend.save_entity(ns, "row", "r1", {"replaced": 1})  # version 2, no expiry
    await backend.set_entity_pinned(ns, "row", "r2", True)
    await backend.save_entity(ns, "row", "r0-gone", {"x": 1}, ttl=0.05)  # between r0, r1
    await asyncio.sleep(0.2)
    records: list[EntityRecord] = []
    rows: list[EntityRow] = []
    cursor: str | None = None
    while True:
        page = await backend.list_entities(ns, "row", limit=4, cursor=cursor)
        row_page = await backend.list_entity_rows(ns, "row", limit=4, cursor=cursor)
        assert row_page.next_cursor == page.next_cursor
        records += page.items
        rows += row_page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [r.id for r in records] == [f"r{i}" for i in range(9)]
    assert [r.pinned for r in records].count(True) == 1
    assert [r.record() for r in rows] == records
    # the answer built from the rows is the JSON the records would give, byte for byte
    # (what every backend stores is orjson's own output of the data)
    assert orjson.dumps([row.to_dict() for row in rows]) == orjson.dumps(
        [r.to_dict() for r in records]
    )
    empty = await backend.list_entity_rows(ns, "nothing", limit=10)
    assert empty.items == [] and empty.next_cursor is None


async def test_pagination_survives_deletes_between_pages(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for i in range(10):
        await backend.save_entity(ns, "n", f"k{i}", {})
    page = await backend.list_entities(ns, "n", limit=4)
    assert [e.id for e in page.items] == ["k0", "k1", "k2", "k3"]
    await backend.delete_entity(ns, "n", "k3")  # the cursor's own item
    await backend.delete_entity(ns, "n", "k5")
    rest = await backend.list_entities(ns, "n", limit=10, cursor=page.next_cursor)
    assert [e.id for e in rest.items] == ["k4", "k6", "k7", "k8", "k9"]


async def test_bad_cursor_is_invalid_input(backend: DistributedMemoryBackend, ns: str) -> None:
    for bad in ("not-a-cursor", "WyJhIiwgMV0", "e30", "!!!"):
        with pytest.raises(InvalidInputError):
            await backend.list_entities(ns, "t", limit=5, cursor=bad)
        with pytest.raises(InvalidInputError):
            await backend.query_tool_usage(ns, limit=5, cursor=bad)


async def test_an_issued_cursor_altered_by_one_character_is_invalid_input(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    # The base64 decoder skips characters outside its alphabet; a cursor must be read
    # exactly as issued, so an altered one is refused, not read as the original.
    for i in range(3):
        await backend.save_entity(ns, "c", f"k{i}", {})
    page = await backend.list_entities(ns, "c", limit=1)
    assert page.next_cursor
    cursor = page.next_cursor
    for bad in (cursor + "!", "*" + cursor, cursor[:2] + " " + cursor[2:], cursor + "="):
        with pytest.raises(InvalidInputError):
            await backend.list_entities(ns, "c", limit=1, cursor=bad)


async def test_64_bit_integers_are_stored_exactly(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    # The widest integers JSON payloads may hold (bounds.JSON_INTEGER); the HTTP API and
    # the manager refuse wider ones.
    data = {"max": 2**64 - 1, "min": -(2**63), "list": [2**63, -(2**63) + 1]}
    await backend.save_entity(ns, "n", "edges", data)
    loaded = await backend.load_entity(ns, "n", "edges")
    assert loaded is not None
    assert orjson.dumps(loaded.data) == orjson.dumps(data)


async def test_ttl_expiry_hides_entity_everywhere(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    short = await backend.save_entity(ns, "session", "s1", {"x": 1}, ttl=1.0)
    assert short.expires_at is not None
    assert short.expires_at == pytest.approx(time.time() + 1.0, abs=0.5)
    await backend.save_entity(ns, "session", "s2", {"x": 2}, ttl=3600)
    await backend.save_entity(ns, "session", "s3", {"x": 3})
    assert (await backend.summary(ns)).entity_counts == {"session": 3}
    await asyncio.sleep(1.6)
    assert await backend.load_entity(ns, "session", "s1") is None
    page = await backend.list_entities(ns, "session", limit=10)
    assert [e.id for e in page.items] == ["s2", "s3"]
    assert (await backend.summary(ns)).entity_counts == {"session": 2}
    # A save over an expired entity is a create, numbered on from the expired version.
    recreated = await backend.save_entity(ns, "session", "s1", {"x": 4}, expected_version=0)
    assert recreated.version == 2


async def test_ttl_cleared_by_save_without_ttl(backend: DistributedMemoryBackend, ns: str) -> None:
    await backend.save_entity(ns, "t", "e", {"x": 1}, ttl=0.3)
    kept = await backend.save_entity(ns, "t", "e", {"x": 2})
    # version 2: the save replaced the entity while it was alive (not a create after it
    # expired, which would leave nothing for this test to check)
    assert kept.version == 2
    assert kept.expires_at is None
    await asyncio.sleep(0.5)  # past the first save's TTL
    loaded = await backend.load_entity(ns, "t", "e")
    assert loaded is not None
    assert loaded.data == {"x": 2}


async def test_expired_only_type_disappears_from_types(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "ephemeral", "e", {}, ttl=0.2)
    await backend.save_entity(ns, "durable", "d", {})
    await asyncio.sleep(0.4)
    assert await backend.get_entity_types(ns) == ["durable"]


async def test_concurrent_conditional_writers_one_wins(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "counter", "c", {"n": 0})

    async def attempt(i: int) -> bool:
        try:
            await backend.save_entity(ns, "counter", "c", {"n": i}, expected_version=1)
        except ConflictError:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(12)))
    assert sum(results) == 1
    final = await backend.load_entity(ns, "counter", "c")
    assert final is not None
    assert final.version == 2


async def test_concurrent_creates_are_all_counted(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await asyncio.gather(*(backend.save_entity(ns, "bulk", f"b{i}", {"i": i}) for i in range(40)))
    await asyncio.gather(*(backend.delete_entity(ns, "bulk", f"b{i}") for i in range(0, 40, 4)))
    summary = await backend.summary(ns)
    assert summary.entity_counts == {"bulk": 30}
    page = await backend.list_entities(ns, "bulk", limit=100)
    assert len(page.items) == 30


# -- conversations ----------------------------------------------------------------------


async def test_conversation_append_and_load(backend: DistributedMemoryBackend, ns: str) -> None:
    assert await backend.load_messages(ns, "c1") == []
    first = await backend.append_messages(ns, "c1", [{"role": "user", "content": "hi"}])
    assert [m.seq for m in first] == [1]
    more = await backend.append_messages(
        ns, "c1", [{"role": "assistant", "content": f"m{i}"} for i in range(2, 11)]
    )
    assert [m.seq for m in more] == list(range(2, 11))
    everything = await backend.load_messages(ns, "c1")
    assert [m.seq for m in everything] == list(range(1, 11))
    assert everything[0].message == {"role": "user", "content": "hi"}
    assert all(m.conversation_id == "c1" for m in everything)
    last3 = await backend.load_messages(ns, "c1", limit=3)
    assert [m.seq for m in last3] == [8, 9, 10]
    page = await backend.load_messages(ns, "c1", limit=3, before_seq=8)
    assert [m.seq for m in page] == [5, 6, 7]
    head = await backend.load_messages(ns, "c1", limit=5, before_seq=3)
    assert [m.seq for m in head] == [1, 2]
    assert await backend.load_messages(ns, "c1", limit=5, before_seq=1) == []
    assert [m.seq for m in await backend.load_messages(ns, "c1", before_seq=3)] == [1, 2]


MESSAGE_SHAPES: list[dict[str, Any]] = [
    {"role": "user", "content": 'héllo ✓ 😀 \u0000 "quoted" \\ back'},
    {"role": "assistant", "content": None, "n": [1, -2.5, 1e-7, 2**53 + 1, True], "o": {"$x": {}}},
    {"role": "tool", "content": "", "a.b": [[], [{}]]},
]


@pytest.mark.parametrize(
    ("limit", "before_seq"), [(None, None), (2, None), (2, 3), (None, 3), (5, 1)]
)
async def test_message_rows_are_the_messages_with_their_json_as_stored(
    backend: DistributedMemoryBackend, ns: str, limit: int | None, before_seq: int | None
) -> None:
    await backend.append_messages(ns, "rows", MESSAGE_SHAPES)
    records = await backend.load_messages(ns, "rows", limit=limit, before_seq=before_seq)
    rows = await backend.load_message_rows(ns, "rows", limit=limit, before_seq=before_seq)
    assert [
        MessageRecord("rows", r.seq, orjson.loads(r.message_json), r.created_at) for r in rows
    ] == records
    # the answer built from the rows is the JSON the records would give
    assert orjson.loads(orjson.dumps([row.to_dict("rows") for row in rows])) == [
        r.to_dict() for r in records
    ]
    assert await backend.load_message_rows(ns, "none") == []


async def test_concurrent_appends_keep_every_message(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await asyncio.gather(
        *(backend.append_messages(ns, "busy", [{"i": i}, {"i": i, "part": 2}]) for i in range(20))
    )
    msgs = await backend.load_messages(ns, "busy")
    assert [m.seq for m in msgs] == list(range(1, 41))
    # Each call's two messages are adjacent: appends are atomic.
    for a, b in zip(msgs[::2], msgs[1::2], strict=True):
        assert a.message["i"] == b.message["i"]
        assert b.message["part"] == 2
    summary = await backend.summary(ns)
    assert summary.conversations == 1
    assert summary.messages == 40


async def test_replace_and_delete_conversation(backend: DistributedMemoryBackend, ns: str) -> None:
    await backend.append_messages(ns, "c", [{"n": i} for i in range(5)])
    replaced = await backend.replace_conversation(ns, "c", [{"n": "a"}, {"n": "b"}])
    assert [m.seq for m in replaced] == [1, 2]
    assert [m.message for m in await backend.load_messages(ns, "c")] == [{"n": "a"}, {"n": "b"}]
    appended = await backend.append_messages(ns, "c", [{"n": "c"}])
    assert appended[0].seq == 3
    await backend.replace_conversation(ns, "empty", [])
    convs = await backend.list_conversations(ns, limit=10)
    assert [(c.conversation_id, c.message_count) for c in convs.items] == [("c", 3), ("empty", 0)]
    assert await backend.delete_conversation(ns, "c")
    assert not await backend.delete_conversation(ns, "c")
    assert await backend.load_messages(ns, "c") == []
    summary = await backend.summary(ns)
    assert (summary.conversations, summary.messages) == (1, 0)


async def test_pop_message_takes_the_last_one_in_order(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "c", [{"n": i} for i in range(1, 4)])
    popped = await backend.pop_message(ns, "c")
    assert popped is not None
    assert (popped.conversation_id, popped.seq, popped.message) == ("c", 3, {"n": 3})
    assert [m.message for m in await backend.load_messages(ns, "c")] == [{"n": 1}, {"n": 2}]
    second = await backend.pop_message(ns, "c")
    assert second is not None
    assert (second.seq, second.message) == (2, {"n": 2})
    # Another conversation and another namespace are untouched.
    await backend.append_messages(ns, "other", [{"keep": True}])
    await backend.append_messages(ns + "x", "c", [{"keep": True}])
    assert (await backend.summary(ns)).messages == 2
    assert [m.message for m in await backend.load_messages(ns + "x", "c")] == [{"keep": True}]


async def test_pop_message_on_an_empty_or_missing_conversation(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    assert await backend.pop_message(ns, "never") is None
    await backend.replace_conversation(ns, "empty", [])
    assert await backend.pop_message(ns, "empty") is None
    await backend.append_messages(ns, "one", [{"only": 1}])
    popped = await backend.pop_message(ns, "one")
    assert popped is not None and popped.message == {"only": 1}
    assert await backend.pop_message(ns, "one") is None
    # A conversation is its messages: popping the only one deletes it.
    convs = await backend.list_conversations(ns, limit=10)
    assert [c.conversation_id for c in convs.items] == ["empty"]
    assert await backend.delete_conversation(ns, "one") is False
    summary = await backend.summary(ns)
    assert (summary.conversations, summary.messages) == (1, 0)


async def test_seq_count_and_bytes_after_pop_then_append(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    big, small = {"text": "x" * 300}, {"t": 1}
    await backend.append_messages(ns, "c", [small, small, big])
    assert await stored(backend, ns) == 2 * size(small) + size(big)
    await backend.pop_message(ns, "c")
    assert await stored(backend, ns) == 2 * size(small)
    # seq stays 1..n: the next append takes the popped seq again.
    appended = await backend.append_messages(ns, "c", [{"n": "new"}, {"n": "newer"}])
    assert [m.seq for m in appended] == [3, 4]
    msgs = await backend.load_messages(ns, "c")
    assert [m.seq for m in msgs] == [1, 2, 3, 4]
    assert [m.message for m in msgs][2:] == [{"n": "new"}, {"n": "newer"}]
    assert [m.seq for m in await backend.load_messages(ns, "c", limit=2, before_seq=4)] == [2, 3]
    convs = await backend.list_conversations(ns, limit=10)
    assert [(c.conversation_id, c.message_count) for c in convs.items] == [("c", 4)]
    assert (await backend.summary(ns)).messages == 4
    while await backend.pop_message(ns, "c") is not None:
        pass
    assert await stored(backend, ns) == 0
    assert (await backend.summary(ns)).conversations == 0
    restarted = await backend.append_messages(ns, "c", [small])
    assert restarted[0].seq == 1


async def test_concurrent_pops_return_each_message_once(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "c", [{"i": i} for i in range(10)])
    popped = await asyncio.gather(*(backend.pop_message(ns, "c") for _ in range(20)))
    got = [p for p in popped if p is not None]
    assert sorted(p.message["i"] for p in got) == list(range(10))
    assert sorted(p.seq for p in got) == list(range(1, 11))
    assert popped.count(None) == 10
    assert await backend.load_messages(ns, "c") == []
    summary = await backend.summary(ns)
    assert (summary.conversations, summary.messages) == (0, 0)
    assert await stored(backend, ns) == 0


async def test_list_conversations_pages(backend: DistributedMemoryBackend, ns: str) -> None:
    for i in range(7):
        await backend.append_messages(ns, f"conv{i}", [{"i": i}] * (i + 1))
    seen = []
    cursor = None
    while True:
        page = await backend.list_conversations(ns, limit=3, cursor=cursor)
        seen += [(c.conversation_id, c.message_count) for c in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [(f"conv{i}", i + 1) for i in range(7)]


# -- tool usage -------------------------------------------------------------------------


async def test_tool_usage_record_and_query(backend: DistributedMemoryBackend, ns: str) -> None:
    base = 1_700_000_000.0
    records = [tool("search" if i % 2 else "calc", base + i, conv="c1") for i in range(10)]
    for r in reversed(records):
        assert await backend.record_tool_usage(ns, r) == r
    everything = await backend.query_tool_usage(ns, limit=100)
    assert everything.items == records
    assert everything.next_cursor is None
    searches = await backend.query_tool_usage(ns, tool_name="search", limit=100)
    assert [r.timestamp for r in searches.items] == [base + i for i in range(1, 10, 2)]
    window = await backend.query_tool_usage(ns, start=base + 2, end=base + 5, limit=100)
    assert [r.timestamp for r in window.items] == [base + 2, base + 3, base + 4]
    windowed_tool = await backend.query_tool_usage(
        ns, tool_name="calc", start=base + 2, end=base + 9, limit=100
    )
    assert [r.timestamp for r in windowed_tool.items] == [base + 2, base + 4, base + 6, base + 8]
    assert await backend.get_tool_names(ns) == ["calc", "search"]
    summary = await backend.summary(ns)
    assert summary.tool_usage_counts == {"calc": 5, "search": 5}


async def test_tool_usage_pages_with_equal_timestamps(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    ts = 1_700_000_100.0
    records = sorted((tool("t", ts, uid=f"id{i:02d}") for i in range(7)), key=lambda r: r.id)
    for r in records:
        await backend.record_tool_usage(ns, r)
    got = []
    cursor = None
    while True:
        page = await backend.query_tool_usage(ns, tool_name="t", limit=2, cursor=cursor)
        got += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert got == records


async def test_tool_usage_same_id_is_stored_once(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    r = tool("once", 1_700_000_200.0, uid="fixed-id")
    await backend.record_tool_usage(ns, r)
    await backend.record_tool_usage(ns, r)
    page = await backend.query_tool_usage(ns, limit=10)
    assert page.items == [r]
    assert (await backend.summary(ns)).tool_usage_counts == {"once": 1}


# -- feedback ---------------------------------------------------------------------------


async def test_feedback(backend: DistributedMemoryBackend, ns: str) -> None:
    base = 1_700_000_300.0
    recs = [
        FeedbackRecord(uuid.uuid4().hex, agent, kind, {"score": i}, base + i)
        for i, (agent, kind) in enumerate(
            [("a1", "rating"), ("a2", "rating"), ("a1", "correction"), ("a1", "rating")]
        )
    ]
    for r in recs:
        await backend.save_feedback(ns, r)
    everything = await backend.query_feedback(ns, limit=10)
    assert everything.items == recs
    a1 = await backend.query_feedback(ns, agent_name="a1", limit=10)
    assert a1.items == [recs[0], recs[2], recs[3]]
    a1_rating = await backend.query_feedback(ns, agent_name="a1", feedback_type="rating", limit=1)
    assert a1_rating.items == [recs[0]]
    assert a1_rating.next_cursor is not None
    rest = await backend.query_feedback(
        ns, agent_name="a1", feedback_type="rating", limit=1, cursor=a1_rating.next_cursor
    )
    assert rest.items == [recs[3]]
    ratings = await backend.query_feedback(ns, feedback_type="rating", limit=10)
    assert ratings.items == [recs[0], recs[1], recs[3]]
    assert (await backend.summary(ns)).feedback_count == 4


# -- summary and health -----------------------------------------------------------------


async def test_summary_of_empty_namespace(backend: DistributedMemoryBackend, ns: str) -> None:
    summary = await backend.summary(ns)
    assert summary.namespace == ns
    assert summary.entity_counts == {}
    assert (summary.conversations, summary.messages, summary.feedback_count) == (0, 0, 0)
    assert summary.tool_usage_counts == {}


async def test_summary_counts_everything(backend: DistributedMemoryBackend, ns: str) -> None:
    for i in range(3):
        await backend.save_entity(ns, "user", f"u{i}", {})
    await backend.save_entity(ns, "doc", "d", {})
    await backend.append_messages(ns, "c1", [{"m": 1}, {"m": 2}])
    await backend.append_messages(ns, "c2", [{"m": 3}])
    await backend.record_tool_usage(ns, tool("x", 1.0))
    summary = await backend.summary(ns)
    assert summary.entity_counts == {"doc": 1, "user": 3}
    assert summary.total_entities == 4
    assert (summary.conversations, summary.messages) == (2, 3)
    assert summary.tool_usage_counts == {"x": 1}


# -- usage hooks: stored_bytes (bytes quota) and list_namespaces (admin summary) ---------
#
# Bytes are those of the compact JSON (orjson) of each payload: an entity's data, each
# message, a tool use's input plus output, a feedback's data. Envelopes, ids and indexes
# do not count.


def size(value: object) -> int:
    return len(orjson.dumps(value))


async def stored(backend: DistributedMemoryBackend, ns: str) -> int:
    used = await backend.stored_bytes(ns)
    assert used is not None, f"{backend.name} must implement stored_bytes"
    return used


async def test_stored_bytes_counts_every_kind_of_payload(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    assert await stored(backend, ns) == 0
    entity = {"name": "Ada", "emoji": "🧠", "n": [1, 2.5, None]}
    await backend.save_entity(ns, "user", "u1", entity)
    expected = size(entity)
    assert await stored(backend, ns) == expected
    messages: list[dict[str, object]] = [{"role": "user", "content": "hi"}, {"c": "x" * 300}]
    await backend.append_messages(ns, "c1", messages)
    expected += sum(size(m) for m in messages)
    assert await stored(backend, ns) == expected
    use = tool("search", 1.0)
    await backend.record_tool_usage(ns, use)
    await backend.record_tool_usage(ns, use)  # a retried record is stored, and counted, once
    expected += size(use.input) + size(use.output)
    assert await stored(backend, ns) == expected
    fb = FeedbackRecord(uuid.uuid4().hex, "agent", "rating", {"score": 5, "why": "ok"}, 2.0)
    await backend.save_feedback(ns, fb)
    await backend.save_feedback(ns, fb)
    expected += size(fb.data)
    assert await stored(backend, ns) == expected
    # Other namespaces neither see nor change these bytes.
    await backend.save_entity(ns + "x", "user", "u1", {"other": "y" * 100})
    assert await stored(backend, ns) == expected
    assert await stored(backend, ns + "x") == size({"other": "y" * 100})


async def test_stored_bytes_follows_replaces_and_deletes(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    big, small = {"text": "x" * 500}, {"t": 1}
    await backend.save_entity(ns, "doc", "d", big)
    await backend.save_entity(ns, "doc", "d", small)
    await backend.save_entity(ns, "doc", "e", big, ttl=3600)
    assert await stored(backend, ns) == size(small) + size(big)
    await backend.save_entity(ns, "doc", "e", small)  # TTL cleared, payload replaced
    assert await stored(backend, ns) == 2 * size(small)
    assert await backend.delete_entity(ns, "doc", "d") is True
    assert await backend.delete_entity(ns, "doc", "d") is False
    assert await stored(backend, ns) == size(small)
    with pytest.raises(ConflictError):
        await backend.delete_entity(ns, "doc", "e", expected_version=7)
    assert await stored(backend, ns) == size(small)
    await backend.delete_entity(ns, "doc", "e")
    assert await stored(backend, ns) == 0
    await backend.append_messages(ns, "c", [big, big])
    await backend.replace_conversation(ns, "c", [small])
    assert await stored(backend, ns) == size(small)
    await backend.append_messages(ns, "c", [big])
    assert await stored(backend, ns) == size(small) + size(big)
    await backend.replace_conversation(ns, "c", [])
    assert await stored(backend, ns) == 0
    await backend.append_messages(ns, "c", [big])
    assert await backend.delete_conversation(ns, "c") is True
    assert await stored(backend, ns) == 0


async def test_stored_bytes_after_a_save_over_an_expired_entity(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "session", "s", {"text": "x" * 200}, ttl=0.2)
    await asyncio.sleep(0.4)
    await backend.save_entity(ns, "session", "s", {"v": 2})
    assert await stored(backend, ns) == size({"v": 2})
    await backend.save_entity(ns, "session", "t", {"text": "y" * 50}, ttl=0.2)
    await asyncio.sleep(0.4)
    await backend.delete_entity(ns, "session", "t")
    assert await stored(backend, ns) == size({"v": 2})


async def test_stored_bytes_exact_after_concurrent_writes_and_deletes(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    def payload(i: int) -> dict[str, str]:
        return {"text": "z" * (10 + i)}

    await asyncio.gather(*(backend.save_entity(ns, "doc", f"d{i}", payload(i)) for i in range(30)))
    await asyncio.gather(
        *(backend.delete_entity(ns, "doc", f"d{i}") for i in range(0, 30, 3)),
        *(backend.save_entity(ns, "doc", f"d{i}", {"r": i}) for i in range(1, 30, 3)),
        *(backend.append_messages(ns, f"c{i % 4}", [payload(i)]) for i in range(20)),
    )
    expected = sum(size({"r": i}) for i in range(1, 30, 3))
    expected += sum(size(payload(i)) for i in range(2, 30, 3))
    expected += sum(size(payload(i)) for i in range(20))
    assert await stored(backend, ns) == expected


async def test_list_namespaces_names_namespaces_holding_data(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    never = ns + "-never"
    await backend.save_entity(ns + "-e", "doc", "d", {"a": 1})
    await backend.append_messages(ns + "-c", "c", [{"m": 1}])
    await backend.record_tool_usage(ns + "-t", tool("x", 1.0))
    await backend.save_feedback(ns + "-f", FeedbackRecord("f1", "a", "rating", {}, 1.0))
    await backend.replace_conversation(ns + "-empty", "c", [])  # an empty conversation is data
    listed = await backend.list_namespaces()
    assert listed is not None, f"{backend.name} must implement list_namespaces"
    assert listed == sorted(set(listed))
    mine = [n for n in listed if n.startswith(ns)]
    assert mine == sorted(ns + s for s in ("-c", "-e", "-empty", "-f", "-t"))
    assert never not in listed
    # A namespace whose data is all gone is not listed any more; one whose entity was
    # deleted still holds its version history (the tombstone keeps the numbering).
    await backend.delete_entity(ns + "-e", "doc", "d")
    await backend.delete_conversation(ns + "-empty", "c")
    listed = await backend.list_namespaces()
    assert listed is not None
    assert [n for n in listed if n.startswith(ns)] == sorted(
        ns + s for s in ("-c", "-e", "-f", "-t")
    )


async def test_ping(backend: DistributedMemoryBackend) -> None:
    assert await backend.ping() is True

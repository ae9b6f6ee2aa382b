"""Version history travels in the dump (format 3): after export -> import into an empty
store of another backend, every history listing and as-of read answers what the source
answers, and numbering goes on from the imported history. Dumps of earlier formats (no
history) still import, with no history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from memstore.core import dump
from memstore.core.errors import DumpInvalidError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.export.test_import_rules import chunks_of, dump_of

FIXTURES = Path(__file__).parent / "fixtures"
PAIRS = [("embedded", "redis"), ("redis", "mongodb"), ("mongodb", "embedded")]


async def _tick() -> None:
    # saved_at is wall-clock time: a pause keeps the instants of two writes apart
    await asyncio.sleep(0.002)


async def make_history(view: DistributedMemoryManager) -> None:
    await view.save_entity("doc", "a", {"v": 1})
    await _tick()
    await view.save_entity("doc", "a", {"v": 2})
    await _tick()
    await view.delete_entity("doc", "a")
    await _tick()
    await view.save_entity("doc", "a", {"v": 3})  # re-created: numbering goes on
    await view.save_entity("doc", "gone", {"g": 1})
    await _tick()
    await view.delete_entity("doc", "gone")  # only history and a tombstone stay
    for n in range(5):  # more versions than one listing page below
        await view.save_entity("note", "many", {"n": n})
    await view.append_messages([{"t": 1}, {"t": 2}], conversation_id="chat")
    await _tick()
    await view.save_conversation_history([{"t": 3}], "chat")
    await _tick()
    await view.save_conversation_history([{"t": 4}, {"t": 5}], "chat")


async def history_of(view: DistributedMemoryManager) -> dict[str, Any]:
    """Everything the history API answers about the namespace, read in small pages."""
    out: dict[str, Any] = {}
    keys: list[tuple[str, str]] = []
    cursor: str | None = None
    while True:
        page = await view.list_versioned_entities(limit=2, cursor=cursor)
        keys += [(k.type, k.id) for k in page.items]
        if (cursor := page.next_cursor) is None:
            break
    out["keys"] = keys
    instants: set[float] = set()
    for t, i in keys:
        rows = []
        cursor = None
        while True:
            versions = await view.list_entity_versions(t, i, limit=2, cursor=cursor)
            rows += versions.items
            if (cursor := versions.next_cursor) is None:
                break
        out[f"versions {t}/{i}"] = rows
        for row in rows:
            instants |= {row.saved_at, row.saved_at - 0.0005, row.saved_at + 0.0005}
            if not row.deleted:
                out[f"{t}/{i}@v{row.version}"] = await view.get_entity_version(t, i, row.version)
    for t, i in keys:
        for at in sorted(instants):
            out[f"{t}/{i}@{at!r}"] = await view.get_entity_as_of(t, i, at=at)
            out[f"{t}/{i}@{at!r} as stored"] = await view.backend.load_entity_version(
                view.namespace, t, i, at=at
            )
    out["revisions"] = (await view.list_conversation_revisions("chat")).items
    for r in out["revisions"]:
        out[f"revision {r.revision}"] = await view.get_conversation_revision(r.revision, "chat")
    return out


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=lambda b: b)
async def test_history_round_trip(
    source: str,
    target: str,
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    a = managers(store_settings(source, "a")).for_namespace("hist")
    b = managers(store_settings(target, "b")).for_namespace("hist")
    await make_history(a)
    lines = await dump_of(a)
    counts = orjson.loads(lines[-1])["counts"]
    # doc/a: 1, 2, tombstone 2; doc/gone: 1, tombstone 1; note/many: 0..3
    assert (counts["entity_version"], counts["revision"], counts["revision_message"]) == (9, 2, 3)
    await b.import_namespace(chunks_of(lines))
    expected = await history_of(a)
    assert [(v.version, v.deleted) for v in expected["versions doc/a"]] == [
        (3, False),
        (2, True),
        (2, False),
        (1, False),
    ]
    assert [r.revision for r in expected["revisions"]] == [2, 1]
    assert await history_of(b) == expected
    # importing the same dump again (interrupted, or under --replace) changes nothing
    await b.import_namespace(chunks_of(lines), replace=True)
    assert await history_of(b) == expected
    # the imported history holds the numbering on both sides alike
    for view in (a, b):
        assert (await view.save_entity("doc", "gone", {"g": 2})).version == 2
        assert (await view.save_entity("doc", "a", {"v": 4})).version == 4
        await view.save_conversation_history([{"t": 6}], "chat")
        (newest, *_) = (await view.list_conversation_revisions("chat")).items
        assert newest.revision == 3


async def test_an_old_format_1_dump_imports_with_no_history(
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    raw = (FIXTURES / "v1-dump.jsonl").read_bytes()
    lines = raw.splitlines(keepends=True)
    assert orjson.loads(lines[0])["format_version"] == 1
    view = managers(store_settings("embedded", "b")).for_namespace("restored")
    result = await view.import_namespace(chunks_of(lines))
    assert result.counts == orjson.loads(lines[-1])["counts"]
    assert set(result.counts) == {"entity", "conversation", "message", "tool_usage", "feedback"}
    alice = await view.get_entity("user", "alice")
    assert alice is not None and (alice.version, alice.data) == (3, {"name": "Alice", "n": 3})
    (only,) = (await view.list_entity_versions("user", "alice")).items
    assert (only.version, only.data, only.deleted) == (3, {"name": "Alice", "n": 3}, False)
    assert (await view.list_conversation_revisions("chat")).items == []
    # it exports as format 3, with an empty history section
    again = await dump_of(view)
    assert orjson.loads(again[0])["format_version"] == dump.FORMAT_VERSION == 3
    trailer = orjson.loads(again[-1])["counts"]
    assert (trailer["entity_version"], trailer["revision"], trailer["revision_message"]) == (
        0,
        0,
        0,
    )
    assert (await view.save_entity("user", "alice", {"name": "A."})).version == 4
    # a format 2 dump knows no history kinds: a history line in one is refused
    tampered = [lines[0].replace(b'"format_version":1', b'"format_version":2'), *lines[1:]]
    tampered.insert(3, dump.line({"kind": dump.REVISION, "conversation_id": "c"}))
    with pytest.raises(DumpInvalidError) as caught:
        await (
            managers(store_settings("embedded", "c"))
            .for_namespace("x")
            .import_namespace(chunks_of(tampered))
        )
    assert "unknown record kind 'revision'" in caught.value.message


async def test_a_history_line_out_of_place_is_refused(
    store_settings: Callable[[str, str], Settings],
    managers: Callable[[Settings], DistributedMemoryManager],
) -> None:
    a = managers(store_settings("embedded", "a")).for_namespace("hist")
    await make_history(a)
    lines = await dump_of(a)
    kinds = [orjson.loads(x)["kind"] for x in lines]
    first_revision = kinds.index(dump.REVISION)
    history_row = lines[kinds.index(dump.ENTITY_VERSION)]
    moved = [x for x in lines if x != history_row]
    moved.insert(moved.index(lines[first_revision]), history_row)
    cases = [
        # a revision's message without its revision line
        ([*lines[:first_revision], *lines[first_revision + 1 :]], "outside its revision"),
        # a history row after the conversations
        (moved, "a entity_version record after the conversation records"),
    ]
    for bad, problem in cases:
        with pytest.raises(DumpInvalidError) as caught:
            await (
                managers(store_settings("embedded", "b"))
                .for_namespace("x")
                .import_namespace(chunks_of(bad))
            )
        assert problem in caught.value.message, caught.value.message

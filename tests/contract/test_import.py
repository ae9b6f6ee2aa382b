"""The restore methods an import writes with (``import_entity``, ``import_conversation``):
exact records, no version check, counts, bytes and the change log kept consistent."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.core import changes
from memstore.core.errors import InvalidInputError
from memstore.core.records import EntityRecord, MessageRecord


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


def _bytes(*values: object) -> int:
    return sum(len(orjson.dumps(v)) for v in values)


async def _last_event(backend: DistributedMemoryBackend, ns: str) -> tuple[int, str, int | None]:
    page = await backend.read_changes(ns, after=0, limit=10_000)
    event = page.events[-1]
    return page.last_position, event.kind, event.version


async def test_import_entity_writes_exactly_the_record(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    now = time.time()
    data = {"name": "Ada ✓ 日本", "n": 2**53 + 1, "$k.x": [1.5, None, True]}
    record = EntityRecord("user", "u1", data, 7, now - 1000.25, now - 10.5, now + 3600.125)
    await backend.import_entity(ns, record)
    assert await backend.load_entity(ns, "user", "u1") == record
    page = await backend.list_entities(ns, "user", limit=10)
    assert page.items == [record]
    position, kind, version = await _last_event(backend, ns)
    assert (position, kind, version) == (1, changes.ENTITY_SAVED, 7)
    # the next save continues from the imported version and keeps its creation time
    saved = await backend.save_entity(ns, "user", "u1", {"name": "B"})
    assert saved.version == 8
    assert saved.created_at == pytest.approx(record.created_at, abs=1e-3)
    assert (await backend.summary(ns)).entity_counts == {"user": 1}
    assert await backend.stored_bytes(ns) == _bytes({"name": "B"})


async def test_import_entity_replaces_without_a_version_check(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for i in range(3):
        await backend.save_entity(ns, "doc", "d", {"v": i, "pad": "x" * 100}, ttl=600)
    now = time.time()
    older = EntityRecord("doc", "d", {"v": "imported"}, 1, now - 50.0, now - 5.0, None)
    await backend.import_entity(ns, older)
    assert await backend.load_entity(ns, "doc", "d") == older
    assert (await backend.summary(ns)).entity_counts == {"doc": 1}
    assert await backend.stored_bytes(ns) == _bytes({"v": "imported"})
    position, kind, version = await _last_event(backend, ns)
    assert (position, kind, version) == (4, changes.ENTITY_SAVED, 1)
    # importing the same record again leaves the same state
    await backend.import_entity(ns, older)
    assert await backend.load_entity(ns, "doc", "d") == older
    assert await backend.stored_bytes(ns) == _bytes({"v": "imported"})


async def test_import_conversation_writes_exactly_these_messages(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "c", [{"old": i} for i in range(5)])
    t0 = time.time() - 500
    messages = [
        MessageRecord("c", 1, {"role": "user", "content": "héllo 👋"}, t0),
        MessageRecord("c", 2, {"role": "assistant", "content": "x" * 5000}, t0 + 1.5),
        MessageRecord("c", 3, {}, t0 + 2.25),
    ]
    await backend.import_conversation(ns, "c", messages)
    assert await backend.load_messages(ns, "c") == messages
    (info,) = (await backend.list_conversations(ns, limit=10)).items
    assert info.message_count == 3
    assert info.created_at == pytest.approx(t0, abs=1e-3)
    assert info.updated_at == pytest.approx(t0 + 2.25, abs=1e-3)
    summary = await backend.summary(ns)
    assert (summary.conversations, summary.messages) == (1, 3)
    assert await backend.stored_bytes(ns) == _bytes(*(m.message for m in messages))
    position, kind, version = await _last_event(backend, ns)
    assert (position, kind, version) == (2, changes.CONVERSATION_REPLACED, 3)
    # appends and pops continue from the imported history
    (appended,) = await backend.append_messages(ns, "c", [{"next": True}])
    assert appended.seq == 4
    popped = await backend.pop_message(ns, "c")
    assert popped is not None and popped.seq == 4
    assert await backend.load_messages(ns, "c") == messages


async def test_import_empty_conversation_keeps_it(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.import_conversation(ns, "empty", [])
    (info,) = (await backend.list_conversations(ns, limit=10)).items
    assert (info.conversation_id, info.message_count) == ("empty", 0)
    assert await backend.load_messages(ns, "empty") == []


async def test_import_conversation_keeps_seqs_that_start_later_or_skip(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    """A conversation trimmed by retention (keep-last-N) starts after seq 1; its export
    must import as it is, and appends, pops, paged reads and trims continue from it."""
    t0 = time.time() - 100
    messages = [MessageRecord("c", s, {"s": s}, t0 + s) for s in (4, 5, 7, 8, 9)]
    await backend.import_conversation(ns, "c", messages)
    assert await backend.load_messages(ns, "c") == messages
    assert await backend.load_messages(ns, "c", limit=2) == messages[3:]
    assert await backend.load_messages(ns, "c", before_seq=8) == messages[:3]
    assert await backend.load_messages(ns, "c", before_seq=7, limit=1) == messages[1:2]
    assert await backend.load_messages(ns, "c", before_seq=9, limit=2) == messages[2:4]
    assert await backend.load_messages(ns, "c", before_seq=4) == []
    assert await backend.load_messages(ns, "c", before_seq=100, limit=1) == messages[4:]
    (info,) = (await backend.list_conversations(ns, limit=10)).items
    assert info.message_count == 5
    position, kind, version = await _last_event(backend, ns)
    assert (position, kind, version) == (1, changes.CONVERSATION_REPLACED, 9)
    (appended,) = await backend.append_messages(ns, "c", [{"next": True}])
    assert appended.seq == 10
    popped = await backend.pop_message(ns, "c")
    assert popped is not None and popped.seq == 10
    assert await backend.load_messages(ns, "c") == messages


async def test_import_conversation_refuses_seqs_that_do_not_increase(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "c", [{"keep": 1}, {"keep": 2}])
    before = await backend.load_messages(ns, "c")
    now = time.time()
    for bad in ([3, 3], [2, 1], [0, 1]):
        messages = [MessageRecord("c", s, {"a": s}, now) for s in bad]
        with pytest.raises(InvalidInputError) as caught:
            await backend.import_conversation(ns, "c", messages)
        assert caught.value.details == {"field": "seq"}
    assert await backend.load_messages(ns, "c") == before
    assert (await backend.read_changes(ns, after=0, limit=10)).last_position == 1


async def test_an_import_writes_the_records_pin(backend: DistributedMemoryBackend, ns: str) -> None:
    now = time.time()
    pinned = EntityRecord("note", "p", {"keep": 1}, 3, now - 9.0, now - 1.0, None, pinned=True)
    await backend.import_entity(ns, pinned)
    assert await backend.load_entity(ns, "note", "p") == pinned
    # a save keeps it, as it keeps any pin
    assert (await backend.save_entity(ns, "note", "p", {"keep": 2})).pinned
    # an unpinned record imported over it unpins it: the record is written as given
    plain = EntityRecord("note", "p", {"keep": 3}, 3, now - 9.0, now - 1.0, None)
    await backend.import_entity(ns, plain)
    assert await backend.load_entity(ns, "note", "p") == plain

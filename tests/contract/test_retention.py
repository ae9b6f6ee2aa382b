"""Retention on every backend: pins, read touches, dry runs and enforcement.

Data is written at the real time; the tests age it by asking about a later instant
(``prune`` takes ``now``), never by sleeping. A dry run and an enforcement at the same
instant must name the same items, pinned entities survive, keep-last-N leaves exactly N.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.core import changes
from memstore.core.records import ChangeEvent, FeedbackRecord, MessageRecord, ToolUsageRecord
from memstore.core.retention import PruneReport, RetentionPolicy

HOUR = 3600.0


@pytest.fixture
def ns() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


async def _tick() -> float:
    """A instant strictly between what was written before and what is written after."""
    await asyncio.sleep(0.01)
    mark = time.time()
    await asyncio.sleep(0.01)
    return mark


def _entity_keys(report: PruneReport) -> list[tuple[str, str, str]]:
    return [(e.type, e.id, e.reason) for e in report.entities]


async def _last_events(backend: DistributedMemoryBackend, ns: str, n: int) -> list[ChangeEvent]:
    page = await backend.read_changes(ns, after=0, limit=10_000)
    return page.events[-n:]


async def test_pin_flag_is_kept_across_saves_and_returned_on_reads(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "note", "a", {"x": 1})
    assert (await backend.load_entity(ns, "note", "a")).pinned is False  # type: ignore[union-attr]
    pinned = await backend.set_entity_pinned(ns, "note", "a", True)
    assert pinned is not None and pinned.pinned and pinned.version == 1
    assert pinned.data == {"x": 1}
    saved = await backend.save_entity(ns, "note", "a", {"x": 2})
    assert saved.pinned and saved.version == 2
    loaded = await backend.load_entity(ns, "note", "a")
    assert loaded is not None and loaded.pinned and loaded.data == {"x": 2}
    page = await backend.list_entities(ns, "note", limit=10)
    assert [e.pinned for e in page.items] == [True]
    unpinned = await backend.set_entity_pinned(ns, "note", "a", False)
    assert unpinned is not None and not unpinned.pinned and unpinned.version == 2
    assert await backend.set_entity_pinned(ns, "note", "missing", True) is None
    # a pin never outlives its entity: a re-created one starts unpinned
    await backend.set_entity_pinned(ns, "note", "a", True)
    await backend.delete_entity(ns, "note", "a")
    recreated = await backend.save_entity(ns, "note", "a", {"x": 3})
    assert not recreated.pinned


async def test_entities_dry_run_lists_what_enforcement_removes(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for t, i in (("a", "1"), ("a", "2"), ("a", "3"), ("b", "9")):
        await backend.save_entity(ns, t, i, {"v": i})
    await backend.set_entity_pinned(ns, "b", "9", True)
    old = await _tick()
    await backend.save_entity(ns, "a", "4", {"v": "4"})
    await backend.save_entity(ns, "a", "3", {"v": "3b"})  # saved again: young
    now = old + HOUR
    policy = RetentionPolicy(entity_max_age_seconds=HOUR)

    dry = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=1)
    assert _entity_keys(dry) == [("a", "1", "max_age")]
    assert dry.more["entities"] and not dry.complete
    full = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=100)
    assert _entity_keys(full) == [("a", "1", "max_age"), ("a", "2", "max_age")]
    assert [e.version for e in full.entities] == [1, 1]
    assert full.complete

    done = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=1)
    assert done.entities == dry.entities and not done.dry_run
    assert await backend.load_entity(ns, "a", "1") is None
    events = await _last_events(backend, ns, 1)
    assert [(e.kind, e.entity_type, e.entity_id, e.version) for e in events] == [
        (changes.ENTITY_PRUNED, "a", "1", 1)
    ]
    rest = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=100)
    assert _entity_keys(rest) == [("a", "2", "max_age")]
    left = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=100)
    assert left.entities == [] and left.complete
    ids = [e.id for e in (await backend.list_entities(ns, "a", limit=10)).items]
    assert ids == ["3", "4"]
    pinned = await backend.load_entity(ns, "b", "9")
    assert pinned is not None and pinned.pinned  # pinned: survives
    # unpinned, it goes at the next prune
    await backend.set_entity_pinned(ns, "b", "9", False)
    last = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=100)
    assert _entity_keys(last) == [("b", "9", "max_age")]
    assert (await backend.summary(ns)).entity_counts == {"a": 2}


async def test_idle_entities_count_from_their_last_recorded_read(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for i in ("1", "2", "3"):
        await backend.save_entity(ns, "n", i, {"v": i})
    written = await _tick()
    await backend.touch_entities(ns, [("n", "2"), ("n", "missing")], written + 30 * 60)
    await backend.touch_entities(ns, [("n", "2")], written + 10)  # never moves back
    policy = RetentionPolicy(entity_idle_seconds=HOUR)
    now = written + HOUR + 60
    dry = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=100)
    assert _entity_keys(dry) == [("n", "1", "idle"), ("n", "3", "idle")]
    done = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=100)
    assert done.entities == dry.entities
    assert [e.id for e in (await backend.list_entities(ns, "n", limit=10)).items] == ["2"]
    assert await backend.load_entity(ns, "n", "missing") is None
    later = written + 30 * 60 + HOUR + 1
    gone = await backend.prune(ns, policy.cutoffs(later), later, dry_run=False, limit=100)
    assert _entity_keys(gone) == [("n", "2", "idle")]


async def test_keep_last_messages_leaves_exactly_n(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "long", [{"i": i} for i in range(1, 11)])
    await backend.append_messages(ns, "short", [{"i": i} for i in range(1, 4)])
    now = time.time() + 1
    policy = RetentionPolicy(conversation_max_messages=4)
    dry = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=100)
    assert [(c.id, c.reason, c.through_seq, c.messages) for c in dry.conversations] == [
        ("long", "max_messages", 6, 6)
    ]
    done = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=100)
    assert done.conversations == dry.conversations
    kept = await backend.load_messages(ns, "long")
    assert [(m.seq, m.message["i"]) for m in kept] == [(i, i) for i in range(7, 11)]
    assert len(await backend.load_messages(ns, "short")) == 3
    summary = await backend.summary(ns)
    assert (summary.conversations, summary.messages) == (2, 7)
    info = {
        c.conversation_id: c.message_count
        for c in (await backend.list_conversations(ns, limit=10)).items
    }
    assert info == {"long": 4, "short": 3}
    events = await _last_events(backend, ns, 1)
    assert [(e.kind, e.conversation_id, e.version, e.count) for e in events] == [
        (changes.CONVERSATION_TRIMMED, "long", 6, 6)
    ]
    # seq keep running after a trim: append, page back, pop
    appended = await backend.append_messages(ns, "long", [{"i": 11}])
    assert [m.seq for m in appended] == [11]
    before = await backend.load_messages(ns, "long", limit=2, before_seq=9)
    assert [m.seq for m in before] == [7, 8]
    assert [m.seq for m in await backend.load_messages(ns, "long", limit=3)] == [9, 10, 11]
    popped = await backend.pop_message(ns, "long")
    assert popped is not None and popped.seq == 11
    again = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=100)
    assert again.conversations == []


async def test_keep_last_messages_of_an_imported_conversation_with_gaps(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    """An imported conversation's seqs may skip: the last removed seq is read, not
    computed from the newest seq and the count."""
    t0 = time.time() - 100
    messages = [MessageRecord("c", s, {"s": s}, t0 + s) for s in (4, 5, 7, 8, 9)]
    await backend.import_conversation(ns, "c", messages)
    now = time.time()
    policy = RetentionPolicy(conversation_max_messages=2)
    report = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=10)
    assert [(c.through_seq, c.messages) for c in report.conversations] == [(7, 3)]
    assert await backend.load_messages(ns, "c") == messages[3:]
    (event,) = await _last_events(backend, ns, 1)
    assert (event.kind, event.version, event.count) == (changes.CONVERSATION_TRIMMED, 7, 3)


async def test_idle_conversations_are_removed_whole(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "old", [{"i": 1}, {"i": 2}])
    mark = await _tick()
    await backend.append_messages(ns, "new", [{"i": 1}])
    policy = RetentionPolicy(conversation_idle_seconds=HOUR, conversation_max_messages=1)
    now = mark + HOUR
    dry = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=100)
    assert [(c.id, c.reason, c.through_seq, c.messages) for c in dry.conversations] == [
        ("old", "idle", 2, 2)
    ]
    done = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=100)
    assert done.conversations == dry.conversations
    assert await backend.load_messages(ns, "old") == []
    assert [c.conversation_id for c in (await backend.list_conversations(ns, limit=10)).items] == [
        "new"
    ]
    assert (await backend.summary(ns)).messages == 1
    events = await _last_events(backend, ns, 1)
    assert [e.kind for e in events] == [changes.CONVERSATION_PRUNED]


async def test_tool_usage_and_feedback_by_age(backend: DistributedMemoryBackend, ns: str) -> None:
    base = time.time() - 10 * HOUR
    for n in range(6):
        await backend.record_tool_usage(
            ns,
            ToolUsageRecord(
                id=f"t{5 - n}",  # ids against time order: the order is (timestamp, id)
                tool_name="search" if n % 2 else "fetch",
                input={"q": n},
                output={"ok": True},
                duration_ms=1.0,
                success=True,
                timestamp=base + n * HOUR,
            ),
        )
        await backend.save_feedback(
            ns,
            FeedbackRecord(
                id=f"f{n}",
                agent_name="a",
                feedback_type="rating",
                data={"r": n},
                timestamp=base + n * HOUR,
            ),
        )
    now = base + 3.5 * HOUR
    policy = RetentionPolicy(tool_usage_max_age_seconds=HOUR, feedback_max_age_seconds=2 * HOUR)
    dry = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=2)
    assert [r.id for r in dry.tool_usage] == ["t5", "t4"] and dry.more["tool_usage"]
    assert [r.id for r in dry.feedback] == ["f0", "f1"] and not dry.more["feedback"]
    before = (await backend.read_changes(ns, after=0, limit=1)).last_position
    done = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=2)
    assert (done.tool_usage, done.feedback) == (dry.tool_usage, dry.feedback)
    rest = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=2)
    assert [r.id for r in rest.tool_usage] == ["t3"] and rest.complete
    uses = await backend.query_tool_usage(ns, limit=100)
    assert [u.id for u in uses.items] == ["t2", "t1", "t0"]
    feedback = await backend.query_feedback(ns, limit=100)
    assert [f.id for f in feedback.items] == ["f2", "f3", "f4", "f5"]
    summary = await backend.summary(ns)
    assert (summary.total_tool_uses, summary.feedback_count) == (3, 4)
    assert summary.tool_usage_counts == {"fetch": 1, "search": 2}
    # one event per batch (per index shard on Redis) with the count
    removed: dict[str, int] = {}
    for e in (await backend.read_changes(ns, after=before, limit=100)).events:
        removed[e.kind] = removed.get(e.kind, 0) + (e.count or 0)
    assert removed == {changes.TOOL_USAGE_PRUNED: 3, changes.FEEDBACK_PRUNED: 2}


async def test_empty_policy_selects_nothing(backend: DistributedMemoryBackend, ns: str) -> None:
    await backend.save_entity(ns, "a", "1", {})
    now = time.time() + 10 * 365 * 86400
    report = await backend.prune(ns, RetentionPolicy().cutoffs(now), now, dry_run=False, limit=10)
    assert report.items == 0 and report.complete
    assert await backend.load_entity(ns, "a", "1") is not None

"""The change log contract: every write appends one event, in order, on every backend.

The embedded backend defines the expected behaviour. Each test uses its own namespace, so
positions start at 1 in every test (the log is per namespace).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.core import changes
from memstore.core.changes import Actor, acting_as
from memstore.core.errors import ConflictError
from memstore.core.records import ChangeEvent, FeedbackRecord, ToolUsageRecord
from memstore.core.settings import Settings


@pytest.fixture
def ns() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


async def everything(backend: DistributedMemoryBackend, ns: str) -> list[ChangeEvent]:
    """The whole retained log, read in small pages (so paging is exercised too)."""
    events: list[ChangeEvent] = []
    after = 0
    while True:
        page = await backend.read_changes(ns, after=after, limit=7)
        if not page.events:
            return events
        events += page.events
        after = page.events[-1].position


def use(name: str, uid: str, conv: str | None = None) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=uid,
        tool_name=name,
        input={"q": 1},
        output="ok",
        duration_ms=3.0,
        success=True,
        timestamp=time.time(),
        conversation_id=conv,
    )


async def test_a_namespace_that_never_changed_has_an_empty_log(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    page = await backend.read_changes(ns, after=0, limit=10)
    assert page.events == []
    assert page.last_position == 0
    assert page.first_position == 1


async def test_every_kind_of_write_appends_one_event_in_order(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    before = time.time()
    await backend.save_entity(ns, "user", "u1", {"name": "Ada"})
    await backend.save_entity(ns, "user", "u1", {"name": "Ada L."})
    await backend.delete_entity(ns, "user", "u1")
    await backend.append_messages(ns, "c1", [{"role": "user", "content": "hi"}] * 3)
    await backend.pop_message(ns, "c1")
    await backend.replace_conversation(ns, "c1", [{"role": "user", "content": "new"}])
    await backend.delete_conversation(ns, "c1")
    await backend.record_tool_usage(ns, use("search", "t1", conv="c1"))
    await backend.save_feedback(
        ns,
        FeedbackRecord(
            id="f1", agent_name="a", feedback_type="rating", data={"r": 5}, timestamp=time.time()
        ),
    )
    events = await everything(backend, ns)
    assert [e.position for e in events] == list(range(1, 10))
    assert [e.kind for e in events] == [
        changes.ENTITY_SAVED,
        changes.ENTITY_SAVED,
        changes.ENTITY_DELETED,
        changes.CONVERSATION_APPENDED,
        changes.CONVERSATION_POPPED,
        changes.CONVERSATION_REPLACED,
        changes.CONVERSATION_DELETED,
        changes.TOOL_USAGE_RECORDED,
        changes.FEEDBACK_SAVED,
    ]
    saved, resaved, deleted, appended, popped, replaced, dropped, used, feedback = events
    assert (saved.entity_type, saved.entity_id, saved.version) == ("user", "u1", 1)
    assert resaved.version == 2
    assert (deleted.entity_type, deleted.entity_id, deleted.version) == ("user", "u1", 2)
    assert (appended.conversation_id, appended.version, appended.count) == ("c1", 3, 3)
    assert (popped.conversation_id, popped.version) == ("c1", 3)
    assert (replaced.conversation_id, replaced.version, replaced.count) == ("c1", 1, 1)
    assert dropped.conversation_id == "c1"
    assert (used.record_id, used.tool_name, used.conversation_id) == ("t1", "search", "c1")
    assert feedback.record_id == "f1"
    for event in events:
        assert before - 1 <= event.timestamp <= time.time() + 1
        assert event.actor is None and event.address is None
    page = await backend.read_changes(ns, after=0, limit=100)
    assert (page.first_position, page.last_position) == (1, 9)


async def test_writes_that_change_nothing_append_nothing(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "user", "u1", {"n": 1})
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "user", "u1", {"n": 2}, expected_version=0)
    with pytest.raises(ConflictError):
        await backend.delete_entity(ns, "user", "u1", expected_version=7)
    assert await backend.delete_entity(ns, "user", "missing") is False
    assert await backend.pop_message(ns, "nobody") is None
    assert await backend.delete_conversation(ns, "nobody") is False
    await backend.record_tool_usage(ns, use("search", "same"))
    await backend.record_tool_usage(ns, use("search", "same"))  # a retry: stored once
    events = await everything(backend, ns)
    assert [e.kind for e in events] == [changes.ENTITY_SAVED, changes.TOOL_USAGE_RECORDED]


async def test_the_actor_is_recorded_and_namespaces_have_their_own_logs(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    other = f"{ns}x"
    with acting_as(Actor(name="agent-a", address="10.0.0.7")):
        await backend.save_entity(ns, "note", "n1", {"t": "x"})
    with acting_as(Actor(name="agent-b", address=None)):
        await backend.append_messages(other, "c", [{"content": "y"}])
    mine, theirs = await everything(backend, ns), await everything(backend, other)
    assert [(e.position, e.actor, e.address) for e in mine] == [(1, "agent-a", "10.0.0.7")]
    assert [(e.position, e.actor, e.address) for e in theirs] == [(1, "agent-b", None)]


async def test_paging_after_a_position(backend: DistributedMemoryBackend, ns: str) -> None:
    for i in range(12):
        await backend.save_entity(ns, "item", f"i{i:02d}", {"i": i})
    page = await backend.read_changes(ns, after=4, limit=5)
    assert [e.position for e in page.events] == [5, 6, 7, 8, 9]
    assert [e.entity_id for e in page.events] == ["i04", "i05", "i06", "i07", "i08"]
    assert page.last_position == 12
    tail = await backend.read_changes(ns, after=12, limit=5)
    assert tail.events == [] and tail.last_position == 12


async def test_concurrent_writers_get_distinct_positions_in_each_keys_order(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    async def writer(w: int) -> None:
        for i in range(10):
            await backend.save_entity(ns, "shared", f"k{i % 3}", {"w": w, "i": i})
            await backend.append_messages(ns, f"conv{w % 2}", [{"w": w, "i": i}])

    await asyncio.gather(*(writer(w) for w in range(8)))
    events = await everything(backend, ns)
    assert [e.position for e in events] == list(range(1, 161))
    # Per key, the versions (entities) and highest seqs (conversations) the log shows
    # run 1, 2, 3, ... in position order: a reader replaying the log ends at the state.
    seen: dict[tuple[str | None, str | None], list[int | None]] = {}
    for event in events:
        key = (event.entity_id, event.conversation_id)
        seen.setdefault(key, []).append(event.version)
    for key, versions in seen.items():
        assert versions == list(range(1, len(versions) + 1)), key
    assert len(seen) == 5


@pytest.fixture
async def small_log_backend(
    backend_settings: Settings,
) -> AsyncIterator[DistributedMemoryBackend]:
    # 3 s: the 12 saves and the trim by count must end before any event is old enough to
    # go by age, also on a loaded machine's FerretDB
    settings = backend_settings.model_copy(
        update={"changes_max_events": 5, "changes_retention_seconds": 3.0}
    )
    instance = DistributedMemoryFactory.create_memory_backend(settings)
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()


async def test_trim_keeps_the_newest_events_and_the_position_counter(
    small_log_backend: DistributedMemoryBackend, ns: str
) -> None:
    backend = small_log_backend
    for i in range(12):
        await backend.save_entity(ns, "item", f"i{i}", {"i": i})
    await backend.trim_changes(ns)
    page = await backend.read_changes(ns, after=0, limit=100)
    assert [e.position for e in page.events] == [8, 9, 10, 11, 12]
    assert (page.first_position, page.last_position) == (8, 12)
    await asyncio.sleep(3.2)  # older than changes_retention_seconds
    await backend.trim_changes(ns)
    page = await backend.read_changes(ns, after=0, limit=100)
    assert page.events == []
    assert (page.first_position, page.last_position) == (13, 12)
    await backend.save_entity(ns, "item", "again", {})
    page = await backend.read_changes(ns, after=12, limit=100)
    assert [e.position for e in page.events] == [13]

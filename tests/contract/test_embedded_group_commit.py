"""Group commit on the embedded backend: concurrent writes share one transaction, and a write
that fails its own check, or fails in SQLite halfway through, fails alone: the others
commit, change-log positions stay contiguous in commit order, and nothing of the failed
write is stored or logged.

Of writes started together, the first runs alone (no one was writing when it came) and
the others wait for it, then commit as one group."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memstore.backends.embedded import EmbeddedMemoryBackend, _Write
from memstore.core import changes
from memstore.core.errors import BackendUnavailableError, ConflictError
from memstore.core.records import EntityVersion, EntityWrite, ToolUsageRecord
from memstore.core.settings import Settings


class GroupRecordingBackend(EmbeddedMemoryBackend):
    """Records the size of each group transaction (a write running alone is not one), to
    show that the writes were grouped."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.groups: list[int] = []

    async def _commit_group(self, group: list[_Write]) -> list[Any]:
        outcomes = await super()._commit_group(group)
        self.groups.append(len(group))
        return outcomes


@pytest.fixture
async def embedded(embedded_settings: Settings) -> AsyncIterator[GroupRecordingBackend]:
    backend = GroupRecordingBackend(embedded_settings)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


def tool(i: int) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=f"t{i}",
        tool_name="search",
        input={"q": i},
        output={"hits": i},
        duration_ms=1.0,
        success=True,
        timestamp=1.0 + i,
        conversation_id=None,
    )


async def events(backend: EmbeddedMemoryBackend, ns: str) -> list[tuple[int, str, str | None]]:
    page = await backend.read_changes(ns, after=0, limit=1000)
    return [
        (e.position, e.kind, e.entity_id or e.conversation_id or e.record_id) for e in page.events
    ]


@pytest.mark.parametrize("conflict_at", [0, 1, 4, 9])
async def test_a_conflicting_write_fails_alone_in_its_group(
    embedded: GroupRecordingBackend, conflict_at: int
) -> None:
    """Ten concurrent writes of three kinds; one entity save expects a version that is not
    stored. Alone, first in the group (no savepoint before it), in the middle, or last."""
    await embedded.save_entity("ns", "note", "held", {"v": 1})
    embedded.groups.clear()

    def call(i: int) -> Any:
        if i == conflict_at:
            return embedded.save_entity("ns", "note", "held", {"v": "lost"}, expected_version=7)
        if i % 3 == 0:
            return embedded.save_entity("ns", "note", f"e{i}", {"i": i})
        if i % 3 == 1:
            return embedded.append_messages("ns", "chat", [{"role": "user", "content": str(i)}])
        return embedded.record_tool_usage("ns", tool(i))

    results = await asyncio.gather(*(call(i) for i in range(10)), return_exceptions=True)

    assert embedded.groups == [9]  # the first alone, then one transaction for nine
    assert isinstance(results[conflict_at], ConflictError)
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != conflict_at)
    held = await embedded.load_entity("ns", "note", "held")
    assert held is not None and (held.version, held.data) == (1, {"v": 1})
    logged = await events(embedded, "ns")
    assert [p for p, _, _ in logged] == list(range(1, 11))  # contiguous: 1 + nine writes
    expected = [(changes.ENTITY_SAVED, "held")]
    for i in range(10):
        if i == conflict_at:
            continue
        if i % 3 == 0:
            expected.append((changes.ENTITY_SAVED, f"e{i}"))
        elif i % 3 == 1:
            expected.append((changes.CONVERSATION_APPENDED, "chat"))
        else:
            expected.append((changes.TOOL_USAGE_RECORDED, f"t{i}"))
    assert [(kind, key) for _, kind, key in logged] == expected  # in the order they ran
    messages = await embedded.load_messages("ns", "chat")
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))


async def test_a_write_failing_in_sqlite_halfway_is_rolled_back_alone(
    embedded: GroupRecordingBackend, embedded_settings: Settings
) -> None:
    """The save of ``boom`` fails after its entity row was written (its event's insert is
    refused by a trigger): its savepoint undoes the row, the group commits the rest."""
    side = sqlite3.connect(embedded_settings.data_path)
    side.execute(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON change_log WHEN NEW.entity_id = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    side.commit()
    side.close()

    ids = ["a", "b", "boom", "c"]
    results = await asyncio.gather(
        *(embedded.save_entity("ns", "note", i, {"id": i}) for i in ids), return_exceptions=True
    )

    assert embedded.groups == [3]  # boom is the second of its group: under a savepoint
    assert isinstance(results[2], BackendUnavailableError)
    assert "refused" in str(results[2])
    assert await embedded.load_entity("ns", "note", "boom") is None
    assert [(p, k) for p, _, k in await events(embedded, "ns")] == [(1, "a"), (2, "b"), (3, "c")]
    for i in ("a", "b", "c"):
        assert await embedded.load_entity("ns", "note", i) is not None


async def test_the_first_write_failing_does_not_take_the_group_with_it(
    embedded: GroupRecordingBackend, embedded_settings: Settings
) -> None:
    """The first write of a transaction runs without a savepoint: when it fails halfway,
    the whole (so far empty) transaction is rolled back and the next writes start anew."""
    side = sqlite3.connect(embedded_settings.data_path)
    side.execute(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON change_log WHEN NEW.entity_id = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    side.commit()
    side.close()

    ids = ["x", "boom", "a", "b"]
    results = await asyncio.gather(
        *(embedded.save_entity("ns", "note", i, {"id": i}) for i in ids), return_exceptions=True
    )

    assert embedded.groups == [3]  # boom is the first of its group
    assert isinstance(results[1], BackendUnavailableError)
    assert await embedded.load_entity("ns", "note", "boom") is None
    assert [(p, k) for p, _, k in await events(embedded, "ns")] == [(1, "x"), (2, "a"), (3, "b")]


async def test_a_failed_commit_acknowledges_nobody(
    embedded: GroupRecordingBackend, embedded_settings: Settings
) -> None:
    """When the shared COMMIT fails (here: a deferred foreign key the group violates), every
    write of the group gets the error and none of them is stored."""
    side = sqlite3.connect(embedded_settings.data_path)
    side.executescript(
        "CREATE TABLE guard (ns TEXT PRIMARY KEY);"
        "CREATE TABLE guarded (ns TEXT REFERENCES guard (ns) DEFERRABLE INITIALLY DEFERRED);"
        "CREATE TRIGGER guard_log AFTER INSERT ON change_log WHEN NEW.entity_id = 'boom' "
        "BEGIN INSERT INTO guarded VALUES (NEW.ns); END;"
    )
    side.close()
    assert embedded._writer is not None
    await embedded._writer.call(lambda conn: conn.execute("PRAGMA foreign_keys=ON"))

    ids = ["alone", "a", "boom", "b"]
    results = await asyncio.gather(
        *(embedded.save_entity("ns", "note", i, {"id": i}) for i in ids), return_exceptions=True
    )

    assert embedded.groups == [3]
    assert not isinstance(results[0], BaseException)
    assert all(isinstance(r, BackendUnavailableError) for r in results[1:]), results
    assert [(p, k) for p, _, k in await events(embedded, "ns")] == [(1, "alone")]
    for i in ids[1:]:
        assert await embedded.load_entity("ns", "note", i) is None
    # the store goes on: the next write commits
    await embedded.save_entity("ns", "note", "a", {"id": "a"})
    assert [p for p, _, _ in await events(embedded, "ns")] == [1, 2]


async def test_a_reader_sees_a_group_whole_or_not_at_all(
    embedded: GroupRecordingBackend,
) -> None:
    """Rounds of 8 concurrent saves (one alone, then a group of 7): every read of the change
    log sees whole rounds, or a round's first save alone: never part of a group."""
    seen: set[int] = set()
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            seen.add((await embedded.read_changes("ns", after=0, limit=1000)).last_position)
            await asyncio.sleep(0)

    reader = asyncio.create_task(read())
    for round_ in range(20):
        await asyncio.gather(
            *(embedded.save_entity("ns", "note", f"{round_}-{i}", {}) for i in range(8))
        )
    stop.set()
    await reader
    assert set(embedded.groups) == {7}
    assert len(seen) > 1
    assert all(n % 8 in (0, 1) for n in seen), sorted(seen)


async def test_a_cancelled_caller_takes_only_its_own_write_away(
    embedded: GroupRecordingBackend,
) -> None:
    """A caller cancelled while its write waits for the next group: that write is left out
    (nothing of it stored or logged), the others of the group commit as if it never came."""
    saves = [
        asyncio.create_task(embedded.save_entity("ns", "note", f"e{i}", {"i": i})) for i in range(5)
    ]
    await asyncio.sleep(0)  # each has started: e0 runs alone, e1..e4 wait for the next group
    saves[2].cancel()
    results = await asyncio.gather(*saves, return_exceptions=True)

    assert isinstance(results[2], asyncio.CancelledError)
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 2)
    assert embedded.groups == [3]
    assert await embedded.load_entity("ns", "note", "e2") is None
    logged = await events(embedded, "ns")
    assert [(p, k) for p, _, k in logged] == [(1, "e0"), (2, "e1"), (3, "e3"), (4, "e4")]


#: How long a test waits for writes a close must answer: far beyond what they take, only so
#: that a regression fails the test instead of hanging the run.
_ANSWERED_WITHIN = 60.0


async def test_a_close_answers_the_writes_it_accepted(embedded_settings: Settings) -> None:
    """A graceful shutdown with writes in flight: a 500-entity batch running alone, three
    saves queued behind it for the group it starts when done. The close waits for all
    four, which commit; a write made once the close began is refused."""
    backend = GroupRecordingBackend(embedded_settings)
    await backend.connect()
    batch = [EntityWrite("note", f"b{i}", {"x": "y" * 2000}) for i in range(500)]
    first = asyncio.create_task(backend.save_entities("ns", batch))
    await asyncio.sleep(0)  # the batch runs alone in the writer thread
    queued = [
        asyncio.create_task(backend.save_entity("ns", "note", f"q{i}", {"i": i})) for i in range(3)
    ]
    await asyncio.sleep(0)  # the three wait for the next group
    closing = asyncio.create_task(backend.close())
    await asyncio.sleep(0)  # the close began
    with pytest.raises(BackendUnavailableError):
        await asyncio.wait_for(backend.save_entity("ns", "note", "late", {}), _ANSWERED_WITHIN)
    await asyncio.wait_for(closing, _ANSWERED_WITHIN)
    results = await asyncio.wait_for(
        asyncio.gather(first, *queued, return_exceptions=True), _ANSWERED_WITHIN
    )
    assert all(not isinstance(r, BaseException) for r in results), results
    assert backend.groups == [3]

    reopened = EmbeddedMemoryBackend(embedded_settings)
    await reopened.connect()
    try:
        for i in (0, 499):
            assert await reopened.load_entity("ns", "note", f"b{i}") is not None
        for i in range(3):
            assert await reopened.load_entity("ns", "note", f"q{i}") is not None
        assert await reopened.load_entity("ns", "note", "late") is None
    finally:
        await reopened.close()


@pytest.mark.parametrize("callers_too", [False, True])
async def test_a_close_returns_after_a_shutdown_cancelled_a_group_task_that_had_not_run(
    embedded_settings: Settings, callers_too: bool
) -> None:
    """A shutdown that cancels every task (``asyncio.run`` on its way out) may cancel the
    groups' task started an instant before: a task cancelled before its first step never runs
    its body, not even its ``finally``. The close still returns, and the writes queued for
    that task are committed and answered (or, their callers cancelled too, left out)."""
    backend = GroupRecordingBackend(embedded_settings)
    await backend.connect()
    first = asyncio.create_task(backend.save_entity("ns", "note", "first", {}))
    await asyncio.sleep(0)  # it runs alone in the writer thread
    queued = [
        asyncio.create_task(backend.save_entity("ns", "note", f"q{i}", {"i": i})) for i in range(3)
    ]
    # The groups' task is started by ``first`` once its write is done. One turn of the
    # loop at a time, this task sees it before its first step: the step is queued behind
    # ours.
    while backend._writes._groups is None:
        await asyncio.sleep(0)
    backend._writes._groups.cancel()
    if callers_too:
        for task in queued:
            task.cancel()
    await asyncio.wait_for(backend.close(), _ANSWERED_WITHIN)  # without the fix: for ever
    results = await asyncio.wait_for(
        asyncio.gather(first, *queued, return_exceptions=True), _ANSWERED_WITHIN
    )
    assert not isinstance(results[0], BaseException), results
    if callers_too:
        assert all(isinstance(r, asyncio.CancelledError) for r in results[1:]), results
        assert backend.groups == []
    else:
        assert all(not isinstance(r, BaseException) for r in results[1:]), results
        assert backend.groups == [3]

    reopened = EmbeddedMemoryBackend(embedded_settings)
    await reopened.connect()
    try:
        assert await reopened.load_entity("ns", "note", "first") is not None
        for i in range(3):
            stored = await reopened.load_entity("ns", "note", f"q{i}")
            assert (stored is None) == callers_too, i
    finally:
        await reopened.close()


def history(i: int, version: int) -> EntityVersion:
    return EntityVersion(type="note", id=f"h{i}", version=version, data={"i": i}, saved_at=1.0)


@pytest.mark.parametrize("grouped", [False, True])
async def test_an_import_of_versions_failing_on_a_row_stores_none_of_them(
    embedded: GroupRecordingBackend, grouped: bool
) -> None:
    """``executemany`` runs its statement once per row: a row SQLite cannot take (a version
    beyond its integers) fails the import whole, alone or in a group (where the others
    commit), not just from that row on."""
    rows = [history(0, 1), history(1, 1), history(2, 2**63)]
    if not grouped:
        with pytest.raises(OverflowError):
            await embedded.import_entity_versions("ns", rows)
    else:
        results = await asyncio.gather(
            embedded.save_entity("ns", "note", "a", {}),
            embedded.save_entity("ns", "note", "b", {}),
            embedded.import_entity_versions("ns", rows),
            embedded.save_entity("ns", "note", "c", {}),
            return_exceptions=True,
        )
        assert embedded.groups == [3]
        assert isinstance(results[2], OverflowError), results
        assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i != 2)
        assert await embedded.load_entity("ns", "note", "c") is not None
    for i in range(3):
        page = await embedded.list_entity_versions("ns", "note", f"h{i}")
        assert page.items == [], (i, page.items)

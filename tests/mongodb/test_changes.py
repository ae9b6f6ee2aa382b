"""The MongoDB change log beyond the contract: several replicas, dead writers, retention.

Each "replica" is a backend instance with its own client (and, on FerretDB, its own
in-process locks), so nothing but the server orders their writes. A dead writer is
simulated the only way one dies: it claimed a slot (the head's ``$inc``) and never
inserted anything there.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pymongo
import pytest

from memstore.backends.mongodb import MongoDBMemoryBackend, schema
from memstore.backends.mongodb.changelog import ChangeLog
from memstore.core import changes
from memstore.core.errors import ChangesPrunedError
from memstore.core.records import ChangeEvent, ToolUsageRecord
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.mongodb.test_backend import RecordedMongoDBBackend, Recorder

HOLE_TIMEOUT = 1.0


class QuickBackend(MongoDBMemoryBackend):
    """Gives up on a dead writer's slot after one second instead of five."""

    change_hole_timeout = HOLE_TIMEOUT
    change_hole_wait = 0.2


class SlowLog(ChangeLog):
    """A change log whose first event insert stalls longer than the hole timeout: the
    writer that was too slow."""

    stalled = False

    async def insert(self, namespace: str, slot: int, event: Any, session: Any = None) -> None:
        if not self.stalled and event["kind"] != "noop":
            self.stalled = True
            await asyncio.sleep(HOLE_TIMEOUT * 2.5)
        await super().insert(namespace, slot, event, session)


class SlowWriterBackend(QuickBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._changes = SlowLog(
            lambda: self._coll(schema.CHANGES),
            hole_timeout=self.change_hole_timeout,
            hole_wait=self.change_hole_wait,
        )


@pytest.fixture
def ns() -> str:
    return f"m{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def replicas(mongodb_settings: Settings) -> AsyncIterator[list[MongoDBMemoryBackend]]:
    backends: list[MongoDBMemoryBackend] = [QuickBackend(mongodb_settings) for _ in range(3)]
    for backend in backends:
        await backend.connect()
    try:
        yield backends
    finally:
        for backend in backends:
            await backend.close()


@pytest.fixture
def raw(mongodb_settings: Settings) -> Any:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongodb_settings.mongodb_uri.get_secret_value()
    )
    try:
        yield client[mongodb_settings.mongodb_db][schema.CHANGES]
    finally:
        client.close()


async def everything(backend: MongoDBMemoryBackend, ns: str, after: int = 0) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    while True:
        page = await backend.read_changes(ns, after=after, limit=9)
        if not page.events:
            return events
        events += page.events
        after = page.events[-1].position


def keyed(events: list[ChangeEvent]) -> dict[tuple[str | None, str | None], list[int | None]]:
    seen: dict[tuple[str | None, str | None], list[int | None]] = {}
    for event in events:
        seen.setdefault((event.entity_id, event.conversation_id), []).append(event.version)
    return seen


def share_update_atomicity(backends: list[MongoDBMemoryBackend]) -> None:
    """Give the replicas one table of FerretDB's stand-in locks for atomic conditional
    writes, which MongoDB gives every process and FerretDB v1 gives none
    (docs/architecture.md, "FerretDB v1 gaps"); the backend takes them per process.
    Without this, two replicas on FerretDB can both win one entity's compare-and-set,
    which no change log can put in order. Their slot claims stay their own."""
    first = backends[0]
    for backend in backends[1:]:
        backend._local_locks = first._local_locks


async def test_replicas_writing_the_same_keys_share_one_gap_free_log_in_key_order(
    replicas: list[MongoDBMemoryBackend], ns: str
) -> None:
    share_update_atomicity(replicas)
    writers = replicas[:2]

    async def writer(w: int) -> None:
        backend = writers[w % 2]
        for i in range(8):
            await backend.save_entity(ns, "shared", f"k{i % 2}", {"w": w, "i": i})
            await backend.append_messages(ns, f"conv{w % 2}", [{"w": w, "i": i}])
            if i == 5:
                await backend.record_tool_usage(
                    ns, ToolUsageRecord(f"u{w}", "t", {}, "ok", 1.0, True, time.time())
                )

    await asyncio.gather(*(writer(w) for w in range(6)))
    views = [await everything(backend, ns) for backend in replicas]
    assert views[0] == views[1] == views[2]  # every replica, the same events in order
    events = views[0]
    assert [e.position for e in events] == list(range(1, 6 * 17 + 1))
    # The entities' stored versions are the ones the log ends with, each key's versions
    # run 1, 2, 3, ... in log order, and each conversation's highest seq too.
    seen = keyed(events)
    for key, versions in seen.items():
        if key != (None, None):
            assert versions == list(range(1, len(versions) + 1)), (key, versions)
    for k in ("k0", "k1"):
        stored = await writers[0].load_entity(ns, "shared", k)
        assert stored is not None and stored.version == seen[(k, None)][-1]
    assert sorted(e.record_id or "" for e in events if e.kind == changes.TOOL_USAGE_RECORDED) == [
        f"u{w}" for w in range(6)
    ]


async def test_a_slot_handed_out_twice_is_stored_once_and_the_loser_appends_again(
    replicas: list[MongoDBMemoryBackend], ns: str, raw: Any
) -> None:
    """FerretDB's ``$inc`` is not atomic between replicas: two of them can be handed one
    slot (the counter read by both, or written back lower). Set the counter back as that
    would, then keep writing from every replica: the unique index lets one document into
    each slot and every other writer appends again, so nothing is lost or doubled. (A
    writer handed a slot lower than one its key already used can put that key's events
    out of order: only an atomic ``$inc`` rules that out, as on MongoDB.)"""

    async def writer(w: int, n: int) -> None:
        for i in range(n):
            await replicas[w % 3].save_entity(ns, "own", f"w{w}", {"i": i})

    await asyncio.gather(*(writer(w, 4) for w in range(6)))
    raw.update_one({"ns": ns, "slot": 0}, {"$inc": {"last": -5}})
    await asyncio.gather(*(writer(w, 4) for w in range(6, 12)))
    views = await asyncio.gather(*(everything(b, ns) for b in replicas))
    assert views[0] == views[1] == views[2]
    assert [e.position for e in views[0]] == list(range(1, 49))
    for key, versions in keyed(views[0]).items():
        assert sorted(v or 0 for v in versions) == [1, 2, 3, 4], (key, versions)
    assert raw.count_documents({"ns": ns, "kind": "noop"}) == 0  # no slot was lost


async def test_a_dead_writers_slot_is_filled_after_the_timeout_and_every_reader_agrees(
    replicas: list[MongoDBMemoryBackend], ns: str, raw: Any
) -> None:
    first, second, third = replicas
    await first.save_entity(ns, "e", "a", {})
    # A writer claims the next slot, then dies before inserting anything there.
    raw.find_one_and_update(
        {"ns": ns, "slot": 0}, {"$inc": {"last": 1}, "$set": {"at": time.time()}}
    )
    await second.save_entity(ns, "e", "b", {})
    await second.append_messages(ns, "c", [{}])
    # Before the timeout readers stop at the hole: what follows it has no position yet.
    started = time.monotonic()
    page = await third.read_changes(ns, after=0, limit=10)
    assert [(e.position, e.entity_id) for e in page.events] == [(1, "a")]
    assert page.last_position == 1
    waited = await third.read_changes(ns, after=1, limit=10)
    assert waited.events == [] and time.monotonic() - started >= QuickBackend.change_hole_wait
    await asyncio.sleep(HOLE_TIMEOUT + 0.1)
    views = await asyncio.gather(*(everything(b, ns) for b in replicas))
    assert views[0] == views[1] == views[2]
    assert [(e.position, e.kind) for e in views[0]] == [
        (1, changes.ENTITY_SAVED),
        (2, changes.ENTITY_SAVED),
        (3, changes.CONVERSATION_APPENDED),
    ]
    assert raw.find_one({"ns": ns, "slot": 2})["kind"] == "noop"
    await first.save_entity(ns, "e", "a", {})
    assert [e.position for e in await everything(second, ns, after=3)] == [4]


async def test_a_writer_slower_than_the_timeout_appends_its_event_again(
    mongodb_settings: Settings, replicas: list[MongoDBMemoryBackend], ns: str
) -> None:
    slow = SlowWriterBackend(mongodb_settings)
    await slow.connect()
    try:
        stalled = asyncio.create_task(slow.save_entity(ns, "e", "late", {"v": 1}))
        await asyncio.sleep(0.2)  # it has claimed slot 1 and stalls before inserting
        await replicas[0].save_entity(ns, "e", "quick", {})
        await asyncio.sleep(HOLE_TIMEOUT + 0.1)
        # A reader gives up on slot 1 (a noop), so the quick write is position 1 ...
        early = await everything(replicas[1], ns)
        assert [(e.position, e.entity_id) for e in early] == [(1, "quick")]
        await stalled
        # ... and the late writer's event lands at a new slot instead of being lost.
        events = await everything(replicas[2], ns)
        assert [(e.position, e.entity_id) for e in events] == [(1, "quick"), (2, "late")]
        assert events == await everything(replicas[0], ns)
    finally:
        await slow.close()


async def test_noops_take_no_position_and_trimming_keeps_positions_and_counts(
    mongodb_settings: Settings, ns: str, raw: Any
) -> None:
    settings = mongodb_settings.model_copy(
        update={"changes_max_events": 4, "changes_retention_seconds": 1.5}
    )
    backend = QuickBackend(settings)
    await backend.connect()
    try:
        for i in range(3):
            # Each first append to a conversation leaves a noop slot (docs: the
            # conversation write claims again after finding it missing).
            await backend.append_messages(ns, f"c{i}", [{"i": i}])
            await backend.save_entity(ns, "e", f"e{i}", {})
        stored = list(raw.find({"ns": ns, "slot": {"$gt": 0}}).sort("slot", 1))
        assert [d["kind"] == "noop" for d in stored].count(True) == 3
        assert [e.position for e in await everything(backend, ns)] == [1, 2, 3, 4, 5, 6]
        await backend.trim_changes(ns)
        page = await backend.read_changes(ns, after=0, limit=100)
        assert [e.position for e in page.events] == [3, 4, 5, 6]
        assert (page.first_position, page.last_position) == (3, 6)
        assert [(e.conversation_id, e.entity_id) for e in page.events] == [
            ("c1", None),
            (None, "e1"),
            ("c2", None),
            (None, "e2"),
        ]
        # Retention deleted the slots below the oldest kept event, noops included.
        assert min(d["slot"] for d in raw.find({"ns": ns, "slot": {"$gt": 0}})) == 5
        # Reading from inside the kept range still counts positions correctly.
        page = await backend.read_changes(ns, after=4, limit=100)
        assert [(e.position, e.entity_id) for e in page.events] == [(5, None), (6, "e2")]
        await asyncio.sleep(1.6)
        await backend.save_entity(ns, "e", "young", {})
        await backend.trim_changes(ns)
        page = await backend.read_changes(ns, after=0, limit=100)
        assert [(e.position, e.entity_id) for e in page.events] == [(7, "young")]
        assert (page.first_position, page.last_position) == (7, 7)
    finally:
        await backend.close()


async def test_the_background_round_logs_expiries_and_trims_every_namespace(
    mongodb_settings: Settings, ns: str
) -> None:
    settings = mongodb_settings.model_copy(update={"changes_max_events": 2})
    backend = QuickBackend(settings)
    await backend.connect()
    try:
        await backend.save_entity(ns, "s", "short", {}, ttl=0.2)
        await backend.save_entity(ns, "s", "short", {}, ttl=0.2)  # version 2 expires
        await backend.save_entity(ns, "s", "forever", {})
        for i in range(3):
            await backend.save_entity(f"{ns}x", "s", f"x{i}", {})
        await asyncio.sleep(0.3)
        await backend._background_round()  # what the purge task runs every minute
        assert await backend.load_entity(ns, "s", "short") is None
        page = await backend.read_changes(ns, after=0, limit=10)
        assert [(e.position, e.kind, e.entity_id, e.version) for e in page.events] == [
            (3, changes.ENTITY_SAVED, "forever", 1),
            (4, changes.ENTITY_EXPIRED, "short", 2),
        ]
        other = await backend.read_changes(f"{ns}x", after=0, limit=10)
        assert [e.entity_id for e in other.events] == ["x1", "x2"]
        # A second round finds nothing more to expire and logs nothing.
        await backend._background_round()
        assert (await backend.read_changes(ns, after=4, limit=10)).events == []
    finally:
        await backend.close()


async def test_a_failed_transaction_leaves_no_event_and_no_hole(
    mongodb_settings: Settings, ns: str
) -> None:
    """FerretDB refuses transactions: with them forced on, the write fails; its claimed
    slot is given a noop at once, so readers neither see an event nor wait for one."""
    forced = QuickBackend(mongodb_settings.model_copy(update={"mongodb_transactions": "on"}))
    plain = QuickBackend(mongodb_settings)
    await forced.connect()
    await plain.connect()
    try:
        with pytest.raises(Exception, match="append_messages failed"):
            await forced.append_messages(ns, "c", [{"m": 1}])
        await plain.save_entity(ns, "e", "a", {})
        started = time.monotonic()
        page = await plain.read_changes(ns, after=0, limit=10)
        assert [(e.position, e.entity_id) for e in page.events] == [(1, "a")]
        assert time.monotonic() - started < HOLE_TIMEOUT
    finally:
        await forced.close()
        await plain.close()


async def test_concurrent_writes_in_one_process_share_claims_and_inserts(
    mongodb_settings: Settings, ns: str, raw: Any
) -> None:
    recorder = Recorder()
    backend = RecordedMongoDBBackend(mongodb_settings, recorder)
    await backend.connect()
    try:
        recorder.commands.clear()
        await asyncio.gather(*(backend.save_entity(ns, "e", f"k{i}", {}) for i in range(12)))
        claims = [
            c for n, c in recorder.commands if n == "findAndModify" and c[n] == schema.CHANGES
        ]
        assert 1 <= len(claims) < 12
        assert sum(c["update"]["$inc"]["last"] for c in claims) == 12
        # Their events share insertMany commands the same way.
        inserts = [c for n, c in recorder.commands if n == "insert" and c[n] == schema.CHANGES]
        assert 1 <= len(inserts) < 12
        assert sum(len(c["documents"]) for c in inserts) == 12
        # A caller cancelled while its claim is in flight: the slot reserved for it is
        # filled at once, so readers do not wait for it.
        claiming = asyncio.create_task(backend._changes.claim(ns))
        await asyncio.sleep(0)
        claiming.cancel()
        await backend.save_entity(ns, "e", "after", {})
        page = await backend.read_changes(ns, after=12, limit=10)
        assert [(e.position, e.entity_id) for e in page.events] == [(13, "after")]
        assert raw.find_one({"ns": ns, "slot": 13})["kind"] == "noop"
    finally:
        await backend.close()


class TrimmedMidReadLog(ChangeLog):
    """A change log that runs ``trim_meanwhile`` (once) between finding the slot of the
    event a read starts at and reading the slots: the moment a trim of another replica
    can fall into."""

    trim_meanwhile: Callable[[], Awaitable[None]] | None = None

    async def _slot_of(self, namespace: str, position: int) -> int | None:
        slot = await super()._slot_of(namespace, position)
        trim, self.trim_meanwhile = self.trim_meanwhile, None
        if trim is not None:
            await trim()
        return slot


class TrimmedMidReadBackend(QuickBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._changes = TrimmedMidReadLog(
            lambda: self._coll(schema.CHANGES),
            hole_timeout=self.change_hole_timeout,
            hole_wait=self.change_hole_wait,
        )


async def test_a_read_racing_retention_reports_the_cut_instead_of_renumbering(
    mongodb_settings: Settings, ns: str
) -> None:
    """A trim that deletes the slots a read is about to read: the read must not number
    the next kept events from the position it asked for (a silent gap with wrong
    positions); it answers with the new ``first_position``, so the manager raises
    ChangesPrunedError."""
    reader = TrimmedMidReadBackend(mongodb_settings)
    trimmer = QuickBackend(mongodb_settings.model_copy(update={"changes_max_events": 2}))
    manager = DistributedMemoryManager(settings=mongodb_settings, backend=reader, namespace=ns)
    await trimmer.connect()
    try:
        async with manager:  # connects and closes ``reader``
            for i in range(1, 7):
                await reader.save_entity(ns, "e", f"e{i}", {})
            log = reader._changes
            assert isinstance(log, TrimmedMidReadLog)
            log.trim_meanwhile = lambda: trimmer.trim_changes(ns)
            with pytest.raises(ChangesPrunedError) as pruned:
                await manager.read_changes(after=1)
            assert pruned.value.first_position == 5
            # Reading from inside the kept range, cut again meanwhile: the page says so.
            await reader.save_entity(ns, "e", "e7", {})
            await reader.save_entity(ns, "e", "e8", {})
            log.trim_meanwhile = lambda: trimmer.trim_changes(ns)
            page = await reader.read_changes(ns, after=4, limit=10)
            assert (page.first_position, page.last_position) == (7, 8)
            assert [(e.position, e.entity_id) for e in page.events] == [(7, "e7"), (8, "e8")]
    finally:
        await trimmer.close()


class LostEventLog(ChangeLog):
    """A change log whose first event insert fails as a dropped connection does (the
    server is not reached, nothing is stored)."""

    failed = False

    async def insert(self, namespace: str, slot: int, event: Any, session: Any = None) -> None:
        if not self.failed and event["kind"] != "noop":
            self.failed = True
            raise pymongo.errors.AutoReconnect("connection reset")
        await super().insert(namespace, slot, event, session)


class LostEventBackend(QuickBackend):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._changes = LostEventLog(
            lambda: self._coll(schema.CHANGES),
            hole_timeout=self.change_hole_timeout,
            hole_wait=self.change_hole_wait,
        )


async def test_an_applied_write_whose_event_insert_fails_is_not_reported_as_failed(
    mongodb_settings: Settings, ns: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Without transactions the messages are stored before the event insert fails:
    answering 503 would make the client append them again. The write succeeds, the lost
    event is logged, and its slot is a noop at once."""
    backend = LostEventBackend(mongodb_settings)
    await backend.connect()
    try:
        with caplog.at_level("WARNING", logger="memstore.backends.mongodb.backend"):
            stored = await backend.append_messages(ns, "c", [{"m": 1}])
        assert [m.seq for m in stored] == [1]
        assert [m.message for m in await backend.load_messages(ns, "c")] == [{"m": 1}]
        assert "change event of an applied write is lost" in caplog.text
        assert [d["kind"] for d in raw.find({"ns": ns, "slot": {"$gt": 0}})] == ["noop"] * 2
        await backend.save_entity(ns, "e", "after", {})
        page = await backend.read_changes(ns, after=0, limit=10)
        assert [(e.position, e.entity_id) for e in page.events] == [(1, "after")]
    finally:
        await backend.close()


async def test_a_writer_whose_slot_was_cut_by_retention_appends_its_event_again(
    mongodb_settings: Settings, replicas: list[MongoDBMemoryBackend], ns: str, raw: Any
) -> None:
    """The writer stalls past the hole timeout; a reader fills its slot with a noop,
    seals it, and retention deletes it. The slot's unique key is free again, so the late
    insert succeeds there, below everything readers look at: it must append again."""
    slow = SlowWriterBackend(mongodb_settings)
    trimmer = QuickBackend(mongodb_settings.model_copy(update={"changes_max_events": 1}))
    await slow.connect()
    await trimmer.connect()
    try:
        stalled = asyncio.create_task(slow.save_entity(ns, "e", "late", {"v": 1}))
        await asyncio.sleep(0.2)  # it has claimed slot 1 and stalls before inserting
        await replicas[0].save_entity(ns, "e", "quick", {})
        await asyncio.sleep(HOLE_TIMEOUT + 0.1)
        await trimmer.trim_changes(ns)  # fills slot 1 with a noop, seals, deletes it
        assert raw.find_one({"ns": ns, "slot": 1}) is None
        await stalled
        events = await everything(replicas[1], ns)
        assert [(e.position, e.entity_id) for e in events] == [(1, "quick"), (2, "late")]
    finally:
        await slow.close()
        await trimmer.close()


class WrittenToEveryPass:
    """The change-log collection, as a reader's seal sees it while writers keep going:
    another replica writes one more event before each look at the head."""

    def __init__(self, coll: Any, write: Callable[[], Awaitable[Any]]) -> None:
        self._coll, self._write = coll, write
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._coll, name)

    async def find_one(self, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if query.get("slot") == 0 and self.writes < 1000:  # the head
            self.writes += 1
            await self._write()
        return await self._coll.find_one(query, *args, **kwargs)


async def test_a_read_ends_while_writers_add_an_event_per_seal_pass(
    mongodb_settings: Settings, replicas: list[MongoDBMemoryBackend], ns: str
) -> None:
    """A reader seals what was claimed when it began, not what writers add meanwhile:
    chasing those never ends while one lands per pass."""
    writer = replicas[0]
    await writer.save_entity(ns, "e", "first", {})
    reader = QuickBackend(mongodb_settings)
    await reader.connect()
    try:
        written = WrittenToEveryPass(
            reader._coll(schema.CHANGES), lambda: writer.save_entity(ns, "e", "more", {})
        )
        reader._changes = ChangeLog(
            lambda: written,  # type: ignore[arg-type,return-value]
            hole_timeout=HOLE_TIMEOUT,
            hole_wait=QuickBackend.change_hole_wait,
        )
        page = await asyncio.wait_for(reader.read_changes(ns, after=0, limit=10), 30)
        assert [e.entity_id for e in page.events][:1] == ["first"]
        assert written.writes < 10  # a few passes, not one per event written meanwhile
    finally:
        await reader.close()

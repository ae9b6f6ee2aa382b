"""The change log on MongoDB: gap-free positions in write order, without transactions.

One collection (``schema.CHANGES``) holds every namespace's log. Per namespace: a *head*
document at ``slot`` 0 and one document per *slot* ``1, 2, 3, ...``, unique on
``(ns, slot)``. The design, and why it keeps each key's order, is in
docs/architecture.md ("MongoDB backend", "Change log"); in short:

* A write *claims* a slot (one atomic ``$inc`` of the head's ``last``) after observing the
  state it changes, makes its data write conditional on that state, then inserts its
  event at the slot. A slot it cannot use (it lost a race and claimed again, it changed
  nothing, it failed) gets a ``noop`` document, inserted only if the slot is still
  empty: every claimed slot ends up holding exactly one document.
* A claimed slot that is still empty is a *hole*: a write in flight. One older than
  ``hole_timeout`` belongs to a writer that died between its claim and its insert; a
  reader fills it with a ``noop`` (insert-if-absent: the unique index decides between the
  reader and a late writer, so everyone sees the same document there; a writer that
  loses appends its event again at a new slot).
* Readers *seal* the log: they walk the slots after the head's ``sealed`` slot while
  there is no hole, give each event the next *position* (``pos``: noops get none, so
  positions are 1, 2, 3, ... with no gap), then move ``sealed``/``sealed_pos`` on with a
  compare-and-set on the head. Every slot below ``sealed`` is final, so sealers racing each
  other compute the same positions; the loser's compare-and-set just fails.
* Readers then read events by position. Retention raises the head's ``first`` (a
  position) and ``cut`` (the slot of that position) before it deletes the slots below
  ``cut``, and only ever deletes sealed slots. A writer whose insert lands below ``cut``
  (it stalled so long that its slot was given up on, sealed and deleted) appends again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from memstore.core.changes import current_actor
from memstore.core.records import ChangeEvent, ChangePage

Doc = dict[str, Any]
Coll = AsyncCollection[Doc]
A = TypeVar("A")
R = TypeVar("R")

#: server codes of a duplicate key
DUPLICATE_KEY_CODES = frozenset({11000, 11001, 12582})

NOOP = "noop"
HEAD = 0

#: event field -> document field (short names: the log is the largest collection)
_FIELDS = (
    ("entity_type", "et"),
    ("entity_id", "eid"),
    ("conversation_id", "cid"),
    ("tool_name", "tool"),
    ("record_id", "rid"),
    ("version", "v"),
    ("count", "n"),
    ("actor", "actor"),
    ("address", "addr"),
)

#: how often a reader looks again while the slot it waits for is a hole
HOLE_POLL_SECONDS = 0.02
#: slots sealed per round trip
SEAL_BATCH = 500
#: how long ``ChangeLog.close`` lets the rounds in flight end before it cancels them
CLOSE_TIMEOUT_SECONDS = 5.0


def event_doc(kind: str, **fields: Any) -> Doc:
    """The stored form of an event (``ns``/``slot``/``ts`` are added at insert), with the
    current actor. ``fields`` are ``ChangeEvent`` field names; ``None`` is left out."""
    doc: Doc = {"kind": kind}
    actor = current_actor()
    if actor is not None:
        fields = {**fields, "actor": actor.name, "address": actor.address}
    for name, short in _FIELDS:
        value = fields.get(name)
        if value is not None:
            doc[short] = value
    return doc


def _event(doc: Doc, position: int) -> ChangeEvent:
    values = {name: doc.get(short) for name, short in _FIELDS}
    return ChangeEvent(position=position, kind=doc["kind"], timestamp=doc["ts"], **values)


class _Rounds(Generic[A, R]):
    """Calls of one namespace that arrive while a round is in flight share the next
    round: one task per namespace runs ``run(namespace, [arg, ...])`` (one result or
    exception per argument) until nobody is waiting. ``abandoned`` gets the result of a
    caller that was cancelled meanwhile."""

    def __init__(
        self,
        name: str,
        run: Callable[[str, list[A]], Awaitable[list[R | Exception]]],
        abandoned: Callable[[str, R], Awaitable[None]] | None = None,
    ) -> None:
        self._name = name
        self._run = run
        self._abandoned = abandoned
        self._waiting: dict[str, list[tuple[A, asyncio.Future[R]]]] = {}
        self._serving: dict[str, asyncio.Task[None]] = {}

    async def __call__(self, namespace: str, arg: A) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(namespace, []).append((arg, done))
        if namespace not in self._serving:
            self._serving[namespace] = asyncio.create_task(self._serve(namespace), name=self._name)
        return await done

    @property
    def busy(self) -> bool:
        return bool(self._serving)

    async def wait_idle(self, deadline: float) -> None:
        """Until no round runs: the rounds in flight end (an abandoned claim is filled);
        those still running at ``deadline`` (loop time) are cancelled."""
        loop = asyncio.get_running_loop()
        while self._serving:
            tasks = list(self._serving.values())
            remaining = deadline - loop.time()
            if remaining > 0:
                await asyncio.wait(tasks, timeout=remaining)
                continue
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    async def _serve(self, namespace: str) -> None:
        batch: list[tuple[A, asyncio.Future[R]]] = []
        try:
            while batch := self._waiting.pop(namespace, []):
                try:
                    results = await self._run(namespace, [arg for arg, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, done), result in zip(batch, results, strict=True):
                    if not done.done():
                        if isinstance(result, Exception):
                            done.set_exception(result)
                        else:
                            done.set_result(result)
                    elif self._abandoned is not None and not isinstance(result, Exception):
                        # best effort: readers fill a hole themselves after the timeout
                        with contextlib.suppress(Exception):
                            await self._abandoned(namespace, result)
        except BaseException:
            # Cancelled (the loop is closing): nobody may wait forever.
            for _, done in [*batch, *self._waiting.pop(namespace, [])]:
                done.cancel()
            raise
        finally:
            del self._serving[namespace]


class ChangeLog:
    """Claims, appends, seals, reads and trims the log in one collection.

    Claims of one namespace are made by one task per process (``_Rounds``): the callers
    that arrive while an ``$inc`` is in flight share the next one, which reserves a slot
    for each. Each slot is still reserved after its caller asked, i.e. after its caller
    observed what it changes; a caller cancelled meanwhile gets its slot filled with a
    ``noop`` at once. On FerretDB v1, whose ``$inc`` is not atomic, this process at least
    never races itself (across processes the unique index keeps two documents from one
    slot, and the loser appends again). Event inserts outside a transaction share an
    ``insertMany`` the same way.
    """

    def __init__(
        self,
        collection: Callable[[], Coll],
        *,
        hole_timeout: float,
        hole_wait: float,
    ) -> None:
        self._coll = collection
        self.hole_timeout = hole_timeout
        self.hole_wait = hole_wait
        self._claims: _Rounds[None, int] = _Rounds(
            "memstore-mongodb-claims", self._claim_round, self.fill
        )
        self._inserts: _Rounds[Doc, None] = _Rounds("memstore-mongodb-events", self._insert_round)

    async def close(self) -> None:
        """Let the claim and insert rounds in flight end (their callers may be gone: a
        cancelled write leaves its round running, and the filling of its slot). They run
        on the driver's client, so the backend calls this before closing the client: a
        round left running would use connections that outlive the client, and the event
        loop, unclosed. Bounded by ``CLOSE_TIMEOUT_SECONDS``, then cancelled."""
        deadline = asyncio.get_running_loop().time() + CLOSE_TIMEOUT_SECONDS
        # an abandoned claim is filled through an insert round: look again until both idle
        while self._claims.busy or self._inserts.busy:
            await self._claims.wait_idle(deadline)
            await self._inserts.wait_idle(deadline)

    # -- writing ----------------------------------------------------------------------

    async def claim(self, namespace: str) -> int:
        """The next slot of ``namespace``, given to this caller only."""
        return await self._claims(namespace, None)

    async def _claim_round(self, namespace: str, asking: list[None]) -> list[int | Exception]:
        head = await self._coll().find_one_and_update(
            {"ns": namespace, "slot": HEAD},
            {
                "$inc": {"last": len(asking)},
                "$set": {"at": time.time()},
                "$setOnInsert": {"sealed": 0, "sealed_pos": 0, "first": 1, "cut": 0},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert head is not None  # upsert=True with ReturnDocument.AFTER
        first = int(head["last"]) - len(asking) + 1
        return [first + i for i in range(len(asking))]

    async def insert(
        self,
        namespace: str,
        slot: int,
        event: Doc,
        session: AsyncClientSession | None = None,
    ) -> None:
        """Store ``event`` at ``slot``; ``DuplicateKeyError`` when the slot is taken (a
        reader filled it after the hole timeout) or, outside a transaction, when it had
        been cut by retention already (filled, sealed, then deleted: the insert lands in
        a slot no reader looks at again)."""
        doc = {"ns": namespace, "slot": slot, "ts": time.time(), **event}
        if session is not None:
            await self._coll().insert_one(doc, session=session)
        else:
            await self._inserts(namespace, doc)

    async def _insert_round(self, namespace: str, docs: list[Doc]) -> list[Exception | None]:
        results: list[Exception | None] = [None] * len(docs)
        try:
            await self._coll().insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise
            for error in exc.details.get("writeErrors", []):
                message, code = error.get("errmsg", "write error"), error.get("code")
                failure = DuplicateKeyError if code in DUPLICATE_KEY_CODES else OperationFailure
                results[error["index"]] = failure(message, code, error)
        landed = [i for i, doc in enumerate(docs) if results[i] is None and doc["kind"] != NOOP]
        if landed:
            # Retention raises ``cut`` before it deletes below it, so an event stored
            # below it now arrived after its slot was filled, sealed and deleted. (If
            # the head cannot be read, the events stay where they landed: almost always
            # a slot readers will count.)
            with contextlib.suppress(PyMongoError):
                head = await self._coll().find_one({"ns": namespace, "slot": HEAD}, {"cut": 1})
                cut = int((head or {}).get("cut", 0))
                for i in landed:
                    if docs[i]["slot"] < cut:
                        results[i] = DuplicateKeyError(
                            f"slot {docs[i]['slot']} was cut by retention before its event arrived"
                        )
        return results

    async def fill(self, namespace: str, slot: int) -> None:
        """A ``noop`` at ``slot`` unless it already holds a document."""
        with contextlib.suppress(DuplicateKeyError):
            await self.insert(namespace, slot, {"kind": NOOP})

    # -- sealing ----------------------------------------------------------------------

    async def seal(self, namespace: str, *, wait_after: int | None = None) -> Doc | None:
        """Number the events after the head's ``sealed`` slot up to the first hole, and
        return the head after that (``None``: the namespace has no log).

        Positions count events, so a stored position is needed only where the count
        cannot be followed slot by slot: an *anchor* (``pos`` on the document) at the
        first event of each round and at every event after a ``noop``; in between,
        position = anchor's position + (slot - anchor's slot). With ``wait_after``, a
        reader that has seen every position up to it and finds a young hole next waits
        up to ``hole_wait`` for it to be filled.

        Seals at most up to the slots claimed when it began: chasing the events written
        meanwhile would never end while writers add one per pass (each pass is several
        round trips), and a reader stalled in here sees nothing of what it sealed."""
        coll = self._coll()
        deadline = time.monotonic() + self.hole_wait
        head = await coll.find_one({"ns": namespace, "slot": HEAD})
        claimed = int(head["last"]) if head is not None else 0
        while head is not None:
            sealed, position = int(head["sealed"]), int(head["sealed_pos"])
            if sealed >= claimed:
                return head
            docs = await (
                coll.find(
                    {"ns": namespace, "slot": {"$gt": sealed}},
                    {"_id": 0, "slot": 1, "kind": 1, "ts": 1, "pos": 1},
                )
                .sort("slot", ASCENDING)
                .limit(SEAL_BATCH)
                .to_list()
            )
            slot, anchors, anchor_next, after_hole = sealed, [], True, None
            for doc in docs:
                if doc["slot"] != slot + 1:
                    after_hole = doc
                    break
                slot += 1
                if doc["kind"] == NOOP:
                    anchor_next = True
                    continue
                position += 1
                if anchor_next and doc.get("pos") is None:
                    anchors.append((slot, position))
                anchor_next = False
            if slot > sealed:
                for anchor_slot, anchor_position in anchors:
                    await coll.update_one(
                        {"ns": namespace, "slot": anchor_slot, "pos": None},
                        {"$set": {"pos": anchor_position}},
                    )
                await coll.update_one(
                    {"ns": namespace, "slot": HEAD, "sealed": sealed},
                    {"$set": {"sealed": slot, "sealed_pos": position}},
                )
                # Another sealer may have gone further, or more is stored: look again.
                head = await coll.find_one({"ns": namespace, "slot": HEAD})
                continue
            if slot >= int(head["last"]) and not docs:
                return head
            # The next slot is a hole (a write in flight, or one that died), unless the
            # head moved on meanwhile (another sealer; retention).
            current = await coll.find_one({"ns": namespace, "slot": HEAD})
            if current is None or current["sealed"] != sealed:
                head = current
                continue
            claimed_before = after_hole["ts"] if after_hole is not None else head["at"]
            if claimed_before < time.time() - self.hole_timeout:
                await self.fill(namespace, sealed + 1)
                continue
            if (
                wait_after is None
                or wait_after < int(head["sealed_pos"])
                or time.monotonic() >= deadline
            ):
                return head
            await asyncio.sleep(HOLE_POLL_SECONDS)
            head = await coll.find_one({"ns": namespace, "slot": HEAD})
        return None

    async def _slot_of(self, namespace: str, position: int) -> int | None:
        """The slot of the event at sealed ``position`` (``None``: no anchor at or before
        it, i.e. retention removed it meanwhile)."""
        anchor = await self._coll().find_one(
            {"ns": namespace, "pos": {"$lte": position}},
            {"_id": 0, "slot": 1, "pos": 1},
            sort=[("pos", DESCENDING)],
        )
        if anchor is None:
            return None
        return int(anchor["slot"]) + position - int(anchor["pos"])

    # -- reading ----------------------------------------------------------------------

    async def read(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        while True:
            head = await self.seal(namespace, wait_after=after)
            if head is None:
                return ChangePage([], 1, 0)
            first, last = int(head["first"]), int(head["sealed_pos"])
            position = max(after, first - 1)
            if position >= last:
                return ChangePage([], first, last)
            slot = await self._slot_of(namespace, position + 1)
            if slot is None:
                continue  # trimmed meanwhile: read the new head
            want = min(limit, last - position)
            events = await self._read_slots(namespace, slot, position, int(head["sealed"]), want)
            if events is None:
                # Trimmed meanwhile, before any event was read: the new head's ``first``
                # tells the caller what it missed (the manager raises ChangesPrunedError).
                continue
            return ChangePage(events, first, last)

    async def _read_slots(
        self, namespace: str, slot: int, position: int, sealed: int, limit: int
    ) -> list[ChangeEvent] | None:
        """Up to ``limit`` events from ``slot`` on (the event at ``position + 1``), up to
        the ``sealed`` slot.

        Sealed slots are contiguous from the oldest kept one, so a slot missing from what
        the server returns was deleted by a trim that ran since ``slot`` was looked up:
        the events read before it are numbered right and returned; ``None`` when no event
        was read before it (counting on past the gap would give later events earlier
        positions and hide the cut from the reader)."""
        coll = self._coll()
        events: list[ChangeEvent] = []
        while len(events) < limit and slot <= sealed:
            docs = await (
                coll.find(
                    {"ns": namespace, "slot": {"$gte": slot, "$lte": sealed}},
                    {"_id": 0, "ns": 0},
                )
                .sort("slot", ASCENDING)
                .limit(limit - len(events) + 1)
                .to_list()
            )
            if not docs:
                return events or None
            for doc in docs:
                if int(doc["slot"]) != slot:
                    return events or None
                slot += 1
                if doc["kind"] == NOOP:
                    continue
                position += 1
                events.append(_event(doc, position))
                if len(events) == limit:
                    break
        return events

    # -- retention --------------------------------------------------------------------

    async def trim(self, namespace: str, *, max_events: int, retention: float) -> None:
        """Keep the newest ``max_events`` events and those younger than ``retention``
        seconds. Seals first (so everything stored counts), anchors the oldest kept
        event, raises the head's ``first`` to it and ``cut`` to its slot, then deletes the
        slots below it (in that order: a reader never sees the cut as missing events, and
        a late writer finds its slot below ``cut``)."""
        head = await self.seal(namespace)
        if head is None:
            return
        coll = self._coll()
        sealed, last = int(head["sealed"]), int(head["sealed_pos"])
        first = max(int(head["first"]), last - max_events + 1)
        first_slot = await self._slot_of(namespace, first) if first <= last else None
        if first_slot is None:
            first, first_slot = last + 1, sealed + 1
        # By age: the oldest event written after the threshold is the oldest kept (a
        # later event with an older clock is kept rather than cut out of order).
        young = await coll.find_one(
            {
                "ns": namespace,
                "slot": {"$gte": first_slot, "$lte": sealed},
                "kind": {"$ne": NOOP},
                "ts": {"$gte": time.time() - retention},
            },
            {"_id": 0, "slot": 1},
            sort=[("slot", ASCENDING)],
        )
        if young is None:
            first, first_slot = last + 1, sealed + 1
        elif young["slot"] > first_slot:
            skipped = await coll.count_documents(
                {
                    "ns": namespace,
                    "slot": {"$gte": first_slot, "$lt": young["slot"]},
                    "kind": {"$ne": NOOP},
                }
            )
            first, first_slot = first + skipped, int(young["slot"])
        if first <= last:
            await coll.update_one(
                {"ns": namespace, "slot": first_slot, "pos": None}, {"$set": {"pos": first}}
            )
        await coll.update_one(
            {"ns": namespace, "slot": HEAD}, {"$max": {"first": first, "cut": first_slot}}
        )
        await coll.delete_many({"ns": namespace, "slot": {"$gt": HEAD, "$lt": first_slot}})

    async def namespaces(self) -> list[str]:
        """Every namespace that has a log (for the periodic trim)."""
        docs = await self._coll().find({"slot": HEAD}, {"_id": 0, "ns": 1}).to_list()
        return sorted(d["ns"] for d in docs)


class Claims:
    """The slots one write claimed. Its event goes to the last one (``slot``);
    ``release`` fills every other with a ``noop`` (all of them when the write changed
    nothing or failed), so no claimed slot stays a hole."""

    __slots__ = ("_log", "namespace", "slots", "used")

    def __init__(self, log: ChangeLog, namespace: str) -> None:
        self._log = log
        self.namespace = namespace
        self.slots: list[int] = []
        self.used: int | None = None

    async def claim(self) -> int:
        slot = await self._log.claim(self.namespace)
        self.slots.append(slot)
        return slot

    @property
    def slot(self) -> int:
        return self.slots[-1]

    async def release(self) -> None:
        for slot in self.slots:
            if slot != self.used:
                await self._log.fill(self.namespace, slot)

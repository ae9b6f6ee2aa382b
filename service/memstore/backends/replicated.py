"""``ReplicatedMemoryBackend``: a primary backend, a secondary it is copied to, failover.

Writes go to the primary and are acknowledged by it alone. A :class:`Replicator` copies
them to the secondary afterwards by tailing the primary's change log per namespace: for
each event it reads the *current* state of the key the event names from the primary and
writes exactly that to the secondary (``import_entity``/``import_conversation`` keep
versions, seqs and timestamps; tool uses and feedback keep their id and time), a key the
primary no longer has as a delete. Copying state, not events, makes a replay harmless, so
the position kept on the secondary (namespace ``_replication``) may lag what was applied.

The primary is probed every ``MEMSTORE_HEALTH_CHECK_INTERVAL_SECONDS``; after
``MEMSTORE_FAILOVER_AFTER_FAILURES`` failed probes or reads the secondary serves reads.
Writes then fail fast (``strict``) or go to the secondary (``lenient``); in lenient mode
the secondary's log from the failover point is reconciled into the primary when it is back
(:func:`reconcile_entity`, :func:`merge_messages`: the conflict rules), and only then does
the primary serve again. docs/architecture.md, "Replication and failover", has the whole
story and its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from memstore.backends.base import DistributedMemoryBackend, InvalidationCallback
from memstore.backends.common import history_order
from memstore.core import changes
from memstore.core.errors import BackendUnavailableError, ConflictError, MemoryStoreError
from memstore.core.records import (
    ChangeEvent,
    ChangePage,
    ConversationInfo,
    ConversationRevision,
    EntityRecord,
    EntityRow,
    EntityVersion,
    EntityWrite,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageRecord,
    MessageRow,
    MessagesWrite,
    Page,
    ToolUsageRecord,
)
from memstore.core.retention import Cutoffs

if TYPE_CHECKING:
    from memstore.core.analytics import (
        AnalyticsOverview,
        BucketWindow,
        FeedbackAnalytics,
        GrowthSeries,
        ToolAnalytics,
    )
    from memstore.core.retention import PruneReport
    from memstore.core.settings import Settings

log = logging.getLogger("memstore.replication")

T = TypeVar("T")

#: Where the replication keeps its own state, on the secondary. Not a valid user
#: namespace (names start with a letter or digit), never replicated, never listed.
STATE_NAMESPACE = "_replication"
_POSITION = "position"  # id: the namespace; data: {"position": n}
_CLAIM = "claim"  # id "forward": which replica replicates now
_FAILOVER = "failover"  # id "state": the secondary's log positions when it took writes
# id: the namespace; data {"erases": [...]}: the history erases (``history:purge``,
# retention's versions rules) the other backend was down for, each with the log position
# it follows. Kept on the backend that took the erase, the source of the direction that
# carries it (:meth:`Replicator.step`).
_ERASE = "erase"

# The failback copies the secondary's writes while they go on, for at most this many
# rounds, until a round finds fewer than this many events, or until a round fails to halve
# what the one before copied (the writers keep up with the copy: more rounds would not
# shrink what is left); then it holds writes for one last, bounded round.
_CATCH_UP_ROUNDS = 5
_CATCH_UP_EVENTS = 50
_PRIMARY_LOST_DATA = (
    "the primary came back without its data; the secondary keeps serving: restore the "
    "primary from it"
)
# How long ``close`` waits for the background tasks to end.
_CLOSE_TIMEOUT_SECONDS = 5.0
# After a failed replication round the next waits the poll interval, doubled per failure
# in a row up to this: a fault that repeats (a bug, an untranslated driver error) is
# retried, and logged, a few times a minute instead of in a tight loop.
_MAX_RETRY_SECONDS = 30.0

PRIMARY = "primary"
SECONDARY = "secondary"

# The state of one key as the replicator reads it from the source.
_Key = tuple[str, ...]

#: History rows compared per read when the replicator copies a key's version history.
_HISTORY_PAGE = 100
# the conversation events whose writer dropped the conversation's revisions with it
_CONVERSATION_GONE = frozenset({changes.CONVERSATION_DELETED, changes.CONVERSATION_PRUNED})


def _event_key(event: ChangeEvent) -> _Key | None:
    kind = event.kind
    if kind.startswith("entity."):
        return ("entity", str(event.entity_type), str(event.entity_id))
    if kind.startswith("conversation."):
        return ("conversation", str(event.conversation_id))
    if kind == changes.TOOL_USAGE_RECORDED:
        return ("tool_usage", str(event.record_id))
    if kind == changes.FEEDBACK_SAVED:
        return ("feedback", str(event.record_id))
    # tool_usage.pruned: each backend applies its own tool-usage retention.
    return None


# -- conflict rules (lenient failover: what the secondary took, back into the primary) ---


def reconcile_entity(
    primary: EntityRecord | None, secondary: EntityRecord | None, deleted_version: int | None
) -> EntityRecord | bool | None:
    """What the primary should hold for a key the secondary changed during the outage:
    a record to write, ``None`` to delete it, ``True`` to leave the primary as it is.

    * The higher version wins (the side that saw more saves of the key).
    * Equal versions with different contents (both sides saved version n from n-1: one
      write the secondary never received before the outage, one made during it): the later
      ``updated_at`` wins; a tie of that too keeps the primary's.
    * A delete on the secondary (``deleted_version``: the version it removed) deletes the
      primary's copy when that is not newer than what was deleted.
    * A key the primary does not have takes the secondary's record (a write wins over a
      delete it never saw)."""
    if secondary is None:
        if primary is None:
            return True
        if deleted_version is not None and primary.version <= deleted_version:
            return None
        return True
    if primary is None or secondary.version > primary.version:
        return secondary
    if (
        secondary.version == primary.version
        and secondary != primary
        and secondary.updated_at > primary.updated_at
    ):
        return secondary
    return True


def merge_messages(
    primary: Sequence[MessageRecord], secondary: Sequence[MessageRecord]
) -> list[MessageRecord] | None:
    """A conversation both sides may have appended to: the messages they share (the
    longest common prefix), then the primary's later ones, then the secondary's later
    ones that the primary does not already hold (same message and ``created_at``); seqs
    kept, the secondary's extra ones numbered on from the primary's last. ``None``: the
    primary's copy already holds everything. A pop or replace the secondary did during
    the outage is kept only when the primary had nothing the secondary lacks (then the
    secondary's copy is taken whole)."""

    def same(a: MessageRecord, b: MessageRecord) -> bool:
        return a.message == b.message and a.created_at == b.created_at

    common = 0
    for a, b in zip(primary, secondary, strict=False):
        if not same(a, b):
            break
        common += 1
    if common == len(primary):
        # Nothing on the primary the secondary lacks: the secondary's copy, whole.
        if len(secondary) == len(primary):
            return None
        return list(secondary)
    held = {(repr(m.message), m.created_at) for m in primary[common:]}
    extra = [m for m in secondary[common:] if (repr(m.message), m.created_at) not in held]
    if not extra:
        return None
    last = primary[-1].seq if primary else 0
    return [
        *primary,
        *(
            MessageRecord(m.conversation_id, last + i, m.message, m.created_at)
            for i, m in enumerate(extra, start=1)
        ),
    ]


# -- history erases the other backend has not applied yet ------------------------------


@dataclass(frozen=True)
class PendingErase:
    """A ``history:purge`` (``keep``/``saved_before`` None) or a retention versions prune
    (``keep``/``saved_before`` as its cutoffs, ``now`` its instant) the other backend was
    down for; ``position``: the end of the namespace's change log before the erase."""

    position: int
    purge: bool
    keep: int | None = None
    saved_before: float | None = None
    now: float = 0.0

    def to_json(self) -> JSONObject:
        return {
            "position": self.position,
            "purge": self.purge,
            "keep": self.keep,
            "saved_before": self.saved_before,
            "now": self.now,
        }

    @classmethod
    def from_json(cls, data: Any) -> PendingErase:
        return cls(
            int(data["position"]),
            bool(data["purge"]),
            data.get("keep"),
            data.get("saved_before"),
            float(data.get("now", 0.0)),
        )

    async def apply(self, target: DistributedMemoryBackend, namespace: str) -> None:
        if self.purge:
            await target.purge_history(namespace)
            return
        cutoffs = Cutoffs(versions_keep=self.keep, versions_saved_before=self.saved_before)
        while True:
            report = await target.prune(
                namespace, cutoffs, self.now, dry_run=False, limit=_ERASE_BATCH
            )
            if not report.more.get("versions"):
                return


#: History rows one call of a deferred versions prune removes.
_ERASE_BATCH = 500


async def pending_erases(backend: DistributedMemoryBackend, namespace: str) -> list[PendingErase]:
    record = await backend.load_entity(STATE_NAMESPACE, _ERASE, namespace)
    if record is None:
        return []
    return [PendingErase.from_json(e) for e in record.data.get("erases", [])]


async def _update_erases(
    backend: DistributedMemoryBackend,
    namespace: str,
    change: Callable[[list[PendingErase]], list[PendingErase]],
) -> None:
    """Rewrite the namespace's pending erases (compare-and-set: replicas may race)."""
    while True:
        record = await backend.load_entity(STATE_NAMESPACE, _ERASE, namespace)
        held = (
            []
            if record is None
            else [PendingErase.from_json(e) for e in record.data.get("erases", [])]
        )
        erases = change(held)
        try:
            if erases:
                await backend.save_entity(
                    STATE_NAMESPACE,
                    _ERASE,
                    namespace,
                    {"erases": [e.to_json() for e in erases]},
                    expected_version=record.version if record is not None else 0,
                )
            elif record is not None:
                await backend.delete_entity(
                    STATE_NAMESPACE, _ERASE, namespace, expected_version=record.version
                )
            return
        except ConflictError:
            continue


async def record_erase(
    backend: DistributedMemoryBackend, namespace: str, erase: PendingErase
) -> None:
    await _update_erases(backend, namespace, lambda held: [*held, erase])


async def drop_erases(
    backend: DistributedMemoryBackend, namespace: str, done: Sequence[PendingErase]
) -> None:
    await _update_erases(backend, namespace, lambda held: [e for e in held if e not in done])


# -- the replicator ---------------------------------------------------------------------


@dataclass
class NamespaceLag:
    """How far the target is behind the source in one namespace."""

    position: int = 0
    last_position: int = 0
    oldest_pending: float | None = None  # time of the oldest event not yet applied

    @property
    def events(self) -> int:
        return max(0, self.last_position - self.position)

    def seconds(self, now: float) -> float:
        if self.events == 0 or self.oldest_pending is None:
            return 0.0
        return max(0.0, now - self.oldest_pending)


@dataclass
class Replicator:
    """Copies what changed in ``source`` to ``target``, namespace by namespace, from the
    source's change log. ``reconcile``: the conflict rules decide (the lenient failback)
    instead of the source winning (replication). Positions are kept in ``positions`` and,
    when ``state`` is given, durably in its ``_replication`` namespace."""

    source: DistributedMemoryBackend
    target: DistributedMemoryBackend
    batch: int
    state: DistributedMemoryBackend | None = None
    reconcile: bool = False
    concurrency: int = 16
    positions: dict[str, int] = field(default_factory=dict)
    lag: dict[str, NamespaceLag] = field(default_factory=dict)
    #: Every namespace of a round has a lag (see :meth:`measure`): before, a lag of 0
    #: would only mean that nothing was measured yet.
    measured: bool = False
    #: set by the owner's ``close``: ``run_round`` returns before its next step
    stopping: bool = False

    async def load_position(self, namespace: str) -> int:
        if namespace not in self.positions:
            position = 0
            if self.state is not None:
                record = await self.state.load_entity(STATE_NAMESPACE, _POSITION, namespace)
                if record is not None:
                    position = int(record.data["position"])
            self.positions[namespace] = position
        return self.positions[namespace]

    async def known_namespaces(self) -> list[str]:
        """The source's namespaces and those a position is kept for."""
        names = set(await self.source.list_namespaces() or [])
        names.update(self.positions)
        if self.state is not None:
            cursor: str | None = None
            while True:
                page = await self.state.list_entities(
                    STATE_NAMESPACE, _POSITION, limit=500, cursor=cursor
                )
                names.update(r.id for r in page.items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        names.discard(STATE_NAMESPACE)
        return sorted(names)

    async def measure(self, namespaces: Iterable[str]) -> None:
        """The lag of each namespace not stepped yet, from its log's end. Without it a
        namespace counts as caught up until its turn in the round comes (a store that
        starts replicating would report a lag of 0 before it copied anything)."""
        for namespace in namespaces:
            if namespace in self.lag:
                continue
            after = await self.load_position(namespace)
            page = await self.source.read_changes(namespace, after=after, limit=1)
            oldest = page.events[0].timestamp if page.events else None
            self.lag[namespace] = NamespaceLag(after, page.last_position, oldest)
        self.measured = True

    async def step(self, namespace: str) -> int:
        """Apply up to ``batch`` events of ``namespace``; the number applied."""
        after = await self.load_position(namespace)
        page: ChangePage = await self.source.read_changes(namespace, after=after, limit=self.batch)
        lag = self.lag.setdefault(namespace, NamespaceLag())
        lag.position, lag.last_position = after, page.last_position
        if page.last_position < after:
            log.error(
                "the change log of namespace %r ends at %d, before the replicated position %d",
                namespace,
                page.last_position,
                after,
            )
            raise ReplicationError("the source lost data that was already replicated")
        erases = await pending_erases(self.source, namespace)
        if after < page.first_position - 1:
            # Retention removed events never copied: copy the namespace whole, then go on
            # from the log's end as it was before the copy (replays are harmless).
            await self._erase(namespace, [e for e in erases if e.position <= page.last_position])
            await self.copy_namespace(namespace)
            await self._advance(namespace, page.last_position)
            return 0
        # An erase waiting for the target is applied once every event before it is, and
        # before any after it (those copy the source's history as it is after the erase).
        await self._erase(namespace, [e for e in erases if e.position <= after])
        stop = min((e.position for e in erases if e.position > after), default=None)
        reached = page.events[-1].position if page.events else after
        if stop is not None and reached > stop:
            # the page goes past an erase: apply the events up to it, then the erase
            page = ChangePage(
                [e for e in page.events if e.position <= stop],
                page.first_position,
                page.last_position,
            )
            reached = stop
        if page.events:
            lag.oldest_pending = page.events[0].timestamp
            last: dict[_Key, ChangeEvent] = {}
            for event in page.events:
                key = _event_key(event)
                if key is not None:
                    last.pop(key, None)
                    last[key] = event
            limiter = asyncio.Semaphore(self.concurrency)

            async def apply(key: _Key, event: ChangeEvent) -> None:
                async with limiter:
                    await self.apply(namespace, key, event)

            await _all_or_none(apply(k, e) for k, e in last.items())
        else:
            lag.oldest_pending = None
        if reached > after:
            await self._advance(namespace, reached)
        await self._erase(namespace, [e for e in erases if after < e.position <= reached])
        return len(page.events)

    async def _erase(self, namespace: str, erases: Sequence[PendingErase]) -> None:
        for erase in erases:
            await erase.apply(self.target, namespace)
        if erases:
            await drop_erases(self.source, namespace, erases)

    async def _advance(self, namespace: str, position: int) -> None:
        self.positions[namespace] = position
        lag = self.lag.setdefault(namespace, NamespaceLag())
        lag.position = position
        lag.oldest_pending = None
        if self.state is not None:
            await self.state.save_entity(
                STATE_NAMESPACE, _POSITION, namespace, {"position": position}
            )

    async def apply(self, namespace: str, key: _Key, event: ChangeEvent) -> None:
        """Make ``target`` hold what ``source`` holds under ``key`` now."""
        src, dst = self.source, self.target
        if key[0] == "entity":
            _, entity_type, entity_id = key
            record = await src.load_entity(namespace, entity_type, entity_id)
            if self.reconcile:
                deleted = event.version if event.kind != changes.ENTITY_SAVED else None
                held = await dst.load_entity(namespace, entity_type, entity_id)
                decision = reconcile_entity(held, record, deleted)
                if decision is True:
                    return
                record = decision if isinstance(decision, EntityRecord) else None
            if self.reconcile:
                # the failback takes the reconciled state; the history the secondary kept
                # of the outage's writes stays there
                if record is not None:
                    await dst.import_entity(namespace, record)
                else:
                    await dst.delete_entity(namespace, entity_type, entity_id)
            else:
                await self._copy_entity(namespace, entity_type, entity_id, record)
        elif key[0] == "conversation":
            conversation_id = key[1]
            messages = await src.load_messages(namespace, conversation_id)
            if self.reconcile:
                if not messages and event.kind == changes.CONVERSATION_DELETED:
                    await dst.delete_conversation(namespace, conversation_id)
                    return
                kept = await dst.load_messages(namespace, conversation_id)
                merged = merge_messages(kept, messages)
                if merged is not None:
                    await dst.import_conversation(namespace, conversation_id, merged)
            elif not messages and event.kind in _CONVERSATION_GONE:
                await dst.delete_conversation(namespace, conversation_id)
            else:
                # only a delete or an idle prune drops the revisions: a pop or a trim that
                # empties the conversation keeps them on the source, so they are copied
                await self._copy_revisions(namespace, conversation_id)
                await dst.import_conversation(namespace, conversation_id, messages)
        elif key[0] == "tool_usage":
            use = await src.load_tool_usage(namespace, key[1])
            if use is not None:
                await dst.record_tool_usage(namespace, use)
        elif key[0] == "feedback":
            feedback = await src.load_feedback(namespace, key[1])
            if feedback is not None:
                await dst.save_feedback(namespace, feedback)

    async def _copy_entity(
        self, namespace: str, entity_type: str, entity_id: str, record: EntityRecord | None
    ) -> None:
        """Write ``record`` (``None``: delete) to the target as the source's writer did, then
        make the target's history of the key exactly the source's: rows it lacks or holds
        otherwise are written (its own move of its replaced row into history by
        ``import_entity`` and its tombstone from ``delete_entity`` are overwritten by the
        source's rows of the same version), rows the source no longer holds are removed.
        The copy is authoritative because an erase (``history:purge``, retention's versions
        rules) must not survive on the target: the row ``import_entity`` moves into history
        may be one the source erased after the target last copied the key."""
        src, dst = self.source, self.target
        theirs = await _all_pages(
            lambda c: src.list_entity_versions(
                namespace, entity_type, entity_id, cursor=c, limit=_HISTORY_PAGE
            )
        )
        top = theirs[0] if theirs else None
        if record is not None:
            writer = None
            if top is not None and not top.deleted and top.version == record.version:
                writer = top.actor
            with changes.acting_as(changes.Actor(writer)):
                await dst.import_entity(namespace, record)
        else:
            await dst.delete_entity(namespace, entity_type, entity_id)
        held = {
            history_order(v): v
            for v in await _all_pages(
                lambda c: dst.list_entity_versions(
                    namespace, entity_type, entity_id, cursor=c, limit=_HISTORY_PAGE
                )
            )
        }
        # the current row is listed first on both sides; it is not a history row
        current = (record.version, 0) if record is not None else None
        wanted = {history_order(v): v for v in theirs if history_order(v) != current}
        missing = [v for order, v in wanted.items() if held.get(order) != v]
        if missing:
            await dst.import_entity_versions(namespace, missing)
        extra = [(v, bool(d)) for v, d in held if (v, d) != current and (v, d) not in wanted]
        if extra:
            await dst.delete_entity_versions(namespace, entity_type, entity_id, extra)

    async def _copy_revisions(self, namespace: str, conversation_id: str) -> None:
        """Make the target's revisions of the conversation exactly the source's: those it
        lacks or holds otherwise are copied, those the source no longer has (erased) are
        removed."""
        src, dst = self.source, self.target
        theirs = await _all_pages(
            lambda c: src.list_conversation_revisions(
                namespace, conversation_id, cursor=c, limit=_HISTORY_PAGE
            )
        )
        held = {
            r.revision: r
            for r in await _all_pages(
                lambda c: dst.list_conversation_revisions(
                    namespace, conversation_id, cursor=c, limit=_HISTORY_PAGE
                )
            )
        }
        for revision in theirs:
            if held.get(revision.revision) == revision:
                continue
            found = await src.load_conversation_revision(
                namespace, conversation_id, revision.revision
            )
            if found is not None:
                await dst.import_conversation_revision(namespace, found[0], found[1])
        extra = sorted(set(held) - {r.revision for r in theirs})
        if extra:
            await dst.delete_conversation_revisions(namespace, conversation_id, extra)

    async def copy_namespace(self, namespace: str) -> None:
        """Everything the source holds in ``namespace``, written to the target."""
        src, dst = self.source, self.target
        if self.reconcile:
            for entity_type in await src.get_entity_types(namespace):

                def entities(c: str | None, t: str = entity_type) -> Awaitable[Page[EntityRecord]]:
                    return src.list_entities(namespace, t, limit=500, cursor=c)

                async for entity in _pages(entities):
                    await dst.import_entity(namespace, entity)
        else:
            # every key with a current version or a history, with its history
            async for row in _pages(
                lambda c: src.list_versioned_entities(namespace, limit=500, cursor=c)
            ):
                current = await src.load_entity(namespace, row.type, row.id)
                await self._copy_entity(namespace, row.type, row.id, current)
        async for info in _pages(lambda c: src.list_conversations(namespace, limit=500, cursor=c)):
            messages = await src.load_messages(namespace, info.conversation_id)
            if not self.reconcile:
                await self._copy_revisions(namespace, info.conversation_id)
            await dst.import_conversation(namespace, info.conversation_id, messages)
        async for use in _pages(lambda c: src.query_tool_usage(namespace, limit=500, cursor=c)):
            await dst.record_tool_usage(namespace, use)
        async for fb in _pages(lambda c: src.query_feedback(namespace, limit=500, cursor=c)):
            await dst.save_feedback(namespace, fb)

    async def run_round(self, namespaces: Iterable[str]) -> int:
        """One pass over ``namespaces``, each up to where its log ended when the pass
        reached it (or drained, when that comes first); events applied. Bounded on purpose:
        "until drained" never ends while writers add events faster than they are copied."""
        namespaces = list(namespaces)
        await self.measure(namespaces)
        applied = 0
        for namespace in namespaces:
            end: int | None = None
            while True:
                if self.stopping:
                    return applied
                n = await self.step(namespace)
                applied += n
                if end is None:
                    end = self.lag[namespace].last_position
                if n < self.batch or self.positions.get(namespace, 0) >= end:
                    break
        return applied


async def _all_or_none(calls: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``calls`` concurrently; when one fails or the caller is cancelled, the others
    are cancelled and waited for before this returns. (``asyncio.gather`` returns at the
    first failure or cancelled call and leaves the rest running: after a ``close`` they
    would go on using the target's connections after it closed them.)"""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        # the first failure is what the caller sees; the others' end here
        await asyncio.gather(*tasks, return_exceptions=True)


async def _all_pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> list[T]:
    return [item async for item in _pages(fetch)]


async def _pages(fetch: Callable[[str | None], Awaitable[Page[T]]]) -> Any:
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class ReplicationError(RuntimeError):
    """The replication cannot go on safely (e.g. the source lost data it had given). Stays
    inside this module: the store reports it in ``status()``, never to a caller."""


# -- the backend ------------------------------------------------------------------------


class ReplicatedMemoryBackend(DistributedMemoryBackend):
    """A primary and a secondary backend behind one backend interface."""

    name = "replicated"

    def __init__(
        self,
        settings: Settings,
        primary: DistributedMemoryBackend,
        secondary: DistributedMemoryBackend,
    ) -> None:
        super().__init__(settings)
        self.primary = primary
        self.secondary = secondary
        self.replication = settings
        self.serving = PRIMARY
        self.primary_up = True
        self.failovers = 0
        self.problem: str | None = None
        self._failures = 0
        self._successes = 0
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.forward = Replicator(
            primary, secondary, batch=settings.replication_batch, state=secondary
        )
        self._claimed_until = 0.0
        self._claim_version = 0
        self._reconciler: Replicator | None = None
        self._failover_positions: dict[str, int] | None = None
        # Writes wait here while the primary takes over again (closed: the last events
        # the secondary took are being copied to the primary).
        self._writes_open = asyncio.Event()
        self._writes_open.set()
        self._writes_in_flight = 0
        self._writes_done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failback: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()  # set by ``close``: the loops' pauses end at once
        # Replication rounds that failed (any exception but a backend being unreachable,
        # which pauses): counted for the metrics, the latest named in status().
        self.round_errors = 0
        self._failing_in_a_row = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None

    def __repr__(self) -> str:
        return f"ReplicatedMemoryBackend({self.primary!r} -> {self.secondary!r})"

    # -- lifecycle ----------------------------------------------------------------------

    async def connect(self) -> None:
        await self.secondary.connect()
        await self.primary.connect()
        state = await self.secondary.load_entity(STATE_NAMESPACE, _FAILOVER, "state")
        if state is not None and not state.data.get("resolved"):
            # A lenient failover this store did not finish reconciling (a restart during
            # the outage): serve from the secondary until the primary has taken its writes.
            self._failover_positions = {k: int(v) for k, v in state.data["positions"].items()}
            self.serving = SECONDARY
        self._tasks = [
            asyncio.create_task(self._watch_primary(), name="memstore-replication-health"),
            asyncio.create_task(self._replicate(), name="memstore-replication"),
        ]

    async def close(self) -> None:
        # The background tasks are asked to stop and finish the driver calls they are in:
        # a call cancelled halfway can leave a connection behind that no one closes
        # (PyMongo's async client closes a socket whose connect is cancelled only on
        # OSError; the garbage collector then finds it open), and an unfinished copy
        # step leaves the secondary's change log a slot to fill. They stop after their
        # current step or probe; only what still runs after the timeout is cancelled.
        self._closing = True
        self._wake.set()
        self.forward.stopping = True
        if self._reconciler is not None:
            self._reconciler.stopping = True
        tasks = [*self._tasks, *([self._failback] if self._failback else [])]
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_SECONDS)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=_CLOSE_TIMEOUT_SECONDS)
        self._tasks = []
        self._failback = None
        with contextlib.suppress(MemoryStoreError):
            await self._release_claim()
        await self.primary.close()
        await self.secondary.close()

    async def ping(self) -> bool:
        return await self._serving_backend().ping()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "primary": self.primary.describe(),
            "secondary": self.secondary.describe(),
            "serving": self.serving,
            "failure_mode": self.replication.failure_mode,
        }

    # -- health and failover ------------------------------------------------------------

    def _serving_backend(self) -> DistributedMemoryBackend:
        return self.primary if self.serving == PRIMARY else self.secondary

    async def _probe(self) -> bool:
        try:
            return await asyncio.wait_for(
                self.primary.ping(), self.replication.health_check_interval_seconds
            )
        except (TimeoutError, MemoryStoreError):
            return False

    async def _watch_primary(self) -> None:
        interval = self.replication.health_check_interval_seconds
        while not self._closing:
            ok = await self._probe()
            self.primary_up = ok
            if ok:
                self._failures = 0
                self._successes += 1
                if (
                    self.serving == SECONDARY
                    and self._successes >= self.replication.failback_after_successes
                    and (self._failback is None or self._failback.done())
                ):
                    self._failback = asyncio.create_task(
                        self._fail_back(), name="memstore-failback"
                    )
            else:
                self._note_failure()
            await self._pause(interval)

    def _note_failure(self) -> None:
        self._successes = 0
        self._failures += 1
        self.primary_up = False
        if self.serving == PRIMARY and self._failures >= self.replication.failover_after_failures:
            self.serving = SECONDARY
            self.failovers += 1
            log.warning(
                "primary backend down: the secondary serves",
                extra={
                    "primary": self.primary.name,
                    "secondary": self.secondary.name,
                    "failure_mode": self.replication.failure_mode,
                },
            )

    async def _begin_taking_writes(self) -> None:
        """Lenient mode, before the first write the secondary takes: record where its
        change log stood in every namespace (kept on the secondary: a restart resumes)."""
        if self._failover_positions is not None:
            return
        record = await self.secondary.load_entity(STATE_NAMESPACE, _FAILOVER, "state")
        if record is not None and not record.data.get("resolved"):
            self._failover_positions = {k: int(v) for k, v in record.data["positions"].items()}
            return
        positions: dict[str, int] = {}
        for namespace in await self.secondary.list_namespaces() or []:
            if namespace != STATE_NAMESPACE:
                page = await self.secondary.read_changes(namespace, after=0, limit=1)
                positions[namespace] = page.last_position
        try:
            await self.secondary.save_entity(
                STATE_NAMESPACE,
                _FAILOVER,
                "state",
                {"positions": positions, "since": time.time(), "resolved": False},
                expected_version=record.version if record is not None else 0,
            )
        except ConflictError:
            # Another replica recorded it first: its positions are the earlier ones.
            record = await self.secondary.load_entity(STATE_NAMESPACE, _FAILOVER, "state")
            if record is not None:
                positions = {k: int(v) for k, v in record.data["positions"].items()}
        self._failover_positions = positions

    async def _fail_back(self) -> None:
        """The primary answers again: check it kept its data, copy what the secondary
        took meanwhile (lenient), then let the primary serve."""
        try:
            for namespace, position in list(self.forward.positions.items()):
                page = await self.primary.read_changes(namespace, after=position, limit=1)
                if page.last_position < position:
                    self.problem = _PRIMARY_LOST_DATA
                    log.error(
                        "%s (namespace %r: its log ends at %d, %d events were replicated)",
                        self.problem,
                        namespace,
                        page.last_position,
                        position,
                    )
                    return
            if self._failover_positions is not None:
                positions = self._failover_positions
                # A failback retried after a failed attempt goes on from where that one got
                # (the merge is idempotent), instead of copying the whole outage again.
                reconciler = self._reconciler or Replicator(
                    self.secondary,
                    self.primary,
                    batch=self.replication.replication_batch,
                    reconcile=True,
                    positions=dict(positions),
                )
                self._reconciler = reconciler
                log.warning("primary backend answers again: copying the secondary's writes to it")

                async def namespaces() -> list[str]:
                    names = set(await self.secondary.list_namespaces() or []) | set(positions)
                    names.discard(STATE_NAMESPACE)
                    return sorted(names)

                # Copy while writes still go to the secondary, while that shrinks what is
                # left (each round ends where the log ended when it began) ...
                previous: int | None = None
                for round_number in range(_CATCH_UP_ROUNDS):
                    applied = await reconciler.run_round(await namespaces())
                    if self._closing:
                        return  # the round stopped short: the next start goes on from here
                    log.info("failback: round %d copied %d events", round_number + 1, applied)
                    if applied < _CATCH_UP_EVENTS or (
                        previous is not None and applied > previous // 2
                    ):
                        break
                    previous = applied
                log.info("failback: holding writes (%d in flight)", self._writes_in_flight)
                # ... then hold writes, wait for those in flight, copy the rest, switch.
                self._writes_open.clear()
                try:
                    while self._writes_in_flight:
                        self._writes_done.clear()
                        await self._writes_done.wait()
                    await reconciler.run_round(await namespaces())
                    if self._closing:
                        return
                    self._reconciler = None
                    self.serving = PRIMARY
                finally:
                    self._writes_open.set()
                record = await self.secondary.load_entity(STATE_NAMESPACE, _FAILOVER, "state")
                if record is not None:
                    with contextlib.suppress(ConflictError):
                        await self.secondary.save_entity(
                            STATE_NAMESPACE,
                            _FAILOVER,
                            "state",
                            {**record.data, "resolved": True},
                            expected_version=record.version,
                        )
                self._failover_positions = None
                self._reconciler = None
            self.serving = PRIMARY
            self.problem = None
            log.warning(
                "primary backend back: it serves again", extra={"primary": self.primary.name}
            )
        except (MemoryStoreError, ReplicationError) as exc:
            log.warning("failback postponed: %s", exc)

    # -- the replication loop ---------------------------------------------------------

    async def _claim(self) -> bool:
        """Hold the claim on replicating (one replica at a time); True while held."""
        now = time.time()
        lease = self.replication.replication_lease_seconds
        if self._claimed_until - now > lease / 2:
            return True
        record = await self.secondary.load_entity(STATE_NAMESPACE, _CLAIM, "forward")
        if record is not None:
            owner, until = record.data.get("owner"), float(record.data.get("until", 0))
            if owner != self._owner and until > now:
                self._claimed_until = 0.0
                return False
        try:
            saved = await self.secondary.save_entity(
                STATE_NAMESPACE,
                _CLAIM,
                "forward",
                {"owner": self._owner, "until": now + lease},
                expected_version=record.version if record is not None else 0,
            )
        except ConflictError:
            self._claimed_until = 0.0
            return False
        self._claim_version = saved.version
        self._claimed_until = now + lease
        return True

    async def _release_claim(self) -> None:
        if self._claimed_until <= time.time():
            return
        self._claimed_until = 0.0
        with contextlib.suppress(ConflictError):
            await self.secondary.save_entity(
                STATE_NAMESPACE,
                _CLAIM,
                "forward",
                {"owner": None, "until": 0},
                expected_version=self._claim_version,
            )

    @property
    def replicating(self) -> bool:
        return self._claimed_until > time.time()

    async def _replicate(self) -> None:
        poll = self.replication.replication_poll_seconds
        while not self._closing:
            applied = 0
            try:
                if self.serving == PRIMARY and await self._claim():
                    applied = await self.forward.run_round(await self.forward.known_namespaces())
                self._failing_in_a_row = 0
            except BackendUnavailableError as exc:
                log.info("replication paused: %s", exc)
            except ReplicationError as exc:
                # The primary answers with a log shorter than what was copied from it: it
                # restarted empty (or was restored from an older copy) faster than the
                # probes noticed. Serving it would show clients their data gone.
                self.problem = _PRIMARY_LOST_DATA
                log.error("replication stopped: %s", exc)
                if self.serving == PRIMARY:
                    self.serving = SECONDARY
                    self.failovers += 1
            except Exception as exc:
                # A memstore error, or anything else (a bug, a driver error that was not
                # translated): the task must not end, or replication stops for good with
                # nothing to show for it. Logged with its traceback (code locations and
                # the exception, never the data), counted, named in status(), retried.
                self._round_failed(exc)
                await self._pause(
                    min(poll * 2 ** min(self._failing_in_a_row, 20), _MAX_RETRY_SECONDS)
                )
                continue
            if not applied:
                await self._pause(poll)

    async def _pause(self, seconds: float) -> None:
        """Sleep between rounds, cut short by ``close``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _round_failed(self, exc: BaseException) -> None:
        self.round_errors += 1
        self._failing_in_a_row += 1
        # Only the type in status() (served by /v1/health and read by operators): a
        # message may quote a key or a driver's connection details; the log has both.
        self._last_error = type(exc).__qualname__
        self._last_error_at = time.time()
        log.exception(
            "replication round failed (%d in a row); retrying",
            self._failing_in_a_row,
            extra={"error_type": self._last_error},
        )

    # -- what the store reports ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Which backend serves, the lag this replica knows of, and why it is degraded."""
        now = time.time()
        # Replicating once the lag of every namespace is known, not at the claim.
        replicating = self.replicating and self.forward.measured
        lags = self.forward.lag if replicating else {}
        lag_events = sum(lag.events for lag in lags.values())
        lag_seconds = max((lag.seconds(now) for lag in lags.values()), default=0.0)
        reasons = []
        if self.serving == SECONDARY:
            reasons.append(f"the secondary ({self.secondary.name}) serves: the primary is down")
        if lag_seconds > self.replication.replication_max_lag_seconds:
            reasons.append(f"replication lag {lag_seconds:.1f} s")
        if self.problem:
            reasons.append(self.problem)
        if self._failing_in_a_row:
            reasons.append(
                f"replication rounds failing ({self._failing_in_a_row} in a row, last "
                f"{self._last_error}): retrying"
            )
        return {
            "serving": self.serving,
            "primary": self.primary.name,
            "secondary": self.secondary.name,
            "primary_up": self.primary_up,
            "failure_mode": self.replication.failure_mode,
            "failovers": self.failovers,
            "replicating": replicating,
            "reconciling": self._reconciler is not None,
            "lag_events": lag_events,
            "lag_seconds": round(lag_seconds, 3),
            "namespaces": {
                ns: {"events": lag.events, "seconds": round(lag.seconds(now), 3)}
                for ns, lag in sorted(lags.items())
            },
            "round_errors": self.round_errors,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
            "degraded": bool(reasons),
            "reasons": reasons,
        }

    # -- routing ------------------------------------------------------------------------

    async def _read(self, call: Callable[[DistributedMemoryBackend], Awaitable[T]]) -> T:
        if self.serving == PRIMARY:
            try:
                return await call(self.primary)
            except BackendUnavailableError:
                # Answer from the secondary now; enough of these and it serves outright.
                self._note_failure()
        return await call(self.secondary)

    async def _write(self, call: Callable[[DistributedMemoryBackend], Awaitable[T]]) -> T:
        if not self._writes_open.is_set():
            await self._writes_open.wait()
        if self.serving == PRIMARY:
            try:
                return await call(self.primary)
            except BackendUnavailableError:
                self._note_failure()
                raise
        if self.replication.failure_mode == "strict":
            raise BackendUnavailableError(
                f"the primary backend ({self.primary.name}) is down and "
                "MEMSTORE_FAILURE_MODE=strict: writes are refused until it is back; "
                f"reads are served from the secondary ({self.secondary.name})",
                serving=SECONDARY,
                failure_mode="strict",
            )
        self._writes_in_flight += 1
        try:
            await self._begin_taking_writes()
            return await call(self.secondary)
        finally:
            self._writes_in_flight -= 1
            if not self._writes_in_flight:
                self._writes_done.set()

    # -- cache invalidation ---------------------------------------------------------------

    async def publish_invalidation(self, key: str) -> None:
        await self._serving_backend().publish_invalidation(key)

    async def subscribe_invalidations(self, callback: InvalidationCallback) -> None:
        await self.primary.subscribe_invalidations(callback)
        await self.secondary.subscribe_invalidations(callback)

    # -- entities -----------------------------------------------------------------------

    async def save_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        data: JSONObject,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
        data_json: bytes | None = None,
    ) -> EntityRecord:
        return await self._write(
            lambda b: b.save_entity(
                namespace,
                entity_type,
                entity_id,
                data,
                expected_version=expected_version,
                ttl=ttl,
                data_json=data_json,
            )
        )

    async def save_entities(
        self, namespace: str, items: Sequence[EntityWrite]
    ) -> list[EntityRecord]:
        # the serving backend's batch (its atomicity); the copy follows its change events
        return await self._write(lambda b: b.save_entities(namespace, items))

    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None:
        return await self._read(lambda b: b.load_entity(namespace, entity_type, entity_id))

    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        return await self._write(
            lambda b: b.delete_entity(
                namespace, entity_type, entity_id, expected_version=expected_version
            )
        )

    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        return await self._read(
            lambda b: b.list_entities(namespace, entity_type, limit=limit, cursor=cursor)
        )

    async def list_entity_rows(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRow]:
        return await self._read(
            lambda b: b.list_entity_rows(namespace, entity_type, limit=limit, cursor=cursor)
        )

    async def get_entity_types(self, namespace: str) -> list[str]:
        return await self._read(lambda b: b.get_entity_types(namespace))

    async def import_entity(self, namespace: str, record: EntityRecord) -> None:
        await self._write(lambda b: b.import_entity(namespace, record))

    # -- retention: pins and read times are entity metadata, a prune is a write ----------

    async def set_entity_pinned(
        self, namespace: str, entity_type: str, entity_id: str, pinned: bool
    ) -> EntityRecord | None:
        return await self._write(
            lambda b: b.set_entity_pinned(namespace, entity_type, entity_id, pinned)
        )

    async def touch_entities(
        self, namespace: str, keys: Sequence[tuple[str, str]], at: float
    ) -> None:
        await self._write(lambda b: b.touch_entities(namespace, keys, at))

    async def prune(
        self, namespace: str, cutoffs: Cutoffs, now: float, *, dry_run: bool, limit: int
    ) -> PruneReport:
        def call(b: DistributedMemoryBackend) -> Awaitable[PruneReport]:
            return b.prune(namespace, cutoffs, now, dry_run=dry_run, limit=limit)

        # a dry run reads what the serving backend holds; an enforcement writes
        if dry_run:
            return await self._read(call)
        if not cutoffs.versions_on:
            return await self._write(call)
        # The other backend applies the same versions rules itself (at the same instant).
        return await self._erase_history(
            namespace,
            PendingErase(
                0,
                purge=False,
                keep=cutoffs.versions_keep,
                saved_before=cutoffs.versions_saved_before,
                now=now,
            ),
            call,
        )

    # -- conversations ------------------------------------------------------------------

    async def append_messages_batch(
        self, namespace: str, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        return await self._write(lambda b: b.append_messages_batch(namespace, items))

    async def append_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        return await self._write(
            lambda b: b.append_messages(
                namespace, conversation_id, messages, messages_json=messages_json
            )
        )

    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        return await self._read(
            lambda b: b.load_messages(
                namespace, conversation_id, limit=limit, before_seq=before_seq
            )
        )

    async def load_message_rows(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRow]:
        return await self._read(
            lambda b: b.load_message_rows(
                namespace, conversation_id, limit=limit, before_seq=before_seq
            )
        )

    async def replace_conversation(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        return await self._write(
            lambda b: b.replace_conversation(
                namespace, conversation_id, messages, messages_json=messages_json
            )
        )

    async def pop_message(self, namespace: str, conversation_id: str) -> MessageRecord | None:
        return await self._write(lambda b: b.pop_message(namespace, conversation_id))

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        return await self._write(lambda b: b.delete_conversation(namespace, conversation_id))

    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        return await self._read(
            lambda b: b.list_conversations(namespace, limit=limit, cursor=cursor)
        )

    async def import_conversation(
        self, namespace: str, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        await self._write(lambda b: b.import_conversation(namespace, conversation_id, messages))

    # -- version history: reads from the serving backend, writes to the writing one ------

    async def list_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[EntityVersion]:
        return await self._read(
            lambda b: b.list_entity_versions(
                namespace, entity_type, entity_id, cursor=cursor, limit=limit
            )
        )

    async def load_entity_version(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        return await self._read(
            lambda b: b.load_entity_version(
                namespace, entity_type, entity_id, version=version, at=at
            )
        )

    async def list_versioned_entities(
        self, namespace: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[EntityVersion]:
        return await self._read(
            lambda b: b.list_versioned_entities(namespace, cursor=cursor, limit=limit)
        )

    async def import_entity_versions(
        self, namespace: str, versions: Sequence[EntityVersion]
    ) -> None:
        await self._write(lambda b: b.import_entity_versions(namespace, versions))

    async def list_conversation_revisions(
        self, namespace: str, conversation_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ConversationRevision]:
        return await self._read(
            lambda b: b.list_conversation_revisions(
                namespace, conversation_id, cursor=cursor, limit=limit
            )
        )

    async def load_conversation_revision(
        self, namespace: str, conversation_id: str, revision: int
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        return await self._read(
            lambda b: b.load_conversation_revision(namespace, conversation_id, revision)
        )

    async def import_conversation_revision(
        self,
        namespace: str,
        revision: ConversationRevision,
        messages: Sequence[MessageRecord],
    ) -> None:
        await self._write(lambda b: b.import_conversation_revision(namespace, revision, messages))

    async def delete_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        versions: Sequence[tuple[int, bool]],
    ) -> int:
        return await self._write(
            lambda b: b.delete_entity_versions(namespace, entity_type, entity_id, versions)
        )

    async def delete_conversation_revisions(
        self, namespace: str, conversation_id: str, revisions: Sequence[int]
    ) -> int:
        return await self._write(
            lambda b: b.delete_conversation_revisions(namespace, conversation_id, revisions)
        )

    async def purge_history(self, namespace: str) -> int:
        return await self._erase_history(
            namespace,
            PendingErase(0, purge=True),
            lambda b: b.purge_history(namespace),
        )

    async def _erase_history(
        self,
        namespace: str,
        erase: PendingErase,
        call: Callable[[DistributedMemoryBackend], Awaitable[T]],
    ) -> T:
        """An erase of history (which makes no change event, so the replication never
        carries it): on the writing backend, then on the other one at once; when that one
        is down, the erase is recorded on the writing backend with where its change log
        stood and the replication applies it in order when it copies again (see
        :meth:`Replicator.step`). Keys the replication copies later get the writing
        backend's history exactly (:meth:`Replicator._copy_entity`)."""

        async def first(b: DistributedMemoryBackend) -> tuple[DistributedMemoryBackend, int, T]:
            # the log's end before the erase: every event after it copies erased history
            position = (await b.read_changes(namespace, after=0, limit=1)).last_position
            return b, position, await call(b)

        writer, position, result = await self._write(first)
        other = self.secondary if writer is self.primary else self.primary
        try:
            await erase.apply(other, namespace)
        except BaseException as exc:
            # the writer is erased already: whatever stopped the other side, the erase is
            # recorded so that the replication applies it there (an unrecorded erase would
            # leave the erased history on the other backend for good)
            await record_erase(writer, namespace, dataclasses.replace(erase, position=position))
            if not isinstance(exc, Exception):
                raise
            log.warning(
                "history erase of namespace %r deferred: the %s %s",
                namespace,
                SECONDARY if other is self.secondary else PRIMARY,
                "is down" if isinstance(exc, BackendUnavailableError) else "failed",
                exc_info=not isinstance(exc, BackendUnavailableError),
            )
        return result

    async def erase_pending(self, namespace: str) -> bool:
        """Whether an erase of the namespace's history waits for the other backend."""
        for backend in (self.primary, self.secondary):
            with contextlib.suppress(BackendUnavailableError):
                if await pending_erases(backend, namespace):
                    return True
        return False

    # -- tool usage and feedback --------------------------------------------------------

    async def record_tool_usage(
        self,
        namespace: str,
        record: ToolUsageRecord,
        *,
        input_json: bytes | None = None,
        output_json: bytes | None = None,
    ) -> ToolUsageRecord:
        return await self._write(
            lambda b: b.record_tool_usage(
                namespace, record, input_json=input_json, output_json=output_json
            )
        )

    async def query_tool_usage(
        self,
        namespace: str,
        *,
        tool_name: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[ToolUsageRecord]:
        return await self._read(
            lambda b: b.query_tool_usage(
                namespace, tool_name=tool_name, start=start, end=end, limit=limit, cursor=cursor
            )
        )

    async def get_tool_names(self, namespace: str) -> list[str]:
        return await self._read(lambda b: b.get_tool_names(namespace))

    async def load_tool_usage(self, namespace: str, record_id: str) -> ToolUsageRecord | None:
        return await self._read(lambda b: b.load_tool_usage(namespace, record_id))

    async def save_feedback(
        self, namespace: str, record: FeedbackRecord, *, data_json: bytes | None = None
    ) -> FeedbackRecord:
        return await self._write(lambda b: b.save_feedback(namespace, record, data_json=data_json))

    async def query_feedback(
        self,
        namespace: str,
        *,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        return await self._read(
            lambda b: b.query_feedback(
                namespace,
                agent_name=agent_name,
                feedback_type=feedback_type,
                limit=limit,
                cursor=cursor,
            )
        )

    async def load_feedback(self, namespace: str, record_id: str) -> FeedbackRecord | None:
        return await self._read(lambda b: b.load_feedback(namespace, record_id))

    # -- change log, summary, analytics, usage --------------------------------------------
    # The serving backend's own log: its positions are not the other backend's (see
    # docs/architecture.md, "Replication and failover", for what a feed reader sees).

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        return await self._read(lambda b: b.read_changes(namespace, after=after, limit=limit))

    async def trim_changes(self, namespace: str) -> None:
        await self._serving_backend().trim_changes(namespace)

    async def summary(self, namespace: str) -> MemorySummary:
        return await self._read(lambda b: b.summary(namespace))

    async def analytics_overview(self, namespace: str) -> AnalyticsOverview:
        return await self._read(lambda b: b.analytics_overview(namespace))

    async def analytics_growth(
        self, namespace: str, kind: str, window: BucketWindow
    ) -> GrowthSeries:
        return await self._read(lambda b: b.analytics_growth(namespace, kind, window))

    async def analytics_tools(
        self, namespace: str, window: BucketWindow, *, tool_name: str | None, limit: int
    ) -> ToolAnalytics:
        return await self._read(
            lambda b: b.analytics_tools(namespace, window, tool_name=tool_name, limit=limit)
        )

    async def analytics_feedback(self, namespace: str, window: BucketWindow) -> FeedbackAnalytics:
        return await self._read(lambda b: b.analytics_feedback(namespace, window))

    async def stored_bytes(self, namespace: str) -> int | None:
        return await self._read(lambda b: b.stored_bytes(namespace))

    async def logical_bytes(self, namespace: str) -> int | None:
        return await self._read(lambda b: b.logical_bytes(namespace))

    def tool_usage_cutoff(self, now: float) -> float | None:
        return self._serving_backend().tool_usage_cutoff(now)

    async def list_namespaces(self) -> list[str] | None:
        names = await self._read(lambda b: b.list_namespaces())
        return None if names is None else [n for n in names if n != STATE_NAMESPACE]

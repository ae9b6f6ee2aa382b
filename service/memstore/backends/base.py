"""The contract every storage backend implements.

The embedded backend is the reference behaviour; ``tests/contract`` runs the same suite
against every backend. Semantics every backend must keep:

* Every method takes the memory namespace first; namespaces never see each other's data.
* Names (namespace, type, ids, tool names) arrive already validated by the manager
  (``memstore.core.validation``); payloads arrive as parsed JSON objects and are stored exactly.
* Entities carry ``version``: 1 on create, +1 on every save. ``expected_version`` makes a
  save/delete conditional: ``0`` means "must not exist", ``n > 0`` means "must be at n";
  a mismatch raises ``ConflictError`` and writes nothing.
* An entity with ``expires_at <= now`` does not exist for any read, listing or count.
* Listings are ordered (entities by id; conversations by id; tool usage and feedback by
  (timestamp, id)) and paged with opaque cursors; a page never repeats or skips an item
  that existed unchanged for the whole walk.
* Conversation append is O(1) per message and atomic per call; ``seq`` starts at 1.
  ``pop_message`` removes the last message atomically on the server (never a read then a
  replace), so concurrent pops each get a different message; a conversation stays
  ``1..n`` contiguous, so the next append takes the popped ``seq`` again. (One exception:
  MongoDB without transactions, where a pop racing an append from another process can
  leave the popped ``seq`` as a gap; docs/architecture.md, the pop table.)
* Every write that changes something appends one event to its namespace's change log
  (``read_changes``), with the next position, the kind, the keys, the version, the time
  and the actor (``memstore.core.changes``); a write that changes nothing (a conflict, a
  delete of nothing, a pop of nothing, a retried tool use already stored) appends
  nothing. The event is readable once the write returns.
* Analytics (``analytics_*``) are computed where the data is (SQL, aggregation pipelines,
  Lua), never by reading every record into the service, and are exact: every backend
  gives the same numbers for the same data, by the definitions of
  ``memstore.core.analytics`` (buckets, nearest-rank percentiles, histogram bins).
* Driver errors become ``BackendUnavailableError`` (retryable) or another
  ``MemoryStoreError``; nothing else escapes.
* Write methods take the payload's compact JSON too (``data_json``, ``messages_json``,
  ``input_json``/``output_json``) when the caller has it: the manager passes the bytes its
  size check produced, so a payload is serialised once. ``None``: the backend encodes it.

Version history (docs/architecture.md, "Version history"):

* Every save of an entity keeps the version it replaces as a *history row*: the whole
  record (``EntityVersion``: version, data, ``saved_at`` = that version's ``updated_at``,
  ``actor`` = who wrote that version, ``expires_at``). The current version stays in the
  entity row (reads cost what they did); a history row is written in the same atomic step
  as the save that makes it.
* A delete leaves a *tombstone*: the deleted version moves into history and a tombstone
  row is added with the same version number (``data`` ``None``, ``deleted`` true,
  ``saved_at`` = the delete time, ``actor`` = the deleter). A tombstone consumes no number.
* Versions never restart: a create (entity row absent or expired) takes 1 + the highest
  version recorded for the key (current, history or tombstone), else 1; so
  ``expected_version=n`` can never match a different object, and ``expected_version=0``
  ("must not exist") holds after a delete. A save over an expired row is such a create
  (the expired row moves to history); the purge of an expired row moves it to history too
  (no tombstone: it was not deleted), so the numbering continues. The one exception is
  a restore: ``import_entity`` rewinds the key to the imported version (below).
* Retention pruning an entity removes it like a delete: the version moves to history and
  a tombstone with the actor ``core.changes.RETENTION_ACTOR`` keeps the numbering.
  ``prune`` with the ``versions`` rules of ``Cutoffs`` removes history rows and
  conversation revisions (``core.retention``); it never removes the rank-0 row of a key
  with no entity row stored, nor a conversation's newest revision (they hold numbering).
* The actor is ``core.changes.current_actor_name()`` at the time of the write (the same
  source as the change log's actor; never a secret, ``None`` when nobody declared one).
* History methods return rows as stored, ``expires_at`` included: an entity row whose
  ``expires_at`` has passed is still the key's newest version; whether a version was
  readable at an instant is the caller's judgement (``expires_at <= at``: it was not).
* ``import_entity`` of version n *rewinds* the key to it: in one atomic step, the key's
  history rows and tombstones of version n or higher go, a current row of a lower version
  moves into history as a save's does (of a higher one it is dropped, of n it is just
  replaced), and the record is written exactly. Replication imports increasing versions,
  so a replicated secondary builds the same history as its primary; a restore of an
  older dump leaves the key as it was at that version, numbered on from n (the only case
  where numbers come again: an ``expected_version``/ETag of a rewound version matches
  the restored object, which is that version).
* ``replace_conversation`` keeps the replaced messages as a *revision*
  (``ConversationRevision``: numbers 1.. per conversation, 1 + the highest stored, so
  never reused while one is stored; ``replaced_at``, ``actor``, ``message_count`` and the
  messages exactly: seq, message, created_at), in the same atomic step. Replacing an
  empty or absent conversation makes none; ``import_conversation`` and appends/pops make
  none. ``delete_conversation`` and retention's whole-conversation prune remove its
  revisions too (delete = erase); a pop that empties a conversation keeps them.
* History rows and revisions append no change-log event of their own (the save, delete
  or replace that made them already did); the ``import_*`` methods append none beyond
  what import already does. Without a versions policy history is kept without bound;
  ``purge_history`` erases it for a namespace.

What the backends share (paging, ``expected_version`` checks, the expired-entity purge,
driver-error translation) is in ``memstore.backends.common``.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from memstore.backends.common import batch_outcome
from memstore.core.analytics import (
    AnalyticsOverview,
    BucketWindow,
    FeedbackAnalytics,
    GrowthSeries,
    ToolAnalytics,
)
from memstore.core.records import (
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
from memstore.core.retention import Cutoffs, PruneReport

T = TypeVar("T")
W = TypeVar("W")

if TYPE_CHECKING:
    from memstore.core.settings import StoreSettings

InvalidationCallback = Callable[[str | None], Awaitable[None]]
"""Called with a cache key to drop, or ``None`` to drop everything (e.g. channel lost)."""


class DistributedMemoryBackend(abc.ABC):
    """Abstract storage backend. One instance is shared by all requests of a process."""

    #: short name used by the factory, metrics labels and span attributes
    name: str = "abstract"

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings

    # -- lifecycle --------------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and create schema/indexes idempotently. Called once."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection. Safe to call twice."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the backend answers now. Never raises."""

    # -- cross-replica cache invalidation (optional) -------------------------------------

    async def publish_invalidation(self, key: str) -> None:  # noqa: B027 - optional hook
        """Tell other replicas that ``key`` changed. Default: single process, nothing to do."""

    async def subscribe_invalidations(self, callback: InvalidationCallback) -> None:  # noqa: B027
        """Start delivering other replicas' invalidations to ``callback``. Default: none."""

    # -- entities -----------------------------------------------------------------------

    @abc.abstractmethod
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
        """Create or replace. ``ttl`` (seconds) sets ``expires_at``; ``None`` clears it.
        ``created_at`` survives replaces; a save over an expired entity is a create."""

    async def save_entities(
        self, namespace: str, items: Sequence[EntityWrite]
    ) -> list[EntityRecord]:
        """Save several entities of one namespace: for each item exactly what
        ``save_entity`` does (version, history row, change event, stored and logical
        bytes), records in item order. The keys are distinct (the manager checks).

        Atomicity (docs/architecture.md, "Batch writes"): this default writes the items
        one after the other in item order (so their change events are in item order, as
        on every backend), each atomic by itself and the batch not: an item in conflict
        is not written and every other item is. Then a ``ConflictError`` names the first
        item in conflict (``item``), all of them (``items``) and the items written
        (``written``). The embedded backend overrides it with one transaction (all or
        nothing), Redis with one pipeline per node."""
        return await _one_by_one(
            lambda item: self.save_entity(
                namespace,
                item.entity_type,
                item.entity_id,
                item.data,
                expected_version=item.expected_version,
                ttl=item.ttl,
                data_json=item.data_json,
            ),
            items,
        )

    async def append_messages_batch(
        self, namespace: str, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        """Append to several conversations of one namespace: for each item exactly what
        ``append_messages`` does, results in item order. The conversations are distinct.
        This default appends one conversation after the other in item order, each
        atomically by itself (an append has no precondition, so only a backend failure
        stops one; the error then lists the items ``written``); the embedded backend
        overrides it with one transaction, Redis with one pipeline per node."""
        return await _one_by_one(
            lambda item: self.append_messages(
                namespace, item.conversation_id, item.messages, messages_json=item.messages_json
            ),
            items,
        )

    @abc.abstractmethod
    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None: ...

    @abc.abstractmethod
    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        """True if something was deleted. With ``expected_version`` a mismatch (including
        a missing entity when ``expected_version > 0``) raises ``ConflictError``."""

    @abc.abstractmethod
    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        """Entities of one type ordered by id."""

    async def list_entity_rows(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRow]:
        """``list_entities``, each entity's data as its JSON text (what an HTTP answer
        carries). This serialises what ``list_entities`` returns; a backend that stores
        the data as JSON text returns it as stored instead."""
        page = await self.list_entities(namespace, entity_type, limit=limit, cursor=cursor)
        return Page([EntityRow.of(r) for r in page.items], page.next_cursor)

    @abc.abstractmethod
    async def get_entity_types(self, namespace: str) -> list[str]:
        """Sorted types having at least one live entity."""

    # -- conversations ------------------------------------------------------------------

    @abc.abstractmethod
    async def append_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        """Append in order, atomically; creates the conversation if needed."""

    @abc.abstractmethod
    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        """Messages in ascending ``seq``. ``limit``: only the last ``limit`` messages (of
        those with ``seq < before_seq`` when given). Unknown conversation: ``[]``."""

    async def load_message_rows(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRow]:
        """``load_messages``, each message as its JSON text (what an HTTP answer carries).
        This serialises what ``load_messages`` returns; a backend that stores messages as
        JSON text returns them as stored instead (and its ``load_messages`` parses these)."""
        records = await self.load_messages(
            namespace, conversation_id, limit=limit, before_seq=before_seq
        )
        return [MessageRow(m.seq, m.created_at, orjson.dumps(m.message)) for m in records]

    @abc.abstractmethod
    async def replace_conversation(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        """Atomically replace the whole history (seq restarts at 1). Empty list keeps an
        empty conversation."""

    @abc.abstractmethod
    async def pop_message(self, namespace: str, conversation_id: str) -> MessageRecord | None:
        """Remove and return the message with the highest ``seq``, atomically; ``None``
        when the conversation has none. The counts and stored bytes shrink with it, the
        next append reuses its ``seq``, and popping the only message deletes the
        conversation (a conversation is its messages). A retry of a pop whose answer was
        lost must not pop a second message where the backend retries writes itself."""

    @abc.abstractmethod
    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool: ...

    @abc.abstractmethod
    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        """Conversations ordered by id."""

    # -- tool usage ---------------------------------------------------------------------

    @abc.abstractmethod
    async def record_tool_usage(
        self,
        namespace: str,
        record: ToolUsageRecord,
        *,
        input_json: bytes | None = None,
        output_json: bytes | None = None,
    ) -> ToolUsageRecord:
        """Store one use; ``record.id`` is unique (the manager generates it). Recording the
        same id twice stores it once (retries are safe)."""

    @abc.abstractmethod
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
        """Ordered by (timestamp, id); ``start <= timestamp < end``."""

    @abc.abstractmethod
    async def get_tool_names(self, namespace: str) -> list[str]:
        """Sorted names of tools with at least one recorded use."""

    # -- learning feedback (seed compatibility) -------------------------------------------

    @abc.abstractmethod
    async def save_feedback(
        self, namespace: str, record: FeedbackRecord, *, data_json: bytes | None = None
    ) -> FeedbackRecord: ...

    @abc.abstractmethod
    async def query_feedback(
        self,
        namespace: str,
        *,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        """Ordered by (timestamp, id)."""

    # -- one tool use or feedback record by id (replication) ------------------------------

    async def load_tool_usage(self, namespace: str, record_id: str) -> ToolUsageRecord | None:
        """The tool use stored under ``record_id`` exactly as ``query_tool_usage`` returns
        it, or ``None`` (never stored, or out of the backend's tool-usage retention)."""
        raise NotImplementedError(f"{self.name} cannot load a tool use by id")

    async def load_feedback(self, namespace: str, record_id: str) -> FeedbackRecord | None:
        """The feedback record stored under ``record_id``, or ``None``."""
        raise NotImplementedError(f"{self.name} cannot load feedback by id")

    # -- restore (export/import) -----------------------------------------------------------

    async def import_entity(self, namespace: str, record: EntityRecord) -> None:
        """Write exactly ``record`` (data, version, created_at, updated_at, expires_at,
        pinned) under its key, replacing whatever is stored there, with no version check: the
        restore side of an export (``memstore.memory.export``). Like a save, it appends
        one ``entity.saved`` event with the record's version and tells the other replicas
        (their caches drop the key); the manager drops its own cached copy. The record's
        ``created_at`` replaces any earlier creation time (analytics count it there).
        ``expires_at`` in the past stores nothing readable (the entity is expired).

        Version history: the import rewinds the key to the record's version n, atomically
        with the write (the same transaction or script; MongoDB without transactions:
        the rows first, then the entity, so a writer that stops in between leaves no row
        ahead of the current one): history rows and tombstones of version >= n are
        removed, the row it replaces moves into history when its version is lower than n
        (as a save's does: a replica fed by imports of increasing versions keeps the same
        history) and is dropped when higher. So the next save is n + 1 and the listing
        never shows a row ahead of the current version. After a restore of an older dump
        an ``expected_version`` (an ETag) of a rewound version can match again: the
        restored object is that version. The imported version's actor is the importer's
        ``current_actor_name()``."""
        raise NotImplementedError(f"{self.name} cannot import")

    async def import_conversation(
        self, namespace: str, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        """Replace the whole conversation with exactly ``messages`` (each one's ``seq``,
        ``message`` and ``created_at`` kept; ``conversation_id`` of the records is
        ignored), atomically, as ``replace_conversation`` does: counts and stored bytes
        follow, one ``conversation.replaced`` event (version = the highest ``seq``,
        count = the number of messages), the other replicas told. The seqs must increase
        strictly from 1 or later (retention's keep-last-N leaves a conversation starting
        after 1; gaps are kept as given) and are stored exactly; the next append takes
        the highest + 1. Anything else raises ``InvalidInputError`` and writes nothing.
        The conversation's ``created_at``/``updated_at`` become its first/last message's
        ``created_at`` (now, for an empty one, which is kept as an empty conversation)."""
        raise NotImplementedError(f"{self.name} cannot import")

    # -- version history (module docstring, "Version history") ----------------------------

    @abc.abstractmethod
    async def list_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[EntityVersion]:
        """Every version of the key, newest first: the current row (expired or not), then
        history rows and tombstones by version descending (a tombstone before the live row
        of the same version). Paged with an opaque cursor. Empty when the key has none."""

    @abc.abstractmethod
    async def load_entity_version(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        """Exactly one of ``version`` / ``at`` (else ``InvalidInputError``). ``version``:
        that live version (the current row or a history row; never a tombstone). ``at``:
        the state at the instant ``at``: the newest row (live or tombstone, in the order of
        ``list_entity_versions``) with ``saved_at <= at``. ``None`` when there is none."""

    @abc.abstractmethod
    async def list_versioned_entities(
        self, namespace: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[EntityVersion]:
        """Every key with an entity row or a history row, one item per key: its newest row
        (the current row; else its newest history row or tombstone), ordered by (type, id).
        Used by the snapshot revert (and an export of history)."""

    @abc.abstractmethod
    async def import_entity_versions(
        self, namespace: str, versions: Sequence[EntityVersion]
    ) -> None:
        """Write these history rows exactly as given (restore, replication): a row of the
        same (type, id, version, deleted) already stored is replaced. Never touches the
        entity rows; appends no event."""

    @abc.abstractmethod
    async def list_conversation_revisions(
        self, namespace: str, conversation_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ConversationRevision]:
        """The conversation's revisions, newest first, paged with an opaque cursor."""

    @abc.abstractmethod
    async def load_conversation_revision(
        self, namespace: str, conversation_id: str, revision: int
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        """The revision and its messages (ascending ``seq``, exactly as they were), or
        ``None``."""

    @abc.abstractmethod
    async def import_conversation_revision(
        self,
        namespace: str,
        revision: ConversationRevision,
        messages: Sequence[MessageRecord],
    ) -> None:
        """Write this revision exactly (replacing one of the same number); the messages'
        ``conversation_id`` is ignored. Never touches the live conversation; no event."""

    @abc.abstractmethod
    async def delete_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        versions: Sequence[tuple[int, bool]],
    ) -> int:
        """Remove the key's history rows named by ``(version, deleted)`` (a tombstone is
        ``(n, True)``); rows not stored are ignored. Never touches the entity row; appends
        no event. The replication uses it to make a copy's history exactly the source's
        (an erase on the source must not survive on the copy). Returns rows removed."""

    @abc.abstractmethod
    async def delete_conversation_revisions(
        self, namespace: str, conversation_id: str, revisions: Sequence[int]
    ) -> int:
        """Remove these revisions (and their messages) of the conversation; revisions not
        stored are ignored. Never touches the live conversation; appends no event.
        Returns revisions removed."""

    @abc.abstractmethod
    async def purge_history(self, namespace: str) -> int:
        """Erase the namespace's version history: every entity history row and tombstone
        and every conversation revision, except the rank-0 row of each key that has no
        entity row stored (it holds the numbering, so no version is ever reused: a
        deleted key keeps its tombstone, which holds no data). Current rows untouched; no
        event. Returns the number of rows removed."""

    async def erase_pending(self, namespace: str) -> bool:
        """Whether an erase of the namespace's history (``purge_history``, retention's
        versions rules) has not reached every copy of it yet: a replicated store whose
        other backend was down applies it there later."""
        return False

    # -- change log -----------------------------------------------------------------------

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        """Up to ``limit`` events with ``position > after`` in ascending position, without
        holes: positions run on by exactly 1 from ``after`` except across events removed
        by retention. Every replica reading the same namespace sees the same events in
        the same order."""
        raise NotImplementedError(f"{self.name} has no change log yet")

    async def trim_changes(self, namespace: str) -> None:
        """Apply the retention settings now: remove events older than
        ``changes_retention_seconds`` and all but the newest ``changes_max_events``.
        Positions are never reused; ``last_position`` survives trimming everything."""
        raise NotImplementedError(f"{self.name} has no change log yet")

    # -- retention (docs/architecture.md, "Retention") ------------------------------------

    async def set_entity_pinned(
        self, namespace: str, entity_type: str, entity_id: str, pinned: bool
    ) -> EntityRecord | None:
        """Set or clear the entity's pin and return it (``None``: no live entity). The pin
        is metadata: the version, ``updated_at`` and the payload stay, a save keeps it, and
        a create (also over an expired entity) starts unpinned. A change of the pin appends
        no event (the data did not change); callers drop cached copies."""
        raise NotImplementedError(f"{self.name} has no retention")

    async def touch_entities(
        self, namespace: str, keys: Sequence[tuple[str, str]], at: float
    ) -> None:
        """Record a read of each (type, id) at ``at``: ``accessed_at`` becomes the larger of
        its value and ``at`` (entities that do not exist are left alone). One round trip
        per shard or statement, never one per key; appends no event."""
        raise NotImplementedError(f"{self.name} has no retention")

    async def prune(
        self, namespace: str, cutoffs: Cutoffs, now: float, *, dry_run: bool, limit: int
    ) -> PruneReport:
        """Apply ``cutoffs`` (``core.retention``: the rules and the order of each kind) at
        ``now``: per kind, the first ``limit`` items the rules select, and ``more`` when
        others follow. ``dry_run``: only list them. Otherwise remove exactly those (an item
        changed since it was selected, e.g. saved, read or pinned, is re-judged at the
        moment of removal and kept if it no longer qualifies) and append one event per
        removed entity (``entity.pruned``) and conversation (``conversation.pruned``, or
        ``conversation.trimmed`` with the last removed ``seq`` and the count), and one per
        batch of tool uses (``tool_usage.pruned``) and feedback (``feedback.pruned``)
        with the count. Computed where the data is, in bounded batches; exact on every
        backend. A pruned entity leaves a tombstone like a delete (actor
        ``core.changes.RETENTION_ACTOR``). The ``versions`` kind (``Cutoffs.versions_keep``,
        ``versions_saved_before``) removes history rows and conversation revisions in
        the order of ``core.retention`` (``report.versions``) and appends no event."""
        raise NotImplementedError(f"{self.name} has no retention")

    # -- summary ------------------------------------------------------------------------

    @abc.abstractmethod
    async def summary(self, namespace: str) -> MemorySummary:
        """Exact counts of live data in the namespace."""

    # -- analytics ----------------------------------------------------------------------

    async def analytics_overview(self, namespace: str) -> AnalyticsOverview:
        """Live items per kind: counts, payload bytes, oldest and newest creation time
        (entities per type, by ``created_at``; messages by ``created_at``; tool uses and
        feedback by ``timestamp``)."""
        raise NotImplementedError(f"{self.name} has no analytics")

    async def analytics_growth(
        self, namespace: str, kind: str, window: BucketWindow
    ) -> GrowthSeries:
        """Items of ``kind`` (``core.analytics.GROWTH_KINDS``) created per bucket of
        ``window``; live items only (a deleted or expired entity no longer counts)."""
        raise NotImplementedError(f"{self.name} has no analytics")

    async def analytics_tools(
        self, namespace: str, window: BucketWindow, *, tool_name: str | None, limit: int
    ) -> ToolAnalytics:
        """Per tool, the uses in ``window``: calls, successes, nearest-rank duration
        percentiles, the fixed-bound histogram, calls and successes per bucket, and the
        ``limit`` slowest and most recent failed calls. ``tool_name``: that tool only."""
        raise NotImplementedError(f"{self.name} has no analytics")

    async def analytics_feedback(self, namespace: str, window: BucketWindow) -> FeedbackAnalytics:
        """Feedback per bucket of ``window``: records, and count and mean of the numeric
        ``data.rating`` values."""
        raise NotImplementedError(f"{self.name} has no analytics")

    # -- optional usage hooks --------------------------------------------------------------

    async def stored_bytes(self, namespace: str) -> int | None:
        """Bytes of stored payloads in the namespace (for the bytes quota); ``None`` when
        the backend cannot tell cheaply. Called at most every few seconds per namespace."""
        return None

    async def logical_bytes(self, namespace: str) -> int | None:
        """Bytes of the namespace's payloads as they were written, before compression and
        encryption at rest: a sealed payload's envelope ``n`` (``core/payload_codec.py``),
        a plain one's stored size; what the bytes quota counts. ``None`` when the backend
        cannot tell. Without sealed payloads it equals :meth:`stored_bytes`."""
        return None

    def tool_usage_cutoff(self, now: float) -> float | None:
        """The oldest timestamp a tool use may have and still be stored at ``now`` (reads
        already leave older ones out, even before a trim deletes them); ``None`` when the
        backend keeps tool uses forever."""
        return None

    async def list_namespaces(self) -> list[str] | None:
        """Sorted namespaces holding data (for the admin cross-namespace summary), version
        history included (a namespace whose entities were all deleted still holds their
        tombstones); ``None`` when the backend cannot enumerate them."""
        return None

    def describe(self) -> dict[str, Any]:
        """Non-secret facts for logs and /v1/metrics (never passwords or full URIs)."""
        return {"backend": self.name}


async def _one_by_one(write: Callable[[W], Awaitable[T]], items: Sequence[W]) -> list[T]:
    """``write`` each item in item order, the next once the last is done (so the change
    log holds their events in item order), whatever each outcome; then
    ``batch_outcome``."""
    outcomes: list[T | BaseException] = []
    for item in items:
        try:
            outcomes.append(await write(item))
        except Exception as exc:  # batch_outcome sorts out each item's error
            outcomes.append(exc)
    return batch_outcome(outcomes)

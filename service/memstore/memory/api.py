"""``MemoryAPI``: what an agent calls, whether the memory is in process or over HTTP.

``DistributedMemoryManager`` (in process) and ``MemoryClient`` (the HTTP service) both
subclass this protocol, so swapping one for the other is one line and mypy checks it: each
must implement every operation below with a compatible signature (a missing one makes the
class abstract, and ``make lint`` fails where it is instantiated).

Two kinds of methods:

* operations (``...`` bodies): each implementation provides its own (validation and
  backend calls in the manager, HTTP requests in the client);
* the seed-compatible conveniences (``load_entity``, ``load_entities_by_type``,
  ``append_message``, ``load_conversation_history``, ``load_tool_usage``,
  ``get_learning_feedback``, ``get_memory_summary``): written once, here, over the
  operations. They return plain JSON-able values like the seed's implementation did; the
  operations return records.

``clear_cache`` and ``get_metrics`` are not part of it: the seed made them synchronous on
the manager, and over HTTP they are network calls (async on the client).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any, Protocol, Self

from memstore.core.analytics import (
    AnalyticsOverview,
    FeedbackAnalytics,
    GrowthSeries,
    ToolAnalytics,
)
from memstore.core.records import (
    ChangeEvent,
    ChangePage,
    ConversationInfo,
    ConversationRevision,
    EntityHit,
    EntityRecord,
    EntityVersion,
    EntityWrite,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageHit,
    MessageRecord,
    MessagesWrite,
    Page,
    SearchPage,
    Snapshot,
    SnapshotRevert,
    ToolUsageHit,
    ToolUsageRecord,
)
from memstore.core.retention import PruneReport, RetentionPolicy
from memstore.core.search import SearchMode


class MemoryAPI(Protocol):
    """One memory namespace: entities, conversations, tool usage, learning feedback."""

    namespace: str

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the memory answers. Never raises."""
        ...

    def for_namespace(self, namespace: str) -> MemoryAPI:
        """The same memory, another namespace, sharing connections."""
        ...

    def _walk_page_size(self) -> int | None:
        """Page size for the conveniences that walk every page (``None``: the default)."""
        return None

    # -- entities -----------------------------------------------------------------------

    async def save_entity(
        self,
        entity_type: str,
        entity_id: str,
        data: JSONObject,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> EntityRecord: ...

    async def save_entities(self, items: Sequence[EntityWrite]) -> list[EntityRecord]:
        """Several saves of one namespace in one call; all checked before any is written
        (docs/architecture.md, "Batch writes")."""
        ...

    async def get_entity(
        self,
        entity_type: str,
        entity_id: str,
        *,
        min_version: int | None = None,
        use_cache: bool = True,
    ) -> EntityRecord | None:
        """The entity, or ``None``. Read-your-writes: ``min_version`` (a version the caller
        wrote or read, e.g. through another replica) keeps a replica's cached copy older
        than it from being served; ``use_cache=False`` reads the backend. Neither is a
        precondition: the answer is the stored state, which after a delete may be
        ``None`` (a re-create numbers on from the deleted version)."""
        ...

    async def delete_entity(
        self, entity_type: str, entity_id: str, *, expected_version: int | None = None
    ) -> bool: ...

    async def list_entities(
        self, entity_type: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[EntityRecord]: ...

    async def get_entity_types(self) -> list[str]: ...

    # -- search (recall) ----------------------------------------------------------------

    async def search_entities(
        self,
        query: str | None = None,
        *,
        types: list[str] | None = None,
        filter: JSONObject | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[EntityHit]:
        """Entities of this namespace (of ``types``, when given) matching ``filter`` and
        ranked against ``query`` (``memstore.core.search`` says how each mode ranks).
        Expired entities are never returned. Reads its own writes: a search sees every
        write acknowledged before it started, through any replica."""
        ...

    async def search_messages(
        self,
        query: str,
        *,
        conversation_id: str | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[MessageHit]:
        """Messages of this namespace (of one conversation, when given) ranked against
        ``query`` over their text content."""
        ...

    async def search_tool_usage(
        self,
        query: str,
        *,
        tool_name: str | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[ToolUsageHit]:
        """Tool-usage records (of one tool, when given) ranked against ``query`` over their
        tool name, input and output."""
        ...

    async def load_entity(self, entity_type: str, entity_id: str) -> JSONObject | None:
        """The entity's data (seed API), or ``None``."""
        record = await self.get_entity(entity_type, entity_id)
        return None if record is None else record.data

    async def load_entities_by_type(self, entity_type: str) -> dict[str, JSONObject]:
        """Every entity of a type as ``{id: data}`` (seed API; walks all pages)."""
        result: dict[str, JSONObject] = {}
        cursor: str | None = None
        while True:
            page = await self.list_entities(
                entity_type, limit=self._walk_page_size(), cursor=cursor
            )
            result.update((e.id, e.data) for e in page.items)
            if page.next_cursor is None:
                return result
            cursor = page.next_cursor

    # -- conversations ------------------------------------------------------------------

    async def append_messages(
        self, messages: list[JSONObject], conversation_id: str | None = None
    ) -> list[MessageRecord]: ...

    async def append_messages_batch(
        self, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        """Appends to several conversations of one namespace in one call."""
        ...

    async def load_messages(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]: ...

    async def save_conversation_history(
        self, messages: list[JSONObject], conversation_id: str | None = None
    ) -> list[MessageRecord]:
        """Replace the whole history (seed API)."""
        ...

    async def pop_message(self, conversation_id: str | None = None) -> MessageRecord | None:
        """Remove and return the conversation's last message, atomically on the server
        (concurrent pops each get a different message); ``None`` when it has none. The
        next append reuses the popped ``seq`` (except on MongoDB without transactions when
        another process appends meanwhile: then it stays a gap); popping the only message
        deletes the conversation."""
        ...

    async def delete_conversation(self, conversation_id: str | None = None) -> bool: ...

    async def list_conversations(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[ConversationInfo]: ...

    async def append_message(
        self, message: JSONObject, conversation_id: str | None = None
    ) -> MessageRecord:
        """Append one message (seed API)."""
        return (await self.append_messages([message], conversation_id))[0]

    async def load_conversation_history(
        self, conversation_id: str | None = None, *, limit: int | None = None
    ) -> list[JSONObject]:
        """The messages themselves (seed API): the whole history, or the last ``limit``."""
        return [m.message for m in await self.load_messages(conversation_id, limit=limit)]

    # -- tool usage ---------------------------------------------------------------------

    async def save_tool_usage(
        self,
        tool_name: str,
        args: Any,
        result: Any,
        *,
        duration_ms: float = 0.0,
        success: bool = True,
        conversation_id: str | None = None,
        timestamp: float | None = None,
        usage_id: str | None = None,
    ) -> ToolUsageRecord:
        """Record one tool use (seed API: ``save_tool_usage(tool_name, args, result)``).
        ``usage_id`` makes a retried call idempotent."""
        ...

    async def query_tool_usage(
        self,
        tool_name: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ToolUsageRecord]: ...

    async def get_tool_names(self) -> list[str]: ...

    async def load_tool_usage(self, tool_name: str | None = None) -> list[JSONObject]:
        """Every recorded use, oldest first, as dicts (seed API; walks all pages)."""
        out: list[JSONObject] = []
        cursor: str | None = None
        while True:
            page = await self.query_tool_usage(
                tool_name, limit=self._walk_page_size(), cursor=cursor
            )
            out += [r.to_dict() for r in page.items]
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    # -- learning feedback --------------------------------------------------------------

    async def save_learning_feedback(
        self, agent_name: str, feedback_type: str, data: Any
    ) -> FeedbackRecord: ...

    async def query_learning_feedback(
        self,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]: ...

    async def get_learning_feedback(
        self, agent_name: str | None = None, feedback_type: str | None = None
    ) -> list[JSONObject]:
        """Every feedback record, oldest first, as dicts (seed API; walks all pages)."""
        out: list[JSONObject] = []
        cursor: str | None = None
        while True:
            page = await self.query_learning_feedback(
                agent_name, feedback_type, limit=self._walk_page_size(), cursor=cursor
            )
            out += [r.to_dict() for r in page.items]
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    # -- change log -----------------------------------------------------------------------

    async def read_changes(self, *, after: int = 0, limit: int | None = None) -> ChangePage:
        """One page of this namespace's change log: events with ``position > after``,
        oldest first. ``ChangesPrunedError`` when retention already removed events right
        after ``after`` (they would be missed)."""
        ...

    def watch(
        self,
        *,
        after: int = 0,
        kinds: str | Iterable[str] | None = None,
        entity_type: str | None = None,
        conversation_id: str | None = None,
    ) -> AsyncGenerator[ChangeEvent, None]:
        """``async for change in memory.watch(...)``: every change after ``after``, in
        position order (the same order on every replica), waiting for new ones forever.
        Filters: ``kinds`` (one or several of ``memstore.core.changes.CHANGE_KINDS``),
        ``entity_type``, ``conversation_id``. Resume after a stop with ``after`` = the
        last ``position`` seen. ``ChangesPrunedError`` when retention removed changes not
        yet read."""
        ...

    # -- analytics ----------------------------------------------------------------------
    # Computed by the backend (memstore.core.analytics defines buckets, percentiles and
    # bins). ``bucket``: "hour" or "day"; ``since``/``until`` (POSIX seconds) are widened
    # to whole buckets, default: the last 48 hours or 30 days up to now.

    async def analytics_overview(self) -> AnalyticsOverview:
        """Counts, stored bytes, oldest and newest item per kind (entities per type)."""
        ...

    async def analytics_growth(
        self,
        kind: str,
        *,
        bucket: str = "hour",
        since: float | None = None,
        until: float | None = None,
    ) -> GrowthSeries:
        """Items of ``kind`` (entities, messages, tool_usage, feedback) created per bucket,
        every bucket of the window included (zero when empty)."""
        ...

    async def analytics_tools(
        self,
        *,
        bucket: str = "hour",
        since: float | None = None,
        until: float | None = None,
        tool_name: str | None = None,
        limit: int | None = None,
    ) -> ToolAnalytics:
        """Per tool: calls, successes, failures, success rate, nearest-rank p50/p90/p99 of
        the duration, a fixed-bound histogram, calls and successes per bucket, and the
        ``limit`` (default 5, at most 100) slowest and most recent failed calls."""
        ...

    async def analytics_feedback(
        self, *, bucket: str = "hour", since: float | None = None, until: float | None = None
    ) -> FeedbackAnalytics:
        """Feedback records per bucket and the mean of their numeric ``data.rating``."""
        ...

    # -- retention (docs/architecture.md, "Retention") --------------------------------

    async def pin_entity(
        self, entity_type: str, entity_id: str, pinned: bool = True
    ) -> EntityRecord | None:
        """Pin (``pinned=False``: unpin) an entity: retention never removes a pinned one.
        The entity (same version), or ``None`` when there is none."""
        ...

    async def get_retention_policy(self) -> RetentionPolicy:
        """The namespace's retention policy (the default with the namespace's override)."""
        ...

    async def retention_dry_run(
        self, *, at: float | None = None, limit: int | None = None
    ) -> PruneReport:
        """What the namespace's retention policy would remove at ``at`` (default: now):
        per kind the first ``limit`` items, and whether more are due. Removes nothing."""
        ...

    async def enforce_retention(self, *, limit: int | None = None) -> PruneReport:
        """Remove now what the policy selects, one batch (the first ``limit`` per kind)."""
        ...

    # -- version history (docs/architecture.md, "Version history") ----------------------

    async def list_entity_versions(
        self,
        entity_type: str,
        entity_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[EntityVersion]:
        """Every version of the entity, newest first: the current one, then older ones and
        the tombstones of deletes (``deleted``, no data), one page."""
        ...

    async def get_entity_version(
        self, entity_type: str, entity_id: str, version: int
    ) -> EntityVersion | None:
        """One version of the entity (current or older, never a tombstone), or ``None``."""
        ...

    async def get_entity_as_of(
        self,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        """The entity at version ``version`` or at the instant ``at`` (POSIX seconds):
        ``None`` when it did not exist then (not created yet, deleted, or expired)."""
        ...

    async def diff_entity_versions(
        self, entity_type: str, entity_id: str, from_version: int, to_version: int
    ) -> list[JSONObject]:
        """The RFC 6902 JSON Patch turning version ``from_version`` into ``to_version``."""
        ...

    async def revert_entity(
        self,
        entity_type: str,
        entity_id: str,
        version: int,
        *,
        expected_version: int | None = None,
    ) -> EntityRecord:
        """Save version ``version``'s data as a new version (never rewrites history)."""
        ...

    async def list_conversation_revisions(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ConversationRevision]:
        """What replacing the conversation's history replaced, newest first, one page."""
        ...

    async def get_conversation_revision(
        self, revision: int, conversation_id: str | None = None
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        """A revision and the messages it holds, or ``None``."""
        ...

    async def restore_conversation_revision(
        self, revision: int, conversation_id: str | None = None
    ) -> list[MessageRecord]:
        """Replace the history with the revision's messages (the replaced history becomes
        a new revision)."""
        ...

    async def create_snapshot(self, name: str) -> Snapshot:
        """Mark this instant of the namespace as ``name`` (``AlreadyExistsError`` if taken)."""
        ...

    async def get_snapshot(self, name: str) -> Snapshot | None: ...

    async def list_snapshots(self) -> list[Snapshot]: ...

    async def delete_snapshot(self, name: str) -> bool: ...

    async def revert_to_snapshot(self, name: str) -> SnapshotRevert:
        """Give every entity its state at the snapshot (new versions, deletes); every key
        is read first: one that cannot be read (``DataShreddedError``) refuses the whole
        revert with nothing written."""
        ...

    async def purge_history(self) -> int:
        """Erase the namespace's version history but the tombstones; rows removed."""
        ...

    # -- summary ------------------------------------------------------------------------

    async def get_memory_summary_data(self) -> MemorySummary: ...

    async def get_memory_summary(self) -> str:
        """A readable Markdown summary (seed API); ``get_memory_summary_data`` is structured."""
        return (await self.get_memory_summary_data()).to_markdown()

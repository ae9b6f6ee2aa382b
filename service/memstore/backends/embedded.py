"""Embedded backend: one SQLite file, no server. The reference semantics for the contract.

Why it is shaped this way:

* SQLite in WAL mode: readers never block the writer and a committed transaction survives
  ``kill -9`` of the process (``synchronous=NORMAL``; ``full`` also survives power loss).
* Two connections, each belonging to one thread (``_ConnectionThread``). Reads use their
  own connection, so they only ever see committed data. A write is a plain function of
  the write connection (sqlite3 calls, no ``await``): the event loop hands the thread a
  whole transaction as one call, so a transaction costs one hop between the loop and the
  thread, not one per statement.
* Group commit (``CallGroups``, grouping.py): a write that comes when nobody is writing is
  handed to the thread at once by its caller's task, alone in its transaction; the writes
  that come while a transaction runs wait and then share the next one, up to
  ``_MAX_GROUP``, so concurrent writers share one ``BEGIN IMMEDIATE``/``COMMIT``
  (and, with ``synchronous=FULL``, one fsync). A write is acknowledged (its call returns)
  only after the ``COMMIT`` of its transaction returned. Each write after the first in a
  transaction runs under its own ``SAVEPOINT``, so one that fails (a version conflict, a
  SQLite error) is rolled back alone and the others commit; a write that is one statement
  needs no savepoint (SQLite undoes a failed statement by itself). Readers see a group all
  at once or not at all, and change-log positions follow the order the writes ran in,
  which is the commit order.
* One process owns the file: ``connect`` takes an exclusive ``flock`` on ``<file>.lock``
  (held until ``close``; the kernel drops it when the process dies, even by ``kill -9``)
  and writes its pid there, and a second process is refused with a ``ConfigurationError``
  naming the file and that pid. Each process keeps a read cache that only its own writes
  invalidate, so two processes on one file would serve each other stale entities.
  ``MEMSTORE_EMBEDDED_SHARED=true`` takes a shared lock instead: processes that all set it
  share the file (``BEGIN IMMEDIATE`` plus ``busy_timeout`` serialise their writes; the
  two-process benchmark), accepting reads up to the cache TTL stale.
* Checkpoints in a thread of their own (``_WalCheckpointer``): the write connection never
  checkpoints (``wal_autocheckpoint=0``). SQLite's automatic checkpoint runs in the
  connection that commits, so every ~1,000 pages a group's acknowledgement waited for
  the pages to be copied into the database file and two fsyncs (~12 ms here, the p99 of
  a PUT under load). A third connection copies them instead, while writes go on.
* Expired entities are filtered by every read and purged in the background.
* The change log: every write inserts its event into ``change_log`` in the write's own
  transaction, so the event exists exactly when the write does. The position is the
  namespace's newest one plus one (an index seek); ``change_positions`` keeps the last
  position across retention removing every event, so positions are never reused.
  Retention removes a prefix of the log (the oldest events), so the retained events are
  always one contiguous run.
* Version history (base.py, "Version history"): ``entity_versions`` holds the replaced
  versions and tombstones of entities, ``conversation_revisions``/``revision_messages`` the
  messages a replace replaced. An entity row leaves for history through two TEMP triggers
  of the write connection (``WRITER_SCHEMA``): one on an update that raises the version
  (a save, an import of a later version), one on a delete (a delete, an expiry purge, a
  retention prune), so every path that replaces or removes a row keeps it, in the write's
  own statement, with no extra statement. The row carries who wrote it (column ``actor``). An
  import rewinds the key first (deletes its history from the imported version on, in the
  import's transaction), so an older version imported over a newer one leaves no row
  ahead of it.
  Namespaces of the service (``_keys``, ``_search``, ...) keep none (``keeps_history``).
* Reads (``CallGroups`` too): a read that comes when no read is out goes to the reader
  thread at once, alone; the reads that come while one is out wait and then go together,
  up to ``_MAX_READS``, as one call: one hop between the loop and the thread for the group
  instead of one per read (the hop costs more CPU than reading an entity). Each read is
  executed and read to the end before the next starts, in autocommit, so each is its own
  read transaction and sees every commit that returned before it began (an unfinished
  statement would keep its WAL snapshot open). A group's callers are answered together
  when its last read is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.common import (
    INTERNAL_PREFIX,
    ErrorTranslation,
    ExpiredEntityPurge,
    batch_conflict,
    build_page,
    by_id,
    by_key,
    by_revision,
    by_time,
    check_expected_version,
    check_imported_seqs,
    check_version_or_at,
    history_order,
    json_bytes,
    json_bytes_each,
    keeps_history,
    page_after_id,
    page_after_key,
    page_after_revision,
    page_after_time,
    page_after_version,
)
from memstore.backends.grouping import CallGroups
from memstore.core import analytics, changes
from memstore.core.analytics import (
    AnalyticsOverview,
    BucketWindow,
    FeedbackAnalytics,
    GrowthSeries,
    KindStats,
    ToolAnalytics,
    ToolTally,
)
from memstore.core.changes import Actor, current_actor
from memstore.core.errors import BackendUnavailableError, ConfigurationError, ConflictError
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
from memstore.core.retention import (
    Cutoffs,
    PrunedConversation,
    PrunedEntity,
    PrunedRecord,
    PrunedVersion,
    PruneReport,
)

if TYPE_CHECKING:
    from memstore.core.settings import EmbeddedSettings

#: SQLite's errors: the file is busy, locked, corrupt or gone; all mean "not now".
DRIVER_ERRORS = ErrorTranslation(
    [
        (
            (sqlite3.Error, OSError),
            lambda exc, op: BackendUnavailableError(f"embedded store {op} failed: {exc}"),
        )
    ]
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    ns TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    data BLOB NOT NULL, version INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL,
    PRIMARY KEY (ns, type, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entities_expiry ON entities (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS conversations (
    ns TEXT NOT NULL, id TEXT NOT NULL,
    next_seq INTEGER NOT NULL, message_count INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    ns TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
    message BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (ns, conversation_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tool_usage (
    ns TEXT NOT NULL, id TEXT NOT NULL, tool_name TEXT NOT NULL,
    input BLOB NOT NULL, output BLOB NOT NULL, duration_ms REAL NOT NULL,
    success INTEGER NOT NULL, ts REAL NOT NULL, conversation_id TEXT,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tool_usage_by_time ON tool_usage (ns, ts, id);
CREATE INDEX IF NOT EXISTS tool_usage_by_tool ON tool_usage (ns, tool_name, ts, id);
CREATE TABLE IF NOT EXISTS feedback (
    ns TEXT NOT NULL, id TEXT NOT NULL, agent_name TEXT NOT NULL,
    feedback_type TEXT NOT NULL, data BLOB NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_by_time ON feedback (ns, ts, id);
CREATE INDEX IF NOT EXISTS feedback_by_agent ON feedback (ns, agent_name, feedback_type, ts, id);
CREATE TABLE IF NOT EXISTS change_log (
    ns TEXT NOT NULL, position INTEGER NOT NULL, kind TEXT NOT NULL, ts REAL NOT NULL,
    entity_type TEXT, entity_id TEXT, conversation_id TEXT, tool_name TEXT, record_id TEXT,
    version INTEGER, count INTEGER, actor TEXT, address TEXT,
    PRIMARY KEY (ns, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS change_positions (
    ns TEXT NOT NULL PRIMARY KEY, last_position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_versions (
    ns TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    version INTEGER NOT NULL, deleted INTEGER NOT NULL,
    data BLOB, saved_at REAL NOT NULL, actor TEXT, expires_at REAL,
    PRIMARY KEY (ns, type, id, version, deleted)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversation_revisions (
    ns TEXT NOT NULL, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
    replaced_at REAL NOT NULL, message_count INTEGER NOT NULL, actor TEXT,
    PRIMARY KEY (ns, conversation_id, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS revision_messages (
    ns TEXT NOT NULL, conversation_id TEXT NOT NULL, revision INTEGER NOT NULL,
    seq INTEGER NOT NULL, message BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (ns, conversation_id, revision, seq)
) WITHOUT ROWID;
"""

#: A namespace's last position: its newest event's, or, when retention removed every event,
#: the one ``trim_changes`` saved in ``change_positions`` before deleting (so positions are
#: never reused). Writes touch only ``change_log``: a counter row updated by every write
#: would be one more page written per commit.
_LAST_POSITION = (
    "COALESCE((SELECT MAX(position) FROM change_log WHERE ns = {ns}), "
    "(SELECT last_position FROM change_positions WHERE ns = {ns}), 0)"
)
_NEXT_POSITION = f"{_LAST_POSITION} + 1"

#: What the write connection adds for itself (TEMP: per connection, never stored, so a new
#: version changes them without a migration):
#:
#: * ``tool_usage_writes``/``feedback_writes``: a record and its event in one statement,
#:   the event only when the id is new (a retried record changes nothing). One statement
#:   needs no transaction of its own when it runs alone, and no savepoint in a group.
#: * ``entity_replaced``/``entity_removed``: an entity row that a write replaces with a
#:   higher version, or deletes, moves into ``entity_versions`` (module docstring). A row
#:   replaced by a lower version (an import rewinding the key) is dropped. The history
#:   write is an explicit upsert: the outer statement's conflict policy overrides an
#:   ``INSERT OR REPLACE`` in a trigger body (the saves' upsert would make it ABORT), so a
#:   row already there would fail the write.
_KEEP_OLD_ROW = """
    INSERT INTO entity_versions (ns, type, id, version, deleted, data, saved_at, actor,
        expires_at)
    VALUES (OLD.ns, OLD.type, OLD.id, OLD.version, 0, OLD.data, OLD.updated_at, OLD.actor,
        OLD.expires_at)
    ON CONFLICT (ns, type, id, version, deleted) DO UPDATE SET data = excluded.data,
        saved_at = excluded.saved_at, actor = excluded.actor, expires_at = excluded.expires_at;
"""
WRITER_SCHEMA = f"""
CREATE TEMP TRIGGER entity_replaced AFTER UPDATE OF version ON entities
WHEN OLD.version < NEW.version AND substr(OLD.ns, 1, 1) <> '{INTERNAL_PREFIX}' BEGIN
    {_KEEP_OLD_ROW}
END;
CREATE TEMP TRIGGER entity_removed AFTER DELETE ON entities
WHEN substr(OLD.ns, 1, 1) <> '{INTERNAL_PREFIX}' BEGIN
    {_KEEP_OLD_ROW}
END;
CREATE TEMP VIEW tool_usage_writes AS SELECT *, NULL AS logged_at, NULL AS actor,
    NULL AS address FROM main.tool_usage WHERE 0;
CREATE TEMP TRIGGER tool_usage_write INSTEAD OF INSERT ON tool_usage_writes BEGIN
    INSERT INTO change_log (ns, position, kind, ts, conversation_id, tool_name, record_id,
        actor, address)
    SELECT NEW.ns, {_NEXT_POSITION.format(ns="NEW.ns")}, '{changes.TOOL_USAGE_RECORDED}',
        NEW.logged_at, NEW.conversation_id, NEW.tool_name, NEW.id, NEW.actor, NEW.address
    WHERE NOT EXISTS (SELECT 1 FROM tool_usage WHERE ns = NEW.ns AND id = NEW.id);
    INSERT INTO tool_usage (ns, id, tool_name, input, output, duration_ms, success, ts,
        conversation_id)
    VALUES (NEW.ns, NEW.id, NEW.tool_name, NEW.input, NEW.output, NEW.duration_ms,
        NEW.success, NEW.ts, NEW.conversation_id)
    ON CONFLICT (ns, id) DO NOTHING;
END;
CREATE TEMP VIEW feedback_writes AS SELECT *, NULL AS logged_at, NULL AS actor,
    NULL AS address FROM main.feedback WHERE 0;
CREATE TEMP TRIGGER feedback_write INSTEAD OF INSERT ON feedback_writes BEGIN
    INSERT INTO change_log (ns, position, kind, ts, record_id, actor, address)
    SELECT NEW.ns, {_NEXT_POSITION.format(ns="NEW.ns")}, '{changes.FEEDBACK_SAVED}',
        NEW.logged_at, NEW.id, NEW.actor, NEW.address
    WHERE NOT EXISTS (SELECT 1 FROM feedback WHERE ns = NEW.ns AND id = NEW.id);
    INSERT INTO feedback (ns, id, agent_name, feedback_type, data, ts)
    VALUES (NEW.ns, NEW.id, NEW.agent_name, NEW.feedback_type, NEW.data, NEW.ts)
    ON CONFLICT (ns, id) DO NOTHING;
END;
"""

#: One change event at the namespace's next position. Parameters: ns, kind, ts,
#: entity_type, entity_id, conversation_id, tool_name, record_id, version, count, actor,
#: address.
_LOG_CHANGE = (
    "INSERT INTO change_log (ns, position, kind, ts, entity_type, entity_id, conversation_id, "
    f"tool_name, record_id, version, count, actor, address) VALUES (?1, "
    f"{_NEXT_POSITION.format(ns='?1')}, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
)

#: Events after a position with the namespace's last and first positions, in one
#: statement so all three come from one snapshot: one row per event, or one row of NULL
#: event columns when there is none after ``after``.
_READ_CHANGES = (
    f"SELECT {_LAST_POSITION.format(ns='?1')}, "
    "(SELECT MIN(position) FROM change_log WHERE ns = ?1), c.position, c.kind, c.ts, "
    "c.entity_type, c.entity_id, c.conversation_id, c.tool_name, c.record_id, c.version, "
    "c.count, c.actor, c.address FROM (SELECT 1) LEFT JOIN (SELECT * FROM change_log "
    "WHERE ns = ?1 AND position > ?2 ORDER BY position LIMIT ?3) AS c ORDER BY c.position"
)

#: The namespaces that have events: one seek per namespace in the key's order (a skip
#: scan), where ``DISTINCT`` would read every event.
_NAMESPACES_WITH_CHANGES = (
    "WITH RECURSIVE n(ns) AS (SELECT MIN(ns) FROM change_log UNION ALL "
    "SELECT (SELECT MIN(ns) FROM change_log WHERE ns > n.ns) FROM n WHERE n.ns IS NOT NULL) "
    "SELECT ns FROM n WHERE ns IS NOT NULL"
)

#: Retention, step 1: save the namespace's last position, which outlives its events.
_SAVE_LAST_POSITION = (
    "INSERT INTO change_positions (ns, last_position) SELECT ns, MAX(position) "
    "FROM change_log WHERE ns = ?1 GROUP BY ns "
    "ON CONFLICT (ns) DO UPDATE SET last_position = excluded.last_position"
)

#: Retention, step 2: remove the oldest events, up to the first one both among the newest
#: ``?2`` and not older than ``?3`` (a timestamp). A prefix only, so what is left stays
#: one contiguous run of positions.
_TRIM_CHANGES = (
    "DELETE FROM change_log WHERE ns = ?1 AND position < MAX("
    "(SELECT last_position FROM change_positions WHERE ns = ?1) - ?2 + 1, "
    "COALESCE((SELECT position FROM change_log WHERE ns = ?1 AND ts >= ?3 "
    "ORDER BY position LIMIT 1), (SELECT last_position FROM change_positions WHERE ns = ?1) + 1))"
)


_ENTITY_COLUMNS = "type, id, data, version, created_at, updated_at, expires_at, pinned"

#: Columns added after the first release, with their definitions: a store written before
#: them gets them (with these defaults) when it is opened.
_ADDED_COLUMNS = {
    "entities": {
        # retention: a pinned entity is never pruned; the last read the service recorded
        "pinned": "INTEGER NOT NULL DEFAULT 0",
        "accessed_at": "REAL",
        # version history: who wrote the current version (NULL: nobody declared, or
        # written before history was kept)
        "actor": "TEXT",
    }
}

#: A tombstone (a delete's, a prune's): ns, type, id, version, saved_at, actor.
_TOMBSTONE = (
    "INSERT OR REPLACE INTO entity_versions (ns, type, id, version, deleted, data, saved_at, "
    "actor, expires_at) VALUES (?, ?, ?, ?, 1, NULL, ?, ?, NULL)"
)

#: Every row of one key (?1 ns, ?2 type, ?3 id): the current row and its history.
_KEY_ROWS = (
    "SELECT version, 0 AS deleted, data, updated_at AS saved_at, actor, expires_at "
    "FROM entities WHERE ns = ?1 AND type = ?2 AND id = ?3 UNION ALL "
    "SELECT version, deleted, data, saved_at, actor, expires_at FROM entity_versions "
    "WHERE ns = ?1 AND type = ?2 AND id = ?3"
)


def _version(entity_type: str, entity_id: str, row: tuple[Any, ...]) -> EntityVersion:
    """An ``EntityVersion`` of a ``_KEY_ROWS`` row."""
    version, deleted, data, saved_at, actor, expires_at = row
    return EntityVersion(
        type=entity_type,
        id=entity_id,
        version=version,
        data=None if data is None else orjson.loads(data),
        saved_at=saved_at,
        actor=actor,
        deleted=bool(deleted),
        expires_at=expires_at,
    )


def _entity(row: sqlite3.Row | tuple[Any, ...]) -> EntityRecord:
    return EntityRecord(
        type=row[0],
        id=row[1],
        data=orjson.loads(row[2]),
        version=row[3],
        created_at=row[4],
        updated_at=row[5],
        expires_at=row[6],
        pinned=bool(row[7]),
    )


def _hour(column: str) -> str:
    """SQL for ``core.analytics.hour_of(column)``."""
    h = f"CAST({column} / 3600.0 AS INTEGER)"
    return f"({h} - ({h} * 3600.0 > {column}) + (({h} + 1) * 3600.0 <= {column}))"


def _tool_usage(row: tuple[Any, ...]) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=row[0],
        tool_name=row[1],
        input=orjson.loads(row[2]),
        output=orjson.loads(row[3]),
        duration_ms=row[4],
        success=bool(row[5]),
        timestamp=row[6],
        conversation_id=row[7],
    )


def _feedback(row: tuple[Any, ...]) -> FeedbackRecord:
    return FeedbackRecord(
        id=row[0],
        agent_name=row[1],
        feedback_type=row[2],
        data=orjson.loads(row[3]),
        timestamp=row[4],
    )


def _by_conversation_id(info: ConversationInfo) -> tuple[str]:
    return (info.conversation_id,)


def _rows(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    """Every row of ``sql``'s answer. Read to the end: a statement left unfinished would
    hold its snapshot open (and, outside ``BEGIN``, keep its own write uncommitted)."""
    return conn.execute(sql, tuple(params)).fetchall()


def _first_row(conn: sqlite3.Connection, sql: str, params: Iterable[Any]) -> Any:
    """The first row of ``sql``'s answer or ``None`` (the statement run to its end)."""
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


#: The actor of writes made outside ``acting_as``.
_NOBODY = Actor()


def _change_event(row: tuple[Any, ...]) -> ChangeEvent:
    return ChangeEvent(*row)


def _change(
    namespace: str,
    kind: str,
    ts: float,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    conversation_id: str | None = None,
    tool_name: str | None = None,
    record_id: str | None = None,
    version: int | None = None,
    count: int | None = None,
    actor: Actor,
) -> tuple[Any, ...]:
    """The parameters of ``_LOG_CHANGE``. ``actor`` is the caller's ``current_actor()``,
    taken in the caller's task: the write runs in the committer's."""
    return (
        namespace,
        kind,
        ts,
        entity_type,
        entity_id,
        conversation_id,
        tool_name,
        record_id,
        version,
        count,
        actor.name,
        actor.address,
    )


T = TypeVar("T")

log = logging.getLogger(__name__)

#: The most writes one transaction takes: a bound on how long the first of them waits for
#: its acknowledgement, and on how much one failed ``COMMIT`` turns away.
_MAX_GROUP = 64


@dataclass(eq=False, slots=True)
class _Write:
    """One write: what it does on the write connection (called in the writer thread,
    inside its transaction) and, once that transaction ended, its outcome."""

    run: Callable[[sqlite3.Connection], Any]
    #: One statement: SQLite undoes it alone when it fails, so it needs no savepoint, and
    #: alone it needs no ``BEGIN``/``COMMIT``.
    one_statement: bool
    value: Any = None
    #: Set when the write did not commit: its own error, or its transaction's.
    error: BaseException | None = None


def _run_transaction(conn: sqlite3.Connection, group: Sequence[_Write]) -> None:
    """In the writer thread: run ``group``'s writes in one transaction, as plain sqlite3
    calls (module docstring, "Group commit"), and record each one's outcome in it. Each
    write after the first that succeeded runs under its own ``SAVEPOINT``, so one that
    fails is undone alone; a failed ``COMMIT`` fails every write of the group."""
    if len(group) == 1 and group[0].one_statement:
        # alone, the statement is its own transaction (no BEGIN/COMMIT to pay)
        write = group[0]
        try:
            with DRIVER_ERRORS("write"):
                write.value = write.run(conn)
        except Exception as exc:  # the caller's error, raised in the caller
            write.error = exc
        return
    try:
        succeeded: list[_Write] = []
        for i, write in enumerate(group):
            if not conn.in_transaction:
                try:
                    with DRIVER_ERRORS("write"):
                        conn.execute("BEGIN IMMEDIATE")
                except BackendUnavailableError as exc:
                    for unrun in group[i:]:
                        unrun.error = exc
                    break
            savepoint = bool(succeeded) and not write.one_statement
            try:
                with DRIVER_ERRORS("write"):
                    if savepoint:
                        conn.execute("SAVEPOINT write")
                    write.value = write.run(conn)
            except Exception as exc:  # the caller's error, raised in the caller
                write.error = exc
                with contextlib.suppress(sqlite3.Error):
                    if savepoint:
                        # the newest savepoint of that name: this write's
                        conn.execute("ROLLBACK TO write")
                    elif not succeeded:
                        conn.execute("ROLLBACK")
                if succeeded and not conn.in_transaction:
                    # SQLite rolled the whole transaction back (an I/O error, a full
                    # disk): the earlier writes of the group are gone
                    lost = BackendUnavailableError(f"embedded store write failed: {exc}")
                    for earlier in succeeded:
                        earlier.error = lost
                    succeeded.clear()
            else:
                succeeded.append(write)
        if not conn.in_transaction:
            return  # nothing succeeded
        try:
            with DRIVER_ERRORS("write"):
                conn.execute("COMMIT")
        except BackendUnavailableError as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            for write in succeeded:
                write.error = exc
    except BaseException:
        # a bug, or an error that is not an Exception: nothing of the group commits
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


#: The most reads one hop to the reader thread takes: their callers are answered together
#: when the last of them is read, so this bounds how long the first one waits.
_MAX_READS = 32


#: One read: a statement and its parameters.
_Read = tuple[str, tuple[Any, ...]]


def _run_reads(conn: sqlite3.Connection, group: Sequence[_Read]) -> list[list[Any] | Exception]:
    """In the reader thread: each read's statement executed and read to the end before
    the next starts (autocommit: each is its own read transaction, so it sees every
    commit that returned before it began). Its rows, or its error."""
    outcomes: list[list[Any] | Exception] = []
    for sql, params in group:
        try:
            with DRIVER_ERRORS("read"):
                outcomes.append(conn.execute(sql, params).fetchall())
        except Exception as exc:  # the caller's error, raised in the caller
            outcomes.append(exc)
    return outcomes


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():  # its awaiting caller may have been cancelled
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _ConnectionThread:
    """A SQLite connection and the one thread that uses it (the store has two: the write
    connection's and the read connection's). ``call(fn)`` runs ``fn(conn)`` there and is
    one hop from the event loop (~15 µs of CPU) whatever ``fn`` does, so a whole group
    transaction, or a whole group of reads, costs one hop, where a driver that hops per
    statement (as aiosqlite does) costs one per statement. The calls run one after the
    other in the order made. A ``SimpleQueue`` and ``call_soon_threadsafe``, not an
    executor: its futures and locks cost about twice as much per call."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        #: (future, function of the connection); ``None`` as the function closes it
        self._calls: queue.SimpleQueue[tuple[asyncio.Future[Any], Callable[..., Any] | None]] = (
            queue.SimpleQueue()
        )
        #: set by ``close``: ``call`` refuses from then on
        self._closed = False
        # a daemon: a store never closed must not keep the process from exiting (what was
        # not acknowledged may be lost, as with kill -9)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the thread and return its outcome.
        ``BackendUnavailableError`` once ``close`` began (nothing would serve a call
        queued after its marker)."""
        if self._closed:
            raise BackendUnavailableError("embedded store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((future, fn))
        return await future

    async def close(self) -> None:
        """Close the connection after the calls already made, and end the thread. Calls
        made from then on raise ``BackendUnavailableError``."""
        if self._closed:
            # closed, or closing in another task: wait for the thread all the same
            await asyncio.to_thread(self._thread.join)
            return
        # set before the marker is queued, in the loop's thread, where ``call`` checks it:
        # no call of this loop can queue after the marker
        self._closed = True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._calls.put((future, None))
        await future

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            future, fn = self._calls.get()
            try:
                if fn is None:  # the last call: close
                    if conn is not None:
                        conn.close()
                    value = None
                else:
                    if conn is None:  # opened here: used by this thread only
                        conn = self._connect()
                    value = fn(conn)
            except BaseException as exc:
                self._answer(future, _set_exception, exc)
            else:
                self._answer(future, _set_result, value)
            if fn is None:
                self._refuse_queued()
                return

    def _refuse_queued(self) -> None:
        """After the close: a call queued behind its marker (made from another thread than
        the loop's, which ``call``'s check cannot order) is answered, never left waiting."""
        while True:
            try:
                future, _ = self._calls.get_nowait()
            except queue.Empty:
                return
            self._answer(
                future, _set_exception, BackendUnavailableError("embedded store is not open")
            )

    @staticmethod
    def _answer(
        future: asyncio.Future[Any],
        settle: Callable[[asyncio.Future[Any], Any], None],
        outcome: Any,
    ) -> None:
        # a loop closed meanwhile has nobody waiting: the thread goes on
        with contextlib.suppress(RuntimeError):
            future.get_loop().call_soon_threadsafe(settle, future, outcome)


#: How long the checkpointer lets commits gather before it copies them (it runs only
#: after a commit): the WAL holds about this long of writes.
_CHECKPOINT_DELAY = 0.25
#: A passive checkpoint is repeated while more than this many frames came during it, up
#: to ``_CHECKPOINT_PASSES`` times (under steady writes new frames always come).
_CHECKPOINT_CATCH_UP_FRAMES = 64
_CHECKPOINT_PASSES = 4
#: Bytes of WAL past which the checkpointer also restarts it: a passive checkpoint cannot
#: do that while writes go on, and the file would grow without bound under steady writes.
_WAL_RESTART_BYTES = 32 << 20
#: How long a ``RESTART`` may wait (SQLite's busy timeout on the checkpoint connection):
#: it holds the write lock while it waits for the readers still using the WAL, so writes
#: wait as long. A long read (an export, a scan) makes it give up instead; it is tried
#: again once the WAL has grown by as much again.
_RESTART_WAIT_MS = 50


class _WalCheckpointer:
    """SQLite's checkpoints, run by a thread and a connection of their own ("application-
    initiated checkpoints" in SQLite's WAL documentation), so a write never waits for the
    copy into the database file and its fsyncs (module docstring). After commits it waits
    ``_CHECKPOINT_DELAY``, then runs ``PASSIVE`` checkpoints, which never block a writer,
    until the frames that came meanwhile are few (or ``_CHECKPOINT_PASSES`` ran); past
    ``_WAL_RESTART_BYTES`` of WAL a ``RESTART`` checkpoint then copies those few, holding
    off writes while it waits for the write transaction and the readers on the WAL (at
    most ``_RESTART_WAIT_MS``) and while it copies and syncs, and makes the next write start
    the WAL over. The durability of a write is unchanged: it was in the WAL when its
    ``COMMIT`` returned. A checkpoint that fails (a full disk) is logged and tried again
    after the next commit; the last connection to close checkpoints what is left."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        #: the WAL's frames when the last ``RESTART`` gave up (0: it did not)
        self._held_off_at = 0
        #: a checkpoint failed, and none succeeded since (logged once per run of failures)
        self._failing = False
        #: set after a commit, cleared when a checkpoint begins
        self._due = threading.Event()
        #: set by ``close``: the thread ends (at once while it waits)
        self._closing = threading.Event()
        #: done when the connection is open, or with the error that kept it from opening
        self.opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, name="memstore-embedded-checkpointer", daemon=True
        )
        self._thread.start()

    def committed(self) -> None:
        """A transaction committed: a checkpoint is due (in the loop's thread; the
        attribute read spares the event's lock on most commits)."""
        if not self._due.is_set():
            self._due.set()

    async def close(self) -> None:
        self._closing.set()
        self._due.set()
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self.opened.set_exception(exc)
            return
        self.opened.set_result(None)
        try:
            while True:
                self._due.wait()
                if self._closing.wait(_CHECKPOINT_DELAY):
                    return
                self._due.clear()
                try:
                    self._checkpoint(conn)
                except Exception:
                    # The thread must go on: without it the WAL would only grow.
                    if not self._failing:
                        log.exception("embedded store: checkpoint failed (tried again)")
                    self._failing = True
                else:
                    self._failing = False
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        for _ in range(_CHECKPOINT_PASSES):
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames - copied <= _CHECKPOINT_CATCH_UP_FRAMES or self._closing.is_set():
                break
        # in the file's page size: an existing file keeps its own, not the setting's
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        # held off by a long read: not again before the WAL has grown as much again
        if frames < self._held_off_at + _WAL_RESTART_BYTES // page_size or self._closing.is_set():
            return
        busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        self._held_off_at = frames if busy else 0


class EmbeddedMemoryBackend(DistributedMemoryBackend):
    name = "embedded"

    settings: EmbeddedSettings

    def __init__(self, settings: EmbeddedSettings) -> None:
        super().__init__(settings)
        self.path = settings.data_path
        self._writer: _ConnectionThread | None = None
        self._reader: _ConnectionThread | None = None
        self._checkpointer: _WalCheckpointer | None = None
        # module docstring, "Group commit" and "Reads"
        self._writes = CallGroups(
            self._write_alone, self._commit_group, max_group=_MAX_GROUP, always_rejoin=True
        )
        self._reads = CallGroups(self._read_alone, self._read_group, max_group=_MAX_READS)
        #: Set by ``close``: ``_write`` takes no new write.
        self._closing = False
        self._purge = ExpiredEntityPurge(self.name, self._background_round)
        self._owner_fd: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _take_ownership(self) -> None:
        """The owner lock (see the module docstring); ``ConfigurationError`` when another
        process holds it."""
        shared = self.settings.embedded_shared
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if owner == str(os.getpid()):
                advice = (
                    f"is already open in this process ({owner}) by another manager or "
                    "backend: share that one (for_namespace() gives a view of another "
                    "namespace) or close it first"
                )
            else:
                holder = f"process {owner}" if owner else "processes that share it"
                advice = (
                    f"is in use by {holder}: one process owns an embedded store. Stop that "
                    "process, give this one its own MEMSTORE_DATA_PATH, or use the running "
                    "service through MemoryClient or the CLI (MEMSTORE_EMBEDDED_SHARED=true "
                    "in every process shares the file, each serving the others' writes up "
                    "to MEMSTORE_CACHE_TTL_SECONDS late)"
                )
            raise ConfigurationError(
                f"embedded store {self.path} {advice} (lock {self.lock_path})",
                path=str(self.path),
                owner_pid=int(owner) if owner.isdigit() else None,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        if not shared:
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._owner_fd = fd

    def _release_ownership(self) -> None:
        if self._owner_fd is not None:
            if not self.settings.embedded_shared:
                os.ftruncate(self._owner_fd, 0)  # no stale pid for a person reading the file
            os.close(self._owner_fd)  # drops the flock
            self._owner_fd = None

    # -- lifecycle --------------------------------------------------------------------

    def _pragmas(self) -> list[str]:
        return [
            # Before the journal mode: a new file takes its page size when WAL starts it
            # (an existing file ignores this).
            f"PRAGMA page_size={self.settings.embedded_page_size}",
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={self.settings.embedded_synchronous.upper()}",
            "PRAGMA busy_timeout=5000",
            "PRAGMA foreign_keys=OFF",
            f"PRAGMA mmap_size={self.settings.embedded_mmap_size}",
        ]

    def _open_reader(self) -> sqlite3.Connection:
        """The read connection, opened in the reader thread (after the writer's, which
        creates the schema)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in self._pragmas():
                conn.execute(pragma)
            conn.execute("PRAGMA query_only=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_checkpointer(self) -> sqlite3.Connection:
        """The checkpoint connection, opened in its thread (after the writer's)."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in self._pragmas():
                conn.execute(pragma)
            # after the pragmas' 5 s: a RESTART holds writes off while it waits
            conn.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection, opened in the writer thread, with its schema."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in self._pragmas():
                conn.execute(pragma)
            # A group's savepoints keep the pages their writes change in a sub-journal,
            # which SQLite spills to a temporary file past 64 KiB (a group of a few
            # writes): in memory it costs no file writes.
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # _WalCheckpointer's
            conn.executescript(SCHEMA)
            self._add_columns(conn)
            conn.executescript(WRITER_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    async def connect(self) -> None:
        try:
            with DRIVER_ERRORS("open"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._take_ownership()
                self._closing = False
                self._writer = _ConnectionThread(self._open_writer, "memstore-embedded-writer")
                await self._writer.call(bool)  # the first call opens the connection
                self._reader = _ConnectionThread(self._open_reader, "memstore-embedded-reader")
                await self._reader.call(bool)
                self._checkpointer = _WalCheckpointer(self._open_checkpointer)
                await asyncio.wrap_future(self._checkpointer.opened)
        except BaseException:
            await self.close()
            raise
        self._purge.start()

    @staticmethod
    def _add_columns(conn: sqlite3.Connection) -> None:
        """Add the columns of ``_ADDED_COLUMNS`` a store written by an older release lacks."""
        for table, columns in _ADDED_COLUMNS.items():
            have = {r[1] for r in _rows(conn, f"PRAGMA table_info({table})")}
            for name, definition in columns.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")

    async def close(self) -> None:
        # No new write from here on; the writes already accepted (alone, in a group, or
        # waiting for the next group) are committed, or failed, and answered before the
        # thread closes. A thread closed before them would leave their callers waiting
        # for ever.
        self._closing = True
        await self._purge.stop()
        await self._writes.idle()
        checkpointer, reader, writer = self._checkpointer, self._reader, self._writer
        self._checkpointer = None
        self._reader = None
        self._writer = None
        if checkpointer is not None:
            await checkpointer.close()
        for conn in (reader, writer):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await conn.close()
        self._release_ownership()

    async def ping(self) -> bool:
        if self._reader is None:
            return False
        try:
            return await self._fetchone("SELECT 1", ()) is not None
        except BackendUnavailableError:
            return False

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "path": str(self.path)}

    async def purge_expired(self) -> int:
        """Delete expired entities now (reads already hide them), each with its
        ``entity.expired`` event; returns how many."""
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> int:
            expired = list(
                _rows(
                    conn,
                    "DELETE FROM entities WHERE expires_at IS NOT NULL AND expires_at <= ? "
                    "RETURNING ns, type, id, version",
                    (now,),
                )
            )
            if expired:
                # in namespace order, so each namespace's events follow its key order
                expired.sort()
                conn.executemany(
                    _LOG_CHANGE,
                    [
                        _change(
                            ns,
                            changes.ENTITY_EXPIRED,
                            now,
                            entity_type=entity_type,
                            entity_id=entity_id,
                            version=version,
                            actor=actor,
                        )
                        for ns, entity_type, entity_id, version in expired
                    ],
                )
            return len(expired)

        return await self._write(write)

    async def _background_round(self) -> None:
        """What the background task does every minute: purge expired entities, then apply
        the change log's retention to every namespace that has a log."""
        await self.purge_expired()
        for (namespace,) in await self._fetchall(_NAMESPACES_WITH_CHANGES, ()):
            await self.trim_changes(namespace)

    # -- helpers ------------------------------------------------------------------------

    async def _write(
        self,
        run: Callable[[sqlite3.Connection], T],
        *,
        one_statement: bool = False,
    ) -> T:
        """Run ``run`` (plain sqlite3 calls on the write connection, in the writer thread)
        alone, or in the next group transaction, and return its result once that
        transaction committed (module docstring, "Group commit"). Raises what ``run``
        raised (its own work rolled back, the group's committed), or
        ``BackendUnavailableError`` when the transaction could not begin or commit.
        ``one_statement``: ``run`` executes one statement (its triggers included)."""
        if self._writer is None or self._closing:
            raise BackendUnavailableError("embedded store is not open")
        return await self._writes(_Write(run, one_statement))  # type: ignore[no-any-return]

    async def _write_statement(self, sql: str, params: Sequence[Any]) -> None:
        """A write that is one statement (its triggers included)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(sql, params)

        await self._write(run, one_statement=True)

    async def _write_alone(self, write: _Write) -> Any:
        await self._transaction([write])
        if write.error is not None:
            raise write.error
        return write.value

    async def _commit_group(self, group: list[_Write]) -> list[Any]:
        """Each write's outcome, known once the ``COMMIT`` of their transaction returned."""
        await self._transaction(group)
        return [write.value if write.error is None else write.error for write in group]

    async def _transaction(self, group: list[_Write]) -> None:
        """Run ``group`` in one transaction, one call to the writer thread. The writes
        whose callers were cancelled meanwhile still commit (as one that ran before the
        cancellation would have): a write cannot be taken back from the thread."""
        writer = self._writer
        if writer is None:
            raise BackendUnavailableError("embedded store is not open")
        try:
            await writer.call(functools.partial(_run_transaction, group=group))
        finally:
            if self._checkpointer is not None:
                self._checkpointer.committed()

    async def _fetchall(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """The rows of one statement, read on the reader thread (module docstring,
        "Reads"): alone when no read is there, else with the reads that wait, in the next
        group."""
        if self._reader is None:
            raise BackendUnavailableError("embedded store is not open")
        return await self._reads((sql, tuple(params)))

    async def _read_alone(self, read: _Read) -> list[Any]:
        (outcome,) = await self._read_group([read])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _read_group(self, group: list[_Read]) -> list[list[Any] | Exception]:
        """One call to the reader thread: each read's rows or error."""
        reader = self._reader
        if reader is None:  # closed while the reads waited
            raise BackendUnavailableError("embedded store is not open")
        return await reader.call(functools.partial(_run_reads, group=group))

    async def _fetchone(self, sql: str, params: Iterable[Any]) -> Any:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _time_page(
        self,
        select: str,
        conditions: list[tuple[str, Any]],
        cursor: str | None,
        limit: int,
    ) -> list[Any]:
        """Up to ``limit + 1`` rows of ``select`` in (ts, id) order after the cursor;
        a condition whose value is ``None`` is left out."""
        where = [sql for sql, value in conditions if value is not None]
        params = [value for _, value in conditions if value is not None]
        if (after := page_after_time(cursor)) is not None:
            where.append("(ts > ? OR (ts = ? AND id > ?))")
            params += [after[0], after[0], after[1]]
        return await self._fetchall(
            f"{select} WHERE {' AND '.join(where)} ORDER BY ts, id LIMIT ?", (*params, limit + 1)
        )

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
        item = EntityWrite(entity_type, entity_id, data, expected_version, ttl, data_json)
        payload = json_bytes(data, data_json)
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> EntityRecord:
            return self._save_in(conn, namespace, item, payload, now, actor)

        return await self._write(write)

    async def save_entities(
        self, namespace: str, items: Sequence[EntityWrite]
    ) -> list[EntityRecord]:
        """All or nothing: the items are one write of the group commit (one transaction,
        or one savepoint in a group), so a conflict on any item undoes the others."""
        payloads = [json_bytes(item.data, item.data_json) for item in items]
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> list[EntityRecord]:
            records = []
            for i, (item, payload) in enumerate(zip(items, payloads, strict=True)):
                try:
                    records.append(self._save_in(conn, namespace, item, payload, now, actor))
                except ConflictError as exc:
                    raise batch_conflict(i, exc) from exc
            return records

        return await self._write(write)

    def _save_in(
        self,
        conn: sqlite3.Connection,
        namespace: str,
        item: EntityWrite,
        payload: bytes,
        now: float,
        actor: Actor,
    ) -> EntityRecord:
        """One entity save inside the write transaction on ``conn``."""
        entity_type, entity_id = item.entity_type, item.entity_id
        expires_at = now + item.ttl if item.ttl is not None else None
        key = (namespace, entity_type, entity_id)
        # the stored row (if any) and the highest version the key's history holds:
        # a create numbers on from it (versions never restart)
        row = _first_row(
            conn,
            "SELECT e.version, e.created_at, e.expires_at, e.pinned, (SELECT MAX(version) "
            "FROM entity_versions v WHERE v.ns = ?1 AND v.type = ?2 AND v.id = ?3) "
            "FROM (SELECT 1) LEFT JOIN entities e ON e.ns = ?1 AND e.type = ?2 AND e.id = ?3",
            key,
        )
        stored = row[0] is not None
        live = stored and (row[2] is None or row[2] > now)
        pinned = bool(row[3]) if live else False
        current = row[0] if live else None
        check_expected_version(item.expected_version, current)
        version = (current or max(row[0] or 0, row[4] or 0)) + 1
        created_at = row[1] if live else now
        if stored and not live:
            # replaced before the purge reached it: its expiry is logged here instead
            self._log_expired(conn, key, row[0], now, actor)
        conn.execute(
            "INSERT INTO entities (ns, type, id, data, version, created_at, updated_at, "
            "expires_at, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?11) "
            "ON CONFLICT (ns, type, id) DO UPDATE SET data = excluded.data, "
            "version = excluded.version, created_at = excluded.created_at, "
            "updated_at = excluded.updated_at, expires_at = excluded.expires_at, "
            "pinned = ?9, accessed_at = CASE WHEN ?10 THEN accessed_at END, "
            "actor = excluded.actor",
            (*key, payload, version, created_at, now, expires_at, pinned, live, actor.name),
        )
        conn.execute(
            _LOG_CHANGE,
            _change(
                namespace,
                changes.ENTITY_SAVED,
                now,
                entity_type=entity_type,
                entity_id=entity_id,
                version=version,
                actor=actor,
            ),
        )
        return EntityRecord(
            type=entity_type,
            id=entity_id,
            data=item.data,
            version=version,
            created_at=created_at,
            updated_at=now,
            expires_at=expires_at,
            pinned=pinned,
        )

    async def import_entity(self, namespace: str, record: EntityRecord) -> None:
        payload = orjson.dumps(record.data)
        actor = current_actor() or _NOBODY
        now = time.time()

        def write(conn: sqlite3.Connection) -> None:
            # rewind the key to the imported version (base.py): its rows of that version
            # and later go; the trigger keeps a replaced row only when it is older
            conn.execute(
                "DELETE FROM entity_versions WHERE ns = ? AND type = ? AND id = ? AND version >= ?",
                (namespace, record.type, record.id, record.version),
            )
            conn.execute(
                "INSERT INTO entities (ns, type, id, data, version, created_at, updated_at, "
                "expires_at, pinned, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (ns, type, id) DO UPDATE SET data = excluded.data, "
                "version = excluded.version, created_at = excluded.created_at, "
                "updated_at = excluded.updated_at, expires_at = excluded.expires_at, "
                "pinned = excluded.pinned, actor = excluded.actor",
                (
                    namespace,
                    record.type,
                    record.id,
                    payload,
                    record.version,
                    record.created_at,
                    record.updated_at,
                    record.expires_at,
                    int(record.pinned),
                    actor.name,
                ),
            )
            conn.execute(
                _LOG_CHANGE,
                _change(
                    namespace,
                    changes.ENTITY_SAVED,
                    now,
                    entity_type=record.type,
                    entity_id=record.id,
                    version=record.version,
                    actor=actor,
                ),
            )

        await self._write(write)

    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None:
        row = await self._fetchone(
            f"SELECT {_ENTITY_COLUMNS} FROM entities WHERE ns = ? AND type = ? AND id = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (namespace, entity_type, entity_id, time.time()),
        )
        return _entity(row) if row is not None else None

    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        key = (namespace, entity_type, entity_id)
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> bool:
            row = _first_row(
                conn,
                "SELECT version, expires_at FROM entities WHERE ns = ? AND type = ? AND id = ?",
                key,
            )
            live = row is not None and (row[1] is None or row[1] > now)
            current = row[0] if live and row is not None else None
            check_expected_version(expected_version, current)
            if row is None:
                return False
            conn.execute("DELETE FROM entities WHERE ns = ? AND type = ? AND id = ?", key)
            if live and keeps_history(namespace):
                conn.execute(_TOMBSTONE, (*key, row[0], now, actor.name))
            if live:
                conn.execute(
                    _LOG_CHANGE,
                    _change(
                        namespace,
                        changes.ENTITY_DELETED,
                        now,
                        entity_type=entity_type,
                        entity_id=entity_id,
                        version=row[0],
                        actor=actor,
                    ),
                )
            else:
                # deleted before the purge reached it: its expiry is logged here instead
                self._log_expired(conn, key, row[0], now, actor)
            return live

        return await self._write(write)

    @staticmethod
    def _log_expired(
        conn: sqlite3.Connection,
        key: tuple[str, str, str],
        version: int,
        now: float,
        actor: Actor,
    ) -> None:
        namespace, entity_type, entity_id = key
        conn.execute(
            _LOG_CHANGE,
            _change(
                namespace,
                changes.ENTITY_EXPIRED,
                now,
                entity_type=entity_type,
                entity_id=entity_id,
                version=version,
                actor=actor,
            ),
        )

    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        rows = await self._stored_entities(namespace, entity_type, limit, cursor)
        return build_page([_entity(r) for r in rows], limit, by_id)

    async def list_entity_rows(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRow]:
        rows = await self._stored_entities(namespace, entity_type, limit, cursor)
        return build_page(
            [EntityRow(t, i, d, v, c, u, x, bool(p)) for t, i, d, v, c, u, x, p in rows],
            limit,
            by_id,
        )

    async def _stored_entities(
        self, namespace: str, entity_type: str, limit: int, cursor: str | None
    ) -> list[Any]:
        """``list_entities``' rows as stored (``_ENTITY_COLUMNS``), one more than a page."""
        return await self._fetchall(
            f"SELECT {_ENTITY_COLUMNS} FROM entities WHERE ns = ? AND type = ? AND id > ? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?",
            (namespace, entity_type, page_after_id(cursor) or "", time.time(), limit + 1),
        )

    async def get_entity_types(self, namespace: str) -> list[str]:
        rows = await self._fetchall(
            "SELECT DISTINCT type FROM entities WHERE ns = ? "
            "AND (expires_at IS NULL OR expires_at > ?) ORDER BY type",
            (namespace, time.time()),
        )
        return [r[0] for r in rows]

    # -- conversations ------------------------------------------------------------------

    def _insert_messages(
        self,
        conn: sqlite3.Connection,
        namespace: str,
        conversation_id: str,
        first_seq: int,
        messages: list[JSONObject],
        raws: list[bytes],
        now: float,
    ) -> list[MessageRecord]:
        conn.executemany(
            "INSERT INTO messages (ns, conversation_id, seq, message, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(namespace, conversation_id, first_seq + i, raw, now) for i, raw in enumerate(raws)],
        )
        return [
            MessageRecord(conversation_id, first_seq + i, m, now) for i, m in enumerate(messages)
        ]

    async def append_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        raws = json_bytes_each(messages, messages_json)
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> list[MessageRecord]:
            return self._append_in(conn, namespace, conversation_id, messages, raws, now, actor)

        return await self._write(write)

    async def append_messages_batch(
        self, namespace: str, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        """All or nothing: one write of the group commit for every conversation."""
        raws = [json_bytes_each(item.messages, item.messages_json) for item in items]
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> list[list[MessageRecord]]:
            return [
                self._append_in(
                    conn, namespace, item.conversation_id, item.messages, raw, now, actor
                )
                for item, raw in zip(items, raws, strict=True)
            ]

        return await self._write(write)

    def _append_in(
        self,
        conn: sqlite3.Connection,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        raws: list[bytes],
        now: float,
        actor: Actor,
    ) -> list[MessageRecord]:
        """One append inside the write transaction on ``conn``."""
        row = _first_row(
            conn,
            "INSERT INTO conversations (ns, id, next_seq, message_count, created_at, "
            "updated_at) VALUES (?1, ?2, ?3 + 1, ?3, ?4, ?4) ON CONFLICT (ns, id) DO UPDATE "
            "SET next_seq = next_seq + ?3, message_count = message_count + ?3, "
            "updated_at = ?4 RETURNING next_seq",
            (namespace, conversation_id, len(messages), now),
        )
        assert row is not None  # an upsert returns its row
        first = row[0] - len(messages)
        conn.execute(
            _LOG_CHANGE,
            _change(
                namespace,
                changes.CONVERSATION_APPENDED,
                now,
                conversation_id=conversation_id,
                version=row[0] - 1,
                count=len(messages),
                actor=actor,
            ),
        )
        return self._insert_messages(conn, namespace, conversation_id, first, messages, raws, now)

    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        rows = await self._stored_messages(namespace, conversation_id, limit, before_seq)
        return [MessageRecord(conversation_id, s, orjson.loads(m), t) for s, t, m in rows]

    async def load_message_rows(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRow]:
        rows = await self._stored_messages(namespace, conversation_id, limit, before_seq)
        return [MessageRow(s, t, m) for s, t, m in rows]

    async def _stored_messages(
        self, namespace: str, conversation_id: str, limit: int | None, before_seq: int | None
    ) -> list[tuple[int, float, bytes]]:
        """``load_messages``' rows as stored: seq, time, message JSON."""
        bound = before_seq if before_seq is not None else 2**62
        if limit is None:
            rows = await self._fetchall(
                "SELECT seq, created_at, message FROM messages WHERE ns = ? "
                "AND conversation_id = ? AND seq < ? ORDER BY seq",
                (namespace, conversation_id, bound),
            )
        else:
            rows = await self._fetchall(
                "SELECT seq, created_at, message FROM messages WHERE ns = ? "
                "AND conversation_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (namespace, conversation_id, bound, limit),
            )
            rows.reverse()
        return rows

    async def replace_conversation(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        raws = json_bytes_each(messages, messages_json)
        now = time.time()
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> list[MessageRecord]:
            if keeps_history(namespace):
                self._keep_revision(conn, namespace, conversation_id, now, actor)
            conn.execute(
                "DELETE FROM messages WHERE ns = ? AND conversation_id = ?",
                (namespace, conversation_id),
            )
            conn.execute(
                "INSERT INTO conversations (ns, id, next_seq, message_count, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ns, id) DO UPDATE SET "
                "next_seq = excluded.next_seq, message_count = excluded.message_count, "
                "updated_at = excluded.updated_at",
                (namespace, conversation_id, len(messages) + 1, len(messages), now, now),
            )
            conn.execute(
                _LOG_CHANGE,
                _change(
                    namespace,
                    changes.CONVERSATION_REPLACED,
                    now,
                    conversation_id=conversation_id,
                    version=len(messages),
                    count=len(messages),
                    actor=actor,
                ),
            )
            return self._insert_messages(conn, namespace, conversation_id, 1, messages, raws, now)

        return await self._write(write)

    @staticmethod
    def _keep_revision(
        conn: sqlite3.Connection, namespace: str, conversation_id: str, now: float, actor: Actor
    ) -> None:
        """The conversation's messages as its next revision (none when it has none)."""
        row = _first_row(
            conn,
            "INSERT INTO conversation_revisions (ns, conversation_id, revision, replaced_at, "
            "message_count, actor) SELECT ?1, ?2, COALESCE((SELECT MAX(revision) FROM "
            "conversation_revisions WHERE ns = ?1 AND conversation_id = ?2), 0) + 1, ?3, "
            "COUNT(*), ?4 FROM messages WHERE ns = ?1 AND conversation_id = ?2 "
            "HAVING COUNT(*) > 0 RETURNING revision",
            (namespace, conversation_id, now, actor.name),
        )
        if row is not None:
            conn.execute(
                "INSERT INTO revision_messages (ns, conversation_id, revision, seq, message, "
                "created_at) SELECT ns, conversation_id, ?3, seq, message, created_at "
                "FROM messages WHERE ns = ?1 AND conversation_id = ?2",
                (namespace, conversation_id, row[0]),
            )

    @staticmethod
    def _drop_revisions(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]) -> None:
        """Erase the revisions of these (namespace, conversation) keys."""
        conn.executemany("DELETE FROM revision_messages WHERE ns = ? AND conversation_id = ?", keys)
        conn.executemany(
            "DELETE FROM conversation_revisions WHERE ns = ? AND conversation_id = ?", keys
        )

    async def import_conversation(
        self, namespace: str, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        last_seq = check_imported_seqs(conversation_id, messages)
        raws = [orjson.dumps(m.message) for m in messages]
        now = time.time()
        first = messages[0].created_at if messages else now
        last = messages[-1].created_at if messages else now
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM messages WHERE ns = ? AND conversation_id = ?",
                (namespace, conversation_id),
            )
            conn.execute(
                "INSERT INTO conversations (ns, id, next_seq, message_count, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ns, id) DO UPDATE SET "
                "next_seq = excluded.next_seq, message_count = excluded.message_count, "
                "created_at = excluded.created_at, updated_at = excluded.updated_at",
                (namespace, conversation_id, last_seq + 1, len(messages), first, last),
            )
            conn.executemany(
                "INSERT INTO messages (ns, conversation_id, seq, message, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (namespace, conversation_id, m.seq, raw, m.created_at)
                    for m, raw in zip(messages, raws, strict=True)
                ],
            )
            conn.execute(
                _LOG_CHANGE,
                _change(
                    namespace,
                    changes.CONVERSATION_REPLACED,
                    now,
                    conversation_id=conversation_id,
                    version=last_seq,
                    count=len(messages),
                    actor=actor,
                ),
            )

        await self._write(write)

    async def pop_message(self, namespace: str, conversation_id: str) -> MessageRecord | None:
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> MessageRecord | None:
            row = _first_row(
                conn,
                "DELETE FROM messages WHERE ns = ?1 AND conversation_id = ?2 AND seq = "
                "(SELECT MAX(seq) FROM messages WHERE ns = ?1 AND conversation_id = ?2) "
                "RETURNING seq, message, created_at",
                (namespace, conversation_id),
            )
            if row is None:
                return None
            now = time.time()
            conn.execute(
                _LOG_CHANGE,
                _change(
                    namespace,
                    changes.CONVERSATION_POPPED,
                    now,
                    conversation_id=conversation_id,
                    version=row[0],
                    actor=actor,
                ),
            )
            # seq stays 1..n: the next append takes the popped seq again.
            left = _first_row(
                conn,
                "UPDATE conversations SET next_seq = next_seq - 1, "
                "message_count = message_count - 1, updated_at = ? "
                "WHERE ns = ? AND id = ? RETURNING message_count",
                (now, namespace, conversation_id),
            )
            if left is not None and left[0] <= 0:
                conn.execute(
                    "DELETE FROM conversations WHERE ns = ? AND id = ?",
                    (namespace, conversation_id),
                )
            return MessageRecord(conversation_id, row[0], orjson.loads(row[1]), row[2])

        return await self._write(write)

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "DELETE FROM messages WHERE ns = ? AND conversation_id = ?",
                (namespace, conversation_id),
            )
            self._drop_revisions(conn, [(namespace, conversation_id)])
            cur = conn.execute(
                "DELETE FROM conversations WHERE ns = ? AND id = ?", (namespace, conversation_id)
            )
            deleted = cur.rowcount > 0
            if deleted:
                conn.execute(
                    _LOG_CHANGE,
                    _change(
                        namespace,
                        changes.CONVERSATION_DELETED,
                        time.time(),
                        conversation_id=conversation_id,
                        actor=actor,
                    ),
                )
            return deleted

        return await self._write(write)

    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        rows = await self._fetchall(
            "SELECT id, message_count, created_at, updated_at FROM conversations "
            "WHERE ns = ? AND id > ? ORDER BY id LIMIT ?",
            (namespace, page_after_id(cursor) or "", limit + 1),
        )
        return build_page([ConversationInfo(*r) for r in rows], limit, _by_conversation_id)

    # -- tool usage ---------------------------------------------------------------------

    async def record_tool_usage(
        self,
        namespace: str,
        record: ToolUsageRecord,
        *,
        input_json: bytes | None = None,
        output_json: bytes | None = None,
    ) -> ToolUsageRecord:
        actor = current_actor() or _NOBODY
        await self._write_statement(
            "INSERT INTO tool_usage_writes (ns, id, tool_name, input, output, duration_ms, "
            "success, ts, conversation_id, logged_at, actor, address) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                namespace,
                record.id,
                record.tool_name,
                json_bytes(record.input, input_json),
                json_bytes(record.output, output_json),
                record.duration_ms,
                int(record.success),
                record.timestamp,
                record.conversation_id,
                time.time(),
                actor.name,
                actor.address,
            ),
        )
        return record

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
        rows = await self._time_page(
            "SELECT id, tool_name, input, output, duration_ms, success, ts, conversation_id "
            "FROM tool_usage",
            [
                ("ns = ?", namespace),
                ("tool_name = ?", tool_name),
                ("ts >= ?", start),
                ("ts < ?", end),
            ],
            cursor,
            limit,
        )
        return build_page([_tool_usage(r) for r in rows], limit, by_time)

    async def get_tool_names(self, namespace: str) -> list[str]:
        rows = await self._fetchall(
            "SELECT DISTINCT tool_name FROM tool_usage WHERE ns = ? ORDER BY tool_name",
            (namespace,),
        )
        return [r[0] for r in rows]

    # -- feedback -----------------------------------------------------------------------

    async def save_feedback(
        self, namespace: str, record: FeedbackRecord, *, data_json: bytes | None = None
    ) -> FeedbackRecord:
        actor = current_actor() or _NOBODY
        await self._write_statement(
            "INSERT INTO feedback_writes (ns, id, agent_name, feedback_type, data, ts, "
            "logged_at, actor, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                namespace,
                record.id,
                record.agent_name,
                record.feedback_type,
                json_bytes(record.data, data_json),
                record.timestamp,
                time.time(),
                actor.name,
                actor.address,
            ),
        )
        return record

    async def query_feedback(
        self,
        namespace: str,
        *,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        rows = await self._time_page(
            "SELECT id, agent_name, feedback_type, data, ts FROM feedback",
            [
                ("ns = ?", namespace),
                ("agent_name = ?", agent_name),
                ("feedback_type = ?", feedback_type),
            ],
            cursor,
            limit,
        )
        return build_page([_feedback(r) for r in rows], limit, by_time)

    # -- one record by id (replication) -------------------------------------------------

    async def load_tool_usage(self, namespace: str, record_id: str) -> ToolUsageRecord | None:
        row = await self._fetchone(
            "SELECT id, tool_name, input, output, duration_ms, success, ts, conversation_id "
            "FROM tool_usage WHERE ns = ? AND id = ?",
            (namespace, record_id),
        )
        return _tool_usage(row) if row is not None else None

    async def load_feedback(self, namespace: str, record_id: str) -> FeedbackRecord | None:
        row = await self._fetchone(
            "SELECT id, agent_name, feedback_type, data, ts FROM feedback WHERE ns = ? AND id = ?",
            (namespace, record_id),
        )
        return _feedback(row) if row is not None else None

    # -- change log ---------------------------------------------------------------------

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        rows = await self._fetchall(_READ_CHANGES, (namespace, after, limit))
        last = rows[0][0]
        first = rows[0][1] if rows[0][1] is not None else last + 1
        events = [_change_event(r[2:]) for r in rows if r[2] is not None]
        return ChangePage(events, first_position=first, last_position=last)

    async def trim_changes(self, namespace: str) -> None:
        cutoff = time.time() - self.settings.changes_retention_seconds

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_SAVE_LAST_POSITION, (namespace,))
            conn.execute(_TRIM_CHANGES, (namespace, self.settings.changes_max_events, cutoff))

        await self._write(write)

    # -- summary ------------------------------------------------------------------------

    async def summary(self, namespace: str) -> MemorySummary:
        now = time.time()
        entity_rows = await self._fetchall(
            "SELECT type, COUNT(*) FROM entities WHERE ns = ? "
            "AND (expires_at IS NULL OR expires_at > ?) GROUP BY type ORDER BY type",
            (namespace, now),
        )
        conv = await self._fetchone(
            "SELECT COUNT(*), COALESCE(SUM(message_count), 0) FROM conversations WHERE ns = ?",
            (namespace,),
        )
        tool_rows = await self._fetchall(
            "SELECT tool_name, COUNT(*) FROM tool_usage WHERE ns = ? GROUP BY tool_name "
            "ORDER BY tool_name",
            (namespace,),
        )
        fb = await self._fetchone("SELECT COUNT(*) FROM feedback WHERE ns = ?", (namespace,))
        return MemorySummary(
            namespace=namespace,
            entity_counts={r[0]: r[1] for r in entity_rows},
            conversations=conv[0],
            messages=conv[1],
            tool_usage_counts={r[0]: r[1] for r in tool_rows},
            feedback_count=fb[0],
        )

    # -- analytics ----------------------------------------------------------------------
    # One statement per question; SQLite computes the bucket of a time exactly as
    # core.analytics.hour_of does (truncation = floor for times >= 0, then the division's
    # rounding corrected by comparing with the hour's edges).

    async def analytics_overview(self, namespace: str) -> AnalyticsOverview:
        now = time.time()
        types, conv, msgs, tools, fb = await asyncio.gather(
            self._fetchall(
                "SELECT type, COUNT(*), SUM(length(data)), MIN(created_at), MAX(created_at)"
                " FROM entities WHERE ns = ? AND (expires_at IS NULL OR expires_at > ?)"
                " GROUP BY type",
                (namespace, now),
            ),
            self._fetchone("SELECT COUNT(*) FROM conversations WHERE ns = ?", (namespace,)),
            self._fetchone(
                "SELECT COUNT(*), COALESCE(SUM(length(message)), 0), MIN(created_at),"
                " MAX(created_at) FROM messages WHERE ns = ?",
                (namespace,),
            ),
            self._fetchall(
                "SELECT tool_name, COUNT(*), SUM(length(input) + length(output)), MIN(ts),"
                " MAX(ts) FROM tool_usage WHERE ns = ? GROUP BY tool_name",
                (namespace,),
            ),
            self._fetchone(
                "SELECT COUNT(*), COALESCE(SUM(length(data)), 0), MIN(ts), MAX(ts)"
                " FROM feedback WHERE ns = ?",
                (namespace,),
            ),
        )
        return analytics.overview(
            namespace,
            {r[0]: KindStats(*r[1:]) for r in types},
            conv[0],
            KindStats(*msgs),
            {r[0]: r[1] for r in tools},
            analytics.merge_stats(KindStats(*r[1:]) for r in tools),
            KindStats(*fb),
        )

    async def analytics_growth(
        self, namespace: str, kind: str, window: BucketWindow
    ) -> GrowthSeries:
        table, column, extra = {
            "entities": ("entities", "created_at", " AND (expires_at IS NULL OR expires_at > ?)"),
            "messages": ("messages", "created_at", ""),
            "tool_usage": ("tool_usage", "ts", ""),
            "feedback": ("feedback", "ts", ""),
        }[kind]
        lo, hi = window.scan_range
        params: list[Any] = [window.hours, namespace, lo, hi]
        if extra:
            params.append(time.time())
        rows = await self._fetchall(
            f"SELECT {_hour(column)} / ? AS k, COUNT(*) FROM {table}"
            f" WHERE ns = ? AND {column} >= ? AND {column} < ?{extra} GROUP BY k",
            params,
        )
        return analytics.growth(kind, window, {r[0]: r[1] for r in rows})

    def _tool_window(
        self, namespace: str, window: BucketWindow, tool_name: str | None
    ) -> tuple[str, list[Any]]:
        """The CTE of the uses in the window (with their bucket key ``k``), without their
        payloads (the listed calls are read in full by id)."""
        lo, hi = window.scan_range
        sql = (
            "WITH w AS (SELECT id, tool_name, duration_ms, success, ts,"
            f" {_hour('ts')} / ? AS k FROM tool_usage"
            " WHERE ns = ? AND ts >= ? AND ts < ?"
            + (" AND tool_name = ?" if tool_name is not None else "")
            + "), u AS (SELECT * FROM w WHERE k BETWEEN ? AND ?) "
        )
        params: list[Any] = [window.hours, namespace, lo, hi]
        if tool_name is not None:
            params.append(tool_name)
        return sql, [*params, window.first, window.last]

    async def analytics_tools(
        self, namespace: str, window: BucketWindow, *, tool_name: str | None, limit: int
    ) -> ToolAnalytics:
        cte, params = self._tool_window(namespace, window, tool_name)
        bins = " ".join(
            f"WHEN duration_ms <= {bound!r} THEN {i}"
            for i, bound in enumerate(analytics.HISTOGRAM_BOUNDS_MS)
        )
        ranks = " OR ".join(f"rn = MAX(1, ({p} * n + 99) / 100)" for p in analytics.PERCENTILES)
        columns = (
            "t.id, t.tool_name, t.input, t.output, t.duration_ms, t.success, t.ts,"
            " t.conversation_id"
        )
        listed = (
            f" SELECT {columns} FROM r JOIN tool_usage t ON t.ns = ? AND t.id = r.id"
            " WHERE r.rn <= ? ORDER BY r.tool_name, r.rn"
        )
        series, histogram, percentiles, slowest, failures = await asyncio.gather(
            self._fetchall(
                cte + "SELECT tool_name, k, COUNT(*), SUM(success) FROM u GROUP BY tool_name, k",
                params,
            ),
            self._fetchall(
                cte + f"SELECT tool_name, CASE {bins} ELSE {len(analytics.HISTOGRAM_BOUNDS_MS)}"
                " END AS b, COUNT(*) FROM u GROUP BY tool_name, b",
                params,
            ),
            self._fetchall(
                cte + ", r AS (SELECT tool_name, duration_ms, ROW_NUMBER() OVER"
                " (PARTITION BY tool_name ORDER BY duration_ms) AS rn,"
                " COUNT(*) OVER (PARTITION BY tool_name) AS n FROM u)"
                f" SELECT tool_name, rn, n, duration_ms FROM r WHERE {ranks}",
                params,
            ),
            self._fetchall(
                cte + ", r AS (SELECT id, tool_name, ROW_NUMBER() OVER (PARTITION BY tool_name"
                " ORDER BY duration_ms DESC, ts DESC, id DESC) AS rn FROM u)" + listed,
                [*params, namespace, limit],
            ),
            self._fetchall(
                cte + ", r AS (SELECT id, tool_name, ROW_NUMBER() OVER (PARTITION BY tool_name"
                " ORDER BY ts DESC, id DESC) AS rn FROM u WHERE success = 0)" + listed,
                [*params, namespace, limit],
            ),
        )
        tallies: dict[str, ToolTally] = {}
        for name, key, calls, successes in series:
            t = tallies.setdefault(name, ToolTally())
            t.calls += calls
            t.successes += successes
            t.series[key] = [calls, successes]
        for name, b, count in histogram:
            tallies[name].histogram[b] = count
        for name, rn, n, duration in percentiles:
            for p in analytics.PERCENTILES:
                if rn == analytics.percentile_rank(p, n):
                    tallies[name].percentiles[p] = duration
        for row in slowest:
            tallies[row[1]].slowest.append(_tool_usage(row))
        for row in failures:
            tallies[row[1]].recent_failures.append(_tool_usage(row))
        return analytics.tool_analytics(window, tallies)

    async def analytics_feedback(self, namespace: str, window: BucketWindow) -> FeedbackAnalytics:
        lo, hi = window.scan_range
        rating = (
            "CASE WHEN json_type(CAST(data AS TEXT), '$.rating') IN ('integer', 'real')"
            " THEN json_extract(CAST(data AS TEXT), '$.rating') END"
        )
        rows = await self._fetchall(
            f"SELECT {_hour('ts')} / ? AS k, COUNT(*), COUNT({rating}),"
            f" TOTAL({rating}) FROM feedback WHERE ns = ? AND ts >= ? AND ts < ? GROUP BY k",
            (window.hours, namespace, lo, hi),
        )
        return analytics.feedback_analytics(window, {r[0]: (r[1], r[2], r[3]) for r in rows})

    # -- optional usage hooks (quotas, cross-namespace summary) -------------------------

    # -- retention ----------------------------------------------------------------------

    async def set_entity_pinned(
        self, namespace: str, entity_type: str, entity_id: str, pinned: bool
    ) -> EntityRecord | None:
        now = time.time()

        def write(conn: sqlite3.Connection) -> EntityRecord | None:
            row = _first_row(
                conn,
                f"UPDATE entities SET pinned = ? WHERE ns = ? AND type = ? AND id = ? "
                f"AND (expires_at IS NULL OR expires_at > ?) RETURNING {_ENTITY_COLUMNS}",
                (int(pinned), namespace, entity_type, entity_id, now),
            )
            return _entity(row) if row is not None else None

        return await self._write(write, one_statement=True)

    async def touch_entities(
        self, namespace: str, keys: Sequence[tuple[str, str]], at: float
    ) -> None:
        if not keys:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE entities SET accessed_at = MAX(COALESCE(accessed_at, 0), ?) "
                "WHERE ns = ? AND type = ? AND id = ?",
                [(at, namespace, t, i) for t, i in keys],
            )

        await self._write(write)

    async def prune(
        self, namespace: str, cutoffs: Cutoffs, now: float, *, dry_run: bool, limit: int
    ) -> PruneReport:
        report = PruneReport(now=now, dry_run=dry_run, limit=limit)
        if dry_run:
            if self._reader is None:
                raise BackendUnavailableError("embedded store is not open")
            # The enforcing run's selection code (sqlite3 calls), on a connection of its
            # own in a worker thread: in the writer thread every write would wait for the
            # whole selection, and on the reader thread every read would.
            await asyncio.to_thread(
                self._select_for_dry_run, namespace, cutoffs, now, limit, report
            )
            return report
        actor = current_actor() or _NOBODY

        def write(conn: sqlite3.Connection) -> PruneReport:
            self._select_prunable(conn, namespace, cutoffs, now, limit, report)
            self._remove_pruned(conn, namespace, report, actor)
            return report

        return await self._write(write)

    def _select_for_dry_run(
        self, namespace: str, cutoffs: Cutoffs, now: float, limit: int, report: PruneReport
    ) -> None:
        """A dry run's selection, on a read-only connection opened for it: in one read
        transaction, so every kind comes from one snapshot (WAL: writes go on beside it; a
        checkpoint's ``RESTART`` gives up on it after ``_RESTART_WAIT_MS``)."""
        with DRIVER_ERRORS("read"):
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout=5000")
                conn.execute("PRAGMA query_only=ON")
                conn.execute("BEGIN")
                self._select_prunable(conn, namespace, cutoffs, now, limit, report)
            finally:
                conn.close()  # ends the read transaction

    def _select_prunable(
        self,
        conn: sqlite3.Connection,
        namespace: str,
        cutoffs: Cutoffs,
        now: float,
        limit: int,
        report: PruneReport,
    ) -> None:
        """Fill ``report`` with the first ``limit`` items of each kind the cutoffs select
        (core/retention.py), read on ``conn`` (in the removing transaction when enforcing)."""
        c = cutoffs
        if c.entity_saved_before is not None or c.entity_idle_before is not None:
            rows = list(
                _rows(
                    conn,
                    "SELECT type, id, version, updated_at, accessed_at FROM entities "
                    "WHERE ns = ?1 AND pinned = 0 AND (expires_at IS NULL OR expires_at > ?2) "
                    "AND ((?3 IS NOT NULL AND updated_at < ?3) OR (?4 IS NOT NULL AND "
                    "MAX(updated_at, COALESCE(accessed_at, updated_at)) < ?4)) "
                    "ORDER BY type, id LIMIT ?5",
                    (namespace, now, c.entity_saved_before, c.entity_idle_before, limit + 1),
                )
            )
            report.more["entities"] = len(rows) > limit
            for t, i, version, updated, accessed in rows[:limit]:
                reason = c.entity_reason(updated, accessed, False)
                assert reason is not None  # the query's condition is the same rule
                report.entities.append(PrunedEntity(t, i, reason, version))
        if c.conversation_idle_before is not None or c.conversation_max_messages is not None:
            rows = list(
                _rows(
                    conn,
                    # the last removed seq is read, not computed: an imported
                    # conversation may have gaps in its seqs
                    "SELECT id, next_seq - 1, message_count, updated_at, (SELECT seq FROM "
                    "messages m WHERE m.ns = ?1 AND m.conversation_id = conversations.id "
                    "ORDER BY seq DESC LIMIT 1 OFFSET COALESCE(?3, 0)) FROM conversations "
                    "WHERE ns = ?1 AND ((?2 IS NOT NULL AND updated_at < ?2) OR "
                    "(?3 IS NOT NULL AND message_count > ?3)) ORDER BY id LIMIT ?4",
                    (namespace, c.conversation_idle_before, c.conversation_max_messages, limit + 1),
                )
            )
            report.more["conversations"] = len(rows) > limit
            keep = c.conversation_max_messages
            for cid, last, count, updated, newest_gone in rows[:limit]:
                if c.conversation_idle_before is not None and updated < c.conversation_idle_before:
                    report.conversations.append(PrunedConversation(cid, "idle", last, count))
                else:
                    assert keep is not None
                    report.conversations.append(
                        PrunedConversation(cid, "max_messages", newest_gone, count - keep)
                    )
        for kind, table, before, into in (
            ("tool_usage", "tool_usage", c.tool_usage_before, report.tool_usage),
            ("feedback", "feedback", c.feedback_before, report.feedback),
        ):
            if before is None:
                continue
            rows = list(
                _rows(
                    conn,
                    f"SELECT id, ts FROM {table} WHERE ns = ? AND ts < ? ORDER BY ts, id LIMIT ?",
                    (namespace, before, limit + 1),
                )
            )
            report.more[kind] = len(rows) > limit
            into.extend(PrunedRecord(i, ts) for i, ts in rows[:limit])
        if c.versions_on:
            self._select_versions(conn, namespace, c, limit, report)

    @staticmethod
    def _select_versions(
        conn: sqlite3.Connection,
        namespace: str,
        cutoffs: Cutoffs,
        limit: int,
        report: PruneReport,
    ) -> None:
        """The first ``limit`` history rows the versions rules select (core/retention.py):
        entity rows by (type, id, version, deleted), then revisions by (conversation,
        revision); each row's rank computed over its key's rows, newest first."""
        keep, before = cutoffs.versions_keep, cutoffs.versions_saved_before
        rows = list(
            _rows(
                conn,
                "WITH r AS (SELECT type, id, version, deleted, saved_at, ROW_NUMBER() OVER "
                "(PARTITION BY type, id ORDER BY version DESC, deleted DESC) - 1 AS rank, "
                "EXISTS (SELECT 1 FROM entities e WHERE e.ns = ?1 AND e.type = v.type "
                "AND e.id = v.id) AS has_row FROM entity_versions v WHERE ns = ?1) "
                "SELECT type, id, version, deleted, saved_at, rank, has_row FROM r "
                "WHERE NOT (rank = 0 AND NOT has_row) AND ((?2 IS NOT NULL AND rank >= ?2) "
                "OR (?3 IS NOT NULL AND saved_at < ?3)) ORDER BY type, id, version, deleted "
                "LIMIT ?4",
                (namespace, keep, before, limit + 1),
            )
        )
        for t, i, version, deleted, saved_at, rank, has_row in rows:
            reason = cutoffs.version_reason(rank, saved_at, not has_row)
            assert reason is not None  # the query's condition is the same rule
            report.versions.append(PrunedVersion(t, i, version, reason, bool(deleted)))
        if len(report.versions) <= limit:
            revisions = _rows(
                conn,
                "WITH r AS (SELECT conversation_id, revision, replaced_at, ROW_NUMBER() OVER "
                "(PARTITION BY conversation_id ORDER BY revision DESC) - 1 AS rank FROM "
                "conversation_revisions WHERE ns = ?1) SELECT conversation_id, revision, "
                "replaced_at, rank FROM r WHERE rank > 0 AND ((?2 IS NOT NULL AND rank >= ?2) "
                "OR (?3 IS NOT NULL AND replaced_at < ?3)) ORDER BY conversation_id, revision "
                "LIMIT ?4",
                (namespace, keep, before, limit + 1 - len(report.versions)),
            )
            for cid, revision, replaced_at, rank in revisions:
                reason = cutoffs.version_reason(rank, replaced_at, True)
                assert reason is not None
                report.versions.append(PrunedVersion(None, cid, revision, reason))
        report.more["versions"] = len(report.versions) > limit
        del report.versions[limit:]

    @staticmethod
    def _remove_pruned(
        conn: sqlite3.Connection, namespace: str, report: PruneReport, actor: Actor
    ) -> None:
        """Delete what ``_select_prunable`` selected in this transaction, with the events."""
        now = report.now
        if report.versions:
            conn.executemany(
                "DELETE FROM entity_versions WHERE ns = ? AND type = ? AND id = ? "
                "AND version = ? AND deleted = ?",
                [
                    (namespace, v.type, v.id, v.version, int(v.deleted))
                    for v in report.versions
                    if v.type is not None
                ],
            )
            revisions = [(namespace, v.id, v.version) for v in report.versions if v.type is None]
            conn.executemany(
                "DELETE FROM revision_messages WHERE ns = ? AND conversation_id = ? "
                "AND revision = ?",
                revisions,
            )
            conn.executemany(
                "DELETE FROM conversation_revisions WHERE ns = ? AND conversation_id = ? "
                "AND revision = ?",
                revisions,
            )
        if report.entities:
            # the trigger moves each row to history; a tombstone keeps its number
            conn.executemany(
                "DELETE FROM entities WHERE ns = ? AND type = ? AND id = ?",
                [(namespace, e.type, e.id) for e in report.entities],
            )
            if keeps_history(namespace):
                conn.executemany(
                    _TOMBSTONE,
                    [
                        (namespace, e.type, e.id, e.version, now, changes.RETENTION_ACTOR)
                        for e in report.entities
                    ],
                )
        events = [
            _change(
                namespace,
                changes.ENTITY_PRUNED,
                now,
                entity_type=e.type,
                entity_id=e.id,
                version=e.version,
                actor=actor,
            )
            for e in report.entities
        ]
        # one executemany per kind of change: each prepares its statement once
        convs = report.conversations
        if convs:
            conn.executemany(
                "DELETE FROM messages WHERE ns = ? AND conversation_id = ? AND seq <= ?",
                [(namespace, c.id, c.through_seq) for c in convs],
            )
        idle = [(namespace, c.id) for c in convs if c.reason == "idle"]
        if idle:
            conn.executemany("DELETE FROM conversations WHERE ns = ? AND id = ?", idle)
            EmbeddedMemoryBackend._drop_revisions(conn, idle)
        trimmed = [(c.messages, namespace, c.id) for c in convs if c.reason != "idle"]
        if trimmed:
            # seq stay as they were: the oldest kept message keeps its number
            conn.executemany(
                "UPDATE conversations SET message_count = message_count - ? "
                "WHERE ns = ? AND id = ?",
                trimmed,
            )
        events += [
            _change(
                namespace,
                changes.CONVERSATION_PRUNED if c.reason == "idle" else changes.CONVERSATION_TRIMMED,
                now,
                conversation_id=c.id,
                version=c.through_seq,
                count=c.messages,
                actor=actor,
            )
            for c in convs
        ]
        for table, kind, records in (
            ("tool_usage", changes.TOOL_USAGE_PRUNED, report.tool_usage),
            ("feedback", changes.FEEDBACK_PRUNED, report.feedback),
        ):
            if records:
                conn.executemany(
                    f"DELETE FROM {table} WHERE ns = ? AND id = ?",
                    [(namespace, r.id) for r in records],
                )
                events.append(_change(namespace, kind, now, count=len(records), actor=actor))
        if events:
            conn.executemany(_LOG_CHANGE, events)

    async def stored_bytes(self, namespace: str) -> int | None:
        row = await self._fetchone(
            "SELECT (SELECT COALESCE(SUM(length(data)), 0) FROM entities WHERE ns = ?1)"
            " + (SELECT COALESCE(SUM(length(message)), 0) FROM messages WHERE ns = ?1)"
            " + (SELECT COALESCE(SUM(length(input) + length(output)), 0)"
            "    FROM tool_usage WHERE ns = ?1)"
            " + (SELECT COALESCE(SUM(length(data)), 0) FROM feedback WHERE ns = ?1)",
            (namespace,),
        )
        return int(row[0])

    async def logical_bytes(self, namespace: str) -> int | None:
        # Only a payload with the envelope's key near its start is parsed (a top-level
        # reserved key is always an envelope; json_extract finds no "n" in any other).
        def logical(column: str) -> str:
            return (
                f"COALESCE(CASE WHEN instr(CAST(substr({column}, 1, 64) AS TEXT),"
                f" '\"memstore:sealed\":{{') > 0 THEN json_extract(CAST({column} AS TEXT),"
                f" '$.\"memstore:sealed\".n') END, length({column}))"
            )

        row = await self._fetchone(
            f"SELECT (SELECT COALESCE(SUM({logical('data')}), 0) FROM entities WHERE ns = ?1)"
            f" + (SELECT COALESCE(SUM({logical('message')}), 0) FROM messages WHERE ns = ?1)"
            f" + (SELECT COALESCE(SUM({logical('input')} + {logical('output')}), 0)"
            "    FROM tool_usage WHERE ns = ?1)"
            f" + (SELECT COALESCE(SUM({logical('data')}), 0) FROM feedback WHERE ns = ?1)",
            (namespace,),
        )
        return int(row[0])

    # -- version history (module docstring) -----------------------------------------------

    async def list_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[EntityVersion]:
        after = page_after_version(cursor) or (2**62, 2)
        rows = await self._fetchall(
            f"SELECT * FROM ({_KEY_ROWS}) WHERE (version, deleted) < (?4, ?5) "
            "ORDER BY version DESC, deleted DESC LIMIT ?6",
            (namespace, entity_type, entity_id, *after, limit + 1),
        )
        items = [_version(entity_type, entity_id, r) for r in rows]
        return build_page(items, limit, history_order)

    async def load_entity_version(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        check_version_or_at(version, at)
        if version is not None:
            row = await self._fetchone(
                f"SELECT * FROM ({_KEY_ROWS}) WHERE version = ?4 AND deleted = 0 LIMIT 1",
                (namespace, entity_type, entity_id, version),
            )
        else:
            row = await self._fetchone(
                f"SELECT * FROM ({_KEY_ROWS}) WHERE saved_at <= ?4 "
                "ORDER BY version DESC, deleted DESC LIMIT 1",
                (namespace, entity_type, entity_id, at),
            )
        return None if row is None else _version(entity_type, entity_id, row)

    async def list_versioned_entities(
        self, namespace: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[EntityVersion]:
        after = page_after_key(cursor) or ("", "")
        rows = await self._fetchall(
            "WITH k AS (SELECT type, id FROM entities WHERE ns = ?1 AND (type, id) > (?2, ?3) "
            "UNION SELECT type, id FROM entity_versions WHERE ns = ?1 AND (type, id) > (?2, ?3) "
            "ORDER BY type, id LIMIT ?4) "
            "SELECT k.type, k.id, e.version, 0, e.data, e.updated_at, e.actor, e.expires_at "
            "FROM k JOIN entities e ON e.ns = ?1 AND e.type = k.type AND e.id = k.id "
            "UNION ALL SELECT k.type, k.id, v.version, v.deleted, v.data, v.saved_at, v.actor, "
            "v.expires_at FROM k JOIN entity_versions v ON v.ns = ?1 AND v.type = k.type "
            "AND v.id = k.id WHERE NOT EXISTS (SELECT 1 FROM entities e WHERE e.ns = ?1 "
            "AND e.type = k.type AND e.id = k.id) AND (v.version, v.deleted) = (SELECT "
            "version, deleted FROM entity_versions w WHERE w.ns = ?1 AND w.type = k.type "
            "AND w.id = k.id ORDER BY version DESC, deleted DESC LIMIT 1) ORDER BY 1, 2",
            (namespace, *after, limit + 1),
        )
        items = [_version(r[0], r[1], r[2:]) for r in rows]
        return build_page(items, limit, by_key)

    async def import_entity_versions(
        self, namespace: str, versions: Sequence[EntityVersion]
    ) -> None:
        if not versions:
            return
        rows = [
            (
                namespace,
                v.type,
                v.id,
                v.version,
                int(v.deleted),
                None if v.data is None else orjson.dumps(v.data),
                v.saved_at,
                v.actor,
                v.expires_at,
            )
            for v in versions
        ]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO entity_versions (ns, type, id, version, deleted, data, "
                "saved_at, actor, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        # not ``one_statement``: ``executemany`` runs the statement once per row, and a row
        # failing must take the rows before it away too
        await self._write(write)

    async def list_conversation_revisions(
        self, namespace: str, conversation_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ConversationRevision]:
        below = page_after_revision(cursor) or 2**62
        rows = await self._fetchall(
            "SELECT conversation_id, revision, replaced_at, message_count, actor "
            "FROM conversation_revisions WHERE ns = ? AND conversation_id = ? AND revision < ? "
            "ORDER BY revision DESC LIMIT ?",
            (namespace, conversation_id, below, limit + 1),
        )
        return build_page([ConversationRevision(*r) for r in rows], limit, by_revision)

    async def load_conversation_revision(
        self, namespace: str, conversation_id: str, revision: int
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        rows = await self._fetchall(
            "SELECT r.conversation_id, r.revision, r.replaced_at, r.message_count, r.actor, "
            "m.seq, m.message, m.created_at FROM conversation_revisions r "
            "LEFT JOIN revision_messages m ON m.ns = r.ns "
            "AND m.conversation_id = r.conversation_id AND m.revision = r.revision "
            "WHERE r.ns = ? AND r.conversation_id = ? AND r.revision = ? ORDER BY m.seq",
            (namespace, conversation_id, revision),
        )
        if not rows:
            return None
        header = ConversationRevision(*rows[0][:5])
        messages = [
            MessageRecord(conversation_id, r[5], orjson.loads(r[6]), r[7])
            for r in rows
            if r[5] is not None
        ]
        return header, messages

    async def import_conversation_revision(
        self,
        namespace: str,
        revision: ConversationRevision,
        messages: Sequence[MessageRecord],
    ) -> None:
        cid, number = revision.conversation_id, revision.revision
        rows = [
            (namespace, cid, number, m.seq, orjson.dumps(m.message), m.created_at) for m in messages
        ]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO conversation_revisions (ns, conversation_id, revision, "
                "replaced_at, message_count, actor) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    namespace,
                    cid,
                    number,
                    revision.replaced_at,
                    revision.message_count,
                    revision.actor,
                ),
            )
            conn.execute(
                "DELETE FROM revision_messages WHERE ns = ? AND conversation_id = ? "
                "AND revision = ?",
                (namespace, cid, number),
            )
            conn.executemany(
                "INSERT INTO revision_messages (ns, conversation_id, revision, seq, message, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._write(write)

    async def delete_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        versions: Sequence[tuple[int, bool]],
    ) -> int:
        rows = [(namespace, entity_type, entity_id, v, int(d)) for v, d in versions]
        if not rows:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            removed = 0
            for row in rows:
                cur = conn.execute(
                    "DELETE FROM entity_versions WHERE ns = ? AND type = ? AND id = ? "
                    "AND version = ? AND deleted = ?",
                    row,
                )
                removed += cur.rowcount
            return removed

        return await self._write(write)

    async def delete_conversation_revisions(
        self, namespace: str, conversation_id: str, revisions: Sequence[int]
    ) -> int:
        rows = [(namespace, conversation_id, r) for r in revisions]
        if not rows:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            removed = 0
            for row in rows:
                conn.execute(
                    "DELETE FROM revision_messages WHERE ns = ? AND conversation_id = ? "
                    "AND revision = ?",
                    row,
                )
                cur = conn.execute(
                    "DELETE FROM conversation_revisions WHERE ns = ? AND conversation_id = ? "
                    "AND revision = ?",
                    row,
                )
                removed += cur.rowcount
            return removed

        return await self._write(write)

    async def purge_history(self, namespace: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            # all but the newest row of a key without an entity row (it holds the number)
            entity_rows = conn.execute(
                "DELETE FROM entity_versions WHERE ns = ?1 AND NOT (NOT EXISTS (SELECT 1 "
                "FROM entities e WHERE e.ns = ?1 AND e.type = entity_versions.type "
                "AND e.id = entity_versions.id) AND (version, deleted) = (SELECT version, "
                "deleted FROM entity_versions w WHERE w.ns = ?1 "
                "AND w.type = entity_versions.type AND w.id = entity_versions.id "
                "ORDER BY version DESC, deleted DESC LIMIT 1))",
                (namespace,),
            )
            removed = entity_rows.rowcount
            conn.execute("DELETE FROM revision_messages WHERE ns = ?", (namespace,))
            revisions = conn.execute(
                "DELETE FROM conversation_revisions WHERE ns = ?", (namespace,)
            )
            return int(removed + revisions.rowcount)

        return await self._write(write)

    async def list_namespaces(self) -> list[str] | None:
        rows = await self._fetchall(
            "SELECT ns FROM entities UNION SELECT ns FROM conversations"
            " UNION SELECT ns FROM tool_usage UNION SELECT ns FROM feedback"
            " UNION SELECT ns FROM entity_versions UNION SELECT ns FROM conversation_revisions"
            " ORDER BY 1",
            (),
        )
        return [r[0] for r in rows]

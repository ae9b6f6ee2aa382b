"""``RedisMemoryBackend``: standalone Redis or Redis Cluster through redis-py asyncio.

Shape (see "Redis backend" in docs/architecture.md for the reasoning and trade-offs):

* The client, retries, durable writes and pipelines are ``connection.RedisConnection``,
  shared with the invalidation bus (``invalidation.py``). Every write carries an operation
  id stored on the object, so a retried write is applied once.
* Every write is one Lua script on one hash slot (``scripts.py``, sources in ``lua/``);
  multi-shard reads (listings, summary) are one pipeline of single-slot commands
  (``keys.py``).
* Only the master of a slot is read (no replica reads), so a client reads its own writes.
* Change log: each write script appends the write's change event in its own atomic step.
  On standalone Redis it goes straight into the namespace's log stream with the next
  position. On a cluster the log is in another slot, so it goes into the outbox stream of
  the write's own slot, and the writer relays the outbox to the log (``RELAY_CHANGES``,
  idempotent per outbox entry) before it returns. The background round
  (``purge_expired``) relays what a writer that died left, prunes expired entities and
  trims the logs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from memstore.backends.base import DistributedMemoryBackend, InvalidationCallback
from memstore.backends.common import (
    ExpiredEntityPurge,
    batch_outcome,
    build_page,
    by_revision,
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
    version_conflict,
)
from memstore.backends.redis import scripts
from memstore.backends.redis.connection import RedisConnection, parse_nodes
from memstore.backends.redis.invalidation import InvalidationBus
from memstore.backends.redis.keys import Keys
from memstore.core import analytics
from memstore.core.analytics import (
    AnalyticsOverview,
    BucketWindow,
    FeedbackAnalytics,
    GrowthSeries,
    KindStats,
    ToolAnalytics,
    ToolTally,
)
from memstore.core.changes import RETENTION_ACTOR, current_actor, current_actor_name
from memstore.core.errors import BackendUnavailableError, ConfigurationError, ConflictError
from memstore.core.keys import conversation_change_key, entity_cache_key
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
    from memstore.core.settings import RedisSettings

log = logging.getLogger(__name__)

__all__ = ["RedisMemoryBackend", "parse_nodes"]


def _f(value: float) -> str:
    """Float as text Redis and Lua parse back to the identical double."""
    return repr(float(value))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score_pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """WITHSCORES replies come flat or already paired depending on the client's callbacks."""
    if reply and isinstance(reply[0], list | tuple):
        return [(_s(m), float(sc)) for m, sc in reply]
    return [(_s(reply[j]), float(reply[j + 1])) for j in range(0, len(reply), 2)]


def _op_id() -> str:
    return os.urandom(12).hex()


#: The cache key whose invalidation the last entity write of this task published inside
#: its script (or that needs none: a conflict changed nothing). ``publish_invalidation``
#: for that key is then a no-op: one round trip per write instead of two. A task that
#: never calls it (direct backend use) leaves the value behind harmlessly; a write that
#: raises clears it, so the manager's fallback publish still goes out after a timeout.
_announced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "memstore_redis_announced", default=None
)

#: The cache keys the last batch write of this task published in its scripts and that
#: ``publish_invalidation`` has not been called for yet (``_announced`` for a batch):
#: each call takes its key out.
_announced_batch: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "memstore_redis_announced_batch", default=None
)


def _forget_announced() -> None:
    """Before a write: nothing is announced any more, so a value left behind (a write
    that raised, a batch whose keys were not all published for) cannot swallow a later
    ``publish_invalidation``."""
    _announced.set(None)
    _announced_batch.set(None)


#: A write script's call: script, hash tag (its slot), KEYS, ARGV
_ScriptCall = tuple[scripts.Script, str, list[str], list[Any]]

#: ARGV of a write script's announcement (how, channel, message) that publishes nothing
_NO_ANNOUNCEMENT = ("", "", "")


#: Outbox entries a write script returns, and the relay reads, at most per batch
#: (``changes.lua`` returns up to 100).
_OUTBOX_BATCH = 100

#: The most messages a grouped read loads (``RedisConnection.read``); more, or a whole
#: history, go on their own, so that the reads made meanwhile do not wait for its reply.
_GROUPED_MESSAGES_MAX = 1000


def _names(actor: bool = True, **names: str | None) -> bytes:
    """The names part of a change event (``changes.lua``): what changed and, for a write
    (``actor``), who wrote it; ``None`` fields are left out."""
    out: dict[str, str] = {k: v for k, v in names.items() if v is not None}
    if actor and (who := current_actor()) is not None:
        if who.name is not None:
            out["actor"] = who.name
        if who.address is not None:
            out["address"] = who.address
    return orjson.dumps(out)


def _entries(reply: list[Any]) -> list[tuple[str, list[Any]]]:
    """Stream entries as (id, the six field values) whether they come from a script
    (``[id, [f, v, ...]]``) or from redis-py's XRANGE reply callback (``(id, {f: v})``)."""
    out: list[tuple[str, list[Any]]] = []
    for entry_id, fields in reply:
        values = list(fields.values()) if isinstance(fields, dict) else list(fields[1::2])
        out.append((_s(entry_id), values))
    return out


def _after(entry_id: str) -> str:
    """The smallest stream id above ``entry_id`` (``XTRIM MINID`` keeps ids >= it)."""
    ms, seq = entry_id.split("-")
    return f"{ms}-{int(seq) + 1}"


def _stream_order(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


class _RelayBatch:
    """Outbox entries of the writes that finished while the previous relay was in flight:
    relayed together, one script per namespace (group commit). Entries of one outbox are
    merged by id and sent oldest first."""

    __slots__ = ("entries", "previous", "task")

    def __init__(self, previous: asyncio.Future[None] | None) -> None:
        #: namespace -> outbox -> entry id -> the entry's six values
        self.entries: dict[str, dict[str, dict[str, list[Any]]]] = {}
        self.previous = previous
        self.task: asyncio.Task[None] | None = None

    def add(self, ns: str, outbox: str, entries: list[tuple[str, list[Any]]]) -> None:
        self.entries.setdefault(ns, {}).setdefault(outbox, {}).update(entries)


def _relay_args(outboxes: dict[str, dict[str, list[Any]]]) -> list[Any]:
    """``RELAY_CHANGES``' ARGV for some outboxes of one namespace."""
    args: list[Any] = []
    for outbox, entries in outboxes.items():
        args += [outbox, len(entries)]
        for entry_id in sorted(entries, key=_stream_order):
            args += [entry_id, *entries[entry_id]]
    return args


def _change_event(position: int, values: list[Any]) -> ChangeEvent:
    """A log entry's fields (time, kind, names JSON, version, count, entity id)."""
    t, kind, names, version, count, entity_id = values
    fields: dict[str, Any] = orjson.loads(names)
    if entity_id:
        fields["entity_id"] = _s(entity_id)
    return ChangeEvent(
        position=position,
        kind=_s(kind),
        timestamp=float(t),
        version=int(version) if version else None,
        count=int(count) if count else None,
        **fields,
    )


def _retrieved(task: asyncio.Task[None]) -> None:
    """Done callback: mark a relay task's exception retrieved (its writers, if any are
    still waiting, get it themselves)."""
    if not task.cancelled():
        task.exception()


def _raise_on_conflict(reply: list[Any], expected_version: int | None) -> None:
    """A write script's ``{"conflict", current|""}`` reply as ``ConflictError``."""
    if _s(reply[0]) == "conflict":
        raise version_conflict(expected_version, int(reply[1]) if reply[1] else None)


def _saved_record(item: EntityWrite, reply: list[Any]) -> EntityRecord:
    """The record ``save_entity``'s script saved for ``item``, or its conflict raised."""
    _raise_on_conflict(reply, item.expected_version)
    return EntityRecord(
        type=item.entity_type,
        id=item.entity_id,
        data=item.data,
        version=int(reply[1]),
        created_at=float(reply[2]),
        updated_at=float(reply[3]),
        expires_at=float(reply[4]) if reply[4] else None,
        pinned=len(reply) > 5 and _s(reply[5]) == "1",
    )


def _itself(member: str) -> tuple[str]:
    return (member,)


def _merged_id_page(shard_ids: list[list[bytes]], limit: int) -> Page[str]:
    """One page of ids out of per-shard, id-ordered index ranges (each of up to
    ``limit + 1`` ids after the cursor)."""
    merged = sorted({_s(m) for ids in shard_ids for m in ids})
    return build_page(merged[: limit + 1], limit, _itself)


def _share(limit: int, shards: int) -> int:
    """How many items a shard returns on a page's first try: its expected share of the
    ``limit + 1`` items plus three standard deviations and one (ids spread evenly over
    the shards, so a shard holding more of a page is rare: about 1 page in 250 of 50
    items over 16 shards, which then takes a second try). Every item returned beyond the
    page costs Redis a copy of its value, so the share is kept tight."""
    expected = (limit + 1) / shards
    return min(limit + 1, math.ceil(expected + 3 * math.sqrt(expected)) + 1)


def _complete(
    rows: list[tuple[Any, ...]], limit: int, bound: tuple[Any, ...] | None
) -> Page[Any] | None:
    """The page of the first ``limit + 1`` of the shards' sorted ``rows``, unless a shard
    that stopped at its share (its last key ``bound``, the lowest such) may hold more of
    it: ``None`` then."""
    rows.sort()
    if bound is not None and (len(rows) <= limit or rows[limit][:-1] > bound):
        return None
    return build_page(rows[: limit + 1], limit, _key_of)


def _key_of(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(row[:-1])


def _merged_entity_page(
    replies: list[list[Any]], limit: int, want: int
) -> Page[tuple[str, bytes | None]] | None:
    """One page of (id, stored value) out of ``LIST_ENTITIES`` replies (each up to
    ``want`` id-ordered ids after the cursor), or ``None`` (``_complete``)."""
    rows: list[tuple[Any, ...]] = []
    bound: tuple[Any, ...] | None = None
    for flat in replies:
        ids = [_s(m) for m in flat[0::2]]
        rows += zip(ids, flat[1::2], strict=True)
        if want <= limit and len(ids) == want and (bound is None or (ids[-1],) < bound):
            bound = (ids[-1],)
    return _complete(rows, limit, bound)


def _merged_time_page(
    replies: list[list[Any]], limit: int, want: int, cap: int | None, after_id: str
) -> Page[tuple[float, str, bytes | None]] | None:
    """One page of (timestamp, id, stored value) out of ``TIME_PAGE`` replies (each up to
    ``want`` rows from the lower bound on, after up to ``cap`` sharing the cursor's
    timestamp, of which the ids after ``after_id`` count), or ``None`` (``_complete``;
    also when a shard may have more ids sharing the cursor's timestamp than it returned)."""
    rows: list[tuple[Any, ...]] = []
    bound: tuple[Any, ...] | None = None
    for flat in replies:
        same, ranged = int(flat[0]), int(flat[1])
        if cap is not None and same >= cap:
            return None
        for j in range(2, 2 + 3 * same, 3):
            if (m := _s(flat[j])) > after_id:
                rows.append((float(flat[j + 1]), m, flat[j + 2]))
        last: tuple[Any, ...] | None = None
        for j in range(2 + 3 * same, 2 + 3 * (same + ranged), 3):
            last = (float(flat[j + 1]), _s(flat[j]))
            rows.append((*last, flat[j + 2]))
        if (
            want <= limit
            and ranged == want
            and last is not None
            and (bound is None or last < bound)
        ):
            bound = last
    return _complete(rows, limit, bound)


def _pairs(reply: list[Any]) -> dict[int, int]:
    """``{key: count}`` from a flat ``[key, count, ...]`` script reply."""
    return {int(reply[j]): int(reply[j + 1]) for j in range(0, len(reply), 2)}


def _added(parts: list[dict[int, int]]) -> dict[int, int]:
    total: dict[int, int] = {}
    for part in parts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return total


def _scanned(reply: list[Any], head: int) -> tuple[KindStats, dict[int, int]]:
    """``{count, bytes, oldest|"", newest|"", key, count, ...}`` of a scanning script."""
    n, size, oldest, newest = reply[:head]
    return (
        KindStats(
            int(n), int(size), float(oldest) if oldest else None, float(newest) if newest else None
        ),
        _pairs(reply[head:]),
    )


def _parse_entity(value: bytes) -> tuple[bytes, int, float, float, float | None, bool, bytes]:
    """``<version>|<created>|<updated>|<expires>|<op>[|<pin>[|<actor>]]\\n<payload>`` (see
    header.lua: the sixth field, absent from records written before pins, is the pin; the
    seventh, absent from records written before history or without an actor, is the
    writer's name as JSON)."""
    head, _, data = value.partition(b"\n")
    v, c, u, x, rest = head.split(b"|", 4)
    pin, _, actor = rest.partition(b"|")[2].partition(b"|")
    return data, int(v), float(c), float(u), float(x) if x else None, pin == b"1", actor


def _entity_row(
    entity_type: str, entity_id: str, value: bytes | None, now: float
) -> EntityRow | None:
    """The stored value as a row (``None``: gone, or expired at ``now``)."""
    if value is None:
        return None
    data, version, created, updated, expires_at, pinned, _ = _parse_entity(value)
    if expires_at is not None and expires_at <= now:
        return None
    return EntityRow(entity_type, entity_id, data, version, created, updated, expires_at, pinned)


def _actor_json(name: str | None) -> str:
    """An actor's name as the scripts store it: a JSON string (it holds no raw newline),
    "" for none."""
    return "" if name is None else orjson.dumps(name).decode()


def _actor_of(raw: bytes) -> str | None:
    return str(orjson.loads(raw)) if raw else None


def _writer() -> str:
    """Who writes now (``current_actor_name``), as the scripts store it."""
    return _actor_json(current_actor_name())


def _version_of_entity(entity_type: str, entity_id: str, value: bytes) -> EntityVersion:
    """The stored entity row as a version (expired or not: history shows it as stored)."""
    data, version, _, updated, expires_at, _, actor = _parse_entity(value)
    return EntityVersion(
        type=entity_type,
        id=entity_id,
        version=version,
        data=orjson.loads(data),
        saved_at=updated,
        actor=_actor_of(actor),
        expires_at=expires_at,
    )


def _version_of_row(
    entity_type: str, entity_id: str, member: bytes, row: bytes | None
) -> EntityVersion:
    """A history row (lua/history.lua): a past version's stored value, or a tombstone's
    member, ``<version>|<saved_at>|<actor>``."""
    if row is not None:
        return _version_of_entity(entity_type, entity_id, row)
    v, saved, actor = member.split(b"|", 2)
    return EntityVersion(
        type=entity_type,
        id=entity_id,
        version=int(v),
        data=None,
        saved_at=float(saved),
        actor=_actor_of(actor),
        deleted=True,
    )


def _row_of(v: EntityVersion) -> list[Any]:
    """Score, member and stored value of a history row (lua/history.lua): a past version
    is stored as an entity value (created = saved_at: a version has no creation time of
    its own), a tombstone in its member."""
    actor = _actor_json(v.actor)
    if v.deleted:
        return [2 * v.version + 1, f"{v.version}|{_f(v.saved_at)}|{actor}", ""]
    saved = _f(v.saved_at)
    expires = _f(v.expires_at) if v.expires_at is not None else ""
    head = f"{v.version}|{saved}|{saved}|{expires}|"
    if actor:
        head += f"||{actor}"
    return [2 * v.version, str(v.version), head.encode() + b"\n" + orjson.dumps(v.data)]


def _score(value: Any) -> int:
    return int(float(value))


def _history_rows(reply: list[Any]) -> list[tuple[bytes, Any, bytes | None]]:
    """``entity_versions.lua``'s flat ``[member, score, row, ...]``."""
    return [(reply[j], reply[j + 1], reply[j + 2]) for j in range(0, len(reply), 3)]


def _within(score: int, top: str, bottom: str) -> bool:
    """Whether ``score`` is between ZRANGEBYSCORE bounds ("+inf", "(14", "6", "-inf")."""

    def above(bound: str, strict: bool) -> bool:
        if bound.startswith("("):
            return score > int(bound[1:]) if strict else score < int(bound[1:])
        if bound in ("+inf", "-inf"):
            return True
        return score >= int(bound) if strict else score <= int(bound)

    return above(top, False) and above(bottom, True)


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _id_then_number(row: tuple[PrunedVersion, int]) -> tuple[str, int]:
    """Version retention's order within a type: id, then score (version, tombstone last)
    or revision."""
    return (row[0].id, row[1])


def _revision_of(conversation_id: str, revision: int, value: bytes) -> ConversationRevision:
    """A revisions hash value, "<replaced_at>|<message count>|<actor>" (lua/revisions.lua)."""
    at, count, actor = value.split(b"|", 2)
    return ConversationRevision(
        conversation_id=conversation_id,
        revision=revision,
        replaced_at=float(at),
        message_count=int(count),
        actor=_actor_of(actor),
    )


def _message_row(item: bytes) -> MessageRow:
    """A message list item, "<seq>\\n<created_at>\\n<message JSON>" (append_messages.lua)."""
    seq, ts, raw = item.split(b"\n", 2)
    return MessageRow(int(seq), float(ts), raw)


def _message_of(conversation_id: str, item: bytes) -> MessageRecord:
    # Not through ``_message_row``: in process, a row per message cost a page of 50
    # messages ~15 µs more (~25%).
    seq, ts, raw = item.split(b"\n", 2)
    return MessageRecord(conversation_id, int(seq), orjson.loads(raw), float(ts))


#: Ids a retention scan examines per script call: bounds how long one call holds Redis.
_SCAN_BUDGET = 500

#: The actor of the tombstone an entity removed by retention leaves (a JSON string).
_RETENTION_ACTOR = _actor_json(RETENTION_ACTOR)


def _bound(value: float | None) -> str:
    """A retention bound as a script argument ("": the rule is off)."""
    return _f(value) if value is not None else ""


class RedisMemoryBackend(DistributedMemoryBackend):
    name = "redis"

    settings: RedisSettings

    def __init__(self, settings: RedisSettings) -> None:
        super().__init__(settings)
        self.connection = RedisConnection(settings, on_retry=self._forget_registrations)
        self.cluster_mode = self.connection.cluster_mode
        self.nodes = self.connection.nodes
        prefix = settings.effective_redis_prefix
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError("REDIS_PREFIX must not contain '{' or '}' (hash tags)")
        self.keys = Keys(prefix, settings.redis_index_shards)
        self.instance_id = _op_id()
        self._bus: InvalidationBus | None = None
        self._known_types: set[tuple[str, str]] = set()
        self._known_namespaces: set[str] = set()
        #: outbox key -> id of its last entry this process knows relayed (cluster): the
        #: next write script on that outbox drops the entries up to it
        self._relayed: dict[str, str] = {}
        #: the relay batch writers join until it is sent, and the last relay started
        self._relay_next: _RelayBatch | None = None
        self._relay_last: asyncio.Future[None] | None = None
        self._background = ExpiredEntityPurge(self.name, self.purge_expired)

    def __repr__(self) -> str:
        return f"RedisMemoryBackend({self.describe()!r})"

    # -- lifecycle --------------------------------------------------------------------

    async def connect(self) -> None:
        await self.connection.open()
        self._bus = InvalidationBus(self.connection, self.keys, self.instance_id)
        self._background.start()

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.stop()  # first: it refuses a close on another event loop
            self._bus = None
        await self._background.stop()
        last = self._relay_last
        if isinstance(last, asyncio.Task) and not last.done():
            # A batch relay outlives the writers that joined it (they may have been
            # cancelled): it ends before the connection closes, or it would reopen one.
            await asyncio.wait([last], timeout=self.settings.redis_socket_timeout_seconds)
        await self.connection.close()

    async def ping(self) -> bool:
        return await self.connection.ping()

    def describe(self) -> dict[str, Any]:
        s = self.settings
        info: dict[str, Any] = {
            "backend": self.name,
            "mode": "cluster" if self.cluster_mode else "standalone",
            "prefix": self.keys.prefix,
            "index_shards": self.keys.shards,
            "wait_replicas": s.redis_wait_replicas,
            "tls": s.redis_tls_enabled,
            "username": s.redis_username,
        }
        if self.cluster_mode:
            info["seed_nodes"] = [f"{h}:{p}" for h, p in self.nodes]
        else:
            info["address"] = f"{s.redis_host}:{s.redis_port}/{s.redis_db}"
        return info

    @property
    def invalidation_bus(self) -> InvalidationBus | None:
        """The invalidation subscriber (state and counters for readiness, metrics, tests)."""
        return self._bus

    # -- cache invalidation -------------------------------------------------------------

    async def publish_invalidation(self, key: str) -> None:
        if _announced.get() == key:
            _announced.set(None)  # the write script already published it
            return
        batch = _announced_batch.get()
        if batch is not None and key in batch:
            batch.discard(key)  # a batch's script published it
            return
        if self._bus is not None:
            await self._bus.publish(key)

    def _announcement(self, cache_key: str, tag: str) -> list[Any] | None:
        """ARGV of a write script on ``tag``'s slot that publishes ``cache_key`` (an
        entity's cache key or a conversation's change key) in the write's own atomic step
        (how, channel, message), or ``None`` when the write is to publish nothing."""
        return None if self._bus is None else self._bus.announcement(cache_key, tag)

    async def subscribe_invalidations(self, callback: InvalidationCallback) -> None:
        if self._bus is None:
            raise BackendUnavailableError("Redis backend is not connected")
        await self._bus.start(callback)

    # -- plumbing -----------------------------------------------------------------------

    def _forget_registrations(self) -> None:
        """A failover may have lost recent un-WAITed writes, e.g. a type's entry in the
        namespace's type set: register types and namespaces again from now on."""
        self._known_types.clear()
        self._known_namespaces.clear()

    # -- change log plumbing ------------------------------------------------------------

    def _change_block(
        self, ns: str, tag: str, now: float, names: bytes
    ) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV a script on ``tag``'s slot appends its change events with
        (``changes.lua``): the namespace's log on standalone Redis, the slot's outbox on a
        cluster."""
        if self.cluster_mode:
            outbox = self.keys.change_outbox(tag)
            relayed = self._relayed.get(outbox)
            bound = _after(relayed) if relayed else ""
            return [outbox, outbox], ["outbox", _f(now), bound, names]
        k = self.keys
        return [k.change_log(ns), k.change_state(ns)], ["log", _f(now), "", names]

    async def _write(
        self, script: scripts.Script, ns: str, tag: str, keys: list[str], args: list[Any]
    ) -> Any:
        """Run a write script whose last KEYS/ARGV are a change block on ``tag``'s slot and
        return its own reply. On a cluster, first relay its outbox to the namespace's log,
        so the write's event is readable when the write returns.

        A relay that fails after its retries does not fail the write, which is applied:
        reporting it as failed would make clients repeat it (an append twice). The event
        waits in the outbox for the next write on the slot or the background round."""
        reply = await self.connection.write(script, keys, args)
        if not self.cluster_mode:
            return reply
        result, pending = reply
        if pending:
            outbox, entries = self.keys.change_outbox(tag), _entries(pending)
            try:
                if len(entries) < _OUTBOX_BATCH:
                    await self._relay_with_others(ns, outbox, entries)
                else:  # a backlog (writers died, or relays failed): read on to the end
                    await self._relay(ns, outbox, entries)
            except BackendUnavailableError as exc:
                log.warning("change log relay failed, the background round retries: %s", exc)
        return result

    async def _write_many(self, ns: str, calls: list[_ScriptCall]) -> list[Any]:
        """``_write`` for several scripts (script, tag, KEYS, ARGV) at once: one pipeline
        per node, then on a cluster one relay of every outbox they left entries in. Each
        script is atomic by itself; together they are not (a batch write, whose items'
        operation ids make a retried pipeline answer each item's first outcome)."""
        replies = await self.connection.pipeline(
            [("SCRIPT", script, keys, args) for script, _, keys, args in calls], batch=True
        )
        if not self.cluster_mode:
            return replies
        outboxes: dict[str, dict[str, list[Any]]] = {}
        for (_, tag, _, _), (_, pending) in zip(calls, replies, strict=True):
            if pending:
                outboxes.setdefault(self.keys.change_outbox(tag), {}).update(_entries(pending))
        try:
            if outboxes and all(len(e) < _OUTBOX_BATCH for e in outboxes.values()):
                await self._relay_to_log(ns, outboxes)
            else:  # a backlog (writers died, or relays failed): read on to the end
                for outbox, entries in outboxes.items():
                    await self._relay(ns, outbox, list(entries.items()))
        except BackendUnavailableError as exc:
            log.warning("change log relay failed, the background round retries: %s", exc)
        return [result for result, _ in replies]

    async def _relay_with_others(
        self, ns: str, outbox: str, entries: list[tuple[str, list[Any]]]
    ) -> None:
        """Relay ``entries`` to the log, sharing the call with concurrent writers (group
        commit): with no relay in flight the writer relays at once itself; otherwise it
        joins the next batch, sent when the relay in flight ends, so under load a relay
        costs a fraction of a round trip per write. A batch is sent by a task of its own,
        so a cancelled writer cannot strand the others."""
        batch = self._relay_next
        last = self._relay_last
        if batch is None and (last is None or last.done()):
            flight = self._relay_last = asyncio.get_running_loop().create_future()
            try:
                await self._relay_to_log(ns, {outbox: dict(entries)})
            finally:
                flight.set_result(None)
            return
        if batch is None:
            batch = self._relay_next = _RelayBatch(self._relay_last)
            batch.task = asyncio.create_task(self._send_batch(batch), name="memstore-relay")
            batch.task.add_done_callback(_retrieved)
            self._relay_last = batch.task
        batch.add(ns, outbox, entries)
        assert batch.task is not None
        await asyncio.shield(batch.task)

    async def _send_batch(self, batch: _RelayBatch) -> None:
        previous, batch.previous = batch.previous, None
        if previous is not None and previous.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([previous])
        if self._relay_next is batch:
            self._relay_next = None  # closed: writers from now on start the next batch
        if len(batch.entries) == 1:
            ((ns, outboxes),) = batch.entries.items()
            await self._relay_to_log(ns, outboxes)
        else:
            await asyncio.gather(*(self._relay_to_log(n, o) for n, o in batch.entries.items()))

    async def _relay_to_log(self, ns: str, outboxes: dict[str, dict[str, list[Any]]]) -> None:
        """One ``RELAY_CHANGES`` call for some outboxes of ``ns``; remembers how far each
        is relayed (the next write on it drops those entries from the outbox)."""
        log_keys = [self.keys.change_log(ns), self.keys.change_state(ns)]
        done = await self.connection.write(scripts.RELAY_CHANGES, log_keys, _relay_args(outboxes))
        if len(self._relayed) > 100_000:
            self._relayed.clear()
        for outbox, last in zip(outboxes, done, strict=True):
            if last:
                self._relayed[outbox] = _s(last)

    async def _relay(self, ns: str, outbox: str, entries: list[tuple[str, list[Any]]]) -> None:
        """Move ``entries`` (the oldest not known relayed) and every later entry of
        ``outbox`` to ``ns``'s log, a batch at a time; entries already relayed are
        skipped by the script."""
        while entries:
            await self._relay_to_log(ns, {outbox: dict(entries)})
            if len(entries) < _OUTBOX_BATCH:
                return
            more = await self.connection.execute(
                "XRANGE", outbox, f"({entries[-1][0]}", "+", "COUNT", _OUTBOX_BATCH
            )
            entries = _entries(more)

    def _outboxes(self, ns: str, types: list[str]) -> list[str]:
        """Every outbox a write in ``ns`` may use (entity types from the type registry)."""
        k = self.keys
        tags = [tag for t in types for tag in k.entity_tags(ns, t)]
        tags += [*k.conversation_tags(ns), *k.tool_tags(ns), *k.feedback_tags(ns)]
        return [k.change_outbox(tag) for tag in tags]

    async def relay_outboxes(self, ns: str) -> None:
        """Cluster: relay every outbox entry of ``ns`` not yet in its log (left by a writer
        that died between its write and its relay), then drop the relayed entries."""
        if not self.cluster_mode:
            return
        state = await self.connection.execute("HGETALL", self.keys.change_state(ns))
        relayed = {_s(f): _s(v) for f, v in (state.items() if isinstance(state, dict) else [])}
        outboxes = self._outboxes(ns, await self._types_ever(ns))
        batches = await self.connection.pipeline(
            [
                (
                    "XRANGE",
                    o,
                    f"({relayed[o]}" if o in relayed else "-",
                    "+",
                    "COUNT",
                    _OUTBOX_BATCH,
                )
                for o in outboxes
            ]
        )
        for outbox, batch in zip(outboxes, batches, strict=True):
            if batch:
                await self._relay(ns, outbox, _entries(batch))
                if outbox in self._relayed:
                    relayed[outbox] = self._relayed[outbox]
        await self.connection.pipeline(
            [("XTRIM", o, "MINID", _after(relayed[o])) for o in outboxes if o in relayed]
        )

    async def purge_expired(self) -> None:
        """The background round (every minute, each replica): per registered namespace,
        relay outbox entries a dead writer left (cluster), prune expired entities from the
        indexes (logging ``entity.expired``) and apply the change log's retention. Every
        step is idempotent, so replicas running it at once do no harm."""
        registered = await self.connection.execute("SMEMBERS", self.keys.namespaces())
        for ns in sorted(_s(n) for n in registered):
            await self.relay_outboxes(ns)
            await self._entity_counts(ns)
            await self.trim_changes(ns)

    # -- entities -----------------------------------------------------------------------

    def _entity_keys(self, ns: str, entity_type: str, entity_id: str) -> list[str]:
        """entity, index, expiry, sizes, bytes, creation times, history index, history:
        the KEYS of the entity write scripts."""
        tag = self.keys.entity_tag(ns, entity_type, entity_id)
        return self._entity_keys_on(tag, entity_id)

    def _entity_keys_on(self, tag: str, entity_id: str) -> list[str]:
        k = self.keys
        return [
            k.entity(tag, entity_id),
            *self._entity_shard_keys(tag),
            k.entity_history(tag, entity_id),
        ]

    def _version_prefix(self, ns: str, tag: str) -> str:
        """Where the entity write scripts on ``tag`` keep past versions (``history.lua``):
        "" in the service's own namespaces, which keep no history (``keeps_history``)."""
        return self.keys.entity_version_prefix(tag) if keeps_history(ns) else ""

    def _revision_prefix(self, ns: str, tag: str) -> str:
        """Where a replace on ``tag`` keeps the replaced messages (``revisions.lua``), ""
        where no history is kept."""
        return self.keys.conversation_revision_messages_prefix(tag) if keeps_history(ns) else ""

    def _entity_shard_keys(self, tag: str) -> list[str]:
        """index, expiry, sizes, bytes, creation times, history index of one entity shard."""
        k = self.keys
        return [
            k.entity_index(tag),
            k.entity_expiry(tag),
            k.entity_sizes(tag),
            k.entity_bytes(tag),
            k.entity_created(tag),
            k.entity_history_index(tag),
        ]

    def _pruning(
        self, ns: str, entity_type: str, tag: str, now: float, *args: Any
    ) -> tuple[Any, ...]:
        """A pruning script's call on one entity shard (``LIST_ENTITIES``,
        ``COUNT_ENTITIES``, ``ENTITY_BYTES``): KEYS and ``now, *args``, then the change
        block for the ``entity.expired`` events of what it prunes (no actor: their expiry
        removed them, not the caller), then the entity and history key prefixes (the
        pruned records move into their history)."""
        names = _names(actor=False, entity_type=entity_type)
        change_keys, change_args = self._change_block(ns, tag, now, names)
        k = self.keys
        return [*self._entity_shard_keys(tag), *change_keys], [
            _f(now),
            *args,
            *change_args,
            k.entity(tag, ""),
            k.entity_history(tag, ""),
            self._version_prefix(ns, tag),
        ]

    async def _register_type(self, ns: str, entity_type: str) -> None:
        await self._register_namespace(ns)
        if (ns, entity_type) in self._known_types:
            return
        await self.connection.add_to_set(self.keys.entity_types(ns), entity_type)
        if len(self._known_types) > 100_000:
            self._known_types.clear()
        self._known_types.add((ns, entity_type))

    async def _register_namespace(self, ns: str) -> None:
        """Add ``ns`` to the namespace registry before its first write from this process
        (like the type registry: a superset, so a failed write leaves a harmless entry)."""
        if ns in self._known_namespaces:
            return
        await self.connection.add_to_set(self.keys.namespaces(), ns)
        if len(self._known_namespaces) > 100_000:
            self._known_namespaces.clear()
        self._known_namespaces.add(ns)

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
        _forget_announced()
        item = EntityWrite(entity_type, entity_id, data, expected_version, ttl, data_json)
        await self._register_type(namespace, entity_type)
        script, tag, keys, args, announced = self._save_entity_call(namespace, item, time.time())
        res = await self._write(script, namespace, tag, keys, args)
        if announced is not None:
            # published in the script; a conflict changed nothing and needs no message
            _announced.set(announced)
        return _saved_record(item, res)

    async def save_entities(
        self, namespace: str, items: Sequence[EntityWrite]
    ) -> list[EntityRecord]:
        """Each item is ``save_entity``'s script, atomic by itself; the scripts go in one
        pipeline per node (one round trip per node, not per item), so an item in conflict
        is not written and the others are (``batch_outcome``). With durable writes
        (``MEMSTORE_REDIS_WAIT_REPLICAS``) each item waits for its replicas as a single
        save does."""
        if self.settings.redis_wait_replicas > 0:
            return await super().save_entities(namespace, items)
        _forget_announced()
        for entity_type in dict.fromkeys(item.entity_type for item in items):
            await self._register_type(namespace, entity_type)
        now = time.time()
        calls: list[_ScriptCall] = []
        cache_keys = []
        for item in items:
            script, tag, keys, args, announced = self._save_entity_call(namespace, item, now)
            calls.append((script, tag, keys, args))
            if announced is not None:
                cache_keys.append(announced)
        replies = await self._write_many(namespace, calls)
        # published in the scripts (a conflict changed nothing and needs no message)
        _announced_batch.set(set(cache_keys))
        outcomes: list[EntityRecord | BaseException] = []
        for item, res in zip(items, replies, strict=True):
            try:
                outcomes.append(_saved_record(item, res))
            except ConflictError as exc:
                outcomes.append(exc)
        return batch_outcome(outcomes)

    def _save_entity_call(
        self, namespace: str, item: EntityWrite, now: float
    ) -> tuple[scripts.Script, str, list[str], list[Any], str | None]:
        """``save_entity``'s script for ``item`` (script, tag, KEYS, ARGV) and the cache
        key the script publishes (``None``: no bus, it publishes nothing)."""
        expires_at = now + item.ttl if item.ttl is not None else None
        expected = item.expected_version
        tag = self.keys.entity_tag(namespace, item.entity_type, item.entity_id)
        cache_key = entity_cache_key(namespace, item.entity_type, item.entity_id)
        announcement = self._announcement(cache_key, tag)
        names = _names(entity_type=item.entity_type, entity_id=item.entity_id)
        change_keys, change_args = self._change_block(namespace, tag, now, names)
        args = [
            item.entity_id,
            json_bytes(item.data, item.data_json),
            _f(now),
            _f(expires_at) if expires_at is not None else "",
            str(expected) if expected is not None else "",
            _op_id(),
            _writer(),
            *(announcement or _NO_ANNOUNCEMENT),
            *change_args,
            self._version_prefix(namespace, tag),
        ]
        keys = [*self._entity_keys_on(tag, item.entity_id), *change_keys]
        return scripts.SAVE_ENTITY, tag, keys, args, None if announcement is None else cache_key

    async def import_entity(self, namespace: str, record: EntityRecord) -> None:
        _forget_announced()
        payload = orjson.dumps(record.data)
        await self._register_type(namespace, record.type)
        tag = self.keys.entity_tag(namespace, record.type, record.id)
        cache_key = entity_cache_key(namespace, record.type, record.id)
        announcement = self._announcement(cache_key, tag)
        names = _names(entity_type=record.type, entity_id=record.id)
        change_keys, change_args = self._change_block(namespace, tag, time.time(), names)
        expires_at = record.expires_at
        await self._write(
            scripts.IMPORT_ENTITY,
            namespace,
            tag,
            [*self._entity_keys_on(tag, record.id), *change_keys],
            [
                record.id,
                payload,
                _f(record.updated_at),
                _f(expires_at) if expires_at is not None else "",
                str(record.version),
                _op_id(),
                # the record does not say who wrote it: the writer of the import does
                _writer(),
                *(announcement or _NO_ANNOUNCEMENT),
                *change_args,
                _f(record.created_at),
                "1" if record.pinned else "",
                self._version_prefix(namespace, tag),
            ],
        )
        if announcement is not None:
            _announced.set(cache_key)

    @staticmethod
    def _entity_from(
        entity_type: str, entity_id: str, value: bytes | None, now: float
    ) -> EntityRecord | None:
        row = _entity_row(entity_type, entity_id, value, now)
        return None if row is None else row.record()

    def _entity_key(self, namespace: str, entity_type: str, entity_id: str) -> str:
        k = self.keys
        return k.entity(k.entity_tag(namespace, entity_type, entity_id), entity_id)

    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None:
        key = self._entity_key(namespace, entity_type, entity_id)
        value = await self.connection.read("GET", key)
        return self._entity_from(entity_type, entity_id, value, time.time())

    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        _forget_announced()
        tag = self.keys.entity_tag(namespace, entity_type, entity_id)
        cache_key = entity_cache_key(namespace, entity_type, entity_id)
        announcement = self._announcement(cache_key, tag)
        now = time.time()
        names = _names(entity_type=entity_type, entity_id=entity_id)
        change_keys, change_args = self._change_block(namespace, tag, now, names)
        res = await self._write(
            scripts.DELETE_ENTITY,
            namespace,
            tag,
            [
                *self._entity_keys_on(tag, entity_id),
                self.keys.entity_tombstone(tag, entity_id),
                *change_keys,
            ],
            [
                entity_id,
                _f(now),
                str(expected_version) if expected_version is not None else "",
                _op_id(),
                *(announcement or _NO_ANNOUNCEMENT),
                *change_args,
                _writer(),
                self._version_prefix(namespace, tag),
            ],
        )
        if announcement is not None:
            _announced.set(cache_key)
        _raise_on_conflict(res, expected_version)
        return _s(res[1]) == "1"

    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        page, now = await self._stored_entity_page(namespace, entity_type, limit, cursor)
        items = [
            rec
            for i, row in page.items
            if (rec := self._entity_from(entity_type, i, row, now)) is not None
        ]
        return Page(items, page.next_cursor)

    async def list_entity_rows(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRow]:
        page, now = await self._stored_entity_page(namespace, entity_type, limit, cursor)
        items = [
            row
            for i, value in page.items
            if (row := _entity_row(entity_type, i, value, now)) is not None
        ]
        return Page(items, page.next_cursor)

    async def _stored_entity_page(
        self, namespace: str, entity_type: str, limit: int, cursor: str | None
    ) -> tuple[Page[tuple[str, bytes | None]], float]:
        """A page of (id, stored value) of ``list_entities``, and the time it was read at
        (what is expired by then is not listed)."""
        after = page_after_id(cursor)
        lo = f"({after}" if after else "-"
        now = time.time()
        tags = self.keys.entity_tags(namespace, entity_type)

        async def fetch(want: int) -> list[list[Any]]:
            return await self.connection.pipeline(
                [
                    (
                        "SCRIPT",
                        scripts.LIST_ENTITIES,
                        *self._pruning(namespace, entity_type, t, now, lo, want),
                    )
                    for t in tags
                ]
            )

        want = _share(limit, len(tags))
        page = _merged_entity_page(await fetch(want), limit, want)
        if page is None:
            page = _merged_entity_page(await fetch(limit + 1), limit, limit + 1)
            assert page is not None  # every shard gave all it has up to a full page
        return page, now

    async def _types_ever(self, namespace: str) -> list[str]:
        """The namespace's type registry (a superset of the types with live entities)."""
        key = self.keys.entity_types(namespace)
        members = await self.connection.execute("SMEMBERS", key)
        return sorted(_s(t) for t in members)

    async def _entity_counts(self, namespace: str) -> dict[str, int]:
        types = await self._types_ever(namespace)
        now = time.time()
        k = self.keys
        commands: list[tuple[Any, ...]] = [
            ("SCRIPT", scripts.COUNT_ENTITIES, *self._pruning(namespace, t, tag, now))
            for t in types
            for tag in k.entity_tags(namespace, t)
        ]
        counts = await self.connection.pipeline(commands)
        shards = k.shards
        out: dict[str, int] = {}
        for i, t in enumerate(types):
            total = sum(int(c) for c in counts[i * shards : (i + 1) * shards])
            if total > 0:
                out[t] = total
        return out

    async def get_entity_types(self, namespace: str) -> list[str]:
        return sorted(await self._entity_counts(namespace))

    # -- conversations ------------------------------------------------------------------

    def _conversation_announcement(self, ns: str, conversation_id: str) -> tuple[Any, ...]:
        """ARGV of a conversation write script that tells the other replicas' change
        listeners (``_announcement``)."""
        announcement = self._announcement(
            conversation_change_key(ns, conversation_id),
            self.keys.conversation_tag(ns, conversation_id),
        )
        return _NO_ANNOUNCEMENT if announcement is None else tuple(announcement)

    def _conversation_keys(self, ns: str, conversation_id: str) -> list[str]:
        tag = self.keys.conversation_tag(ns, conversation_id)
        k = self.keys
        return [
            k.conversation_meta(tag, conversation_id),
            k.conversation_messages(tag, conversation_id),
            k.conversation_index(tag),
            k.conversation_counter(tag),
            k.conversation_bytes(tag),
        ]

    async def append_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        return await self._write_messages(
            scripts.APPEND_MESSAGES, namespace, conversation_id, messages, messages_json
        )

    async def append_messages_batch(
        self, namespace: str, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        """Each conversation's append is ``append_messages``' script, atomic by itself; the
        scripts go in one pipeline per node (durable writes: concurrent single appends,
        each with its ``WAIT``)."""
        if self.settings.redis_wait_replicas > 0:
            return await super().append_messages_batch(namespace, items)
        await self._register_namespace(namespace)
        now = time.time()
        calls = [
            self._messages_call(
                scripts.APPEND_MESSAGES,
                namespace,
                item.conversation_id,
                json_bytes_each(item.messages, item.messages_json),
                now,
            )
            for item in items
        ]
        firsts = await self._write_many(namespace, calls)
        return [
            [
                MessageRecord(item.conversation_id, int(first) + i, m, now)
                for i, m in enumerate(item.messages)
            ]
            for item, first in zip(items, firsts, strict=True)
        ]

    def _revision_keys(self, tag: str, conversation_id: str) -> list[str]:
        """revisions, revision index: the KEYS a script that makes or erases revisions
        adds after the conversation's own (``lua/revisions.lua``)."""
        k = self.keys
        return [k.conversation_revisions(tag, conversation_id), k.conversation_revision_index(tag)]

    async def _write_messages(
        self,
        script: scripts.Script,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        messages_json: Sequence[bytes] | None,
        *,
        revision: bool = False,
    ) -> list[MessageRecord]:
        """Append (the script returns the first seq) or replace (it returns 1; with
        ``revision`` the replaced messages become a revision)."""
        raws = json_bytes_each(messages, messages_json)
        await self._register_namespace(namespace)
        now = time.time()
        call = self._messages_call(script, namespace, conversation_id, raws, now, revision=revision)
        first = int(await self._write(call[0], namespace, *call[1:]))
        return [MessageRecord(conversation_id, first + i, m, now) for i, m in enumerate(messages)]

    def _messages_call(
        self,
        script: scripts.Script,
        namespace: str,
        conversation_id: str,
        raws: Sequence[bytes],
        now: float,
        *,
        revision: bool = False,
    ) -> _ScriptCall:
        """The call (script, tag, KEYS, ARGV) of an append or replace of ``raws`` (the
        messages' JSON); with ``revision`` the replaced messages become a revision."""
        tag = self.keys.conversation_tag(namespace, conversation_id)
        names = _names(conversation_id=conversation_id)
        change_keys, change_args = self._change_block(namespace, tag, now, names)
        keys = self._conversation_keys(namespace, conversation_id)
        extra: list[Any] = []
        if revision:
            keys += self._revision_keys(tag, conversation_id)
            extra = [_writer(), self._revision_prefix(namespace, tag)]
        args = [
            conversation_id,
            _f(now),
            _op_id(),
            *self._conversation_announcement(namespace, conversation_id),
            *change_args,
            *extra,
            *raws,
        ]
        return script, tag, [*keys, *change_keys], args

    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        items = await self._message_items(namespace, conversation_id, limit, before_seq)
        return [_message_of(conversation_id, item) for item in items]

    async def load_message_rows(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRow]:
        items = await self._message_items(namespace, conversation_id, limit, before_seq)
        return [_message_row(item) for item in items]

    async def _message_items(
        self, namespace: str, conversation_id: str, limit: int | None, before_seq: int | None
    ) -> list[bytes]:
        """``load_messages``' list items as stored (``_message_row``'s format)."""
        key = self._conversation_keys(namespace, conversation_id)[1]
        grouped = limit is not None and limit <= _GROUPED_MESSAGES_MAX
        if before_seq is None:
            start = 0 if limit is None else -limit
            items = await self.connection.read("LRANGE", key, start, -1, grouped=grouped)
        else:
            if before_seq <= 1:
                return []
            items = await self.connection.read(
                "SCRIPT",
                scripts.LOAD_MESSAGES_BEFORE,
                [key],
                [before_seq, limit if limit is not None else ""],
                grouped=grouped,
            )
        return list(items)

    async def replace_conversation(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        return await self._write_messages(
            scripts.REPLACE_CONVERSATION,
            namespace,
            conversation_id,
            messages,
            messages_json,
            revision=True,
        )

    async def import_conversation(
        self, namespace: str, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        check_imported_seqs(conversation_id, messages)
        raws = [orjson.dumps(m.message) for m in messages]
        # list items as append_messages.lua writes them: "<seq>\n<created_at>\n<json>"
        items = [
            f"{m.seq}\n{_f(m.created_at)}\n".encode() + raw
            for m, raw in zip(messages, raws, strict=True)
        ]
        await self._register_namespace(namespace)
        now = time.time()
        tag = self.keys.conversation_tag(namespace, conversation_id)
        names = _names(conversation_id=conversation_id)
        change_keys, change_args = self._change_block(namespace, tag, now, names)
        await self._write(
            scripts.IMPORT_CONVERSATION,
            namespace,
            tag,
            [*self._conversation_keys(namespace, conversation_id), *change_keys],
            [
                conversation_id,
                _f(messages[0].created_at if messages else now),
                _op_id(),
                *self._conversation_announcement(namespace, conversation_id),
                *change_args,
                _f(messages[-1].created_at if messages else now),
                str(sum(len(r) for r in raws)),
                *items,
            ],
        )

    async def pop_message(self, namespace: str, conversation_id: str) -> MessageRecord | None:
        tag = self.keys.conversation_tag(namespace, conversation_id)
        now = time.time()
        names = _names(conversation_id=conversation_id)
        change_keys, change_args = self._change_block(namespace, tag, now, names)
        item = await self._write(
            scripts.POP_MESSAGE,
            namespace,
            tag,
            [
                *self._conversation_keys(namespace, conversation_id),
                self.keys.conversation_last_pop(tag, conversation_id),
                *change_keys,
            ],
            [
                conversation_id,
                _f(now),
                _op_id(),
                *self._conversation_announcement(namespace, conversation_id),
                *change_args,
            ],
        )
        return None if item is None else _message_of(conversation_id, item)

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        tag = self.keys.conversation_tag(namespace, conversation_id)
        names = _names(conversation_id=conversation_id)
        change_keys, change_args = self._change_block(namespace, tag, time.time(), names)
        res = await self._write(
            scripts.DELETE_CONVERSATION,
            namespace,
            tag,
            [
                *self._conversation_keys(namespace, conversation_id),
                *self._revision_keys(tag, conversation_id),
                *change_keys,
            ],
            [
                conversation_id,
                *self._conversation_announcement(namespace, conversation_id),
                *change_args,
                self.keys.conversation_revision_messages_prefix(tag),
            ],
        )
        return int(res) == 1

    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        after = page_after_id(cursor)
        lo = f"({after}" if after else "-"
        k = self.keys
        shard_ids = await self.connection.pipeline(
            [
                ("ZRANGEBYLEX", k.conversation_index(t), lo, "+", "LIMIT", 0, limit + 1)
                for t in k.conversation_tags(namespace)
            ]
        )
        ids = _merged_id_page(shard_ids, limit)
        commands: list[tuple[Any, ...]] = []
        for cid in ids.items:
            meta, msgs = self._conversation_keys(namespace, cid)[:2]
            commands.append(("HMGET", meta, "c", "u"))
            commands.append(("LLEN", msgs))
        rows = await self.connection.pipeline(commands)
        items: list[ConversationInfo] = []
        for i, cid in enumerate(ids.items):
            (created, updated), count = rows[2 * i], rows[2 * i + 1]
            if created is None:
                continue  # deleted since the index was read
            items.append(ConversationInfo(cid, int(count), float(created), float(updated)))
        return Page(items, ids.next_cursor)

    # -- tool usage ---------------------------------------------------------------------

    def tool_usage_cutoff(self, now: float) -> float | None:
        keep = self.settings.redis_tool_usage_retention_seconds
        return now - keep if keep > 0 else None

    async def record_tool_usage(
        self,
        namespace: str,
        record: ToolUsageRecord,
        *,
        input_json: bytes | None = None,
        output_json: bytes | None = None,
    ) -> ToolUsageRecord:
        tag = self.keys.tool_tag(namespace, record.id)
        k = self.keys
        raw_input = json_bytes(record.input, input_json)
        raw_output = json_bytes(record.output, output_json)
        size = len(raw_input) + len(raw_output)
        fields = record.to_dict()
        fields["input"], fields["output"] = orjson.Fragment(raw_input), orjson.Fragment(raw_output)
        # tool name, accounted bytes, record: the script reads the first two on trimming
        value = b"%s\n%d\n%s" % (record.tool_name.encode(), size, orjson.dumps(fields))
        now = time.time()
        cutoff = self.tool_usage_cutoff(now)
        names = _names(
            record_id=record.id,
            tool_name=record.tool_name,
            conversation_id=record.conversation_id,
        )
        change_keys, change_args = self._change_block(namespace, tag, now, names)
        await self._register_namespace(namespace)
        await self._write(
            scripts.RECORD_TOOL_USAGE,
            namespace,
            tag,
            [
                k.tool_records(tag),
                k.tool_time(tag),
                k.tool_by_name(tag, record.tool_name),
                k.tool_counts(tag),
                k.tool_bytes(tag),
                *change_keys,
            ],
            [
                record.id,
                _f(record.timestamp),
                record.tool_name,
                value,
                _f(cutoff) if cutoff is not None else "",
                k.tool_by_name_prefix(tag),
                str(size),
                *change_args,
            ],
        )
        return record

    async def _time_page(
        self,
        index_keys: list[str],
        record_keys: list[str],
        *,
        start: float | None,
        end: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[bytes | None], str | None]:
        """Merge one (timestamp, id)-ordered page out of per-shard time indexes
        (``TIME_PAGE``: one call per shard, which also returns the stored values).

        Returns the stored values of the page's candidates (None if gone) and the next
        cursor."""
        lo_num = start if start is not None else -math.inf
        hi = f"({_f(end)}" if end is not None else "+inf"
        c_ts, c_id = page_after_time(cursor) or (None, "")
        if c_ts is not None:
            lo = f"({_f(c_ts)}" if c_ts >= lo_num else _f(lo_num)
        else:
            lo = _f(lo_num) if start is not None else "-inf"
        # the ids sharing the cursor's timestamp count only when it is in the range
        same_ts = (
            _f(c_ts) if c_ts is not None and c_ts >= lo_num and (end is None or c_ts < end) else ""
        )

        async def fetch(want: int, cap: int | None) -> list[list[Any]]:
            args = [lo, hi, want, same_ts, "" if cap is None else cap]
            return await self.connection.pipeline(
                [
                    ("SCRIPT", scripts.TIME_PAGE, [zkey, rkey], args)
                    for zkey, rkey in zip(index_keys, record_keys, strict=True)
                ]
            )

        want = _share(limit, len(index_keys))
        page = _merged_time_page(await fetch(want, want), limit, want, want, c_id)
        if page is None:
            page = _merged_time_page(await fetch(limit + 1, None), limit, limit + 1, None, c_id)
            assert page is not None  # every shard gave all it has up to a full page
        return [row[2] for row in page.items], page.next_cursor

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
        k = self.keys
        tags = k.tool_tags(namespace)
        cutoff = self.tool_usage_cutoff(time.time())
        if cutoff is not None:
            start = cutoff if start is None else max(start, cutoff)
        index = [k.tool_by_name(t, tool_name) if tool_name else k.tool_time(t) for t in tags]
        values, next_cursor = await self._time_page(
            index,
            [k.tool_records(t) for t in tags],
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
        )
        items: list[ToolUsageRecord] = []
        for value in values:
            if value is None:
                continue
            # "tool\nbytes\nJSON" (older records: "tool\nJSON"; JSON has no raw newline)
            raw = value.split(b"\n", 2)[-1]
            items.append(ToolUsageRecord(**orjson.loads(raw)))
        return Page(items, next_cursor)

    def _tool_shard_commands(self, namespace: str, script: scripts.Script) -> list[tuple[Any, ...]]:
        """One trimming script per tool-usage shard (TOOL_COUNTS, TOOL_BYTES or
        TOOL_LOGICAL_BYTES), with the change block of the ``tool_usage.pruned`` events of
        what it trims (no actor)."""
        k = self.keys
        now = time.time()
        cutoff = self.tool_usage_cutoff(now)
        commands: list[tuple[Any, ...]] = []
        for t in k.tool_tags(namespace):
            change_keys, change_args = self._change_block(namespace, t, now, b"{}")
            commands.append(
                (
                    "SCRIPT",
                    script,
                    [
                        k.tool_records(t),
                        k.tool_time(t),
                        k.tool_time(t),
                        k.tool_counts(t),
                        k.tool_bytes(t),
                        *change_keys,
                    ],
                    [
                        _f(cutoff) if cutoff is not None else "",
                        k.tool_by_name_prefix(t),
                        *change_args,
                    ],
                )
            )
        return commands

    async def _tool_counts(self, namespace: str) -> dict[str, int]:
        commands = self._tool_shard_commands(namespace, scripts.TOOL_COUNTS)
        out: dict[str, int] = {}
        for flat in await self.connection.pipeline(commands):
            for j in range(0, len(flat), 2):
                n = int(flat[j + 1])
                if n > 0:
                    name = _s(flat[j])
                    out[name] = out.get(name, 0) + n
        return dict(sorted(out.items()))

    async def get_tool_names(self, namespace: str) -> list[str]:
        return sorted(await self._tool_counts(namespace))

    # -- feedback -----------------------------------------------------------------------

    async def save_feedback(
        self, namespace: str, record: FeedbackRecord, *, data_json: bytes | None = None
    ) -> FeedbackRecord:
        tag = self.keys.feedback_tag(namespace, record.id)
        k = self.keys
        raw = json_bytes(record.data, data_json)
        fields = record.to_dict()
        fields["data"] = orjson.Fragment(raw)
        change_keys, change_args = self._change_block(
            namespace, tag, time.time(), _names(record_id=record.id)
        )
        await self._register_namespace(namespace)
        await self._write(
            scripts.SAVE_FEEDBACK,
            namespace,
            tag,
            [
                k.feedback_records(tag),
                k.feedback_time(tag),
                k.feedback_time(tag, agent=record.agent_name),
                k.feedback_time(tag, kind=record.feedback_type),
                k.feedback_time(tag, agent=record.agent_name, kind=record.feedback_type),
                k.feedback_bytes(tag),
                *change_keys,
            ],
            [
                record.id,
                _f(record.timestamp),
                orjson.dumps(fields),
                str(len(raw)),
                *change_args,
            ],
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
        k = self.keys
        tags = k.feedback_tags(namespace)
        values, next_cursor = await self._time_page(
            [k.feedback_time(t, agent=agent_name, kind=feedback_type) for t in tags],
            [k.feedback_records(t) for t in tags],
            start=None,
            end=None,
            limit=limit,
            cursor=cursor,
        )
        items = [FeedbackRecord(**orjson.loads(v)) for v in values if v is not None]
        return Page(items, next_cursor)

    # -- one record by id (replication) -------------------------------------------------

    async def load_tool_usage(self, namespace: str, record_id: str) -> ToolUsageRecord | None:
        tag = self.keys.tool_tag(namespace, record_id)
        value = await self.connection.read("HGET", self.keys.tool_records(tag), record_id)
        if value is None:
            return None
        # "tool\nbytes\nJSON" (older records: "tool\nJSON"), as query_tool_usage reads it
        record = ToolUsageRecord(**orjson.loads(value.split(b"\n", 2)[-1]))
        cutoff = self.tool_usage_cutoff(time.time())
        return record if cutoff is None or record.timestamp >= cutoff else None

    async def load_feedback(self, namespace: str, record_id: str) -> FeedbackRecord | None:
        tag = self.keys.feedback_tag(namespace, record_id)
        value = await self.connection.read("HGET", self.keys.feedback_records(tag), record_id)
        return FeedbackRecord(**orjson.loads(value)) if value is not None else None

    # -- change log -----------------------------------------------------------------------

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        k = self.keys
        last, first, entries = await self.connection.eval(
            scripts.READ_CHANGES,
            [k.change_log(namespace), k.change_state(namespace)],
            [after + 1, limit],
        )
        events = [
            _change_event(int(entry_id.split("-")[0]), values)
            for entry_id, values in _entries(entries)
        ]
        return ChangePage(events, first_position=int(first), last_position=int(last))

    async def trim_changes(self, namespace: str) -> None:
        s = self.settings
        while True:
            more = await self.connection.write(
                scripts.TRIM_CHANGES,
                [self.keys.change_log(namespace)],
                [s.changes_max_events, _f(time.time() - s.changes_retention_seconds)],
            )
            if not int(more):
                return

    # -- summary ------------------------------------------------------------------------

    async def summary(self, namespace: str) -> MemorySummary:
        k = self.keys
        entity_counts, tool_counts = await asyncio.gather(
            self._entity_counts(namespace), self._tool_counts(namespace)
        )
        conv_tags = k.conversation_tags(namespace)
        fb_tags = k.feedback_tags(namespace)
        commands: list[tuple[Any, ...]] = []
        for t in conv_tags:
            commands.append(("ZCARD", k.conversation_index(t)))
            commands.append(("GET", k.conversation_counter(t)))
        commands += [("ZCARD", k.feedback_time(t)) for t in fb_tags]
        res = await self.connection.pipeline(commands)
        n = len(conv_tags)
        conversations = sum(int(res[2 * i]) for i in range(n))
        messages = sum(int(res[2 * i + 1] or 0) for i in range(n))
        feedback = sum(int(x) for x in res[2 * n :])
        return MemorySummary(
            namespace=namespace,
            entity_counts=entity_counts,
            conversations=conversations,
            messages=messages,
            tool_usage_counts=tool_counts,
            feedback_count=feedback,
        )

    # -- analytics ----------------------------------------------------------------------
    # Lua on each shard aggregates (lua/analytics_*.lua); the service adds the shards up.

    def _window_args(self, window: BucketWindow | None) -> list[Any]:
        if window is None:  # no bucket: first > last
            return [1, 1, 0]
        return [window.hours, window.first, window.last]

    def _scan_range(self, window: BucketWindow, *, tools: bool = False) -> tuple[str, str]:
        lo, hi = window.scan_range
        cutoff = self.tool_usage_cutoff(time.time()) if tools else None
        if cutoff is not None:
            lo = max(lo, cutoff)
        return _f(lo), _f(hi)

    async def _entity_scan(
        self, namespace: str, window: BucketWindow | None
    ) -> dict[str, tuple[KindStats, dict[int, int]]]:
        k = self.keys
        now = _f(time.time())
        shards = [
            (t, tag)
            for t in await self._types_ever(namespace)
            for tag in k.entity_tags(namespace, t)
        ]
        replies = await self.connection.pipeline(
            [
                (
                    "SCRIPT",
                    scripts.ANALYTICS_ENTITIES,
                    self._entity_shard_keys(tag),
                    [now, *self._window_args(window)],
                )
                for _, tag in shards
            ]
        )
        per_type: dict[str, list[tuple[KindStats, dict[int, int]]]] = {}
        for (t, _), reply in zip(shards, replies, strict=True):
            per_type.setdefault(t, []).append(_scanned(reply, 4))
        return {
            t: (
                analytics.merge_stats(s for s, _ in parts),
                _added([c for _, c in parts]),
            )
            for t, parts in per_type.items()
        }

    async def _message_scan(
        self, namespace: str, window: BucketWindow | None
    ) -> tuple[int, KindStats, dict[int, int]]:
        k = self.keys
        replies = await self.connection.pipeline(
            [
                (
                    "SCRIPT",
                    scripts.ANALYTICS_MESSAGES,
                    [k.conversation_index(tag)],
                    [k.conversation_messages(tag, ""), *self._window_args(window)],
                )
                for tag in k.conversation_tags(namespace)
            ]
        )
        parts = [_scanned(reply[1:], 4) for reply in replies]
        return (
            sum(int(reply[0]) for reply in replies),
            analytics.merge_stats(s for s, _ in parts),
            _added([c for _, c in parts]),
        )

    async def _time_ends(self, indexes: list[str], low: str) -> tuple[float | None, float | None]:
        """Oldest and newest score at or after ``low`` over several time indexes."""
        replies = await self.connection.pipeline(
            [
                cmd
                for z in indexes
                for cmd in (
                    ("ZRANGEBYSCORE", z, low, "+inf", "WITHSCORES", "LIMIT", 0, 1),
                    ("ZREVRANGEBYSCORE", z, "+inf", low, "WITHSCORES", "LIMIT", 0, 1),
                )
            ]
        )
        scores = [score for reply in replies for _, score in _score_pairs(reply)]
        return (min(scores), max(scores)) if scores else (None, None)

    async def analytics_overview(self, namespace: str) -> AnalyticsOverview:
        k = self.keys
        (entities, messages, tool_counts, tool_bytes, fb) = await asyncio.gather(
            self._entity_scan(namespace, None),
            self._message_scan(namespace, None),
            self._tool_counts(namespace),
            self.connection.pipeline(self._tool_shard_commands(namespace, scripts.TOOL_BYTES)),
            self.connection.pipeline(
                [("ZCARD", k.feedback_time(t)) for t in k.feedback_tags(namespace)]
                + [("GET", k.feedback_bytes(t)) for t in k.feedback_tags(namespace)]
            ),
        )
        cutoff = self.tool_usage_cutoff(time.time())
        tool_ends, fb_ends = await asyncio.gather(
            self._time_ends(
                [k.tool_time(t) for t in k.tool_tags(namespace)],
                _f(cutoff) if cutoff is not None else "-inf",
            ),
            self._time_ends([k.feedback_time(t) for t in k.feedback_tags(namespace)], "-inf"),
        )
        n = len(fb) // 2
        return analytics.overview(
            namespace,
            {t: stats for t, (stats, _) in entities.items()},
            messages[0],
            messages[1],
            tool_counts,
            KindStats(sum(tool_counts.values()), sum(int(b or 0) for b in tool_bytes), *tool_ends),
            KindStats(sum(int(x) for x in fb[:n]), sum(int(x or 0) for x in fb[n:]), *fb_ends),
        )

    async def analytics_growth(
        self, namespace: str, kind: str, window: BucketWindow
    ) -> GrowthSeries:
        k = self.keys
        if kind == "entities":
            counts = _added([c for _, c in (await self._entity_scan(namespace, window)).values()])
        elif kind == "messages":
            counts = (await self._message_scan(namespace, window))[2]
        else:
            if kind == "tool_usage":
                lo, hi = self._scan_range(window, tools=True)
                indexes = [k.tool_time(t) for t in k.tool_tags(namespace)]
            else:
                lo, hi = self._scan_range(window)
                indexes = [k.feedback_time(t) for t in k.feedback_tags(namespace)]
            replies = await self.connection.pipeline(
                [
                    (
                        "SCRIPT",
                        scripts.ANALYTICS_TIME_COUNTS,
                        [z],
                        [lo, hi, *self._window_args(window)],
                    )
                    for z in indexes
                ]
            )
            counts = _added([_pairs(reply) for reply in replies])
        return analytics.growth(kind, window, counts)

    async def analytics_tools(
        self, namespace: str, window: BucketWindow, *, tool_name: str | None, limit: int
    ) -> ToolAnalytics:
        k = self.keys
        tags = k.tool_tags(namespace)
        lo, hi = self._scan_range(window, tools=True)
        replies = await self.connection.pipeline(
            [
                (
                    "SCRIPT",
                    scripts.ANALYTICS_TOOLS,
                    [
                        k.tool_records(t),
                        k.tool_by_name(t, tool_name) if tool_name else k.tool_time(t),
                    ],
                    [lo, hi, *self._window_args(window), limit],
                )
                for t in tags
            ]
        )
        tallies: dict[str, ToolTally] = {}
        durations: dict[str, list[float]] = {}
        slow_ids: dict[str, list[tuple[int, str]]] = {}
        failed_ids: dict[str, list[tuple[int, str]]] = {}
        for shard, reply in enumerate(replies):
            for name_b, calls, successes, series, durs, slowest, failed in reply:
                name = _s(name_b)
                t = tallies.setdefault(name, ToolTally())
                t.calls += int(calls)
                t.successes += int(successes)
                for j in range(0, len(series), 3):
                    point = t.series.setdefault(int(series[j]), [0, 0])
                    point[0] += int(series[j + 1])
                    point[1] += int(series[j + 2])
                durations.setdefault(name, []).extend(float(d) for d in durs)
                slow_ids.setdefault(name, []).extend((shard, _s(i)) for i in slowest)
                failed_ids.setdefault(name, []).extend((shard, _s(i)) for i in failed)
        wanted = sorted({c for ids in (*slow_ids.values(), *failed_ids.values()) for c in ids})
        values = await self.connection.pipeline(
            [("HGET", k.tool_records(tags[shard]), i) for shard, i in wanted]
        )
        records = {
            c: ToolUsageRecord(**orjson.loads(v.split(b"\n", 2)[-1]))
            for c, v in zip(wanted, values, strict=True)
            if v is not None
        }
        for name, t in tallies.items():
            ordered = sorted(durations[name])
            for p in analytics.PERCENTILES:
                t.percentiles[p] = ordered[analytics.percentile_rank(p, len(ordered)) - 1]
            for d in ordered:
                t.histogram[analytics.histogram_bin(d)] += 1
            slow = [records[c] for c in slow_ids[name] if c in records]
            t.slowest = sorted(slow, key=analytics.slowest_order, reverse=True)[:limit]
            failed = [records[c] for c in failed_ids[name] if c in records]
            t.recent_failures = sorted(failed, key=analytics.recent_order, reverse=True)[:limit]
        return analytics.tool_analytics(window, tallies)

    async def analytics_feedback(self, namespace: str, window: BucketWindow) -> FeedbackAnalytics:
        k = self.keys
        lo, hi = self._scan_range(window)
        replies = await self.connection.pipeline(
            [
                (
                    "SCRIPT",
                    scripts.ANALYTICS_FEEDBACK,
                    [k.feedback_records(t), k.feedback_time(t)],
                    [lo, hi, *self._window_args(window)],
                )
                for t in k.feedback_tags(namespace)
            ]
        )
        buckets: dict[int, tuple[int, int, float]] = {}
        for reply in replies:
            for j in range(0, len(reply), 4):
                key = int(reply[j])
                n, rated, total = buckets.get(key, (0, 0, 0.0))
                buckets[key] = (
                    n + int(reply[j + 1]),
                    rated + int(reply[j + 2]),
                    total + float(reply[j + 3]),
                )
        return analytics.feedback_analytics(window, buckets)

    # -- optional usage hooks (quotas, cross-namespace summary) -------------------------

    # -- retention (lua/retention*.lua, prune_*.lua) --------------------------------------

    async def set_entity_pinned(
        self, namespace: str, entity_type: str, entity_id: str, pinned: bool
    ) -> EntityRecord | None:
        key = self._entity_key(namespace, entity_type, entity_id)
        now = time.time()
        value = await self.connection.write(
            scripts.PIN_ENTITY, [key], [_f(now), "1" if pinned else ""]
        )
        return self._entity_from(entity_type, entity_id, value, now)

    async def touch_entities(
        self, namespace: str, keys: Sequence[tuple[str, str]], at: float
    ) -> None:
        k = self.keys
        by_tag: dict[str, list[str]] = {}
        for entity_type, entity_id in keys:
            by_tag.setdefault(k.entity_tag(namespace, entity_type, entity_id), []).append(entity_id)
        await self.connection.pipeline(
            [
                (
                    "SCRIPT",
                    scripts.TOUCH_ENTITIES,
                    [k.entity_accessed(tag)],
                    [_f(at), k.entity(tag, ""), *ids],
                )
                for tag, ids in by_tag.items()
            ]
        )

    async def _scan_shards(
        self,
        script: scripts.Script,
        shards: list[tuple[list[str], list[Any], list[Any]]],
        want: int,
        width: int,
    ) -> list[list[Any]]:
        """Run a retention scan (``RETENTION_ENTITIES``/``RETENTION_CONVERSATIONS``) on each
        shard, ``(keys, args before the cursor, args after it)``, until each has given
        ``want`` items or has no more ids: at most ``_SCAN_BUDGET`` ids examined per call.
        Returns each shard's items as lists of ``width`` values, in the shard's id order."""
        found: list[list[list[Any]]] = [[] for _ in shards]
        after = [""] * len(shards)
        open_ = list(range(len(shards)))
        while open_:
            replies = await self.connection.pipeline(
                [
                    (
                        "SCRIPT",
                        script,
                        shards[i][0],
                        [
                            *shards[i][1],
                            after[i],
                            want - len(found[i]),
                            _SCAN_BUDGET,
                            *shards[i][2],
                        ],
                    )
                    for i in open_
                ]
            )
            still = []
            for i, reply in zip(open_, replies, strict=True):
                last, exhausted, *items = reply
                found[i] += [items[j : j + width] for j in range(0, len(items), width)]
                after[i] = _s(last)
                if _s(exhausted) != "1" and len(found[i]) < want:
                    still.append(i)
            open_ = still
        return found

    async def prune(
        self, namespace: str, cutoffs: Cutoffs, now: float, *, dry_run: bool, limit: int
    ) -> PruneReport:
        report = PruneReport(now=now, dry_run=dry_run, limit=limit)
        c = cutoffs
        if c.entity_saved_before is not None or c.entity_idle_before is not None:
            await self._prune_entities(namespace, c, now, limit, report)
        if c.conversation_idle_before is not None or c.conversation_max_messages is not None:
            await self._prune_conversations(namespace, c, limit, report)
        if c.tool_usage_before is not None:
            await self._prune_tools(namespace, c.tool_usage_before, limit, report)
        if c.feedback_before is not None:
            await self._prune_feedback(namespace, c.feedback_before, limit, report)
        if c.versions_on:
            await self._prune_versions(namespace, c, limit, report)
        return report

    async def _prune_versions(self, ns: str, c: Cutoffs, limit: int, report: PruneReport) -> None:
        """Entity history rows by (type, id, version, deleted), then revisions by
        (conversation, revision): the first ``limit`` that go (lua/version_retention.lua),
        found by read-only scans, then removed by one script per key that judges them
        again."""
        k = self.keys
        keep = str(c.versions_keep) if c.versions_keep is not None else ""
        bounds = [keep, _bound(c.versions_saved_before)]
        #: (the row as reported, its score: 2 x version (+1: tombstone), or the revision)
        chosen: list[tuple[PrunedVersion, int]] = []
        for entity_type in await self._types_ever(ns):
            tags = k.entity_tags(ns, entity_type)
            shards = await self._scan_shards(
                scripts.RETENTION_VERSIONS,
                [
                    (
                        [k.entity_history_index(t)],
                        bounds,
                        [k.entity(t, ""), k.entity_history(t, ""), k.entity_version_prefix(t)],
                    )
                    for t in tags
                ],
                limit + 1 - len(chosen),
                3,
            )
            rows = sorted(
                (
                    (PrunedVersion(entity_type, _s(i), n // 2, _s(r), n % 2 == 1), n)  # type: ignore[arg-type]
                    for items in shards
                    for i, score, r in items
                    for n in (_score(score),)
                ),
                key=_id_then_number,
            )
            chosen += rows[: limit + 1 - len(chosen)]
            if len(chosen) > limit:
                break
        if len(chosen) <= limit:
            shards = await self._scan_shards(
                scripts.RETENTION_REVISIONS,
                [
                    ([k.conversation_revision_index(t)], bounds, [k.conversation_revisions(t, "")])
                    for t in k.conversation_tags(ns)
                ],
                limit + 1 - len(chosen),
                3,
            )
            revisions = sorted(
                (
                    (PrunedVersion(None, _s(i), int(n), _s(r)), int(n))  # type: ignore[arg-type]
                    for items in shards
                    for i, n, r in items
                ),
                key=_id_then_number,
            )
            chosen += revisions[: limit + 1 - len(chosen)]
        report.more["versions"] = len(chosen) > limit
        chosen = chosen[:limit]
        if report.dry_run:
            report.versions = [v for v, _ in chosen]
            return
        by_key: dict[tuple[str | None, str], list[int]] = {}
        for v, n in chosen:
            by_key.setdefault((v.type, v.id), []).append(n)

        async def remove(entity_type: str | None, key_id: str, numbers: list[int]) -> set[int]:
            if entity_type is None:
                tag = k.conversation_tag(ns, key_id)
                done = await self.connection.write(
                    scripts.PRUNE_REVISIONS,
                    [k.conversation_revisions(tag, key_id), k.conversation_revision_index(tag)],
                    [key_id, *bounds, k.conversation_revision_messages_prefix(tag), *numbers],
                )
            else:
                tag = k.entity_tag(ns, entity_type, key_id)
                done = await self.connection.write(
                    scripts.PRUNE_VERSIONS,
                    [
                        k.entity(tag, key_id),
                        k.entity_history_index(tag),
                        k.entity_history(tag, key_id),
                    ],
                    [key_id, *bounds, k.entity_version_prefix(tag), *numbers],
                )
            return {_score(n) for n in done}

        keys = list(by_key)
        removed = await asyncio.gather(*(remove(t, i, by_key[t, i]) for t, i in keys))
        gone = {(t, i, n) for (t, i), numbers in zip(keys, removed, strict=True) for n in numbers}
        report.versions = [v for v, n in chosen if (v.type, v.id, n) in gone]

    async def _prune_entities(
        self, ns: str, c: Cutoffs, now: float, limit: int, report: PruneReport
    ) -> None:
        k = self.keys
        bounds = [_bound(c.entity_saved_before), _bound(c.entity_idle_before)]
        chosen: list[PrunedEntity] = []
        for entity_type in await self._types_ever(ns):
            tags = k.entity_tags(ns, entity_type)
            shards = await self._scan_shards(
                scripts.RETENTION_ENTITIES,
                [
                    (
                        [k.entity_index(t), k.entity_accessed(t)],
                        [_f(now), *bounds],
                        [k.entity(t, "")],
                    )
                    for t in tags
                ],
                limit + 1 - len(chosen),
                3,
            )
            merged = sorted(
                (
                    PrunedEntity(entity_type, _s(i), _s(r), int(v))  # type: ignore[arg-type]
                    for items in shards
                    for i, r, v in items
                ),
                key=lambda e: e.id,
            )
            chosen += merged[: limit + 1 - len(chosen)]
            if len(chosen) > limit:
                break
        report.more["entities"] = len(chosen) > limit
        chosen = chosen[:limit]
        if report.dry_run:
            report.entities = chosen
            return

        async def remove(e: PrunedEntity) -> PrunedEntity | None:
            tag = k.entity_tag(ns, e.type, e.id)
            names = _names(entity_type=e.type, entity_id=e.id)
            change_keys, change_args = self._change_block(ns, tag, now, names)
            res = await self._write(
                scripts.PRUNE_ENTITY,
                ns,
                tag,
                [*self._entity_keys_on(tag, e.id), k.entity_accessed(tag), *change_keys],
                [
                    e.id,
                    _f(now),
                    *bounds,
                    *change_args,
                    _RETENTION_ACTOR,
                    self._version_prefix(ns, tag),
                ],
            )
            if not res:
                return None
            return PrunedEntity(e.type, e.id, _s(res[0]), int(res[1]))  # type: ignore[arg-type]

        removed = await asyncio.gather(*(remove(e) for e in chosen))
        report.entities = [e for e in removed if e is not None]

    async def _prune_conversations(
        self, ns: str, c: Cutoffs, limit: int, report: PruneReport
    ) -> None:
        k = self.keys
        idle, keep = _bound(c.conversation_idle_before), c.conversation_max_messages
        bounds = [idle, str(keep) if keep is not None else ""]
        shards = await self._scan_shards(
            scripts.RETENTION_CONVERSATIONS,
            [
                (
                    [k.conversation_index(t)],
                    bounds,
                    [k.conversation_meta(t, ""), k.conversation_messages(t, "")],
                )
                for t in k.conversation_tags(ns)
            ],
            limit + 1,
            4,
        )
        merged = sorted(
            (
                PrunedConversation(_s(i), _s(r), int(s), int(n))  # type: ignore[arg-type]
                for items in shards
                for i, r, s, n in items
            ),
            key=lambda conv: conv.id,
        )
        report.more["conversations"] = len(merged) > limit
        chosen = merged[:limit]
        if report.dry_run:
            report.conversations = chosen
            return

        async def remove(conv: PrunedConversation) -> PrunedConversation | None:
            tag = k.conversation_tag(ns, conv.id)
            names = _names(conversation_id=conv.id)
            change_keys, change_args = self._change_block(ns, tag, report.now, names)
            res = await self._write(
                scripts.PRUNE_CONVERSATION,
                ns,
                tag,
                [
                    *self._conversation_keys(ns, conv.id),
                    *self._revision_keys(tag, conv.id),
                    *change_keys,
                ],
                [conv.id, *bounds, *change_args, k.conversation_revision_messages_prefix(tag)],
            )
            if not res:
                return None
            return PrunedConversation(conv.id, _s(res[0]), int(res[1]), int(res[2]))  # type: ignore[arg-type]

        removed = await asyncio.gather(*(remove(conv) for conv in chosen))
        report.conversations = [conv for conv in removed if conv is not None]

    async def _oldest(
        self, indexes: list[str], before: float, limit: int
    ) -> tuple[list[tuple[float, str, int]], bool]:
        """The first ``limit`` (timestamp, id, shard) with ``timestamp < before`` over the
        shards' time indexes, in (timestamp, id) order, and whether more follow."""
        replies = await self.connection.pipeline(
            [
                ("ZRANGEBYSCORE", z, "-inf", f"({_f(before)}", "WITHSCORES", "LIMIT", 0, limit + 1)
                for z in indexes
            ]
        )
        cands = sorted(
            (score, m, shard)
            for shard, reply in enumerate(replies)
            for m, score in _score_pairs(reply)
        )
        return cands[:limit], len(cands) > limit

    async def _prune_tools(self, ns: str, before: float, limit: int, report: PruneReport) -> None:
        k = self.keys
        tags = k.tool_tags(ns)
        chosen, report.more["tool_usage"] = await self._oldest(
            [k.tool_time(t) for t in tags], before, limit
        )
        report.tool_usage = [PrunedRecord(i, ts) for ts, i, _ in chosen]
        if report.dry_run or not chosen:
            return
        by_shard: dict[int, list[str]] = {}
        for _, i, shard in chosen:
            by_shard.setdefault(shard, []).append(i)

        async def remove(shard: int, ids: list[str]) -> None:
            t = tags[shard]
            change_keys, change_args = self._change_block(ns, t, report.now, _names())
            await self._write(
                scripts.PRUNE_TOOLS,
                ns,
                t,
                [
                    k.tool_records(t),
                    k.tool_time(t),
                    k.tool_counts(t),
                    k.tool_bytes(t),
                    *change_keys,
                ],
                [k.tool_by_name_prefix(t), *change_args, *ids],
            )

        await asyncio.gather(*(remove(s, ids) for s, ids in by_shard.items()))

    async def _prune_feedback(
        self, ns: str, before: float, limit: int, report: PruneReport
    ) -> None:
        k = self.keys
        tags = k.feedback_tags(ns)
        chosen, report.more["feedback"] = await self._oldest(
            [k.feedback_time(t) for t in tags], before, limit
        )
        report.feedback = [PrunedRecord(i, ts) for ts, i, _ in chosen]
        if report.dry_run or not chosen:
            return
        values = await self.connection.pipeline(
            [("HGET", k.feedback_records(tags[shard]), i) for _, i, shard in chosen]
        )
        by_shard: dict[int, list[Any]] = {}
        for (_, i, shard), value in zip(chosen, values, strict=True):
            if value is None:
                continue
            record = orjson.loads(value)
            size = len(orjson.dumps(record["data"]))
            by_shard.setdefault(shard, []).extend(
                [i, record["agent_name"], record["feedback_type"], str(size)]
            )

        async def remove(shard: int, quads: list[Any]) -> None:
            t = tags[shard]
            change_keys, change_args = self._change_block(ns, t, report.now, _names())
            await self._write(
                scripts.PRUNE_FEEDBACK,
                ns,
                t,
                [k.feedback_records(t), k.feedback_time(t), k.feedback_bytes(t), *change_keys],
                [
                    k.feedback_time(t, agent=""),
                    k.feedback_time(t, kind=""),
                    k.feedback_time(t, agent="", kind="")[:-1],
                    *change_args,
                    *quads,
                ],
            )

        await asyncio.gather(*(remove(s, q) for s, q in by_shard.items()))

    async def stored_bytes(self, namespace: str) -> int | None:
        """Sum of the per-shard byte counters the write scripts keep (after pruning expired
        entities and trimming tool usage past retention, as the counts do)."""
        k = self.keys
        now = time.time()
        commands: list[tuple[Any, ...]] = [
            ("SCRIPT", scripts.ENTITY_BYTES, *self._pruning(namespace, t, tag, now))
            for t in await self._types_ever(namespace)
            for tag in k.entity_tags(namespace, t)
        ]
        commands += [("GET", k.conversation_bytes(t)) for t in k.conversation_tags(namespace)]
        commands += self._tool_shard_commands(namespace, scripts.TOOL_BYTES)
        commands += [("GET", k.feedback_bytes(t)) for t in k.feedback_tags(namespace)]
        return sum(int(r or 0) for r in await self.connection.pipeline(commands))

    async def logical_bytes(self, namespace: str) -> int | None:
        """The payloads' sizes before compression and encryption: the logical counters the
        write scripts keep beside the byte counters (``lua/logical.lua``; a shard's first
        read backfills its counter once), after the same pruning as ``stored_bytes``."""
        k = self.keys
        now = time.time()
        commands: list[tuple[Any, ...]] = [
            ("SCRIPT", scripts.ENTITY_LOGICAL_BYTES, *self._pruning(namespace, t, tag, now))
            for t in await self._types_ever(namespace)
            for tag in k.entity_tags(namespace, t)
        ]
        commands += [
            (
                "SCRIPT",
                scripts.LOGICAL_BYTES,
                [k.conversation_index(tag), k.conversation_bytes(tag)],
                ["c", k.conversation_messages(tag, ""), k.conversation_meta(tag, "")],
            )
            for tag in k.conversation_tags(namespace)
        ]
        commands += self._tool_shard_commands(namespace, scripts.TOOL_LOGICAL_BYTES)
        commands += [
            (
                "SCRIPT",
                scripts.LOGICAL_BYTES,
                [k.feedback_records(tag), k.feedback_bytes(tag)],
                ["f"],
            )
            for tag in k.feedback_tags(namespace)
        ]
        return sum(int(r or 0) for r in await self.connection.pipeline(commands))

    # -- version history (lua/history.lua, lua/revisions.lua) -----------------------------

    async def _versions_between(
        self, ns: str, entity_type: str, entity_id: str, top: str, bottom: str, count: int
    ) -> list[tuple[int, EntityVersion]]:
        """(score, version) of the key's rows with ``top >= score >= bottom`` (bounds as
        ZRANGEBYSCORE takes them), highest first: the stored entity row (score 2 x its
        version) and up to ``count`` history rows, read in one script. A history row of
        the entity row's own version (an import may write one) is left out."""
        tag = self.keys.entity_tag(ns, entity_type, entity_id)
        k = self.keys
        value, rows = await self.connection.eval(
            scripts.ENTITY_VERSIONS,
            [k.entity(tag, entity_id), k.entity_history(tag, entity_id)],
            [top, bottom, count, k.entity_version_prefix(tag), entity_id],
        )
        out: list[tuple[int, EntityVersion]] = []
        current = None
        if value is not None:
            stored = _version_of_entity(entity_type, entity_id, value)
            current = 2 * stored.version
            if _within(current, top, bottom):
                out.append((current, stored))
        for member, score, row in _history_rows(rows):
            if (n := _score(score)) != current:
                out.append((n, _version_of_row(entity_type, entity_id, member, row)))
        out.sort(key=_first, reverse=True)
        return out

    async def list_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[EntityVersion]:
        after = page_after_version(cursor)
        top = f"({2 * after[0] + after[1]}" if after else "+inf"
        rows = await self._versions_between(
            namespace, entity_type, entity_id, top, "-inf", limit + 2
        )
        return build_page([v for _, v in rows[: limit + 1]], limit, history_order)

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
            score = str(2 * version)
            rows = await self._versions_between(namespace, entity_type, entity_id, score, score, 1)
            return rows[0][1] if rows else None
        assert at is not None
        tag = self.keys.entity_tag(namespace, entity_type, entity_id)
        k = self.keys
        found = await self.connection.eval(
            scripts.ENTITY_VERSION_AT,
            [k.entity(tag, entity_id), k.entity_history(tag, entity_id)],
            [_f(at), k.entity_version_prefix(tag), entity_id],
        )
        if found is None:
            return None
        if isinstance(found, list):
            member, _, row = found
            return _version_of_row(entity_type, entity_id, member, row)
        return _version_of_entity(entity_type, entity_id, found)

    async def list_versioned_entities(
        self, namespace: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[EntityVersion]:
        after_type, after_id = page_after_key(cursor) or ("", "")
        k = self.keys
        keys: list[tuple[str, str]] = []
        for entity_type in await self._types_ever(namespace):
            if entity_type < after_type:
                continue
            lo = f"({after_id}" if entity_type == after_type and after_id else "-"
            tags = k.entity_tags(namespace, entity_type)
            want = limit + 1 - len(keys)
            ranges = await self.connection.pipeline(
                [
                    cmd
                    for t in tags
                    for cmd in (
                        ("ZRANGEBYLEX", k.entity_index(t), lo, "+", "LIMIT", 0, want),
                        ("ZRANGEBYLEX", k.entity_history_index(t), lo, "+", "LIMIT", 0, want),
                    )
                ]
            )
            ids = sorted({_s(m) for r in ranges for m in r})[:want]
            keys += [(entity_type, i) for i in ids]
            if len(keys) > limit:
                break
        newest = await asyncio.gather(
            *(self._versions_between(namespace, t, i, "+inf", "-inf", 1) for t, i in keys)
        )
        # an id indexed but gone (a key Redis expired itself, written before history) has
        # no row; its place still moves the cursor on
        found = [
            (key, rows[0][1] if rows else None) for key, rows in zip(keys, newest, strict=True)
        ]
        page = build_page(found[: limit + 1], limit, _first)
        return Page([v for _, v in page.items if v is not None], page.next_cursor)

    async def import_entity_versions(
        self, namespace: str, versions: Sequence[EntityVersion]
    ) -> None:
        by_key: dict[tuple[str, str], list[Any]] = {}
        for v in versions:
            by_key.setdefault((v.type, v.id), []).extend(_row_of(v))
        for entity_type in sorted({t for t, _ in by_key}):
            await self._register_type(namespace, entity_type)
        k = self.keys

        async def write(entity_type: str, entity_id: str, rows: list[Any]) -> None:
            tag = k.entity_tag(namespace, entity_type, entity_id)
            await self.connection.write(
                scripts.IMPORT_ENTITY_VERSIONS,
                [k.entity_history_index(tag), k.entity_history(tag, entity_id)],
                [entity_id, k.entity_version_prefix(tag), *rows],
            )

        await asyncio.gather(*(write(t, i, rows) for (t, i), rows in by_key.items()))

    async def list_conversation_revisions(
        self, namespace: str, conversation_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ConversationRevision]:
        below = page_after_revision(cursor)
        tag = self.keys.conversation_tag(namespace, conversation_id)
        stored = await self.connection.execute(
            "HGETALL", self.keys.conversation_revisions(tag, conversation_id)
        )
        revisions = sorted(
            (
                _revision_of(conversation_id, int(r), value)
                for r, value in (stored.items() if isinstance(stored, dict) else [])
                if below is None or int(r) < below
            ),
            key=by_revision,
            reverse=True,
        )
        return build_page(revisions[: limit + 1], limit, by_revision)

    async def load_conversation_revision(
        self, namespace: str, conversation_id: str, revision: int
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        tag = self.keys.conversation_tag(namespace, conversation_id)
        k = self.keys
        value, items = await self.connection.eval(
            scripts.LOAD_CONVERSATION_REVISION,
            [
                k.conversation_revisions(tag, conversation_id),
                k.conversation_revision_messages(tag, revision, conversation_id),
            ],
            [revision],
        )
        if value is None:
            return None
        return (
            _revision_of(conversation_id, revision, value),
            [_message_of(conversation_id, item) for item in items],
        )

    async def import_conversation_revision(
        self,
        namespace: str,
        revision: ConversationRevision,
        messages: Sequence[MessageRecord],
    ) -> None:
        cid = revision.conversation_id
        await self._register_namespace(namespace)
        tag = self.keys.conversation_tag(namespace, cid)
        k = self.keys
        await self.connection.write(
            scripts.IMPORT_CONVERSATION_REVISION,
            [
                k.conversation_revisions(tag, cid),
                k.conversation_revision_index(tag),
                k.conversation_revision_messages(tag, revision.revision, cid),
            ],
            [
                cid,
                revision.revision,
                f"{_f(revision.replaced_at)}|{revision.message_count}|"
                f"{_actor_json(revision.actor)}",
                *(
                    f"{m.seq}\n{_f(m.created_at)}\n".encode() + orjson.dumps(m.message)
                    for m in messages
                ),
            ],
        )

    async def delete_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        versions: Sequence[tuple[int, bool]],
    ) -> int:
        if not versions:
            return 0
        k = self.keys
        tag = k.entity_tag(namespace, entity_type, entity_id)
        removed = await self.connection.write(
            scripts.DROP_VERSIONS,
            [k.entity_history_index(tag), k.entity_history(tag, entity_id)],
            [entity_id, k.entity_version_prefix(tag), *(2 * v + int(d) for v, d in versions)],
        )
        return int(removed)

    async def delete_conversation_revisions(
        self, namespace: str, conversation_id: str, revisions: Sequence[int]
    ) -> int:
        if not revisions:
            return 0
        k = self.keys
        tag = k.conversation_tag(namespace, conversation_id)
        removed = await self.connection.write(
            scripts.DROP_REVISIONS,
            [k.conversation_revisions(tag, conversation_id), k.conversation_revision_index(tag)],
            [conversation_id, k.conversation_revision_messages_prefix(tag), *revisions],
        )
        return int(removed)

    async def purge_history(self, namespace: str) -> int:
        k = self.keys
        removed = 0
        for entity_type in await self._types_ever(namespace):
            for tag in k.entity_tags(namespace, entity_type):
                after = ""
                while True:
                    last, done, n = await self.connection.write(
                        scripts.PURGE_VERSIONS,
                        [k.entity_history_index(tag)],
                        [
                            after,
                            _SCAN_BUDGET,
                            k.entity(tag, ""),
                            k.entity_history(tag, ""),
                            k.entity_version_prefix(tag),
                        ],
                    )
                    removed += int(n)
                    after = _s(last)
                    if _s(done) == "1":
                        break
        for tag in k.conversation_tags(namespace):
            while True:
                done, n = await self.connection.write(
                    scripts.PURGE_REVISIONS,
                    [k.conversation_revision_index(tag)],
                    [
                        _SCAN_BUDGET,
                        k.conversation_revisions(tag, ""),
                        k.conversation_revision_messages_prefix(tag),
                    ],
                )
                removed += int(n)
                if _s(done) == "1":
                    break
        return removed

    async def list_namespaces(self) -> list[str] | None:
        """The namespace registry, minus namespaces without data (all deleted or expired,
        and no version history left). One pipelined probe per shard per namespace: an
        admin-route cost."""
        key = self.keys.namespaces()
        registered = sorted(_s(n) for n in await self.connection.execute("SMEMBERS", key))
        if not registered:
            return []
        k = self.keys
        type_sets = await self.connection.pipeline(
            [("SMEMBERS", k.entity_types(n)) for n in registered]
        )
        now = time.time()
        commands: list[tuple[Any, ...]] = []
        owners: list[str] = []
        for ns, types in zip(registered, type_sets, strict=True):
            probes: list[tuple[Any, ...]] = [
                ("SCRIPT", scripts.COUNT_ENTITIES, *self._pruning(ns, t, tag, now))
                for t in sorted(_s(x) for x in types)
                for tag in k.entity_tags(ns, t)
            ]
            # version history is data too (a namespace of deleted entities holds tombstones)
            probes += [
                ("ZCARD", k.entity_history_index(tag))
                for t in sorted(_s(x) for x in types)
                for tag in k.entity_tags(ns, t)
            ]
            probes += [("ZCARD", k.conversation_index(t)) for t in k.conversation_tags(ns)]
            probes += [("ZCARD", k.conversation_revision_index(t)) for t in k.conversation_tags(ns)]
            probes += [("HLEN", k.tool_records(t)) for t in k.tool_tags(ns)]
            probes += [("ZCARD", k.feedback_time(t)) for t in k.feedback_tags(ns)]
            commands += probes
            owners += [ns] * len(probes)
        live = {
            ns
            for ns, n in zip(owners, await self.connection.pipeline(commands), strict=True)
            if int(n)
        }
        return [ns for ns in registered if ns in live]

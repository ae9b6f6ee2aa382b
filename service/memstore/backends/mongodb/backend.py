"""``MongoDBMemoryBackend``: the backend contract on MongoDB (replica set or sharded).

Shape and invariants (the reasoning is in docs/architecture.md, "MongoDB backend"):

* One collection per kind of record, shared by all namespaces; ``ns`` leads every index,
  every shard key and every query filter (see ``schema``).
* Payloads are stored as native BSON through ``codec``, which escapes what MongoDB cannot
  hold (``$``/``.`` keys, NUL, huge ints, ``-0.0``) so any JSON round-trips exactly.
  Sizes are checked before a write is sent: the service limit (``max_body_bytes``) and,
  when that limit is large enough to matter, the server's BSON document limit.
* Entities: optimistic concurrency by compare-and-set. A save reads the current
  ``version``/``rev``, checks ``expected_version`` and writes with a filter on ``rev`` (a
  fresh ObjectId per write), or inserts when absent; losing a race means re-reading, so
  a conditional save that lost raises ``ConflictError``. ``rev`` (not ``version``) is the
  CAS token because a pin, and an import of the same version, change the document
  without a new version.
* Version history (``history``): the version a save, delete, purge or prune replaces or
  removes is written to ``entity_versions`` before the entity changes, a delete's
  tombstone after; a create numbers on from the key's highest history version; an
  import first removes the key's rows of its version and later (it rewinds the key);
  ``replace_conversation`` copies the replaced messages as a revision. In the write's
  transaction where the server has them; without, the order loses no version.
* Conversations: one document per message (``seq`` from a per-conversation counter
  reserved with one atomic ``$inc``, so concurrent appends get disjoint contiguous ranges),
  never a growing array. Append/replace/delete run in a multi-document transaction where
  the server offers them (replica set, mongos); a standalone server (and FerretDB v1) runs
  the same steps without one (see the docs for what that gives up).
* The change log (``changelog``): every write claims a slot after observing what it
  changes, writes conditionally on that, then inserts its event at the slot (``noop`` for
  a slot it cannot use); readers number the events without gaps. Entities, conversations
  and records all go through ``_logged``, in one transaction where the server has them.
* Write concern ``majority`` (+ journal) and retryable writes by default. Every write is
  safe to retry: inserts carry a client-made ``_id`` and unique keys, tool-usage and
  feedback ids are unique per namespace, CAS writes are keyed on ``rev``.
* Driver errors become ``memstore.core.errors`` types; messages never carry the URI.
* FerretDB v1 (the test server) runs an update as "query, then write by _id", so its
  conditional updates and ``$inc`` are not atomic between concurrent writers. When the
  server says it is FerretDB (``buildInfo.ferretdbVersion``) the backend additionally
  serialises writes to one entity/conversation inside this process (striped locks); the
  commands sent are the same. On MongoDB no lock is taken: the server is atomic per
  document.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import bson
from bson import ObjectId
from pymongo import (
    ASCENDING,
    DESCENDING,
    AsyncMongoClient,
    DeleteOne,
    ReplaceOne,
    ReturnDocument,
    UpdateOne,
)
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    ConfigurationError as PyMongoConfigurationError,
)
from pymongo.errors import (
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
)

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.common import (
    ErrorTranslation,
    ExpiredEntityPurge,
    build_page,
    by_id,
    by_key,
    by_revision,
    by_time,
    check_expected_version,
    check_imported_seqs,
    check_version_or_at,
    history_order,
    keeps_history,
    logical_size,
    page_after_id,
    page_after_key,
    page_after_revision,
    page_after_time,
    page_after_version,
)
from memstore.backends.mongodb import history, schema
from memstore.backends.mongodb.changelog import ChangeLog, Claims, event_doc
from memstore.backends.mongodb.codec import decode_value, encode_value
from memstore.core import analytics, changes
from memstore.core.analytics import (
    AnalyticsOverview,
    BucketWindow,
    FeedbackAnalytics,
    GrowthSeries,
    KindStats,
    ToolAnalytics,
    ToolTally,
    hour_of,
)
from memstore.core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidInputError,
    MemoryStoreError,
    PayloadTooLargeError,
)
from memstore.core.records import (
    ChangePage,
    ConversationInfo,
    ConversationRevision,
    EntityRecord,
    EntityVersion,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageRecord,
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
from memstore.core.validation import (
    check_json_items_size,
    check_json_size,
    check_size,
    json_array_size,
)

if TYPE_CHECKING:
    from memstore.core.settings import MongoDBSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Doc = dict[str, Any]
Coll = AsyncCollection[Doc]
#: what a logged write's body returns: its result and its event (None: nothing changed)
Logged = tuple[T, Doc | None]

#: compare-and-set / duplicate-key retries before giving up (only under heavy contention)
MAX_RACE_RETRIES = 64
#: BSON is at most this many times larger than the JSON it encodes (worst case: nested
#: empty arrays, each level "[]" = 2 bytes of JSON -> a {"\\a": [...]} wrapper, an array
#: header and an index key = 17 bytes), plus room for the fields around the payload; below
#: that the exact BSON size is never computed.
BSON_BLOWUP = 9
DOC_OVERHEAD = 4096
DEFAULT_MAX_BSON = 16 * 1024 * 1024

# Server error codes the backend reacts to.
NOT_IMPLEMENTED = 238
ALREADY_INITIALIZED = 23
INDEX_CONFLICT_CODES = frozenset({85, 86})  # IndexOptionsConflict, IndexKeySpecsConflict
BSON_TOO_LARGE = frozenset({10334, 17419, 17420})
#: stripes of the in-process write locks used only on servers without atomic updates
LOCK_STRIPES = 256
# The collections whose documents carry ``hour`` and the time it is the hour of.
_HOUR_SOURCES = (
    (schema.ENTITIES, "created_at"),
    (schema.MESSAGES, "created_at"),
    (schema.TOOL_USAGE, "ts"),
    (schema.FEEDBACK, "ts"),
)
_BACKFILL_BATCH = 1000
#: the TTL index deletes an expired entity this long after it expired: memstore's own
#: purge (which logs ``entity.expired``) runs every minute and gets there first; the
#: index only cleans up when no memstore replica runs
TTL_INDEX_GRACE_SECONDS = 3600.0

_ENTITY_FIELDS = {
    "_id": 0,
    "type": 1,
    "id": 1,
    "data": 1,
    "version": 1,
    "created_at": 1,
    "updated_at": 1,
    "expires_at": 1,
    "pinned": 1,
}
_ENTITY_FIELDS_WITH_ACTOR = {**_ENTITY_FIELDS, "actor": 1}
_CAS_FIELDS = {"_id": 0, "version": 1, "created_at": 1, "expires_at": 1, "rev": 1, "pinned": 1}
#: what a save or delete reads: the compare-and-set fields and the version's history row
_SAVE_FIELDS = {**_CAS_FIELDS, **history.CURRENT_FIELDS}
_MESSAGE_FIELDS = {"_id": 0, "seq": 1, "message": 1, "created_at": 1}
#: what a revision keeps of each replaced message
_REVISION_COPY_FIELDS = {**_MESSAGE_FIELDS, "bytes": 1}
_CONVERSATION_FIELDS = {
    "_id": 0,
    "id": 1,
    "message_count": 1,
    "created_at": 1,
    "updated_at": 1,
}
_NO_ID = {"_id": 0}


def _live(now: float) -> Doc:
    """Filter for entities that have not expired (``expires_at`` null/missing or later)."""
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}


def _is_live(doc: Doc, now: float) -> bool:
    expires_at = doc.get("expires_at")
    return expires_at is None or expires_at > now


def _expire_on(expires_at: float) -> datetime.datetime:
    """The TTL index's date: ``expires_at`` plus the grace, rounded up to the millisecond
    (BSON dates are milliseconds), so the server never deletes a live entity and leaves
    expired ones to memstore's purge first."""
    return datetime.datetime.fromtimestamp(
        math.ceil((expires_at + TTL_INDEX_GRACE_SECONDS) * 1000) / 1000, tz=datetime.UTC
    ).replace(tzinfo=None)


def _entity(doc: Doc) -> EntityRecord:
    return EntityRecord(
        type=doc["type"],
        id=doc["id"],
        data=decode_value(doc["data"]),
        version=doc["version"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
        expires_at=doc.get("expires_at"),
        pinned=bool(doc.get("pinned", False)),
    )


def _prunable_entities(cutoffs: Cutoffs) -> Doc:
    """The retention rules for entities as a filter (core/retention.py): not pinned
    (documents written before pins have no field), and saved before the age bound, or
    neither saved nor read (``accessed_at``, absent until a read is recorded) since the
    idle bound."""
    rules: list[Doc] = []
    if cutoffs.entity_saved_before is not None:
        rules.append({"updated_at": {"$lt": cutoffs.entity_saved_before}})
    if cutoffs.entity_idle_before is not None:
        idle = cutoffs.entity_idle_before
        rules.append(
            {
                "updated_at": {"$lt": idle},
                "$or": [{"accessed_at": None}, {"accessed_at": {"$lt": idle}}],
            }
        )
    return {"pinned": {"$ne": True}, "$or": rules}


def _tool_usage(doc: Doc) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=doc["id"],
        tool_name=doc["tool"],
        input=decode_value(doc["input"]),
        output=decode_value(doc["output"]),
        duration_ms=doc["duration_ms"],
        success=doc["success"],
        timestamp=doc["ts"],
        conversation_id=doc.get("cid"),
    )


def _feedback(doc: Doc) -> FeedbackRecord:
    return FeedbackRecord(
        id=doc["id"],
        agent_name=doc["agent"],
        feedback_type=doc["ftype"],
        data=decode_value(doc["data"]),
        timestamp=doc["ts"],
    )


def _after(cursor: str | None) -> Doc:
    """Keyset condition for (ts, id)-ordered listings."""
    after = page_after_time(cursor)
    if after is None:
        return {}
    c_ts, c_id = after
    return {"$or": [{"ts": {"$gt": c_ts}}, {"ts": c_ts, "id": {"$gt": c_id}}]}


def _by_conversation_id(info: ConversationInfo) -> tuple[str]:
    return (info.conversation_id,)


def _describe_error(exc: PyMongoError) -> str:
    """Error text without server addresses, URIs or document contents."""
    code = getattr(exc, "code", None)
    name = (getattr(exc, "details", None) or {}).get("codeName") if code is not None else None
    parts = [type(exc).__name__]
    if code is not None:
        parts.append(f"code {code}" + (f" ({name})" if name else ""))
    return ", ".join(parts)


def _operation_failure(exc: Exception, operation: str) -> MemoryStoreError:
    assert isinstance(exc, OperationFailure)
    if exc.code in BSON_TOO_LARGE:
        return PayloadTooLargeError(f"{operation}: document is larger than the server accepts")
    if exc.timeout or exc.has_error_label("RetryableWriteError"):
        return BackendUnavailableError(f"mongodb {operation} failed: {_describe_error(exc)}")
    return MemoryStoreError(f"mongodb {operation} failed: {_describe_error(exc)}")


def _unavailable(exc: Exception, operation: str) -> MemoryStoreError:
    assert isinstance(exc, PyMongoError)
    return BackendUnavailableError(f"mongodb {operation} failed: {_describe_error(exc)}")


#: PyMongo's exceptions -> the project's (``with DRIVER_ERRORS("operation"):``).
DRIVER_ERRORS = ErrorTranslation(
    [
        (
            DocumentTooLarge,
            lambda _exc, op: PayloadTooLargeError(
                f"{op}: document is larger than the server accepts"
            ),
        ),
        (
            bson.errors.InvalidDocument,
            lambda exc, op: InvalidInputError(f"{op}: value cannot be stored: {exc}"),
        ),
        (OperationFailure, _operation_failure),
        ((ConnectionFailure, InvalidOperation, PyMongoError), _unavailable),
    ]
)


#: driver option <- settings field it comes from
_OPTION_FIELDS = {
    "w": "mongodb_write_concern",
    "journal": "mongodb_journal",
    "retryWrites": "mongodb_retry_writes",
    "maxPoolSize": "mongodb_max_pool_size",
    "timeoutMS": "mongodb_timeout_ms",
    "serverSelectionTimeoutMS": "mongodb_server_selection_timeout_ms",
}


def uri_option_names(uri: str) -> set[str]:
    """Names of the options written in a MongoDB URI's query string (no DNS lookups, unlike
    ``uri_parser.parse_uri`` on ``mongodb+srv``). Passwords cannot hold a raw ``?``: the
    URI format requires it percent-encoded."""
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return {part.split("=", 1)[0] for part in query.split("&") if part}


def uri_hosts(uri: str) -> list[str]:
    """``host:port`` entries of a MongoDB URI, never its credentials."""
    rest = uri.split("://", 1)[-1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    return [h for h in authority.rsplit("@", 1)[-1].split(",") if h]


def client_options(settings: MongoDBSettings, uri_options: set[str]) -> dict[str, Any]:
    """Keyword options for ``AsyncMongoClient``. Precedence: a setting given explicitly
    (environment or config) > the same option written in ``MONGODB_URI`` > the setting's
    default. (PyMongo lets keyword arguments win over the URI, so a default is passed only
    when the URI is silent.)"""
    in_uri = {name.lower() for name in uri_options}
    values: dict[str, Any] = {
        "w": int(settings.mongodb_write_concern)
        if settings.mongodb_write_concern.isdigit()
        else "majority",
        "journal": settings.mongodb_journal,
        "retryWrites": settings.mongodb_retry_writes,
        "maxPoolSize": settings.mongodb_max_pool_size,
        "timeoutMS": settings.mongodb_timeout_ms,
        "serverSelectionTimeoutMS": settings.mongodb_server_selection_timeout_ms,
    }
    options = {
        name: value
        for name, value in values.items()
        if _OPTION_FIELDS[name] in settings.model_fields_set or name.lower() not in in_uri
    }
    if options.get("timeoutMS") == 0:
        del options["timeoutMS"]  # 0 = not set (PyMongo: no client-side operation timeout)
    options.update(retryReads=True, appname="memstore", document_class=dict, tz_aware=False)
    return options


class MongoDBMemoryBackend(DistributedMemoryBackend):
    name = "mongodb"

    settings: MongoDBSettings

    #: a change-log slot claimed this long ago and still empty belongs to a writer that
    #: died; a reader then fills it with a ``noop`` (docs/architecture.md)
    change_hole_timeout: float = 5.0
    #: how long ``read_changes`` waits for a young hole before returning what it has
    change_hole_wait: float = 1.0

    def __init__(self, settings: MongoDBSettings) -> None:
        super().__init__(settings)
        self._client: AsyncMongoClient[Doc] | None = None
        self._db: AsyncDatabase[Doc] | None = None
        self._transactions = False
        self._sharded = False
        self._ttl_index = False
        self._max_bson = DEFAULT_MAX_BSON
        self._purge = ExpiredEntityPurge(self.name, self._background_round)
        self._local_locks: list[asyncio.Lock] | None = None
        self._changes = ChangeLog(
            lambda: self._coll(schema.CHANGES),
            hole_timeout=self.change_hole_timeout,
            hole_wait=self.change_hole_wait,
        )

    # -- lifecycle --------------------------------------------------------------------

    async def connect(self) -> None:
        uri = self.settings.mongodb_uri.get_secret_value()
        try:
            self._client = self.create_client(
                uri, client_options(self.settings, uri_option_names(uri))
            )
        except PyMongoConfigurationError as exc:
            # The driver's message can quote the URI; never repeat it.
            raise ConfigurationError(
                f"MONGODB_URI or a MEMSTORE_MONGODB_* setting is invalid ({type(exc).__name__})"
            ) from exc
        self._db = self._client[self.settings.mongodb_db]
        try:
            with DRIVER_ERRORS("connect"):
                hello: Doc = await self._client.admin.command("hello")
                self._max_bson = int(hello.get("maxBsonObjectSize") or DEFAULT_MAX_BSON)
                self._transactions = schema.use_transactions(
                    self.settings.mongodb_transactions, hello
                )
                build_info: Doc = await self._client.admin.command("buildInfo")
                if not schema.has_atomic_updates(build_info):
                    self._local_locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
                shard = self.settings.mongodb_sharding and schema.is_mongos(hello)
                if self.settings.mongodb_sharding and not shard:
                    log.warning(
                        "MEMSTORE_MONGODB_SHARDING is set but MONGODB_URI does not point at "
                        "mongos; collections are left unsharded"
                    )
                await self._create_indexes(sharded=shard)
                await self._backfill_hours()
                if shard:
                    await self._shard_collections()
                self._sharded = shard
        except BaseException:
            await self.close()
            raise
        # Every server: the purge logs each expiry and trims the change log.
        self._purge.start()

    def create_client(self, uri: str, options: dict[str, Any]) -> AsyncMongoClient[Doc]:
        """The driver client ``connect`` uses. A subclass may add PyMongo options of its
        own here (e.g. ``event_listeners`` for command monitoring)."""
        return AsyncMongoClient(uri, **options)

    async def _create_indexes(self, *, sharded: bool) -> None:
        db = self._database()
        for command in schema.index_commands(sharded=sharded):
            try:
                await db.command(command)
            except OperationFailure as exc:
                if exc.code in INDEX_CONFLICT_CODES:
                    raise ConfigurationError(
                        f"collection {command['createIndexes']!r} has an index that differs "
                        f"from memstore's ({_describe_error(exc)}); drop it or use another "
                        "MONGODB_DB"
                    ) from exc
                raise
        try:
            await db.command(schema.ttl_index_command())
            self._ttl_index = True
        except OperationFailure as exc:
            if exc.code != NOT_IMPLEMENTED:
                raise
            # FerretDB v1: no TTL indexes. Reads already hide expired entities and the
            # background purge deletes them; only the fallback is missing.
            log.warning("server has no TTL indexes; expired entities are purged by memstore")
            self._ttl_index = False

    async def _backfill_hours(self) -> None:
        """Give ``hour`` (the analytics bucket field) to documents written before it
        existed, which the windowed analytics would otherwise miss while the overview
        counts them. Computed here, not in an update pipeline (FerretDB has no $floor);
        idempotent, and one empty find per collection once nothing is missing."""
        missing: Doc = {"hour": {"$exists": False}}
        for name, time_field in _HOUR_SOURCES:
            coll = self._coll(name)
            while (
                docs := await coll.find(missing, {"_id": 1, time_field: 1})
                .limit(_BACKFILL_BATCH)
                .to_list()
            ):
                updates = [
                    UpdateOne(
                        {"_id": d["_id"], **missing}, {"$set": {"hour": hour_of(d[time_field])}}
                    )
                    for d in docs
                ]
                await coll.bulk_write(updates, ordered=False)
                log.info(
                    "analytics hour backfilled", extra={"collection": name, "documents": len(docs)}
                )

    async def _shard_collections(self) -> None:
        assert self._client is not None
        for command in schema.sharding_commands(self.settings.mongodb_db):
            try:
                await self._client.admin.command(command)
            except OperationFailure as exc:
                if exc.code != ALREADY_INITIALIZED:
                    raise
        log.info("collections sharded", extra={"database": self.settings.mongodb_db})

    async def close(self) -> None:
        await self._purge.stop()
        if self._client is not None:
            await self._changes.close()
            client, self._client, self._db = self._client, None, None
            with contextlib.suppress(PyMongoError):
                await client.close()

    async def ping(self) -> bool:
        if self._client is None:
            return False
        try:
            await self._client.admin.command("ping")
        except PyMongoError:
            return False
        return True

    def describe(self) -> dict[str, Any]:
        hosts = uri_hosts(self.settings.mongodb_uri.get_secret_value())
        return {
            "backend": self.name,
            "hosts": hosts,
            "database": self.settings.mongodb_db,
            "transactions": self._transactions,
            "sharded": self._sharded,
            "ttl_index": self._ttl_index,
            "local_write_locks": self._local_locks is not None,
            "write_concern": self.settings.mongodb_write_concern,
        }

    async def purge_expired(self) -> int:
        """Delete expired entities now, each with an ``entity.expired`` event; returns how
        many. Runs every minute (the TTL index is only the fallback, an hour later)."""
        coll = self._coll(schema.ENTITIES)
        purged = 0
        with DRIVER_ERRORS("purge"):
            now = time.time()
            # The TTL index's range (expire_on is expires_at + the grace), then the exact
            # expiry.
            expired = await coll.find(
                {
                    "expire_on": {"$lte": _expire_on(now)},
                    "expires_at": {"$lte": now},
                },
                {"ns": 1, "type": 1, "id": 1, "rev": 1, **history.CURRENT_FIELDS},
            ).to_list()
            for doc in expired:
                key = {"ns": doc["ns"], "type": doc["type"], "id": doc["id"]}
                async with self._write_lock(doc["ns"], doc["type"], doc["id"]):
                    if await self._purge_one(key, doc):
                        purged += 1
        return purged

    async def _purge_one(self, key: Doc, doc: Doc) -> bool:
        """Delete one expired entity if it is still the version found, with its event.
        Its version moves to history first (no tombstone: it was not deleted, and the
        history row keeps the numbering)."""

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[bool]:
            await claims.claim()  # after the entity was found expired
            if keeps_history(key["ns"]):
                await self._keep_version(key, doc, session)
            result = await self._coll(schema.ENTITIES).delete_one(
                {**key, "rev": doc["rev"]}, session=session
            )
            if result.deleted_count == 0:
                return False, None  # saved again or deleted meanwhile
            event = event_doc(
                changes.ENTITY_EXPIRED,
                entity_type=key["type"],
                entity_id=key["id"],
                version=doc["version"],
            )
            return True, event

        return await self._logged("purge", key["ns"], body)

    async def _background_round(self) -> None:
        """Every minute: purge expired entities, then apply the change log's retention
        to every namespace."""
        await self.purge_expired()
        with DRIVER_ERRORS("trim_changes"):
            namespaces = await self._changes.namespaces()
        for namespace in namespaces:
            await self.trim_changes(namespace)

    # -- helpers ------------------------------------------------------------------------

    def _database(self) -> AsyncDatabase[Doc]:
        if self._db is None:
            raise BackendUnavailableError("mongodb backend is not connected")
        return self._db

    def _coll(self, name: str) -> Coll:
        return self._database()[name]

    def _write_lock(self, *key: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """The local lock for one entity/conversation, or a no-op on MongoDB."""
        if self._local_locks is None:
            return contextlib.nullcontext()
        return self._local_locks[hash(key) % LOCK_STRIPES]

    def _encode_checked(self, kind: str, value: Any, raw: bytes | None) -> tuple[Any, int]:
        """Check the service size limit on ``value``'s compact JSON (``raw`` when the
        caller has it), then encode. Returns (BSON value, JSON size)."""
        if raw is None:
            raw = check_json_size(kind, value, self.settings.max_body_bytes)
        else:
            check_size(kind, len(raw), self.settings.max_body_bytes)
        return encode_value(value), len(raw)

    def _check_bson(self, kind: str, doc: Doc, json_size: int) -> None:
        """Reject a document the server would refuse, before sending it. Computed only
        when the JSON is big enough that its BSON could reach the server's limit."""
        if json_size * BSON_BLOWUP + DOC_OVERHEAD <= self._max_bson:
            return
        size = len(bson.encode(doc))
        if size > self._max_bson:
            raise PayloadTooLargeError(
                f"{kind} is {size} bytes as BSON; MongoDB's document limit is {self._max_bson}",
                field=kind,
                limit=self._max_bson,
            )

    async def _insert_once(self, operation: str, collection: str, doc: Doc, event: Doc) -> None:
        """Insert a record whose id is unique per namespace, with its event: the same id
        stored before (a retry) is stored once, the unique key says no, and logs nothing.
        The slot is claimed after the insert: records have no order of their own to
        keep, and a write that stops in between leaves no hole."""
        coll = self._coll(collection)

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[None]:
            if session is not None:
                # In a transaction a duplicate key would abort it: look first (a
                # concurrent insert still aborts it, and the rerun finds the record).
                if await coll.find_one({"ns": doc["ns"], "id": doc["id"]}, _NO_ID, session=session):
                    return None, None
                await coll.insert_one(doc, session=session)
            else:
                try:
                    await coll.insert_one(doc)
                except DuplicateKeyError:
                    return None, None
            await claims.claim()
            return None, event

        await self._logged(operation, doc["ns"], body)

    async def _find_page(
        self,
        operation: str,
        collection: str,
        query: Doc,
        fields: Doc,
        limit: int,
        *,
        by: str = "time",
    ) -> list[Doc]:
        """Up to ``limit + 1`` documents in id or (ts, id) order (the query holds the
        cursor's condition)."""
        order = [("id", ASCENDING)] if by == "id" else [("ts", ASCENDING), ("id", ASCENDING)]
        with DRIVER_ERRORS(operation):
            return await (
                self._coll(collection).find(query, fields).sort(order).limit(limit + 1).to_list()
            )

    async def _atomic(
        self, operation: str, body: Callable[[AsyncClientSession | None], Awaitable[T]]
    ) -> T:
        """Run ``body`` in a transaction where the server has them, else directly.

        A duplicate key means another writer created the same document first (e.g. two
        first appends to one conversation racing their upserts); the work is re-run.
        """
        for attempt in range(MAX_RACE_RETRIES):
            try:
                with DRIVER_ERRORS(operation):
                    if not self._transactions:
                        return await body(None)
                    assert self._client is not None
                    async with self._client.start_session() as session:
                        return await session.with_transaction(
                            body, write_concern=self._database().write_concern
                        )
            except MemoryStoreError as exc:
                if isinstance(exc.__cause__, DuplicateKeyError) and attempt + 1 < MAX_RACE_RETRIES:
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _logged(
        self,
        operation: str,
        namespace: str,
        body: Callable[[AsyncClientSession | None, Claims], Awaitable[Logged[T]]],
    ) -> T:
        """Run a write that appends to the change log, atomically where the server has
        transactions (``_atomic``).

        ``body`` observes the state it changes, then claims a slot (``claims``; it may
        claim again after losing a race), makes its conditional write and returns
        (result, event or ``None`` when it changed nothing). The event is inserted here
        at the last claimed slot, in the same transaction (a duplicate key rolls it back
        and ``_atomic`` runs it again); without one, see ``_append_applied``. Every other
        claimed slot gets a ``noop`` at the end, whatever happened."""
        claims = Claims(self._changes, namespace)

        async def run(session: AsyncClientSession | None) -> T:
            claims.used = None
            result, event = await body(session, claims)
            if event is not None and session is not None:
                await self._changes.insert(namespace, claims.slot, event, session)
                claims.used = claims.slot
            elif event is not None:
                await self._append_applied(operation, claims, event)
            return result

        try:
            return await self._atomic(operation, run)
        finally:
            await self._release(operation, claims)

    async def _append_applied(self, operation: str, claims: Claims, event: Doc) -> None:
        """Insert the event of a write applied without a transaction, at its last claimed
        slot. A slot taken meanwhile (a reader gave up on it: the writer was slower than
        ``change_hole_timeout``; or retention had already cut it) gets the event at a new
        slot. A failure is logged, not raised: the data write is applied, and reporting it
        as failed would make the client repeat it (an append twice). That write then has
        no event; its slot becomes a ``noop`` (at once, or by a reader after the hole
        timeout)."""
        try:
            while True:
                try:
                    await self._changes.insert(claims.namespace, claims.slot, event)
                except DuplicateKeyError:
                    await claims.claim()
                    continue
                claims.used = claims.slot
                return
        except PyMongoError as exc:
            log.warning(
                "change event of an applied write is lost: %s",
                _describe_error(exc),
                extra={"op": operation},
            )

    async def _release(self, operation: str, claims: Claims) -> None:
        try:
            with DRIVER_ERRORS(operation):
                await claims.release()
        except MemoryStoreError:
            # Readers fill these slots themselves after the hole timeout.
            log.warning("could not mark unused change-log slots", extra={"op": operation})

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
        encoded, size = self._encode_checked("data", data, data_json)
        key = {"ns": namespace, "type": entity_type, "id": entity_id}
        async with self._write_lock(namespace, entity_type, entity_id):
            return await self._save_entity(key, data, encoded, size, expected_version, ttl)

    async def import_entity(self, namespace: str, record: EntityRecord) -> None:
        encoded, size = self._encode_checked("data", record.data, None)
        key = {"ns": namespace, "type": record.type, "id": record.id}
        async with self._write_lock(namespace, record.type, record.id):
            await self._save_entity(key, record.data, encoded, size, None, None, record)

    async def _save_entity(
        self,
        key: Doc,
        data: JSONObject,
        encoded: Any,
        size: int,
        expected_version: int | None,
        ttl: float | None,
        imported: EntityRecord | None = None,
    ) -> EntityRecord:
        """A save, or with ``imported`` an import: that record's version and times as
        given, no version check, the key rewound to that version (its history rows from
        it on removed; a replaced row of a higher version dropped). The version it
        replaces moves to history first."""
        coll = self._coll(schema.ENTITIES)
        actor = changes.current_actor_name()
        history_kept = keeps_history(key["ns"])

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[EntityRecord]:
            for _ in range(MAX_RACE_RETRIES):
                now = time.time()
                # The whole document: the version it holds moves to history.
                current_doc = await coll.find_one(key, _SAVE_FIELDS, session=session)
                live = current_doc is not None and _is_live(current_doc, now)
                current = current_doc["version"] if live and current_doc else None
                if imported is None:
                    check_expected_version(expected_version, current)
                    if current is None:
                        # A create continues after every version the key had.
                        version = 1 + await self._last_version(
                            key, current_doc, session, history_kept
                        )
                    else:
                        version = current + 1
                    created_at = current_doc["created_at"] if live and current_doc else now
                    updated_at = now
                    expires_at = now + ttl if ttl is not None else None
                else:
                    version = imported.version
                    created_at = imported.created_at
                    updated_at = imported.updated_at
                    expires_at = imported.expires_at
                doc: Doc = {
                    **key,
                    "data": encoded,
                    "bytes": size,  # compact JSON size, for the bytes quota
                    "lbytes": logical_size(encoded, size),  # before compression/encryption
                    "version": version,
                    "rev": ObjectId(),
                    "created_at": created_at,
                    "hour": hour_of(created_at),  # analytics buckets
                    "updated_at": updated_at,
                    "expires_at": expires_at,
                }
                if actor is not None:
                    doc["actor"] = actor  # who wrote this version (its history row keeps it)
                if expires_at is not None:
                    doc["expire_on"] = _expire_on(expires_at)
                # a replace keeps the pin (a pin sets a new rev, so it cannot be lost to
                # a save that read before it); a create starts unpinned
                pinned = bool(live and current_doc and current_doc.get("pinned"))
                if imported is not None:
                    pinned = imported.pinned  # an import writes the record's pin as given
                if pinned:
                    doc["pinned"] = True
                self._check_bson("data", doc, size)
                # Claimed after the read: whoever wrote the version read here claimed
                # an earlier slot, so the key's events stay in version order.
                await claims.claim()
                if (
                    history_kept
                    and imported is not None
                    and (current_doc is None or current_doc["version"] >= imported.version)
                ):
                    # rewind the key to the imported version (base.py): its rows of that
                    # version and later go before the entity changes, so a writer that
                    # stops in between leaves no row ahead of the current version. Below a
                    # stored document of a lower version there is no such row (no write
                    # puts one above it), so replication's imports of the next version
                    # skip this: FerretDB reads the whole collection for a filtered delete.
                    await self._coll(schema.ENTITY_VERSIONS).delete_many(
                        {**key, "version": {"$gte": imported.version}}, session=session
                    )
                if (
                    history_kept
                    and current_doc is not None
                    and (imported is None or current_doc["version"] < imported.version)
                ):
                    await self._keep_version(key, current_doc, session)
                if current_doc is None:
                    # A concurrent create makes this a duplicate key: run again.
                    await coll.insert_one(doc, session=session)
                else:
                    result = await coll.replace_one(
                        {**key, "rev": current_doc["rev"]}, doc, session=session
                    )
                    if result.matched_count == 0:
                        continue  # changed concurrently: re-read and decide again
                record = EntityRecord(
                    type=key["type"],
                    id=key["id"],
                    data=data,
                    version=version,
                    created_at=created_at,
                    updated_at=updated_at,
                    expires_at=expires_at,
                    pinned=pinned,
                )
                event = event_doc(
                    changes.ENTITY_SAVED,
                    entity_type=key["type"],
                    entity_id=key["id"],
                    version=version,
                )
                return record, event
            raise BackendUnavailableError("save_entity: too much contention on one entity")

        return await self._logged("save_entity", key["ns"], body)

    async def _last_version(
        self,
        key: Doc,
        current_doc: Doc | None,
        session: AsyncClientSession | None,
        history_kept: bool,
    ) -> int:
        """The highest version the key has had (its expired document's, its history's,
        its tombstones'), 0 for none: a create continues after it."""
        last = current_doc["version"] if current_doc is not None else 0
        if history_kept:
            row = await self._coll(schema.ENTITY_VERSIONS).find_one(
                key, {"_id": 0, "version": 1}, sort=history.NEWEST_FIRST, session=session
            )
            if row is not None:
                last = max(last, row["version"])
        return last

    async def _keep_version(
        self, key: Doc, current_doc: Doc, session: AsyncClientSession | None
    ) -> None:
        """Write the version an ``entities`` document holds to history."""
        await self._write_row(key, history.history_row(key, current_doc), session)

    async def _leave_tombstone(
        self, key: Doc, version: int, actor: str | None, session: AsyncClientSession | None
    ) -> None:
        await self._write_row(key, history.tombstone_row(key, version, time.time(), actor), session)

    async def _write_row(self, key: Doc, row: Doc, session: AsyncClientSession | None) -> None:
        """Store a history row, replacing one with its unique key: a writer that runs
        again, and the loser of a compare-and-set race (which read the same document),
        write the same row a second time.

        Outside a transaction it is an insert, and a replace only when the unique key
        says the row is there: an insert reads nothing, where FerretDB evaluates an
        upsert's filter over the whole collection, which grows with every save. In a
        transaction a duplicate key would abort it, so it is an upsert (MongoDB finds
        the row through the unique index)."""
        coll = self._coll(schema.ENTITY_VERSIONS)
        unique = history.row_key(key, row["version"], deleted=row["deleted"])
        if session is not None:
            await coll.replace_one(unique, row, upsert=True, session=session)
            return
        try:
            await coll.insert_one(row)
        except DuplicateKeyError:
            row.pop("_id", None)  # the driver set one on the failed insert
            await coll.replace_one(unique, row, upsert=True)

    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None:
        with DRIVER_ERRORS("load_entity"):
            doc = await self._coll(schema.ENTITIES).find_one(
                {"ns": namespace, "type": entity_type, "id": entity_id, **_live(time.time())},
                _ENTITY_FIELDS,
            )
        return _entity(doc) if doc is not None else None

    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        key = {"ns": namespace, "type": entity_type, "id": entity_id}
        async with self._write_lock(namespace, entity_type, entity_id):
            return await self._delete_entity(key, expected_version)

    async def _delete_entity(self, key: Doc, expected_version: int | None) -> bool:
        """The deleted version moves to history, then the entity goes, then its
        tombstone is written (without a transaction, a writer that stops before the
        tombstone still leaves the version, which keeps the numbering)."""
        coll = self._coll(schema.ENTITIES)
        actor = changes.current_actor_name()
        history_kept = keeps_history(key["ns"])

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[bool]:
            for _ in range(MAX_RACE_RETRIES):
                current_doc = await coll.find_one(key, _SAVE_FIELDS, session=session)
                live = current_doc is not None and _is_live(current_doc, time.time())
                current = current_doc["version"] if live and current_doc else None
                check_expected_version(expected_version, current)
                if current_doc is None or current is None:
                    # Nothing live to delete; an expired entity is left to the purge,
                    # which logs its expiry.
                    return False, None
                await claims.claim()  # after the read, as in a save
                if history_kept:
                    await self._keep_version(key, current_doc, session)
                result = await coll.delete_one({**key, "rev": current_doc["rev"]}, session=session)
                if result.deleted_count == 1:
                    if history_kept:
                        await self._leave_tombstone(key, current, actor, session)
                    event = event_doc(
                        changes.ENTITY_DELETED,
                        entity_type=key["type"],
                        entity_id=key["id"],
                        version=current,
                    )
                    return True, event
            raise BackendUnavailableError("delete_entity: too much contention on one entity")

        return await self._logged("delete_entity", key["ns"], body)

    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        query: Doc = {"ns": namespace, "type": entity_type, **_live(time.time())}
        if (after := page_after_id(cursor)) is not None:
            query["id"] = {"$gt": after}
        docs = await self._find_page(
            "list_entities", schema.ENTITIES, query, _ENTITY_FIELDS, limit, by="id"
        )
        return build_page([_entity(d) for d in docs], limit, by_id)

    async def _group_count(self, collection: str, match: Doc, field: str) -> dict[str, int]:
        """Exact ``{value of field: count}`` over ``match``, by aggregation (``distinct``
        is avoided: FerretDB v1 rejects it when the driver sends ``maxTimeMS``)."""
        pipeline = [
            {"$match": match},
            {"$group": {"_id": f"${field}", "n": {"$sum": 1}}},
            {"$sort": {"_id": 1}},
        ]
        rows = await (await self._coll(collection).aggregate(pipeline)).to_list()
        return {r["_id"]: r["n"] for r in rows}

    async def get_entity_types(self, namespace: str) -> list[str]:
        with DRIVER_ERRORS("get_entity_types"):
            counts = await self._group_count(
                schema.ENTITIES, {"ns": namespace, **_live(time.time())}, "type"
            )
        return sorted(counts)

    # -- version history (pure parts: history.py) -----------------------------------------

    async def _current_version(self, key: Doc) -> EntityVersion | None:
        """The version the ``entities`` document holds, expired or not (an expired one is
        the history row the purge is about to write)."""
        doc = await self._coll(schema.ENTITIES).find_one(key, _ENTITY_FIELDS_WITH_ACTOR)
        return history.from_current(doc) if doc is not None else None

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
        key = {"ns": namespace, "type": entity_type, "id": entity_id}
        with DRIVER_ERRORS("list_entity_versions"):
            current = await self._current_version(key)
            # One more than a page, and one for a row that repeats the current version.
            rows = await (
                self._coll(schema.ENTITY_VERSIONS)
                .find({**key, **history.older_than(after)}, history.ROW_FIELDS)
                .sort(history.NEWEST_FIRST)
                .limit(limit + 2)
                .to_list()
            )
        if current is not None and after is not None and history_order(current) >= after:
            current = None
        items = history.merge_newest_first(current, map(history.from_row, rows))
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
        key = {"ns": namespace, "type": entity_type, "id": entity_id}
        rows = self._coll(schema.ENTITY_VERSIONS)
        with DRIVER_ERRORS("load_entity_version"):
            current = await self._current_version(key)
            if version is not None:
                if current is not None and current.version == version:
                    return current
                doc = await rows.find_one(
                    history.row_key(key, version, deleted=False), history.ROW_FIELDS
                )
                return history.from_row(doc) if doc is not None else None
            assert at is not None
            if current is not None and current.saved_at <= at:
                return current
            doc = await rows.find_one(
                {**key, "saved_at": {"$lte": at}}, history.ROW_FIELDS, sort=history.NEWEST_FIRST
            )
        return history.from_row(doc) if doc is not None else None

    async def list_versioned_entities(
        self, namespace: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[EntityVersion]:
        after = history.after_key(page_after_key(cursor))
        ns: Doc = {"ns": namespace}
        with DRIVER_ERRORS("list_versioned_entities"):
            currents = await (
                self._coll(schema.ENTITIES)
                .find({**ns, **after}, _ENTITY_FIELDS_WITH_ACTOR)
                .sort([("type", ASCENDING), ("id", ASCENDING)])
                .limit(limit + 1)
                .to_list()
            )
            # The keys that have history, one per group (FerretDB v1 runs $group with
            # a $sum and sorts on the group's fields).
            groups = await self._agg(
                schema.ENTITY_VERSIONS,
                [
                    {"$match": {**ns, **after}},
                    {"$group": {"_id": {"t": "$type", "i": "$id"}, "n": {"$sum": 1}}},
                    {"$sort": {"_id.t": 1, "_id.i": 1}},
                    {"$limit": limit + 1},
                ],
            )
            newest_by_key = {(d["type"], d["id"]): history.from_current(d) for d in currents}
            keys = sorted(set(newest_by_key) | {(g["_id"]["t"], g["_id"]["i"]) for g in groups})
            keys = keys[: limit + 1]
            missing = [k for k in keys if k not in newest_by_key]

            async def newest(k: tuple[str, str]) -> Doc | None:
                return await self._coll(schema.ENTITY_VERSIONS).find_one(
                    {**ns, "type": k[0], "id": k[1]},
                    history.ROW_FIELDS,
                    sort=history.NEWEST_FIRST,
                )

            for k, doc in zip(missing, await asyncio.gather(*map(newest, missing)), strict=True):
                if doc is not None:  # (None: its history was removed since the group)
                    newest_by_key[k] = history.from_row(doc)
        return build_page([newest_by_key[k] for k in keys if k in newest_by_key], limit, by_key)

    async def import_entity_versions(
        self, namespace: str, versions: Sequence[EntityVersion]
    ) -> None:
        if not versions:
            return
        writes = []
        for v in versions:
            key = {"ns": namespace, "type": v.type, "id": v.id}
            data, size = (None, 0) if v.deleted else self._encode_checked("data", v.data, None)
            row = history.imported_row(key, v, data, size)
            self._check_bson("data", row, size)
            writes.append(
                ReplaceOne(history.row_key(key, v.version, deleted=v.deleted), row, upsert=True)
            )
        with DRIVER_ERRORS("import_entity_versions"):
            await self._coll(schema.ENTITY_VERSIONS).bulk_write(writes, ordered=True)

    async def delete_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        versions: Sequence[tuple[int, bool]],
    ) -> int:
        if not versions:
            return 0
        key = {"ns": namespace, "type": entity_type, "id": entity_id}
        rows = [history.row_key(key, v, deleted=d) for v, d in versions]
        with DRIVER_ERRORS("delete_entity_versions"):
            async with self._write_lock(namespace, entity_type, entity_id):
                gone = await self._coll(schema.ENTITY_VERSIONS).delete_many({"$or": rows})
        return gone.deleted_count

    async def delete_conversation_revisions(
        self, namespace: str, conversation_id: str, revisions: Sequence[int]
    ) -> int:
        if not revisions:
            return 0
        mine: Doc = {"ns": namespace, "cid": conversation_id, "rev": {"$in": list(revisions)}}
        with DRIVER_ERRORS("delete_conversation_revisions"):
            async with self._write_lock(namespace, "\x00conversation", conversation_id):
                return await self._erase_revisions(mine, None)

    async def purge_history(self, namespace: str) -> int:
        ns: Doc = {"ns": namespace}
        rows = self._coll(schema.ENTITY_VERSIONS)
        removed = 0
        with DRIVER_ERRORS("purge_history"):
            for t, i in await self._keys_due(
                schema.ENTITY_VERSIONS, {"t": "$type", "i": "$id"}, ns, None
            ):
                key = {**ns, "type": t, "id": i}
                async with self._write_lock(namespace, t, i):
                    current = await self._coll(schema.ENTITIES).find_one(
                        key, {"_id": 0, "version": 1}
                    )
                    if current is not None:
                        # Below the current version only: a delete racing this one
                        # writes its rows at the current version, and they stay.
                        gone: Doc = {**key, "version": {"$lt": current["version"]}}
                    else:
                        # The newest row stays: it holds the numbering.
                        newest = await rows.find_one(key, {"_id": 1}, sort=history.NEWEST_FIRST)
                        if newest is None:
                            continue
                        gone = {**key, "_id": {"$ne": newest["_id"]}}
                    removed += (await rows.delete_many(gone)).deleted_count
            removed += await self._erase_revisions(ns, None)
        return removed

    # -- conversations ------------------------------------------------------------------

    def _message_docs(
        self,
        namespace: str,
        conversation_id: str,
        first_seq: int,
        encoded: list[tuple[Any, int]],
        now: float,
    ) -> list[Doc]:
        return [
            {
                "ns": namespace,
                "cid": conversation_id,
                "seq": first_seq + i,
                "message": m,
                "bytes": size,
                "lbytes": logical_size(m, size),
                "created_at": now,
                "hour": hour_of(now),  # analytics buckets
            }
            for i, (m, size) in enumerate(encoded)
        ]

    def _encode_messages(
        self, messages: list[JSONObject], raws: Sequence[bytes] | None
    ) -> list[tuple[Any, int]]:
        """Each message encoded for BSON, with its compact JSON size."""
        encoded = []
        for i, m in enumerate(messages):
            value, size = self._encode_checked("message", m, None if raws is None else raws[i])
            self._check_bson("message", {"message": value}, size)
            encoded.append((value, size))
        return encoded

    async def _conversation_write(
        self,
        convs: Coll,
        claims: Claims,
        conv_key: Doc,
        update: Callable[[int], Doc],
        session: AsyncClientSession | None,
        *,
        create: bool,
    ) -> Doc | None:
        """Apply ``update(slot)`` to a conversation document whose last change has
        an earlier slot than this write's, recording this one (``lp``), and return
        the document after it; ``None`` when the conversation does not exist and
        ``create`` is false.

        First try with the slot already claimed. No match means the conversation is
        missing or a later slot changed it; that failed update is an observation,
        so a slot claimed after it is later than every change it saw: claim again
        and retry (creating the document if asked; a later writer that got there first
        makes the upsert a duplicate key, and the write runs again)."""
        for attempt in range(MAX_RACE_RETRIES):
            slot = claims.slot
            conv = await convs.find_one_and_update(
                {**conv_key, "lp": {"$not": {"$gte": slot}}},
                update(slot),
                upsert=create and attempt > 0,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            if conv is not None:
                return conv
            if attempt > 0 and not await convs.find_one(conv_key, _NO_ID, session=session):
                return None
            await claims.claim()
        raise BackendUnavailableError("too much contention on one conversation")

    async def append_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        encoded = self._encode_messages(messages, messages_json)
        n = len(encoded)
        convs = self._coll(schema.CONVERSATIONS)
        msgs = self._coll(schema.MESSAGES)
        conv_key = {"ns": namespace, "id": conversation_id}

        async def body(
            session: AsyncClientSession | None, claims: Claims
        ) -> Logged[list[MessageRecord]]:
            now = time.time()

            def update(slot: int) -> Doc:
                return {
                    "$inc": {"last_seq": n, "message_count": n},
                    "$set": {"updated_at": now, "lp": slot},
                    "$setOnInsert": {"created_at": now},
                }

            await claims.claim()
            # One atomic $inc reserves seqs [last - n + 1, last] for this call only.
            # (no projection: FerretDB v1 rejects one on findAndModify; the doc is tiny)
            conv = await self._conversation_write(
                convs, claims, conv_key, update, session, create=True
            )
            assert conv is not None  # created when missing
            first = conv["last_seq"] - n + 1
            if n:
                await msgs.insert_many(
                    self._message_docs(namespace, conversation_id, first, encoded, now),
                    ordered=True,
                    session=session,
                )
            records = [
                MessageRecord(conversation_id, first + i, m, now) for i, m in enumerate(messages)
            ]
            if not n:
                return records, None
            event = event_doc(
                changes.CONVERSATION_APPENDED,
                conversation_id=conversation_id,
                version=conv["last_seq"],
                count=n,
            )
            return records, event

        async with self._write_lock(namespace, "\x00conversation", conversation_id):
            return await self._logged("append_messages", namespace, body)

    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        query: Doc = {"ns": namespace, "cid": conversation_id}
        if before_seq is not None:
            query["seq"] = {"$lt": before_seq}
        coll = self._coll(schema.MESSAGES)
        with DRIVER_ERRORS("load_messages"):
            if limit is None:
                docs = await coll.find(query, _MESSAGE_FIELDS).sort("seq", ASCENDING).to_list()
            else:
                # The unique (ns, cid, seq) index walked backwards: the last N in O(N).
                docs = await (
                    coll.find(query, _MESSAGE_FIELDS).sort("seq", DESCENDING).limit(limit).to_list()
                )
                docs.reverse()
        return [
            MessageRecord(conversation_id, d["seq"], decode_value(d["message"]), d["created_at"])
            for d in docs
        ]

    async def replace_conversation(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        encoded = self._encode_messages(messages, messages_json)
        n = len(encoded)
        convs = self._coll(schema.CONVERSATIONS)
        msgs = self._coll(schema.MESSAGES)
        conv_key = {"ns": namespace, "id": conversation_id}
        actor = changes.current_actor_name()
        history_kept = keeps_history(namespace)

        async def body(
            session: AsyncClientSession | None, claims: Claims
        ) -> Logged[list[MessageRecord]]:
            now = time.time()
            mine = {"ns": namespace, "cid": conversation_id}
            # The messages replaced become a revision (stored values copied as they are).
            replaced = (
                await msgs.find(mine, _REVISION_COPY_FIELDS, session=session)
                .sort("seq", ASCENDING)
                .to_list()
                if history_kept
                else []
            )

            def update(slot: int) -> Doc:
                return {
                    "$set": {"last_seq": n, "message_count": n, "updated_at": now, "lp": slot},
                    "$setOnInsert": {"created_at": now},
                }

            await claims.claim()
            await self._conversation_write(convs, claims, conv_key, update, session, create=True)
            if replaced:
                await self._keep_revision(mine, replaced, now, actor, session)
            await msgs.delete_many(mine, session=session)
            if n:
                await msgs.insert_many(
                    self._message_docs(namespace, conversation_id, 1, encoded, now),
                    ordered=True,
                    session=session,
                )
            records = [
                MessageRecord(conversation_id, 1 + i, m, now) for i, m in enumerate(messages)
            ]
            event = event_doc(
                changes.CONVERSATION_REPLACED, conversation_id=conversation_id, version=n, count=n
            )
            return records, event

        async with self._write_lock(namespace, "\x00conversation", conversation_id):
            return await self._logged("replace_conversation", namespace, body)

    async def _keep_revision(
        self,
        mine: Doc,
        replaced: list[Doc],
        now: float,
        actor: str | None,
        session: AsyncClientSession | None,
    ) -> None:
        """Store ``replaced`` (a conversation's messages, as stored) as its next revision,
        numbered 1 + the highest stored (retention never removes a conversation's newest
        revision, so a number is not reused while the conversation has revisions). The
        messages first, the revision document last: a writer that stops in between leaves
        no revision without its messages; the stray messages count for the numbering
        and go with the conversation."""
        number = 1
        for collection in (schema.REVISIONS, schema.REVISION_MESSAGES):
            last = await self._coll(collection).find_one(
                mine, {"_id": 0, "rev": 1}, sort=[("rev", DESCENDING)], session=session
            )
            if last is not None:
                number = max(number, last["rev"] + 1)
        await self._coll(schema.REVISION_MESSAGES).insert_many(
            [{**mine, "rev": number, **m} for m in replaced], ordered=True, session=session
        )
        await self._coll(schema.REVISIONS).insert_one(
            {
                **mine,
                "rev": number,
                "replaced_at": now,
                "actor": actor,
                "message_count": len(replaced),
                "bytes": sum(m.get("bytes", 0) for m in replaced),
            },
            session=session,
        )

    async def import_conversation(
        self, namespace: str, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        last_seq = check_imported_seqs(conversation_id, messages)
        encoded = self._encode_messages([m.message for m in messages], None)
        n = len(encoded)
        convs = self._coll(schema.CONVERSATIONS)
        msgs = self._coll(schema.MESSAGES)
        conv_key = {"ns": namespace, "id": conversation_id}

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[None]:
            now = time.time()
            created = messages[0].created_at if messages else now
            updated = messages[-1].created_at if messages else now

            def update(slot: int) -> Doc:
                return {
                    "$set": {
                        "last_seq": last_seq,
                        "message_count": n,
                        "created_at": created,
                        "updated_at": updated,
                        "lp": slot,
                    }
                }

            await claims.claim()
            await msgs.delete_many({"ns": namespace, "cid": conversation_id}, session=session)
            await self._conversation_write(convs, claims, conv_key, update, session, create=True)
            if n:
                docs = self._message_docs(namespace, conversation_id, 1, encoded, now)
                for doc, m in zip(docs, messages, strict=True):
                    doc["seq"] = m.seq
                    doc["created_at"] = m.created_at
                    doc["hour"] = hour_of(m.created_at)
                await msgs.insert_many(docs, ordered=True, session=session)
            event = event_doc(
                changes.CONVERSATION_REPLACED,
                conversation_id=conversation_id,
                version=last_seq,
                count=n,
            )
            return None, event

        async with self._write_lock(namespace, "\x00conversation", conversation_id):
            await self._logged("import_conversation", namespace, body)

    async def pop_message(self, namespace: str, conversation_id: str) -> MessageRecord | None:
        convs = self._coll(schema.CONVERSATIONS)
        msgs = self._coll(schema.MESSAGES)
        conv_key = {"ns": namespace, "id": conversation_id}

        async def body(
            session: AsyncClientSession | None, claims: Claims
        ) -> Logged[MessageRecord | None]:
            mine = {"ns": namespace, "cid": conversation_id}
            while True:
                last = await msgs.find_one(
                    mine, {"_id": 0, "seq": 1}, sort=[("seq", DESCENDING)], session=session
                )
                if last is None:
                    return None, None
                # The delete names the full shard key (MongoDB < 7.1 requires it of a
                # findAndModify); it claims the message: of two pops that read the same
                # last seq, one gets the document and the other reads again.
                doc = await msgs.find_one_and_delete({**mine, "seq": last["seq"]}, session=session)
                if doc is not None:
                    break
            seq = doc["seq"]
            await claims.claim()  # after the message was taken
            now = time.time()

            def give_back(slot: int) -> Doc:
                return {
                    "$set": {"updated_at": now, "lp": slot},
                    "$inc": {"last_seq": -1, "message_count": -1},
                }

            def count_down(slot: int) -> Doc:
                return {"$set": {"updated_at": now, "lp": slot}, "$inc": {"message_count": -1}}

            # Give the seq back only if no append reserved a later one meanwhile (possible
            # without transactions); else the conversation keeps a gap at ``seq``.
            conv = await self._conversation_write(
                convs, claims, {**conv_key, "last_seq": seq}, give_back, session, create=False
            )
            if conv is None:
                conv = await self._conversation_write(
                    convs, claims, conv_key, count_down, session, create=False
                )
            if conv is not None and conv["message_count"] <= 0:
                # An append in flight has already counted its messages: then no match.
                await convs.delete_one({**conv_key, "message_count": {"$lte": 0}}, session=session)
            record = MessageRecord(
                conversation_id, seq, decode_value(doc["message"]), doc["created_at"]
            )
            event = event_doc(
                changes.CONVERSATION_POPPED, conversation_id=conversation_id, version=seq
            )
            return record, event

        async with self._write_lock(namespace, "\x00conversation", conversation_id):
            return await self._logged("pop_message", namespace, body)

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        convs = self._coll(schema.CONVERSATIONS)
        msgs = self._coll(schema.MESSAGES)
        conv_key = {"ns": namespace, "id": conversation_id}

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[bool]:
            mine = {"ns": namespace, "cid": conversation_id}
            for _ in range(MAX_RACE_RETRIES):
                slot = await claims.claim()
                await msgs.delete_many(mine, session=session)
                # Delete is erase: its revisions go too (again after a replace that got
                # in first made one).
                await self._erase_revisions(mine, session)
                result = await convs.delete_one(
                    {**conv_key, "lp": {"$not": {"$gte": slot}}}, session=session
                )
                if result.deleted_count:
                    event = event_doc(changes.CONVERSATION_DELETED, conversation_id=conversation_id)
                    return True, event
                if await convs.find_one(conv_key, _NO_ID, session=session) is None:
                    return False, None
                # A later slot changed it meanwhile: delete after that one.
            raise BackendUnavailableError("delete_conversation: too much contention")

        async with self._write_lock(namespace, "\x00conversation", conversation_id):
            return await self._logged("delete_conversation", namespace, body)

    async def _erase_revisions(self, mine: Doc, session: AsyncClientSession | None) -> int:
        """Delete the revisions of ``mine`` (``{ns, cid}``, or ``{ns}``: all of a
        namespace, stray messages of a copy that stopped short included), documents
        first; returns how many."""
        gone = await self._coll(schema.REVISIONS).delete_many(mine, session=session)
        await self._coll(schema.REVISION_MESSAGES).delete_many(mine, session=session)
        return gone.deleted_count

    async def list_conversation_revisions(
        self,
        namespace: str,
        conversation_id: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[ConversationRevision]:
        query: Doc = {"ns": namespace, "cid": conversation_id}
        if (after := page_after_revision(cursor)) is not None:
            query["rev"] = {"$lt": after}
        with DRIVER_ERRORS("list_conversation_revisions"):
            docs = await (
                self._coll(schema.REVISIONS)
                .find(query, history.REVISION_FIELDS)
                .sort("rev", DESCENDING)
                .limit(limit + 1)
                .to_list()
            )
        return build_page([history.from_revision(d) for d in docs], limit, by_revision)

    async def load_conversation_revision(
        self, namespace: str, conversation_id: str, revision: int
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        mine = {"ns": namespace, "cid": conversation_id}
        with DRIVER_ERRORS("load_conversation_revision"):
            doc = await self._coll(schema.REVISIONS).find_one(
                {**mine, "rev": revision}, history.REVISION_FIELDS
            )
            if doc is None:
                return None
            docs = await (
                self._coll(schema.REVISION_MESSAGES)
                .find({**mine, "rev": revision}, _MESSAGE_FIELDS)
                .sort("seq", ASCENDING)
                .to_list()
            )
        messages = [
            MessageRecord(conversation_id, d["seq"], decode_value(d["message"]), d["created_at"])
            for d in docs
        ]
        return history.from_revision(doc), messages

    async def import_conversation_revision(
        self,
        namespace: str,
        revision: ConversationRevision,
        messages: Sequence[MessageRecord],
    ) -> None:
        cid = revision.conversation_id
        mine = {"ns": namespace, "cid": cid}
        encoded = self._encode_messages([m.message for m in messages], None)
        docs = [
            {
                **mine,
                "rev": revision.revision,
                "seq": m.seq,
                "message": value,
                "bytes": size,
                "created_at": m.created_at,
            }
            for m, (value, size) in zip(messages, encoded, strict=True)
        ]
        row = {
            **mine,
            "rev": revision.revision,
            "replaced_at": revision.replaced_at,
            "actor": revision.actor,
            "message_count": revision.message_count,
            "bytes": sum(size for _, size in encoded),
        }

        async def body(session: AsyncClientSession | None) -> None:
            rev_msgs = self._coll(schema.REVISION_MESSAGES)
            await rev_msgs.delete_many({**mine, "rev": revision.revision}, session=session)
            if docs:
                await rev_msgs.insert_many(docs, ordered=True, session=session)
            await self._coll(schema.REVISIONS).replace_one(
                {**mine, "rev": revision.revision}, row, upsert=True, session=session
            )

        async with self._write_lock(namespace, "\x00conversation", cid):
            await self._atomic("import_conversation_revision", body)

    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        query: Doc = {"ns": namespace}
        if (after := page_after_id(cursor)) is not None:
            query["id"] = {"$gt": after}
        docs = await self._find_page(
            "list_conversations", schema.CONVERSATIONS, query, _CONVERSATION_FIELDS, limit, by="id"
        )
        infos = [
            ConversationInfo(d["id"], d["message_count"], d["created_at"], d["updated_at"])
            for d in docs
        ]
        return build_page(infos, limit, _by_conversation_id)

    # -- tool usage ---------------------------------------------------------------------

    async def record_tool_usage(
        self,
        namespace: str,
        record: ToolUsageRecord,
        *,
        input_json: bytes | None = None,
        output_json: bytes | None = None,
    ) -> ToolUsageRecord:
        limit = self.settings.max_body_bytes
        if input_json is None or output_json is None:
            raws = check_json_items_size("tool usage", [record.input, record.output], limit)
        else:
            raws = [input_json, output_json]
            check_size("tool usage", json_array_size(raws), limit)
        size = len(raws[0]) + len(raws[1])
        encoded = [encode_value(record.input), encode_value(record.output)]
        doc: Doc = {
            "bytes": size,  # input + output as compact JSON, for the bytes quota
            "lbytes": sum(logical_size(v, len(r)) for v, r in zip(encoded, raws, strict=True)),
            "ns": namespace,
            "id": record.id,
            "tool": record.tool_name,
            "ts": record.timestamp,
            "hour": hour_of(record.timestamp),  # analytics buckets
            "input": encoded[0],
            "output": encoded[1],
            "duration_ms": record.duration_ms,
            "success": record.success,
            "cid": record.conversation_id,
        }
        self._check_bson("tool usage", doc, size)
        event = event_doc(
            changes.TOOL_USAGE_RECORDED,
            record_id=record.id,
            tool_name=record.tool_name,
            conversation_id=record.conversation_id,
        )
        await self._insert_once("record_tool_usage", schema.TOOL_USAGE, doc, event)
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
        query: Doc = {"ns": namespace}
        if tool_name is not None:
            query["tool"] = tool_name
        window: Doc = {}
        if start is not None:
            window["$gte"] = start
        if end is not None:
            window["$lt"] = end
        if window:
            query["ts"] = window
        query.update(_after(cursor))
        docs = await self._find_page("query_tool_usage", schema.TOOL_USAGE, query, _NO_ID, limit)
        return build_page([_tool_usage(d) for d in docs], limit, by_time)

    async def get_tool_names(self, namespace: str) -> list[str]:
        with DRIVER_ERRORS("get_tool_names"):
            counts = await self._group_count(schema.TOOL_USAGE, {"ns": namespace}, "tool")
        return sorted(counts)

    # -- feedback -----------------------------------------------------------------------

    async def save_feedback(
        self, namespace: str, record: FeedbackRecord, *, data_json: bytes | None = None
    ) -> FeedbackRecord:
        encoded, size = self._encode_checked("feedback", record.data, data_json)
        doc: Doc = {
            "ns": namespace,
            "id": record.id,
            "agent": record.agent_name,
            "ftype": record.feedback_type,
            "ts": record.timestamp,
            "hour": hour_of(record.timestamp),  # analytics buckets
            "data": encoded,
            "bytes": size,
            "lbytes": logical_size(encoded, size),
        }
        self._check_bson("feedback", doc, size)
        event = event_doc(changes.FEEDBACK_SAVED, record_id=record.id)
        await self._insert_once("save_feedback", schema.FEEDBACK, doc, event)
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
        query: Doc = {"ns": namespace}
        if agent_name is not None:
            query["agent"] = agent_name
        if feedback_type is not None:
            query["ftype"] = feedback_type
        query.update(_after(cursor))
        docs = await self._find_page("query_feedback", schema.FEEDBACK, query, _NO_ID, limit)
        return build_page([_feedback(d) for d in docs], limit, by_time)

    # -- one record by id (replication) -------------------------------------------------

    async def load_tool_usage(self, namespace: str, record_id: str) -> ToolUsageRecord | None:
        with DRIVER_ERRORS("load_tool_usage"):
            doc = await self._coll(schema.TOOL_USAGE).find_one(
                {"ns": namespace, "id": record_id}, _NO_ID
            )
        return _tool_usage(doc) if doc is not None else None

    async def load_feedback(self, namespace: str, record_id: str) -> FeedbackRecord | None:
        with DRIVER_ERRORS("load_feedback"):
            doc = await self._coll(schema.FEEDBACK).find_one(
                {"ns": namespace, "id": record_id}, _NO_ID
            )
        return _feedback(doc) if doc is not None else None

    # -- retention ----------------------------------------------------------------------

    async def set_entity_pinned(
        self, namespace: str, entity_type: str, entity_id: str, pinned: bool
    ) -> EntityRecord | None:
        key = {"ns": namespace, "type": entity_type, "id": entity_id}
        with DRIVER_ERRORS("set_entity_pinned"):
            doc = await self._coll(schema.ENTITIES).find_one_and_update(
                {**key, **_live(time.time())},
                # a new rev: a save that read the entity before re-reads it, keeping the pin
                {"$set": {"pinned": pinned, "rev": ObjectId()}},
                return_document=ReturnDocument.AFTER,
            )
        return _entity(doc) if doc is not None else None

    async def touch_entities(
        self, namespace: str, keys: Sequence[tuple[str, str]], at: float
    ) -> None:
        if not keys:
            return
        with DRIVER_ERRORS("touch_entities"):
            await self._coll(schema.ENTITIES).bulk_write(
                [
                    UpdateOne({"ns": namespace, "type": t, "id": i}, {"$max": {"accessed_at": at}})
                    for t, i in keys
                ],
                ordered=False,
            )

    async def prune(
        self, namespace: str, cutoffs: Cutoffs, now: float, *, dry_run: bool, limit: int
    ) -> PruneReport:
        report = PruneReport(now=now, dry_run=dry_run, limit=limit)
        c = cutoffs
        with DRIVER_ERRORS("prune"):
            if c.entity_saved_before is not None or c.entity_idle_before is not None:
                docs = await (
                    self._coll(schema.ENTITIES)
                    .find(
                        {"ns": namespace, "$and": [_live(now), _prunable_entities(c)]},
                        {
                            "_id": 0,
                            "type": 1,
                            "id": 1,
                            "version": 1,
                            "updated_at": 1,
                            "accessed_at": 1,
                        },
                    )
                    .sort([("type", ASCENDING), ("id", ASCENDING)])
                    .limit(limit + 1)
                    .to_list()
                )
                report.more["entities"] = len(docs) > limit
                for d in docs[:limit]:
                    reason = c.entity_reason(d["updated_at"], d.get("accessed_at"), False)
                    assert reason is not None  # the filter is the same rule
                    report.entities.append(PrunedEntity(d["type"], d["id"], reason, d["version"]))
            if c.conversation_idle_before is not None or c.conversation_max_messages is not None:
                rules: list[Doc] = []
                if c.conversation_idle_before is not None:
                    rules.append({"updated_at": {"$lt": c.conversation_idle_before}})
                if c.conversation_max_messages is not None:
                    rules.append({"message_count": {"$gt": c.conversation_max_messages}})
                convs = await (
                    self._coll(schema.CONVERSATIONS)
                    .find({"ns": namespace, "$or": rules}, {"_id": 0, "id": 1})
                    .sort("id", ASCENDING)
                    .limit(limit + 1)
                    .to_list()
                )
                report.more["conversations"] = len(convs) > limit
                for d in convs[:limit]:
                    fate = await self._conversation_fate(namespace, d["id"], c, None)
                    if fate is not None:
                        report.conversations.append(fate)
            for kind, coll, before, into in (
                ("tool_usage", schema.TOOL_USAGE, c.tool_usage_before, report.tool_usage),
                ("feedback", schema.FEEDBACK, c.feedback_before, report.feedback),
            ):
                if before is None:
                    continue
                docs = await (
                    self._coll(coll)
                    .find({"ns": namespace, "ts": {"$lt": before}}, {"_id": 0, "id": 1, "ts": 1})
                    .sort([("ts", ASCENDING), ("id", ASCENDING)])
                    .limit(limit + 1)
                    .to_list()
                )
                report.more[kind] = len(docs) > limit
                into.extend(PrunedRecord(d["id"], d["ts"]) for d in docs[:limit])
            if c.versions_on:
                due = await self._versions_due(namespace, c, limit)
                report.more["versions"] = len(due) > limit
                report.versions = due[:limit]
        if dry_run:
            return report
        removed = await asyncio.gather(
            *(self._prune_entity(namespace, e, c, now) for e in report.entities)
        )
        report.entities = [e for e in removed if e is not None]
        trimmed = [
            await self._prune_conversation(namespace, conv.id, c) for conv in report.conversations
        ]
        report.conversations = [conv for conv in trimmed if conv is not None]
        report.tool_usage = await self._prune_records(
            namespace, schema.TOOL_USAGE, changes.TOOL_USAGE_PRUNED, report.tool_usage
        )
        report.feedback = await self._prune_records(
            namespace, schema.FEEDBACK, changes.FEEDBACK_PRUNED, report.feedback
        )
        with DRIVER_ERRORS("prune"):
            await self._remove_versions(namespace, report.versions)
        return report

    async def _keys_due(
        self,
        collection: str,
        group: dict[str, str],
        match: Doc,
        more_than: int | None,
        batch: int | None = None,
    ) -> list[tuple[str, ...]]:
        """The keys (``group``: output name -> ``$field``) of ``collection`` that have a
        row matching ``match`` and, with ``more_than``, more than that many; with
        ``batch``, the first that many in key order."""
        pipeline: list[Doc] = [
            {"$match": match},
            {"$group": {"_id": group, "n": {"$sum": 1}}},
        ]
        if more_than is not None:
            pipeline.append({"$match": {"n": {"$gt": more_than}}})
        if batch is not None:
            pipeline += [{"$sort": {f"_id.{name}": 1 for name in group}}, {"$limit": batch}]
        rows = await self._agg(collection, pipeline)
        return [tuple(r["_id"][name] for name in group) for r in rows]

    async def _candidates(
        self,
        collection: str,
        group: dict[str, str],
        rules: list[tuple[Doc, int | None]],
        after: Callable[[tuple[str, ...]], Doc],
        batch: int,
    ) -> AsyncIterator[tuple[str, ...]]:
        """The keys any rule (``_keys_due``'s ``match``, ``more_than``) selects, in key
        order, fetched ``batch`` per rule at a time: a prune reads the groups it needs
        for its ``limit``, not every key of the namespace. Of the merged batches only
        the keys up to the lowest last key of a full batch are sure to be in order."""
        last: tuple[str, ...] | None = None
        while True:
            found: set[tuple[str, ...]] = set()
            bound: tuple[str, ...] | None = None
            for match, more_than in rules:
                resume = after(last) if last is not None else {}
                keys = await self._keys_due(
                    collection, group, {**match, **resume}, more_than, batch
                )
                found.update(keys)
                if len(keys) == batch and (bound is None or keys[-1] < bound):
                    bound = keys[-1]
            for key in sorted(found):
                if bound is not None and key > bound:
                    break
                last = key
                yield key
            if bound is None:
                return

    async def _versions_due(self, namespace: str, c: Cutoffs, limit: int) -> list[PrunedVersion]:
        """What the ``versions`` rules remove, in their order (history rows by (type, id,
        version, deleted), then revisions by (conversation, revision)): up to ``limit + 1``
        items. Each candidate key's rows are read newest first and ranked
        (``Cutoffs.version_reason``); the candidate keys come from aggregations, one per
        rule (``_candidates``)."""
        keep, before = c.versions_keep, c.versions_saved_before
        ns: Doc = {"ns": namespace}
        due: list[PrunedVersion] = []
        rules: list[tuple[Doc, int | None]] = []
        if keep is not None:
            rules.append((ns, keep))
        if before is not None:
            rules.append(({**ns, "saved_at": {"$lt": before}}, None))
        async for t, i in self._candidates(
            schema.ENTITY_VERSIONS,
            {"t": "$type", "i": "$id"},
            rules,
            lambda k: history.after_key((k[0], k[1])),
            limit + 1,
        ):
            key = {**ns, "type": t, "id": i}
            rows = await (
                self._coll(schema.ENTITY_VERSIONS)
                .find(key, {"_id": 0, "version": 1, "deleted": 1, "saved_at": 1})
                .sort(history.NEWEST_FIRST)
                .to_list()
            )
            current = await self._coll(schema.ENTITIES).find_one(key, {"_id": 0, "version": 1})
            if current is not None:  # a row left equal to the current version is not history
                rows = [r for r in rows if r["deleted"] or r["version"] != current["version"]]
            gone = []
            for rank, row in enumerate(rows):
                reason = c.version_reason(rank, row["saved_at"], current is None)
                if reason is not None:
                    gone.append(PrunedVersion(t, i, row["version"], reason, row["deleted"]))
            due.extend(reversed(gone))
            if len(due) > limit:
                return due
        rules = []
        if keep is not None:
            rules.append((ns, keep))
        if before is not None:
            rules.append(({**ns, "replaced_at": {"$lt": before}}, None))
        async for (cid,) in self._candidates(
            schema.REVISIONS,
            {"c": "$cid"},
            rules,
            lambda k: {"cid": {"$gt": k[0]}},
            limit + 1,
        ):
            revisions = await (
                self._coll(schema.REVISIONS)
                .find({**ns, "cid": cid}, {"_id": 0, "rev": 1, "replaced_at": 1})
                .sort("rev", DESCENDING)
                .to_list()
            )
            gone = []
            for rank, doc in enumerate(revisions):
                # rank 0 holds the revision numbering
                reason = c.version_reason(rank, doc["replaced_at"], True)
                if reason is not None:
                    gone.append(PrunedVersion(None, cid, doc["rev"], reason))
            due.extend(reversed(gone))
            if len(due) > limit:
                return due
        return due

    async def _remove_versions(self, namespace: str, versions: list[PrunedVersion]) -> None:
        """Delete the history rows and revisions the rules selected. A history row never
        changes, and what the rules select of a key stays selected as the key gets newer
        versions, so the selection needs no second judgement (no event: history rows
        have none)."""
        rows = [v for v in versions if v.type is not None]
        if rows:
            await self._coll(schema.ENTITY_VERSIONS).bulk_write(
                [
                    DeleteOne(
                        history.row_key(
                            {"ns": namespace, "type": v.type, "id": v.id},
                            v.version,
                            deleted=v.deleted,
                        )
                    )
                    for v in rows
                ],
                ordered=False,
            )
        for v in versions:
            if v.type is None:
                await self._remove_revision(namespace, v.id, v.version)

    async def _remove_revision(self, namespace: str, cid: str, revision: int) -> None:
        mine = {"ns": namespace, "cid": cid, "rev": revision}
        # The revision first: one that is listed always has its messages.
        await self._coll(schema.REVISIONS).delete_one(mine)
        await self._coll(schema.REVISION_MESSAGES).delete_many(mine)

    async def _conversation_fate(
        self, namespace: str, cid: str, c: Cutoffs, session: AsyncClientSession | None
    ) -> PrunedConversation | None:
        """What the rules do to one conversation now: all of it (idle), its oldest messages
        (keep the newest N: those up to the (N+1)-th newest seq, gaps included), or
        nothing."""
        conv = await self._coll(schema.CONVERSATIONS).find_one(
            {"ns": namespace, "id": cid},
            {"_id": 0, "updated_at": 1, "message_count": 1, "last_seq": 1},
            session=session,
        )
        if conv is None:
            return None
        count = conv["message_count"]
        idle = c.conversation_idle_before
        if idle is not None and conv["updated_at"] < idle:
            return PrunedConversation(cid, "idle", conv["last_seq"], count)
        keep = c.conversation_max_messages
        if keep is None or count <= keep:
            return None
        newest_gone = await (
            self._coll(schema.MESSAGES)
            .find({"ns": namespace, "cid": cid}, {"_id": 0, "seq": 1}, session=session)
            .sort("seq", DESCENDING)
            .skip(keep)
            .limit(1)
            .to_list()
        )
        if not newest_gone:
            return None
        return PrunedConversation(cid, "max_messages", newest_gone[0]["seq"], count - keep)

    async def _prune_entity(
        self, namespace: str, e: PrunedEntity, c: Cutoffs, now: float
    ) -> PrunedEntity | None:
        """Delete one selected entity if the rules still select it (same filter), with its
        ``entity.pruned`` event."""
        key = {"ns": namespace, "type": e.type, "id": e.id}

        async def body(
            session: AsyncClientSession | None, claims: Claims
        ) -> Logged[PrunedEntity | None]:
            await claims.claim()
            due = {"$and": [_live(now), _prunable_entities(c)]}
            coll = self._coll(schema.ENTITIES)
            doc = await coll.find_one({**key, **due}, session=session)
            if doc is None:
                return None, None
            # Removed like a delete: the version to history, then (if the rules still
            # select this very version: a read since touches it without a new rev) the
            # entity, then the tombstone.
            history_kept = keeps_history(namespace)
            if history_kept:
                await self._keep_version(key, doc, session)
            gone = await coll.delete_one({**key, "rev": doc["rev"], **due}, session=session)
            if gone.deleted_count == 0:
                return None, None
            if history_kept:
                await self._leave_tombstone(key, doc["version"], changes.RETENTION_ACTOR, session)
            reason = c.entity_reason(doc["updated_at"], doc.get("accessed_at"), False)
            assert reason is not None
            event = event_doc(
                changes.ENTITY_PRUNED,
                entity_type=e.type,
                entity_id=e.id,
                version=doc["version"],
            )
            return PrunedEntity(e.type, e.id, reason, doc["version"]), event

        async with self._write_lock(namespace, e.type, e.id):
            return await self._logged("prune", namespace, body)

    async def _prune_conversation(
        self, namespace: str, cid: str, c: Cutoffs
    ) -> PrunedConversation | None:
        """Remove what the rules select of one conversation, judged again under its write
        lock (in a transaction where the deployment has them), with its event."""
        convs = self._coll(schema.CONVERSATIONS)
        msgs = self._coll(schema.MESSAGES)
        conv_key = {"ns": namespace, "id": cid}

        async def body(
            session: AsyncClientSession | None, claims: Claims
        ) -> Logged[PrunedConversation | None]:
            await claims.claim()
            fate = await self._conversation_fate(namespace, cid, c, session)
            if fate is None:
                return None, None
            mine = {"ns": namespace, "cid": cid}
            if fate.reason == "idle":
                await msgs.delete_many(mine, session=session)
                await convs.delete_one(conv_key, session=session)
                # a whole conversation pruned is erased, as a delete (its revisions too)
                await self._erase_revisions(mine, session)
                kind = changes.CONVERSATION_PRUNED
            else:
                gone = await msgs.delete_many(
                    {**mine, "seq": {"$lte": fate.through_seq}}, session=session
                )
                fate = PrunedConversation(cid, fate.reason, fate.through_seq, gone.deleted_count)

                def count_down(slot: int) -> Doc:
                    return {"$set": {"lp": slot}, "$inc": {"message_count": -gone.deleted_count}}

                await self._conversation_write(
                    convs, claims, conv_key, count_down, session, create=False
                )
                kind = changes.CONVERSATION_TRIMMED
            event = event_doc(
                kind, conversation_id=cid, version=fate.through_seq, count=fate.messages
            )
            return fate, event

        async with self._write_lock(namespace, "\x00conversation", cid):
            return await self._logged("prune", namespace, body)

    async def _prune_records(
        self, namespace: str, collection: str, kind: str, records: list[PrunedRecord]
    ) -> list[PrunedRecord]:
        """Delete selected tool uses or feedback (records never change: what was selected
        still qualifies) with one event holding the count."""
        if not records:
            return []

        async def body(session: AsyncClientSession | None, claims: Claims) -> Logged[int]:
            await claims.claim()
            result = await self._coll(collection).delete_many(
                {"ns": namespace, "id": {"$in": [r.id for r in records]}}, session=session
            )
            n = result.deleted_count
            return n, (event_doc(kind, count=n) if n else None)

        await self._logged("prune", namespace, body)
        return records

    # -- change log ---------------------------------------------------------------------

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        with DRIVER_ERRORS("read_changes"):
            return await self._changes.read(namespace, after=after, limit=limit)

    async def trim_changes(self, namespace: str) -> None:
        with DRIVER_ERRORS("trim_changes"):
            await self._changes.trim(
                namespace,
                max_events=self.settings.changes_max_events,
                retention=self.settings.changes_retention_seconds,
            )

    # -- summary ------------------------------------------------------------------------

    async def summary(self, namespace: str) -> MemorySummary:
        ns = {"ns": namespace}

        async def total(collection: str, field: str | int) -> int:
            # One accumulator per $group: FerretDB v1 computes only the first of several.
            pipeline: list[Doc] = [
                {"$match": ns},
                {"$group": {"_id": None, "n": {"$sum": field}}},
            ]
            rows = await (await self._coll(collection).aggregate(pipeline)).to_list()
            return int(rows[0]["n"]) if rows else 0

        with DRIVER_ERRORS("summary"):
            entities, conversations, messages, tools, feedback = await asyncio.gather(
                self._group_count(schema.ENTITIES, {**ns, **_live(time.time())}, "type"),
                total(schema.CONVERSATIONS, 1),
                total(schema.CONVERSATIONS, "$message_count"),
                self._group_count(schema.TOOL_USAGE, ns, "tool"),
                total(schema.FEEDBACK, 1),
            )
        return MemorySummary(
            namespace=namespace,
            entity_counts=entities,
            conversations=conversations,
            messages=messages,
            tool_usage_counts=tools,
            feedback_count=feedback,
        )

    # -- analytics ----------------------------------------------------------------------
    # Pipelines FerretDB v1 runs too: $match, $sort, $skip, $limit, $group with one $sum
    # (no arithmetic, no $min/$max/$facet). Each document carries ``hour`` (the hour of its
    # creation time, core.analytics.hour_of, written with it), so a bucket is a $group on a
    # field and a window a range on it; extremes are a sort and a limit.

    async def _agg(self, collection: str, pipeline: list[Doc]) -> list[Doc]:
        return list(await (await self._coll(collection).aggregate(pipeline)).to_list())

    async def _group_sum(self, collection: str, match: Doc, key: Any, value: Any) -> list[Doc]:
        return await self._agg(
            collection, [{"$match": match}, {"$group": {"_id": key, "n": {"$sum": value}}}]
        )

    async def _extreme(self, collection: str, match: Doc, field: str, order: int) -> float | None:
        docs = await self._agg(
            collection,
            [
                {"$match": match},
                {"$sort": {field: order}},
                {"$limit": 1},
                {"$project": {"_id": 0, field: 1}},
            ],
        )
        return float(docs[0][field]) if docs else None

    async def _kind_stats(self, collection: str, match: Doc, field: str) -> KindStats:
        count, size, oldest, newest = await asyncio.gather(
            self._group_sum(collection, match, None, 1),
            self._group_sum(collection, match, None, "$bytes"),
            self._extreme(collection, match, field, ASCENDING),
            self._extreme(collection, match, field, DESCENDING),
        )
        return KindStats(
            int(count[0]["n"]) if count else 0, int(size[0]["n"]) if size else 0, oldest, newest
        )

    async def analytics_overview(self, namespace: str) -> AnalyticsOverview:
        ns: Doc = {"ns": namespace}
        with DRIVER_ERRORS("analytics_overview"):
            live = {**ns, **_live(time.time())}
            types = await self._group_count(schema.ENTITIES, live, "type")
            per_type, conversations, messages, tools, tool_usage, feedback = await asyncio.gather(
                asyncio.gather(
                    *(
                        self._kind_stats(schema.ENTITIES, {**live, "type": t}, "created_at")
                        for t in types
                    )
                ),
                self._group_sum(schema.CONVERSATIONS, ns, None, 1),
                self._kind_stats(schema.MESSAGES, ns, "created_at"),
                self._group_count(schema.TOOL_USAGE, ns, "tool"),
                self._kind_stats(schema.TOOL_USAGE, ns, "ts"),
                self._kind_stats(schema.FEEDBACK, ns, "ts"),
            )
        return analytics.overview(
            namespace,
            dict(zip(types, per_type, strict=True)),
            int(conversations[0]["n"]) if conversations else 0,
            messages,
            tools,
            tool_usage,
            feedback,
        )

    @staticmethod
    def _hours(window: BucketWindow) -> Doc:
        return {"$gte": window.first * window.hours, "$lt": (window.last + 1) * window.hours}

    async def analytics_growth(
        self, namespace: str, kind: str, window: BucketWindow
    ) -> GrowthSeries:
        collection = {
            "entities": schema.ENTITIES,
            "messages": schema.MESSAGES,
            "tool_usage": schema.TOOL_USAGE,
            "feedback": schema.FEEDBACK,
        }[kind]
        match: Doc = {"ns": namespace, "hour": self._hours(window)}
        if kind == "entities":
            match.update(_live(time.time()))
        with DRIVER_ERRORS("analytics_growth"):
            rows = await self._group_sum(collection, match, "$hour", 1)
        counts: dict[int, int] = {}
        for row in rows:
            key = int(row["_id"]) // window.hours
            counts[key] = counts.get(key, 0) + int(row["n"])
        return analytics.growth(kind, window, counts)

    async def analytics_tools(
        self, namespace: str, window: BucketWindow, *, tool_name: str | None, limit: int
    ) -> ToolAnalytics:
        match: Doc = {"ns": namespace, "hour": self._hours(window)}
        if tool_name is not None:
            match["tool"] = tool_name
        coll = schema.TOOL_USAGE
        bounds = analytics.HISTOGRAM_BOUNDS_MS
        with DRIVER_ERRORS("analytics_tools"):
            rows = await self._group_sum(
                coll, match, {"t": "$tool", "h": "$hour", "s": "$success"}, 1
            )
            tallies: dict[str, ToolTally] = {}
            for row in rows:
                name, n = row["_id"]["t"], int(row["n"])
                t = tallies.setdefault(name, ToolTally())
                point = t.series.setdefault(int(row["_id"]["h"]) // window.hours, [0, 0])
                t.calls += n
                point[0] += n
                if row["_id"]["s"]:
                    t.successes += n
                    point[1] += n
            names = sorted(tallies)

            async def nth_duration(name: str, rank: int) -> float:
                docs = await self._agg(
                    coll,
                    [
                        {"$match": {**match, "tool": name}},
                        {"$sort": {"duration_ms": 1}},
                        {"$skip": rank - 1},
                        {"$limit": 1},
                        {"$project": {"_id": 0, "duration_ms": 1}},
                    ],
                )
                return float(docs[0]["duration_ms"])

            async def listed(name: str, extra: Doc, order: list[tuple[str, int]]) -> list[Doc]:
                if limit == 0:
                    return []
                cursor = self._coll(coll).find({**match, "tool": name, **extra}, _NO_ID)
                return list(await cursor.sort(order).limit(limit).to_list())

            ranks = [(n, p) for n in names for p in analytics.PERCENTILES]
            durations, at_most, slowest, failures = await asyncio.gather(
                asyncio.gather(
                    *(
                        nth_duration(n, analytics.percentile_rank(p, tallies[n].calls))
                        for n, p in ranks
                    )
                ),
                asyncio.gather(
                    *(
                        self._group_sum(coll, {**match, "duration_ms": {"$lte": b}}, "$tool", 1)
                        for b in bounds
                    )
                ),
                asyncio.gather(
                    *(listed(n, {}, [("duration_ms", -1), ("ts", -1), ("id", -1)]) for n in names)
                ),
                asyncio.gather(
                    *(listed(n, {"success": False}, [("ts", -1), ("id", -1)]) for n in names)
                ),
            )
        for (name, p), value in zip(ranks, durations, strict=True):
            tallies[name].percentiles[p] = value
        for name in names:
            below = [next((int(r["n"]) for r in rows if r["_id"] == name), 0) for rows in at_most]
            cumulative = [*below, tallies[name].calls]
            tallies[name].histogram = [
                cumulative[i] - (cumulative[i - 1] if i else 0) for i in range(len(cumulative))
            ]
        for name, slow, failed in zip(names, slowest, failures, strict=True):
            tallies[name].slowest = [_tool_usage(d) for d in slow]
            tallies[name].recent_failures = [_tool_usage(d) for d in failed]
        return analytics.tool_analytics(window, tallies)

    async def analytics_feedback(self, namespace: str, window: BucketWindow) -> FeedbackAnalytics:
        match: Doc = {"ns": namespace, "hour": self._hours(window)}
        rated: Doc = {**match, "data": {"$type": "object"}, "data.rating": {"$type": "number"}}
        with DRIVER_ERRORS("analytics_feedback"):
            counts, rating_counts, rating_sums = await asyncio.gather(
                self._group_sum(schema.FEEDBACK, match, "$hour", 1),
                self._group_sum(schema.FEEDBACK, rated, "$hour", 1),
                self._group_sum(schema.FEEDBACK, rated, "$hour", "$data.rating"),
            )
        buckets: dict[int, tuple[int, int, float]] = {}
        for rows, part in ((counts, 0), (rating_counts, 1), (rating_sums, 2)):
            for row in rows:
                key = int(row["_id"]) // window.hours
                acc = list(buckets.get(key, (0, 0, 0.0)))
                acc[part] += row["n"]
                buckets[key] = (int(acc[0]), int(acc[1]), float(acc[2]))
        return analytics.feedback_analytics(window, buckets)

    # -- usage (quotas, admin summary) --------------------------------------------------

    async def _sum_bytes(self, collection: str, match: Doc, field: str = "$bytes") -> int:
        pipeline: list[Doc] = [
            {"$match": match},
            {"$group": {"_id": None, "n": {"$sum": field}}},
        ]
        rows = await (await self._coll(collection).aggregate(pipeline)).to_list()
        return int(rows[0]["n"]) if rows else 0

    async def stored_bytes(self, namespace: str) -> int | None:
        # Each document carries its payload's compact JSON size ("bytes"), written with it,
        # so the sum is exact whatever ran concurrently; expired entities do not count.
        ns = {"ns": namespace}
        with DRIVER_ERRORS("stored_bytes"):
            parts = await asyncio.gather(
                self._sum_bytes(schema.ENTITIES, {**ns, **_live(time.time())}),
                self._sum_bytes(schema.MESSAGES, ns),
                self._sum_bytes(schema.TOOL_USAGE, ns),
                self._sum_bytes(schema.FEEDBACK, ns),
            )
        return sum(parts)

    async def logical_bytes(self, namespace: str) -> int | None:
        # "lbytes" is written with "bytes"; a document from before it has only "bytes".
        ns = {"ns": namespace}
        matches = [
            (schema.ENTITIES, {**ns, **_live(time.time())}),
            (schema.MESSAGES, ns),
            (schema.TOOL_USAGE, ns),
            (schema.FEEDBACK, ns),
        ]
        with DRIVER_ERRORS("logical_bytes"):
            parts = await asyncio.gather(
                *(
                    self._sum_bytes(c, {**m, "lbytes": {"$exists": True}}, "$lbytes")
                    for c, m in matches
                ),
                *(self._sum_bytes(c, {**m, "lbytes": {"$exists": False}}) for c, m in matches),
            )
        return sum(parts)

    async def list_namespaces(self) -> list[str] | None:
        # Conversations count even when empty (their metadata document is data), and so
        # does version history (a deleted entity's tombstone). A $group rather than
        # distinct: FerretDB v1's distinct refuses the client's maxTimeMS.
        with DRIVER_ERRORS("list_namespaces"):
            found = await asyncio.gather(
                self._group_count(schema.ENTITIES, _live(time.time()), "ns"),
                self._group_count(schema.CONVERSATIONS, {}, "ns"),
                self._group_count(schema.TOOL_USAGE, {}, "ns"),
                self._group_count(schema.FEEDBACK, {}, "ns"),
                self._group_count(schema.ENTITY_VERSIONS, {}, "ns"),
                self._group_count(schema.REVISIONS, {}, "ns"),
            )
        return sorted({n for counts in found for n in counts})

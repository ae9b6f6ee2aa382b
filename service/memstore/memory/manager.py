"""``DistributedMemoryManager``: the seed's unified memory API.

It validates input (so in-process callers get the same errors as HTTP callers), keeps a
local read cache for entities, invalidates it on every write (locally and, through the
backend's hook, on every other replica), counts operations, and wraps everything in the
project's error types.

One backend connection, cache and metrics set is shared by a manager and every view
returned by ``for_namespace`` (the HTTP service serves many namespaces with one backend).
The backend is connected lazily on first use, as the seed's example expects.

Seed-compatible conveniences (``load_entity``, ``load_conversation_history``,
``load_tool_usage``, ``get_learning_feedback``, ...) come from ``memory.api.MemoryAPI``,
shared with ``MemoryClient``, and return plain JSON-able values like the original; the
operations here (``get_entity``, ``list_entities``, ``query_tool_usage``, ...) return records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Self, TypeVar

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.replicated import ReplicatedMemoryBackend
from memstore.backends.sealed import SealedBackend, delete_data_key, list_data_keys
from memstore.core.analytics import (
    AnalyticsOverview,
    FeedbackAnalytics,
    GrowthSeries,
    ToolAnalytics,
    check_growth_kind,
    check_listed_calls,
    check_window,
)
from memstore.core.batch import check_entity_batch, check_messages_batch
from memstore.core.changes import current_actor_name
from memstore.core.dump import ImportResult
from memstore.core.errors import (
    AlreadyExistsError,
    ChangesPrunedError,
    ConfigurationError,
    ConflictError,
    DataShreddedError,
    MemoryStoreError,
    NamespaceImportingError,
    NotFoundError,
)
from memstore.core.keys import CONVERSATION_KEY_PREFIX, conversation_change_key, entity_cache_key
from memstore.core.payload_codec import Sealer
from memstore.core.records import (
    ChangeEvent,
    ChangePage,
    ConversationInfo,
    ConversationRevision,
    EntityHit,
    EntityRecord,
    EntityRow,
    EntityVersion,
    EntityWrite,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageHit,
    MessageRecord,
    MessageRow,
    MessagesWrite,
    Page,
    SearchPage,
    Snapshot,
    SnapshotRevert,
    ToolUsageHit,
    ToolUsageRecord,
)
from memstore.core.retention import (
    KINDS,
    PruneReport,
    RetentionPolicy,
    check_prune_at,
    check_prune_limit,
)
from memstore.core.search import SearchMode, check_entity_search, check_text_search
from memstore.core.settings import Settings
from memstore.core.validation import (
    check_as_of,
    check_before,
    check_change_filter,
    check_change_position,
    check_conversation_id,
    check_entity_key,
    check_entity_write,
    check_feedback,
    check_limit,
    check_messages,
    check_min_version,
    check_name,
    check_optional_name,
    check_time_range,
    check_tool_usage,
    check_version,
    check_version_number,
)
from memstore.memory import export, history
from memstore.memory.api import MemoryAPI
from memstore.memory.cache import LocalCache
from memstore.memory.feed import ChangeReader, ChangeSignal
from memstore.memory.l2cache import SharedEntityCache, namespace_of
from memstore.memory.retention import ReadRecorder, RetentionPruner
from memstore.memory.search.service import SearchIndexes
from memstore.memory.search.vectors import VECTORS_NAMESPACE, vector_id
from memstore.observability.metrics import PrometheusMetrics
from memstore.observability.tracing import BackendSpanInfo, Tracing

if TYPE_CHECKING:
    from memstore.embeddings.base import Embedder

log = logging.getLogger(__name__)

T = TypeVar("T")
B = TypeVar("B", bound=DistributedMemoryBackend)


def backend_layer(backend: DistributedMemoryBackend, kind: type[B]) -> B | None:
    """The layer of type ``kind`` in the stack the factory built (``SealedBackend`` wraps
    a ``ReplicatedMemoryBackend``, which holds the single backends), or ``None``."""
    layer: DistributedMemoryBackend = backend
    while not isinstance(layer, kind):
        if not isinstance(layer, SealedBackend):
            return None
        layer = layer.inner
    return layer


#: Told the key of each change (``entity_cache_key``, ``conversation_change_key``), or
#: ``None`` for "anything may have changed". Synchronous, must not raise.
ChangeListener = Callable[[str | None], None]


@dataclass(slots=True)
class _OpStats:
    count: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass
class _Shared:
    """State shared by a manager and its namespace views."""

    settings: Settings
    backend: DistributedMemoryBackend | None
    cache: LocalCache[EntityRecord]
    prometheus: PrometheusMetrics | None
    tracing: Tracing | None = None
    span_info: BackendSpanInfo | None = None
    ops: dict[str, _OpStats] = field(default_factory=dict)
    errors_by_code: dict[str, int] = field(default_factory=dict)
    invalidations_received: int = 0
    change_listeners: dict[object, ChangeListener] = field(default_factory=dict)
    # Wakes change-feed readers; a change listener from the first reader on.
    change_signal: ChangeSignal | None = None
    started: bool = False
    start_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Closes the backend if the event loop ends with the manager still open (see start).
    loop_end_guard: asyncio.Task[None] | None = None
    started_at: float = field(default_factory=time.time)
    # The search indexes of the namespaces searched (memory/search), built on first use.
    search: SearchIndexes | None = None
    # Namespaces an import has marked (memory/export.py), as last read, and until when
    # (time.monotonic) that reading is trusted.
    importing: frozenset[str] = frozenset()
    importing_fresh_until: float = 0.0
    # The reading of the markers under way, if any: the requests that find them stale
    # while it runs share its outcome (its error too) instead of each listing them.
    importing_reading: asyncio.Future[None] | None = None
    # The shared second-level cache (Memcached), when MEMSTORE_L2_CACHE_URL names one.
    l2: SharedEntityCache | None = None
    # Entity loads in progress, by cache key: concurrent misses of a key share one load.
    flights: dict[str, asyncio.Future[EntityRecord | None]] = field(default_factory=dict)
    # Retention (memory/retention.py): touches of entity reads, background pruning.
    reads: ReadRecorder | None = None
    pruner: RetentionPruner | None = None


class DistributedMemoryManager(MemoryAPI):
    """Unified, namespaced memory API over any backend (the seed-compatible conveniences
    come from ``MemoryAPI``)."""

    def __init__(
        self,
        memory_type: str | None = None,
        config: dict[str, Any] | None = None,
        namespace: str | None = None,
        *,
        settings: Settings | None = None,
        backend: DistributedMemoryBackend | None = None,
        prometheus: PrometheusMetrics | None = None,
        tracing: Tracing | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """``embedder``: the one semantic search uses, instead of the one
        ``MEMSTORE_EMBEDDER`` names (an application may bring its own model)."""
        if settings is None:
            settings = Settings.from_seed_config(memory_type, config, namespace)
        self.namespace = check_name("namespace", namespace or settings.memory_namespace)
        cache: LocalCache[EntityRecord] = LocalCache(
            ttl_seconds=settings.cache_ttl_seconds, max_entries=settings.cache_max_entries
        )
        self._shared = shared = _Shared(
            settings=settings,
            # Built on first use, so constructing a manager never imports a driver.
            backend=backend,
            cache=cache,
            prometheus=prometheus,
            tracing=tracing,
            span_info=None if tracing is None else tracing.backend_info(settings),
        )
        shared.search = (
            SearchIndexes(settings, lambda: self.backend)
            if embedder is None
            else SearchIndexes(settings, lambda: self.backend, embedder)
        )
        if settings.l2_cache_url is not None:
            shared.l2 = SharedEntityCache(settings)
        if not settings.retention.empty:
            shared.reads = ReadRecorder(settings.retention, lambda: self.backend)
            if settings.retention_enforce:
                shared.pruner = RetentionPruner(
                    self.list_namespaces,
                    self.prune_namespace,
                    settings.retention_interval_seconds,
                )
        if prometheus is not None:
            prometheus.watch_cache(
                lambda: cache.stats, lambda: len(cache), lambda: shared.invalidations_received
            )
            if settings.secondary_backend is not None:
                prometheus.watch_replication(self.replication_status)
            l2 = shared.l2
            if l2 is not None:
                prometheus.watch_l2_cache(lambda: l2.stats)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._shared.settings

    @property
    def backend(self) -> DistributedMemoryBackend:
        shared = self._shared
        if shared.backend is None:
            shared.backend = DistributedMemoryFactory.create_memory_backend(shared.settings)
        return shared.backend

    @property
    def memory_type(self) -> str:
        return self._shared.settings.memory_type

    def for_namespace(self, namespace: str) -> DistributedMemoryManager:
        """A view on another namespace sharing this manager's backend, cache and metrics."""
        return self.for_checked_namespace(check_name("namespace", namespace))

    def for_checked_namespace(self, namespace: str) -> DistributedMemoryManager:
        """``for_namespace`` for a name the caller has already validated (the HTTP routes)."""
        view = object.__new__(DistributedMemoryManager)
        view.namespace = namespace
        view._shared = self._shared
        return view

    async def start(self) -> None:
        shared = self._shared
        if shared.started:
            return
        async with shared.start_lock:
            if shared.started:
                return
            backend = self.backend
            await backend.connect()
            await backend.subscribe_invalidations(self._on_invalidation)
            shared.started = True
            if shared.search is not None:
                shared.search.start()
            if shared.reads is not None:
                shared.reads.start()
            if shared.pruner is not None:
                shared.pruner.start()
            # A backend holds connections (and may run threads) that nobody would close
            # if the manager is left open when ``asyncio.run`` returns. ``asyncio.run``
            # (and ``asyncio.Runner``) cancel the tasks still pending and let them finish:
            # this one then closes the backend, with a ResourceWarning.
            shared.loop_end_guard = asyncio.get_running_loop().create_task(
                self._close_when_the_loop_ends(), name="memstore-close-at-loop-end"
            )
            extra: dict[str, Any] = {"backend": backend.describe()}
            if shared.l2 is not None:
                extra["l2_cache"] = shared.l2.describe()
            log.info("memory backend connected", extra=extra)

    async def _close_when_the_loop_ends(self) -> None:
        shared = self._shared
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # close() clears the guard before it cancels it; a guard left over from an
            # earlier session (closed, then started again) must not close the new one.
            if shared.started and shared.loop_end_guard is asyncio.current_task():
                await self.close()
                message = (
                    "DistributedMemoryManager was not closed; closing it as its event loop "
                    "ends (use `async with DistributedMemoryManager(...) as memory:` or "
                    "`await memory.close()`)"
                )
                # The warning is hidden by Python's default filters; the log line is not.
                log.warning(message)
                warnings.warn(message, ResourceWarning, stacklevel=1)
            raise

    async def close(self) -> None:
        shared = self._shared
        async with shared.start_lock:
            if shared.started and shared.backend is not None:
                shared.started = False
                guard, shared.loop_end_guard = shared.loop_end_guard, None
                if guard is not None and guard is not asyncio.current_task():
                    guard.cancel()
                if shared.pruner is not None:
                    await shared.pruner.stop()
                if shared.reads is not None:
                    await shared.reads.stop()
                if shared.search is not None:
                    # Its background task writes vectors: stopped before the backend closes.
                    await shared.search.close()
                await shared.backend.close()
                if shared.l2 is not None:
                    await shared.l2.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        """True when the backend answers. Never raises."""
        try:
            await self.start()
        except MemoryStoreError:
            ok = False
        else:
            ok = await self.backend.ping()
        if self._shared.prometheus is not None:
            self._shared.prometheus.set_backend_up(self.memory_type, ok)
        return ok

    def replication_status(self) -> dict[str, Any] | None:
        """With a secondary backend: which one serves, the replication lag, whether the
        store is degraded (``ReplicatedMemoryBackend.status``); else ``None``."""
        backend = self._shared.backend
        replicated = None if backend is None else backend_layer(backend, ReplicatedMemoryBackend)
        return None if replicated is None else replicated.status()

    # -- plumbing -----------------------------------------------------------------------

    async def _run(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        shared = self._shared
        if not shared.started:
            await self.start()
        stats = shared.ops.get(operation)
        if stats is None:
            stats = shared.ops[operation] = _OpStats()
        # One client span per backend operation, whatever the backend (see tracing.py).
        tracing = shared.tracing
        span: Any = None
        token: Any = None
        if tracing is not None and shared.span_info is not None and not tracing.in_unsampled():
            info = shared.span_info
            span = tracing.child_span(
                f"{operation} {info.name_suffix}",
                tracing.CLIENT,
                {
                    **info.attributes,
                    "db.operation.name": operation,
                    "memstore.namespace": self.namespace,
                },
            )
            if span is not None:
                token = tracing.attach(tracing.set_span_in_context(span))
        began = time.perf_counter()
        try:
            if self.namespace[0] != "_":  # reserved namespaces are never imported
                await self._refuse_while_importing()
            return await call()
        except MemoryStoreError as exc:
            stats.errors += 1
            shared.errors_by_code[exc.code] = shared.errors_by_code.get(exc.code, 0) + 1
            # A 4xx (stale version, bad input, not found, quota) is the caller's mistake,
            # answered correctly: only 5xx outcomes are failures of the backend.
            if shared.prometheus is not None and exc.http_status >= 500:
                shared.prometheus.count_backend_error(self.memory_type, operation, exc.code)
            if span is not None and tracing is not None:
                tracing.record_error(span, exc, exc.code)
            raise
        except Exception as exc:
            # Not one of ours: the server answers it with 500 internal_error.
            if shared.prometheus is not None:
                shared.prometheus.count_backend_error(
                    self.memory_type, operation, MemoryStoreError.code
                )
            if span is not None and tracing is not None:
                tracing.record_error(span, exc, type(exc).__qualname__)
            raise
        finally:
            elapsed = time.perf_counter() - began
            stats.count += 1
            stats.seconds += elapsed
            if shared.prometheus is not None:
                shared.prometheus.observe_backend(self.memory_type, operation, elapsed)
            if span is not None and tracing is not None:
                tracing.detach(token)
                span.end()

    async def _refuse_while_importing(self) -> None:
        """Raise ``NamespaceImportingError`` while an import into this namespace has not
        finished (``memory/export.py``), except in the import's own task. The markers of
        every namespace are read at most every ``MARKER_REFRESH_SECONDS``: one listing
        per replica, whatever the number of namespaces."""
        shared = self._shared
        if time.monotonic() >= shared.importing_fresh_until:
            await self._refresh_import_markers()
        if self.namespace in shared.importing and export.IMPORTING.get() != self.namespace:
            raise NamespaceImportingError(
                f"namespace {self.namespace} is being imported; it is readable again when"
                " the import finishes (an interrupted import is finished by running it again)",
                namespace=self.namespace,
            )

    async def _refresh_import_markers(self, *, begun_after_now: bool = False) -> None:
        """Read the import markers, or join the reading under way (one at a time, so an
        older reading never overwrites a newer one). ``begun_after_now``: a reading under
        way may have begun before what the caller must see (its own import's end): wait
        for it, then join one that began after."""
        shared = self._shared
        reading = shared.importing_reading
        if reading is not None and begun_after_now:
            await asyncio.wait([reading])  # its done-callback has cleared it by now
            reading = shared.importing_reading
        if reading is None:
            reading = asyncio.ensure_future(self._read_import_markers())
            shared.importing_reading = reading
            reading.add_done_callback(self._import_reading_done)
        await asyncio.shield(reading)

    def _import_reading_done(self, reading: asyncio.Future[None]) -> None:
        shared = self._shared
        if shared.importing_reading is reading:
            shared.importing_reading = None
        if not reading.cancelled():
            reading.exception()  # retrieved: its callers may all have been cancelled

    async def _read_import_markers(self) -> None:
        shared = self._shared
        began = time.monotonic()
        names: set[str] = set()
        cursor: str | None = None
        while True:
            page = await self.backend.list_entities(
                export.IMPORTS_NAMESPACE, export.MARKER_TYPE, limit=500, cursor=cursor
            )
            names.update(r.id for r in page.items)
            if (cursor := page.next_cursor) is None:
                break
        if names != shared.importing:
            # an import began or ended: no entity cached before it may be served after it
            shared.cache.clear()
            shared.importing = frozenset(names)
        shared.importing_fresh_until = began + export.MARKER_REFRESH_SECONDS

    def add_change_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Tell ``listener`` of every change this process learns of, in every namespace,
        and return the call that stops it.

        * entity saves and deletes made through this process (any view) and, through the
          backend's invalidation bus, through every other replica: the entity's
          ``entity_cache_key``;
        * conversation appends, replacements, pops and deletes made through this process
          and, where the backend's write scripts announce them (Redis), through every
          other replica: ``conversation_change_key``;
        * ``None`` when the bus was lost and came back: anything may have changed.

        Listeners are called synchronously after the write (also a failed one: it may
        have landed), must not block and must not raise (a raising one is logged)."""
        token = object()
        listeners = self._shared.change_listeners
        listeners[token] = listener

        def remove() -> None:
            listeners.pop(token, None)

        return remove

    def _changed(self, key: str | None) -> None:
        for listener in list(self._shared.change_listeners.values()):
            try:
                listener(key)
            except Exception:
                log.exception("change listener failed")

    async def _on_invalidation(self, key: str | None) -> None:
        shared = self._shared
        shared.invalidations_received += 1
        if key is None:
            shared.cache.clear()
            shared.flights.clear()
        elif not key.startswith(CONVERSATION_KEY_PREFIX):
            if shared.l2 is not None:
                # The bus may bring another replica's message before that replica has
                # bumped the shared cache: bumping it here first keeps a reload started
                # below from finding the old value there and caching it locally.
                await shared.l2.invalidate(namespace_of(key), key)
            # The cache holds entities only: a conversation's change (one per append on
            # another replica) must not bump the generation and drop in-flight loads.
            shared.cache.invalidate(key)
            shared.flights.pop(key, None)
        if shared.change_listeners:
            self._changed(key)

    async def _invalidate(self, key: str) -> None:
        shared = self._shared
        shared.cache.invalidate(key)
        # A reader arriving from now on must not join a load that began before the write.
        shared.flights.pop(key, None)
        if shared.change_listeners:
            self._changed(key)
        if shared.l2 is not None:
            # Before the write is acknowledged (and before other replicas are told).
            await shared.l2.invalidate(self.namespace, key)
        try:
            await self.backend.publish_invalidation(key)
        except MemoryStoreError:
            # The write itself succeeded; other replicas fall back to the cache TTL.
            log.warning("could not publish a cache invalidation; relying on cache TTL")

    async def _invalidate_shared_namespace(self) -> None:
        l2 = self._shared.l2
        if l2 is not None:
            await l2.invalidate_namespace(self.namespace)

    def _walk_page_size(self) -> int:
        # In process, a walk over every page takes the biggest pages allowed.
        return self._shared.settings.max_page_size

    def _limit(self, limit: int | None) -> int:
        s = self._shared.settings
        return check_limit(limit, s.max_page_size, default=s.default_page_size)

    # The argument checks are memstore.core.validation's check_<operation>, which the
    # client runs too: they return each payload's compact JSON, passed on to the backend
    # so that a payload is serialised once.

    # -- entities -----------------------------------------------------------------------

    async def save_entity(
        self,
        entity_type: str,
        entity_id: str,
        data: JSONObject,
        *,
        ttl: float | None = None,
        expected_version: int | None = None,
    ) -> EntityRecord:
        """Create or replace an entity. ``expected_version``: 0 = create only, n = only if
        the stored version is n (else ``ConflictError``). ``ttl`` in seconds."""
        data_json, ttl, expected_version = check_entity_write(
            entity_type,
            entity_id,
            data,
            ttl,
            expected_version,
            self._shared.settings.max_body_bytes,
        )
        key = entity_cache_key(self.namespace, entity_type, entity_id)
        try:
            return await self._run(
                "save_entity",
                lambda: self.backend.save_entity(
                    self.namespace,
                    entity_type,
                    entity_id,
                    data,
                    expected_version=expected_version,
                    ttl=ttl,
                    data_json=data_json,
                ),
            )
        finally:
            # Also on failure: a timed-out write may still have landed.
            await self._invalidate(key)

    async def save_entities(self, items: Sequence[EntityWrite]) -> list[EntityRecord]:
        """Save several entities of the namespace in one call (docs/architecture.md,
        "Batch writes"): every item is checked before anything is written (an error names
        the item), then each gets what ``save_entity`` gives; records in item order. All or
        nothing on the embedded backend; elsewhere each item is atomic and a
        ``ConflictError`` lists the items written anyway (``written``)."""
        checked = check_entity_batch(items, self._shared.settings.max_body_bytes)
        try:
            return await self._run(
                "save_entities", lambda: self.backend.save_entities(self.namespace, checked)
            )
        finally:
            # Also on failure: a timed-out write may still have landed.
            for item in checked:
                await self._invalidate(
                    entity_cache_key(self.namespace, item.entity_type, item.entity_id)
                )

    async def get_entity(
        self,
        entity_type: str,
        entity_id: str,
        *,
        min_version: int | None = None,
        use_cache: bool = True,
    ) -> EntityRecord | None:
        """The entity with its version and timestamps, or ``None``. ``min_version``: a
        cached copy older than this is not served (the backend is read and the result
        cached); ``use_cache=False`` reads the backend whatever the cache holds."""
        check_entity_key(entity_type, entity_id)
        min_version = check_min_version(min_version)
        if self.namespace[0] != "_":
            # Before any cache (this one, the shared L2): a copy cached before an import
            # must not answer during it. A set lookup; the markers are re-read once a second.
            if not self._shared.started:
                await self.start()
            await self._refuse_while_importing()
        cache = self._shared.cache
        key = entity_cache_key(self.namespace, entity_type, entity_id)
        if not use_cache:
            cache.skip()
            hit = None
        elif min_version is None:
            hit = cache.get(key)
        else:
            # The backends are linearizable per key, so only this cache can hold a state
            # older than one the caller has seen (on another replica, or before the
            # invalidation message of another replica's write arrived).
            hit = cache.get(key, lambda cached: cached.version >= min_version)
        tracing = self._shared.tracing
        if tracing is not None:
            # An attribute of the request's span rather than a span of its own: a lookup of
            # about a µs is not worth an SDK span (~40 µs with its export, make bench).
            tracing.set_current_attribute("memstore.cache.hit", hit is not None)
        reads = self._shared.reads
        if hit is not None:
            if hit.expires_at is None or hit.expires_at > time.time():
                if reads is not None:
                    reads.read(self.namespace, entity_type, entity_id, time.time())
                return hit
            cache.invalidate(key)
        generation = cache.begin_load()
        record = await self._load_entity(key, entity_type, entity_id, min_version, use_cache)
        if record is not None:
            expires_in = None if record.expires_at is None else record.expires_at - time.time()
            cache.store(key, record, generation, expires_in=expires_in)
            if reads is not None:
                reads.read(self.namespace, entity_type, entity_id, time.time())
        elif min_version is not None or not use_cache:
            # Gone from the backend, and the caller knew a state newer than what the cache
            # may hold: a copy left there would serve the deleted entity to other readers.
            cache.invalidate(key)
        return record

    async def _load_entity(
        self,
        key: str,
        entity_type: str,
        entity_id: str,
        min_version: int | None,
        use_cache: bool,
    ) -> EntityRecord | None:
        """The entity past the local cache: from the shared cache when there is one, else
        the backend; concurrent misses of one key share one load."""
        shared = self._shared
        namespace = self.namespace

        def from_backend() -> Awaitable[EntityRecord | None]:
            return self._run(
                "load_entity", lambda: self.backend.load_entity(namespace, entity_type, entity_id)
            )

        if not use_cache:
            return await from_backend()
        l2 = shared.l2
        load = from_backend
        if l2 is not None:
            accept = None if min_version is None else lambda r: r.version >= min_version
            # With encryption at rest, Memcached holds entities encrypted, as the backend.
            sealed = backend_layer(self.backend, SealedBackend)
            sealer = sealed if sealed is not None and sealed.encrypts else None

            def load() -> Awaitable[EntityRecord | None]:
                return l2.read(namespace, key, from_backend, accept, sealer)

        if not shared.cache.enabled:
            # No local cache: the operator asked for reads that see every acknowledged
            # write, and a load that began before one may return the state before it.
            return await load()
        return await self._single_flight(key, load, min_version)

    async def _single_flight(
        self,
        key: str,
        load: Callable[[], Awaitable[EntityRecord | None]],
        min_version: int | None,
    ) -> EntityRecord | None:
        """``load()``, shared with the readers of ``key`` that arrive while it runs. A write
        through this process removes the flight (later readers start their own); a reader
        that knows a newer version than the shared result loads on its own. Joining a
        load of a few ms is within what the local cache already serves (up to its TTL)."""
        flights = self._shared.flights
        flight = flights.get(key)
        if flight is not None:
            try:
                record = await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not flight.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The leader was cancelled, not this reader: load on its own.
            else:
                if min_version is None or (record is not None and record.version >= min_version):
                    return record
            return await load()
        flight = asyncio.get_running_loop().create_future()
        flights[key] = flight
        try:
            record = await load()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                flight.cancel()
            else:
                flight.set_exception(exc)
                flight.exception()  # retrieved: no "never retrieved" report without joiners
            raise
        finally:
            if flights.get(key) is flight:
                del flights[key]
        flight.set_result(record)
        return record

    async def delete_entity(
        self, entity_type: str, entity_id: str, *, expected_version: int | None = None
    ) -> bool:
        check_entity_key(entity_type, entity_id)
        expected_version = check_version(expected_version)
        key = entity_cache_key(self.namespace, entity_type, entity_id)
        try:
            deleted = await self._run(
                "delete_entity",
                lambda: self.backend.delete_entity(
                    self.namespace, entity_type, entity_id, expected_version=expected_version
                ),
            )
        finally:
            await self._invalidate(key)
        # Also when it was not there (expired): its vector may have outlived it.
        await self._delete_vector("entity", (entity_type, entity_id))
        return deleted

    async def list_entities(
        self, entity_type: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[EntityRecord]:
        check_name("entity_type", entity_type)
        n = self._limit(limit)
        return await self._run(
            "list_entities",
            lambda: self.backend.list_entities(self.namespace, entity_type, limit=n, cursor=cursor),
        )

    async def list_entity_rows(
        self, entity_type: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[EntityRow]:
        """``list_entities`` with each entity's data unparsed, as the backend holds it:
        what the HTTP API answers with (``EntityRow.to_dict``)."""
        check_name("entity_type", entity_type)
        n = self._limit(limit)
        return await self._run(
            "list_entities",
            lambda: self.backend.list_entity_rows(
                self.namespace, entity_type, limit=n, cursor=cursor
            ),
        )

    async def get_entity_types(self) -> list[str]:
        return await self._run(
            "get_entity_types", lambda: self.backend.get_entity_types(self.namespace)
        )

    # -- search (recall) --------------------------------------------------------------

    def _search_limits(self) -> dict[str, Any]:
        s = self._shared.settings
        search = self._shared.search
        assert search is not None
        return {
            "max_limit": s.max_page_size,
            "default_limit": s.default_page_size,
            "has_embedder": lambda: search.embedder is not None,
        }

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
        """Entities matching ``filter`` (of ``types``), ranked against ``query``
        (``memstore.core.search``); reads its own writes (memory/search/index.py)."""
        search = check_entity_search(query, types, filter, mode, limit, **self._search_limits())
        indexes = self._shared.search
        assert indexes is not None
        return await self._run(
            "search_entities", lambda: indexes.search_entities(self.namespace, search, cursor)
        )

    async def search_messages(
        self,
        query: str,
        *,
        conversation_id: str | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[MessageHit]:
        search = check_text_search(
            query, "conversation_id", conversation_id, mode, limit, **self._search_limits()
        )
        indexes = self._shared.search
        assert indexes is not None
        return await self._run(
            "search_messages", lambda: indexes.search_messages(self.namespace, search, cursor)
        )

    async def search_tool_usage(
        self,
        query: str,
        *,
        tool_name: str | None = None,
        mode: SearchMode = "auto",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SearchPage[ToolUsageHit]:
        search = check_text_search(
            query, "tool_name", tool_name, mode, limit, **self._search_limits()
        )
        indexes = self._shared.search
        assert indexes is not None
        return await self._run(
            "search_tool_usage", lambda: indexes.search_tool_usage(self.namespace, search, cursor)
        )

    # -- conversations ------------------------------------------------------------------

    def _check_messages(
        self, messages: object, *, allow_empty: bool
    ) -> tuple[list[JSONObject], list[bytes]]:
        s = self._shared.settings
        return check_messages(
            messages,
            max_count=s.max_messages_per_request,
            max_bytes=s.max_body_bytes,
            allow_empty=allow_empty,
        )

    async def append_messages(
        self, messages: list[JSONObject], conversation_id: str | None = None
    ) -> list[MessageRecord]:
        """Append messages atomically, O(1) each, to a conversation (default: ``default``)."""
        cid = check_conversation_id(conversation_id)
        msgs, raws = self._check_messages(messages, allow_empty=False)
        try:
            return await self._run(
                "append_messages",
                lambda: self.backend.append_messages(self.namespace, cid, msgs, messages_json=raws),
            )
        finally:
            self._conversation_changed(cid)

    async def append_messages_batch(
        self, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        """Append to several conversations of the namespace in one call: every item is
        checked first (an error names the item); each conversation's messages are appended
        as ``append_messages`` does; results in item order. All or nothing on the
        embedded backend (docs/architecture.md, "Batch writes")."""
        s = self._shared.settings
        checked = check_messages_batch(
            items, max_count=s.max_messages_per_request, max_bytes=s.max_body_bytes
        )
        try:
            return await self._run(
                "append_messages_batch",
                lambda: self.backend.append_messages_batch(self.namespace, checked),
            )
        finally:
            for item in checked:
                self._conversation_changed(item.conversation_id)

    async def load_messages(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        """Messages in order; ``limit`` = only the last N (before ``before_seq``)."""
        cid, n, before = self._message_page(conversation_id, limit, before_seq)
        return await self._run(
            "load_messages",
            lambda: self.backend.load_messages(self.namespace, cid, limit=n, before_seq=before),
        )

    async def load_message_rows(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRow]:
        """``load_messages`` with each message's JSON unparsed, as the backend holds it:
        what the HTTP API answers with (``MessageRow.to_dict``)."""
        cid, n, before = self._message_page(conversation_id, limit, before_seq)
        return await self._run(
            "load_messages",
            lambda: self.backend.load_message_rows(self.namespace, cid, limit=n, before_seq=before),
        )

    def _message_page(
        self, conversation_id: str | None, limit: int | None, before_seq: int | None
    ) -> tuple[str, int | None, int | None]:
        """The checked arguments of a message page: conversation, limit, ``before_seq``."""
        cid = check_conversation_id(conversation_id)
        n = None if limit is None else self._limit(limit)
        return cid, n, check_before(before_seq)

    async def save_conversation_history(
        self, messages: list[JSONObject], conversation_id: str | None = None
    ) -> list[MessageRecord]:
        """Replace the whole history (seed API). Replacing it with no messages is a
        replace like any other: the replaced messages are kept as a revision (so a
        mistaken "replace with nothing" can be restored) and the conversation stays, with
        no messages, as every backend's ``replace_conversation`` keeps it; only
        ``delete_conversation`` erases a conversation and its revisions."""
        cid = check_conversation_id(conversation_id)
        msgs, raws = self._check_messages(messages, allow_empty=True)
        try:
            return await self._run(
                "replace_conversation",
                lambda: self.backend.replace_conversation(
                    self.namespace, cid, msgs, messages_json=raws
                ),
            )
        finally:
            self._conversation_changed(cid)

    async def pop_message(self, conversation_id: str | None = None) -> MessageRecord | None:
        """Remove and return the last message (``None`` when there is none), atomically."""
        cid = check_conversation_id(conversation_id)
        try:
            popped = await self._run(
                "pop_message", lambda: self.backend.pop_message(self.namespace, cid)
            )
        finally:
            self._conversation_changed(cid)
        if popped is not None:
            await self._delete_vector("message", (popped.conversation_id, popped.seq))
        return popped

    async def delete_conversation(self, conversation_id: str | None = None) -> bool:
        cid = check_conversation_id(conversation_id)
        try:
            return await self._run(
                "delete_conversation",
                lambda: self.backend.delete_conversation(self.namespace, cid),
            )
        finally:
            self._conversation_changed(cid)

    async def _delete_vector(self, kind: str, key: tuple[Any, ...]) -> None:
        """Delete the stored vector of an item just deleted (``memory/search/vectors.py``),
        so that its vector, and the vector of its text, do not stay in the backend until a
        search index of the namespace notices the delete. The item is gone either way: a
        failure here is logged, not raised, and an index that holds the vector deletes it
        when it catches up."""
        try:
            await self._run(
                "delete_vector",
                lambda: self.backend.delete_entity(
                    VECTORS_NAMESPACE, self.namespace, vector_id(kind, key)
                ),
            )
        except MemoryStoreError as exc:
            log.warning("could not delete the search vector of a deleted %s: %s", kind, exc)

    def _conversation_changed(self, cid: str) -> None:
        if self._shared.change_listeners:
            self._changed(conversation_change_key(self.namespace, cid))

    async def list_conversations(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        n = self._limit(limit)
        return await self._run(
            "list_conversations",
            lambda: self.backend.list_conversations(self.namespace, limit=n, cursor=cursor),
        )

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
        duration_ms, timestamp, input_json, output_json = check_tool_usage(
            tool_name,
            args,
            result,
            duration_ms=duration_ms,
            conversation_id=conversation_id,
            timestamp=timestamp,
            usage_id=usage_id,
            max_bytes=self._shared.settings.max_body_bytes,
        )
        record = ToolUsageRecord(
            id=usage_id or uuid.uuid4().hex,
            tool_name=tool_name,
            input=args,
            output=result,
            duration_ms=duration_ms,
            success=bool(success),
            timestamp=timestamp if timestamp is not None else time.time(),
            conversation_id=conversation_id,
        )
        return await self._run(
            "record_tool_usage",
            lambda: self.backend.record_tool_usage(
                self.namespace, record, input_json=input_json, output_json=output_json
            ),
        )

    async def query_tool_usage(
        self,
        tool_name: str | None = None,
        *,
        start: float | None = None,
        end: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ToolUsageRecord]:
        check_optional_name("tool_name", tool_name)
        start, end = check_time_range(start, end)
        n = self._limit(limit)
        return await self._run(
            "query_tool_usage",
            lambda: self.backend.query_tool_usage(
                self.namespace, tool_name=tool_name, start=start, end=end, limit=n, cursor=cursor
            ),
        )

    async def get_tool_names(self) -> list[str]:
        return await self._run(
            "get_tool_names", lambda: self.backend.get_tool_names(self.namespace)
        )

    # -- learning feedback (seed API) ------------------------------------------------------

    async def save_learning_feedback(
        self, agent_name: str, feedback_type: str, data: Any
    ) -> FeedbackRecord:
        data_json = check_feedback(
            agent_name, feedback_type, data, self._shared.settings.max_body_bytes
        )
        record = FeedbackRecord(
            id=uuid.uuid4().hex,
            agent_name=agent_name,
            feedback_type=feedback_type,
            data=data,
            timestamp=time.time(),
        )
        return await self._run(
            "save_feedback",
            lambda: self.backend.save_feedback(self.namespace, record, data_json=data_json),
        )

    async def query_learning_feedback(
        self,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        check_optional_name("agent_name", agent_name)
        check_optional_name("feedback_type", feedback_type)
        n = self._limit(limit)
        return await self._run(
            "query_feedback",
            lambda: self.backend.query_feedback(
                self.namespace,
                agent_name=agent_name,
                feedback_type=feedback_type,
                limit=n,
                cursor=cursor,
            ),
        )

    # -- change log -----------------------------------------------------------------------

    async def read_changes(self, *, after: int = 0, limit: int | None = None) -> ChangePage:
        """Events of this namespace with ``position > after``, oldest first (at most
        ``limit``); ``after=0``: from the oldest event retention kept. Raises
        ``ChangesPrunedError`` when retention already removed events right after a
        position ``after > 0`` the caller saw: it would otherwise miss them unknowingly."""
        after = check_change_position(after)
        n = self._limit(limit)
        page = await self._run(
            "read_changes",
            lambda: self.backend.read_changes(self.namespace, after=after, limit=n),
        )
        if 0 < after < page.first_position - 1:
            raise ChangesPrunedError(
                f"changes after position {after} were removed by retention; the oldest"
                f" retained position is {page.first_position}",
                after=after,
                first_position=page.first_position,
            )
        return page

    async def trim_changes(self) -> None:
        """Apply the change log's retention settings to this namespace now."""
        await self._run("trim_changes", lambda: self.backend.trim_changes(self.namespace))

    def change_reader(
        self,
        *,
        after: int = 0,
        kinds: str | Iterable[str] | None = None,
        entity_type: str | None = None,
        conversation_id: str | None = None,
        page_size: int | None = None,
        kinds_field: str = "kinds",
        read_timeout: float | None = None,
    ) -> ChangeReader:
        """A reader of this namespace's change log from ``after`` (``memory/feed.py``),
        woken by the changes this process hears of; ``close()`` it when done. The HTTP
        feed's building block; ``watch`` is the simple form. ``read_timeout`` bounds each
        read of the log (``RequestTimeoutError``)."""
        after = check_change_position(after)
        wanted = check_change_filter(kinds, entity_type, conversation_id, kinds_field=kinds_field)
        size = self._limit(page_size)
        shared = self._shared
        if shared.change_signal is None:
            shared.change_signal = ChangeSignal()
            self.add_change_listener(shared.change_signal.changed)
        wake = asyncio.Event()
        return ChangeReader(
            lambda position, limit: self.read_changes(after=position, limit=limit),
            after=after,
            wanted=wanted,
            page_size=size,
            poll_seconds=shared.settings.changes_poll_seconds,
            wake=wake,
            unregister=shared.change_signal.register(self.namespace, wake),
            read_timeout=read_timeout,
        )

    async def watch(
        self,
        *,
        after: int = 0,
        kinds: str | Iterable[str] | None = None,
        entity_type: str | None = None,
        conversation_id: str | None = None,
    ) -> AsyncGenerator[ChangeEvent, None]:
        """Every change of this namespace after position ``after``, in position order,
        forever (stop iterating to stop): waits for new ones, woken by the changes this
        process hears of, else every ``MEMSTORE_CHANGES_POLL_SECONDS``. Filters: ``kinds``
        (``memstore.core.changes``), ``entity_type``, ``conversation_id``. Raises
        ``ChangesPrunedError`` when retention removed events it had not read yet."""
        reader = self.change_reader(
            after=after,
            kinds=kinds,
            entity_type=entity_type,
            conversation_id=conversation_id,
            page_size=self._walk_page_size(),
        )
        try:
            while True:
                for event in await reader.next_events():
                    yield event
        finally:
            reader.close()

    # -- analytics ----------------------------------------------------------------------

    async def analytics_overview(self) -> AnalyticsOverview:
        overview = await self._run(
            "analytics_overview", lambda: self.backend.analytics_overview(self.namespace)
        )
        return dataclasses.replace(
            overview,
            stored_bytes=await self.get_stored_bytes(),
            logical_bytes=await self.get_logical_bytes(),
        )

    async def analytics_growth(
        self,
        kind: str,
        *,
        bucket: str = "hour",
        since: float | None = None,
        until: float | None = None,
    ) -> GrowthSeries:
        kind = check_growth_kind(kind)
        window = check_window(bucket, since, until, time.time())
        return await self._run(
            "analytics_growth",
            lambda: self.backend.analytics_growth(self.namespace, kind, window),
        )

    async def analytics_tools(
        self,
        *,
        bucket: str = "hour",
        since: float | None = None,
        until: float | None = None,
        tool_name: str | None = None,
        limit: int | None = None,
    ) -> ToolAnalytics:
        check_optional_name("tool_name", tool_name)
        n = check_listed_calls(limit)
        window = check_window(bucket, since, until, time.time())
        return await self._run(
            "analytics_tools",
            lambda: self.backend.analytics_tools(
                self.namespace, window, tool_name=tool_name, limit=n
            ),
        )

    async def analytics_feedback(
        self, *, bucket: str = "hour", since: float | None = None, until: float | None = None
    ) -> FeedbackAnalytics:
        window = check_window(bucket, since, until, time.time())
        return await self._run(
            "analytics_feedback", lambda: self.backend.analytics_feedback(self.namespace, window)
        )

    # -- export and import (memory/export.py) -------------------------------------------

    def export_namespace(self, *, with_key: bool = False) -> AsyncIterator[bytes]:
        """This namespace's dump (``memstore.core.dump``), line by line, streamed. With
        encryption at rest its payloads are sealed with the namespace's data key;
        ``with_key``: the dump carries that key, wrapped by the key-encryption key."""
        from memstore import __version__

        origin = {
            "backend": self.memory_type,
            "exported_at": time.time(),
            "memstore_version": __version__,
        }
        return export.export_lines(self, origin, with_key=with_key)

    async def import_namespace(
        self,
        chunks: AsyncIterable[bytes],
        *,
        replace: bool = False,
        allows_source: Callable[[str], bool] | None = None,
    ) -> ImportResult:
        """Import a dump (its bytes, cut anywhere) into this namespace: verified whole
        first (``DumpInvalidError``, nothing written), then written while the namespace
        answers ``NamespaceImportingError`` on every replica. A namespace holding data is
        refused (``NamespaceNotEmptyError``) unless ``replace``. ``allows_source``: whether
        the caller may read a namespace (``None``: any), asked of the dump's source before
        this store's key of it opens a sealed dump (``PermissionDeniedError``)."""
        try:
            result = await export.import_chunks(
                self, chunks, replace=replace, allows_source=allows_source
            )
        finally:
            # Many entities written at once: none of the namespace's cached ones stays.
            await self._invalidate_shared_namespace()
        await self._refresh_import_markers(begun_after_now=True)
        return result

    async def import_marker(self) -> JSONObject | None:
        """The import marker of this namespace (an unfinished import), or ``None``."""
        if not self._shared.started:
            await self.start()
        record = await self.backend.load_entity(
            export.IMPORTS_NAMESPACE, export.MARKER_TYPE, self.namespace
        )
        return None if record is None else record.data

    async def set_import_marker(self, marker: JSONObject | None, *, create: bool = False) -> None:
        """Write (``None``: remove) this namespace's import marker; ``create``: only if
        there is none (``ConflictError`` otherwise)."""
        if not self._shared.started:
            await self.start()
        backend = self.backend
        if marker is None:
            await backend.delete_entity(
                export.IMPORTS_NAMESPACE, export.MARKER_TYPE, self.namespace
            )
        else:
            await backend.save_entity(
                export.IMPORTS_NAMESPACE,
                export.MARKER_TYPE,
                self.namespace,
                marker,
                expected_version=0 if create else None,
            )

    async def import_entity(self, record: EntityRecord) -> None:
        """Write exactly ``record`` (``DistributedMemoryBackend.import_entity``)."""
        try:
            await self._run(
                "import_entity", lambda: self.backend.import_entity(self.namespace, record)
            )
        finally:
            await self._invalidate(entity_cache_key(self.namespace, record.type, record.id))

    async def import_conversation(
        self, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        """Replace a conversation with exactly ``messages`` (their seq and times kept)."""
        try:
            await self._run(
                "import_conversation",
                lambda: self.backend.import_conversation(self.namespace, conversation_id, messages),
            )
        finally:
            self._conversation_changed(conversation_id)

    async def import_tool_usage(self, record: ToolUsageRecord) -> None:
        """Store a tool use as it is (same id: stored once)."""
        await self._run(
            "record_tool_usage", lambda: self.backend.record_tool_usage(self.namespace, record)
        )

    async def import_feedback(self, record: FeedbackRecord) -> None:
        """Store a feedback record as it is (same id: stored once)."""
        await self._run("save_feedback", lambda: self.backend.save_feedback(self.namespace, record))

    # -- retention (memory/retention.py, core/retention.py) -------------------------------

    def retention_policy(self) -> RetentionPolicy:
        """This namespace's policy: the default with the namespace's override."""
        return self._shared.settings.retention.policy_for(self.namespace)

    async def get_retention_policy(self) -> RetentionPolicy:
        return self.retention_policy()

    async def pin_entity(
        self, entity_type: str, entity_id: str, pinned: bool = True
    ) -> EntityRecord | None:
        """Pin (or, ``pinned=False``, unpin) an entity: retention never removes a pinned
        one. Returns the entity, ``None`` when there is none. The version stays."""
        check_entity_key(entity_type, entity_id)
        if not isinstance(pinned, bool):
            from memstore.core.errors import InvalidInputError

            raise InvalidInputError("pinned must be true or false", field="pinned")
        key = entity_cache_key(self.namespace, entity_type, entity_id)
        try:
            return await self._run(
                "set_entity_pinned",
                lambda: self.backend.set_entity_pinned(
                    self.namespace, entity_type, entity_id, pinned
                ),
            )
        finally:
            await self._invalidate(key)

    async def retention_dry_run(
        self, *, at: float | None = None, limit: int | None = None
    ) -> PruneReport:
        """What this namespace's policy would remove at ``at`` (default: now), the first
        ``limit`` items of each kind (default: the default page size)."""
        now = time.time() if at is None else check_prune_at(at)
        return await self.prune(now=now, dry_run=True, limit=limit)

    async def enforce_retention(self, *, limit: int | None = None) -> PruneReport:
        """Remove now what this namespace's policy selects (one batch: the first ``limit``
        of each kind; ``complete`` is false when more are due)."""
        return await self.prune(now=time.time(), dry_run=False, limit=limit)

    async def prune(
        self,
        *,
        now: float,
        dry_run: bool,
        limit: int | None = None,
        policy: RetentionPolicy | None = None,
        kinds: Collection[str] = KINDS,
    ) -> PruneReport:
        """Apply ``policy`` (default: the namespace's) at the instant ``now`` (tests pass a
        future one to age the data), to ``kinds`` only. Enforcing drops the removed
        entities from the caches of every replica and counts the removals in the metrics."""
        s = self._shared.settings
        n = check_prune_limit(limit if limit is not None else s.default_page_size, s.max_page_size)
        policy = policy if policy is not None else self.retention_policy()
        # every kind at the same instant, old versions included (``versions_keep``,
        # ``versions_max_age_seconds``: the ``versions`` kind of the report)
        cutoffs = policy.cutoffs(now).only(kinds)
        report = await self._run(
            "retention_dry_run" if dry_run else "prune",
            lambda: self.backend.prune(self.namespace, cutoffs, now, dry_run=dry_run, limit=n),
        )
        if dry_run:
            return report
        # Cache entries go now, on every replica. Stored search vectors of pruned entities
        # are removed by the namespace's search index when it reads the entity.pruned
        # events (one write per vector here would double the cost of a batch).
        for e in report.entities:
            await self._invalidate(entity_cache_key(self.namespace, e.type, e.id))
        for c in report.conversations:
            self._conversation_changed(c.id)
        prometheus = self._shared.prometheus
        if prometheus is not None:
            for kind, items in (
                ("entities", report.entities),
                ("conversations", report.conversations),
                ("tool_usage", report.tool_usage),
                ("feedback", report.feedback),
                ("versions", report.versions),
            ):
                for item in items:
                    prometheus.count_pruned(kind, item.reason)
            for c in report.conversations:
                prometheus.count_pruned("messages", c.reason, c.messages)
        return report

    async def prune_namespace(
        self,
        namespace: str,
        *,
        now: float | None = None,
        policy: RetentionPolicy | None = None,
        until: float | None = None,
    ) -> int:
        """The background enforcement of one namespace (``RetentionPruner``): batches judged
        at one instant (``now``, default the round's start) until nothing more is due, or
        until the ``time.monotonic()`` deadline ``until`` has passed (checked between
        batches: a batch is never cut in the middle).
        Between two batches it waits ``MEMSTORE_RETENTION_PAUSE_SECONDS``, and long enough
        that pruning takes at most ``MEMSTORE_RETENTION_MAX_SHARE`` of the time: it holds
        the backend (the embedded store's one writer, a Redis shard) and the event loop
        for that share at most, whatever the backlog."""
        view = self.for_checked_namespace(namespace)
        policy = policy if policy is not None else view.retention_policy()
        s = self._shared.settings
        removed = 0
        if not policy.empty:
            now = time.time() if now is None else now
            kinds: set[str] = set(KINDS)
            while True:
                began = time.perf_counter()
                report = await view.prune(
                    now=now, dry_run=False, limit=s.retention_batch, policy=policy, kinds=kinds
                )
                removed += report.items
                # a kind with nothing more due is not judged again in this round
                kinds = {k for k in kinds if report.more[k]}
                if not kinds:
                    break
                took = time.perf_counter() - began
                rest = took * (1 - s.retention_max_share) / s.retention_max_share
                pause = max(s.retention_pause_seconds, rest)
                if until is not None and time.monotonic() + pause >= until:
                    break
                await asyncio.sleep(pause)
        prometheus = self._shared.prometheus
        if prometheus is not None:
            summary = await view.get_memory_summary_data()
            prometheus.set_namespace_usage(
                namespace,
                {
                    "entities": summary.total_entities,
                    "conversations": summary.conversations,
                    "messages": summary.messages,
                    "tool_usage": summary.total_tool_uses,
                    "feedback": summary.feedback_count,
                },
                await view.get_stored_bytes(),
                await view.get_logical_bytes(),
            )
        return removed

    # -- summary, cache, metrics --------------------------------------------------------

    # -- version history (memory/history.py; docs/architecture.md, "Version history") ---

    async def list_entity_versions(
        self,
        entity_type: str,
        entity_id: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[EntityVersion]:
        """Every version of the entity, newest first (the current one, then older versions
        and the tombstones of deletes), one page."""
        check_entity_key(entity_type, entity_id)
        n = self._limit(limit)
        return await self._run(
            "list_entity_versions",
            lambda: self.backend.list_entity_versions(
                self.namespace, entity_type, entity_id, cursor=cursor, limit=n
            ),
        )

    async def get_entity_version(
        self, entity_type: str, entity_id: str, version: int
    ) -> EntityVersion | None:
        """Version ``version`` of the entity (current or past; never a tombstone)."""
        check_entity_key(entity_type, entity_id)
        version = check_version_number(version)
        return await self._run(
            "load_entity_version",
            lambda: self.backend.load_entity_version(
                self.namespace, entity_type, entity_id, version=version
            ),
        )

    async def get_entity_as_of(
        self,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        """The entity as it was: at version ``version``, or at the instant ``at`` (POSIX
        seconds; ``None`` when it did not exist then: not yet created, deleted, or
        expired)."""
        check_entity_key(entity_type, entity_id)
        version, at = check_as_of(version, at)
        if version is not None:
            return await self.get_entity_version(entity_type, entity_id, version)
        assert at is not None
        row = await self._run(
            "load_entity_version",
            lambda: self.backend.load_entity_version(self.namespace, entity_type, entity_id, at=at),
        )
        return history.live_at(row, at)

    async def diff_entity_versions(
        self, entity_type: str, entity_id: str, from_version: int, to_version: int
    ) -> list[JSONObject]:
        """The RFC 6902 JSON Patch that turns version ``from_version`` of the entity into
        version ``to_version`` (``NotFoundError`` naming a version the entity never had)."""
        check_entity_key(entity_type, entity_id)
        check_version_number(from_version, "from")
        check_version_number(to_version, "to")
        found: dict[int, EntityVersion] = {}
        for name, number in (("from", from_version), ("to", to_version)):
            row = await self.get_entity_version(entity_type, entity_id, number)
            if row is None or row.data is None:
                raise NotFoundError(
                    f"entity {entity_type}/{entity_id} has no version {number}",
                    field=name,
                    version=number,
                )
            found[number] = row
        source, target = found[from_version].data, found[to_version].data
        assert source is not None
        assert target is not None
        return history.json_patch(source, target)

    async def revert_entity(
        self,
        entity_type: str,
        entity_id: str,
        version: int,
        *,
        expected_version: int | None = None,
    ) -> EntityRecord:
        """Save version ``version``'s data as a new version (history is never rewritten;
        after a delete this re-creates the entity). ``expected_version`` as for a save.
        The new version has no TTL. ``NotFoundError`` when there is no such version."""
        old = await self.get_entity_version(entity_type, entity_id, version)
        if old is None or old.data is None:
            raise NotFoundError(
                f"entity {entity_type}/{entity_id} has no version {version}", version=version
            )
        return await self.save_entity(
            entity_type, entity_id, old.data, expected_version=expected_version
        )

    async def list_conversation_revisions(
        self,
        conversation_id: str | None = None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[ConversationRevision]:
        """What replacing the conversation's history replaced, newest first, one page."""
        cid = check_conversation_id(conversation_id)
        n = self._limit(limit)
        return await self._run(
            "list_conversation_revisions",
            lambda: self.backend.list_conversation_revisions(
                self.namespace, cid, cursor=cursor, limit=n
            ),
        )

    async def get_conversation_revision(
        self, revision: int, conversation_id: str | None = None
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        """A revision and its messages (as they were), or ``None``."""
        cid = check_conversation_id(conversation_id)
        number = check_version_number(revision, "revision")
        return await self._run(
            "load_conversation_revision",
            lambda: self.backend.load_conversation_revision(self.namespace, cid, number),
        )

    async def restore_conversation_revision(
        self, revision: int, conversation_id: str | None = None
    ) -> list[MessageRecord]:
        """Replace the conversation's history with the revision's messages (which keeps the
        history replaced now as a new revision). ``NotFoundError`` when there is none."""
        found = await self.get_conversation_revision(revision, conversation_id)
        if found is None:
            raise NotFoundError(
                f"conversation {check_conversation_id(conversation_id)} has no revision {revision}",
                revision=revision,
            )
        return await self.save_conversation_history([m.message for m in found[1]], conversation_id)

    async def create_snapshot(self, name: str) -> Snapshot:
        """Mark this instant of the namespace as ``name`` (``ConflictError`` when the name
        is taken). Cheap: a marker; the version history holds the states."""
        check_name("snapshot", name)
        ns = self.namespace
        position = (await self.read_changes(after=0, limit=1)).last_position
        now = time.time()
        data = history.snapshot_data(now, position, current_actor_name())
        try:
            await self._run(
                "create_snapshot",
                lambda: self.backend.save_entity(
                    history.SNAPSHOTS_NAMESPACE, ns, name, data, expected_version=0
                ),
            )
        except ConflictError:
            raise AlreadyExistsError(
                f"namespace {ns} already has a snapshot {name!r}", snapshot=name
            ) from None
        return Snapshot(name, now, position, data["actor"])

    async def get_snapshot(self, name: str) -> Snapshot | None:
        check_name("snapshot", name)
        ns = self.namespace
        record = await self._run(
            "load_snapshot",
            lambda: self.backend.load_entity(history.SNAPSHOTS_NAMESPACE, ns, name),
        )
        return None if record is None else history.snapshot_of(record)

    async def list_snapshots(self) -> list[Snapshot]:
        """The namespace's snapshots by name."""
        ns = self.namespace
        out: list[Snapshot] = []
        cursor: str | None = None
        while True:
            page = await self._run(
                "list_snapshots",
                partial(
                    self.backend.list_entities,
                    history.SNAPSHOTS_NAMESPACE,
                    ns,
                    limit=500,
                    cursor=cursor,
                ),
            )
            out += [history.snapshot_of(r) for r in page.items]
            if (cursor := page.next_cursor) is None:
                return out

    async def delete_snapshot(self, name: str) -> bool:
        """Forget the snapshot (the history it named stays)."""
        check_name("snapshot", name)
        ns = self.namespace
        return await self._run(
            "delete_snapshot",
            lambda: self.backend.delete_entity(history.SNAPSHOTS_NAMESPACE, ns, name),
        )

    async def revert_to_snapshot(self, name: str) -> SnapshotRevert:
        """Give every entity of the namespace the state it had at the snapshot: a key whose
        data differs from then is saved with that data (a new version), one that did not
        exist then is deleted; history is never rewritten. Each write is conditional on
        the version just read, so a write made meanwhile by someone else wins (the key is
        named in ``conflicts``). Conversations, tool uses and feedback are not reverted.
        ``NotFoundError`` when there is no such snapshot.

        Every key's state then and now is read before the first write: a key that cannot
        be read (``DataShreddedError``: its version then, or its current row, was sealed
        with a shredded data key) refuses the whole revert with nothing written, rather
        than leave the namespace half reverted to a state that never existed."""
        snapshot = await self.get_snapshot(name)
        if snapshot is None:
            raise NotFoundError(f"namespace {self.namespace} has no snapshot {name!r}")
        at = snapshot.created_at
        unchanged = 0
        # (type, id, the data then or None: delete, the version now or 0: absent)
        writes: list[tuple[str, str, JSONObject | None, int]] = []
        cursor: str | None = None
        while True:
            page = await self._run(
                "list_versioned_entities",
                partial(
                    self.backend.list_versioned_entities, self.namespace, cursor=cursor, limit=500
                ),
            )
            for key in page.items:
                try:
                    then = await self.get_entity_as_of(key.type, key.id, at=at)
                    # from the backend, not through get_entity: a revert is not a read of
                    # every entity (it would refresh every idle clock of the namespace)
                    now = await self._run(
                        "load_entity",
                        partial(self.backend.load_entity, self.namespace, key.type, key.id),
                    )
                except DataShreddedError as exc:
                    raise DataShreddedError(
                        f"snapshot {name!r} cannot be reverted: entity {key.type}/{key.id} "
                        f"cannot be read ({exc.message}); nothing was written",
                        namespace=exc.namespace,
                        key_id=exc.key_id,
                    ) from None
                then_data = None if then is None else then.data
                if (now.data if now is not None else None) == then_data:
                    unchanged += 1
                else:
                    writes.append(
                        (key.type, key.id, then_data, now.version if now is not None else 0)
                    )
            if (cursor := page.next_cursor) is None:
                break
        saved = deleted = 0
        conflicts: list[str] = []
        for entity_type, entity_id, data, version in writes:
            try:
                if data is not None:
                    await self.save_entity(entity_type, entity_id, data, expected_version=version)
                    saved += 1
                else:
                    await self.delete_entity(entity_type, entity_id, expected_version=version)
                    deleted += 1
            except ConflictError:
                conflicts.append(f"{entity_type}/{entity_id}")
        return SnapshotRevert(name, saved, deleted, unchanged, conflicts)

    async def list_versioned_entities(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[EntityVersion]:
        """Every key with an entity or a history row, by (type, id): its newest row."""
        n = self._limit(limit)
        return await self._run(
            "list_versioned_entities",
            partial(self.backend.list_versioned_entities, self.namespace, cursor=cursor, limit=n),
        )

    async def stored_entity(self, entity_type: str, entity_id: str) -> EntityRecord | None:
        """The live entity as stored, read from the backend: not a read of it (no cache,
        no idle clock refreshed), for an export or a revert going through every key."""
        return await self._run(
            "load_entity",
            partial(self.backend.load_entity, self.namespace, entity_type, entity_id),
        )

    async def import_entity_versions(self, versions: Sequence[EntityVersion]) -> None:
        """Write these history rows exactly (``backend.import_entity_versions``)."""
        await self._run(
            "import_entity_versions",
            lambda: self.backend.import_entity_versions(self.namespace, versions),
        )

    async def import_conversation_revision(
        self, revision: ConversationRevision, messages: Sequence[MessageRecord]
    ) -> None:
        """Write this revision and its messages exactly (no live conversation touched)."""
        await self._run(
            "import_conversation_revision",
            lambda: self.backend.import_conversation_revision(self.namespace, revision, messages),
        )

    async def purge_history(self) -> int:
        """Erase the namespace's version history (old versions, conversation revisions),
        keeping only the tombstones that hold deleted entities' version numbers: for an
        erasure of what was deleted or overwritten. The rows removed."""
        return await self._run("purge_history", lambda: self.backend.purge_history(self.namespace))

    async def history_erase_pending(self) -> bool:
        """Whether an erase of this namespace's history (a purge, retention's versions
        rules) still waits for a replicated store's other backend, which was down: it is
        applied there, in order, when the replication copies again."""
        return await self._run(
            "history_erase_pending", lambda: self.backend.erase_pending(self.namespace)
        )

    async def get_memory_summary_data(self) -> MemorySummary:
        return await self._run("summary", lambda: self.backend.summary(self.namespace))

    async def get_stored_bytes(self) -> int | None:
        """Bytes of stored payloads in this namespace, or ``None`` if the backend can't tell."""
        return await self._run("stored_bytes", lambda: self.backend.stored_bytes(self.namespace))

    async def get_logical_bytes(self) -> int | None:
        """Bytes of this namespace's payloads as they were written, before compression and
        encryption at rest (what the bytes quota counts), or ``None`` if the backend can't
        tell. Without the at-rest layer nothing is sealed: the stored bytes."""
        if backend_layer(self.backend, SealedBackend) is None:
            return await self.get_stored_bytes()
        return await self._run("logical_bytes", lambda: self.backend.logical_bytes(self.namespace))

    async def list_namespaces(self) -> list[str] | None:
        """Namespaces holding data, or ``None`` if the backend cannot enumerate them."""
        return await self._run("list_namespaces", lambda: self.backend.list_namespaces())

    # -- encryption at rest: data keys (memstore.backends.sealed) --------------------------

    def _unsealed_backend(self) -> DistributedMemoryBackend:
        backend = self.backend
        sealed = backend_layer(backend, SealedBackend)
        return backend if sealed is None else sealed.inner

    async def list_data_keys(self) -> list[dict[str, Any]]:
        """Every namespace's data key: namespace, key id, the KEK id wrapping it (no secret)."""
        return await self._run("list_data_keys", lambda: list_data_keys(self._unsealed_backend()))

    async def rotate_data_keys(self) -> dict[str, Any]:
        """Re-wrap every data key with the primary key-encryption key. Without a key file
        and without data keys there is nothing to do; with data keys it is a
        ``ConfigurationError``."""
        sealed = backend_layer(self.backend, SealedBackend)
        if sealed is not None and sealed.encrypts:
            return await self._run("rotate_data_keys", sealed.rotate_data_keys)
        if await self.list_data_keys():
            raise ConfigurationError(
                "data keys exist but encryption at rest is off: set MEMSTORE_ENCRYPTION_KEY_FILE"
            )
        return {"kek_id": None, "rewrapped": 0, "unchanged": 0}

    async def shred_data_key(self) -> dict[str, Any]:
        """Delete this namespace's data key (crypto-shredding): its encrypted payloads become
        unreadable everywhere. This process's cached plaintext (entity cache, search index)
        goes with it; other replicas drop theirs on the invalidation bus (Redis) or within
        ``MEMSTORE_DATA_KEY_CACHE_SECONDS``."""
        backend = self.backend
        sealed = backend_layer(backend, SealedBackend)

        def shred() -> Awaitable[dict[str, Any]]:
            if sealed is not None:
                return sealed.shred_data_key(self.namespace)
            return delete_data_key(backend, self.namespace)

        result = await self._run("shred_data_key", shred)
        self._shared.cache.clear()
        # Nothing cached in Memcached for the namespace is served from now on (with the key
        # gone its sealed values would not open either).
        await self._invalidate_shared_namespace()
        if self._shared.search is not None:
            self._shared.search.forget(self.namespace)
        return result

    async def dump_sealer(self) -> Sealer | None:
        """What seals this namespace's dump: its data key with encryption at rest on
        (``None`` off: the dump is plain, as before)."""
        sealed = backend_layer(self.backend, SealedBackend)
        if sealed is None or not sealed.encrypts:
            return None
        return await self._run("dump_sealer", lambda: sealed.dump_sealer(self.namespace))

    async def dump_opener(
        self,
        source_namespace: str,
        key_id: str,
        wrapped: JSONObject | None = None,
        *,
        store_key: bool = True,
    ) -> Sealer:
        """What opens a dump of ``source_namespace`` sealed with data key ``key_id`` (or
        with the key it carries, ``wrapped``): ``DataShreddedError`` when this store does
        not hold that key (shredded, or a store that never had it) and the dump does not
        carry it, ``ConfigurationError`` without encryption at rest. Not ``store_key``:
        only the key the dump carries opens it, never this store's."""
        sealed = backend_layer(self.backend, SealedBackend)
        if sealed is None or not sealed.encrypts:
            raise ConfigurationError(
                f"the dump is encrypted with data key {key_id!r} of namespace "
                f"{source_namespace!r}: importing it needs encryption at rest "
                "(MEMSTORE_ENCRYPTION_KEY_FILE) in a store holding that key"
            )
        if not self._shared.started:
            await self.start()
        # Not through _run: an interrupted import (its namespace marked) resumes through here.
        return await sealed.dump_opener(source_namespace, key_id, wrapped, store_key=store_key)

    def clear_cache(self) -> int:
        """Drop this process's local cache (synchronous, as in the seed). Returns entries."""
        return self._shared.cache.clear()

    def get_metrics(self) -> dict[str, Any]:
        """Operation counts, errors, latency and cache figures (synchronous, as in the seed)."""
        shared = self._shared
        stats = shared.cache.stats
        lookups = stats.hits + stats.misses
        operations = {
            name: {
                "count": s.count,
                "errors": s.errors,
                "total_seconds": round(s.seconds, 6),
                "avg_ms": round(1000 * s.seconds / s.count, 3) if s.count else 0.0,
            }
            for name, s in sorted(shared.ops.items())
        }
        result: dict[str, Any] = {
            "backend": shared.settings.memory_type,
            "uptime_seconds": round(time.time() - shared.started_at, 3),
            "operations": operations,
            "total_operations": sum(s.count for s in shared.ops.values()),
            "total_errors": sum(s.errors for s in shared.ops.values()),
            "errors_by_code": dict(sorted(shared.errors_by_code.items())),
            "cache": {
                "entries": len(shared.cache),
                "max_entries": shared.cache.max_entries,
                "ttl_seconds": shared.cache.ttl,
                "hits": stats.hits,
                "misses": stats.misses,
                "hit_rate": round(stats.hits / lookups, 4) if lookups else 0.0,
                "evictions": stats.evictions,
                "invalidations": stats.invalidations,
                "invalidations_received": shared.invalidations_received,
                "flushes": stats.flushes,
                # Reads that carried a min_version (read-your-writes), also counted in
                # hits/misses; refused: a cached copy too old for them. Bypasses: reads
                # that skipped the cache (use_cache=False, Cache-Control: no-cache).
                "min_version_hits": stats.conditional_hits,
                "min_version_misses": stats.conditional_misses,
                "min_version_refused": stats.refused,
                "bypasses": stats.bypasses,
            },
        }
        replication = self.replication_status()
        if replication is not None:
            result["replication"] = replication
        l2 = shared.l2
        if l2 is not None:
            l2_stats = l2.stats
            l2_lookups = l2_stats.hits + l2_stats.misses
            result["l2_cache"] = {
                **l2.describe(),
                "available": l2.available,
                "hits": l2_stats.hits,
                "misses": l2_stats.misses,
                "hit_rate": round(l2_stats.hits / l2_lookups, 4) if l2_lookups else 0.0,
                "stores": l2_stats.stores,
                "invalidations": l2_stats.invalidations,
                "errors": l2_stats.errors,
                "bypasses": l2_stats.bypasses,
                "too_large": l2_stats.too_large,
            }
        if shared.prometheus is not None:
            # The HTTP service's figures (same series as /metrics).
            result["backend_up"] = shared.prometheus.backend_up_values()
            result["http"] = shared.prometheus.snapshot_http()
        return result


if TYPE_CHECKING:
    # mypy: the manager implements every MemoryAPI operation (else it is abstract here).
    _manager_is_a_memory_api: MemoryAPI = DistributedMemoryManager()

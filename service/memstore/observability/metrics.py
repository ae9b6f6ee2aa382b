"""Prometheus metrics: one registry per process, label children cached for the hot path.

Invariants:
- Labels are bounded by construction: routes are templates (never raw paths; unknown paths
  share ``unmatched``), methods outside the HTTP set become ``_OTHER``, status is a class
  (``2xx``...), backends, operations and error codes are fixed names. 1,000 distinct entity
  ids therefore add no series.
- Label children are resolved once and kept in plain dicts: ``Metric.labels()`` takes a
  lock and builds a tuple on every call, a dict lookup does not.
- Cache figures are read from the cache's own counters at scrape time, so a cache hit costs
  no Prometheus call at all.
- Names follow Prometheus conventions: base units (``_seconds``), counters end ``_total``
  (prometheus-client appends it), no ``_created`` series.
- Conventions of every exporter: ``memstore_build_info{version,python,backend} 1`` (joins
  any series to the build that produced it, and lets ``absent()`` tell "not scraped" from
  "scraped, nothing to report") and the standard ``process_*`` / ``python_*`` families of
  prometheus-client's own collectors, on this registry.
- ``memstore_backend_operation_errors_total`` counts failures of the backend (5xx codes:
  ``backend_unavailable``, ``timeout``, ``configuration_error``, ``internal_error``), not
  the caller's mistakes (400, 404, 412, 403 quota...), which are answers the backend gave
  correctly; those show in the HTTP requests' ``4xx`` class.

``snapshot_http`` gives the HTTP figures as plain numbers for the JSON ``/v1/metrics``.

Multiprocess mode (``memstore serve --workers N``): prometheus-client's own, chosen by the
``PROMETHEUS_MULTIPROC_DIR`` environment variable before the library is imported (the
supervisor sets it). Every worker writes its series to files there and any worker's
``/metrics`` answers with ``MultiProcessCollector``'s aggregate of them all. Collectors
that read live objects at scrape time cannot aggregate, so in that mode the figures kept
as plain ints (the cache counters, the in-flight count) are copied into multiprocess series
by :meth:`PrometheusMetrics.publish` (every second and at each scrape), and the
``process_*`` / ``python_gc_*`` collectors, which would describe only the scraping worker,
are left out (the container's CPU and memory come from the kubelet's cAdvisor).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class CacheStats(Protocol):
    """What the cache collector reads (the memory layer's cache counters)."""

    hits: int
    misses: int
    evictions: int
    invalidations: int
    flushes: int
    conditional_hits: int
    conditional_misses: int
    refused: int
    bypasses: int


class L2CacheStats(Protocol):
    """What the second-level cache collector reads (memory/l2cache.py's counters)."""

    hits: int
    misses: int
    stores: int
    invalidations: int
    errors: int
    bypasses: int
    too_large: int


# "_created" series double the exposition for no operational value.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Latency buckets sized for a memory service: most calls are sub-millisecond to tens of ms.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)
UNMATCHED_ROUTE = "unmatched"


def package_version() -> str:
    try:
        return version("memstore")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def multiprocess_mode() -> bool:
    """prometheus-client chose its multiprocess values (it decides once, on import, from
    ``PROMETHEUS_MULTIPROC_DIR``)."""
    return values.ValueClass is not values.MutexValue


def method_label(method: str) -> str:
    """The request method, or ``_OTHER`` (as the OTel conventions say) for anything else."""
    return method if method in HTTP_METHODS else "_OTHER"


#: (name, documentation, CacheStats attribute or None for the invalidations received) of
#: the cache counters, in the order the exposition lists them.
_CACHE_COUNTERS = (
    ("memstore_cache_hits", "Local cache hits.", "hits"),
    ("memstore_cache_misses", "Local cache misses.", "misses"),
    ("memstore_cache_evictions", "Entries evicted by the size bound.", "evictions"),
    (
        "memstore_cache_invalidations",
        "Keys invalidated, by local writes or by messages from other replicas.",
        "invalidations",
    ),
    (
        "memstore_cache_invalidations_received",
        "Messages received from the backend's bus (other replicas' entity "
        "invalidations and conversation changes).",
        None,
    ),
    ("memstore_cache_flushes", "Whole-cache flushes.", "flushes"),
    (
        "memstore_cache_min_version_hits",
        "Hits of reads that carried a minimum version (read-your-writes); also "
        "counted in memstore_cache_hits.",
        "conditional_hits",
    ),
    (
        "memstore_cache_min_version_misses",
        "Misses of reads that carried a minimum version; also counted in memstore_cache_misses.",
        "conditional_misses",
    ),
    (
        "memstore_cache_min_version_refused",
        "Cached entries older than a read's minimum version (read from the backend).",
        "refused",
    ),
    (
        "memstore_cache_bypasses",
        "Reads that skipped the cache (Cache-Control: no-cache).",
        "bypasses",
    ),
)
_CACHE_ENTRIES_DOC = "Entries in the cache."


class _CacheCollector(Collector):
    def __init__(
        self,
        stats: Callable[[], CacheStats],
        size: Callable[[], int],
        received: Callable[[], int],
    ) -> None:
        self._stats = stats
        self._size = size
        self._received = received

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        for name, doc, attr in _CACHE_COUNTERS:
            value = self._received() if attr is None else getattr(s, attr)
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("memstore_cache_entries", _CACHE_ENTRIES_DOC, self._size())


_SERVING_DOC = "1 for the backend that serves reads now (role primary or secondary), else 0."
_FAILOVERS_DOC = "Times a process switched reads to the secondary (summed over workers)."
_ROUND_ERRORS_DOC = (
    "Replication rounds that failed and were retried (summed over workers); the error "
    "type is in /readyz (replication.last_error), its traceback in the log."
)
#: name, status key, help, how workers combine (``--workers``: each worker runs its own
#: replicated backend; the lag is known by the one holding the replication claim).
_REPLICATION_GAUGES: tuple[tuple[str, str, str, Literal["livemin", "livemax"]], ...] = (
    ("memstore_replication_primary_up", "primary_up", "The primary answers probes.", "livemin"),
    (
        "memstore_replication_active",
        "replicating",
        "This replica (a worker of it) is the one replicating (holds the claim on the "
        "secondary and has measured the lag of every namespace).",
        "livemax",
    ),
    (
        "memstore_replication_reconciling",
        "reconciling",
        "Writes the secondary took are being copied back to the primary.",
        "livemax",
    ),
    (
        "memstore_replication_degraded",
        "degraded",
        "The secondary serves, the lag is over its bound, or replication stopped.",
        "livemax",
    ),
    (
        "memstore_replication_lag_events",
        "lag_events",
        "Change events of the primary not yet applied to the secondary (all namespaces; "
        "known on the replicating replica or worker).",
        "livemax",
    ),
    (
        "memstore_replication_lag_seconds",
        "lag_seconds",
        "Age of the oldest change event not yet applied to the secondary.",
        "livemax",
    ),
)


class _ReplicationCollector(Collector):
    """A primary and a secondary backend (``ReplicatedMemoryBackend.status``): which one
    serves and how far the secondary is behind. Totals only: no namespace names."""

    def __init__(self, status: Callable[[], dict[str, Any] | None]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        if s is None:
            return
        serving = GaugeMetricFamily(
            "memstore_backend_serving", _SERVING_DOC, labels=["role", "backend"]
        )
        for role in ("primary", "secondary"):
            serving.add_metric([role, str(s[role])], 1.0 if s["serving"] == role else 0.0)
        yield serving
        for name, key, doc, _ in _REPLICATION_GAUGES:
            yield GaugeMetricFamily(name, doc, value=float(s[key]))
        yield CounterMetricFamily(
            "memstore_replication_failovers", _FAILOVERS_DOC, value=s["failovers"]
        )
        yield CounterMetricFamily(
            "memstore_replication_round_errors", _ROUND_ERRORS_DOC, value=s["round_errors"]
        )


class _PublishedReplication:
    """Multiprocess mode: this worker's replication status in multiprocess gauges (the
    largest over live workers, the smallest for ``primary_up``) and its failovers in a
    counter summed over workers."""

    def __init__(self, status: Callable[[], dict[str, Any] | None]) -> None:
        self._status = status
        self._last: dict[str, Any] = {}
        self._serving = Gauge(
            "memstore_backend_serving",
            _SERVING_DOC,
            ["role", "backend"],
            registry=None,
            multiprocess_mode="livemax",
        )
        self._gauges = [
            (key, Gauge(name, doc, registry=None, multiprocess_mode=mode))
            for name, key, doc, mode in _REPLICATION_GAUGES
        ]
        self._failovers = _PublishedCounters(
            (
                ("memstore_replication_failovers", _FAILOVERS_DOC, "failovers"),
                ("memstore_replication_round_errors", _ROUND_ERRORS_DOC, "round_errors"),
            ),
            lambda: [int(self._last.get(key, 0)) for key in ("failovers", "round_errors")],
        )

    def publish(self) -> None:
        s = self._status()
        if s is None:
            return
        self._last = s
        for role in ("primary", "secondary"):
            self._serving.labels(role, str(s[role])).set(1.0 if s["serving"] == role else 0.0)
        for key, gauge in self._gauges:
            gauge.set(float(s[key]))
        self._failovers.publish()


_L2_COUNTERS = (
    ("memstore_l2_cache_hits", "Second-level cache (Memcached) hits.", "hits"),
    (
        "memstore_l2_cache_misses",
        "Second-level cache misses (read from the backend, then stored).",
        "misses",
    ),
    ("memstore_l2_cache_stores", "Entities stored in the second-level cache.", "stores"),
    (
        "memstore_l2_cache_invalidations",
        "Generation bumps for entity writes (this replica's and other replicas').",
        "invalidations",
    ),
    (
        "memstore_l2_cache_errors",
        "Memcached calls that failed or timed out (the read went to the backend).",
        "errors",
    ),
    (
        "memstore_l2_cache_bypasses",
        "Reads that went straight to the backend: Memcached down, or bumps owed.",
        "bypasses",
    ),
    (
        "memstore_l2_cache_too_large",
        "Entities too large for Memcached's item limit (not cached there).",
        "too_large",
    ),
)


class _L2CacheCollector(Collector):
    def __init__(self, stats: Callable[[], L2CacheStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        for name, doc, attr in _L2_COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(s, attr))


class _PublishedCounters:
    """Multiprocess mode: plain-int counters of this worker (``read()``, in the order of
    ``table``) copied into multiprocess series, which grow by what was counted since the
    last copy, so the sum over workers stays a counter across worker restarts."""

    def __init__(
        self, table: tuple[tuple[str, str, str | None], ...], read: Callable[[], list[int]]
    ) -> None:
        # Counter() appends "_total" to these names, as the collectors' families do.
        self._counters = [Counter(name, doc, registry=None) for name, doc, _ in table]
        self._read = read
        self._published = [0] * len(table)

    def publish(self) -> None:
        for i, value in enumerate(self._read()):
            if value > self._published[i]:
                self._counters[i].inc(value - self._published[i])
                self._published[i] = value


class PrometheusMetrics:
    """Every metric the service exports, in one registry owned by the application (in
    multiprocess mode: the registry answering ``/metrics`` aggregates every worker's)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.multiprocess = multiprocess_mode()
        # In multiprocess mode the series live in the library's files, not in a registry:
        # MultiProcessCollector reads them all back, this process's included.
        r = None if self.multiprocess else self.registry
        if self.multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            PlatformCollector(registry=self.registry)
        else:
            # What prometheus-client's default registry carries; ours is private to the
            # app, so they are registered here: process_* (CPU, memory, fds, start time),
            # python_info and python_gc_*.
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)  # registers itself on CPython only
        # A gauge rather than an Info (which multiprocess mode lacks); the text exposition
        # is the same: memstore_build_info{...} 1.
        self.build_info = Gauge(
            "memstore_build_info",
            "The memstore build serving this process (always 1).",
            ["version", "python", "backend"],
            registry=r,
            multiprocess_mode="max",
        )
        self.http_requests = Counter(
            "memstore_http_requests",
            "HTTP requests by method, route template and status class.",
            ["method", "route", "status_class"],
            registry=r,
        )
        self.http_duration = Histogram(
            "memstore_http_request_duration_seconds",
            "HTTP request latency by method, route template and status class.",
            ["method", "route", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "memstore_http_requests_in_flight",
            "HTTP requests being served.",
            registry=r,
            multiprocess_mode="livesum",
        )
        # A plain int the middleware bumps (no lock, no method call), read at scrape time
        # (multiprocess: copied by publish()).
        self.in_flight = 0
        if not self.multiprocess:
            self.http_in_flight.set_function(lambda: self.in_flight)
        self.backend_duration = Histogram(
            "memstore_backend_operation_duration_seconds",
            "Backend operation latency (failed operations included).",
            ["backend", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "memstore_backend_operation_errors",
            "Backend operations that failed, by error code.",
            ["backend", "operation", "code"],
            registry=r,
        )
        self.backend_up = Gauge(
            "memstore_backend_up",
            "1 when the last health check reached the backend, else 0.",
            ["backend"],
            registry=r,
            # Across workers: 0 when any live worker's last check failed.
            multiprocess_mode="livemin",
        )
        # Webhooks: ``webhook`` is "<namespace>/<name>", bounded by the configured webhooks
        # (at most 32 per namespace).
        self.webhook_deliveries = Counter(
            "memstore_webhook_deliveries",
            "Webhook delivery attempts by outcome (success, http_error, timeout, network_error).",
            ["webhook", "outcome"],
            registry=r,
        )
        self.webhook_duration = Histogram(
            "memstore_webhook_delivery_duration_seconds",
            "Webhook delivery attempt latency, until the receiver's status (or the failure).",
            ["webhook"],
            buckets=(*LATENCY_BUCKETS, 10.0, 30.0),
            registry=r,
        )
        self.webhook_dead_letters = Counter(
            "memstore_webhook_dead_letters",
            "Events given up on after the last attempt (or removed by retention before delivery).",
            ["webhook"],
            registry=r,
        )
        # Retention: items removed by kind (entities, conversations, messages, tool_usage,
        # feedback) and reason (max_age, idle, max_messages): a fixed, small set of labels.
        self.retention_pruned = Counter(
            "memstore_retention_pruned_items",
            "Items removed by retention, by kind and reason.",
            ["kind", "reason"],
            registry=r,
        )
        # Per namespace, refreshed by each retention round (one series per namespace).
        self.namespace_items = Gauge(
            "memstore_namespace_items",
            "Items stored in a namespace, by kind (as of the last retention round).",
            ["namespace", "kind"],
            registry=r,
        )
        self.namespace_bytes = Gauge(
            "memstore_namespace_bytes",
            "Payload bytes stored in a namespace (as of the last retention round).",
            ["namespace"],
            registry=r,
        )
        self.namespace_logical_bytes = Gauge(
            "memstore_namespace_logical_bytes",
            "Payload bytes of a namespace as written, before compression and encryption at "
            "rest: what the bytes quota counts (as of the last retention round).",
            ["namespace"],
            registry=r,
        )
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._backend_children: dict[tuple[str, str], Histogram] = {}
        self._error_children: dict[tuple[str, str, str], Counter] = {}
        # Multiprocess mode: what publish() copies into multiprocess series.
        self._publishers: list[Callable[[], None]] = []

    def set_build_info(self, backend: str) -> None:
        """Labels of ``memstore_build_info``: package version, Python version, backend."""
        self.build_info.labels(package_version(), platform.python_version(), backend).set(1)

    def watch_cache(
        self,
        stats: Callable[[], CacheStats],
        size: Callable[[], int],
        received: Callable[[], int] = lambda: 0,
    ) -> None:
        if not self.multiprocess:
            self.registry.register(_CacheCollector(stats, size, received))
            return

        def read() -> list[int]:
            s = stats()
            return [
                received() if attr is None else int(getattr(s, attr))
                for _, _, attr in _CACHE_COUNTERS
            ]

        self._publishers.append(_PublishedCounters(_CACHE_COUNTERS, read).publish)
        entries = Gauge(
            "memstore_cache_entries", _CACHE_ENTRIES_DOC, registry=None, multiprocess_mode="livesum"
        )
        self._publishers.append(lambda: entries.set(size()))

    def publish(self) -> None:
        """Multiprocess mode: copy this worker's plain-int figures (cache and L2 cache
        counters, cache entries, replication status, requests in flight) into its
        multiprocess series; a no-op otherwise. Counters grow by what this worker counted
        since its last call, so the sum over workers stays a counter across worker
        restarts."""
        if not self.multiprocess:
            return
        self.http_in_flight.set(self.in_flight)
        for publish in self._publishers:
            publish()

    def watch_replication(self, status: Callable[[], dict[str, Any] | None]) -> None:
        if not self.multiprocess:
            self.registry.register(_ReplicationCollector(status))
            return
        self._publishers.append(_PublishedReplication(status).publish)

    def watch_l2_cache(self, stats: Callable[[], L2CacheStats]) -> None:
        if not self.multiprocess:
            self.registry.register(_L2CacheCollector(stats))
            return

        def read() -> list[int]:
            s = stats()
            return [int(getattr(s, attr)) for _, _, attr in _L2_COUNTERS]

        self._publishers.append(_PublishedCounters(_L2_COUNTERS, read).publish)

    # -- hot path -------------------------------------------------------------------------

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._http_children.get(key)
        if children is None:
            labels = (method, route, f"{status // 100}xx")
            children = self._http_children[key] = (
                self.http_requests.labels(*labels),
                self.http_duration.labels(*labels),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_backend(self, backend: str, operation: str, seconds: float) -> None:
        key = (backend, operation)
        child = self._backend_children.get(key)
        if child is None:
            child = self._backend_children[key] = self.backend_duration.labels(*key)
        child.observe(seconds)

    def count_backend_error(self, backend: str, operation: str, code: str) -> None:
        key = (backend, operation, code)
        child = self._error_children.get(key)
        if child is None:
            child = self._error_children[key] = self.backend_errors.labels(*key)
        child.inc()

    def count_pruned(self, kind: str, reason: str, items: int = 1) -> None:
        self.retention_pruned.labels(kind, reason).inc(items)

    def set_namespace_usage(
        self,
        namespace: str,
        items: dict[str, int],
        stored_bytes: int | None,
        logical_bytes: int | None = None,
    ) -> None:
        for kind, n in items.items():
            self.namespace_items.labels(namespace, kind).set(n)
        if stored_bytes is not None:
            self.namespace_bytes.labels(namespace).set(stored_bytes)
        if logical_bytes is not None:
            self.namespace_logical_bytes.labels(namespace).set(logical_bytes)

    def set_backend_up(self, backend: str, up: bool) -> None:
        self.backend_up.labels(backend).set(1 if up else 0)

    def observe_webhook(self, webhook: str, outcome: str, seconds: float) -> None:
        self.webhook_deliveries.labels(webhook, outcome).inc()
        self.webhook_duration.labels(webhook).observe(seconds)

    def count_webhook_dead_letters(self, webhook: str, events: int = 1) -> None:
        self.webhook_dead_letters.labels(webhook).inc(events)

    # -- readable figures -----------------------------------------------------------------

    def snapshot_http(self) -> dict[str, Any]:
        """HTTP figures as plain numbers: per ``"METHOD route"``, counts by status class and
        average latency; plus requests in flight. Read from the same series as the
        exposition, so both always agree."""
        routes: dict[str, dict[str, Any]] = {}
        seconds: dict[str, float] = {}
        for family in self.http_requests.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                lb = sample.labels
                name = f"{lb['method']} {lb['route']}"
                entry = routes.setdefault(name, {"count": 0, "by_status": {}})
                entry["count"] += int(sample.value)
                entry["by_status"][lb["status_class"]] = int(sample.value)
        for family in self.http_duration.collect():
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    name = f"{sample.labels['method']} {sample.labels['route']}"
                    seconds[name] = seconds.get(name, 0.0) + sample.value
        for name, entry in routes.items():
            entry["avg_ms"] = round(1000 * seconds.get(name, 0.0) / entry["count"], 3)
        return {
            "requests": dict(sorted(routes.items())),
            "total_requests": sum(e["count"] for e in routes.values()),
            "in_flight": self.in_flight,
        }

    def backend_up_values(self) -> dict[str, int]:
        return {
            sample.labels["backend"]: int(sample.value)
            for family in self.backend_up.collect()
            for sample in family.samples
        }

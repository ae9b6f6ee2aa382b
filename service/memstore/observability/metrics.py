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
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


def method_label(method: str) -> str:
    """The request method, or ``_OTHER`` (as the OTel conventions say) for anything else."""
    return method if method in HTTP_METHODS else "_OTHER"


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
        for name, value, doc in (
            ("memstore_cache_hits", s.hits, "Local cache hits."),
            ("memstore_cache_misses", s.misses, "Local cache misses."),
            ("memstore_cache_evictions", s.evictions, "Entries evicted by the size bound."),
            (
                "memstore_cache_invalidations",
                s.invalidations,
                "Keys invalidated, by local writes or by messages from other replicas.",
            ),
            (
                "memstore_cache_invalidations_received",
                self._received(),
                "Messages received from the backend's bus (other replicas' entity "
                "invalidations and conversation changes).",
            ),
            ("memstore_cache_flushes", s.flushes, "Whole-cache flushes."),
            (
                "memstore_cache_min_version_hits",
                s.conditional_hits,
                "Hits of reads that carried a minimum version (read-your-writes); also "
                "counted in memstore_cache_hits.",
            ),
            (
                "memstore_cache_min_version_misses",
                s.conditional_misses,
                "Misses of reads that carried a minimum version; also counted in "
                "memstore_cache_misses.",
            ),
            (
                "memstore_cache_min_version_refused",
                s.refused,
                "Cached entries older than a read's minimum version (read from the backend).",
            ),
            (
                "memstore_cache_bypasses",
                s.bypasses,
                "Reads that skipped the cache (Cache-Control: no-cache).",
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("memstore_cache_entries", "Entries in the cache.", self._size())


class PrometheusMetrics:
    """Every metric the service exports, in one registry owned by the application."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # What prometheus-client's default registry carries; ours is private to the app, so
        # they are registered here: process_* (CPU, memory, fds, start time), python_info
        # and python_gc_*.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)  # registers itself on CPython only
        self.build_info = Info(
            "memstore_build", "The memstore build serving this process (always 1).", registry=r
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
            "memstore_http_requests_in_flight", "HTTP requests being served.", registry=r
        )
        # A plain int the middleware bumps (no lock, no method call), read at scrape time.
        self.in_flight = 0
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
        self._http_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._backend_children: dict[tuple[str, str], Histogram] = {}
        self._error_children: dict[tuple[str, str, str], Counter] = {}

    def set_build_info(self, backend: str) -> None:
        """Labels of ``memstore_build_info``: package version, Python version, backend."""
        self.build_info.info(
            {"version": package_version(), "python": platform.python_version(), "backend": backend}
        )

    def watch_cache(
        self,
        stats: Callable[[], CacheStats],
        size: Callable[[], int],
        received: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry.register(_CacheCollector(stats, size, received))

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
        self, namespace: str, items: dict[str, int], stored_bytes: int | None
    ) -> None:
        for kind, n in items.items():
            self.namespace_items.labels(namespace, kind).set(n)
        if stored_bytes is not None:
            self.namespace_bytes.labels(namespace).set(stored_bytes)

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
        in_flight = next(iter(self.http_in_flight.collect())).samples[0].value
        return {
            "requests": dict(sorted(routes.items())),
            "total_requests": sum(e["count"] for e in routes.values()),
            "in_flight": int(in_flight),
        }

    def backend_up_values(self) -> dict[str, int]:
        return {
            sample.labels["backend"]: int(sample.value)
            for family in self.backend_up.collect()
            for sample in family.samples
        }

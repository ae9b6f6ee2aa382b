"""Prometheus metrics: one registry per process, label children cached for the hot path.

Labels are bounded by construction: routes are templates (never raw paths), operations
and backends are fixed names, status is a class (2xx, 4xx, ...). Cache figures are read
from the cache's own counters at scrape time, so a cache hit costs no Prometheus call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from memstore.cache import CacheStats

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


class _CacheCollector(Collector):
    def __init__(self, stats: Callable[[], CacheStats], size: Callable[[], int]) -> None:
        self._stats = stats
        self._size = size

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        for name, value, doc in (
            ("memstore_cache_hits", s.hits, "Local cache hits."),
            ("memstore_cache_misses", s.misses, "Local cache misses."),
            ("memstore_cache_evictions", s.evictions, "Entries evicted by the size bound."),
            (
                "memstore_cache_invalidations",
                s.invalidations,
                "Keys invalidated by writes (local or from other replicas).",
            ),
            ("memstore_cache_flushes", s.flushes, "Whole-cache flushes."),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("memstore_cache_entries", "Entries in the cache.", self._size())


class PrometheusMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "memstore_http_requests",
            "HTTP requests by route template and status class.",
            ["method", "route", "status_class"],
            registry=r,
        )
        self.http_duration = Histogram(
            "memstore_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.http_in_flight = Gauge(
            "memstore_http_requests_in_flight", "HTTP requests being served.", registry=r
        )
        self.backend_duration = Histogram(
            "memstore_backend_operation_duration_seconds",
            "Backend operation latency.",
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
        self._backend_children: dict[tuple[str, str], Histogram] = {}

    def watch_cache(self, stats: Callable[[], CacheStats], size: Callable[[], int]) -> None:
        self.registry.register(_CacheCollector(stats, size))

    def observe_backend(self, backend: str, operation: str, seconds: float) -> None:
        key = (backend, operation)
        child = self._backend_children.get(key)
        if child is None:
            child = self._backend_children[key] = self.backend_duration.labels(*key)
        child.observe(seconds)

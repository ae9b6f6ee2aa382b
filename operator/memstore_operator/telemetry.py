"""The operator's own Prometheus metrics and OpenTelemetry spans.

:class:`Telemetry` holds the metrics in a registry of its own, served by
:meth:`Telemetry.serve_metrics` (``MEMSTORE_OPERATOR_METRICS_PORT``, default 8082; ``0``
turns it off). Label values are bounded: the trigger (create/update/resume/resync), the
result and the backend type, never a store's name (except the backup-age gauges of
:class:`BackupAges`). Like the service, it exports
``memstore_operator_build_info{version,python} 1`` and prometheus-client's standard
``process_*`` / ``python_*`` families (registered on this registry, which is not the
library's default one).

Traces are off unless an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); then :func:`setup_tracing` installs the SDK's
tracer provider with the OTLP/HTTP exporter, which reads the other standard ``OTEL_*``
variables itself. Without an endpoint the OpenTelemetry API's no-op tracer is used and the
SDK is never imported.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from opentelemetry import trace
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from memstore_operator.settings import OperatorSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")
RUN_KINDS = ("backup", "restore")
RUN_RESULTS = ("Completed", "Failed")


class BackupAges(Collector):
    """The newest successful backup of each MemoryStore (that has one): its completion
    time and its age at scrape time. Labelled by namespace and store, unlike the other
    metrics: an alert on a stale backup must say which store it is about, and there is
    one series per store that is backed up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def record(self, namespace: str, store: str, completed: float) -> None:
        with self._lock:
            key = (namespace, store)
            self._last[key] = max(completed, self._last.get(key, 0.0))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        with self._lock:
            last = dict(self._last)
        labels = ["namespace", "memorystore"]
        when = GaugeMetricFamily(
            "memstore_operator_backup_last_success_timestamp_seconds",
            "Completion time (Unix seconds) of the newest successful MemoryStoreBackup of a store.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "memstore_operator_backup_age_seconds",
            "Seconds since the newest successful MemoryStoreBackup of a store completed.",
            labels=labels,
        )
        now = time.time()
        for (namespace, store), completed in sorted(last.items()):
            when.add_metric([namespace, store], completed)
            age.add_metric([namespace, store], max(0.0, now - completed))
        yield when
        yield age


TRIGGERS = ("create", "update", "resume", "resync")
RESULTS = ("ok", "invalid", "pending", "error")


class Telemetry:
    """The metrics of one operator process, and the reconcile span that feeds them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)  # registers itself on CPython only
        try:
            package = version("memstore")
        except PackageNotFoundError:  # a source tree that was never installed
            package = "unknown"
        Info(
            "memstore_operator_build",
            "The memstore build running this operator (always 1).",
            registry=self.registry,
        ).info({"version": package, "python": platform.python_version()})
        self.reconciles = Counter(
            "memstore_operator_reconciles",
            "Reconcile passes of MemoryStore objects, by trigger and result.",
            ["trigger", "result"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "memstore_operator_reconcile_errors",
            "Reconcile passes that ended in an error, by kind of error.",
            ["error"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "memstore_operator_reconcile_duration_seconds",
            "Wall time of one reconcile pass, backend check included.",
            ["trigger"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.backend_checks = Counter(
            "memstore_operator_backend_checks",
            "Backend reachability checks, by backend type and result (ok, failed, unknown).",
            ["backend", "result"],
            registry=self.registry,
        )
        self.stores = Gauge(
            "memstore_operator_stores",
            "MemoryStore objects seen by the last resync pass, by phase.",
            ["phase"],
            registry=self.registry,
        )
        self.runs = Counter(
            "memstore_operator_backup_runs",
            "Backups and restores that finished, by kind (backup, restore) and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.backup_ages = BackupAges()
        self.registry.register(self.backup_ages)
        for k in RUN_KINDS:
            for res in RUN_RESULTS:
                self.runs.labels(k, res)
        # Every series exists from the start, so a rate() over a fresh process is defined.
        for t in TRIGGERS:
            self.reconcile_duration.labels(t)
            for r in RESULTS:
                self.reconciles.labels(t, r)
        for p in PHASES:
            self.stores.labels(p).set(0)

    def serve_metrics(self, port: int, addr: str) -> int | None:
        """Start the /metrics HTTP server (a daemon thread); returns its port or None."""
        if port == 0:
            return None
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        bound = int(server.server_port)
        log.info("operator metrics on %s:%d/metrics", addr, bound)
        return bound

    @contextmanager
    def reconcile_span(self, trigger: str, namespace: str, name: str) -> Iterator[trace.Span]:
        """Span ``reconcile MemoryStore`` around one pass; its duration goes to the
        histogram. The caller records the result with :meth:`record_result`."""
        start = time.perf_counter()
        attrs = {
            "k8s.namespace.name": namespace,
            "memstore.name": name,
            "memstore.trigger": trigger,
        }
        try:
            with tracer().start_as_current_span("reconcile MemoryStore", attributes=attrs) as span:
                yield span
        finally:
            self.reconcile_duration.labels(trigger).observe(time.perf_counter() - start)

    def record_result(self, trigger: str, result: str, error: str | None = None) -> None:
        self.reconciles.labels(trigger, result).inc()
        if error is not None:
            self.reconcile_errors.labels(error).inc()

    def record_backend_check(self, backend: str, ok: bool | None) -> None:
        result = "unknown" if ok is None else ("ok" if ok else "failed")
        self.backend_checks.labels(backend, result).inc()

    def record_run(self, kind: str, result: str) -> None:
        self.runs.labels(kind, result).inc()

    def record_backup_success(self, namespace: str, store: str, completed: float) -> None:
        self.backup_ages.record(namespace, store, completed)

    def record_phases(self, phases: list[str]) -> None:
        for p in PHASES:
            self.stores.labels(p).set(sum(1 for x in phases if x == p))


def setup_tracing(settings: OperatorSettings) -> TracerProvider | None:
    """Install an SDK tracer provider with the OTLP/HTTP exporter when an endpoint is
    configured; returns it (to be shut down at exit), or None when tracing is off."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (SDK default:
    # parentbased_always_on); the exporter reads its endpoint, headers and timeouts.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("tracing on: OTLP/HTTP exporter, service.name=%s", settings.service_name)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer("memstore_operator")


@contextmanager
def step(name: str, **attrs: str | int | bool) -> Iterator[trace.Span]:
    """A child span for one step of a reconcile (apply a child, check the backend, ...)."""
    with tracer().start_as_current_span(name, attributes=attrs) as span:
        yield span

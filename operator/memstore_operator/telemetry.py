"""The operator's own Prometheus metrics and OpenTelemetry spans.

Metrics live in one registry (:data:`REGISTRY`), served by :func:`serve_metrics` on
``MEMSTORE_OPERATOR_METRICS_PORT`` (default 8082; ``0`` or empty turns it off). Label
values are bounded: the trigger (create/update/resume/resync), the result and the
backend type, never a store's name.

Traces are off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; then the standard
``OTEL_*`` variables configure the OTLP/HTTP exporter, the sampler and
``OTEL_SERVICE_NAME`` (default ``memstore-operator``). Without an endpoint the
OpenTelemetry API's no-op tracer is used and the SDK is never imported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "memstore_operator_reconciles",
    "Reconcile passes of MemoryStore objects, by trigger and result.",
    ["trigger", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "memstore_operator_reconcile_errors",
    "Reconcile passes that ended in an error, by kind of error.",
    ["error"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "memstore_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass, backend check included.",
    ["trigger"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
BACKEND_CHECKS = Counter(
    "memstore_operator_backend_checks",
    "Backend reachability checks, by backend type and result (ok, failed, unknown).",
    ["backend", "result"],
    registry=REGISTRY,
)
STORES = Gauge(
    "memstore_operator_stores",
    "MemoryStore objects seen by the last resync pass, by phase.",
    ["phase"],
    registry=REGISTRY,
)
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")

TRIGGERS = ("create", "update", "resume", "resync")
RESULTS = ("ok", "invalid", "pending", "error")
for _t in TRIGGERS:
    RECONCILE_DURATION.labels(_t)
    for _r in RESULTS:
        RECONCILES.labels(_t, _r)
for _p in PHASES:
    STORES.labels(_p).set(0)


def serve_metrics() -> int | None:
    """Start the /metrics HTTP server (a daemon thread); returns its port or None."""
    raw = os.environ.get("MEMSTORE_OPERATOR_METRICS_PORT", "8082").strip()
    if not raw or raw == "0":
        return None
    addr = os.environ.get("MEMSTORE_OPERATOR_METRICS_ADDR", "0.0.0.0")  # noqa: S104
    server, _thread = start_http_server(int(raw), addr=addr, registry=REGISTRY)
    port = int(server.server_port)
    log.info("operator metrics on %s:%d/metrics", addr, port)
    return port


_tracing: dict[str, Any] = {}


def setup_tracing() -> bool:
    """Install an SDK tracer provider with the OTLP/HTTP exporter when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-specific variable) is set."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or _tracing:
        return bool(_tracing)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or "memstore-operator"
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (SDK default:
    # parentbased_always_on).
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracing["provider"] = provider
    log.info("tracing on: OTLP/HTTP exporter, service.name=%s", name)
    return True


def shutdown_tracing() -> None:
    provider = _tracing.pop("provider", None)
    if provider is not None:
        provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer("memstore_operator")


@contextmanager
def reconcile_span(trigger: str, namespace: str, name: str) -> Iterator[trace.Span]:
    """Span ``reconcile MemoryStore`` around one pass; its duration goes to the histogram.
    The caller records the result with :func:`record_result`."""
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
        RECONCILE_DURATION.labels(trigger).observe(time.perf_counter() - start)


@contextmanager
def step(name: str, **attrs: str | int | bool) -> Iterator[trace.Span]:
    """A child span for one step of a reconcile (apply a child, check the backend, ...)."""
    with tracer().start_as_current_span(name, attributes=attrs) as span:
        yield span


def record_result(trigger: str, result: str, error: str | None = None) -> None:
    RECONCILES.labels(trigger, result).inc()
    if error is not None:
        RECONCILE_ERRORS.labels(error).inc()


def record_backend_check(backend: str, ok: bool | None) -> None:
    result = "unknown" if ok is None else ("ok" if ok else "failed")
    BACKEND_CHECKS.labels(backend, result).inc()


def record_phases(phases: list[str]) -> None:
    for p in PHASES:
        STORES.labels(p).set(sum(1 for x in phases if x == p))

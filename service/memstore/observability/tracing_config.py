"""The OpenTelemetry SDK, assembled from the standard ``OTEL_*`` environment for one app.

Imported only when tracing is on (``tracing.tracing_enabled``). The SDK's classes read their
own variables (``SpanLimits``, ``BatchSpanProcessor``, ``Resource.create``, each exporter);
this module makes the choices the SDK leaves to its auto-configuration, which would install
a global provider: which exporters, propagators, sampler and id generator. Each is found
by name in the entry points the SDK itself uses (``opentelemetry_traces_exporter``,
``opentelemetry_propagator``, ``opentelemetry_traces_sampler``,
``opentelemetry_id_generator``), so any installed plugin works as with the SDK. See
``tracing``'s module doc for the rules and the start-up errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util._importlib_metadata import entry_points
from opentelemetry.util.types import Attributes

from memstore.core.errors import ConfigurationError

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "memstore"
DEFAULT_PROPAGATORS = "tracecontext,baggage"
# The OpenTelemetry specification's default (the Python SDK's auto-configuration picks grpc,
# which would silently break a collector address on port 4318).
DEFAULT_OTLP_PROTOCOL = "http/protobuf"
# The OTLP exporters' entry point names, by protocol: over HTTP, the SDK's exporter with
# memstore's encoder (observability/tracing_export.py).
OTLP_EXPORTERS = {"grpc": "otlp_proto_grpc", "http/protobuf": "memstore_otlp_proto_http"}
RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")


def setting(env: Mapping[str, str], name: str) -> str:
    # Empty means unset (OpenTelemetry configuration specification).
    return env.get(name, "").strip()


def _entry_point(group: str, name: str, variable: str) -> Any:
    """What an installed package registers as ``name`` in ``group``: the SDK's own plugin
    look-up."""
    found = next(iter(entry_points(group=group, name=name)), None)
    if found is None:
        known = sorted({ep.name for ep in entry_points(group=group)})
        raise ConfigurationError(
            f"{variable}: {name!r} is not installed; installed: {', '.join(known)}"
        )
    return found.load()


def span_exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters ``OTEL_TRACES_EXPORTER`` names (default ``otlp``), each built by its
    class from its own ``OTEL_EXPORTER_*`` variables."""
    names = [n.strip() for n in setting(env, "OTEL_TRACES_EXPORTER").split(",") if n.strip()]
    exporters = []
    for name in names or ["otlp"]:
        if name.lower() == "none":
            continue
        variable = "OTEL_TRACES_EXPORTER"
        if name == "otlp":
            protocol = (
                setting(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or setting(env, "OTEL_EXPORTER_OTLP_PROTOCOL")
                or DEFAULT_OTLP_PROTOCOL
            )
            if protocol not in OTLP_EXPORTERS:
                raise ConfigurationError(
                    f"OTLP protocol {protocol!r} (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL) is not "
                    f"supported; use one of {', '.join(OTLP_EXPORTERS)}"
                )
            name, variable = OTLP_EXPORTERS[protocol], f"OTLP protocol {protocol}"
        exporter_class = _entry_point("opentelemetry_traces_exporter", name, variable)
        try:
            exporters.append(exporter_class())
        except (ValueError, TypeError) as exc:  # a malformed OTEL_EXPORTER_* value
            raise ConfigurationError(f"trace exporter {name}: {exc}") from exc
    return exporters


def propagator_from_env(env: Mapping[str, str]) -> TextMapPropagator:
    """``OTEL_PROPAGATORS`` as ``opentelemetry.propagate`` reads it (default
    ``tracecontext,baggage``; ``none`` for none), for this app only."""
    configured = setting(env, "OTEL_PROPAGATORS") or DEFAULT_PROPAGATORS
    names = [n.strip() for n in configured.split(",") if n.strip()]
    if "none" in (n.lower() for n in names):
        return CompositePropagator([])
    return CompositePropagator(
        [_entry_point("opentelemetry_propagator", n, "OTEL_PROPAGATORS")() for n in names]
    )


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """``OTEL_TRACES_SAMPLER`` / ``_ARG`` through the SDK's sampler entry points (default
    ``parentbased_always_on``). An unknown name or a ratio outside [0, 1] is an error: the
    SDK would warn and sample every request, a silent hundredfold cost at a 1% ratio."""
    name = setting(env, "OTEL_TRACES_SAMPLER").lower() or "parentbased_always_on"
    factory = _entry_point("opentelemetry_traces_sampler", name, "OTEL_TRACES_SAMPLER")
    raw = setting(env, "OTEL_TRACES_SAMPLER_ARG")
    arg: float | str | None = raw or None
    if name in RATIO_SAMPLERS:
        try:
            ratio = float(raw or "1.0")
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a sampling ratio between 0 and 1"
            )
        arg = ratio
    sampler = factory(arg)
    if not isinstance(sampler, Sampler):
        raise ConfigurationError(f"OTEL_TRACES_SAMPLER={name!r} did not give a sampler")
    return sampler


class PreDrawnIdGenerator(IdGenerator):
    """The configured id generator, with one more step: the request path draws the trace
    id its sampling decision is made on (``draw_trace_id``), and when that request is
    sampled hands it over (``hand_over``) so that the span the SDK then starts gets the same
    id from ``generate_trace_id``. Drawing stores nothing: the 90% of requests that a 10%
    sampler drops pay for the id alone."""

    def __init__(self, inner: IdGenerator) -> None:
        self._inner = inner
        self._handed: ContextVar[int] = ContextVar("memstore_handed_trace_id", default=0)
        self.draw_trace_id = inner.generate_trace_id

    def hand_over(self, trace_id: int) -> None:
        """``trace_id`` is the next root span's (``0``: none is, any more)."""
        self._handed.set(trace_id)

    def generate_trace_id(self) -> int:
        handed = self._handed.get()
        if handed:
            self._handed.set(0)
            return handed
        return self._inner.generate_trace_id()

    def generate_span_id(self) -> int:
        return self._inner.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return self._inner.is_trace_id_random()


class RequestDecisionSampler(Sampler):
    """The tracer provider's sampler: the configured one (``configured``), except for the
    span of a request whose decision the request path already made on the configured
    sampler (``Tracing.request_span``), which gets that decision (``hand_over``) instead of
    a second call. The span's attributes, given at its start, are the ones the tracer
    passes in plus any the configured sampler added to its decision."""

    def __init__(self, configured: Sampler) -> None:
        self.configured = configured
        self._handed: ContextVar[SamplingResult | None] = ContextVar(
            "memstore_handed_decision", default=None
        )

    def hand_over(self, decision: SamplingResult | None) -> None:
        """``decision`` is the next span's (``None``: none is, any more)."""
        self._handed.set(decision)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        handed = self._handed.get()
        if handed is None:
            return self.configured.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        self._handed.set(None)
        if attributes and handed.decision.is_recording():  # type: ignore[no-untyped-call]
            merged = {**attributes, **handed.attributes}
            return SamplingResult(handed.decision, merged, handed.trace_state)
        return handed

    def get_description(self) -> str:
        return self.configured.get_description()


def configure(
    env: Mapping[str, str], version: str
) -> tuple[TracerProvider, RequestDecisionSampler, PreDrawnIdGenerator, TextMapPropagator]:
    """The app's tracer provider (one ``BatchSpanProcessor`` per exporter), its sampler, id
    generator and propagator, or a ``ConfigurationError`` naming the setting at fault."""
    sampler = RequestDecisionSampler(sampler_from_env(env))
    propagator = propagator_from_env(env)
    generator = setting(env, "OTEL_PYTHON_ID_GENERATOR") or "random"
    ids = PreDrawnIdGenerator(
        _entry_point("opentelemetry_id_generator", generator, "OTEL_PYTHON_ID_GENERATOR")()
    )
    resource = Resource.create({})
    defaults: dict[str, Any] = {}
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    if SERVICE_VERSION not in resource.attributes:
        defaults[SERVICE_VERSION] = version
    resource = resource.merge(Resource(defaults))
    try:
        limits = SpanLimits()
    except ValueError as exc:  # the SDK's message names the variable
        raise ConfigurationError(str(exc)) from exc
    exporters = span_exporters(env)
    processors = []
    for exporter in exporters:
        try:
            processors.append(BatchSpanProcessor(exporter))
        except ValueError as exc:  # e.g. a batch larger than the queue
            for started in processors:  # each runs a worker thread
                started.shutdown()  # type: ignore[no-untyped-call]
            raise ConfigurationError(f"OTEL_BSP_*: {exc}") from exc
    provider = TracerProvider(
        sampler=sampler,
        resource=resource,
        id_generator=ids,
        span_limits=limits,
        shutdown_on_exit=False,  # the app shuts it down; several apps may share a process
    )
    for processor in processors:
        provider.add_span_processor(processor)
    log.info(
        "tracing on",
        extra={
            "service_name": resource.attributes.get(SERVICE_NAME),
            "sampler": sampler.get_description(),
            "exporters": [type(e).__name__ for e in exporters],
        },
    )
    return provider, sampler, ids, propagator

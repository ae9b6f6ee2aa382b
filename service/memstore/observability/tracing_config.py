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
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
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


class RequestPropagator(CompositePropagator):
    """The configured propagators (``OTEL_PROPAGATORS``), as the SDK composes them, and
    ``parent_headers``: the request headers without which their extraction finds nothing
    (no parent, no baggage), when every one of them is a propagator whose extraction is known
    to read only those (its class exactly: a subclass may read more); ``None`` otherwise, and
    then every request is extracted. A request carrying none of them skips the extraction,
    which most requests (callers that do not trace) would otherwise pay for nothing."""

    def __init__(self, propagators: Sequence[TextMapPropagator]) -> None:
        super().__init__(propagators)
        read = [_PARENT_HEADERS.get(type(propagator)) for propagator in propagators]
        self.parent_headers = (
            frozenset(name for names in read if names for name in names)
            if None not in read
            else None
        )


def _known_parent_headers() -> dict[type, tuple[str, ...]]:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    known: dict[type, tuple[str, ...]] = {
        TraceContextTextMapPropagator: ("traceparent",),
        W3CBaggagePropagator: ("baggage",),
    }
    try:
        from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
    except ImportError:  # pragma: no cover - b3 is a dependency, but an optional plugin
        return known
    # Both read the single header first, then the multiple ones; nothing without a trace id.
    known[B3MultiFormat] = known[B3SingleFormat] = ("b3", "x-b3-traceid")
    return known


_PARENT_HEADERS = _known_parent_headers()


def propagator_from_env(env: Mapping[str, str]) -> RequestPropagator:
    """``OTEL_PROPAGATORS`` as ``opentelemetry.propagate`` reads it (default
    ``tracecontext,baggage``; ``none`` for none), for this app only."""
    configured = setting(env, "OTEL_PROPAGATORS") or DEFAULT_PROPAGATORS
    names = [n.strip() for n in configured.split(",") if n.strip()]
    if "none" in (n.lower() for n in names):
        return RequestPropagator([])
    return RequestPropagator(
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
    sampler = FASTER_SAMPLERS.get(factory, factory)(arg)
    if not isinstance(sampler, Sampler):
        raise ConfigurationError(f"OTEL_TRACES_SAMPLER={name!r} did not give a sampler")
    return sampler


# A root request's decision with the ratio samplers: the SDK's own rule, and for a dropped
# request one shared result (the SDK builds an equal one each time: the decision, an empty
# attribute mapping, no trace state).
_DROPPED = SamplingResult(Decision.DROP)
_RATIO_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT


def _may_have_parent(parent_context: Context | None) -> bool:
    # An empty context (a request without trace headers) has no parent span; ``None`` means
    # the current context, which may have one.
    return (parent_context is None or bool(parent_context)) and get_current_span(
        parent_context
    ).get_span_context().is_valid


class _RootFastPath(Sampler):
    """For a span with no parent possible (an empty parent context: a request without
    trace headers), the SDK's ratio rule on the trace id alone, and one shared result when
    dropped; everything else goes through the SDK sampler this is mixed into. The same
    decisions, attributes and trace state as the SDK's (tests/unit/test_sampling.py), in a
    third of its instructions: it runs on every request, sampled or not."""

    _root_bound: int

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
        if _may_have_parent(parent_context):
            # A mixin: the SDK sampler after it in the MRO implements it.
            return super().should_sample(  # type: ignore[safe-super]
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        if trace_id & _RATIO_LIMIT < self._root_bound:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return _DROPPED


class RatioSampler(_RootFastPath, TraceIdRatioBased):
    """The SDK's ``traceidratio`` sampler, with the root fast path."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self._root_bound = self.bound


class ParentBasedRatioSampler(_RootFastPath, ParentBasedTraceIdRatio):
    """The SDK's ``parentbased_traceidratio`` sampler, with the root fast path."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self._root_bound = TraceIdRatioBased.get_bound_for_rate(rate)


# The SDK's ratio samplers, as its entry points give them -> the equivalents above; a
# plugin registered under the same name in their place is used as it is.
FASTER_SAMPLERS: dict[Any, Any] = {
    TraceIdRatioBased: RatioSampler,
    ParentBasedTraceIdRatio: ParentBasedRatioSampler,
}


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
) -> tuple[TracerProvider, RequestDecisionSampler, PreDrawnIdGenerator, RequestPropagator]:
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

"""OpenTelemetry tracing: the SDK, configured by the standard ``OTEL_*`` environment.

**When tracing is on.** Off with ``OTEL_SDK_DISABLED=true``. Otherwise on when
``OTEL_TRACES_EXPORTER`` names an exporter (anything but ``none``), or, with that variable
unset, when an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; the exporter is then ``otlp``). When off,
``Tracing.from_env`` returns ``None``, nothing of OpenTelemetry beyond the API is imported
and the request path pays one ``is None`` test.

**What is standard.** Everything is the SDK's own: ``TracerProvider`` and its spans, the
sampler (``OTEL_TRACES_SAMPLER`` / ``_ARG``, any name of the ``opentelemetry_traces_sampler``
entry points; the SDK's two ratio samplers as subclasses with a shorter root path),
``SpanLimits`` (``OTEL_SPAN_*_LIMIT``, ``OTEL_ATTRIBUTE_*_LIMIT``), one
``BatchSpanProcessor`` per exporter (``OTEL_BSP_*``), ``Resource.create``
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``; service name ``memstore`` when unset),
the id generator (``OTEL_PYTHON_ID_GENERATOR``). Exporters and propagators are
found the way the SDK finds them, by name in the ``opentelemetry_traces_exporter`` and
``opentelemetry_propagator`` entry points, so ``OTEL_TRACES_EXPORTER`` takes a comma list
(``otlp``, ``console``, any installed exporter) and ``OTEL_PROPAGATORS`` any installed
propagator (``tracecontext``, ``baggage``, ``b3``, ``b3multi``). ``otlp`` means gRPC or
HTTP/protobuf by ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``,
default ``http/protobuf`` (the OpenTelemetry specification's default; the Python SDK's
auto-configuration picks ``grpc``, which would silently break a collector address on port
4318). The exporters read their own variables (endpoint, headers, timeout, compression,
certificates).

**Start-up errors.** A setting the SDK would refuse (an unknown exporter or propagator, an
OTLP protocol it lacks, a malformed span limit or batch size) is a ``ConfigurationError``
naming the variable, so ``memstore serve`` stops with one line instead of a traceback. So
is an unknown sampler or a ratio outside [0, 1]: there the SDK would warn and sample every
request, a silent hundredfold cost at a 1% ratio.

**The request path.** Sampling is decided before any span exists
(``Tracing.request_span``): the configured propagator extracts the parent (not even that
when the request has none of the headers it reads: ``RequestPropagator``), the configured
sampler decides on it and on a trace id drawn ahead (``PreDrawnIdGenerator``), and only a
sampled request gets an SDK span, which takes that same trace id and that same decision
(``RequestDecisionSampler``: the configured sampler is asked once). An unsampled request
creates no span and no context, and its children (backend spans) are not created either
(``child_span``): with every standard sampler they would not be sampled.

The tracer provider belongs to the application (never installed globally), so several
apps in one process (tests) do not share one; ``shutdown`` flushes it when the app stops.
Attributes follow the OpenTelemetry semantic conventions (HTTP server, database client).
Never recorded: payloads, query strings, headers (tokens), connection strings.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from memstore.core.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanKind, Tracer

    from memstore.core.settings import Settings
    from memstore.observability.tracing_config import (
        PreDrawnIdGenerator,
        RequestDecisionSampler,
        RequestPropagator,
    )


# db.system.name well-known values for each backend (the embedded backend is SQLite).
DB_SYSTEM = {"embedded": "sqlite", "redis": "redis", "mongodb": "mongodb"}


def _env(env: Mapping[str, str], name: str) -> str:
    # Empty means unset (OpenTelemetry configuration specification).
    return env.get(name, "").strip()


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (see the module doc)."""
    env = os.environ if environ is None else environ
    if _env(env, "OTEL_SDK_DISABLED").lower() == "true":
        return False
    exporters = _env(env, "OTEL_TRACES_EXPORTER")
    if exporters:
        return exporters.lower() != "none"
    return bool(
        _env(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _env(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    )


@dataclass(frozen=True, slots=True)
class BackendSpanInfo:
    """Static database-client attributes for one backend, computed once."""

    name_suffix: str
    attributes: dict[str, Any]


class Tracing:
    """The application's tracer provider, propagator and request-path sampling."""

    def __init__(
        self,
        provider: TracerProvider,
        sampler: RequestDecisionSampler,
        ids: PreDrawnIdGenerator,
        propagator: RequestPropagator,
    ) -> None:
        from opentelemetry import context, trace
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.provider = provider
        self.sampler = sampler
        self._decide = sampler.configured.should_sample
        self.ids = ids
        self.propagator = propagator
        self._parent_headers = propagator.parent_headers
        self._root = Context()  # the parent of a request that carries no context
        self.tracer: Tracer = provider.get_tracer("memstore", _version())
        self.resource_attributes = dict(provider.resource.attributes)
        # Bound once: attribute look-ups on modules cost on every request.
        self.set_span_in_context = trace.set_span_in_context
        self._get_current_span = trace.get_current_span
        self.attach = context.attach
        self.detach = context.detach
        self.SERVER = SpanKind.SERVER
        self.CLIENT = SpanKind.CLIENT
        self.INTERNAL = SpanKind.INTERNAL
        self.error_status = Status(StatusCode.ERROR)
        self.Status = Status
        self.ERROR = StatusCode.ERROR
        # True while a request that was not sampled runs: its children are not created.
        self._unsampled: ContextVar[bool] = ContextVar("memstore_unsampled", default=False)
        # Bound C callables, no Python frame: these run on every request that is not sampled.
        # ``unsampled()`` marks the current request as not sampled and returns the token for
        # ``sampled_again(token)``; ``in_unsampled()`` is true inside such a request.
        self.unsampled: Callable[[], Token[bool]] = functools.partial(self._unsampled.set, True)
        self.sampled_again: Callable[[Token[bool]], None] = self._unsampled.reset
        self.in_unsampled: Callable[[], bool] = self._unsampled.get

    @classmethod
    def from_env(cls) -> Tracing | None:
        """A ``Tracing`` configured by ``os.environ`` (where the SDK's classes read their
        settings too), or ``None`` when tracing is off (see module doc)."""
        if not tracing_enabled(os.environ):
            return None
        try:
            from memstore.observability.tracing_config import configure
        except ValueError as exc:  # the SDK checks its span limit variables at import
            raise ConfigurationError(str(exc)) from exc
        return cls(*configure(os.environ, _version()))

    def shutdown(self) -> None:
        """Export every span ended so far and stop the exporters (blocking)."""
        self.provider.shutdown()

    # -- span helpers ---------------------------------------------------------------------

    def backend_info(self, settings: Settings) -> BackendSpanInfo:
        """Database-client attributes for the configured backend (no credentials)."""
        kind = settings.memory_type
        attrs: dict[str, Any] = {
            "db.system.name": DB_SYSTEM.get(kind, kind),
            "memstore.backend": kind,
        }
        if kind == "redis":
            attrs["db.namespace"] = str(settings.redis_db)
            attrs["server.address"] = settings.redis_host
            attrs["server.port"] = settings.redis_port
        elif kind == "mongodb":
            # The URI may carry credentials: only the database name is recorded.
            attrs["db.namespace"] = settings.mongodb_db
        else:
            attrs["db.namespace"] = settings.data_path.name
        return BackendSpanInfo(str(attrs["db.namespace"]), attrs)

    def request_parent(self, headers: Mapping[str, str]) -> Context | None:
        """The caller's context, as the configured propagators read it; ``None`` when the
        request carries none of the headers they read (``RequestPropagator.parent_headers``)."""
        needed = self._parent_headers
        if needed is None:
            return self.propagator.extract(headers)
        for name in needed:
            if name in headers:
                return self.propagator.extract(headers)
        return None

    def request_span(
        self, parent: Context | None, name: str, attributes: Callable[[], dict[str, Any]]
    ) -> Span | None:
        """The server span of a request, or ``None`` when the sampler drops it: decided
        first, on the parent and a trace id drawn ahead, so a dropped request creates no
        span; a sampled one gets the SDK's span, with that trace id, that decision (the
        configured sampler is not asked twice) and ``attributes()`` from its start (one
        attribute set, not one per attribute). ``parent`` ``None``: a root span."""
        if parent is None:
            parent = self._root
            root = True
        else:
            parent_span = self._get_current_span(parent).get_span_context()
            root = not parent_span.is_valid
        trace_id = self.ids.draw_trace_id() if root else parent_span.trace_id
        decision = self._decide(parent, trace_id, name, self.SERVER)
        if not decision.decision.is_recording():  # type: ignore[no-untyped-call]  # the SDK's
            return None
        if root:
            self.ids.hand_over(trace_id)
        self.sampler.hand_over(decision)
        try:
            span = self.tracer.start_span(name, parent, self.SERVER, attributes())
        finally:
            # Taken by the span just started, unless the SDK started none (a tracer the
            # provider disabled): then no other span may take them.
            self.sampler.hand_over(None)
            if root:
                self.ids.hand_over(0)
        return span if span.is_recording() else None

    def child_span(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], start_time: int | None = None
    ) -> Span | None:
        """A child of the current span (a backend operation), or ``None``
        inside a request that is not sampled (it is not even created: this keeps 10%
        sampling cheap for the other 90% of requests) or when the sampler drops it."""
        if self._unsampled.get():
            return None
        span = self.tracer.start_span(name, None, kind, attributes, start_time=start_time)
        return span if span.is_recording() else None

    def set_current_attribute(self, key: str, value: str | bool | int | float) -> None:
        """An attribute on the current span (in the service: the request's server span),
        unless the request is not sampled."""
        if not self._unsampled.get():
            self._get_current_span().set_attribute(key, value)

    def record_error(self, span: Span, exc: BaseException, error_type: str) -> None:
        if span.is_recording():
            span.record_exception(exc)
            span.set_attribute("error.type", error_type)
            span.set_status(self.Status(self.ERROR, error_type))


def traceresponse(span: Span) -> str:
    """The W3C Trace Context (level 2) ``traceresponse`` header value for a sampled span."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def _version() -> str:
    try:
        return metadata.version("memstore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"

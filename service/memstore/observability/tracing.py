"""OpenTelemetry tracing, configured only through the standard ``OTEL_*`` environment.

Off unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``); also off with ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``. When off, ``Tracing.from_env`` returns ``None``, nothing of
OpenTelemetry beyond the API is imported and the hot path pays one ``is None`` test.

When on: ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (read by the SDK's
``Resource.create``; service name defaults to ``memstore``), ``OTEL_EXPORTER_OTLP_*``
(headers, timeout, compression, TLS; OTLP over HTTP/protobuf only, through the SDK
exporter's client), ``OTEL_BSP_SCHEDULE_DELAY`` / ``_MAX_EXPORT_BATCH_SIZE`` /
``_MAX_QUEUE_SIZE`` (batching), ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``.

Sampling: the six standard samplers (``always_on``, ``always_off``, ``traceidratio`` and
their ``parentbased_`` forms; default ``parentbased_always_on``), decided exactly as the
SDK's samplers decide (``SamplingPlan``, built from the SDK sampler objects). The request
path decides from the ``traceparent`` header alone, *before* any span or context object
exists (``Tracing.sample_request``): a request that is not sampled costs about a
microsecond. Any other sampler name, or a ratio outside [0, 1], is a configuration error
(the SDK would silently sample everything instead).

Spans are recorded by ``spans.SpanTracer`` (an implementation of the OpenTelemetry API)
and exported by ``span_export``; the reasons and figures are in those modules and in
docs/architecture.md, Observability. The tracer is owned by the application (not installed
globally), so several apps in one process (tests) do not share one; it exports from the
app's event loop while the app runs and is flushed when the app stops.

Attributes follow the OpenTelemetry semantic conventions (HTTP server, database client).
Never recorded: payloads, query strings, headers (tokens), connection strings.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from multidict import istr

from memstore.core.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, SpanKind

    from memstore.core.settings import Settings
    from memstore.observability.span_export import SpanBatcher
    from memstore.observability.spans import RecordedSpan, SpanTracer

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "memstore"

# db.system.name well-known values for each backend (the embedded backend is SQLite).
DB_SYSTEM = {"embedded": "sqlite", "redis": "redis", "mongodb": "mongodb"}


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment asks for traces (an OTLP endpoint, SDK not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


_TRACEPARENT_HEADER = istr("traceparent")  # pre-folded: a cheaper header look-up
# W3C traceparent, as the SDK's TraceContext propagator parses it.
_TRACEPARENT = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
# TraceIdRatioBased looks at the low 64 bits of the trace id.
_TRACE_ID_LOW = (1 << 64) - 1
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    """A standard sampler's decision in a form the request path can test cheaply.

    Sampled when ``trace_id & _TRACE_ID_LOW < bound`` (``bound`` 0 = never, 2**64 =
    always: the SDK's ``TraceIdRatioBased`` rule), or, when ``parent_based`` and there is
    a parent, when the parent is sampled (the SDK's ``ParentBased`` defaults, the only
    ones the environment can select)."""

    parent_based: bool
    bound: int
    description: str

    def should_sample(self, trace_id: int, parent: SpanContext | None) -> bool:
        if parent is not None and self.parent_based:
            return bool(parent.trace_flags.sampled)
        return trace_id & _TRACE_ID_LOW < self.bound


def sampling_plan(env: Mapping[str, str]) -> SamplingPlan:
    """The plan for ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``, from the SDK's
    own sampler objects (their bound and description)."""
    from opentelemetry.sdk.trace import sampling

    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name not in _SAMPLERS:
        raise ConfigurationError(
            f"OTEL_TRACES_SAMPLER={name!r} is not supported; use one of {', '.join(_SAMPLERS)}"
        )
    root: sampling.Sampler
    if name.endswith("always_on"):
        root, bound = sampling.ALWAYS_ON, 1 << 64
    elif name.endswith("always_off"):
        root, bound = sampling.ALWAYS_OFF, 0
    else:
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
        try:
            rate = float(raw)
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a sampling ratio between 0 and 1"
            )
        ratio = sampling.TraceIdRatioBased(rate)
        root, bound = ratio, ratio.bound
    parent_based = name.startswith("parentbased_")
    sampler = sampling.ParentBased(root) if parent_based else root
    return SamplingPlan(parent_based, bound, sampler.get_description())


@dataclass(frozen=True, slots=True)
class BackendSpanInfo:
    """Static database-client attributes for one backend, computed once."""

    name_suffix: str
    attributes: dict[str, Any]


class Tracing:
    """The application's tracer, span export and the request path's sampling."""

    def __init__(
        self,
        tracer: SpanTracer,
        batcher: SpanBatcher,
        plan: SamplingPlan,
        resource_attributes: Mapping[str, Any],
    ) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
        from opentelemetry.trace.span import TraceState

        self.tracer = tracer
        self.batcher = batcher
        self.plan = plan
        self.resource_attributes = dict(resource_attributes)
        # Bound once: attribute look-ups on modules cost on every request.
        self.set_span_in_context = trace.set_span_in_context
        self.get_current_span = trace.get_current_span
        self.attach = context.attach
        self.detach = context.detach
        self.SERVER = SpanKind.SERVER
        self.CLIENT = SpanKind.CLIENT
        self.INTERNAL = SpanKind.INTERNAL
        self.error_status = Status(StatusCode.ERROR)
        self.Status = Status
        self.ERROR = StatusCode.ERROR
        self._SpanContext = SpanContext
        self._TraceFlags = TraceFlags
        self._TraceState = TraceState
        self._random_bits = random.getrandbits
        # True while a request that was not sampled runs: its children are not created.
        self._unsampled: ContextVar[bool] = ContextVar("memstore_unsampled", default=False)
        # Bound C callables, no Python frame: these run on every request that is not sampled.
        # ``unsampled()`` marks the current request as not sampled and returns the token for
        # ``sampled_again(token)``; ``in_unsampled()`` is true inside such a request.
        self.unsampled: Callable[[], Token[bool]] = functools.partial(self._unsampled.set, True)
        self.sampled_again: Callable[[Token[bool]], None] = self._unsampled.reset
        self.in_unsampled: Callable[[], bool] = self._unsampled.get

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """A configured ``Tracing``, or ``None`` when tracing is off (see module doc)."""
        env = os.environ if environ is None else environ
        if not tracing_configured(env):
            return None
        # Empty means unset (OpenTelemetry configuration specification).
        exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
        if exporter_name != "otlp":
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={exporter_name} is not supported (use otlp or none)"
            )
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if protocol != "http/protobuf":
            raise ConfigurationError(
                f"OTLP protocol {protocol!r} is not supported; use http/protobuf "
                "(port 4318 on a collector)"
            )
        plan = sampling_plan(env)
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

        from memstore.observability.span_export import OtlpHttpTarget, SpanBatcher, SpanEncoder
        from memstore.observability.spans import SpanTracer

        resource = Resource.create({})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        resource = resource.merge(Resource({SERVICE_VERSION: _version()}))
        encoder = SpanEncoder(resource.attributes, "memstore", _version(), resource.schema_url)
        batcher = SpanBatcher(encoder, OtlpHttpTarget.from_env(env), env)
        tracer = SpanTracer(batcher, plan.should_sample)
        log.info(
            "tracing on",
            extra={
                "service_name": resource.attributes.get(SERVICE_NAME),
                "sampler": plan.description,
            },
        )
        return cls(tracer, batcher, plan, resource.attributes)

    async def start(self) -> None:
        """Begin exporting, from the app's event loop."""
        await self.batcher.start()

    async def flush(self) -> None:
        """Export every span ended so far."""
        await self.batcher.flush()

    async def stop(self) -> None:
        """Export what is queued and stop (the app's cleanup)."""
        await self.batcher.stop()

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

    def sample_request(self, headers: Mapping[str, str]) -> tuple[int, SpanContext | None] | None:
        """The sampling decision for a request, from its W3C ``traceparent`` (and
        ``tracestate``) alone: ``None`` when not sampled, else the trace id and the remote
        parent (``None`` for a root) for ``tracer.new_span``. A malformed ``traceparent``
        is ignored, as the W3C propagator ignores it: the request starts a new trace."""
        plan = self.plan
        traceparent = headers.get(_TRACEPARENT_HEADER)
        if traceparent and len(traceparent) <= 512:  # the W3C propagator's limit too
            match = _TRACEPARENT.match(traceparent)
            if (
                match is not None
                and match[1] != "ff"
                and match[2] != _INVALID_TRACE_ID
                and match[3] != _INVALID_SPAN_ID
                and (match[1] != "00" or match[5] is None)
            ):
                trace_id = int(match[2], 16)
                flags = int(match[4], 16)
                if plan.parent_based:
                    if not flags & 1:
                        return None
                elif trace_id & _TRACE_ID_LOW >= plan.bound:
                    return None
                state = headers.get("tracestate")
                parent = self._SpanContext(
                    trace_id,
                    int(match[3], 16),
                    True,
                    self._TraceFlags(flags),
                    self._TraceState.from_header([state]) if state else None,
                )
                return trace_id, parent
        # A root: the ratio rule reads the low 64 bits, so draw those first and the high
        # ones only for the sampled few.
        low = self._random_bits(64)
        if low >= plan.bound:
            return None
        return (self._random_bits(64) << 64 | low) or 1, None

    def child_span(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], start_time: int | None = None
    ) -> RecordedSpan | None:
        """A child of the current span (a backend operation, a cache lookup), or ``None``
        inside a request or trace that is not sampled: with every standard sampler its
        children would not be sampled either, so they are not even created. This keeps
        10% sampling cheap for the other 90% of requests."""
        if self._unsampled.get():
            return None
        return self.tracer.child(name, kind, attributes, start_time)

    def record_error(self, span: Span, exc: BaseException, error_type: str) -> None:
        if span.is_recording():
            span.record_exception(exc)
            span.set_attribute("error.type", error_type)
            span.set_status(self.Status(self.ERROR, error_type))


def traceresponse(span: RecordedSpan) -> str:
    """The W3C Trace Context (level 2) ``traceresponse`` header value for a sampled span."""
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-01"


def _version() -> str:
    try:
        return metadata.version("memstore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"

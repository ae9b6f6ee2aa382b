"""OpenTelemetry tracing, configured only through the standard ``OTEL_*`` environment.

Off unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``); also off with ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``. When off, ``Tracing.from_env`` returns ``None``, the SDK is
never imported and the hot path pays one ``is None`` test.

When on, the SDK reads the rest itself: ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``
(service name defaults to ``memstore``), ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``
(e.g. ``parentbased_traceidratio`` / ``0.1``), ``OTEL_EXPORTER_OTLP_*`` (headers, timeout,
compression; OTLP over HTTP/protobuf only), ``OTEL_BSP_*`` (batching), ``OTEL_PROPAGATORS``
(default W3C ``tracecontext,baggage``).

The tracer provider is owned by the application (not installed globally), so several apps in
one process (tests) do not fight over it; it is flushed and shut down with the app. Spans are
started and ended explicitly rather than through context managers: it is measurably cheaper
on the request path (see docs/architecture.md, Observability).

Attributes follow the OpenTelemetry semantic conventions (HTTP server, database client).
Never recorded: payloads, query strings, headers (tokens), connection strings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from memstore.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from memstore.config import Settings

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "memstore"

# db.system.name well-known values for each backend (the embedded backend is SQLite).
DB_SYSTEM = {"embedded": "sqlite", "redis": "redis", "mongodb": "mongodb"}


def tracing_configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment asks for traces (an OTLP endpoint, SDK not disabled)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


@dataclass(frozen=True, slots=True)
class BackendSpanInfo:
    """Static database-client attributes for one backend, computed once."""

    name_suffix: str
    attributes: dict[str, Any]


class Tracing:
    """The application's tracer provider and tracer."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("memstore", _version())
        # Bound once: attribute look-ups on modules cost on every request.
        self.extract = propagate.extract
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Tracing | None:
        """A configured ``Tracing``, or ``None`` when tracing is off (see module doc)."""
        env = os.environ if environ is None else environ
        if not tracing_configured(env):
            return None
        exporter_name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
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
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        resource = resource.merge(Resource({SERVICE_VERSION: _version()}))
        try:
            # No sampler argument: the SDK reads OTEL_TRACES_SAMPLER(_ARG) itself.
            provider = TracerProvider(resource=resource)
        except ValueError as exc:
            raise ConfigurationError(f"invalid OTEL trace settings: {exc}") from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info(
            "tracing on",
            extra={
                "service_name": resource.attributes.get(SERVICE_NAME),
                "sampler": provider.sampler.get_description(),
            },
        )
        return cls(provider)

    def shutdown(self) -> None:
        """Flush what is buffered and stop exporting."""
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

    def child_wanted(self) -> bool:
        """False inside a trace that was not sampled: with every standard sampler (parent-
        based or trace-id ratio) its children would not be sampled either, so they are not
        even created. This keeps 10% sampling cheap for the other 90% of requests."""
        ctx = self.get_current_span().get_span_context()
        return not ctx.is_valid or ctx.trace_flags.sampled

    def record_error(self, span: Span, exc: BaseException, error_type: str) -> None:
        if span.is_recording():
            span.record_exception(exc)
            span.set_attribute("error.type", error_type)
            span.set_status(self.Status(self.ERROR, error_type))


def traceresponse(span: Span) -> str:
    """The W3C Trace Context (level 2) ``traceresponse`` header value for ``span``."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _version() -> str:
    try:
        return metadata.version("memstore")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0"

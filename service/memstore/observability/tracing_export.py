"""The OTLP/HTTP span exporter memstore plugs into the SDK: the SDK's own exporter (endpoint,
headers, compression, TLS, timeouts and retries from ``OTEL_EXPORTER_OTLP_*``), with the
request body written straight in the protobuf wire format.

Why: the SDK's encoder builds a protobuf object per span, attribute and value, then
serialises them: about 45 µs of the exporter thread's CPU per server span, more than the
span itself. Same run, cache-hit GET, server CPU per request: 100% sampling 158 µs with
this encoder against 187 µs with the SDK's (``OTEL_TRACES_EXPORTER=otlp_proto_http``);
10% sampling 89 against 92 µs, untraced 64 (bench/README.md, "Tracing cost").
``encode_request`` writes the same ``ExportTraceServiceRequest`` bytes directly, reusing
the bytes of repeated attribute pairs, names and the resource (a few µs a span);
tests/unit/test_span_encoding.py parses its output and compares it, message for message,
with the SDK encoder's. Field numbers: opentelemetry-proto ``trace/v1/trace.proto``,
``common/v1/common.proto``, ``resource/v1/resource.proto``.

The exporter's public interface has no place for another encoder: ``export`` is
reimplemented from the SDK's own and uses four of its private members (``_shutdown``,
``_metrics``, ``_max_request_size``, ``_client``) and ``_common._is_request_too_large``.
pyproject.toml therefore pins opentelemetry-exporter-otlp-proto-http to the minor version
this was written against; tests/unit/test_span_encoding.py and the collector table in
tests/observability fail if a new minor moves them.

Registered as the ``memstore_otlp_proto_http`` entry point of
``opentelemetry_traces_exporter``; ``OTEL_TRACES_EXPORTER=otlp`` over ``http/protobuf``
selects it, and ``otlp_proto_http`` still names the SDK's exporter unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http._common import _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, StatusCode

_pack_q = struct.Struct("<Q").pack
_pack_d = struct.Struct("<d").pack
_pack_i = struct.Struct("<I").pack

# Span.flags (SpanFlags in trace.proto): whether the parent is known remote, and is.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
# OTLP's SpanKind is the API's value + 1.
_KIND = {kind: bytes((0x30, kind.value + 1)) for kind in SpanKind}
_CACHE_LIMIT = 4096  # encoded names and attribute pairs kept; cleared when full


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + _varint(len(payload)) + payload


def _uint(tag: bytes, n: int) -> bytes:
    """A varint field, left out when zero (proto3)."""
    return tag + _varint(n) if n else b""


# Status.code (an enum: its ``.value`` is slow to read), and the whole field without a
# description (the SDK encoder always sets the status, empty when unset).
_STATUS_CODE = {code: _uint(b"\x18", code.value) for code in StatusCode}
_STATUS = {code: _field(b"\x7a", encoded) for code, encoded in _STATUS_CODE.items()}


def _any_value(value: Any) -> bytes:
    """An ``AnyValue`` message body, as the SDK encoder fills it."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8", "surrogatepass"))
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64, two's complement
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        body = b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items())
        return _field(b"\x32", body)
    raise TypeError(f"invalid attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode("utf-8", "surrogatepass")) + _field(
        b"\x12", _any_value(value)
    )


class SpanEncoder:
    """Encodes batches of SDK spans; used by one exporter thread at a time."""

    def __init__(self) -> None:
        # (key, type, value) -> length-prefixed KeyValue; the type is in the key because
        # True == 1 and both hash alike, but they encode differently.
        self._kv: dict[tuple[str, type, Any], bytes] = {}
        self._names: dict[str, bytes] = {}
        # By identity (a resource's hash is a JSON dump of it): (the object, its bytes).
        self._resources: dict[int, tuple[Resource, bytes]] = {}
        self._scopes: dict[int, tuple[InstrumentationScope | None, bytes]] = {}

    def attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
        """Each attribute as a complete ``KeyValue`` field with ``tag``."""
        if not attributes:
            return b""
        cache = self._kv
        out = []
        for key, value in attributes.items():
            kind = type(value)
            if kind is str or kind is int or kind is bool:
                cache_key = (key, kind, value)
                encoded = cache.get(cache_key)
                if encoded is None:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    kv = _key_value(key, value)
                    encoded = cache[cache_key] = _varint(len(kv)) + kv
                out.append(tag + encoded)
            else:
                out.append(_field(tag, _key_value(key, value)))
        return b"".join(out)

    def _resource(self, resource: Resource) -> bytes:
        """``ResourceSpans.resource`` field (schema url: see ``request``)."""
        cached = self._resources.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        encoded = _field(b"\x0a", self.attributes(b"\x0a", resource.attributes))
        self._resources[id(resource)] = (resource, encoded)
        return encoded

    def _scope(self, scope: InstrumentationScope | None) -> bytes:
        """``ScopeSpans.scope`` field (the SDK always sets it, empty without a scope)."""
        cached = self._scopes.get(id(scope))
        if cached is not None and cached[0] is scope:
            return cached[1]
        body = b""
        if scope is not None:
            body = _field(b"\x0a", scope.name.encode())
            if scope.version:
                body += _field(b"\x12", scope.version.encode())
            body += self.attributes(b"\x1a", scope.attributes)
        encoded = _field(b"\x0a", body)
        self._scopes[id(scope)] = (scope, encoded)
        return encoded

    def span(self, span: ReadableSpan) -> bytes:
        """One ``ScopeSpans.spans`` field."""
        context = span.context
        assert context is not None  # an SDK span always has one
        parts = [
            b"\x0a\x10",
            context.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            context.span_id.to_bytes(8, "big"),
        ]
        if context.trace_state:
            state = ",".join(f"{k}={v}" for k, v in context.trace_state.items())
            parts.append(_field(b"\x1a", state.encode()))
        parent = span.parent
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
        name = self._names.get(span.name)
        if name is None:
            if len(self._names) >= _CACHE_LIMIT:
                self._names.clear()
            name = self._names[span.name] = _field(b"\x2a", span.name.encode())
        parts.append(name)
        parts.append(_KIND[span.kind])
        parts.append(b"\x39" + _pack_q(span.start_time or 0))
        parts.append(b"\x41" + _pack_q(span.end_time or 0))
        parts.append(self.attributes(b"\x4a", span.attributes))
        parts.append(_uint(b"\x50", span.dropped_attributes))
        for event in span.events:
            body = (
                b"\x09"
                + _pack_q(event.timestamp)
                + _field(b"\x12", event.name.encode())
                + self.attributes(b"\x1a", event.attributes)
                + _uint(b"\x20", event.dropped_attributes)
            )
            parts.append(_field(b"\x5a", body))
        parts.append(_uint(b"\x60", span.dropped_events))
        for link in span.links:
            body = (
                b"\x0a\x10"
                + link.context.trace_id.to_bytes(16, "big")
                + b"\x12\x08"
                + link.context.span_id.to_bytes(8, "big")
                + self.attributes(b"\x22", link.attributes)
                + _uint(b"\x28", link.dropped_attributes)
                + b"\x35"
                + _pack_i(_flags(link.context))
            )
            parts.append(_field(b"\x6a", body))
        parts.append(_uint(b"\x70", span.dropped_links))
        status = span.status
        description = status.description
        if description:
            code = _STATUS_CODE[status.status_code]
            parts.append(_field(b"\x7a", _field(b"\x12", description.encode()) + code))
        else:
            parts.append(_STATUS[status.status_code])
        parts.append(b"\x85\x01" + _pack_i(_flags(parent)))
        return _field(b"\x12", b"".join(parts))

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """An ``ExportTraceServiceRequest``: spans grouped by resource, then scope."""
        # By identity, as above; in first-seen order, as the SDK encoder groups them.
        grouped: dict[int, tuple[Resource, dict[int, tuple[Any, list[bytes]]]]] = {}
        for span in spans:
            resource = span.resource
            scope = span.instrumentation_scope or None
            by_scope = grouped.setdefault(id(resource), (resource, {}))[1]
            by_scope.setdefault(id(scope), (scope, []))[1].append(self.span(span))
        out = []
        for resource, scopes in grouped.values():
            body = [self._resource(resource)]
            for scope, encoded in scopes.values():
                schema = scope.schema_url if scope is not None else ""
                scope_spans = self._scope(scope) + b"".join(encoded)
                if schema:
                    scope_spans += _field(b"\x1a", schema.encode())
                body.append(_field(b"\x12", scope_spans))
            if resource.schema_url:
                body.append(_field(b"\x1a", resource.schema_url.encode()))
            out.append(_field(b"\x0a", b"".join(body)))
        return b"".join(out)


def _flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


class OtlpHttpSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter with ``SpanEncoder`` for the request body; everything
    else (configuration, transport, retries, its own metrics) is the SDK's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return super().export(spans)  # the SDK's warning and answer
        with self._metrics.export_operation(len(spans)) as result:
            try:
                body = self._encoder.request(spans)
            except Exception as error:  # a bug here must not stop the exporter thread
                _log_encoding_failure(error)
                result.error = error
                return SpanExportResult.FAILURE
            if _is_request_too_large(body, self._max_request_size):
                return super().export(spans)  # the SDK's own refusal, logged and counted
            answer = self._client.export(body)
            if not answer.success:
                result.error = answer.error
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def _log_encoding_failure(error: Exception) -> None:
    import logging

    logging.getLogger(__name__).error("failed to encode a span batch: %s", error)

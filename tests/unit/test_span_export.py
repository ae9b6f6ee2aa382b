"""spans.py and span_export.py: the OTLP bytes parsed back with the official protobuf classes
(and compared with the SDK's own encoder), the span API contract, the OTLP/HTTP target from
the environment, and the batcher against a local HTTP server and a real OpenTelemetry
Collector."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from google.protobuf import unknown_fields  # type: ignore[import-untyped]
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from memstore.core.errors import ConfigurationError
from memstore.observability import span_export
from memstore.observability.span_export import OtlpHttpTarget, SpanBatcher, SpanEncoder
from memstore.observability.spans import RecordedSpan, SpanTracer, _clean
from tests.servers.otelcol import Collector
from tests.support.procs import free_port

SCHEMA_URL = "https://opentelemetry.io/schemas/1.26.0"
RESOURCE: dict[str, Any] = {
    "service.name": "memstore-test",
    "service.instance.id": "i-1",
    "host.cpu.count": 8,
    "debug": True,
    "zones": ("a", "b"),
}
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
T0 = 1_700_000_000_123_456_789
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
LONG = "x" * 5000

# Attribute values of every type, and what the wire must hold for each.
ATTRIBUTES: dict[str, Any] = {
    "str": "text",
    "unicode": "héllo ✓",
    "empty": "",
    "true": True,
    "false": False,
    "zero": 0,
    "one": 1,
    "negative": -42,
    "int64.max": 2**63 - 1,
    "int64.min": -(2**63),
    "float": 3.25,
    "float.negative": -0.5,
    "float.zero": 0.0,
    "bytes": b"\x00\xffraw",
    "strs": ("a", "b", ""),
    "ints": [1, -2, 0],  # a list is kept as a tuple
    "floats": (1.5, -2.0),
    "bools": (True, False),
    "long": LONG,
}
EXPECTED_ATTRIBUTES: dict[str, tuple[str, Any]] = {
    "str": ("string_value", "text"),
    "unicode": ("string_value", "héllo ✓"),
    "empty": ("string_value", ""),
    "true": ("bool_value", True),
    "false": ("bool_value", False),
    "zero": ("int_value", 0),
    "one": ("int_value", 1),
    "negative": ("int_value", -42),
    "int64.max": ("int_value", 2**63 - 1),
    "int64.min": ("int_value", -(2**63)),
    "float": ("double_value", 3.25),
    "float.negative": ("double_value", -0.5),
    "float.zero": ("double_value", 0.0),
    "bytes": ("bytes_value", b"\x00\xffraw"),
    "strs": (
        "array_value",
        [("string_value", "a"), ("string_value", "b"), ("string_value", "")],
    ),
    "ints": ("array_value", [("int_value", 1), ("int_value", -2), ("int_value", 0)]),
    "floats": ("array_value", [("double_value", 1.5), ("double_value", -2.0)]),
    "bools": ("array_value", [("bool_value", True), ("bool_value", False)]),
    "long": ("string_value", "x" * 4096),
}


# -- helpers --------------------------------------------------------------------------------


def _always(trace_id: int, parent: SpanContext | None) -> bool:
    return True


def _tracer() -> tuple[SpanTracer, list[RecordedSpan]]:
    ended: list[RecordedSpan] = []
    return SpanTracer(ended.append, _always), ended


def _encoder() -> SpanEncoder:
    return SpanEncoder(RESOURCE, "memstore", "1.2.3", SCHEMA_URL)


def _value(value: AnyValue) -> tuple[str | None, Any]:
    which = value.WhichOneof("value")
    if which == "array_value":
        return which, [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return which, {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return which, getattr(value, which) if which else None


def _attrs(key_values: Any) -> dict[str, tuple[str | None, Any]]:
    out: dict[str, tuple[str | None, Any]] = {}
    for kv in key_values:
        assert kv.key not in out, f"duplicate attribute {kv.key}"
        out[kv.key] = _value(kv.value)
    return out


def _assert_no_unknown_fields(message: Any) -> None:
    """A wrong field number or wire type would land here instead of in the field read."""
    assert len(unknown_fields.UnknownFieldSet(message)) == 0, message
    for fd, value in message.ListFields():
        if fd.message_type is not None:
            for item in value if fd.is_repeated else [value]:
                _assert_no_unknown_fields(item)


def _parse(encoder: SpanEncoder, spans: list[RecordedSpan]) -> ExportTraceServiceRequest:
    request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(
        encoder.request([encoder.span(s) for s in spans])
    )
    _assert_no_unknown_fields(request)
    return request


def _pb_spans(request: ExportTraceServiceRequest) -> list[trace_pb2.Span]:
    (resource_spans,) = request.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    return list(scope_spans.spans)


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


class WireError(Exception):
    pass


def _build_spans() -> tuple[RecordedSpan, RecordedSpan, RecordedSpan]:
    """A server span under a remote parent (with tracestate), its client child, and an
    internal root span; attributes of every type, events, links and statuses."""
    tracer, ended = _tracer()
    remote = SpanContext(
        TRACE_ID,
        PARENT_ID,
        is_remote=True,
        trace_flags=SAMPLED,
        trace_state=TraceState([("vendor", "v1"), ("other", "x")]),
    )
    linked_remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=SAMPLED)
    server = tracer.start_span(
        "GET /v1/things/{id}",
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={"str": "overwritten later", "long": LONG},
        links=[Link(linked_remote, {"link.kind": "follows", "n": 1})],
        start_time=T0,
    )
    assert isinstance(server, RecordedSpan)
    for key, value in ATTRIBUTES.items():
        server.set_attribute(key, value)
    server.add_event("cache miss", {"key": "k1", "size": 12, "hit": False}, timestamp=T0 + 10)
    server.record_exception(_raise(ValueError("boom")), timestamp=T0 + 20)
    server.record_exception(
        _raise(WireError("y" * 5000)), {"extra": 7}, timestamp=T0 + 30, escaped=True
    )
    local = SpanContext(0x9ABC, 0xDEF0, is_remote=False, trace_flags=NOT_SAMPLED)
    server.add_link(local, {"n": 2, "tags": ["p", "q"]})
    server.add_link(trace.INVALID_SPAN_CONTEXT)  # invalid: ignored
    server.set_status(Status(StatusCode.ERROR, "backend unavailable"))

    client = tracer.start_span(
        "SELECT db",
        context=trace.set_span_in_context(server),
        kind=SpanKind.CLIENT,
        start_time=T0 + 100,
    )
    assert isinstance(client, RecordedSpan)
    client.set_attributes({"db.system.name": "sqlite", "retries": 0})
    client.set_status(StatusCode.OK)
    client.end(end_time=T0 + 200)
    server.end(end_time=T0 + 1_000)

    root = tracer.start_span("housekeeping", context=trace.set_span_in_context(INVALID_SPAN))
    assert isinstance(root, RecordedSpan)
    root.end()
    assert ended == [client, server, root]
    return server, client, root


# -- encoder --------------------------------------------------------------------------------


def test_encoded_request_parses_back_field_by_field() -> None:
    server, client, root = _build_spans()
    request = _parse(_encoder(), [server, client, root])

    (resource_spans,) = request.resource_spans
    assert _attrs(resource_spans.resource.attributes) == {
        "service.name": ("string_value", "memstore-test"),
        "service.instance.id": ("string_value", "i-1"),
        "host.cpu.count": ("int_value", 8),
        "debug": ("bool_value", True),
        "zones": ("array_value", [("string_value", "a"), ("string_value", "b")]),
    }
    assert resource_spans.schema_url == SCHEMA_URL
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "memstore"
    assert scope_spans.scope.version == "1.2.3"
    pb_server, pb_client, pb_root = scope_spans.spans

    # The server span: remote parent, every attribute type, events, links, error status.
    assert pb_server.trace_id == TRACE_ID.to_bytes(16, "big")
    assert pb_server.span_id == server.span_id.to_bytes(8, "big")
    assert len(pb_server.span_id) == 8
    assert pb_server.parent_span_id == PARENT_ID.to_bytes(8, "big")
    assert pb_server.name == "GET /v1/things/{id}"
    assert pb_server.kind == trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
    assert pb_server.start_time_unix_nano == T0
    assert pb_server.end_time_unix_nano == T0 + 1_000
    assert pb_server.trace_state == "vendor=v1,other=x"
    assert pb_server.flags == 0x100 | 0x200  # has-is-remote, is-remote
    assert _attrs(pb_server.attributes) == EXPECTED_ATTRIBUTES
    assert pb_server.status.code == trace_pb2.Status.StatusCode.STATUS_CODE_ERROR
    assert pb_server.status.message == "backend unavailable"

    miss, boom, wire = pb_server.events
    assert (miss.name, miss.time_unix_nano) == ("cache miss", T0 + 10)
    assert _attrs(miss.attributes) == {
        "key": ("string_value", "k1"),
        "size": ("int_value", 12),
        "hit": ("bool_value", False),
    }
    assert (boom.name, boom.time_unix_nano) == ("exception", T0 + 20)
    boom_attrs = _attrs(boom.attributes)
    assert boom_attrs["exception.type"] == ("string_value", "ValueError")
    assert boom_attrs["exception.message"] == ("string_value", "boom")
    assert boom_attrs["exception.escaped"] == ("string_value", "False")
    stack = boom_attrs["exception.stacktrace"][1]
    assert stack.startswith("Traceback (most recent call last):")
    assert "raise exc" in stack and stack.endswith("ValueError: boom\n")
    assert (wire.name, wire.time_unix_nano) == ("exception", T0 + 30)
    wire_attrs = _attrs(wire.attributes)
    assert wire_attrs["exception.type"] == ("string_value", f"{__name__}.WireError")
    assert wire_attrs["exception.message"] == ("string_value", "y" * 4096)  # cut
    assert wire_attrs["exception.stacktrace"][0] == "string_value"
    assert len(wire_attrs["exception.stacktrace"][1]) == 4096  # cut
    assert wire_attrs["exception.escaped"] == ("string_value", "True")
    assert wire_attrs["extra"] == ("int_value", 7)

    follows, local = pb_server.links
    assert follows.trace_id == (0x1234).to_bytes(16, "big")
    assert follows.span_id == (0x5678).to_bytes(8, "big")
    assert _attrs(follows.attributes) == {
        "link.kind": ("string_value", "follows"),
        "n": ("int_value", 1),
    }
    assert follows.flags == 0x300
    assert local.trace_id == (0x9ABC).to_bytes(16, "big")
    assert local.span_id == (0xDEF0).to_bytes(8, "big")
    assert _attrs(local.attributes) == {
        "n": ("int_value", 2),
        "tags": ("array_value", [("string_value", "p"), ("string_value", "q")]),
    }
    assert local.flags == 0x100

    # The client span: a local child of the server span, same trace and tracestate.
    assert pb_client.trace_id == pb_server.trace_id
    assert pb_client.parent_span_id == pb_server.span_id
    assert pb_client.span_id not in (pb_server.span_id, b"\0" * 8)
    assert pb_client.kind == trace_pb2.Span.SpanKind.SPAN_KIND_CLIENT
    assert pb_client.trace_state == "vendor=v1,other=x"
    assert pb_client.flags == 0x100  # parent known, not remote
    assert (pb_client.start_time_unix_nano, pb_client.end_time_unix_nano) == (
        T0 + 100,
        T0 + 200,
    )
    assert _attrs(pb_client.attributes) == {
        "db.system.name": ("string_value", "sqlite"),
        "retries": ("int_value", 0),
    }
    assert pb_client.status.code == trace_pb2.Status.StatusCode.STATUS_CODE_OK
    assert pb_client.status.message == ""
    assert list(pb_client.events) == [] and list(pb_client.links) == []

    # The root span: no parent, no tracestate, unset status, times taken from the clock.
    assert pb_root.trace_id == root.trace_id.to_bytes(16, "big") != pb_server.trace_id
    assert pb_root.parent_span_id == b""
    assert pb_root.kind == trace_pb2.Span.SpanKind.SPAN_KIND_INTERNAL
    assert pb_root.trace_state == ""
    assert pb_root.flags == 0x100
    assert pb_root.status.code == trace_pb2.Status.StatusCode.STATUS_CODE_UNSET
    assert 0 < pb_root.start_time_unix_nano <= pb_root.end_time_unix_nano
    assert pb_root.start_time_unix_nano > T0
    assert list(pb_root.attributes) == []


@pytest.mark.parametrize("kind", list(SpanKind))
def test_every_span_kind_maps_to_the_otlp_enum(kind: SpanKind) -> None:
    span = RecordedSpan(lambda s: None, "k", kind, TRACE_ID, 7, None, {}, T0)
    span.end(T0 + 1)
    (pb,) = _pb_spans(_parse(_encoder(), [span]))
    assert pb.kind == kind.value + 1
    assert trace_pb2.Span.SpanKind.Name(pb.kind) == f"SPAN_KIND_{kind.name}"


def test_ids_are_big_endian_and_fixed_width() -> None:
    span = RecordedSpan(
        lambda s: None,
        "ids",
        SpanKind.INTERNAL,
        1,
        2,
        SpanContext(1, 3, is_remote=False),
        {},
        T0,
    )
    span.end(T0)
    (pb,) = _pb_spans(_parse(_encoder(), [span]))
    assert pb.trace_id == b"\0" * 15 + b"\x01"
    assert pb.span_id == b"\0" * 7 + b"\x02"
    assert pb.parent_span_id == b"\0" * 7 + b"\x03"
    big = RecordedSpan(
        lambda s: None, "ids", SpanKind.INTERNAL, 2**128 - 1, 2**64 - 1, None, {}, T0
    )
    big.end(T0)
    (pb,) = _pb_spans(_parse(_encoder(), [big]))
    assert pb.trace_id == b"\xff" * 16 and pb.span_id == b"\xff" * 8


def test_same_span_encoded_twice_gives_identical_bytes() -> None:
    server, client, root = _build_spans()
    encoder = _encoder()
    first = [encoder.span(s) for s in (server, client, root)]
    second = [encoder.span(s) for s in (server, client, root)]  # from the caches now
    assert first == second
    assert encoder.request(first) == encoder.request(second)
    # A fresh encoder (empty caches) writes the same bytes as well.
    assert [_encoder().span(s) for s in (server, client, root)] == first


@pytest.mark.parametrize("values", [(True, 1), (1, True), (False, 0), (0, False)])
def test_bool_and_int_with_equal_values_encode_differently(values: tuple[Any, Any]) -> None:
    """True == 1 and both hash alike: the attribute cache must still tell them apart."""
    spans = []
    for value in values:
        span = RecordedSpan(lambda s: None, "n", SpanKind.INTERNAL, TRACE_ID, 5, None, {}, T0)
        span.set_attribute("k", value)
        span.end(T0)
        spans.append(span)
    decoded = [_attrs(pb.attributes)["k"] for pb in _pb_spans(_parse(_encoder(), spans))]
    assert decoded == [
        ("bool_value", v) if isinstance(v, bool) else ("int_value", v) for v in values
    ]


def test_attribute_cache_overflow_keeps_encoding_right() -> None:
    encoder = _encoder()
    attributes = {f"k{i}": i for i in range(5000)} | {f"s{i}": str(i) for i in range(500)}
    span = RecordedSpan(lambda s: None, "many", SpanKind.INTERNAL, TRACE_ID, 9, None, {}, T0)
    span.set_attributes(attributes)
    span.end(T0)
    for _ in range(2):  # the second time partly from the (cleared and refilled) cache
        (pb,) = _pb_spans(_parse(encoder, [span]))
        decoded = _attrs(pb.attributes)
        assert len(decoded) == 5500
        assert decoded["k0"] == ("int_value", 0)
        assert decoded["k4999"] == ("int_value", 4999)
        assert decoded["s499"] == ("string_value", "499")


def test_matches_the_sdk_encoder() -> None:
    """The same spans through the SDK's protobuf encoder give the same message."""
    server, client, root = _build_spans()
    ours = _parse(_encoder(), [server, client, root])

    resource = Resource(RESOURCE, SCHEMA_URL)
    scope = InstrumentationScope("memstore", "1.2.3")

    def readable(span: RecordedSpan, parent: SpanContext | None) -> ReadableSpan:
        status = (
            Status(StatusCode(span.status_code), span.status_message)
            if span.status_code
            else Status()
        )
        return ReadableSpan(
            span.name,
            context=span.get_span_context(),
            parent=parent,
            resource=resource,
            attributes=span.attributes,
            events=[Event(n, a, t) for n, t, a in span.events or ()],
            links=[Link(c, a) for c, a in span.links or ()],
            kind=SpanKind(span.kind - 1),
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=scope,
        )

    remote = SpanContext(TRACE_ID, PARENT_ID, is_remote=True)
    sdk = encode_spans(
        [
            readable(server, remote),
            readable(client, server.get_span_context()),
            readable(root, None),
        ]
    )
    # The SDK writes an empty Status for UNSET; an absent one reads the same.
    sdk.resource_spans[0].scope_spans[0].spans[2].ClearField("status")
    assert ours == sdk


# -- RecordedSpan and SpanTracer ----------------------------------------------------------


def test_end_twice_hands_the_span_over_once() -> None:
    tracer, ended = _tracer()
    span = tracer.start_span("once")
    assert span.is_recording()
    span.end(end_time=T0 + 5)
    span.end(end_time=T0 + 9)
    assert ended == [span]
    assert isinstance(span, RecordedSpan) and span.end_time == T0 + 5
    assert not span.is_recording()


def test_an_ended_span_ignores_changes() -> None:
    tracer, ended = _tracer()
    span = tracer.start_span("frozen", attributes={"a": 1})
    assert isinstance(span, RecordedSpan)
    span.end()
    span.set_attribute("b", 2)
    span.set_attributes({"c": 3})
    span.add_event("late")
    span.record_exception(ValueError("late"))
    span.add_link(SpanContext(1, 2, is_remote=False))
    span.update_name("renamed")
    span.set_status(Status(StatusCode.ERROR, "late"))
    assert span.attributes == {"a": 1}
    assert span.events is None and span.links is None
    assert span.name == "frozen"
    assert (span.status_code, span.status_message) == (StatusCode.UNSET.value, None)
    (pb,) = _pb_spans(_parse(_encoder(), ended))
    assert _attrs(pb.attributes) == {"a": ("int_value", 1)}
    assert not pb.HasField("status")


def test_status_ok_is_final_and_unset_is_ignored() -> None:
    tracer, _ = _tracer()
    span = tracer.start_span("status")
    assert isinstance(span, RecordedSpan)
    span.set_status(StatusCode.UNSET)
    assert span.status_code == StatusCode.UNSET.value
    span.set_status(StatusCode.ERROR, "first")
    assert (span.status_code, span.status_message) == (StatusCode.ERROR.value, "first")
    span.set_status(Status(StatusCode.UNSET))  # ignored: stays ERROR
    assert (span.status_code, span.status_message) == (StatusCode.ERROR.value, "first")
    span.set_status(Status(StatusCode.ERROR, "second"))
    assert span.status_message == "second"
    span.set_status(StatusCode.OK, "a description only errors carry")
    assert span.status_code == StatusCode.OK.value
    assert span.status_message is None
    span.set_status(Status(StatusCode.ERROR, "too late"))  # OK is final
    span.set_status(StatusCode.UNSET)
    assert span.status_code == StatusCode.OK.value
    assert span.status_message is None


def test_span_context_is_sampled_and_local() -> None:
    tracer, _ = _tracer()
    state = TraceState([("k", "v")])
    parent = SpanContext(
        TRACE_ID, PARENT_ID, is_remote=True, trace_flags=SAMPLED, trace_state=state
    )
    span = tracer.start_span("ctx", context=trace.set_span_in_context(NonRecordingSpan(parent)))
    ctx = span.get_span_context()
    assert ctx.trace_id == TRACE_ID
    assert isinstance(span, RecordedSpan) and ctx.span_id == span.span_id != 0
    assert ctx.is_valid and not ctx.is_remote
    assert ctx.trace_flags.sampled and ctx.trace_flags == SAMPLED
    assert ctx.trace_state == state
    assert span.parent_id == PARENT_ID and span.parent_remote


def test_start_span_asks_the_sampler_and_returns_a_non_recording_span_when_refused() -> None:
    calls: list[tuple[int, SpanContext | None]] = []
    ended: list[RecordedSpan] = []

    def no(trace_id: int, parent: SpanContext | None) -> bool:
        calls.append((trace_id, parent))
        return False

    tracer = SpanTracer(ended.append, no)
    span = tracer.start_span("dropped", attributes={"a": 1})
    assert isinstance(span, NonRecordingSpan) and not isinstance(span, RecordedSpan)
    assert not span.is_recording()
    ctx = span.get_span_context()
    assert ctx.is_valid and not ctx.trace_flags.sampled
    assert calls == [(ctx.trace_id, None)]
    span.end()
    assert ended == []

    # With a parent in the context: the parent's trace id and the parent go to the sampler.
    parent = SpanContext(TRACE_ID, PARENT_ID, is_remote=True, trace_flags=SAMPLED)
    child = tracer.start_span("child", context=trace.set_span_in_context(NonRecordingSpan(parent)))
    assert calls[-1] == (TRACE_ID, parent)
    assert child.get_span_context().trace_id == TRACE_ID
    assert not child.get_span_context().trace_flags.sampled
    assert child.get_span_context().span_id != PARENT_ID


def test_start_span_inherits_the_trace_of_a_parent_in_the_context() -> None:
    tracer, _ = _tracer()
    parent = tracer.start_span("parent")
    child = tracer.start_span("child", context=trace.set_span_in_context(parent))
    assert isinstance(parent, RecordedSpan) and isinstance(child, RecordedSpan)
    assert child.trace_id == parent.trace_id
    assert child.parent_id == parent.span_id
    assert not child.parent_remote
    assert child.span_id != parent.span_id
    # The current span is the default parent.
    with trace.use_span(parent):
        implicit = tracer.start_span("implicit")
    assert isinstance(implicit, RecordedSpan)
    assert (implicit.trace_id, implicit.parent_id) == (parent.trace_id, parent.span_id)
    # An invalid parent starts a new trace.
    root = tracer.start_span("root", context=trace.set_span_in_context(INVALID_SPAN))
    assert isinstance(root, RecordedSpan)
    assert root.parent_id == 0 and root.trace_id not in (0, parent.trace_id)


def test_zero_random_ids_are_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    tracer, _ = _tracer()
    monkeypatch.setattr(tracer, "_random_bits", lambda bits: 0)
    span = tracer.start_span("zero")
    ctx = span.get_span_context()
    assert ctx.trace_id != 0 and ctx.span_id != 0 and ctx.is_valid


def test_start_span_cleans_attributes_and_adds_links() -> None:
    tracer, _ = _tracer()
    linked = SpanContext(0x1, 0x2, is_remote=False)
    span = tracer.start_span(
        "clean",
        attributes={"list": ["a", "b"], "long": LONG, "n": 3},
        links=[Link(linked, {"why": "retry"}), Link(trace.INVALID_SPAN_CONTEXT)],
    )
    assert isinstance(span, RecordedSpan)
    assert span.attributes == {"list": ("a", "b"), "long": "x" * 4096, "n": 3}
    assert span.links == [(linked, {"why": "retry"})]


def test_new_span_uses_the_callers_decision_and_parent() -> None:
    tracer, ended = _tracer()
    parent = SpanContext(TRACE_ID, PARENT_ID, is_remote=True, trace_state=TraceState([("a", "1")]))
    span = tracer.new_span("GET /x", SpanKind.SERVER, TRACE_ID, parent, {"k": "v"})
    assert span.is_recording()
    assert (span.trace_id, span.parent_id, span.parent_remote) == (TRACE_ID, PARENT_ID, True)
    assert span.trace_state == parent.trace_state
    span.end()
    (pb,) = _pb_spans(_parse(_encoder(), ended))
    assert pb.kind == trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
    assert pb.trace_state == "a=1" and pb.flags == 0x300
    root = tracer.new_span("root", SpanKind.INTERNAL, 5, None, {})
    assert (root.parent_id, root.parent_remote, root.trace_state) == (0, False, None)


def test_start_as_current_span_sets_the_current_span() -> None:
    tracer, ended = _tracer()
    with tracer.start_as_current_span("outer") as outer:
        assert trace.get_current_span() is outer
        with tracer.start_as_current_span("inner", kind=SpanKind.CLIENT) as inner:
            assert trace.get_current_span() is inner
            assert isinstance(inner, RecordedSpan) and isinstance(outer, RecordedSpan)
            assert inner.parent_id == outer.span_id and inner.trace_id == outer.trace_id
        assert trace.get_current_span() is outer
        assert ended == [inner]
    assert trace.get_current_span() is INVALID_SPAN
    assert ended == [inner, outer]
    assert outer.status_code == StatusCode.UNSET.value and outer.events is None


def test_start_as_current_span_records_an_exception() -> None:
    tracer, ended = _tracer()
    with pytest.raises(ValueError, match="broken"), tracer.start_as_current_span("op"):
        raise ValueError("broken")
    (span,) = ended
    assert (span.status_code, span.status_message) == (
        StatusCode.ERROR.value,
        "ValueError: broken",
    )
    assert span.events is not None
    ((name, _, attributes),) = span.events
    assert name == "exception"
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "broken"
    assert "ValueError: broken" in attributes["exception.stacktrace"]


def test_start_as_current_span_without_end_on_exit() -> None:
    tracer, ended = _tracer()
    with tracer.start_as_current_span("open", end_on_exit=False) as span:
        pass
    assert ended == [] and span.is_recording()
    span.end()
    assert ended == [span]


def test_deferred_attributes_are_computed_at_encoding() -> None:
    calls: list[tuple[Any, ...]] = []

    def later(*args: Any) -> dict[str, Any]:
        calls.append(args)
        return {"deferred": "yes", "shared": "deferred", "n": 1}

    tracer, ended = _tracer()
    span = tracer.start_span("deferred", attributes={"shared": "set"})
    assert isinstance(span, RecordedSpan)
    span.deferred = (later, ("a", 2))
    span.end()
    assert calls == []  # not on the request path
    (pb,) = _pb_spans(_parse(_encoder(), ended))
    assert calls == [("a", 2)]
    assert _attrs(pb.attributes) == {
        "deferred": ("string_value", "yes"),
        "shared": ("string_value", "set"),  # a set attribute wins over a deferred one
        "n": ("int_value", 1),
    }


def test_a_failing_deferred_function_keeps_the_span(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("bug")

    tracer, ended = _tracer()
    span = tracer.start_span("kept", attributes={"a": 1})
    assert isinstance(span, RecordedSpan)
    span.deferred = (broken, ())
    span.end()
    (pb,) = _pb_spans(_parse(_encoder(), ended))
    assert pb.name == "kept"
    assert _attrs(pb.attributes) == {"a": ("int_value", 1)}
    assert "deferred span attributes failed" in caplog.text


def test_child_of_a_recorded_span_skips_the_sampler() -> None:
    asked: list[int] = []

    def no(trace_id: int, parent: SpanContext | None) -> bool:
        asked.append(trace_id)
        return False

    ended: list[RecordedSpan] = []
    tracer = SpanTracer(ended.append, no)
    assert tracer.child("root", SpanKind.INTERNAL, {}) is None  # no parent: the sampler says
    assert len(asked) == 1
    state = TraceState([("k", "v")])
    parent = RecordedSpan(ended.append, "p", SpanKind.SERVER, TRACE_ID, 42, None, {}, T0, state)
    with trace.use_span(parent):
        child = tracer.child("c", SpanKind.CLIENT, {"a": 1}, T0 + 5)
    assert child is not None and len(asked) == 1
    assert (child.trace_id, child.parent_id, child.parent_remote) == (TRACE_ID, 42, False)
    assert child.trace_state == state and child.start_time == T0 + 5
    assert child.span_id not in (0, 42)
    child.end(T0 + 6)
    (pb,) = _pb_spans(_parse(_encoder(), ended))
    assert pb.parent_span_id == (42).to_bytes(8, "big") and pb.flags == 0x100
    assert pb.trace_state == "k=v"
    # Under a remote parent (no recorded span current) the sampler decides again.
    remote = SpanContext(TRACE_ID, PARENT_ID, is_remote=True, trace_flags=SAMPLED)
    with trace.use_span(NonRecordingSpan(remote)):
        assert tracer.child("c", SpanKind.CLIENT, {}) is None
        assert SpanTracer(ended.append, _always).child("c", SpanKind.CLIENT, {}) is not None
    assert asked[-1] == TRACE_ID


def test_clean() -> None:
    assert _clean("x" * 4096) == "x" * 4096
    assert _clean("x" * 4097) == "x" * 4096
    assert _clean(["a", ["b", "c" * 5000]]) == ("a", ("b", "c" * 4096))
    assert _clean(b"\x00\x01") == b"\x00\x01"
    assert _clean(None) is None
    assert _clean(True) is True and _clean(0) == 0 and _clean(1.5) == 1.5
    assert _clean({"a": 1}) == "{'a': 1}"
    assert _clean(range(3)) == (0, 1, 2)
    # Beyond OTLP's int64: kept as text rather than wrapped or failing the whole batch.
    assert _clean(2**63 - 1) == 2**63 - 1 and _clean(-(2**63)) == -(2**63)
    assert _clean(2**64 + 5) == str(2**64 + 5) and _clean(-(2**63) - 1) == str(-(2**63) - 1)


def test_none_attribute_values_are_dropped() -> None:
    tracer, _ = _tracer()
    span = tracer.start_span("n", attributes={"kept": 1, "gone": None})
    span.set_attribute("also.gone", None)
    span.set_attributes({"more": "x", "none": None})
    assert isinstance(span, RecordedSpan)
    assert span.attributes == {"kept": 1, "more": "x"}


def test_repr_leaves_attributes_out() -> None:
    span = RecordedSpan(lambda s: None, "r", SpanKind.INTERNAL, 255, 1, None, {"secret": "s"})
    assert repr(span) == f"RecordedSpan('r', trace_id={255:032x})"


# -- OtlpHttpTarget -------------------------------------------------------------------------


def test_target_defaults() -> None:
    target = OtlpHttpTarget.from_env({})
    assert target.url == "http://localhost:4318/v1/traces"
    assert target.timeout == 10.0
    assert not target.gzip
    assert target.headers["Content-Type"] == "application/x-protobuf"
    assert "Content-Encoding" not in target.headers
    assert (target.ca_file, target.client_cert, target.client_key) == (None, None, None)
    assert target.ssl_context() is None


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}, "http://collector:4318"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " https://c.example/otlp "}, "https://c.example/otlp"),
    ],
)
def test_base_endpoint_gets_the_traces_path(env: dict[str, str], url: str) -> None:
    assert OtlpHttpTarget.from_env(env).url == url + "/v1/traces"


def test_traces_endpoint_is_used_as_is_and_wins() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom/path",
    }
    assert OtlpHttpTarget.from_env(env).url == "http://traces:9999/custom/path"
    only = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces:9999/"}
    assert OtlpHttpTarget.from_env(only).url == "https://traces:9999/"


def test_headers_are_parsed_and_url_decoded() -> None:
    target = OtlpHttpTarget.from_env(
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=b,c=d%20e, spaced = value ,,k=v=w"}
    )
    assert target.headers["a"] == "b"
    assert target.headers["c"] == "d e"
    assert target.headers["spaced"] == "value"
    assert target.headers["k"] == "v=w"
    assert target.headers["Content-Type"] == "application/x-protobuf"
    traces_only = OtlpHttpTarget.from_env(
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=b", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x=y"}
    )
    assert traces_only.headers["x"] == "y" and "a" not in traces_only.headers


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_HEADERS": "novalue"},
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=b,broken"},
        {"OTEL_EXPORTER_OTLP_HEADERS": "=value"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://collector:4317"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces"},
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
        {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "deflate"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "abc"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "0"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "-5"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "nan"},
        {"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "-1"},
    ],
)
def test_bad_target_settings_are_configuration_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        OtlpHttpTarget.from_env(env)


def test_timeout_is_in_milliseconds() -> None:
    assert OtlpHttpTarget.from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}).timeout == 2.5
    env = {"OTEL_EXPORTER_OTLP_TIMEOUT": "2500", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "100"}
    assert OtlpHttpTarget.from_env(env).timeout == 0.1


@pytest.mark.parametrize("value", ["gzip", "GZIP", " gzip "])
def test_gzip_sets_content_encoding(value: str) -> None:
    target = OtlpHttpTarget.from_env({"OTEL_EXPORTER_OTLP_COMPRESSION": value})
    assert target.gzip
    assert target.headers["Content-Encoding"] == "gzip"
    none = OtlpHttpTarget.from_env({"OTEL_EXPORTER_OTLP_COMPRESSION": "none"})
    assert not none.gzip and "Content-Encoding" not in none.headers


def test_repr_hides_headers_and_client_key() -> None:
    target = OtlpHttpTarget.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer s3cret,x-api-key=k3y%2Fvalue",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/etc/otel/client.crt",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/very/private/client.key",
        }
    )
    assert target.headers["Authorization"] == "Bearer s3cret"
    assert target.headers["x-api-key"] == "k3y/value"
    assert target.client_key == "/very/private/client.key"
    text = repr(target)
    assert "https://collector:4318/v1/traces" in text
    for secret in ("s3cret", "Bearer", "k3y", "/very/private/client.key", "client.key"):
        assert secret not in text
        assert secret not in str(target)


# -- SpanBatcher ----------------------------------------------------------------------------


def _spans_for_batcher(n: int, trace_id: int = TRACE_ID) -> list[RecordedSpan]:
    spans = []
    for i in range(n):
        span = RecordedSpan(
            lambda s: None, f"span {i}", SpanKind.INTERNAL, trace_id, i + 1, None, {"i": i}, T0
        )
        span.end(T0 + i)
        spans.append(span)
    return spans


def _batcher(env: dict[str, str] | None = None, **target_env: str) -> SpanBatcher:
    return SpanBatcher(_encoder(), OtlpHttpTarget.from_env(target_env), env or {})


def test_batcher_settings() -> None:
    default = _batcher()
    assert (default.schedule_delay, default.max_batch, default.max_queue) == (5.0, 512, 2048)
    custom = _batcher(
        {
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
            "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        }
    )
    assert (custom.schedule_delay, custom.max_batch, custom.max_queue) == (0.25, 16, 64)


def test_queue_size_alone_bounds_the_queue() -> None:
    """OTEL_BSP_MAX_QUEUE_SIZE alone bounds the queue (the batch size is not configured)."""
    batcher = _batcher({"OTEL_BSP_MAX_QUEUE_SIZE": "4"})
    for span in _spans_for_batcher(10):
        batcher(span)
    assert batcher.dropped == 6
    assert len(batcher._queue) == 4


def test_full_queue_drops_and_counts_with_a_small_batch() -> None:
    batcher = _batcher({"OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"})
    for span in _spans_for_batcher(10):
        batcher(span)
    assert (batcher.dropped, batcher.exported, batcher.failed) == (6, 0, 0)
    assert len(batcher._queue) == 4


@pytest.mark.parametrize(
    "name", ["OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "OTEL_BSP_MAX_QUEUE_SIZE"]
)
@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_bad_batcher_settings_are_configuration_errors(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        _batcher({name: value})


class FakeCollector:
    """A tiny OTLP/HTTP endpoint answering with scripted statuses (then 200)."""

    def __init__(self, statuses: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.received = asyncio.Event()
        self.release = asyncio.Event()  # answers wait for it
        self.release.set()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp undoes Content-Encoding: gzip
        self.requests.append((dict(request.headers), body))
        self.received.set()
        await self.release.wait()
        status, headers = self.statuses.pop(0) if self.statuses else (200, {})
        return web.Response(status=status, headers=headers)

    def spans(self) -> list[trace_pb2.Span]:
        return [s for _, body in self.requests for s in _pb_spans(_request(body))]


def _request(body: bytes) -> ExportTraceServiceRequest:
    request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(body)
    _assert_no_unknown_fields(request)
    return request


@pytest.fixture
async def fake_collector() -> AsyncIterator[Callable[..., Awaitable[FakeCollector]]]:
    servers: list[TestServer] = []

    async def start(statuses: list[tuple[int, dict[str, str]]] | None = None) -> FakeCollector:
        fake = FakeCollector(statuses)
        app = web.Application()
        app.router.add_post("/v1/traces", fake.handle)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        fake.url = str(server.make_url("/v1/traces"))
        return fake

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """span_export's retry sleeps, recorded and skipped (the schedule delay is left alone)."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    class Asyncio:
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(delay: float) -> None:
            if delay >= 60:  # the schedule delay of these tests' batchers
                await real_sleep(delay)
                return
            sleeps.append(delay)
            await real_sleep(0)

    monkeypatch.setattr(span_export, "asyncio", Asyncio())
    return sleeps


QUIET = {"OTEL_BSP_SCHEDULE_DELAY": "600000"}  # exports only on a full batch, flush or stop


async def _started(url: str, env: dict[str, str] | None = None, **target_env: str) -> SpanBatcher:
    batcher = SpanBatcher(
        _encoder(),
        OtlpHttpTarget.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": url, **target_env}),
        {**QUIET, **(env or {})},
    )
    await batcher.start()
    return batcher


async def test_flush_posts_batches_to_the_endpoint(
    fake_collector: Callable[..., Awaitable[FakeCollector]],
) -> None:
    fake = await fake_collector()
    batcher = await _started(
        fake.url,
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3"},
        OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20t0ken",
    )
    try:
        # Queued before any flush: nothing is sent until asked.
        spans = _spans_for_batcher(2)
        for span in spans:
            batcher(span)
        assert fake.requests == []
        await batcher.flush()
        assert (batcher.exported, batcher.failed, batcher.dropped) == (2, 0, 0)
        ((headers, body),) = fake.requests
        assert headers["Authorization"] == "Bearer t0ken"
        assert headers["Content-Type"] == "application/x-protobuf"
        assert body == _encoder().request([_encoder().span(s) for s in spans])
    finally:
        await batcher.stop()
    assert [s.name for s in fake.spans()] == ["span 0", "span 1"]


async def test_batches_are_split_by_the_batch_size(
    fake_collector: Callable[..., Awaitable[FakeCollector]],
) -> None:
    fake = await fake_collector()
    batcher = SpanBatcher(
        _encoder(),
        OtlpHttpTarget.from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": fake.url}),
        {**QUIET, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3"},
    )
    for span in _spans_for_batcher(7):  # queued before start: no loop, no kick
        batcher(span)
    await batcher.flush()  # not started: nothing sent, nothing lost
    assert fake.requests == [] and batcher.exported == 0
    await batcher.start()
    try:
        await batcher.flush()
    finally:
        await batcher.stop()
    assert [len(_pb_spans(_request(body))) for _, body in fake.requests] == [3, 3, 1]
    assert [s.name for s in fake.spans()] == [f"span {i}" for i in range(7)]
    assert (batcher.exported, batcher.failed) == (7, 0)


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a generous deadline, not a measurement)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_full_batch_is_sent_without_a_flush(
    fake_collector: Callable[..., Awaitable[FakeCollector]],
) -> None:
    fake = await fake_collector()
    batcher = await _started(fake.url, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2"})
    try:
        first, second, third = _spans_for_batcher(3)
        batcher(first)
        batcher(second)  # the batch is full: an export starts by itself
        await _until(lambda: batcher.exported == 2)
        # A span ended in another thread kicks the loop thread-safely.
        tracer = SpanTracer(batcher, _always)
        worker_span = tracer.start_span("in a thread")
        batcher(third)
        await asyncio.to_thread(worker_span.end)
        await _until(lambda: batcher.exported == 4)
        assert len(fake.requests) == 2
    finally:
        await batcher.stop()
    assert [s.name for s in fake.spans()] == ["span 0", "span 1", "span 2", "in a thread"]


async def test_spans_ending_during_an_export_wait_for_a_full_batch_or_a_flush(
    fake_collector: Callable[..., Awaitable[FakeCollector]],
) -> None:
    """A full batch sends full batches only, so a busy service does not turn export into
    back-to-back POSTs of whatever ended during the previous one."""
    fake = await fake_collector()
    fake.release.clear()
    batcher = await _started(fake.url, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4"})
    try:
        spans = _spans_for_batcher(7)
        for span in spans[:4]:
            batcher(span)  # full: an export starts by itself
        await _until(lambda: len(fake.requests) == 1)
        for span in spans[4:]:
            batcher(span)  # end while the first POST is still unanswered
        fake.release.set()
        await _until(lambda: batcher.exported == 4)
        await asyncio.sleep(0.05)  # room for a wrong second POST
        assert len(fake.requests) == 1
        assert batcher.counts()["queued"] == 3
        await batcher.flush()
        assert batcher.exported == 7 and len(fake.requests) == 2
    finally:
        await batcher.stop()


async def test_a_flush_sends_what_was_queued_when_it_began(
    fake_collector: Callable[..., Awaitable[FakeCollector]],
) -> None:
    fake = await fake_collector()
    batcher = await _started(fake.url, {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "100"})
    try:
        spans = _spans_for_batcher(5)
        for span in spans[:3]:
            batcher(span)
        fake.release.clear()
        flush = asyncio.create_task(batcher.flush())
        await _until(lambda: len(fake.requests) == 1)
        for span in spans[3:]:
            batcher(span)
        fake.release.set()
        await flush
        assert batcher.exported == 3 and batcher.counts()["queued"] == 2
    finally:
        await batcher.stop()
    assert batcher.exported == 5


async def test_gzip_body(fake_collector: Callable[..., Awaitable[FakeCollector]]) -> None:
    fake = await fake_collector()
    batcher = await _started(fake.url, OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    span = RecordedSpan(lambda s: None, "big", SpanKind.INTERNAL, TRACE_ID, 1, None, {}, T0)
    span.set_attribute("filler", "ab" * 2000)
    span.end(T0)
    batcher(span)
    await batcher.stop()
    ((headers, body),) = fake.requests
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) < len(body) // 10  # really compressed
    assert body == _encoder().request([_encoder().span(span)])
    assert batcher.exported == 1


async def test_non_retryable_status_fails_the_batch_at_once(
    fake_collector: Callable[..., Awaitable[FakeCollector]], recorded_sleeps: list[float]
) -> None:
    fake = await fake_collector([(400, {})])
    batcher = await _started(fake.url)
    for span in _spans_for_batcher(3):
        batcher(span)
    await batcher.stop()  # does not raise
    assert (batcher.exported, batcher.failed) == (0, 3)
    assert len(fake.requests) == 1
    assert recorded_sleeps == []


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_retryable_status_is_retried_after_retry_after(
    fake_collector: Callable[..., Awaitable[FakeCollector]], status: int
) -> None:
    fake = await fake_collector([(status, {"Retry-After": "0"})])
    batcher = await _started(fake.url)
    for span in _spans_for_batcher(2):
        batcher(span)
    await batcher.flush()
    assert (batcher.exported, batcher.failed) == (2, 0)
    first, second = fake.requests
    assert first[1] == second[1]  # the same batch again
    await batcher.stop()


async def test_retries_give_up_after_three(
    fake_collector: Callable[..., Awaitable[FakeCollector]], recorded_sleeps: list[float]
) -> None:
    fake = await fake_collector([(503, {"Retry-After": "0"})] * 10)
    batcher = await _started(fake.url)
    batcher(_spans_for_batcher(1)[0])
    await batcher.flush()
    assert (batcher.exported, batcher.failed) == (0, 1)
    assert len(fake.requests) == 4  # one attempt and three retries
    assert recorded_sleeps == [0.0, 0.0, 0.0]
    await batcher.stop()


@pytest.mark.parametrize(
    ("retry_after", "sleeps"),
    [("120", [30.0, 30.0, 30.0]), ("soon", [1.0, 2.0, 4.0]), ("1.5", [1.5, 1.5, 1.5])],
)
async def test_retry_after_is_capped_and_defaults_to_backoff(
    fake_collector: Callable[..., Awaitable[FakeCollector]],
    recorded_sleeps: list[float],
    retry_after: str,
    sleeps: list[float],
) -> None:
    fake = await fake_collector([(429, {"Retry-After": retry_after})] * 4)
    batcher = await _started(fake.url)
    batcher(_spans_for_batcher(1)[0])
    await batcher.stop()
    assert recorded_sleeps == sleeps
    assert batcher.failed == 1


async def test_unreachable_endpoint_fails_the_batch_without_raising(
    recorded_sleeps: list[float],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    batcher = await _started(url, OTEL_EXPORTER_OTLP_TIMEOUT="500")
    for span in _spans_for_batcher(5):
        batcher(span)
    await batcher.flush()
    assert (batcher.exported, batcher.failed, batcher.dropped) == (0, 5, 0)
    assert recorded_sleeps == [1.0, 2.0, 4.0]  # exponential backoff between attempts
    await batcher.stop()


async def test_export_to_a_real_collector(otel_collector: Collector) -> None:
    service = f"span-export-{uuid.uuid4().hex[:8]}"
    encoder = SpanEncoder({"service.name": service}, "memstore", "1.2.3", SCHEMA_URL)
    for compression in ("none", "gzip"):
        batcher = SpanBatcher(
            encoder,
            OtlpHttpTarget.from_env(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": otel_collector.endpoint,
                    "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
                }
            ),
            QUIET,
        )
        await batcher.start()
        tracer = SpanTracer(batcher, _always)
        with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as server:
            server.set_attributes({k: v for k, v in ATTRIBUTES.items() if k != "bytes"})
            with tracer.start_as_current_span("query", kind=SpanKind.CLIENT) as client:
                client.add_event("retry", {"attempt": 2})
            server.set_status(Status(StatusCode.ERROR, "failed"))
        await batcher.stop()
        assert (batcher.exported, batcher.failed, batcher.dropped) == (2, 0, 0)

        trace_id = f"{server.get_span_context().trace_id:032x}"
        spans = {s["name"]: s for s in otel_collector.wait_for(trace_id, 2)}
        assert set(spans) == {"request", "query"}
        request, query = spans["request"], spans["query"]
        assert request["span_id"] == f"{server.get_span_context().span_id:016x}"
        assert request["parent_span_id"] == ""
        assert query["parent_span_id"] == request["span_id"]
        assert (request["kind"], query["kind"]) == ("server", "client")
        assert request["resource"] == {"service.name": service}
        assert request["scope"] == "memstore"
        assert request["status"] == {"code": 2, "message": "failed"}
        assert query["events"] == ["retry"]
        attributes = request["attributes"]
        assert attributes["str"] == "text" and attributes["unicode"] == "héllo ✓"
        assert attributes["true"] is True and attributes["false"] is False
        assert attributes["int64.min"] == -(2**63) and attributes["negative"] == -42
        assert attributes["float"] == 3.25
        assert attributes["ints"] == [1, -2, 0]
        assert attributes["long"] == "x" * 4096

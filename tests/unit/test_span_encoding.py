"""tracing_export.SpanEncoder writes what the SDK's OTLP encoder writes: its bytes parse,
with the official protobuf classes, to a message equal to the SDK encoder's, for spans of
every shape the SDK can make."""

from __future__ import annotations

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.util.types import AnyValue

from memstore.observability.tracing_export import SpanEncoder

ATTRIBUTES: dict[str, AnyValue] = {
    "s": "text",
    "empty": "",
    "unicode": "naïve ☃",
    "i": 42,
    "zero": 0,
    "negative": -7,
    "big": (1 << 63) - 1,
    "f": 2.5,
    "t": True,
    "no": False,
    "strings": ("a", "b"),
    "ints": (1, -2, 3),
    "floats": (0.5, 1.5),
    "bools": (True, False),
}


def _provider(
    resource: Resource | None = None, limits: SpanLimits | None = None
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(
        resource=resource or Resource.create({"service.name": "enc", "k": 1}),
        span_limits=limits,
        shutdown_on_exit=False,
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _remote(trace_state: TraceState | None = None) -> Context:
    parent = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=trace_state,
    )
    return set_span_in_context(NonRecordingSpan(parent))


def _assert_same(spans: list[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(SpanEncoder().request(spans))
    assert ours == encode_spans(spans)


def _spans() -> list[ReadableSpan]:
    provider, exporter = _provider()
    tracer = provider.get_tracer("memstore", "1.2.3")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=ATTRIBUTES):
        child = tracer.start_span("child", kind=SpanKind.CLIENT, attributes={"db": "x"})
        child.add_event("retry", {"attempt": 2, "why": "timeout"}, timestamp=1_000)
        child.add_event("bare")
        child.record_exception(ValueError("bad"))
        child.set_status(Status(StatusCode.ERROR, "it broke"))
        child.end()
        ok = tracer.start_span("ok")
        ok.set_status(StatusCode.OK)
        ok.end()
    linked = provider.get_tracer("other", schema_url="https://opentelemetry.io/schemas/1.21.0")
    span = linked.start_span(
        "linked",
        context=_remote(TraceState([("vendor", "v1"), ("rojo", "00f067aa0ba902b7")])),
        kind=SpanKind.CONSUMER,
        links=[
            Link(get_current_span(_remote()).get_span_context(), {"l": "x"}),
            Link(SpanContext(1, 2, is_remote=False), None),
        ],
    )
    span.end()
    provider.get_tracer("").start_span("no scope name", kind=SpanKind.PRODUCER).end()
    return list(exporter.get_finished_spans())


def test_every_shape_encodes_as_the_sdk_encodes() -> None:
    spans = _spans()
    assert len(spans) >= 5
    _assert_same(spans)
    for span in spans:
        _assert_same([span])


def test_dropped_counts_under_span_limits() -> None:
    limits = SpanLimits(
        max_span_attributes=2,
        max_events=1,
        max_links=1,
        max_event_attributes=1,
        max_link_attributes=1,
        max_attribute_length=3,
    )
    provider, exporter = _provider(limits=limits)
    span = provider.get_tracer("t").start_span(
        "limited",
        attributes={"a": "long value", "b": 2, "c": 3},
        links=[Link(SpanContext(1, 2, False), {"x": 1, "y": 2}), Link(SpanContext(3, 4, False))],
    )
    span.add_event("e1", {"p": 1, "q": 2})
    span.add_event("e2")
    span.end()
    (ended,) = exporter.get_finished_spans()
    assert ended.dropped_attributes and ended.dropped_events and ended.dropped_links
    _assert_same([ended])


def test_several_resources_and_schema_urls() -> None:
    spans: list[ReadableSpan] = []
    for name in ("a", "b"):
        resource = Resource.create({"service.name": name}, schema_url=f"https://schema/{name}")
        provider, exporter = _provider(resource)
        provider.get_tracer("t", "1").start_span("s").end()
        spans.extend(exporter.get_finished_spans())
    _assert_same(spans)


def test_repeated_encoding_reuses_cached_bytes_correctly() -> None:
    spans = _spans()
    encoder = SpanEncoder()
    first = encoder.request(spans)
    assert encoder.request(spans) == first
    assert ExportTraceServiceRequest.FromString(first) == encode_spans(spans)


@pytest.mark.parametrize("values", [(True, 1), (False, 0), (1, 1.0)])
def test_equal_values_of_different_types_stay_distinct(values: tuple[object, object]) -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    for value in values:
        tracer.start_span("s", attributes={"k": value}).end()  # type: ignore[dict-item]
    encoder = SpanEncoder()
    spans = list(exporter.get_finished_spans())
    assert ExportTraceServiceRequest.FromString(encoder.request(spans)) == encode_spans(spans)

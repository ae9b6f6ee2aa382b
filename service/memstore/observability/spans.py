"""memstore's span recorder: an implementation of the OpenTelemetry *API* ``Tracer`` and
``Span`` that records only what is exported and hands each span, when it ends, to a sink
(``span_export.SpanBatcher``) as encoded OTLP bytes.

Why not the SDK's ``Tracer``/``Span``: measured in a running service, an SDK span costs
about 35 µs from start to export (sampler and id objects, locked attribute containers,
a ``ReadableSpan`` copy at ``end``, and the span graph kept alive in the batch queue until
the exporter thread turns it into protobuf objects), several times what a cache-hit request
costs. These spans are plain slotted objects, and nothing but bytes outlives ``end``; see
docs/architecture.md, Observability, for the figures. Everything else stays standard: the
spans live in the OpenTelemetry context (``trace.get_current_span``, ``use_span``,
propagators, log correlation all work), sampling follows the SDK's samplers
(``tracing.SamplingPlan``), the resource comes from the SDK's ``Resource.create``, and the
export follows the OTLP exporter specification (``span_export``).
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    use_span,
)
from opentelemetry.util import types

log = logging.getLogger(__name__)

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
# OTLP's enum values: SpanKind in trace.proto is the API's value + 1.
_KIND = {kind: kind.value + 1 for kind in SpanKind}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_ATTRIBUTE_LENGTH = 4096  # long strings (stack traces) are cut, as SDK limits allow


class RecordedSpan(trace.Span):
    """A sampled span. Not thread-safe: a span belongs to the request (task) that made it.

    ``deferred``: a function and its arguments whose result (more attributes) is computed
    at export, in the exporter's batch, instead of on the request path; see
    ``all_attributes``."""

    # As a parent, a span of this process is never remote (``SpanContext.is_remote``).
    is_remote = False

    __slots__ = (
        "_context",
        "_sink",
        "attributes",
        "deferred",
        "end_time",
        "events",
        "kind",
        "links",
        "name",
        "parent_id",
        "parent_remote",
        "span_id",
        "start_time",
        "status_code",
        "status_message",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        sink: Callable[[RecordedSpan], None],
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent: SpanContext | RecordedSpan | None,
        attributes: dict[str, Any],
        start_time: int | None = None,
        trace_state: TraceState | None = None,
    ) -> None:
        self._sink: Callable[[RecordedSpan], None] | None = sink
        self.name = name
        self.kind = _KIND[kind]
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent.span_id if parent is not None else 0
        self.parent_remote = parent is not None and parent.is_remote
        self.trace_state = trace_state
        self.start_time = start_time or time.time_ns()
        self.end_time = 0
        self.attributes = attributes
        self.deferred: tuple[Callable[..., dict[str, Any]], tuple[Any, ...]] | None = None
        self.events: list[tuple[str, int, Mapping[str, Any]]] | None = None
        self.links: list[tuple[SpanContext, Mapping[str, Any]]] | None = None
        self.status_code = 0  # StatusCode.UNSET
        self.status_message: str | None = None
        self._context: SpanContext | None = None

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(
                self.trace_id, self.span_id, False, _SAMPLED, self.trace_state
            )
        return self._context

    def is_recording(self) -> bool:
        return self._sink is not None

    def end(self, end_time: int | None = None) -> None:
        sink = self._sink
        if sink is None:
            return  # ended twice: the API says to ignore it
        self._sink = None
        self.end_time = end_time or time.time_ns()
        sink(self)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._sink is not None and value is not None:
            self.attributes[key] = _clean(value)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._sink is not None:
            self.attributes.update(_cleaned(attributes))

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._sink is None:
            return
        if self.events is None:
            self.events = []
        cleaned = _cleaned(attributes or {})
        self.events.append((name, timestamp or time.time_ns(), cleaned))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._sink is None or not context.is_valid:
            return
        if self.links is None:
            self.links = []
        self.links.append((context, dict(attributes or {})))

    def update_name(self, name: str) -> None:
        if self._sink is not None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._sink is None:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if self.status_code == StatusCode.OK.value:
            return  # OK is final (API spec)
        if code is StatusCode.UNSET:
            return
        self.status_code = code.value
        self.status_message = description if code is StatusCode.ERROR else None

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """The ``exception`` event of the semantic conventions, as the SDK records it."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": qualname if module in ("builtins", "") else f"{module}.{qualname}",
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def all_attributes(self) -> dict[str, Any]:
        """The attributes, with the deferred ones (set attributes win over deferred)."""
        if self.deferred is None:
            return self.attributes
        function, args = self.deferred
        try:
            return {**function(*args), **self.attributes}
        except Exception:  # a bug there must not lose the span, nor the batch
            log.exception("deferred span attributes failed", extra={"span": self.name})
            return self.attributes

    def __repr__(self) -> str:  # names and ids only: attributes may be long
        return f"RecordedSpan({self.name!r}, trace_id={self.trace_id:032x})"


def _clean(value: Any) -> Any:
    """What the SDK keeps of an attribute value: scalars, homogeneous sequences as tuples,
    long strings cut. Anything else becomes its ``str`` (the SDK would drop it), as does
    an integer OTLP's int64 cannot carry."""
    if isinstance(value, str):
        return value if len(value) <= _MAX_ATTRIBUTE_LENGTH else value[:_MAX_ATTRIBUTE_LENGTH]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, (bool, float, bytes)) or value is None:
        return value
    if isinstance(value, Sequence):
        return tuple(_clean(v) for v in value)
    return str(value)


def _cleaned(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes as kept: ``None`` values are dropped, as the SDK drops them."""
    return {k: _clean(v) for k, v in attributes.items() if v is not None}


class SpanTracer(trace.Tracer):
    """Samples with ``should_sample(trace_id, parent)`` and records ``RecordedSpan``s."""

    def __init__(
        self,
        sink: Callable[[RecordedSpan], None],
        should_sample: Callable[[int, SpanContext | None], bool],
    ) -> None:
        self._sink = sink
        self._should_sample = should_sample
        self._random_bits = random.getrandbits

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is not None and parent.is_valid:
            trace_id = parent.trace_id
            state = parent.trace_state
        else:
            parent, state = None, None
            trace_id = self.new_trace_id()
        span_id = self._random_bits(64) or 1
        if not self._should_sample(trace_id, parent):
            return NonRecordingSpan(SpanContext(trace_id, span_id, False, _NOT_SAMPLED, state))
        span = RecordedSpan(
            self._sink,
            name,
            kind,
            trace_id,
            span_id,
            parent,
            _cleaned(attributes) if attributes else {},
            start_time,
            state,
        )
        for link in links or ():
            span.add_link(link.context, link.attributes)
        return span

    def child(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int | None = None,
    ) -> RecordedSpan | None:
        """A child of the current span, or ``None`` when it would not be sampled. The fast
        path of ``start_span`` for memstore's own spans: ``attributes`` must already be
        valid attribute values, and a parent recorded here is taken as is (every
        standard sampler samples the children of a sampled parent)."""
        parent = trace.get_current_span()
        if type(parent) is RecordedSpan:
            return self.new_span(name, kind, parent.trace_id, parent, attributes, start_time)
        span = self.start_span(name, None, kind, attributes, start_time=start_time)
        return span if isinstance(span, RecordedSpan) else None

    def new_trace_id(self) -> int:
        return self._random_bits(128) or 1

    def new_span(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        parent: SpanContext | RecordedSpan | None,
        attributes: dict[str, Any],
        start_time: int | None = None,
    ) -> RecordedSpan:
        """A sampled span whose sampling was decided by the caller (the request path, or
        ``child`` under a recorded parent)."""
        return RecordedSpan(
            self._sink,
            name,
            kind,
            trace_id,
            self._random_bits(64) or 1,
            parent,
            attributes,
            start_time,
            parent.trace_state if parent is not None else None,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]  # API uses a private decorator type
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current

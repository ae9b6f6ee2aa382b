"""The request path's sampling (``Tracing.request_span``): decided by the configured SDK
sampler before any span exists, on the parent the configured propagator extracts and on a
trace id drawn ahead; a dropped request creates no span at all, a sampled one gets the SDK
span with that same trace id; children follow the request's decision."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from multidict import CIMultiDict
from opentelemetry import context as context_api
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util._importlib_metadata import entry_points

from memstore.observability.tracing import Tracing
from memstore.observability.tracing_config import (
    PreDrawnIdGenerator,
    RequestDecisionSampler,
    RequestPropagator,
    propagator_from_env,
    sampler_from_env,
)

SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
NAME = "GET /v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"


def NO_ATTRIBUTES() -> dict[str, Any]:
    return {}


class ScriptedIds(IdGenerator):
    """Trace ids from a list, so a test knows the id every root decision was made on."""

    def __init__(self, trace_ids: Iterator[int]) -> None:
        self._trace_ids = trace_ids
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return next(self._trace_ids)


class Started(SpanProcessor):
    """Counts the spans the SDK started (recording ones)."""

    def __init__(self) -> None:
        self.count = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.count += 1

    def on_end(self, span: ReadableSpan) -> None:
        pass


def _tracing(
    env: dict[str, str], ids: IdGenerator | None = None, configured: Sampler | None = None
) -> tuple[Tracing, InMemorySpanExporter, Started]:
    sampler = RequestDecisionSampler(configured or sampler_from_env(env))
    drawn = PreDrawnIdGenerator(ids or RandomIdGenerator())
    provider = TracerProvider(sampler=sampler, id_generator=drawn, shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    started = Started()
    provider.add_span_processor(started)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider, sampler, drawn, propagator_from_env(env)), exporter, started


def _sdk_sampler(env: dict[str, str]) -> Sampler:
    """The sampler the SDK itself builds for ``env`` (its entry point, its argument)."""
    name = env["OTEL_TRACES_SAMPLER"]
    (found,) = entry_points(group="opentelemetry_traces_sampler", name=name)
    arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    sampler: Sampler = found.load()(float(arg) if "ratio" in name and arg else arg)
    return sampler


def _ids(seed: str, count: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(128) or 1 for _ in range(count)]


@pytest.mark.parametrize("ratio", ["0", "0.1", "0.5", "1"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_root_requests_decide_as_the_sdk_sampler_on_the_drawn_id(name: str, ratio: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": ratio}
    trace_ids = _ids(f"{name}-{ratio}", 400)
    tracing, exporter, started = _tracing(env, ScriptedIds(iter(trace_ids)))
    reference = _sdk_sampler(env)
    expected = []
    for trace_id in trace_ids:
        span = tracing.request_span(tracing.request_parent({}), NAME, NO_ATTRIBUTES)
        decision = reference.should_sample(None, trace_id, NAME).decision
        if decision.is_sampled():  # type: ignore[no-untyped-call]
            assert span is not None
            assert span.get_span_context().trace_id == trace_id  # the id decided on
            span.end()
            expected.append(trace_id)
        else:
            assert span is None
    assert [s.context.trace_id for s in exporter.get_finished_spans()] == expected
    assert started.count == len(expected)  # a dropped request started no span
    if name.endswith("traceidratio") and ratio == "0.1":
        assert 0.03 < len(expected) / len(trace_ids) < 0.2


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("flags", ["01", "00"])
def test_requests_with_a_parent_decide_as_the_sdk_sampler(name: str, flags: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    tracing, exporter, started = _tracing(env)
    reference = _sdk_sampler(env)
    for trace_id in _ids(name + flags, 200):
        parent = tracing.request_parent({"traceparent": f"00-{trace_id:032x}-{'5' * 16}-{flags}"})
        span = tracing.request_span(parent, NAME, NO_ATTRIBUTES)
        decision = reference.should_sample(parent, trace_id, NAME).decision
        assert (span is not None) is decision.is_sampled()  # type: ignore[no-untyped-call]
        if span is not None:
            context = span.get_span_context()
            assert context.trace_id == trace_id
            span.end()
            (ended,) = exporter.get_finished_spans()
            assert ended.parent is not None and ended.parent.span_id == int("5" * 16, 16)
            assert ended.parent.is_remote
            exporter.clear()
    assert started.count == 0 or name != "parentbased_always_on" or flags == "01"


def test_malformed_traceparent_starts_a_new_trace() -> None:
    tracing, _, _ = _tracing({"OTEL_TRACES_SAMPLER": "parentbased_always_on"})
    for header in ("00-xyz", f"00-{'0' * 32}-{'1' * 16}-01", f"ff-{'1' * 32}-{'1' * 16}-01"):
        span = tracing.request_span(
            tracing.request_parent({"traceparent": header}), NAME, NO_ATTRIBUTES
        )
        assert span is not None
        assert span.get_span_context().trace_id != int("1" * 32, 16)
        span.end()


def test_b3_parent_with_the_b3_propagator_only() -> None:
    tracing, exporter, _ = _tracing({"OTEL_PROPAGATORS": "b3multi"})
    trace_id = "463ac35c9f6413ad48485a3953bb6124"
    # As aiohttp hands them over: case-insensitive.
    headers = CIMultiDict(
        {"X-B3-TraceId": trace_id, "X-B3-SpanId": "a2fb4a1d1a96d312", "X-B3-Sampled": "1"}
    )
    span = tracing.request_span(tracing.request_parent(headers), NAME, NO_ATTRIBUTES)
    assert span is not None
    span.end()
    (ended,) = exporter.get_finished_spans()
    assert f"{ended.context.trace_id:032x}" == trace_id
    assert ended.parent is not None and f"{ended.parent.span_id:016x}" == "a2fb4a1d1a96d312"
    # A W3C header means nothing to it: a new trace.
    other = tracing.request_span(
        tracing.request_parent({"traceparent": f"00-{trace_id}-{'1' * 16}-01"}),
        NAME,
        NO_ATTRIBUTES,
    )
    assert other is not None and f"{other.get_span_context().trace_id:032x}" != trace_id


def test_children_follow_the_requests_decision() -> None:
    tracing, exporter, started = _tracing({"OTEL_TRACES_SAMPLER": "always_on"})
    token = tracing.unsampled()
    try:
        assert tracing.in_unsampled()
        assert tracing.child_span("load", tracing.CLIENT, {"a": 1}) is None
    finally:
        tracing.sampled_again(token)
    assert not tracing.in_unsampled()
    assert started.count == 0

    server = tracing.request_span(tracing.request_parent({}), NAME, NO_ATTRIBUTES)
    assert server is not None
    attached = tracing.attach(tracing.set_span_in_context(server))
    try:
        child = tracing.child_span("load", tracing.CLIENT, {"db.operation.name": "load"})
        assert child is not None
        child.end()
    finally:
        tracing.detach(attached)
    server.end()
    ended = {s.name: s for s in exporter.get_finished_spans()}
    assert ended["load"].parent is not None
    assert ended["load"].parent.span_id == ended[NAME].context.span_id
    assert ended["load"].context.trace_id == ended[NAME].context.trace_id
    assert ended["load"].attributes == {"db.operation.name": "load"}


def test_a_drawn_id_goes_to_a_span_only_when_handed_over() -> None:
    ids = PreDrawnIdGenerator(ScriptedIds(iter([7, 8, 9, 10])))
    assert ids.draw_trace_id() == 7  # a dropped request's: not kept
    assert ids.generate_trace_id() == 8
    assert ids.draw_trace_id() == 9
    ids.hand_over(9)
    assert ids.generate_trace_id() == 9  # the drawn one, once
    assert ids.generate_trace_id() == 10


class Counting(Sampler):
    """The SDK's sampler it wraps, counting its calls; adds an attribute and a trace state
    to what it samples, as a sampler may."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner
        self.calls = 0

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Sequence[Any] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.calls += 1
        result = self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links)
        if not result.decision.is_sampled():  # type: ignore[no-untyped-call]
            return result
        state = (result.trace_state or TraceState()).add("counting", str(self.calls))
        return SamplingResult(
            result.decision, {**(attributes or {}), "sampler.calls": self.calls}, state
        )

    def get_description(self) -> str:
        return f"Counting{{{self.inner.get_description()}}}"


@pytest.mark.parametrize("name", ["always_on", "always_off", "parentbased_traceidratio"])
def test_the_configured_sampler_decides_once_per_request(name: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.5"}
    counting = Counting(sampler_from_env(env))
    tracing, exporter, started = _tracing(env, configured=counting)
    assert tracing.provider.sampler.get_description() == counting.get_description()
    for n in range(1, 101):
        span = tracing.request_span(
            tracing.request_parent({}), NAME, lambda: {"http.request.method": "GET"}
        )
        assert counting.calls == n
        if span is not None:
            span.end()
    ended = exporter.get_finished_spans()
    assert started.count == len(ended)
    assert (len(ended) > 0) is (name != "always_off")
    for finished in ended:
        # The attributes given at start and the one the sampler added, and its trace state.
        assert finished.context is not None
        assert dict(finished.attributes or {}) == {
            "http.request.method": "GET",
            "sampler.calls": int(finished.context.trace_state["counting"]),
        }


def test_other_spans_ask_the_configured_sampler() -> None:
    counting = Counting(sampler_from_env({"OTEL_TRACES_SAMPLER": "always_on"}))
    tracing, exporter, _ = _tracing({}, configured=counting)
    server = tracing.request_span(tracing.request_parent({}), NAME, NO_ATTRIBUTES)
    assert server is not None and counting.calls == 1
    attached = tracing.attach(tracing.set_span_in_context(server))
    try:
        child = tracing.child_span("load", tracing.CLIENT, {"db.operation.name": "load"})
        assert child is not None and counting.calls == 2
        child.end()
    finally:
        tracing.detach(attached)
    server.end()
    other = tracing.tracer.start_span("other")  # no decision left behind for it
    assert counting.calls == 3
    other.end()
    ended = {s.name: s for s in exporter.get_finished_spans()}
    assert ended["load"].attributes == {"db.operation.name": "load", "sampler.calls": 2}
    assert ended["other"].attributes == {"sampler.calls": 3}


def test_a_decision_the_sdk_did_not_take_is_not_left_behind() -> None:
    env = {"OTEL_TRACES_SAMPLER": "always_on"}
    counting = Counting(sampler_from_env(env))
    tracing, exporter, _ = _tracing(env, configured=counting)

    def failing() -> dict[str, Any]:
        raise RuntimeError("attributes")

    with pytest.raises(RuntimeError):
        tracing.request_span(tracing.request_parent({}), NAME, failing)
    span = tracing.tracer.start_span("next")
    assert counting.calls == 2  # asked again, not handed the failed request's decision
    span.end()
    assert [s.name for s in exporter.get_finished_spans()] == ["next"]


@pytest.mark.parametrize("name", ["traceidratio", "parentbased_traceidratio"])
@pytest.mark.parametrize("ratio", ["0", "0.1", "0.5", "1"])
def test_the_ratio_samplers_decide_exactly_as_the_sdks(name: str, ratio: str) -> None:
    env = {"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": ratio}
    ours, theirs = sampler_from_env(env), _sdk_sampler(env)
    assert type(ours) is not type(theirs) and isinstance(ours, type(theirs))
    assert ours.get_description() == theirs.get_description()
    propagator = propagator_from_env({})
    state = "vendor=a,other=b"
    # The empty context (a request without trace headers), ``None`` (the current context,
    # with no span, then with a sampled and an unsampled span), baggage only, and remote
    # parents sampled or not.
    parents: list[Context | None] = [Context(), None, propagator.extract({"baggage": "k=v"})]
    for trace_id in _ids(name + ratio, 300):
        for flags in ("00", "01"):
            header = {"traceparent": f"00-{trace_id:032x}-{'7' * 16}-{flags}", "tracestate": state}
            parents.append(propagator.extract(header))
    currents = [None, *(p for p in parents[-2:] if p is not None)]
    for current in currents:
        token = context_api.attach(current) if current is not None else None
        try:
            for i, trace_id in enumerate(_ids(ratio + name, 600)):
                parent = parents[i % len(parents)]
                for attributes in (None, {"http.request.method": "GET"}):
                    mine = ours.should_sample(parent, trace_id, NAME, None, attributes)
                    sdk = theirs.should_sample(parent, trace_id, NAME, None, attributes)
                    assert mine.decision is sdk.decision
                    assert dict(mine.attributes) == dict(sdk.attributes)
                    assert mine.trace_state == sdk.trace_state
        finally:
            if token is not None:
                context_api.detach(token)


TRACE_HEADERS = {
    "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01",
    "tracestate": "vendor=a",
    "baggage": "tenant=t1",
    "b3": "ab" * 16 + "-" + "cd" * 8 + "-1",
    "x-b3-traceid": "ab" * 16,
    "x-b3-spanid": "cd" * 8,
    "x-b3-sampled": "1",
    "x-b3-flags": "1",
}


@pytest.mark.parametrize(
    "propagators", ["tracecontext", "baggage", "b3", "b3multi", "tracecontext,baggage,b3multi"]
)
def test_a_request_without_the_propagators_headers_skips_only_an_empty_extraction(
    propagators: str,
) -> None:
    env = {"OTEL_PROPAGATORS": propagators, "OTEL_TRACES_SAMPLER": "always_on"}
    tracing, _, _ = _tracing(env)
    propagator = propagator_from_env(env)
    assert propagator.parent_headers  # every one of these is known
    rng = random.Random(propagators)
    names = sorted(TRACE_HEADERS)
    for _ in range(200):
        chosen = rng.sample(names, rng.randint(0, 3))
        headers = CIMultiDict({"Host": "h", **{n.title(): TRACE_HEADERS[n] for n in chosen}})
        found = tracing.request_parent(headers)
        extracted = propagator.extract(headers)
        if found is None:
            # Skipped: the propagators would have found neither a parent nor baggage.
            assert not extracted
        else:
            assert _comparable(found) == _comparable(extracted)


def _comparable(context: Context) -> dict[str, Any]:
    # A span compares by identity; its span context by value.
    return {
        key: value.get_span_context() if hasattr(value, "get_span_context") else value
        for key, value in context.items()
    }


def test_an_unknown_propagator_is_always_asked() -> None:
    class Custom(TraceContextTextMapPropagator):
        """A subclass may read any header: its requests are always extracted."""

    propagator = RequestPropagator([Custom()])
    assert propagator.parent_headers is None
    known = RequestPropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    assert known.parent_headers == frozenset({"traceparent", "baggage"})

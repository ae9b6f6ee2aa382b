"""tracing.py: the sampling plan decides as the SDK's samplers do, the request path's
``traceparent`` parsing agrees with the W3C propagator, ``Tracing.from_env`` switches on
and off as the OTEL_* variables say, and ``child_span`` follows the request's decision."""

from __future__ import annotations

import contextvars
import random
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from memstore.core.errors import ConfigurationError
from memstore.observability.tracing import SamplingPlan, Tracing, sampling_plan

ENDPOINT = "http://127.0.0.1:1"  # never contacted: nothing is started or exported here
NAMES = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
RATIOS = (0.0, 0.1, 0.5, 1.0)
LOW = (1 << 64) - 1
TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TID = f"{TRACE_ID:032x}"
SID = f"{SPAN_ID:016x}"


def _sdk_sampler(name: str, ratio: float) -> sampling.Sampler:
    root: sampling.Sampler
    if name.endswith("always_on"):
        root = sampling.ALWAYS_ON
    elif name.endswith("always_off"):
        root = sampling.ALWAYS_OFF
    else:
        root = sampling.TraceIdRatioBased(ratio)
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def _parent(trace_id: int, sampled: bool, remote: bool = True) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id, 0x1234, is_remote=remote, trace_flags=flags)


def _trace_ids(ratio: float) -> list[int]:
    rng = random.Random(f"sampling-{ratio}")
    ids = [rng.getrandbits(128) or 1 for _ in range(2000)]
    bound = sampling.TraceIdRatioBased(ratio).bound
    high = rng.getrandbits(64) << 64
    for low in (bound - 1, bound, bound + 1, 0, 1, LOW):  # the edges of the ratio rule
        if 0 <= low <= LOW and (high | low):
            ids.append(high | low)
            ids.append(low or 1)
    return ids


# -- sampling_plan ---------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", NAMES)
def test_plan_decides_as_the_sdk_sampler(name: str, ratio: float) -> None:
    plan = sampling_plan({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": str(ratio)})
    sdk = _sdk_sampler(name, ratio)
    assert plan.description == sdk.get_description()
    assert plan.parent_based is name.startswith("parentbased_")
    decided = set()
    for trace_id in _trace_ids(ratio):
        parents: list[SpanContext | None] = [
            None,
            _parent(trace_id, sampled=True),
            _parent(trace_id, sampled=False),
            _parent(trace_id, sampled=True, remote=False),
            _parent(trace_id, sampled=False, remote=False),
        ]
        for parent in parents:
            context = (
                None if parent is None else trace.set_span_in_context(NonRecordingSpan(parent))
            )
            result = sdk.should_sample(context, trace_id, "n")
            expected = result.decision.is_sampled()  # type: ignore[no-untyped-call]
            assert plan.should_sample(trace_id, parent) is expected, (
                f"{name} {ratio} {trace_id:032x} {parent}"
            )
            decided.add(expected)
    if name.endswith("traceidratio") and 0 < ratio < 1:
        assert decided == {True, False}  # the ids did exercise both sides of the bound


@pytest.mark.parametrize(("ratio", "sampled_share"), [(0.1, 0.1), (0.5, 0.5)])
def test_ratio_plan_samples_about_the_ratio(ratio: float, sampled_share: float) -> None:
    plan = sampling_plan(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
    )
    rng = random.Random(7)
    sampled = sum(plan.should_sample(rng.getrandbits(128), None) for _ in range(20000))
    assert abs(sampled / 20000 - sampled_share) < 0.02


def test_default_plan_is_parentbased_always_on() -> None:
    expected = _sdk_sampler("parentbased_always_on", 1.0).get_description()
    for env in ({}, {"OTEL_TRACES_SAMPLER": ""}, {"OTEL_TRACES_SAMPLER": "  "}):
        plan = sampling_plan(env)
        assert plan == SamplingPlan(True, 1 << 64, expected)
    assert sampling_plan({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) == sampling_plan({})


def test_names_are_case_insensitive_and_the_ratio_defaults_to_one() -> None:
    plan = sampling_plan({"OTEL_TRACES_SAMPLER": " ParentBased_TraceIdRatio "})
    ratio = _sdk_sampler("parentbased_traceidratio", 1.0)
    assert plan == SamplingPlan(True, 1 << 64, ratio.get_description())
    assert sampling_plan({"OTEL_TRACES_SAMPLER": "ALWAYS_OFF"}).bound == 0
    # The argument only matters to the ratio samplers.
    always = sampling_plan({"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "x"})
    assert always.bound == 1 << 64 and not always.parent_based


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "xray"},
        {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
        {"OTEL_TRACES_SAMPLER": "parentbased_jaeger_remote"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "-0.1"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "nan"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "abc"},
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
    ],
)
def test_bad_sampler_settings_are_configuration_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_SAMPLER"):
        sampling_plan(env)


# -- Tracing.sample_request ------------------------------------------------------------------


def _tracing(sampler: str = "parentbased_always_on", arg: str | None = None) -> Tracing:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_SAMPLER": sampler}
    if arg is not None:
        env["OTEL_TRACES_SAMPLER_ARG"] = arg
    tracing = Tracing.from_env(env)
    assert tracing is not None
    return tracing


def _header(flags: str = "01", trace_id: str = TID, span_id: str = SID) -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def test_sampled_traceparent_gives_the_remote_parent() -> None:
    result = _tracing().sample_request({"traceparent": _header()})
    assert result is not None
    trace_id, parent = result
    assert trace_id == TRACE_ID
    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (TRACE_ID, SPAN_ID)
    assert parent.is_remote and parent.is_valid
    assert parent.trace_flags.sampled
    assert len(parent.trace_state) == 0


def test_tracestate_is_kept_on_the_parent() -> None:
    result = _tracing().sample_request(
        {"traceparent": _header(), "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
    )
    assert result is not None and result[1] is not None
    state = result[1].trace_state
    assert dict(state) == {"congo": "t61rcWkgMzE", "rojo": "00f067aa0ba902b7"}
    assert state.to_header() == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.mark.parametrize(
    "sampler",
    ["parentbased_always_on", "parentbased_traceidratio", "parentbased_always_off"],
)
def test_parent_based_follows_the_parents_flag(sampler: str) -> None:
    tracing = _tracing(sampler, "1.0")
    assert tracing.sample_request({"traceparent": _header("00")}) is None
    sampled = tracing.sample_request({"traceparent": _header("01")})
    assert sampled is not None and sampled[0] == TRACE_ID
    # Other flag bits do not matter, the sampled bit does.
    assert tracing.sample_request({"traceparent": _header("02")}) is None
    assert tracing.sample_request({"traceparent": _header("03")}) is not None


def test_parentbased_always_off_without_a_parent_samples_nothing() -> None:
    tracing = _tracing("parentbased_always_off")
    for _ in range(50):
        assert tracing.sample_request({}) is None
    assert tracing.sample_request({"traceparent": _header()}) is not None


def test_always_on_ignores_the_parents_flag() -> None:
    result = _tracing("always_on").sample_request({"traceparent": _header("00")})
    assert result is not None and result[1] is not None
    assert result[0] == TRACE_ID and not result[1].trace_flags.sampled


def test_ratio_decides_on_the_trace_id_of_the_parent_or_the_new_root() -> None:
    tracing = _tracing("traceidratio", "0.5")
    bound = sampling.TraceIdRatioBased(0.5).bound
    below, above = (7 << 64) | (bound - 1), (7 << 64) | bound
    # With a parent: its trace id decides, whatever its flag says.
    assert tracing.sample_request({"traceparent": _header("01", f"{above:032x}")}) is None
    result = tracing.sample_request({"traceparent": _header("00", f"{below:032x}")})
    assert result is not None and result[0] == below
    # Without one: a new trace id, sampled when its low 64 bits are under the bound.
    roots = [tracing.sample_request({}) for _ in range(1000)]
    sampled = [r for r in roots if r is not None]
    assert 350 < len(sampled) < 650  # about half (binomial, 1000 draws: far out of reach)
    assert len({trace_id for trace_id, _ in sampled}) == len(sampled)
    for trace_id, parent in sampled:
        assert parent is None
        assert 0 < trace_id < 1 << 128 and trace_id & LOW < bound
    assert any(trace_id >> 64 for trace_id, _ in sampled)  # the high bits are random too
    # A parent-based ratio: the parent's flag decides for a child, the ratio for a root.
    parent_based = _tracing("parentbased_traceidratio", "0")
    assert parent_based.sample_request({}) is None
    assert parent_based.sample_request({"traceparent": _header("01")}) is not None


def test_root_request_gets_a_new_trace_id() -> None:
    tracing = _tracing("always_on")
    first, second = tracing.sample_request({}), tracing.sample_request({"tracestate": "a=1"})
    assert first is not None and second is not None
    assert first[1] is None and second[1] is None
    assert first[0] != second[0] and 0 not in (first[0], second[0])


MALFORMED = [
    "",
    "garbage",
    f"00-{TID[:-1]}-{SID}-01",  # trace id too short
    f"00-{TID}0-{SID}-01",  # trace id too long
    f"00-{TID}-{SID[:-1]}-01",  # span id too short
    f"00-{TID}-{SID}-1",  # flags too short
    f"0-{TID}-{SID}-01",  # version too short
    f"00-{TID.upper()}-{SID}-01",  # uppercase hex
    f"00-{TID}-{SID.upper()}-01",
    f"00-{TID}-{SID}-0A",
    f"ff-{TID}-{SID}-01",  # version ff is invalid
    f"00-{'0' * 32}-{SID}-01",  # all-zero trace id
    f"00-{TID}-{'0' * 16}-01",  # all-zero span id
    f"00-{TID}-{SID}-01-extra",  # version 00 has no more fields
    f"00-{TID}-{SID}-01-",
    f"00_{TID}_{SID}_01",
    f"00-{TID}-{SID}-zz",
    f"00-{TID[:-1]}g-{SID}-01",
    f"01-{TID}-{SID}-01-" + "x" * 500,  # longer than the propagator's 512 characters
]


@pytest.mark.parametrize("header", MALFORMED)
def test_malformed_traceparent_starts_a_new_trace(header: str) -> None:
    # The SDK's W3C propagator ignores it too.
    extracted = TraceContextTextMapPropagator().extract({"traceparent": header})
    assert not trace.get_current_span(extracted).get_span_context().is_valid
    result = _tracing("always_on").sample_request({"traceparent": header, "tracestate": "a=1"})
    assert result is not None
    trace_id, parent = result
    assert parent is None
    assert trace_id not in (0, TRACE_ID)
    # Under a parent-based sampler it is a root too, sampled as a root.
    assert _tracing("parentbased_always_off").sample_request({"traceparent": header}) is None


ACCEPTED = [
    _header(),
    f"01-{TID}-{SID}-01-extra",  # a future version may carry more fields
    f"cc-{TID}-{SID}-01",
    f"cc-{TID}-{SID}-01-what-the-future-holds",
    f" \t{_header()}\t ",  # optional whitespace around
    f"00-{TID}-{SID}-ff",
]


@pytest.mark.parametrize("header", ACCEPTED)
def test_valid_traceparents_are_read_as_the_w3c_propagator_reads_them(header: str) -> None:
    extracted = trace.get_current_span(
        TraceContextTextMapPropagator().extract({"traceparent": header, "tracestate": "k=v"})
    ).get_span_context()
    assert extracted.is_valid
    result = _tracing("always_on").sample_request({"traceparent": header, "tracestate": "k=v"})
    assert result is not None
    trace_id, parent = result
    assert parent is not None
    assert trace_id == parent.trace_id == extracted.trace_id == TRACE_ID
    assert parent.span_id == extracted.span_id == SPAN_ID
    assert parent.trace_flags == extracted.trace_flags
    assert parent.is_remote is extracted.is_remote is True
    assert parent.trace_state == extracted.trace_state == TraceState([("k", "v")])


# -- Tracing.from_env ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_SERVICE_NAME": "x"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "TRUE"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "None"},
        # Off wins over a bad setting that would otherwise be an error.
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true",
         "OTEL_TRACES_SAMPLER": "xray"},
    ],
)  # fmt: skip
def test_from_env_is_off(env: dict[str, str]) -> None:
    assert Tracing.from_env(env) is None


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "false"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        # An empty variable means the same as an unset one (OpenTelemetry configuration spec).
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": ""},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": ""},
    ],
)
def test_from_env_is_on(env: dict[str, str]) -> None:
    tracing = Tracing.from_env(env)
    assert tracing is not None
    assert tracing.batcher.target.url == f"{ENDPOINT}/v1/traces"
    assert tracing.plan == sampling_plan({})
    assert tracing.resource_attributes["service.name"]


def test_from_env_uses_the_sampler_and_export_settings() -> None:
    tracing = Tracing.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
            "OTEL_TRACES_SAMPLER": "traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "7",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1500",
        }
    )
    assert tracing is not None
    assert tracing.plan == SamplingPlan(
        False, sampling.TraceIdRatioBased(0.25).bound, "TraceIdRatioBased{0.25}"
    )
    assert tracing.batcher.max_batch == 7
    assert tracing.batcher.target.timeout == 1.5
    # The tracer samples with the same plan.
    tracer_sampled = [tracing.tracer.start_span("s").get_span_context() for _ in range(400)]
    assert {tracing.plan.should_sample(c.trace_id, None) for c in tracer_sampled} == {True, False}
    for ctx in tracer_sampled:
        assert ctx.trace_flags.sampled is tracing.plan.should_sample(ctx.trace_id, None)


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "jaeger"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp,console"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_SAMPLER": "xray"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "grpc://127.0.0.1:4317"},
    ],
)
def test_from_env_rejects_what_it_cannot_do(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        Tracing.from_env(env)


# -- child_span -------------------------------------------------------------------------------


def test_child_span_follows_the_requests_decision() -> None:
    tracing = _tracing("always_on")
    assert tracing.child_span("root", tracing.INTERNAL, {}) is not None  # no current span
    token = tracing.unsampled()
    assert tracing.in_unsampled()
    assert tracing.child_span("c", tracing.INTERNAL, {}) is None
    inner = tracing.unsampled()
    tracing.sampled_again(inner)
    assert tracing.child_span("c", tracing.INTERNAL, {}) is None  # still the outer request
    tracing.sampled_again(token)
    assert not tracing.in_unsampled()
    assert tracing.child_span("c", tracing.INTERNAL, {}) is not None


def test_the_unsampled_mark_is_per_context() -> None:
    tracing = _tracing()
    other = contextvars.copy_context()
    other.run(tracing.unsampled)
    assert not tracing.in_unsampled()
    assert other.run(tracing.in_unsampled)
    # Another Tracing (another app in the process) has its own flag.
    token = tracing.unsampled()
    try:
        assert not _tracing().in_unsampled()
    finally:
        tracing.sampled_again(token)


@pytest.mark.parametrize("sampled", [True, False])
def test_child_span_follows_the_current_span(sampled: bool) -> None:
    tracing = _tracing()
    current: Any = NonRecordingSpan(_parent(TRACE_ID, sampled=sampled))
    with trace.use_span(current):
        child = tracing.child_span("c", tracing.CLIENT, {})
        assert (child is not None) is sampled
        assert child is None or child.trace_id == TRACE_ID
    recorded = tracing.tracer.start_span("sampled")
    with trace.use_span(recorded, end_on_exit=False):
        assert tracing.child_span("c", tracing.CLIENT, {}) is not None
        token = tracing.unsampled()
        assert tracing.child_span("c", tracing.CLIENT, {}) is None
        tracing.sampled_again(token)


def test_child_span_is_none_inside_an_unsampled_request() -> None:
    tracing = _tracing("always_on")
    root = tracing.child_span("root", tracing.INTERNAL, {})
    assert root is not None and root.parent_id == 0
    with trace.use_span(root, end_on_exit=False):
        child = tracing.child_span("child", tracing.CLIENT, {"a": 1})
        assert child is not None
        assert (child.trace_id, child.parent_id) == (root.trace_id, root.span_id)
        token = tracing.unsampled()
        assert tracing.child_span("skipped", tracing.CLIENT, {}) is None
        tracing.sampled_again(token)
    off = _tracing("parentbased_always_off")
    assert off.child_span("root", off.INTERNAL, {}) is None

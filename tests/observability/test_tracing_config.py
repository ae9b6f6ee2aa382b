"""Tracing is configured only by the standard OTEL_* variables: when it is on, what the SDK
gets from them, and a clear error for what cannot work."""

from __future__ import annotations

import os
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from memstore.core.errors import ConfigurationError
from memstore.core.settings import Settings
from memstore.observability.tracing import Tracing, tracing_enabled
from memstore.observability.tracing_config import (
    propagator_from_env,
    sampler_from_env,
    span_exporters,
)
from memstore.observability.tracing_export import OtlpHttpSpanExporter
from memstore.server.app import create_app

ENDPOINT = "http://127.0.0.1:9"  # never contacted: no span is exported in these tests


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean OTEL_* environment (the SDK's classes read os.environ)."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": " "}, False),  # empty means unset
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_when_tracing_is_on(otel_env: pytest.MonkeyPatch, env: dict[str, str], on: bool) -> None:
    assert tracing_enabled(env) is on
    for name, value in env.items():
        otel_env.setenv(name, value)
    tracing = Tracing.from_env()
    assert (tracing is not None) is on
    if tracing is not None:
        tracing.shutdown()


@pytest.mark.parametrize(
    ("env", "classes"),
    [
        ({}, [OtlpHttpSpanExporter]),  # the specification's default protocol
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, [GrpcSpanExporter]),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            [OtlpHttpSpanExporter],
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "console, otlp"}, [ConsoleSpanExporter, OtlpHttpSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_grpc"}, [GrpcSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp_proto_http"}, [HttpSpanExporter]),  # the SDK's own
    ],
)
def test_exporters_by_name_and_protocol(env: dict[str, str], classes: list[type]) -> None:
    exporters = span_exporters(env)
    try:
        assert [type(e) for e in exporters] == classes
    finally:
        for exporter in exporters:
            exporter.shutdown()


def test_propagators_by_name() -> None:
    default = propagator_from_env({})
    assert {"traceparent", "tracestate", "baggage"} <= set(default.fields)
    b3 = propagator_from_env({"OTEL_PROPAGATORS": "b3multi"})
    assert set(b3.fields) >= {"x-b3-traceid", "x-b3-spanid", "x-b3-sampled"}
    assert "traceparent" not in b3.fields
    assert propagator_from_env({"OTEL_PROPAGATORS": "b3"}).fields == {"b3"}
    assert propagator_from_env({"OTEL_PROPAGATORS": "tracecontext,none"}).fields == set()


@pytest.mark.parametrize(
    ("env", "description"),
    [
        ({}, "ParentBased{root:AlwaysOnSampler"),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, "AlwaysOffSampler"),
        (
            {"OTEL_TRACES_SAMPLER": "TraceIdRatio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            "TraceIdRatioBased{0.25}",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"},
            "ParentBased{root:TraceIdRatioBased{1.0}",
        ),
    ],
)
def test_sampler_from_env(env: dict[str, str], description: str) -> None:
    assert sampler_from_env(env).get_description().startswith(description)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not installed"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTLP protocol 'http/json'"),
        ({"OTEL_PROPAGATORS": "tracecontext,jaeger"}, "OTEL_PROPAGATORS: 'jaeger'"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: 'sometimes'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "between 0 and 1",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "between 0 and 1",
        ),
        ({"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "many"}, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "4", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8"}, "OTEL_BSP_"),
    ],
)
def test_what_cannot_work_fails_at_start(
    otel_env: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    otel_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    for name, value in env.items():
        otel_env.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        Tracing.from_env()


def test_service_name_and_version(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    tracing = Tracing.from_env()
    assert tracing is not None
    assert tracing.resource_attributes["service.name"] == "memstore"
    assert tracing.resource_attributes["service.version"]
    tracing.shutdown()
    otel_env.setenv("OTEL_SERVICE_NAME", "memstore-eu")
    otel_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=7,deployment.environment=eu")
    tracing = Tracing.from_env()
    assert tracing is not None
    assert tracing.resource_attributes["service.name"] == "memstore-eu"
    assert tracing.resource_attributes["service.version"] == "7"
    assert tracing.resource_attributes["deployment.environment"] == "eu"
    tracing.shutdown()


def test_backend_attributes_carry_no_credentials(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    tracing = Tracing.from_env()
    assert tracing is not None
    mongo = Settings(memory_type="mongodb", mongodb_uri="mongodb://u:s3cret@db:27017/")
    info = tracing.backend_info(mongo)
    assert info.attributes["db.system.name"] == "mongodb"
    assert info.attributes["db.namespace"] == "agent_memory"
    assert "s3cret" not in repr(info)
    redis = Settings(memory_type="redis", redis_host="cache", redis_db=3)
    attrs = tracing.backend_info(redis).attributes
    assert attrs["db.system.name"] == "redis"
    assert (attrs["db.namespace"], attrs["server.address"], attrs["server.port"]) == (
        "3",
        "cache",
        6379,
    )
    tracing.shutdown()


async def test_no_trace_headers_when_off(
    embedded_settings: Settings, otel_env: pytest.MonkeyPatch
) -> None:
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(embedded_settings))) as client:
        resp = await client.get(
            "/v1/namespaces/a/entities/t/x",
            headers={"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
        )
        assert resp.status == 404
        assert "traceresponse" not in resp.headers

"""Tracing is configured only by the standard OTEL_* variables, and off without an endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from memstore.core.errors import ConfigurationError
from memstore.core.settings import Settings
from memstore.observability.tracing import Tracing, tracing_configured
from memstore.server.app import create_app

ENDPOINT = "http://127.0.0.1:9"  # never contacted: no span is ended in these tests


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_on_only_with_an_endpoint(env: dict[str, str], on: bool) -> None:
    assert tracing_configured(env) is on
    tracing = Tracing.from_env(env)
    assert (tracing is not None) is on


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"},
    ],
)
def test_unsupported_settings_fail_clearly(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        Tracing.from_env(env)


def test_sampler_and_service_name_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    tracing = Tracing.from_env()
    assert tracing is not None
    assert tracing.plan.description.startswith("ParentBased{root:TraceIdRatioBased{0.1}")
    assert tracing.resource_attributes["service.name"] == "memstore"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "memstore-eu")
    tracing = Tracing.from_env()
    assert tracing is not None
    assert tracing.resource_attributes["service.name"] == "memstore-eu"


def test_backend_attributes_carry_no_credentials() -> None:
    tracing = Tracing.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT})
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


async def test_no_trace_headers_when_off(
    embedded_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(embedded_settings))) as client:
        resp = await client.get(
            "/v1/namespaces/a/entities/t/x",
            headers={"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"},
        )
        assert resp.status == 404
        assert "traceresponse" not in resp.headers

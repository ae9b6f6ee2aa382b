"""End to end through a real OpenTelemetry Collector: agent span -> MemoryClient span ->
service server span (with the cache hit or miss) -> backend span, one trace id,
semantic-convention attributes, errors recorded; and the sampler configured by
OTEL_TRACES_SAMPLER(_ARG)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from memstore.client import MemoryClient
from memstore.core.errors import ConflictError
from tests.servers.otelcol import Collector
from tests.support.procs import ServiceProcess, running_service

ENTITY_ROUTE = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"


def _service_env(collector: Collector, ratio: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": f"memstore-e2e-{ratio}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


@pytest.fixture(scope="module")
def traced_service(
    otel_collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with running_service(
        tmp_path_factory.mktemp("traced"), env=_service_env(otel_collector, "1.0")
    ) as svc:
        yield svc


@pytest.fixture(scope="module")
def unsampled_service(
    otel_collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with running_service(
        tmp_path_factory.mktemp("unsampled"), env=_service_env(otel_collector, "0")
    ) as svc:
        yield svc


@pytest.fixture
def agent_provider(otel_collector: Collector) -> Iterator[TracerProvider]:
    """The agent's own tracer provider, exporting to the same collector."""
    provider = TracerProvider(resource=Resource({"service.name": "agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otel_collector.endpoint}/v1/traces"))
    )
    yield provider
    provider.shutdown()


def _one(spans: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one span with {match}, got {found} among {spans}"
    return found[0]


def _children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in spans if s["parent_span_id"] == parent["span_id"]]


async def test_client_server_backend_trace(
    traced_service: ServiceProcess, otel_collector: Collector, agent_provider: TracerProvider
) -> None:
    ns = f"tr{uuid.uuid4().hex[:10]}"
    tracer = agent_provider.get_tracer("agent")
    async with MemoryClient(
        traced_service.url, namespace=ns, tracer_provider=agent_provider
    ) as client:
        with tracer.start_as_current_span("agent step") as root:
            await client.save_entity("user", "u1", {"name": "Ada"})
            assert await client.load_entity("user", "u1") == {"name": "Ada"}
    trace_id = f"{root.get_span_context().trace_id:032x}"
    # agent step + 2 x (client span, server span, backend span)
    spans = otel_collector.wait_for(trace_id, 7)
    assert {s["trace_id"] for s in spans} == {trace_id}

    agent = _one(spans, name="agent step")
    client_put = _one(spans, name="PUT", kind="client")
    client_get = _one(spans, name="GET", kind="client")
    assert client_put["parent_span_id"] == client_get["parent_span_id"] == agent["span_id"]
    assert client_put["resource"]["service.name"] == "agent"
    assert client_put["attributes"]["http.response.status_code"] == 201
    assert client_put["attributes"]["url.full"].endswith(f"/v1/namespaces/{ns}/entities/user/u1")

    server_put = _one(spans, name=f"PUT {ENTITY_ROUTE}", kind="server")
    assert server_put["parent_span_id"] == client_put["span_id"]
    assert server_put["resource"]["service.name"] == "memstore-e2e-1.0"
    a = server_put["attributes"]
    assert a["http.request.method"] == "PUT"
    assert a["http.route"] == ENTITY_ROUTE
    assert a["url.path"] == f"/v1/namespaces/{ns}/entities/user/u1"
    assert a["url.scheme"] == "http"
    assert a["http.response.status_code"] == 201
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == traced_service.port
    assert "error.type" not in a
    # No payload anywhere in the spans.
    assert "Ada" not in repr(spans)

    (backend_put,) = _children(spans, server_put)
    assert backend_put["kind"] == "client"
    assert backend_put["name"] == "save_entity memstore.db"
    b = backend_put["attributes"]
    assert b["db.system.name"] == "sqlite"
    assert b["db.operation.name"] == "save_entity"
    assert b["db.namespace"] == "memstore.db"
    assert b["memstore.namespace"] == ns
    assert backend_put["status"].get("code", 0) != 2  # not an error

    server_get = _one(spans, name=f"GET {ENTITY_ROUTE}", kind="server")
    assert server_get["parent_span_id"] == client_get["span_id"]
    assert server_get["attributes"]["http.response.status_code"] == 200
    children = {s["name"]: s for s in _children(spans, server_get)}
    assert set(children) == {"load_entity memstore.db"}
    assert server_get["attributes"]["memstore.cache.hit"] is False
    assert children["load_entity memstore.db"]["attributes"]["db.operation.name"] == "load_entity"


async def test_backend_error_recorded_and_traceresponse(
    traced_service: ServiceProcess, otel_collector: Collector
) -> None:
    ns = f"er{uuid.uuid4().hex[:10]}"
    async with MemoryClient(traced_service.url, namespace=ns) as client:
        await client.save_entity("user", "u1", {"v": 1})
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    async with (
        aiohttp.ClientSession() as session,
        session.put(
            f"{traced_service.url}/v1/namespaces/{ns}/entities/user/u1",
            json={"data": {"v": 2}},
            headers={"traceparent": parent, "If-None-Match": "*"},
        ) as resp,
    ):
        assert resp.status == 412
        returned = resp.headers["traceresponse"]
    assert returned.startswith(f"00-{trace_id}-") and returned.endswith("-01")
    spans = otel_collector.wait_for(trace_id, 2)
    server = _one(spans, kind="server")
    assert server["span_id"] == returned.split("-")[2]
    assert server["attributes"]["http.response.status_code"] == 412
    assert server["status"].get("code", 0) != 2  # 4xx is not a server error
    (backend,) = _children(spans, server)
    assert backend["attributes"]["error.type"] == ConflictError.code
    assert backend["status"]["code"] == 2  # STATUS_CODE_ERROR
    assert "exception" in backend["events"]


async def test_sampler_from_env_is_parent_based(
    unsampled_service: ServiceProcess, otel_collector: Collector
) -> None:
    """Ratio 0: a root request is not sampled, nor one with an unsampled parent; one with a
    sampled parent is (and only that one gets a ``traceresponse``)."""
    ns = f"sa{uuid.uuid4().hex[:10]}"
    sampled, unsampled = uuid.uuid4().hex, uuid.uuid4().hex
    url = f"{unsampled_service.url}/v1/namespaces/{ns}/entities/user/nobody"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:  # root: no traceparent
            assert resp.status == 404
            assert "traceresponse" not in resp.headers
        for trace_id, flags in ((unsampled, "00"), (sampled, "01")):
            header = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-{flags}"
            async with session.get(url, headers={"traceparent": header}) as resp:
                assert resp.status == 404
                if flags == "01":
                    assert resp.headers["traceresponse"].startswith(f"00-{trace_id}-")
                else:
                    assert "traceresponse" not in resp.headers
    spans = otel_collector.wait_for(sampled, 2)  # server, backend
    assert {s["resource"]["service.name"] for s in spans} == {"memstore-e2e-0"}
    # Exported in the same batches as the sampled one: had they been sampled, they'd be here.
    assert [s for s in otel_collector.spans() if s["trace_id"] == unsampled] == []
    assert [
        s
        for s in otel_collector.spans()
        if s["resource"]["service.name"] == "memstore-e2e-0" and s["trace_id"] != sampled
    ] == []

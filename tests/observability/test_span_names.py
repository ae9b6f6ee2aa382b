"""Server span names from the route table, through the real app: ``METHOD /route/template``
for a table route (the same on its first request and after), the method alone for a
request no route matches, and no span for the routes the table does not trace (probes,
scrapes)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind

from memstore.core.settings import Settings
from memstore.observability.tracing import Tracing
from memstore.observability.tracing_config import (
    PreDrawnIdGenerator,
    RequestDecisionSampler,
    propagator_from_env,
    sampler_from_env,
)
from memstore.server.app import create_app

ENTITY_ROUTE = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"


async def test_span_names_follow_the_route_table(embedded_settings: Settings) -> None:
    sampler = RequestDecisionSampler(sampler_from_env({"OTEL_TRACES_SAMPLER": "always_on"}))
    ids = PreDrawnIdGenerator(RandomIdGenerator())
    provider = TracerProvider(sampler=sampler, id_generator=ids, shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, sampler, ids, propagator_from_env({}))
    client: TestClient[Any, Any]
    async with TestClient(TestServer(create_app(embedded_settings, tracing=tracing))) as client:
        for path in ("/livez", "/readyz", "/metrics", "/livez"):
            assert (await client.get(path)).status == 200
        assert exporter.get_finished_spans() == ()  # probes and scrapes: no span at all

        for _ in range(2):  # first request of the route, then the remembered name
            resp = await client.put("/v1/namespaces/a/entities/t/x", json={"data": {"k": 1}})
            assert resp.status in (200, 201)
        assert (await client.get("/v1/namespaces/a/entities/t/x")).status == 200
        for _ in range(2):
            assert (await client.get("/no/such/route")).status == 404
        assert (await client.post("/livez")).status == 405

    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    names = [s.name for s in spans]
    assert names == [f"PUT {ENTITY_ROUTE}"] * 2 + [f"GET {ENTITY_ROUTE}", "GET", "GET", "POST"]
    routes = [(s.attributes or {}).get("http.route") for s in spans]
    assert routes == [ENTITY_ROUTE] * 3 + [None, None, None]
    provider.shutdown()

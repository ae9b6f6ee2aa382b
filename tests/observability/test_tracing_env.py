"""Standard OTEL_* settings start a real ``memstore serve`` and behave as with the SDK.

Each row of the table is a set of variables for the service; the spans are read where the
row sends them: the real OpenTelemetry Collector (OTLP over gRPC or HTTP/protobuf), the
service's stdout (console exporter), or nowhere (SDK disabled). B3 runs through both
sides: an agent process whose only propagator is B3 calls the service through
``MemoryClient``, and the service, whose only propagator is B3 too, continues its trace.
Settings the SDK would refuse stop the service at start with one line, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.servers.otelcol import Collector
from tests.support.procs import ServiceProcess, free_port, running_service

ENTITY_ROUTE = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"
SERVER_SPAN = f"GET {ENTITY_ROUTE}"


def _clean_env() -> dict[str, str]:
    """The test process's environment without its OTEL_* variables, so a row is only
    what it says."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


def console_spans(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (indented JSON objects, one per span)."""
    decoder = json.JSONDecoder()
    spans = []
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for i, line in enumerate(lines):
        if line.rstrip("\r\n") == "{":
            try:
                doc, _ = decoder.raw_decode(text, offsets[i])
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and "context" in doc and "kind" in doc:
                spans.append(doc)
    return spans


@dataclass
class Row:
    id: str
    env: Callable[[Collector], dict[str, str]]
    collector: bool = False  # spans expected at the collector
    console: bool = False  # spans expected on stdout
    check: Callable[[dict[str, Any]], None] | None = None  # on the server span's attributes
    extra: dict[str, str] = field(default_factory=dict)


def _limited(attributes: dict[str, Any]) -> None:
    # OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=4 and OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=6: the SDK
    # keeps the last four set (the status code is set last) and cuts strings to six.
    assert len(attributes) == 4, attributes
    assert attributes["http.response.status_code"] == 404
    strings = [v for v in attributes.values() if isinstance(v, str)]
    assert strings and all(len(v) <= 6 for v in strings), attributes
    assert attributes.get("client.address") == "127.0."  # cut to six characters


def _full(attributes: dict[str, Any]) -> None:
    assert attributes["http.route"] == ENTITY_ROUTE
    assert attributes["http.response.status_code"] == 404
    assert attributes["url.path"].startswith("/v1/namespaces/")
    assert attributes["memstore.cache.hit"] is False


ROWS = [
    Row(
        "otlp-http",
        lambda c: {"OTEL_EXPORTER_OTLP_ENDPOINT": c.endpoint},
        collector=True,
        check=_full,
    ),
    Row(
        "otlp-grpc",
        lambda c: {
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        },
        collector=True,
        check=_full,
    ),
    Row(
        "otlp-grpc-by-traces-protocol-gzip",
        lambda c: {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": c.grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
        },
        collector=True,
        check=_full,
    ),
    Row("console", lambda c: {"OTEL_TRACES_EXPORTER": "console"}, console=True, check=_full),
    Row(
        "console-and-otlp",
        lambda c: {
            "OTEL_TRACES_EXPORTER": "console,otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.endpoint,
        },
        collector=True,
        console=True,
        check=_full,
    ),
    Row(
        "span-limits",
        lambda c: {
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.endpoint,
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "4",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "6",
        },
        collector=True,
        check=_limited,
    ),
    Row(
        "sdk-disabled",
        lambda c: {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_TRACES_EXPORTER": "console,otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": c.endpoint,
        },
    ),
    Row(
        "exporter-none",
        lambda c: {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": c.endpoint},
    ),
]


async def _get_missing(svc: ServiceProcess, namespace: str, headers: dict[str, str]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{svc.url}/v1/namespaces/{namespace}/entities/user/nobody", headers=headers
        ) as resp,
    ):
        assert resp.status == 404  # the service works, traced or not


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_otel_settings_table(row: Row, otel_collector: Collector, tmp_path: Path) -> None:
    env = {
        **row.env(otel_collector),
        "OTEL_SERVICE_NAME": f"memstore-{row.id}-{uuid.uuid4().hex[:6]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    trace_id = uuid.uuid4().hex
    namespace = f"t{uuid.uuid4().hex[:10]}"
    svc = ServiceProcess(tmp_path, env).start()
    try:
        await _get_missing(
            svc, namespace, {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
        )
    finally:
        assert svc.stop() == 0  # a clean stop flushes the exporters
    service_name = env["OTEL_SERVICE_NAME"]

    collected = [
        s for s in otel_collector.spans() if s["resource"].get("service.name") == service_name
    ]
    if row.collector:
        spans = otel_collector.wait_for(trace_id, 2)  # server, backend read
        server = next(s for s in spans if s["kind"] == "server")
        assert server["name"] == SERVER_SPAN
        assert server["resource"]["service.name"] == service_name
        children = {s["name"] for s in spans if s["parent_span_id"] == server["span_id"]}
        assert children == {"load_entity memstore.db"}
        assert row.check is not None
        row.check(server["attributes"])
    else:
        assert collected == []

    printed = console_spans(svc.logs())
    if row.console:
        mine = [s for s in printed if s["context"]["trace_id"] == f"0x{trace_id}"]
        assert {s["name"] for s in mine} == {SERVER_SPAN, "load_entity memstore.db"}
        server = next(s for s in mine if s["kind"] == "SpanKind.SERVER")
        assert server["resource"]["attributes"]["service.name"] == service_name
        assert row.check is not None
        row.check(server["attributes"])
    else:
        assert printed == []


AGENT = """
import asyncio, json, sys
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from memstore.client import MemoryClient

async def main():
    provider = TracerProvider()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with MemoryClient(sys.argv[1], namespace=sys.argv[2], tracer_provider=provider) as c:
        with provider.get_tracer("agent").start_as_current_span("agent step"):
            assert await c.load_entity("user", "nobody") is None
    (client,) = [s for s in spans.get_finished_spans() if s.name == "GET"]
    print(json.dumps({"trace_id": f"{client.context.trace_id:032x}",
                      "span_id": f"{client.context.span_id:016x}"}))

asyncio.run(main())
"""


@pytest.mark.parametrize("propagator", ["b3multi", "b3"])
def test_b3_through_client_and_server(
    propagator: str, otel_collector: Collector, tmp_path: Path
) -> None:
    """The client injects and the server extracts with the propagators OTEL_PROPAGATORS
    names: with B3 only on both sides, the server span is the child of the client span."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otel_collector.endpoint,
        "OTEL_PROPAGATORS": propagator,
        "OTEL_SERVICE_NAME": f"memstore-{propagator}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    namespace = f"b{uuid.uuid4().hex[:10]}"
    with running_service(tmp_path, env) as svc:
        agent = subprocess.run(
            [sys.executable, "-c", AGENT, svc.url, namespace],
            env={**_clean_env(), "OTEL_PROPAGATORS": propagator},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert agent.returncode == 0, agent.stderr
        client = json.loads(agent.stdout)
        spans = otel_collector.wait_for(client["trace_id"], 2)
    server = next(s for s in spans if s["kind"] == "server")
    assert server["name"] == SERVER_SPAN
    assert server["parent_span_id"] == client["span_id"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not installed"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTLP protocol 'http/json'",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_PROPAGATORS": "jaeger"},
            "OTEL_PROPAGATORS: 'jaeger'",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-1"},
            "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "sometimes"},
            "OTEL_TRACES_SAMPLER",
        ),
    ],
    ids=["exporter", "protocol", "propagator", "span-limit", "sampler"],
)
def test_bad_settings_stop_the_service_with_one_line(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "memstore", "serve", "--port", str(free_port())],
        env={**_clean_env(), "MEMSTORE_DATA_PATH": str(tmp_path / "m.db"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout

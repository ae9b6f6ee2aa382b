"""Prometheus exposition after a scripted workload: counts, histogram buckets, bounded
label cardinality (1,000 distinct entity ids), and the same figures in JSON /v1/metrics."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.client import MemoryClient
from memstore.core.errors import ConflictError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.observability.metrics import LATENCY_BUCKETS, PrometheusMetrics
from memstore.server.app import create_app

ENTITY = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"
N_IDS = 1000


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@pytest.fixture
async def http(embedded_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(embedded_settings))) as client:
        yield client


async def test_scripted_workload_exposition(http: TestClient[Any, Any]) -> None:
    url = str(http.make_url("/")).rstrip("/")
    async with MemoryClient(url, namespace="agent") as client:
        for i in range(N_IDS):
            await client.save_entity("user", f"e{i:04d}", {"i": i})
        for i in range(N_IDS):
            assert await client.load_entity("user", f"e{i:04d}") == {"i": i}  # misses
        for i in range(10):
            assert await client.load_entity("user", f"e{i:04d}") == {"i": i}  # hits
        for i in range(5):
            assert await client.load_entity("user", f"missing{i}") is None  # 404, misses
        for i in range(3):
            assert await client.delete_entity("user", f"e{i:04d}")
        with pytest.raises(ConflictError):
            await client.save_entity("user", "e0500", {"x": 1}, expected_version=0)
        assert await client.ping()
    for i in range(2):
        assert (await http.get(f"/no/such/path/{i}")).status == 404
    assert (await http.request("PROPFIND", "/livez")).status == 405

    resp = await http.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    samples = parse(await resp.text())

    # -- HTTP counts by method, route template, status class -----------------------------
    req = "memstore_http_requests_total"
    assert value(samples, req, method="PUT", route=ENTITY, status_class="2xx") == N_IDS
    assert value(samples, req, method="PUT", route=ENTITY, status_class="4xx") == 1
    assert value(samples, req, method="GET", route=ENTITY, status_class="2xx") == N_IDS + 10
    assert value(samples, req, method="GET", route=ENTITY, status_class="4xx") == 5
    assert value(samples, req, method="DELETE", route=ENTITY, status_class="2xx") == 3
    assert value(samples, req, method="GET", route="/readyz", status_class="2xx") == 1
    assert value(samples, req, method="GET", route="unmatched", status_class="4xx") == 2
    assert value(samples, req, method="_OTHER", route="unmatched", status_class="4xx") == 1
    # The scrape itself is the one request in flight.
    assert value(samples, "memstore_http_requests_in_flight") == 1

    # -- latency histogram: every bucket, cumulative, +Inf == count ------------------------
    hist = "memstore_http_request_duration_seconds"
    labels = {"method": "PUT", "route": ENTITY, "status_class": "2xx"}
    buckets = [
        s for s in samples if s.name == f"{hist}_bucket" and s.labels.items() > labels.items()
    ]
    bounds = [float(s.labels["le"]) for s in buckets]
    assert bounds == [*LATENCY_BUCKETS, math.inf]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == value(samples, f"{hist}_count", **labels) == N_IDS
    assert value(samples, f"{hist}_sum", **labels) > 0

    # -- backend operations and errors ------------------------------------------------------
    op = "memstore_backend_operation_duration_seconds_count"
    assert value(samples, op, backend="embedded", operation="save_entity") == N_IDS + 1
    assert value(samples, op, backend="embedded", operation="load_entity") == N_IDS + 5
    assert value(samples, op, backend="embedded", operation="delete_entity") == 3
    # The conflict was the caller's (412), not a failure of the backend.
    assert not [s for s in samples if s.name == "memstore_backend_operation_errors_total"]
    assert value(samples, "memstore_backend_up", backend="embedded") == 1

    # -- cache ---------------------------------------------------------------------------------
    assert value(samples, "memstore_cache_hits_total") == 10
    assert value(samples, "memstore_cache_misses_total") == N_IDS + 5
    assert value(samples, "memstore_cache_invalidations_received_total") == 0
    # 3 deleted, 1 invalidated by the failed (conflicting) write.
    assert value(samples, "memstore_cache_entries") == N_IDS - 4

    # -- bounded cardinality: 1,000 ids, a handful of series -----------------------------
    names = {s.name for s in samples}
    # Ours, and prometheus-client's standard process/platform families.
    assert all(n.startswith(("memstore_", "process_", "python_")) for n in names)
    assert not any(n.endswith("_created") for n in names)
    label_values = {v for s in samples for v in s.labels.values()}
    assert not any(v.startswith(("e0", "missing", "/no/such")) for v in label_values)
    http_series = {tuple(sorted(s.labels.items())) for s in samples if s.name == req}
    assert len(http_series) == 8
    assert len(samples) < 400

    # -- the same figures, readable, in JSON -----------------------------------------------
    doc = await (await http.get("/v1/metrics")).json()
    assert doc["operations"]["save_entity"]["count"] == N_IDS + 1
    assert doc["operations"]["save_entity"]["errors"] == 1
    assert doc["operations"]["load_entity"]["count"] == N_IDS + 5
    assert doc["errors_by_code"] == {"version_conflict": 1}
    assert doc["cache"]["hits"] == 10
    assert doc["cache"]["misses"] == N_IDS + 5
    assert doc["cache"]["entries"] == N_IDS - 4
    assert doc["backend_up"] == {"embedded": 1}
    put = doc["http"]["requests"][f"PUT {ENTITY}"]
    assert put["count"] == N_IDS + 1
    assert put["by_status"] == {"2xx": N_IDS, "4xx": 1}
    assert put["avg_ms"] > 0
    assert doc["http"]["requests"][f"GET {ENTITY}"]["by_status"] == {
        "2xx": N_IDS + 10,
        "4xx": 5,
    }


async def test_metrics_can_be_switched_off(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"metrics_enabled": False})
    async with TestClient(TestServer(create_app(settings))) as http:
        assert (await http.put("/v1/namespaces/a/entities/t/x", json={"data": {}})).status == 201
        assert (await http.get("/v1/namespaces/a/entities/t/x")).status == 200
        samples = parse(await (await http.get("/metrics")).text())
        assert not [s for s in samples if s.name.startswith("memstore_http_requests_total")]
        assert not [s for s in samples if s.name.startswith("memstore_backend_operation")]
        # The seed's get_metrics keeps counting: it is cheap and in-process.
        doc = await (await http.get("/v1/metrics")).json()
        assert doc["operations"]["save_entity"]["count"] == 1
        assert "http" not in doc


def test_metrics_enabled_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSTORE_METRICS_ENABLED", "false")
    assert Settings().metrics_enabled is False
    monkeypatch.setenv("MEMSTORE_METRICS_ENABLED", "1")
    assert Settings().metrics_enabled is True


class _BusBackend(EmbeddedMemoryBackend):
    """The embedded backend plus a hand on its invalidation subscription, standing in for
    another replica's message on a real bus (Redis/Mongo bring theirs)."""

    callback: Any = None

    async def subscribe_invalidations(self, callback: Any) -> None:
        self.callback = callback


async def test_invalidations_received_are_counted(embedded_settings: Settings) -> None:
    metrics = PrometheusMetrics()
    backend = _BusBackend(embedded_settings)
    async with DistributedMemoryManager(
        settings=embedded_settings, backend=backend, prometheus=metrics
    ) as manager:
        await manager.save_entity("user", "u1", {"a": 1})
        assert await manager.load_entity("user", "u1") == {"a": 1}
        assert backend.callback is not None
        await backend.callback("entity/agent/user/u1")
        await backend.callback(None)
        samples = parse(generate_latest(metrics.registry).decode())
        assert value(samples, "memstore_cache_invalidations_received_total") == 2
        assert value(samples, "memstore_cache_flushes_total") == 1
        assert manager.get_metrics()["cache"]["invalidations_received"] == 2


async def test_unknown_methods_share_one_label(http: TestClient[Any, Any]) -> None:
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        assert (await http.request(method, "/livez")).status == 405
    samples = parse(await (await http.get("/metrics")).text())
    methods = {s.labels["method"] for s in samples if s.name == "memstore_http_requests_total"}
    assert methods == {"_OTHER"}

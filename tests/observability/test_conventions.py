"""The exporter conventions of /metrics: build info, process metrics, and a backend-errors
counter that moves for backend failures (Redis stopped) and not for the caller's mistakes
(412 stale version, 400 bad cursor), all through a real service on real Redis."""

from __future__ import annotations

import platform
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.observability.metrics import PrometheusMetrics
from memstore.server.app import create_app
from tests.servers.redis import LocalRedis, unique_prefix

BACKEND_ERRORS = "memstore_backend_operation_errors_total"
ENTITIES = "/v1/namespaces/agent/entities/note"


async def scrape(http: TestClient[Any, Any]) -> list[Sample]:
    resp = await http.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    return [s for f in text_string_to_metric_families(text) for s in f.samples]


def backend_errors(samples: list[Sample]) -> dict[tuple[str, str], float]:
    """(operation, code) -> count of the backend-errors counter."""
    return {
        (s.labels["operation"], s.labels["code"]): s.value
        for s in samples
        if s.name == BACKEND_ERRORS
    }


@pytest.fixture
async def embedded_http(embedded_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(embedded_settings))) as client:
        yield client


async def test_build_info_and_process_metrics(embedded_http: TestClient[Any, Any]) -> None:
    samples = await scrape(embedded_http)
    (build,) = [s for s in samples if s.name == "memstore_build_info"]
    assert build.value == 1
    assert build.labels == {
        "version": version("memstore"),
        "python": platform.python_version(),
        "backend": "embedded",
    }
    names = {s.name for s in samples}
    # prometheus-client's standard process and platform families, on the app's registry.
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
        "process_open_fds",
        "python_info",
    } <= names
    rss = [s.value for s in samples if s.name == "process_resident_memory_bytes"]
    assert rss[0] > 0


async def test_build_info_stays_when_recording_is_off(embedded_settings: Settings) -> None:
    settings = embedded_settings.model_copy(update={"metrics_enabled": False})
    async with TestClient(TestServer(create_app(settings))) as http:
        samples = await scrape(http)
    assert [s.value for s in samples if s.name == "memstore_build_info"] == [1]


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    """A redis-server of this test alone: the test stops it."""
    server = LocalRedis(tmp_path)
    yield server
    server.stop()


async def test_caller_mistakes_are_not_backend_errors_but_an_outage_is(
    own_redis: LocalRedis,
) -> None:
    settings = Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=own_redis.port,
        redis_prefix=unique_prefix(),
    )
    async with TestClient(TestServer(create_app(settings))) as http:
        resp = await http.put(f"{ENTITIES}/n1", json={"data": {"v": 1}})
        assert resp.status == 201
        # 412: a stale If-Match, and a create-only write of an existing id.
        stale = {"If-Match": '"7"'}
        resp = await http.put(f"{ENTITIES}/n1", json={"data": {"v": 2}}, headers=stale)
        assert resp.status == 412, await resp.text()
        create_only = {"If-None-Match": "*"}
        resp = await http.put(f"{ENTITIES}/n1", json={"data": {"v": 2}}, headers=create_only)
        assert resp.status == 412, await resp.text()
        # 400: a cursor the server did not issue (decoded by the backend's paging).
        resp = await http.get(ENTITIES, params={"cursor": "bm90LWEtY3Vyc29y"})
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["code"] == "invalid_input"
        # 412 again: a conditional delete of nothing.
        resp = await http.delete(f"{ENTITIES}/absent", headers={"If-Match": '"1"'})
        assert resp.status == 412, await resp.text()
        samples = await scrape(http)
        requests_4xx = sum(
            s.value
            for s in samples
            if s.name == "memstore_http_requests_total" and s.labels["status_class"] == "4xx"
        )
        assert requests_4xx == 4  # the mistakes were made, and counted as the caller's
        assert backend_errors(samples) == {}

        own_redis.stop()
        resp = await http.get(f"{ENTITIES}/never-cached")
        assert resp.status == 503, await resp.text()
        assert (await resp.json())["code"] == "backend_unavailable"
        errors = backend_errors(await scrape(http))
        assert errors.get(("load_entity", "backend_unavailable"), 0) >= 1
        assert all(code != "version_conflict" for _, code in errors)


class _BrokenBackend(EmbeddedMemoryBackend):
    """The embedded backend with one read that fails in a way no translation table knows
    (a bug, or a driver error nobody mapped): the server answers 500 internal_error."""

    async def load_entity(self, namespace: str, entity_type: str, entity_id: str) -> Any:
        raise RuntimeError("unexpected")


async def test_an_unexpected_backend_exception_is_a_backend_error(
    embedded_settings: Settings,
) -> None:
    metrics = PrometheusMetrics()
    async with DistributedMemoryManager(
        settings=embedded_settings, backend=_BrokenBackend(embedded_settings), prometheus=metrics
    ) as manager:
        with pytest.raises(RuntimeError):
            await manager.get_entity("note", "n1")
        samples = [
            s
            for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())
            for s in f.samples
        ]
    assert backend_errors(samples) == {("load_entity", "internal_error"): 1}

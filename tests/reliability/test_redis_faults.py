"""Faults with the Redis backend: the service killed under write load (Redis keeps
running), and Redis itself stopped then started again under a running service.

(The Redis Cluster master-failover test lives with the Redis backend's tests.)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.test_backend_outage import assert_unavailable, request, wait_ready
from tests.reliability.test_kill9 import kill_under_load
from tests.servers.redis import LocalRedis
from tests.support.procs import ServiceProcess, wait_http


def redis_env(server: LocalRedis) -> dict[str, str]:
    return {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(server.port),
        "REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}:",
        # Fail fast while Redis is down (the defaults retry for longer).
        "MEMSTORE_REDIS_CONNECT_TIMEOUT_SECONDS": "0.5",
        "MEMSTORE_REDIS_SOCKET_TIMEOUT_SECONDS": "1",
        "MEMSTORE_REDIS_RETRIES": "1",
    }


@pytest.mark.slow
async def test_kill9_redis(redis_server: LocalRedis, tmp_path: Path, figures: Any) -> None:
    svc = ServiceProcess(tmp_path / "svc", redis_env(redis_server)).start()
    try:
        await asyncio.to_thread(wait_http, svc.url + "/readyz")
        await kill_under_load(svc, figures, "redis")
    finally:
        svc.stop()


@pytest.mark.slow
def test_redis_down_then_back(tmp_path: Path, figures: Any) -> None:
    server = LocalRedis(tmp_path / "redis")
    svc = ServiceProcess(tmp_path / "svc", redis_env(server))
    try:
        svc.start()
        wait_ready(svc.url)
        ns = svc.url + "/v1/namespaces/outage"
        status, _, _ = request(ns + "/entities/note/before", "PUT", {"data": {"v": 1}})
        assert status == 201
        assert svc.proc is not None
        pid = svc.proc.pid

        server.kill9()
        down_at = time.monotonic()
        for _ in range(3):
            assert_unavailable(svc.url)

        server.start()
        restarted = time.monotonic()
        recovered = wait_ready(svc.url)
        status, _, body = request(ns + "/entities/note/after", "PUT", {"data": {"v": 2}})
        assert status == 201, body
        assert svc.proc.pid == pid
        assert svc.proc.poll() is None  # no restart
        figures(
            backend="redis",
            outage="redis-server killed, then started",
            outage_s=round(restarted - down_at, 3),
            requests_503=15,
            requests_500=0,
            redis_start_to_ready_s=round(recovered, 3),
        )
    finally:
        svc.stop()
        server.stop()
    assert "Traceback" not in svc.logs()


@pytest.mark.slow
def test_redis_absent_at_start_then_up(tmp_path: Path, figures: Any) -> None:
    server = LocalRedis(tmp_path / "redis")
    server.kill9()
    svc = ServiceProcess(tmp_path / "svc", redis_env(server))
    try:
        svc.start()  # starts although Redis is down, and says so
        assert svc.proc is not None
        pid = svc.proc.pid
        for _ in range(3):
            assert_unavailable(svc.url)
        server.start()
        recovered = wait_ready(svc.url)
        status, _, body = request(
            svc.url + "/v1/namespaces/outage/entities/note/n1", "PUT", {"data": {"v": 1}}
        )
        assert status == 201, body
        assert svc.proc.pid == pid
        assert svc.proc.poll() is None
        figures(
            backend="redis",
            outage="redis-server down when the service starts",
            requests_503=15,
            requests_500=0,
            redis_start_to_ready_s=round(recovered, 3),
        )
    finally:
        svc.stop()
        server.stop()
    assert "Traceback" not in svc.logs()

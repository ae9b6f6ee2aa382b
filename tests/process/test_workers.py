"""``memstore serve --workers 2`` on a real Redis, as a real process: connections land on
both workers, one ``/metrics`` scrape counts both, a write through one worker is read
through the other, SIGTERM drains both, a killed worker comes back, and workers that keep
dying stop the server with a non-zero status. The embedded backend is refused."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memstore.core.settings import Settings
from memstore.server.workers import MAX_RESTARTS
from tests.servers.memcached import LocalMemcached
from tests.servers.mongodb import FerretDB
from tests.support.procs import ServiceProcess, free_port

NS = "workers"
WORKER = "Memstore-Worker"
ENTITY = "/v1/namespaces/workers/entities/doc/{}"


def workers_env(redis_settings: Settings, workers: int = 2) -> dict[str, str]:
    return {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": redis_settings.redis_host,
        "REDIS_PORT": str(redis_settings.redis_port),
        "REDIS_PREFIX": str(redis_settings.redis_prefix),
        "MEMSTORE_WORKERS": str(workers),
        # Long enough that a stale cached copy would still be served.
        "MEMSTORE_CACHE_TTL_SECONDS": "300",
        "MEMSTORE_SHUTDOWN_TIMEOUT_SECONDS": "20",
        "MEMSTORE_MCP_ENABLED": "false",
    }


def children(pid: int) -> set[int]:
    """The supervisor's worker processes (Linux: /proc's children list)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()}


def listening_lines(svc: ServiceProcess) -> int:
    return svc.logs().count('"msg":"memstore listening on')


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


@contextlib.contextmanager
def served(tmp_path: Path, env: dict[str, str]) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(tmp_path, env).start()
    try:
        wait_for(lambda: listening_lines(svc) >= 2, "both workers listening")
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def two_workers(tmp_path: Path, redis_settings: Settings) -> Iterator[ServiceProcess]:
    with served(tmp_path, workers_env(redis_settings)) as svc:
        yield svc


async def pinned_session(url: str, worker: str) -> aiohttp.ClientSession:
    """A session whose one keep-alive connection was accepted by ``worker``."""
    for _ in range(200):
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with session.get(url + "/livez") as resp:
            if resp.headers[WORKER] == worker:
                return session
        await session.close()
    raise AssertionError(f"no connection reached worker {worker} in 200 tries")


@contextlib.asynccontextmanager
async def on_each_worker(url: str) -> AsyncIterator[tuple[aiohttp.ClientSession, ...]]:
    sessions = (await pinned_session(url, "0"), await pinned_session(url, "1"))
    try:
        yield sessions
    finally:
        for s in sessions:
            await s.close()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_connections_land_on_both_workers_and_one_scrape_counts_both(
    two_workers: ServiceProcess,
) -> None:
    url = two_workers.url
    seen: Counter[str] = Counter()
    for i in range(60):  # a new connection each: the kernel picks the worker
        async with (
            aiohttp.ClientSession() as session,
            session.put(url + ENTITY.format(f"e{i}"), json={"data": {"i": i}}) as resp,
        ):
            assert resp.status in (200, 201)
            seen[resp.headers[WORKER]] += 1
    assert set(seen) == {"0", "1"}, seen
    # Each worker's log lines name it.
    logs = two_workers.logs()
    assert '"worker":0' in logs and '"worker":1' in logs

    put = (
        ("method", "PUT"),
        ("route", "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"),
        ("status_class", "2xx"),
    )
    async with on_each_worker(url) as (w0, w1):
        for session in (w0, w1):
            async with session.get(url + "/metrics") as resp:
                total = samples(await resp.text(), "memstore_http_requests_total")
            assert total[put] == 60  # both workers' requests, whichever answered
        for name, session in (("0", w0), ("1", w1)):
            async with session.get(url + "/v1/metrics") as resp:
                own = await resp.json()
            # The JSON figures are the answering worker's own.
            assert own["worker"] == int(name)
            assert own["operations"]["save_entity"]["count"] == seen[name]
        async with w1.get(url + "/metrics") as resp:
            text = await resp.text()
    build = samples(text, "memstore_build_info")
    assert list(build.values()) == [1.0] and dict(next(iter(build)))["backend"] == "redis"
    # The cache counters (plain ints in each worker) reach the aggregate too.
    assert samples(text, "memstore_cache_invalidations_total")[()] >= 60


async def test_a_write_through_one_worker_is_read_through_the_other(
    two_workers: ServiceProcess,
) -> None:
    url = two_workers.url
    async with on_each_worker(url) as (writer, reader):
        stale = 0
        for i in range(200):
            path = url + ENTITY.format(f"k{i % 5}")
            async with writer.put(path, json={"data": {"i": i}}) as resp:
                written = (await resp.json())["version"]
            # Read-your-writes: the version the write answered, as MemoryClient sends it.
            async with reader.get(path, headers={"Memstore-Min-Version": str(written)}) as resp:
                assert resp.headers[WORKER] == "1"
                body = await resp.json()
            if body["version"] < written:
                stale += 1
            assert body["version"] > written or body["data"] == {"i": i}
        assert stale == 0

        # Without a version: the reader's cached copy is dropped by the write's
        # invalidation message (Redis pub/sub), as between replicas.
        path = url + ENTITY.format("plain")
        async with writer.put(path, json={"data": {"n": 1}}) as resp:
            assert resp.status == 201
        async with reader.get(path) as resp:
            cached = await resp.json()
        async with writer.put(path, json={"data": {"n": 2}}) as resp:
            fresh = (await resp.json())["version"]
        assert cached["version"] < fresh
        for _ in range(100):
            async with reader.get(path) as resp:
                if (await resp.json())["version"] == fresh:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("worker 1 kept serving its stale copy")


async def write_until_refused(
    url: str, session: aiohttp.ClientSession, writer: int, acked: dict[str, int]
) -> int:
    """PUT entities until the server stops answering; record every 2xx. Returns errors."""
    errors = 0
    for i in range(100_000):
        key = f"w{writer}-{i}"
        try:
            async with session.put(url + ENTITY.format(key), json={"data": {"i": i}}) as resp:
                if resp.status in (200, 201):
                    acked[key] = i
                else:
                    errors += 1
        except (TimeoutError, aiohttp.ClientError):
            return errors  # the listener is closed: this write was never acknowledged
    return errors


async def test_sigterm_drains_every_worker(tmp_path: Path, redis_settings: Settings) -> None:
    env = workers_env(redis_settings)
    with served(tmp_path / "a", env) as svc:
        url = svc.url
        acked: dict[str, int] = {}
        # Two connections to each worker, each with its own writer.
        sessions = [await pinned_session(url, str(n % 2)) for n in range(4)]
        try:
            writers = [
                asyncio.create_task(write_until_refused(url, s, n, acked))
                for n, s in enumerate(sessions)
            ]
            while len({k.split("-")[0] for k in acked}) < 4 or len(acked) < 200:
                assert not any(w.done() for w in writers), [w.result() for w in writers]
                await asyncio.sleep(0.02)
            assert svc.proc is not None
            svc.proc.send_signal(signal.SIGTERM)
            results = await asyncio.wait_for(asyncio.gather(*writers), timeout=60)
        finally:
            for session in sessions:
                await session.close()
        status = await asyncio.to_thread(svc.proc.wait, 60)
        logs = svc.logs()
    assert status == 0, logs[-3000:]
    assert sum(results) == 0, "requests accepted before SIGTERM must complete, not fail"
    assert "Traceback" not in logs
    assert "all workers stopped (exit status 0)" in logs

    with served(tmp_path / "b", env) as again:
        async with aiohttp.ClientSession() as session:
            for key, i in acked.items():
                async with session.get(again.url + ENTITY.format(key)) as resp:
                    assert resp.status == 200, key
                    assert (await resp.json())["data"] == {"i": i}


def test_a_killed_worker_is_restarted_and_workers_that_keep_dying_stop_the_server(
    tmp_path: Path, redis_settings: Settings
) -> None:
    with served(tmp_path, workers_env(redis_settings)) as svc:
        assert svc.proc is not None
        supervisor = svc.proc.pid
        for death in range(MAX_RESTARTS):
            before = children(supervisor)
            assert len(before) == 2
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            # Restarted: a new process, listening (one more line), the old one gone.
            wait_for(
                functools.partial(lambda n: listening_lines(svc) >= n, 3 + death),
                "the killed worker listening again",
            )
            after = children(supervisor)
            assert victim not in after and len(after) == 2
        logs = svc.logs()
        assert logs.count("died with status -9; restarting it") == MAX_RESTARTS
        # Both workers answer again.
        numbers = set()
        for _ in range(100):
            with urllib_get(svc.url + "/livez") as headers:
                numbers.add(headers[WORKER])
            if numbers == {"0", "1"}:
                break
        assert numbers == {"0", "1"}

        # One more death inside the window: the supervisor gives up, stopping the other.
        os.kill(min(children(supervisor)), signal.SIGKILL)
        status = svc.proc.wait(60)
        logs = svc.logs()
    assert status == 1, logs[-3000:]
    assert "workers keep dying" in logs


@contextlib.contextmanager
def urllib_get(url: str) -> Iterator[dict[str, str]]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        yield dict(resp.headers)


def run_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memstore", "serve", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_embedded_backend_is_refused_with_one_line(tmp_path: Path) -> None:
    out = run_serve(
        "--workers",
        "2",
        "--port",
        str(free_port()),
        env={"MEMSTORE_DATA_PATH": str(tmp_path / "m.db")},
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert re.search(r"Error: configuration_error: --workers 2 needs a shared backend", out.stderr)
    assert not (tmp_path / "m.db").exists()


def test_an_embedded_secondary_is_refused_with_one_line(
    tmp_path: Path, redis_settings: Settings
) -> None:
    env = workers_env(redis_settings) | {
        "MEMSTORE_PORT": str(free_port()),
        "MEMSTORE_SECONDARY_BACKEND": "embedded",
        "MEMSTORE_SECONDARY_DATA_PATH": str(tmp_path / "s.db"),
    }
    out = run_serve(env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "--workers 2 needs a shared secondary backend" in out.stderr, out.stderr
    assert not (tmp_path / "s.db").exists()


def test_bad_worker_counts_and_a_taken_port_are_refused(
    tmp_path: Path, redis_settings: Settings
) -> None:
    env = workers_env(redis_settings)
    out = run_serve("--workers", "0", env=env)
    assert out.returncode == 1 and "invalid settings: workers" in out.stderr, out.stderr
    out = run_serve(env=env | {"MEMSTORE_PORT": "0"})
    assert out.returncode == 1 and "--workers needs a fixed port" in out.stderr, out.stderr
    # A port another server holds: refused before any worker starts, as with one worker
    # (with SO_REUSEPORT alone, a second --workers server would silently share it).
    with served(tmp_path, env) as svc:
        out = run_serve(env=env | {"MEMSTORE_PORT": str(svc.port)})
        assert out.returncode == 1, out.stderr
        assert f"cannot listen on 127.0.0.1:{svc.port}" in out.stderr
        assert "Traceback" not in out.stderr


def gone(pid: int) -> bool:
    """Exited: no process, or a zombie its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_workers_stop_when_the_supervisor_is_killed(
    tmp_path: Path, redis_settings: Settings
) -> None:
    with served(tmp_path, workers_env(redis_settings)) as svc:
        assert svc.proc is not None
        workers = children(svc.proc.pid)
        assert len(workers) == 2
        svc.proc.kill()
        svc.proc.wait(10)
        wait_for(lambda: all(gone(pid) for pid in workers), "the orphaned workers exited")


async def test_shared_cache_and_replication_figures_aggregate_over_workers(
    tmp_path: Path,
    redis_settings: Settings,
    memcached_server: LocalMemcached,
    memcached_prefix: str,
    ferretdb: FerretDB,
) -> None:
    """The L2 cache's counters (plain ints in each worker) sum over the workers in one
    scrape; the replication figures are one series each, not the answering worker's."""
    env = (
        workers_env(redis_settings)
        | {
            "MEMSTORE_CACHE_TTL_SECONDS": "0",  # every read asks Memcached
            "MEMSTORE_L2_CACHE_URL": memcached_server.url,
            "MEMSTORE_L2_CACHE_PREFIX": memcached_prefix,
            "MEMSTORE_SECONDARY_BACKEND": "mongodb",
            "MONGODB_URI": ferretdb.uri,
            "MONGODB_DB": f"w{uuid.uuid4().hex[:16]}",
        }
    )
    with served(tmp_path, env) as svc:
        url = svc.url
        async with on_each_worker(url) as (w0, w1):
            for worker, session, count in (("0", w0, 3), ("1", w1, 4)):
                for i in range(count):  # a new entity each: one L2 miss each
                    key = ENTITY.format(f"l2-{worker}-{i}")
                    async with session.put(url + key, json={"data": {"i": i}}) as resp:
                        assert resp.status in (200, 201)
                    async with session.get(url + key) as resp:
                        assert resp.status == 200
            own = []
            for session in (w0, w1):
                async with session.get(url + "/v1/metrics") as resp:
                    own.append((await resp.json())["l2_cache"]["misses"])
            assert own[0] >= 3 and own[1] >= 4, own

            async def scraped() -> str:
                async with w1.get(url + "/metrics") as resp:
                    return await resp.text()

            # The other worker publishes every second: wait for its figures.
            text = await scraped()
            for _ in range(100):
                if samples(text, "memstore_l2_cache_misses_total").get(()) == sum(own):
                    break
                await asyncio.sleep(0.1)
                text = await scraped()
    assert samples(text, "memstore_l2_cache_misses_total") == {(): sum(own)}
    assert samples(text, "memstore_l2_cache_stores_total")[()] >= 7
    serving = samples(text, "memstore_backend_serving")
    assert serving[(("backend", "redis"), ("role", "primary"))] == 1.0, serving
    assert list(samples(text, "memstore_replication_primary_up").values()) == [1.0]
    assert len(samples(text, "memstore_replication_lag_events")) == 1

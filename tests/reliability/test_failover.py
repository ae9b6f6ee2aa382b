"""Failover between backends under a write load, through a real ``memstore serve``:
primary Redis (writes fsynced), secondary FerretDB (MongoDB wire). Redis is killed with
SIGKILL in the middle of the load, and started again later.

Measured and reported (reliability figures): how long reads were not answered around the
kill, how long until the secondary served (``/readyz``), the replication lag at the kill,
acknowledged writes missing while the secondary served, and acknowledged writes lost at
the end. ``strict``: writes during the outage get 503 and nothing acknowledged is lost.
``lenient``: writes during the outage succeed and are reconciled into Redis when it is
back; the figure of lost writes is reported (and checked: 0 with the merge rules).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.reliability.load import Ledger, verify, write_load
from tests.servers.mongodb import FerretDB
from tests.servers.redis import LocalRedis
from tests.support.procs import ServiceProcess, wait_http

WORKERS = 4
NAMESPACE = "failover"
# The phases end on counts, not times (as the kill -9 test's kill does): the same amount of
# work on a fast and on a slow machine, and no phase that waits longer than it needs.
# Redis is killed after this many acknowledged writes, with the replication still behind,
ACKS_BEFORE_KILL = 300
# the outage lasts until this many writes were tried (strict: every one refused) or
# acknowledged (lenient: taken by the secondary, to be reconciled),
WRITES_DURING_OUTAGE = 20
# and after the failback the load goes on until this many more writes were acknowledged.
ACKS_AFTER_FAILBACK = 20


def failover_env(redis: LocalRedis, ferretdb: FerretDB, mode: str) -> dict[str, str]:
    return {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis.port),
        "REDIS_PREFIX": f"t{uuid.uuid4().hex[:12]}:",
        "MEMSTORE_REDIS_CONNECT_TIMEOUT_SECONDS": "0.5",
        "MEMSTORE_REDIS_SOCKET_TIMEOUT_SECONDS": "1",
        "MEMSTORE_REDIS_RETRIES": "1",
        "MEMSTORE_SECONDARY_BACKEND": "mongodb",
        "MEMSTORE_SECONDARY_MONGODB_URI": ferretdb.uri,
        "MEMSTORE_SECONDARY_MONGODB_DB": f"t{uuid.uuid4().hex[:16]}",
        "MEMSTORE_FAILURE_MODE": mode,
        "MEMSTORE_HEALTH_CHECK_INTERVAL_SECONDS": "0.25",
        "MEMSTORE_FAILOVER_AFTER_FAILURES": "2",
        "MEMSTORE_FAILBACK_AFTER_SUCCESSES": "3",
        "MEMSTORE_EMBEDDER": "none",
    }


async def replication(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with session.get(base + "/readyz") as resp:
        body = await resp.json()
    return dict(body["replication"])


async def wait_serving(
    session: aiohttp.ClientSession, base: str, role: str, timeout: float = 60.0
) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if (await replication(session, base))["serving"] == role:
            return time.monotonic() - began
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{role} did not serve within {timeout} s")


async def read_probe(base: str, stop: asyncio.Event, log: list[tuple[float, bool]]) -> None:
    """GET one entity written before the load, as fast as it answers: (time, answered)."""
    url = f"{base}/v1/namespaces/{NAMESPACE}/entities/probe/p"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while not stop.is_set():
            try:
                async with session.get(url, headers={"Cache-Control": "no-cache"}) as resp:
                    ok = resp.status == 200 and (await resp.json())["data"] == {"p": 1}
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            log.append((time.monotonic(), ok))
            await asyncio.sleep(0.01)


async def until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll ``check`` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def snapshot(ledger: Ledger) -> Ledger:
    return Ledger(
        entities=dict(ledger.entities), messages={k: list(v) for k, v in ledger.messages.items()}
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["strict", "lenient"])
async def test_failover_under_write_load(
    mode: str, tmp_path: Path, ferretdb: FerretDB, figures: Any
) -> None:
    redis = LocalRedis(tmp_path / "redis", appendonly=True)
    svc = ServiceProcess(tmp_path / "svc", failover_env(redis, ferretdb, mode))
    ledger = Ledger()
    stop_load, stop_probe = asyncio.Event(), asyncio.Event()
    reads: list[tuple[float, bool]] = []
    try:
        svc.start()
        await asyncio.to_thread(wait_http, svc.url + "/readyz")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.put(
                f"{svc.url}/v1/namespaces/{NAMESPACE}/entities/probe/p", json={"data": {"p": 1}}
            ) as resp:
                assert resp.status == 201
            load = asyncio.create_task(
                write_load(svc.url, NAMESPACE, ledger, workers=WORKERS, stop=stop_load)
            )
            probe = asyncio.create_task(read_probe(svc.url, stop_probe, reads))
            await until(
                lambda: ledger.acknowledged >= ACKS_BEFORE_KILL,
                f"{ACKS_BEFORE_KILL} writes acknowledged before the kill",
            )

            # -- the kill, under load ---------------------------------------------------
            before_kill = await replication(session, svc.url)
            acked_before = snapshot(ledger)
            redis.kill9()
            killed = time.monotonic()
            served_after = await wait_serving(session, svc.url, "secondary")
            attempts_at_failover, acked_at_failover = ledger.attempts, ledger.acknowledged
            if mode == "strict":
                await until(
                    lambda: ledger.attempts - attempts_at_failover >= WRITES_DURING_OUTAGE,
                    f"{WRITES_DURING_OUTAGE} writes tried during the outage",
                )
            else:
                await until(
                    lambda: ledger.acknowledged - acked_at_failover >= WRITES_DURING_OUTAGE,
                    f"lenient mode acknowledged {WRITES_DURING_OUTAGE} writes during the outage",
                )
            during = await replication(session, svc.url)
            assert during["degraded"] is True
            assert "namespaces" not in during  # /readyz is open: no namespace names
            async with session.get(svc.url + "/metrics") as resp:
                exposition = await resp.text()
            assert 'memstore_backend_serving{backend="mongodb",role="secondary"} 1.0' in (
                exposition
            )
            assert "memstore_replication_failovers_total 1.0" in exposition
            writes_during = ledger.acknowledged - acked_at_failover
            attempts_during = ledger.attempts - attempts_at_failover
            # What a reader missed while the secondary served: acknowledged by the
            # primary before the kill, not yet replicated.
            missing_on_secondary = (await verify(svc.url, NAMESPACE, acked_before)).lost

            # -- the primary back ----------------------------------------------------------
            redis.start()
            restarted = time.monotonic()
            # Lenient: after the reconciliation, which runs under the load.
            back_after = await wait_serving(session, svc.url, "primary", timeout=120)
            acked_at_failback = ledger.acknowledged
            await until(
                lambda: ledger.acknowledged - acked_at_failback >= ACKS_AFTER_FAILBACK,
                f"{ACKS_AFTER_FAILBACK} writes acknowledged after the failback",
            )
            stop_load.set()
            stop_probe.set()
            await asyncio.gather(load, probe)
            after = await replication(session, svc.url)
        verdict = await verify(svc.url, NAMESPACE, ledger)

        # The longest time reads went unanswered, from the kill on.
        gap, last_ok = 0.0, killed
        for at, ok in reads:
            if at < killed:
                continue
            if ok:
                gap, last_ok = max(gap, at - last_ok), at
        failed_reads = sum(1 for at, ok in reads if at >= killed and not ok)

        if mode == "strict":
            assert writes_during == 0, "strict mode took writes while the primary was down"
        else:
            assert writes_during > 0, "lenient mode took no writes while the primary was down"
        assert verdict.corrupt_entities == []
        assert verdict.bad_conversations == []
        assert verdict.lost == 0, verdict
        assert after["serving"] == "primary"
        figures(
            mode=mode,
            primary="redis (appendfsync always)",
            secondary="ferretdb",
            lag_at_kill_events=before_kill["lag_events"],
            lag_at_kill_s=before_kill["lag_seconds"],
            kill_to_secondary_serving_s=round(served_after, 3),
            longest_read_gap_s=round(gap, 3),
            failed_reads=failed_reads,
            reads=len(reads),
            write_attempts_during_outage=attempts_during,
            writes_acknowledged_during_outage=writes_during,
            acked_missing_while_secondary_served=missing_on_secondary,
            restart_to_primary_serving_s=round(back_after, 3),
            outage_s=round(restarted - killed, 3),
            acknowledged=ledger.acknowledged,
            acknowledged_lost=verdict.lost,
        )
    finally:
        stop_load.set()
        stop_probe.set()
        svc.stop()
        redis.stop()

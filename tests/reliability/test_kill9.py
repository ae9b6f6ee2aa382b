"""``kill -9`` of the service in the middle of a write load, then a restart on the same data:
every acknowledged write is there and intact, conversations are well formed, and (embedded)
SQLite's own integrity check passes.

The kill comes after a number of acknowledged writes, not after a time, so it lands in the
middle of the load on a fast or a slow machine alike.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.load import Ledger, verify, write_load
from tests.support.procs import ServiceProcess, wait_http

KILL_AFTER_ACKS = 600
WORKERS = 8
NAMESPACE = "kill9"


def ready_within(url: str, timeout: float = 60.0) -> float:
    began = time.monotonic()
    deadline = began + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - began
        except Exception:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} not ready within {timeout}s")


async def kill_under_load(svc: ServiceProcess, figures: Callable[..., None], backend: str) -> None:
    ledger = Ledger()
    stop = asyncio.Event()
    killed_at_ack: list[int] = []
    assert svc.proc is not None
    proc = svc.proc

    def on_ack() -> None:
        if not killed_at_ack and ledger.acknowledged >= KILL_AFTER_ACKS:
            proc.send_signal(signal.SIGKILL)
            killed_at_ack.append(ledger.acknowledged)

    load = asyncio.create_task(
        write_load(svc.url, NAMESPACE, ledger, workers=WORKERS, stop=stop, on_ack=on_ack)
    )
    # The load runs until the kill, then a little longer so in-flight requests fail.
    while not killed_at_ack:
        await asyncio.sleep(0.01)
    assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
    killed = time.monotonic()
    await asyncio.sleep(0.3)
    stop.set()
    await load

    svc.start()
    startup = await asyncio.to_thread(ready_within, svc.url)
    recovered = time.monotonic() - killed
    verdict = await verify(svc.url, NAMESPACE, ledger)
    figures(
        backend=backend,
        acknowledged=ledger.acknowledged,
        acknowledged_at_kill=killed_at_ack[0],
        lost=verdict.lost,
        corrupt=len(verdict.corrupt_entities),
        malformed_conversations=len(verdict.bad_conversations),
        errors=ledger.errors,
        attempts=ledger.attempts,
        restart_to_ready_s=round(startup, 3),
        kill_to_ready_s=round(recovered, 3),
    )
    assert ledger.acknowledged >= KILL_AFTER_ACKS
    assert verdict.lost_entities == []
    assert verdict.lost_messages == 0
    assert verdict.corrupt_entities == []
    assert verdict.bad_conversations == []
    # The restarted service takes writes again.
    after = Ledger()
    stop = asyncio.Event()
    task = asyncio.create_task(
        write_load(svc.url, NAMESPACE + "-after", after, workers=2, stop=stop)
    )
    while after.acknowledged < 20:
        await asyncio.sleep(0.01)
    stop.set()
    await task


@pytest.mark.slow
async def test_kill9_embedded(tmp_path: Path, figures: Any) -> None:
    svc = ServiceProcess(tmp_path / "svc").start()
    try:
        await asyncio.to_thread(wait_http, svc.url + "/readyz")
        await kill_under_load(svc, figures, "embedded")
    finally:
        svc.stop()
    db = tmp_path / "svc" / "memstore.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)

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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.load import Ledger, verify, write_load
from tests.support.procs import ServiceProcess, wait_http

KILL_AFTER_ACKS = 600
ROUNDS = 3
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


async def kill_once(svc: ServiceProcess, namespace: str, ledger: Ledger) -> float:
    """Load ``namespace`` until KILL_AFTER_ACKS acks, SIGKILL, restart. Returns the
    kill-to-ready seconds."""
    stop = asyncio.Event()
    killed_at_ack: list[int] = []
    assert svc.proc is not None
    proc = svc.proc

    def on_ack() -> None:
        if not killed_at_ack and ledger.acknowledged >= KILL_AFTER_ACKS:
            proc.send_signal(signal.SIGKILL)
            killed_at_ack.append(ledger.acknowledged)

    load = asyncio.create_task(
        write_load(svc.url, namespace, ledger, workers=WORKERS, stop=stop, on_ack=on_ack)
    )
    while not killed_at_ack:
        await asyncio.sleep(0.01)
    assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
    killed = time.monotonic()
    # A little longer, so requests in flight and those right after the kill fail.
    await asyncio.sleep(0.3)
    stop.set()
    await load
    svc.start()
    await asyncio.to_thread(ready_within, svc.url)
    return time.monotonic() - killed


async def kill_under_load(
    svc: ServiceProcess, figures: Callable[..., None], backend: str, rounds: int = ROUNDS
) -> None:
    """``rounds`` kills, each in the middle of a load on a namespace of its own; after each
    restart every earlier round's acknowledged writes are checked again."""
    ledgers: list[tuple[str, Ledger]] = []
    recover: list[float] = []
    lost = corrupt = malformed = 0
    for round_no in range(rounds):
        namespace = f"{NAMESPACE}-{uuid.uuid4().hex[:8]}-r{round_no}"
        ledger = Ledger()
        ledgers.append((namespace, ledger))
        recover.append(await kill_once(svc, namespace, ledger))
        for ns, led in ledgers:
            verdict = await verify(svc.url, ns, led)
            lost += verdict.lost
            corrupt += len(verdict.corrupt_entities)
            malformed += len(verdict.bad_conversations)
    figures(
        backend=backend,
        kills=rounds,
        acknowledged=sum(led.acknowledged for _, led in ledgers),
        lost=lost,
        corrupt=corrupt,
        malformed_conversations=malformed,
        failed_requests=sum(led.errors for _, led in ledgers),
        attempts=sum(led.attempts for _, led in ledgers),
        kill_to_ready_s_max=round(max(recover), 3),
    )
    assert all(led.acknowledged >= KILL_AFTER_ACKS for _, led in ledgers)
    assert (lost, corrupt, malformed) == (0, 0, 0)
    # The restarted service takes writes again.
    after = Ledger()
    stop = asyncio.Event()
    task = asyncio.create_task(
        write_load(
            svc.url, f"{NAMESPACE}-after-{uuid.uuid4().hex[:8]}", after, workers=2, stop=stop
        )
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
        # The change log is written in each write's transaction: after the kills it still
        # agrees with the data, and its positions have no hole.
        stale_entities = conn.execute(
            "SELECT e.ns, e.type, e.id, e.version, (SELECT c.version FROM change_log c "
            "WHERE c.ns = e.ns AND c.entity_type = e.type AND c.entity_id = e.id "
            "ORDER BY c.position DESC LIMIT 1) AS logged FROM entities e "
            "WHERE logged IS NOT e.version"
        ).fetchall()
        assert stale_entities == []
        stale_conversations = conn.execute(
            "SELECT v.ns, v.id, v.next_seq - 1, (SELECT CASE c.kind WHEN "
            "'conversation.popped' THEN c.version - 1 ELSE c.version END FROM change_log c "
            "WHERE c.ns = v.ns AND c.conversation_id = v.id AND c.kind IN "
            "('conversation.appended', 'conversation.replaced', 'conversation.popped') "
            "ORDER BY c.position DESC LIMIT 1) AS logged FROM conversations v "
            "WHERE logged IS NOT v.next_seq - 1"
        ).fetchall()
        assert stale_conversations == []
        holes = conn.execute(
            "SELECT ns, COUNT(*), MIN(position), MAX(position) FROM change_log GROUP BY ns "
            "HAVING COUNT(*) != MAX(position) - MIN(position) + 1 OR MIN(position) != 1"
        ).fetchall()
        assert holes == []

"""Failover: a private 6-node cluster under write load loses a master to ``kill -9``.

The service (one manager, never restarted) must keep serving once the replica takes
over. Reported per mode: acknowledged writes, errors (503s), acknowledged writes lost.
In durable mode (``MEMSTORE_REDIS_WAIT_REPLICAS=1``) no acknowledged write may be lost,
and while the promoted master has no replica its writes must fail with 503 instead of
being acknowledged without a copy.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.errors import BackendUnavailableError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.redis.conftest import slot_of, slot_owners
from tests.servers.redis import LocalCluster, unique_prefix

WRITERS = 16
LOAD_BEFORE_KILL = 2.0
# After the takeover (and, durable, after the old master rejoined) the load goes on until
# this many writes started then were acknowledged on the failed master's slots (durable,
# before the rejoin: refused), not for a fixed time: no longer than it takes.
WRITES_AFTER = 10


async def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


def _wait_takeover(cluster: LocalCluster, victim_port: int, timeout: float = 60.0) -> None:
    """Every live node reports cluster_state ok and the victim's slots have a new master."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            live = [n for n in cluster.nodes if n.alive()]
            ok = all(n.client.cluster("info")["cluster_state"] == "ok" for n in live)
            moved = victim_port not in set(slot_owners(cluster).values())
            if ok and moved and len(cluster.masters()) == 3:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError("the replica did not take over")


@pytest.mark.slow
@pytest.mark.parametrize("durable", [False, True], ids=["async-replication", "durable-wait"])
async def test_failover_under_write_load(
    durable: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = await asyncio.to_thread(LocalCluster, tmp_path_factory.mktemp("failover"))
    settings = Settings(
        memory_type="redis",
        redis_cluster_nodes=cluster.seed,
        redis_prefix=unique_prefix(),
        redis_wait_replicas=1 if durable else 0,
        redis_wait_timeout_ms=500,
    )
    manager = DistributedMemoryManager(settings=settings, namespace="failover")
    report: dict[str, object] = {"mode": "durable (WAIT 1)" if durable else "async replication"}
    try:
        await manager.start()
        backend = manager.backend
        assert isinstance(backend, RedisMemoryBackend)

        def slot(eid: str) -> int:
            return slot_of(backend._entity_keys("failover", "doc", eid)[0])

        acked: dict[str, tuple[int, float, float]] = {}  # id -> (version, start, ack)
        errors: Counter[str] = Counter()
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                eid = f"w{w:02d}-{i:06d}"
                i += 1
                began = time.monotonic()
                try:
                    rec = await manager.save_entity("doc", eid, {"w": w, "i": i})
                except BackendUnavailableError as exc:
                    errors[exc.message.split(":")[0][:60]] += 1
                    await asyncio.sleep(0.02)
                else:
                    acked[eid] = (rec.version, began, time.monotonic())

        tasks = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
        await asyncio.sleep(LOAD_BEFORE_KILL)
        owners = slot_owners(cluster)
        victim = cluster.masters()[0]
        victim_slots = {s for s, port in owners.items() if port == victim.port}
        acked_before_kill = len(acked)
        victim.kill9()
        killed_at = time.monotonic()
        await asyncio.to_thread(_wait_takeover, cluster, victim.port)
        took_over_at = time.monotonic()
        takeover_s = took_over_at - killed_at

        def on_victim_slots(since: float) -> list[tuple[float, float]]:
            """Writes started after ``since`` and acknowledged on the failed master's slots."""
            return [
                (t0, t1)
                for eid, (_, t0, t1) in list(acked.items())
                if t0 > since and slot(eid) in victim_slots
            ]

        if durable:
            refused_at_takeover = sum(errors.values())
            await until(
                lambda: sum(errors.values()) - refused_at_takeover >= WRITES_AFTER,
                f"{WRITES_AFTER} writes refused after the takeover",
            )
        else:
            await until(
                lambda: len(on_victim_slots(took_over_at)) >= WRITES_AFTER,
                f"{WRITES_AFTER} writes acknowledged on the failed master's slots",
            )

        # After the takeover the same, never restarted service writes to every slot range.
        # Writes started after the kill and acknowledged on the failed master's slots.
        recovered = [
            (round(t0 - killed_at, 3), round(t1 - killed_at, 3))
            for t0, t1 in on_victim_slots(killed_at)
        ]
        first_write_on_victim_slots_s = min(t1 for _, t1 in recovered) if recovered else None
        if durable:
            # The promoted master has no replica: WAIT cannot be satisfied, so its writes
            # are refused (503), never acknowledged without a copy.
            assert not recovered, f"durable write acknowledged with no replica: {recovered}"
            assert errors, "expected 503s while the promoted master has no replica"
            victim.start()  # the old master comes back and rejoins as a replica
            await asyncio.to_thread(cluster.wait_healthy, 60)
            rejoined_at = time.monotonic()
            await until(
                lambda: len(on_victim_slots(rejoined_at)) >= WRITES_AFTER,
                f"{WRITES_AFTER} durable writes acknowledged on those slots after the rejoin",
            )
            recovered = on_victim_slots(rejoined_at)
        assert recovered, "no write on the failed master's slots succeeded after takeover"
        ready = False
        for _ in range(50):  # readiness follows the new topology, no restart
            if ready := await manager.ping():
                break
            await asyncio.sleep(0.2)
        assert ready
        stop.set()
        await asyncio.gather(*tasks)

        # Read back every acknowledged write through a fresh connection (no cache).
        checker = RedisMemoryBackend(settings)
        await checker.connect()
        try:
            lost = 0
            ids = list(acked)
            for start in range(0, len(ids), 200):
                chunk = ids[start : start + 200]
                found = await asyncio.gather(
                    *(checker.load_entity("failover", "doc", eid) for eid in chunk)
                )
                for eid, rec in zip(chunk, found, strict=True):
                    if rec is None or rec.version < acked[eid][0]:
                        lost += 1
        finally:
            await checker.close()
        bus = backend.invalidation_bus
        assert bus is not None
        await asyncio.wait_for(bus.subscribed.wait(), 30)  # invalidations flow again

        report.update(
            acknowledged=len(acked),
            acknowledged_before_kill=acked_before_kill,
            errors=sum(errors.values()),
            error_kinds=dict(errors),
            lost=lost,
            takeover_seconds=round(takeover_s, 2),
            first_ack_on_failed_slots_after_kill_seconds=(
                round(first_write_on_victim_slots_s, 2)
                if first_write_on_victim_slots_s is not None
                else None
            ),
            invalidation_drops=bus.drops,
        )
        print(f"\nFAILOVER REPORT {json.dumps(report)}")
        out = Path(str(tmp_path_factory.getbasetemp())) / "failover-report.jsonl"
        with out.open("a") as fh:
            fh.write(json.dumps(report) + "\n")
        assert len(acked) > acked_before_kill
        if durable:
            assert lost == 0
    finally:
        await manager.close()
        await asyncio.to_thread(cluster.stop)

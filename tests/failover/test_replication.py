"""Replication from a primary Redis to a secondary FerretDB (MongoDB wire), failover when
the primary is killed, and the lenient failback, through ``ReplicatedMemoryBackend``
with real servers."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.mongodb import MongoDBMemoryBackend
from memstore.backends.redis import RedisMemoryBackend
from memstore.backends.replicated import PRIMARY, SECONDARY, ReplicatedMemoryBackend
from memstore.core.errors import BackendUnavailableError
from memstore.core.records import ChangePage, FeedbackRecord, ToolUsageRecord
from memstore.core.settings import Settings
from memstore.observability.metrics import PrometheusMetrics
from tests.failover.conftest import caught_up, eventually
from tests.servers.redis import LocalRedis


def ns() -> str:
    return f"n{uuid.uuid4().hex[:10]}"


async def everything(backend: DistributedMemoryBackend, namespace: str) -> dict[str, Any]:
    """All a namespace holds, exactly (versions, seqs, timestamps)."""
    out: dict[str, Any] = {"entities": {}, "conversations": {}}
    for entity_type in await backend.get_entity_types(namespace):
        page = await backend.list_entities(namespace, entity_type, limit=500)
        for e in page.items:
            out["entities"][(e.type, e.id)] = e
    convs = await backend.list_conversations(namespace, limit=500)
    for info in convs.items:
        out["conversations"][info.conversation_id] = await backend.load_messages(
            namespace, info.conversation_id
        )
    out["tools"] = (await backend.query_tool_usage(namespace, limit=500)).items
    out["feedback"] = (await backend.query_feedback(namespace, limit=500)).items
    return out


async def write_some(backend: DistributedMemoryBackend, namespace: str) -> None:
    await backend.save_entity(namespace, "note", "a", {"v": 1})
    await backend.save_entity(namespace, "note", "a", {"v": 2}, expected_version=1)
    await backend.save_entity(namespace, "note", "ttl", {"v": 1}, ttl=3600)
    await backend.save_entity(namespace, "note", "gone", {"v": 1})
    await backend.delete_entity(namespace, "note", "gone")
    await backend.save_entity(namespace, "fact", "b", {"nested": [1, {"x": None}], "s": "é"})
    await backend.append_messages(namespace, "c1", [{"m": 1}, {"m": 2}, {"m": 3}])
    await backend.pop_message(namespace, "c1")
    await backend.append_messages(namespace, "c1", [{"m": 4}])
    await backend.replace_conversation(namespace, "c2", [{"r": 1}])
    await backend.append_messages(namespace, "c3", [{"m": 1}])
    await backend.delete_conversation(namespace, "c3")
    await backend.record_tool_usage(
        namespace,
        ToolUsageRecord("use-1", "search", {"q": 1}, ["r"], 1.5, True, 1_700_000_000.5, "c1"),
    )
    await backend.save_feedback(
        namespace, FeedbackRecord("fb-1", "agent", "rating", {"rating": 4}, 1_700_000_001.0)
    )


async def test_secondary_holds_exactly_what_the_primary_holds(
    replicated: Callable[..., Any],
) -> None:
    backend: ReplicatedMemoryBackend = await replicated()
    names = [ns(), ns()]
    for name in names:
        await write_some(backend, name)
    await eventually(lambda: caught_up(backend, names))
    for name in names:
        primary = await everything(backend.primary, name)
        assert primary["entities"][("note", "a")].version == 2
        assert ("note", "gone") not in primary["entities"]
        assert [m.seq for m in primary["conversations"]["c1"]] == [1, 2, 3]
        assert await everything(backend.secondary, name) == primary
    status = backend.status()
    assert status["serving"] == PRIMARY
    assert status["replicating"] is True
    assert status["lag_events"] == 0
    assert status["degraded"] is False

    # The position is kept on the secondary: a new process resumes where this one was.
    positions = dict(backend.forward.positions)
    await backend.close()
    again: ReplicatedMemoryBackend = await replicated(backend.settings)
    for name in names:
        assert await again.forward.load_position(name) == positions[name]


async def test_close_during_a_copy_leaves_nothing_running(
    replicated: Callable[..., Any],
) -> None:
    """``close`` while the replication is writing a batch to the secondary: when it
    returns, nothing the backend started runs any more (the copy's concurrent writes, the
    secondary's change-log rounds those writes had joined). Anything left would go on
    using connections after the clients were closed, and after the event loop ended:
    sockets left to the garbage collector, an unclosed-socket warning in whatever runs
    then."""
    backend: ReplicatedMemoryBackend = await replicated()
    name = ns()
    copying = asyncio.Event()
    import_entity = backend.secondary.import_entity

    async def import_entity_noticed(namespace: str, record: Any) -> None:
        if namespace == name:
            copying.set()
        await import_entity(namespace, record)

    backend.secondary.import_entity = import_entity_noticed  # type: ignore[method-assign]
    await asyncio.gather(*(backend.save_entity(name, "bulk", f"b{i}", {"i": i}) for i in range(40)))
    await asyncio.wait_for(copying.wait(), 30)
    await backend.close()
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert left == []


async def test_strict_failover_reads_from_secondary_and_refuses_writes(
    replicated: Callable[..., Any], primary_redis: LocalRedis
) -> None:
    backend: ReplicatedMemoryBackend = await replicated()
    name = ns()
    await write_some(backend, name)
    await eventually(lambda: caught_up(backend, [name]))
    before = await everything(backend.primary, name)

    primary_redis.kill9()
    killed = time.monotonic()
    # Reads keep answering (from the secondary, at once when the primary fails them).
    record = await backend.load_entity(name, "note", "a")
    assert record == before["entities"][("note", "a")]
    await eventually(lambda: backend.serving == SECONDARY)
    detected = time.monotonic() - killed
    assert await everything(backend, name) == before
    with pytest.raises(BackendUnavailableError) as refused:
        await backend.save_entity(name, "note", "new", {"v": 1})
    assert "MEMSTORE_FAILURE_MODE=strict" in refused.value.message
    assert refused.value.details == {"serving": "secondary", "failure_mode": "strict"}
    status = backend.status()
    assert status["degraded"] is True
    assert status["primary_up"] is False
    assert await backend.ping() is True
    print(f"strict: the secondary served {detected:.2f} s after the kill")

    primary_redis.start()
    await eventually(lambda: backend.serving == PRIMARY)
    saved = await backend.save_entity(name, "note", "new", {"v": 1})
    assert saved.version == 1
    assert (await everything(backend.primary, name))["entities"][("note", "a")] == record


async def test_lenient_failover_takes_writes_and_reconciles_them(
    replicated: Callable[..., Any],
    replicated_settings: Callable[..., Any],
    primary_redis: LocalRedis,
) -> None:
    backend: ReplicatedMemoryBackend = await replicated(replicated_settings(failure_mode="lenient"))
    name = ns()
    await write_some(backend, name)
    await eventually(lambda: caught_up(backend, [name]))

    primary_redis.kill9()
    await eventually(lambda: backend.serving == SECONDARY)
    # During the outage: a new entity, a new version of an old one, an append, a delete.
    made = await backend.save_entity(name, "note", "during", {"v": 1})
    updated = await backend.save_entity(name, "note", "a", {"v": 3}, expected_version=2)
    await backend.append_messages(name, "c1", [{"m": 5}])
    await backend.delete_entity(name, "note", "ttl")
    assert updated.version == 3
    on_secondary = await everything(backend.secondary, name)

    primary_redis.start()
    await eventually(lambda: backend.serving == PRIMARY)
    assert backend.status()["reconciling"] is False
    on_primary = await everything(backend.primary, name)
    assert on_primary["entities"][("note", "during")] == made
    assert on_primary["entities"][("note", "a")] == updated
    assert ("note", "ttl") not in on_primary["entities"]
    assert on_primary == on_secondary
    # Writes go to the primary again, and are replicated again.
    await backend.append_messages(name, "c1", [{"m": 6}])
    await eventually(lambda: caught_up(backend, [name]))
    assert await everything(backend.secondary, name) == await everything(backend.primary, name)


async def test_a_namespace_whose_log_was_pruned_is_copied_whole(
    replicated: Callable[..., Any], replicated_settings: Callable[..., Any]
) -> None:
    settings = replicated_settings(changes_max_events=3)
    name = ns()
    # Written before replication was switched on, and the log trimmed to its last 3.
    alone = DistributedMemoryFactory.create_single_backend(settings)
    await alone.connect()
    try:
        await write_some(alone, name)
        for i in range(10):
            await alone.save_entity(name, "old", f"e{i}", {"i": i})
        await alone.trim_changes(name)
        page = await alone.read_changes(name, after=0, limit=10)
        assert page.first_position > 1
    finally:
        await alone.close()
    backend: ReplicatedMemoryBackend = await replicated(settings)
    await eventually(lambda: caught_up(backend, [name]))
    assert await everything(backend.secondary, name) == await everything(backend.primary, name)


async def test_a_primary_back_without_its_data_does_not_serve(
    replicated: Callable[..., Any], primary_redis: LocalRedis
) -> None:
    backend: ReplicatedMemoryBackend = await replicated()
    name = ns()
    await write_some(backend, name)
    await eventually(lambda: caught_up(backend, [name]))
    primary_redis.kill9()
    await eventually(lambda: backend.serving == SECONDARY)
    for path in sorted(primary_redis.dir.rglob("appendonly*"), reverse=True):
        if path.is_file():
            path.unlink()
    primary_redis.start()  # empty
    await eventually(lambda: backend.problem is not None)
    status = backend.status()
    assert status["serving"] == SECONDARY
    assert status["degraded"] is True
    assert any("without its data" in reason for reason in status["reasons"])
    assert (await backend.load_entity(name, "note", "a")) is not None  # the secondary's


async def test_lenient_failback_finishes_while_writes_outpace_the_copy(
    replicated: Callable[..., Any],
    replicated_settings: Callable[..., Any],
    primary_redis: LocalRedis,
) -> None:
    """Writers that add more events than each copy step takes (here: one more than a
    batch, every time the failback reads the secondary's log, while writes are open): the
    failback still ends (bounded catch-up rounds, then writes held, the rest copied), and
    no acknowledged write is lost."""
    batch = 10
    backend: ReplicatedMemoryBackend = await replicated(
        replicated_settings(failure_mode="lenient", replication_batch=batch)
    )
    name = ns()
    await write_some(backend, name)
    await eventually(lambda: caught_up(backend, [name]))
    primary_redis.kill9()
    await eventually(lambda: backend.serving == SECONDARY)
    await backend.save_entity(name, "note", "during", {"v": 1})

    acknowledged: dict[str, int] = {}
    read_changes = backend.secondary.read_changes

    async def read_changes_while_writers_outpace(namespace: str, *, after: int, limit: int) -> Any:
        # Writers keep adding (while writes are not held for the switch) more than a
        # step of the copy takes: a log that the copy never drains.
        if namespace == name and backend._writes_open.is_set():
            for _ in range(batch + 1):
                key = f"k{len(acknowledged)}"
                record = await backend.save_entity(name, "load", key, {"k": key})
                acknowledged[key] = record.version
        return await read_changes(namespace, after=after, limit=limit)

    backend.secondary.read_changes = read_changes_while_writers_outpace  # type: ignore[method-assign]
    primary_redis.start()
    await eventually(lambda: backend.serving == PRIMARY, timeout=60)
    backend.secondary.read_changes = read_changes  # type: ignore[method-assign]
    assert len(acknowledged) > batch  # writes landed between the steps of the copy
    on_primary = await everything(backend.primary, name)
    for key in acknowledged:
        assert ("load", key) in on_primary["entities"], key
    assert ("note", "during") in on_primary["entities"]
    assert backend.status()["reconciling"] is False


async def test_the_lag_is_known_before_the_replica_says_it_replicates(
    replicated: Callable[..., Any], replicated_settings: Callable[..., Any]
) -> None:
    """A store that starts replicating data written before: as long as anything is left
    to copy, ``status()`` never says it replicates with a lag of 0 (what an operator
    waits for before switching backends), not even before the first round reached every
    namespace."""
    settings = replicated_settings(replication_batch=10)
    names = [ns() for _ in range(5)]
    alone = DistributedMemoryFactory.create_single_backend(settings)
    await alone.connect()
    try:
        for name in names:
            for i in range(30):
                await alone.save_entity(name, "note", f"e{i}", {"i": i})
    finally:
        await alone.close()
    backend: ReplicatedMemoryBackend = await replicated(settings)
    seen_behind = []
    while True:
        # The status first: the positions only grow, so behind afterwards is behind then.
        status = backend.status()
        if await caught_up(backend, names):
            break
        seen_behind.append(status)
        await asyncio.sleep(0.001)
    wrong = [s for s in seen_behind if s["replicating"] and s["lag_events"] == 0]
    assert not wrong, wrong[0]
    assert backend.status()["lag_events"] == 0


class _ReadChangesFailsOnce(RedisMemoryBackend):
    """A primary whose change-log read raises, once armed, an error no backend translates
    (what a bug or an untranslated driver error looks like to the replication loop)."""

    armed = False

    async def read_changes(self, namespace: str, *, after: int, limit: int) -> ChangePage:
        if self.armed:
            self.armed = False
            raise KeyError("a bug in the replicator")
        return await super().read_changes(namespace, after=after, limit=limit)


async def test_an_unexpected_error_is_reported_and_retried(
    replicated_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = replicated_settings()
    primary = _ReadChangesFailsOnce(settings)
    backend = ReplicatedMemoryBackend(
        settings, primary, MongoDBMemoryBackend(settings.secondary_settings())
    )
    metrics = PrometheusMetrics()
    metrics.watch_replication(backend.status)
    await backend.connect()
    try:
        name = ns()
        await backend.save_entity(name, "note", "a", {"v": 1})
        await eventually(lambda: caught_up(backend, [name]))
        caplog.set_level(logging.ERROR, logger="memstore.replication")
        primary.armed = True
        await backend.save_entity(name, "note", "a", {"v": 2}, expected_version=1)
        await eventually(lambda: not primary.armed)  # the loop met the error ...
        await eventually(lambda: caught_up(backend, [name]))  # ... and replicates on
        copied = await backend.secondary.load_entity(name, "note", "a")
        assert copied is not None and copied.data == {"v": 2}
        # degraded until a round succeeds again (the failed round may have copied this
        # namespace before it met the error in another one)
        await eventually(lambda: not backend.status()["degraded"])
        status = backend.status()
        assert (status["round_errors"], status["last_error"]) == (1, "KeyError")
        assert status["last_error_at"] is not None
        failed = [r for r in caplog.records if r.getMessage().startswith("replication round")]
        assert len(failed) == 1 and failed[0].exc_info is not None
        assert isinstance(failed[0].exc_info[1], KeyError)
        exposition = generate_latest(metrics.registry).decode()
        assert "memstore_replication_round_errors_total 1.0" in exposition
    finally:
        await backend.close()

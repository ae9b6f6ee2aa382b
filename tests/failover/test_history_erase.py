"""An erase of history (``history:purge``, retention's versions rules) reaches the
secondary: in order when the replication lags, and later when the secondary was down.

The pairs are built without their background tasks (the primary and secondary are
connected directly) and the forward replicator is stepped by hand, so "the replication
lags" is a state the test sets up, not a race it hopes to win.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.redis import RedisMemoryBackend
from memstore.backends.replicated import PRIMARY, SECONDARY, ReplicatedMemoryBackend
from memstore.core.retention import Cutoffs
from memstore.core.settings import Settings
from tests.failover.conftest import caught_up, eventually
from tests.servers.redis import LocalRedis

SECRET = "must be erased"


@pytest.fixture
def ns() -> str:
    return f"e{uuid.uuid4().hex[:12]}"


async def _open(backend: ReplicatedMemoryBackend) -> ReplicatedMemoryBackend:
    # both sides, without the health probe and the replication loop (stepped by hand)
    await backend.secondary.connect()
    await backend.primary.connect()
    return backend


@pytest.fixture(params=["embedded", "redis_to_mongodb"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "embedded":
        settings = Settings(
            memory_type="embedded", data_path=tmp_path / "p.db", replication_batch=1
        )
        backend = ReplicatedMemoryBackend(
            settings,
            EmbeddedMemoryBackend(settings),
            EmbeddedMemoryBackend(settings.model_copy(update={"data_path": tmp_path / "s.db"})),
        )
    else:
        base: Settings = request.getfixturevalue("redis_to_mongodb_settings")
        built = DistributedMemoryFactory.create_memory_backend(
            base.model_copy(update={"replication_batch": 1})
        )
        assert isinstance(built, ReplicatedMemoryBackend)
        backend = built
    await _open(backend)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def down_secondary(
    primary_redis: LocalRedis, tmp_path: Path
) -> AsyncIterator[tuple[ReplicatedMemoryBackend, LocalRedis]]:
    """Embedded primary, Redis secondary on a server the test may kill (fsynced)."""
    settings = Settings(
        memory_type="embedded",
        data_path=tmp_path / "p.db",
        replication_batch=1,
        redis_host="127.0.0.1",
        redis_port=primary_redis.port,
        redis_prefix=f"t{uuid.uuid4().hex[:12]}:",
        redis_retries=1,
        redis_socket_timeout_seconds=0.5,
        redis_connect_timeout_seconds=0.5,
    )
    backend = ReplicatedMemoryBackend(
        settings, EmbeddedMemoryBackend(settings), RedisMemoryBackend(settings)
    )
    await _open(backend)
    try:
        yield backend, primary_redis
    finally:
        await backend.close()


async def drain(backend: ReplicatedMemoryBackend, ns: str) -> None:
    """Step the forward replication until the namespace's log is copied to its end."""
    for _ in range(1000):
        await backend.forward.step(ns)
        end = (await backend.primary.read_changes(ns, after=0, limit=1)).last_position
        if backend.forward.positions.get(ns, 0) >= end:
            return
    raise AssertionError("the replication did not catch up")


async def history(backend: DistributedMemoryBackend, ns: str) -> dict[str, Any]:
    """Every entity key's rows and every conversation's revisions (with messages)."""
    out: dict[str, Any] = {}
    cursor: str | None = None
    while True:
        keys = await backend.list_versioned_entities(ns, cursor=cursor, limit=50)
        for key in keys.items:
            rows = await backend.list_entity_versions(ns, key.type, key.id, limit=1000)
            out[f"{key.type}/{key.id}"] = [(v.version, v.deleted, v.data) for v in rows.items]
        if (cursor := keys.next_cursor) is None:
            break
    for info in (await backend.list_conversations(ns, limit=100)).items:
        cid = info.conversation_id
        revisions = []
        for r in (await backend.list_conversation_revisions(ns, cid, limit=1000)).items:
            found = await backend.load_conversation_revision(ns, cid, r.revision)
            assert found is not None
            revisions.append((r.revision, [m.message for m in found[1]]))
        out[f"conversation/{cid}"] = revisions
    return out


def holds_secret(rows: dict[str, Any]) -> bool:
    return SECRET in repr(rows)


async def test_a_purge_reaches_a_lagging_secondary_in_order(
    pair: ReplicatedMemoryBackend, ns: str
) -> None:
    backend = pair
    await backend.save_entity(ns, "doc", "d", {"secret": f"v1 {SECRET}"})
    await backend.save_entity(ns, "doc", "d", {"secret": "v2"})
    await backend.append_messages(ns, "c", [{"m": f"1 {SECRET}"}])
    await backend.replace_conversation(ns, "c", [{"m": "2"}])
    await drain(backend, ns)  # the secondary holds v2 (v1 in history) and revision 1
    # the replication lags: these are not on the secondary when the purge comes
    await backend.save_entity(ns, "doc", "d", {"secret": "v3"})
    await backend.replace_conversation(ns, "c", [{"m": "3"}])

    assert await backend.purge_history(ns) == 4  # v1, v2, revisions 1 and 2
    assert await backend.erase_pending(ns) is False
    await drain(backend, ns)  # copying v3 moves the secondary's v2 into its history

    want = await history(backend.primary, ns)
    assert want == {"doc/d": [(3, False, {"secret": "v3"})], "conversation/c": []}
    got = await history(backend.secondary, ns)
    assert got == want
    assert not holds_secret(got)


async def test_a_versions_prune_reaches_a_lagging_secondary(
    pair: ReplicatedMemoryBackend, ns: str
) -> None:
    backend = pair
    for n in (1, 2):
        await backend.save_entity(ns, "doc", "d", {"n": n, "note": SECRET})
    await backend.append_messages(ns, "c", [{"m": f"1 {SECRET}"}])
    await backend.replace_conversation(ns, "c", [{"m": f"2 {SECRET}"}])
    await backend.replace_conversation(ns, "c", [{"m": "3"}])
    await drain(backend, ns)
    for n in (3, 4):
        await backend.save_entity(ns, "doc", "d", {"n": n})
    await backend.replace_conversation(ns, "c", [{"m": "4"}])
    await backend.replace_conversation(ns, "c", [{"m": "5"}])

    # one history row per key is kept: the primary keeps v3 and revision 4, the secondary
    # (it lags) keeps its own newest rows, v1 and revision 2
    report = await backend.prune(
        ns, Cutoffs(versions_keep=1), time.time(), dry_run=False, limit=100
    )
    assert [(v.type, v.version) for v in report.versions] == [
        ("doc", 1),
        ("doc", 2),
        (None, 1),
        (None, 2),
        (None, 3),
    ]
    await drain(backend, ns)

    want = await history(backend.primary, ns)
    assert want == {
        "doc/d": [(4, False, {"n": 4}), (3, False, {"n": 3})],
        "conversation/c": [(4, [{"m": "4"}])],
    }
    got = await history(backend.secondary, ns)
    assert got == want
    assert not holds_secret(got)


async def test_an_erase_the_secondary_was_down_for_reaches_it_when_back(
    down_secondary: tuple[ReplicatedMemoryBackend, LocalRedis], ns: str
) -> None:
    backend, server = down_secondary
    # "e" and "c" have no event after the erase: only the recorded erase reaches them
    await backend.save_entity(ns, "doc", "e", {"secret": f"e1 {SECRET}"})
    await backend.save_entity(ns, "doc", "e", {"secret": "e2"})
    await backend.save_entity(ns, "doc", "d", {"secret": f"d1 {SECRET}"})
    await backend.save_entity(ns, "doc", "d", {"secret": "d2"})
    await backend.append_messages(ns, "c", [{"m": f"1 {SECRET}"}])
    await backend.replace_conversation(ns, "c", [{"m": "2"}])
    await drain(backend, ns)
    assert holds_secret(await history(backend.secondary, ns))

    server.kill9()
    assert await backend.purge_history(ns) == 3
    assert await backend.erase_pending(ns) is True
    # writes after the erase, and a versions prune the secondary also misses
    for n in (3, 4, 5):
        await backend.save_entity(ns, "doc", "d", {"secret": f"d{n}"})
    report = await backend.prune(
        ns, Cutoffs(versions_keep=1), time.time(), dry_run=False, limit=100
    )
    assert [(v.id, v.version) for v in report.versions] == [("d", 2), ("d", 3)]
    assert await backend.erase_pending(ns) is True

    server.start()
    assert holds_secret(await history(backend.secondary, ns))  # not erased yet
    await drain(backend, ns)
    assert await backend.erase_pending(ns) is False

    want = await history(backend.primary, ns)
    assert want == {
        "doc/d": [(5, False, {"secret": "d5"}), (4, False, {"secret": "d4"})],
        "doc/e": [(2, False, {"secret": "e2"})],
        "conversation/c": [],
    }
    got = await history(backend.secondary, ns)
    assert got == want
    assert not holds_secret(got)


async def test_an_erase_during_a_lenient_outage_reaches_the_primary_at_failback(
    replicated: Callable[..., Any],
    replicated_settings: Callable[..., Settings],
    primary_redis: LocalRedis,
    ns: str,
) -> None:
    """The other direction, through the real failover: the primary is down, the secondary
    takes the purge, and the failback applies it to the primary before it serves again."""
    backend: ReplicatedMemoryBackend = await replicated(replicated_settings(failure_mode="lenient"))
    await backend.save_entity(ns, "doc", "e", {"secret": f"e1 {SECRET}"})
    await backend.save_entity(ns, "doc", "e", {"secret": "e2"})
    await backend.append_messages(ns, "c", [{"m": f"1 {SECRET}"}])
    await backend.replace_conversation(ns, "c", [{"m": "2"}])
    await eventually(lambda: caught_up(backend, [ns]))
    assert holds_secret(await history(backend.secondary, ns))

    primary_redis.kill9()
    await eventually(lambda: backend.serving == SECONDARY)
    assert await backend.purge_history(ns) == 2
    assert await backend.erase_pending(ns) is True

    primary_redis.start()
    await eventually(lambda: backend.serving == PRIMARY)
    assert await backend.erase_pending(ns) is False
    want = {"doc/e": [(2, False, {"secret": "e2"})], "conversation/c": []}
    assert await history(backend.primary, ns) == want
    assert await history(backend.secondary, ns) == want


async def revisions(backend: DistributedMemoryBackend, ns: str, cid: str) -> list[Any]:
    """The conversation's revisions with their messages, whether or not it is live."""
    out = []
    for r in (await backend.list_conversation_revisions(ns, cid, limit=1000)).items:
        found = await backend.load_conversation_revision(ns, cid, r.revision)
        assert found is not None
        out.append((r.revision, [m.message for m in found[1]]))
    return out


async def test_a_pop_that_empties_a_conversation_keeps_its_revisions_on_the_secondary(
    pair: ReplicatedMemoryBackend, ns: str
) -> None:
    backend = pair
    await backend.append_messages(ns, "c", [{"m": "1"}, {"m": "2"}])
    await backend.replace_conversation(ns, "c", [{"m": "3"}, {"m": "4"}])
    await drain(backend, ns)  # the secondary holds revision 1
    while await backend.pop_message(ns, "c") is not None:
        pass
    await drain(backend, ns)

    want = [(1, [{"m": "1"}, {"m": "2"}])]
    assert await revisions(backend.primary, ns, "c") == want
    assert await revisions(backend.secondary, ns, "c") == want
    assert await backend.secondary.load_messages(ns, "c") == []

    # a delete still erases them on both sides
    await backend.replace_conversation(ns, "c", [{"m": "5"}])
    await backend.delete_conversation(ns, "c")
    await drain(backend, ns)
    assert await revisions(backend.primary, ns, "c") == []
    assert await revisions(backend.secondary, ns, "c") == []


class _PurgeFailsOnce(EmbeddedMemoryBackend):
    """A secondary whose first purge fails with an error that is not a memstore one."""

    failed = False

    async def purge_history(self, namespace: str) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("disk full")
        return await super().purge_history(namespace)


async def test_an_erase_the_secondary_failed_is_recorded_and_reaches_it_later(
    tmp_path: Path, ns: str
) -> None:
    settings = Settings(memory_type="embedded", data_path=tmp_path / "p.db", replication_batch=1)
    secondary = _PurgeFailsOnce(settings.model_copy(update={"data_path": tmp_path / "s.db"}))
    backend = await _open(
        ReplicatedMemoryBackend(settings, EmbeddedMemoryBackend(settings), secondary)
    )
    try:
        await backend.save_entity(ns, "doc", "d", {"secret": f"d1 {SECRET}"})
        await backend.save_entity(ns, "doc", "d", {"secret": "d2"})
        await drain(backend, ns)
        assert holds_secret(await history(backend.secondary, ns))

        assert await backend.purge_history(ns) == 1
        assert secondary.failed
        assert await backend.erase_pending(ns) is True
        assert holds_secret(await history(backend.secondary, ns))  # not erased yet

        await drain(backend, ns)
        assert await backend.erase_pending(ns) is False
        want = await history(backend.primary, ns)
        assert want == {"doc/d": [(2, False, {"secret": "d2"})]}
        assert await history(backend.secondary, ns) == want
    finally:
        await backend.close()

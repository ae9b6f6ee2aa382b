"""The embedded backend's own change-log behaviour, beyond the contract every backend passes
(test_changes.py): expiries, the background round's retention, restarts and rollbacks."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator

import pytest

from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.core import changes
from memstore.core.changes import Actor, acting_as
from memstore.core.errors import BackendUnavailableError
from memstore.core.records import ToolUsageRecord
from memstore.core.settings import Settings


@pytest.fixture
async def embedded(embedded_settings: Settings) -> AsyncIterator[EmbeddedMemoryBackend]:
    backend = EmbeddedMemoryBackend(embedded_settings)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


async def kinds(backend: EmbeddedMemoryBackend, ns: str) -> list[tuple[int, str, str | None]]:
    page = await backend.read_changes(ns, after=0, limit=1000)
    return [(e.position, e.kind, e.entity_id or e.conversation_id) for e in page.events]


async def test_the_purge_logs_each_expired_entity_in_its_namespace(
    embedded: EmbeddedMemoryBackend,
) -> None:
    await embedded.save_entity("a", "note", "short", {"n": 1}, ttl=0.05)
    await embedded.save_entity("a", "note", "short", {"n": 2}, ttl=0.05)
    await embedded.save_entity("a", "note", "kept", {"n": 3})
    await embedded.save_entity("b", "note", "other", {"n": 4}, ttl=0.05)
    await asyncio.sleep(0.1)
    with acting_as(Actor(name="someone", address="10.1.1.1")):
        assert await embedded.purge_expired() == 2
    page = await embedded.read_changes("a", after=0, limit=10)
    expired = page.events[-1]
    assert (expired.position, expired.kind, expired.entity_type, expired.entity_id) == (
        4,
        changes.ENTITY_EXPIRED,
        "note",
        "short",
    )
    assert expired.version == 2  # the version that expired
    assert await kinds(embedded, "b") == [
        (1, changes.ENTITY_SAVED, "other"),
        (2, changes.ENTITY_EXPIRED, "other"),
    ]
    assert await embedded.purge_expired() == 0
    assert (await embedded.read_changes("a", after=0, limit=10)).last_position == 4


async def test_an_expired_entity_deleted_or_saved_before_the_purge_logs_its_expiry(
    embedded: EmbeddedMemoryBackend,
) -> None:
    await embedded.save_entity("ns", "t", "gone", {}, ttl=0.05)
    await embedded.save_entity("ns", "t", "back", {}, ttl=0.05)
    await asyncio.sleep(0.1)
    assert await embedded.delete_entity("ns", "t", "gone") is False
    record = await embedded.save_entity("ns", "t", "back", {"again": True})
    assert record.version == 2  # a create, numbered on from the expired version
    assert await kinds(embedded, "ns") == [
        (1, changes.ENTITY_SAVED, "gone"),
        (2, changes.ENTITY_SAVED, "back"),
        (3, changes.ENTITY_EXPIRED, "gone"),
        (4, changes.ENTITY_EXPIRED, "back"),
        (5, changes.ENTITY_SAVED, "back"),
    ]
    assert await embedded.purge_expired() == 0  # nothing left to log twice


async def test_the_background_round_trims_every_namespace_that_has_a_log(
    embedded_settings: Settings,
) -> None:
    settings = embedded_settings.model_copy(update={"changes_max_events": 3})
    backend = EmbeddedMemoryBackend(settings)
    await backend.connect()
    try:
        for ns in ("one", "two"):
            for i in range(5):
                await backend.save_entity(ns, "t", f"i{i}", {})
        await backend._background_round()
        for ns in ("one", "two"):
            page = await backend.read_changes(ns, after=0, limit=10)
            assert [e.position for e in page.events] == [3, 4, 5]
            assert (page.first_position, page.last_position) == (3, 5)
    finally:
        await backend.close()


async def test_positions_continue_after_a_restart_on_the_same_file(
    embedded_settings: Settings,
) -> None:
    backend = EmbeddedMemoryBackend(embedded_settings)
    await backend.connect()
    await backend.append_messages("ns", "c", [{"m": 1}])
    await backend.trim_changes("ns")
    await backend.close()
    backend = EmbeddedMemoryBackend(embedded_settings)
    await backend.connect()
    try:
        with acting_as(Actor(name="after-restart")):
            await backend.append_messages("ns", "c", [{"m": 2}])
        page = await backend.read_changes("ns", after=0, limit=10)
        assert [(e.position, e.version, e.actor) for e in page.events] == [
            (1, 1, None),
            (2, 2, "after-restart"),
        ]
    finally:
        await backend.close()


async def test_a_write_that_fails_leaves_no_event(embedded: EmbeddedMemoryBackend) -> None:
    """The event is in the write's transaction: when the write's last statement fails,
    neither the data nor the event is there."""
    await embedded.save_entity("ns", "t", "x", {"v": 1})
    assert embedded._writer is not None
    # A trigger standing in for a write the disk refuses, after the event was inserted.
    await embedded._writer.call(
        lambda conn: conn.execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON messages "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    )
    with pytest.raises(BackendUnavailableError):
        await embedded.append_messages("ns", "c", [{"m": 1}])
    assert await embedded.load_messages("ns", "c") == []
    assert await kinds(embedded, "ns") == [(1, changes.ENTITY_SAVED, "x")]
    await embedded._writer.call(lambda conn: conn.execute("DROP TRIGGER refuse"))
    await embedded.append_messages("ns", "c", [{"m": 1}])
    assert await kinds(embedded, "ns") == [
        (1, changes.ENTITY_SAVED, "x"),
        (2, changes.CONVERSATION_APPENDED, "c"),
    ]


async def test_a_tool_use_that_fails_leaves_no_event(embedded: EmbeddedMemoryBackend) -> None:
    """A tool use and its event are one statement: the record failing undoes the event."""
    assert embedded._writer is not None
    await embedded._writer.call(
        lambda conn: conn.execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON tool_usage "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
    )
    record = ToolUsageRecord("u1", "search", {}, None, 1.0, True, time.time())
    with pytest.raises(BackendUnavailableError):
        await embedded.record_tool_usage("ns", record)
    assert await kinds(embedded, "ns") == []
    await embedded._writer.call(lambda conn: conn.execute("DROP TRIGGER refuse"))
    await embedded.record_tool_usage("ns", record)
    page = await embedded.read_changes("ns", after=0, limit=10)
    assert [(e.position, e.kind, e.record_id) for e in page.events] == [
        (1, changes.TOOL_USAGE_RECORDED, "u1")
    ]


def test_the_log_holds_no_payload(embedded_settings: Settings) -> None:
    async def write() -> None:
        backend = EmbeddedMemoryBackend(embedded_settings)
        await backend.connect()
        try:
            await backend.save_entity("ns", "t", "x", {"secret": "PAYLOAD-MARKER"})
            await backend.append_messages("ns", "c", [{"content": "PAYLOAD-MARKER"}])
        finally:
            await backend.close()

    asyncio.run(write())
    with sqlite3.connect(embedded_settings.data_path) as db:
        rows = db.execute("SELECT * FROM change_log").fetchall()
    assert len(rows) == 2
    assert "PAYLOAD-MARKER" not in repr(rows)

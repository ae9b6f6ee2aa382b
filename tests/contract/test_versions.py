"""Version history on every backend (``backends/base.py``, "Version history").

Entities keep every replaced version and a tombstone per delete, numbering never restarts;
conversations keep what a replace replaced as revisions; retention trims history with a
controllable ``now``; ``purge_history`` erases it. The same tests run through the at-rest
wrapper (``embedded_sealed``) and the replicated wrapper (``embedded_replicated``: its
primary and secondary both embedded), whose secondary must end with the same history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.common import history_order
from memstore.backends.embedded import EmbeddedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.replicated import ReplicatedMemoryBackend
from memstore.core import changes
from memstore.core.changes import Actor, acting_as
from memstore.core.errors import ConflictError, InvalidInputError
from memstore.core.payload_codec import new_kek_line
from memstore.core.records import (
    ConversationRevision,
    EntityRecord,
    EntityVersion,
    MessageRecord,
)
from memstore.core.retention import Cutoffs, RetentionPolicy
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.contract.conftest import CONTRACT_BACKENDS

HOUR = 3600.0
WRAPPED = ["embedded_sealed", "embedded_replicated"]


def _settings(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if name == "embedded_sealed":
        kek = tmp_path / "kek"
        kek.write_text(new_kek_line("k1") + "\n")
        return Settings(
            memory_type="embedded",
            data_path=tmp_path / "sealed.db",
            compression_min_bytes=64,
            encryption_key_file=kek,
        )
    if name == "embedded_replicated":
        return Settings(
            memory_type="embedded",
            data_path=tmp_path / "primary.db",
            secondary_backend="embedded",
            replication_poll_seconds=0.02,
        )
    settings: Settings = request.getfixturevalue(f"{name}_settings")
    return settings


def _build(settings: Settings, tmp_path: Path) -> DistributedMemoryBackend:
    if settings.memory_type == "embedded" and settings.secondary_backend == "embedded":
        # two embedded stores: the factory's secondary settings come from the environment
        alone = settings.model_copy(update={"secondary_backend": None})
        secondary = alone.model_copy(update={"data_path": tmp_path / "secondary.db"})
        return ReplicatedMemoryBackend(
            settings, EmbeddedMemoryBackend(alone), EmbeddedMemoryBackend(secondary)
        )
    return DistributedMemoryFactory.create_memory_backend(settings)


@pytest.fixture(params=CONTRACT_BACKENDS + WRAPPED)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DistributedMemoryBackend]:
    instance = _build(_settings(str(request.param), request, tmp_path), tmp_path)
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture(params=["embedded_replicated", "redis_to_mongodb"])
async def replicated(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ReplicatedMemoryBackend]:
    instance = _build(_settings(str(request.param), request, tmp_path), tmp_path)
    assert isinstance(instance, ReplicatedMemoryBackend)
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def ns() -> str:
    return f"v{uuid.uuid4().hex[:12]}"


async def _tick() -> float:
    """An instant strictly between what was written before and what is written after."""
    await asyncio.sleep(0.01)
    mark = time.time()
    await asyncio.sleep(0.01)
    return mark


async def _all_versions(
    backend: DistributedMemoryBackend, ns: str, t: str, i: str, page: int = 3
) -> list[EntityVersion]:
    out: list[EntityVersion] = []
    cursor: str | None = None
    while True:
        got = await backend.list_entity_versions(ns, t, i, cursor=cursor, limit=page)
        assert len(got.items) <= page
        out += got.items
        cursor = got.next_cursor
        if cursor is None:
            return out


def _shape(versions: list[EntityVersion]) -> list[tuple[int, bool]]:
    return [(v.version, v.deleted) for v in versions]


async def test_acceptance_as_of_revert_delete_recreate(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    saved: list[EntityRecord] = []
    between_3_and_4 = 0.0
    for n in range(1, 6):
        if n == 4:
            between_3_and_4 = await _tick()
        saved.append(await backend.save_entity(ns, "note", "n", {"n": n, "text": f"v{n}"}))
    assert [r.version for r in saved] == [1, 2, 3, 4, 5]

    versions = await _all_versions(backend, ns, "note", "n")
    assert _shape(versions) == [(5, False), (4, False), (3, False), (2, False), (1, False)]
    for v, record in zip(versions, reversed(saved), strict=True):
        assert v.data == record.data
        assert v.saved_at == pytest.approx(record.updated_at, abs=1e-3)
        assert v.type == "note" and v.id == "n" and v.actor is None

    as_of_2 = await backend.load_entity_version(ns, "note", "n", version=2)
    assert as_of_2 is not None and as_of_2.data == {"n": 2, "text": "v2"} and not as_of_2.deleted
    at_time = await backend.load_entity_version(ns, "note", "n", at=between_3_and_4)
    assert at_time is not None and at_time.version == 3 and at_time.data == {"n": 3, "text": "v3"}
    assert await backend.load_entity_version(ns, "note", "n", version=99) is None
    before_all = saved[0].updated_at - 10
    assert await backend.load_entity_version(ns, "note", "n", at=before_all) is None
    assert await backend.load_entity_version(ns, "note", "n", at=time.time() + 60) == versions[0]
    with pytest.raises(InvalidInputError):
        await backend.load_entity_version(ns, "note", "n")
    with pytest.raises(InvalidInputError):
        await backend.load_entity_version(ns, "note", "n", version=2, at=time.time())

    # a revert is a save of the old data: a new version, history never rewritten
    assert as_of_2.data is not None
    reverted = await backend.save_entity(ns, "note", "n", as_of_2.data, expected_version=5)
    assert reverted.version == 6 and reverted.data == as_of_2.data

    assert await backend.delete_entity(ns, "note", "n", expected_version=6)
    after_delete = await _tick()
    assert await backend.load_entity(ns, "note", "n") is None
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "note", "n", {"stale": True}, expected_version=1)
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "note", "n", {"stale": True}, expected_version=6)
    recreated = await backend.save_entity(ns, "note", "n", {"n": 7}, expected_version=0)
    assert recreated.version == 7
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "note", "n", {"stale": True}, expected_version=1)
    with pytest.raises(ConflictError):
        await backend.delete_entity(ns, "note", "n", expected_version=1)

    versions = await _all_versions(backend, ns, "note", "n")
    assert _shape(versions) == [
        (7, False),
        (6, True),
        (6, False),
        (5, False),
        (4, False),
        (3, False),
        (2, False),
        (1, False),
    ]
    tombstone = versions[1]
    assert tombstone.data is None and tombstone.saved_at <= after_delete
    assert versions[2].data == {"n": 2, "text": "v2"}
    # ``version`` names a live version, never the tombstone; ``at`` sees the delete
    six = await backend.load_entity_version(ns, "note", "n", version=6)
    assert six is not None and not six.deleted and six.data == {"n": 2, "text": "v2"}
    at_delete = await backend.load_entity_version(ns, "note", "n", at=after_delete)
    assert at_delete is not None and at_delete.deleted and at_delete.version == 6
    assert at_delete.data is None


async def test_actor_of_each_version(backend: DistributedMemoryBackend, ns: str) -> None:
    with acting_as(Actor("alice", "10.0.0.1")):
        await backend.save_entity(ns, "doc", "d", {"x": 1})
    with acting_as(Actor("bob", "10.0.0.2")):
        await backend.save_entity(ns, "doc", "d", {"x": 2})
    with acting_as(Actor("carol")):
        await backend.delete_entity(ns, "doc", "d")
    await backend.save_entity(ns, "doc", "d", {"x": 3})
    versions = await _all_versions(backend, ns, "doc", "d")
    assert [(v.version, v.deleted, v.actor) for v in versions] == [
        (3, False, None),
        (2, True, "carol"),
        (2, False, "bob"),
        (1, False, "alice"),
    ]


async def test_long_non_ascii_actor_in_every_header_reader(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    # the actor is part of each stored row's header (Redis: "<version>|...|<actor JSON>\n"
    # before the payload); a name of more than 511 bytes (here 1,203: two-byte letters)
    # must be read whole by every script that parses a header: save over it, load, the
    # listings and counts, history reads, the byte counters, retention and the purge
    long_name = "ci-" + "é" * 600
    control = f"{ns}c"
    for target, actor in ((ns, Actor(long_name)), (control, None)):
        with acting_as(actor):
            await backend.save_entity(target, "doc", "d", {"n": 1, "text": "é"})
            await backend.save_entity(target, "doc", "d", {"n": 2, "text": "é"})
            await backend.save_entity(target, "doc", "gone", {"n": 0})
            await backend.delete_entity(target, "doc", "gone")
            await backend.save_entity(target, "doc", "imp", {"n": 1})
            # an import over the row moves it to history: its header is read
            now = time.time()
            await backend.import_entity(target, EntityRecord("doc", "imp", {"n": 2}, 2, now, now))
    between = await _tick()
    with acting_as(Actor(long_name)):
        await backend.save_entity(ns, "doc", "d", {"n": 3, "text": "é"}, expected_version=2)

    loaded = await backend.load_entity(ns, "doc", "d")
    assert loaded is not None and loaded.version == 3 and loaded.data == {"n": 3, "text": "é"}
    assert [e.id for e in (await backend.list_entities(ns, "doc", limit=10)).items] == [
        "d",
        "imp",
    ]
    assert (await backend.summary(ns)).entity_counts == {"doc": 2}
    imported = await _all_versions(backend, ns, "doc", "imp")
    assert [(v.version, v.actor) for v in imported] == [(2, long_name), (1, long_name)]
    versions = await _all_versions(backend, ns, "doc", "d")
    assert [(v.version, v.actor, v.data) for v in versions] == [
        (3, long_name, {"n": 3, "text": "é"}),
        (2, long_name, {"n": 2, "text": "é"}),
        (1, long_name, {"n": 1, "text": "é"}),
    ]
    at = await backend.load_entity_version(ns, "doc", "d", at=between)
    assert at is not None and at.version == 2 and at.actor == long_name
    gone = await _all_versions(backend, ns, "doc", "gone")
    assert [(v.version, v.deleted, v.actor) for v in gone] == [
        (1, True, long_name),
        (1, False, long_name),
    ]
    # the byte counters count payloads only: the same data without the actor weighs the same
    await backend.save_entity(control, "doc", "d", {"n": 3, "text": "é"}, expected_version=2)
    assert await backend.logical_bytes(ns) == await backend.logical_bytes(control)
    assert await backend.stored_bytes(ns) == await backend.stored_bytes(control)
    pinned = await backend.set_entity_pinned(ns, "doc", "d", True)
    assert pinned is not None and pinned.version == 3
    keep_one = Cutoffs(versions_keep=1)
    dry = await backend.prune(ns, keep_one, time.time(), dry_run=True, limit=50)
    assert [(v.id, v.version) for v in dry.versions] == [("d", 1), ("gone", 1)]
    done = await backend.prune(ns, keep_one, time.time(), dry_run=False, limit=50)
    assert done.versions == dry.versions
    # an entity pruned for its age: the scan and the prune read its header
    await backend.set_entity_pinned(ns, "doc", "d", False)
    aged = await backend.prune(
        ns, Cutoffs(entity_saved_before=time.time() + 60), time.time(), dry_run=False, limit=50
    )
    assert [(e.id, e.version) for e in aged.entities] == [("d", 3), ("imp", 2)]
    assert await backend.load_entity(ns, "doc", "d") is None
    assert await backend.purge_history(ns) == 4  # d: 3 and 2, imp: 2 and 1 (below tombstones)
    assert _shape(await _all_versions(backend, ns, "doc", "d")) == [(3, True)]


async def test_versions_page_without_repeats(backend: DistributedMemoryBackend, ns: str) -> None:
    for n in range(23):
        await backend.save_entity(ns, "log", "l", {"n": n})
    await backend.delete_entity(ns, "log", "l")
    await backend.save_entity(ns, "log", "l", {"n": "again"})
    first = await backend.list_entity_versions(ns, "log", "l", limit=10)
    assert len(first.items) == 10 and first.next_cursor is not None
    assert _shape(first.items)[:3] == [(24, False), (23, True), (23, False)]
    walked = await _all_versions(backend, ns, "log", "l", page=4)
    assert _shape(walked) == [(24, False), (23, True)] + [(n, False) for n in range(23, 0, -1)]
    assert walked[:10] == first.items
    # an unknown key, another key and another namespace have none
    assert (await backend.list_entity_versions(ns, "log", "other")).items == []
    assert (await backend.list_entity_versions(f"{ns}x", "log", "l")).items == []
    with pytest.raises(InvalidInputError):
        await backend.list_entity_versions(ns, "log", "l", cursor="bm90LWEtY3Vyc29y", limit=5)


async def test_expired_entity_stays_in_history_and_numbering_continues(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    first = await backend.save_entity(ns, "session", "s", {"x": 1}, ttl=0.2)
    await asyncio.sleep(0.4)
    assert await backend.load_entity(ns, "session", "s") is None
    again = await backend.save_entity(ns, "session", "s", {"x": 2}, expected_version=0)
    assert again.version == 2 and again.expires_at is None
    versions = await _all_versions(backend, ns, "session", "s")
    assert _shape(versions) == [(2, False), (1, False)]
    assert versions[1].data == {"x": 1}
    assert versions[1].expires_at == pytest.approx(first.expires_at, abs=1e-3)


async def test_list_versioned_entities_one_row_per_key(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "a", "1", {"k": "a1"})
    await backend.save_entity(ns, "a", "1", {"k": "a1b"})
    await backend.save_entity(ns, "a", "2", {"k": "a2"})
    await backend.delete_entity(ns, "a", "2")
    await backend.save_entity(ns, "b", "1", {"k": "b1"})
    await backend.save_entity(f"{ns}x", "a", "0", {"k": "elsewhere"})
    rows: list[EntityVersion] = []
    cursor: str | None = None
    while True:
        page = await backend.list_versioned_entities(ns, cursor=cursor, limit=2)
        rows += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [(r.type, r.id, r.version, r.deleted) for r in rows] == [
        ("a", "1", 2, False),
        ("a", "2", 1, True),
        ("b", "1", 1, False),
    ]
    assert rows[0].data == {"k": "a1b"}


async def test_history_rows_append_no_events(backend: DistributedMemoryBackend, ns: str) -> None:
    await backend.save_entity(ns, "t", "e", {"v": 1})
    await backend.save_entity(ns, "t", "e", {"v": 2})
    await backend.delete_entity(ns, "t", "e")
    page = await backend.read_changes(ns, after=0, limit=100)
    assert [e.kind for e in page.events] == [
        changes.ENTITY_SAVED,
        changes.ENTITY_SAVED,
        changes.ENTITY_DELETED,
    ]
    versions = await _all_versions(backend, ns, "t", "e")
    await backend.import_entity_versions(f"{ns}x", versions)
    assert (await backend.read_changes(f"{ns}x", after=0, limit=100)).events == []


async def test_import_entity_moves_the_current_row_to_history(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "doc", "d", {"v": 1})
    now = time.time()
    imported = EntityRecord("doc", "d", {"v": "imported"}, 3, now - 50.0, now - 5.0, None)
    await backend.import_entity(ns, imported)
    await backend.import_entity(ns, imported)  # the same version again: no new history row
    versions = await _all_versions(backend, ns, "doc", "d")
    assert _shape(versions) == [(3, False), (1, False)]
    assert versions[0].data == {"v": "imported"}
    assert versions[0].saved_at == pytest.approx(now - 5.0, abs=1e-3)
    assert versions[1].data == {"v": 1}


def _assert_consistent(versions: list[EntityVersion]) -> None:
    """Newest first, no (version, kind) twice, no tombstone ahead of a live higher row."""
    order = [history_order(v) for v in versions]
    assert order == sorted(set(order), reverse=True)


@pytest.mark.parametrize("deleted", [True, False], ids=["after_delete", "over_current"])
async def test_import_of_an_older_version_rewinds_the_key(
    backend: DistributedMemoryBackend, ns: str, deleted: bool
) -> None:
    """A restore of an older dump (v1 over v1..v3, deleted or not): the key is as it was at
    v1, and saves number on from there without a clash with the rewound rows."""
    for n in range(1, 4):
        await backend.save_entity(ns, "doc", "d", {"n": n})
    if deleted:
        await backend.delete_entity(ns, "doc", "d")
    now = time.time()
    dump = EntityRecord("doc", "d", {"n": "dump-v1"}, 1, now - 100.0, now - 100.0, None)
    with acting_as(Actor("restorer")):
        await backend.import_entity(ns, dump)
    loaded = await backend.load_entity(ns, "doc", "d")
    assert loaded is not None and (loaded.version, loaded.data) == (1, {"n": "dump-v1"})
    rows = await _all_versions(backend, ns, "doc", "d")
    assert [(v.version, v.deleted, v.data, v.actor) for v in rows] == [
        (1, False, {"n": "dump-v1"}, "restorer")
    ]
    page = await backend.list_versioned_entities(ns)
    assert [(r.id, r.version, r.deleted) for r in page.items] == [("d", 1, False)]
    # the restored object is version 1: a condition on it holds, numbering goes on from it
    saved = await backend.save_entity(ns, "doc", "d", {"n": "after"}, expected_version=1)
    assert saved.version == 2
    again = await backend.save_entity(ns, "doc", "d", {"n": "after2"})
    assert again.version == 3
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "doc", "d", {"n": "stale"}, expected_version=2)
    rows = await _all_versions(backend, ns, "doc", "d")
    _assert_consistent(rows)
    assert [(v.version, v.deleted, v.data) for v in rows] == [
        (3, False, {"n": "after2"}),
        (2, False, {"n": "after"}),
        (1, False, {"n": "dump-v1"}),
    ]
    two = await backend.load_entity_version(ns, "doc", "d", version=2)
    assert two is not None and two.data == {"n": "after"}
    # a delete and a re-create go on as ever
    assert await backend.delete_entity(ns, "doc", "d", expected_version=3)
    recreated = await backend.save_entity(ns, "doc", "d", {"n": 4}, expected_version=0)
    assert recreated.version == 4
    rows = await _all_versions(backend, ns, "doc", "d")
    _assert_consistent(rows)
    assert _shape(rows) == [(4, False), (3, True), (3, False), (2, False), (1, False)]


async def test_save_over_a_history_row_of_the_current_version(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    """A history row already holding the current version's number (an import of history
    rows may write one) is replaced by the version a save moves there; the save succeeds."""
    await backend.save_entity(ns, "doc", "d", {"n": 1})
    current = await backend.save_entity(ns, "doc", "d", {"n": 2})
    stray = EntityVersion("doc", "d", 2, {"n": "stray"}, current.updated_at - 1.0, "x")
    await backend.import_entity_versions(ns, [stray])
    assert (await backend.save_entity(ns, "doc", "d", {"n": 3}, expected_version=2)).version == 3
    rows = await _all_versions(backend, ns, "doc", "d")
    _assert_consistent(rows)
    assert [(v.version, v.data) for v in rows] == [(3, {"n": 3}), (2, {"n": 2}), (1, {"n": 1})]
    assert rows[1].saved_at == pytest.approx(current.updated_at, abs=1e-3)


async def test_import_rewinds_to_a_middle_version(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    """Rows below the imported version stay; the replaced row (newer) and every row from
    the imported version on go."""
    for n in range(1, 4):
        await backend.save_entity(ns, "doc", "d", {"n": n})
    await backend.delete_entity(ns, "doc", "d")
    await backend.save_entity(ns, "doc", "d", {"n": 4}, expected_version=0)
    now = time.time()
    await backend.import_entity(
        ns, EntityRecord("doc", "d", {"n": "dump-v2"}, 2, now - 9.0, now - 5.0, None)
    )
    rows = await _all_versions(backend, ns, "doc", "d")
    assert [(v.version, v.deleted, v.data) for v in rows] == [
        (2, False, {"n": "dump-v2"}),
        (1, False, {"n": 1}),
    ]
    assert (await backend.save_entity(ns, "doc", "d", {"n": 5})).version == 3
    # a later version imported over it moves it into history (replication's case)
    await backend.import_entity(
        ns, EntityRecord("doc", "d", {"n": "v7"}, 7, now - 9.0, now - 1.0, None)
    )
    rows = await _all_versions(backend, ns, "doc", "d")
    _assert_consistent(rows)
    assert [(v.version, v.data) for v in rows] == [
        (7, {"n": "v7"}),
        (3, {"n": 5}),
        (2, {"n": "dump-v2"}),
        (1, {"n": 1}),
    ]


async def test_import_entity_versions_round_trip(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    with acting_as(Actor("writer")):
        for n in range(1, 4):
            await backend.save_entity(ns, "doc", "d", {"n": n, "deep": {"$k": [n, None]}})
        await backend.delete_entity(ns, "doc", "d")
        current = await backend.save_entity(ns, "doc", "d", {"n": 4})
    source = await _all_versions(backend, ns, "doc", "d")
    target = f"{ns}t"
    # the current row by import_entity (written by the importing actor), the history by
    # import_entity_versions (exactly as given)
    with acting_as(Actor("writer")):
        await backend.import_entity(target, current)
    await backend.import_entity_versions(target, source[1:])
    assert await _all_versions(backend, target, "doc", "d") == source
    # a row of a version already stored is replaced, never doubled
    changed = EntityVersion("doc", "d", 2, {"n": "two"}, source[3].saved_at, "restorer")
    await backend.import_entity_versions(target, [changed])
    again = await _all_versions(backend, target, "doc", "d")
    assert _shape(again) == _shape(source)
    assert again[3] == changed
    # a key with history only (deleted) is a versioned entity of the target too
    gone = [
        EntityVersion("doc", "gone", 1, {"g": 1}, 1000.0, None),
        EntityVersion("doc", "gone", 1, None, 2000.0, "x", deleted=True),
    ]
    await backend.import_entity_versions(target, gone)
    page = await backend.list_versioned_entities(target)
    assert [(r.id, r.version, r.deleted) for r in page.items] == [
        ("d", 4, False),
        ("gone", 1, True),
    ]
    assert await backend.load_entity(target, "doc", "gone") is None
    recreated = await backend.save_entity(target, "doc", "gone", {"g": 2}, expected_version=0)
    assert recreated.version == 2


async def test_conversation_replace_keeps_a_revision(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    # replacing an absent conversation makes no revision
    await backend.replace_conversation(ns, "c", [{"role": "user", "content": "first"}])
    assert (await backend.list_conversation_revisions(ns, "c")).items == []
    await backend.append_messages(ns, "c", [{"role": "assistant", "content": "x"}, {"n": 3}])
    before = await backend.load_messages(ns, "c")
    assert [m.seq for m in before] == [1, 2, 3]
    replaced_after = time.time()
    with acting_as(Actor("alice")):
        await backend.replace_conversation(ns, "c", [{"role": "user", "content": "rewritten"}])
    page = await backend.list_conversation_revisions(ns, "c")
    assert len(page.items) == 1
    rev = page.items[0]
    assert (rev.conversation_id, rev.revision, rev.message_count, rev.actor) == ("c", 1, 3, "alice")
    assert rev.replaced_at >= replaced_after - 1
    loaded = await backend.load_conversation_revision(ns, "c", 1)
    assert loaded is not None
    assert loaded[0] == rev
    assert [(m.seq, m.message) for m in loaded[1]] == [(m.seq, m.message) for m in before]
    for got, was in zip(loaded[1], before, strict=True):
        assert got.created_at == pytest.approx(was.created_at, abs=1e-3)
    # the live conversation is the new history
    assert [m.message for m in await backend.load_messages(ns, "c")] == [
        {"role": "user", "content": "rewritten"}
    ]
    # an empty replacement still keeps what it replaced; replacing the empty one keeps none
    await backend.replace_conversation(ns, "c", [])
    await backend.replace_conversation(ns, "c", [{"n": "after empty"}])
    await backend.replace_conversation(ns, "c", [{"n": "third"}])
    revisions = (await backend.list_conversation_revisions(ns, "c")).items
    assert [(r.revision, r.message_count) for r in revisions] == [(3, 1), (2, 1), (1, 3)]
    assert await backend.load_conversation_revision(ns, "c", 9) is None
    assert (await backend.list_conversation_revisions(f"{ns}x", "c")).items == []
    # a restore (manager level) is a replace with the revision's messages
    one = await backend.load_conversation_revision(ns, "c", 1)
    assert one is not None
    restored = await backend.replace_conversation(ns, "c", [m.message for m in one[1]])
    assert [m.message for m in restored] == [m.message for m in before]
    assert (await backend.list_conversation_revisions(ns, "c", limit=1)).items[0].revision == 4
    # delete erases the revisions too
    assert await backend.delete_conversation(ns, "c")
    assert (await backend.list_conversation_revisions(ns, "c")).items == []
    assert await backend.load_conversation_revision(ns, "c", 1) is None


@pytest.fixture(params=CONTRACT_BACKENDS + WRAPPED)
async def memory(
    request: pytest.FixtureRequest, tmp_path: Path, ns: str
) -> AsyncIterator[DistributedMemoryManager]:
    settings = _settings(str(request.param), request, tmp_path)
    backend = _build(settings, tmp_path)
    async with DistributedMemoryManager(settings=settings, namespace=ns, backend=backend) as m:
        yield m


async def test_manager_replace_with_nothing_keeps_a_revision(
    memory: DistributedMemoryManager,
) -> None:
    # Through the manager (the API and HTTP path) a replace with [] is a replace like any
    # other: the replaced messages stay restorable; only delete erases.
    await memory.append_messages([{"n": 1}, {"n": 2}], "c")
    assert await memory.save_conversation_history([], "c") == []
    assert await memory.load_messages("c") == []
    listed = await memory.list_conversations()
    assert [(c.conversation_id, c.message_count) for c in listed.items] == [("c", 0)]
    revisions = (await memory.list_conversation_revisions("c")).items
    assert [(r.revision, r.message_count) for r in revisions] == [(1, 2)]
    restored = await memory.restore_conversation_revision(1, "c")
    assert [m.message for m in restored] == [{"n": 1}, {"n": 2}]
    assert [m.message for m in await memory.load_messages("c")] == [{"n": 1}, {"n": 2}]
    # the restore replaced an empty history: no revision of it
    revisions = (await memory.list_conversation_revisions("c")).items
    assert [(r.revision, r.message_count) for r in revisions] == [(1, 2)]
    # an explicit delete erases the conversation and its revisions
    assert await memory.delete_conversation("c") is True
    assert (await memory.list_conversation_revisions("c")).items == []
    assert (await memory.list_conversations()).items == []


async def test_conversation_revisions_page(backend: DistributedMemoryBackend, ns: str) -> None:
    for n in range(7):
        await backend.replace_conversation(ns, "c", [{"n": n}, {"n": n, "second": True}])
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page = await backend.list_conversation_revisions(ns, "c", cursor=cursor, limit=4)
        assert len(page.items) <= 4
        seen += [r.revision for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [6, 5, 4, 3, 2, 1]


async def test_import_conversation_revision_round_trip(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.append_messages(ns, "c", [{"a": 1}, {"b": "ü 日本"}])
    await backend.replace_conversation(ns, "c", [{"c": 3}])
    source = await backend.load_conversation_revision(ns, "c", 1)
    assert source is not None
    target = f"{ns}t"
    await backend.import_conversation_revision(target, source[0], source[1])
    assert await backend.load_conversation_revision(target, "c", 1) == source
    assert (await backend.list_conversation_revisions(target, "c")).items == [source[0]]
    # the live conversation is untouched (the target has none)
    assert await backend.load_messages(target, "c") == []
    replaced = ConversationRevision("c", 1, 1234.5, 1, "restorer")
    message = MessageRecord("ignored", 5, {"only": True}, 1200.25)
    await backend.import_conversation_revision(target, replaced, [message])
    got = await backend.load_conversation_revision(target, "c", 1)
    assert got is not None and got[0] == replaced
    assert got[1] == [MessageRecord("c", 5, {"only": True}, 1200.25)]
    assert (await backend.read_changes(target, after=0, limit=10)).events == []


async def test_retention_trims_versions_dry_run_then_enforce(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for n in range(1, 6):
        await backend.save_entity(ns, "a", "1", {"n": n})  # history 4..1
    for n in range(1, 3):
        await backend.save_entity(ns, "b", "1", {"n": n})  # history 1
    await backend.save_entity(ns, "c", "1", {"n": 1})
    await backend.save_entity(ns, "c", "1", {"n": 2})
    await backend.delete_entity(ns, "c", "1")  # history: tombstone 2, 2, 1
    for n in range(4):
        await backend.replace_conversation(ns, "conv", [{"n": n}])  # revisions 3..1
    keep_two = Cutoffs(versions_keep=2)
    now = time.time()
    dry = await backend.prune(ns, keep_two, now, dry_run=True, limit=50)
    expected = [
        ("a", "1", 1, False, "max_versions"),
        ("a", "1", 2, False, "max_versions"),
        ("c", "1", 1, False, "max_versions"),
        (None, "conv", 1, False, "max_versions"),
    ]
    # entity rows by (type, id, version, deleted), then revisions by (id, revision)
    assert [(v.type, v.id, v.version, v.deleted, v.reason) for v in dry.versions] == expected
    assert dry.more["versions"] is False
    assert dry.entities == [] and dry.conversations == []
    # bounded pages name the same rows in the same order
    first = await backend.prune(ns, keep_two, now, dry_run=True, limit=2)
    assert first.versions == dry.versions[:2] and first.more["versions"] is True
    done = await backend.prune(ns, keep_two, now, dry_run=False, limit=50)
    assert done.versions == dry.versions
    assert _shape(await _all_versions(backend, ns, "a", "1")) == [
        (5, False),
        (4, False),
        (3, False),
    ]
    assert _shape(await _all_versions(backend, ns, "c", "1")) == [(2, True), (2, False)]
    revisions = (await backend.list_conversation_revisions(ns, "conv")).items
    assert [r.revision for r in revisions] == [3, 2]
    assert (await backend.prune(ns, keep_two, now, dry_run=True, limit=50)).versions == []
    # nothing of the trim is in the change log
    kinds = {e.kind for e in (await backend.read_changes(ns, after=0, limit=1000)).events}
    assert not kinds & {changes.ENTITY_PRUNED, changes.CONVERSATION_PRUNED}


async def test_retention_ages_versions_with_a_later_now(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for n in range(1, 4):
        await backend.save_entity(ns, "a", "1", {"n": n})
    await backend.save_entity(ns, "d", "1", {"n": 1})
    await backend.delete_entity(ns, "d", "1")
    await backend.replace_conversation(ns, "conv", [{"n": 0}])
    await backend.replace_conversation(ns, "conv", [{"n": 1}])
    await backend.replace_conversation(ns, "conv", [{"n": 2}])  # revisions 2, 1
    old = await _tick()
    await backend.save_entity(ns, "a", "1", {"n": 4})  # v3 becomes history now: young
    policy = RetentionPolicy(versions_max_age_seconds=HOUR)
    cutoffs = policy.cutoffs(old + HOUR)
    assert cutoffs == Cutoffs(versions_saved_before=old)
    # v3 was saved (saved_at) before ``old`` too: history rows age by when they were written
    dry = await backend.prune(ns, cutoffs, old + HOUR, dry_run=True, limit=50)
    assert [(v.type, v.id, v.version, v.deleted, v.reason) for v in dry.versions] == [
        ("a", "1", 1, False, "max_age"),
        ("a", "1", 2, False, "max_age"),
        ("a", "1", 3, False, "max_age"),
        ("d", "1", 1, False, "max_age"),
        (None, "conv", 1, False, "max_age"),
    ]
    # at the real time nothing is old enough
    assert (
        await backend.prune(ns, policy.cutoffs(old), old, dry_run=True, limit=50)
    ).versions == []
    done = await backend.prune(ns, cutoffs, old + HOUR, dry_run=False, limit=50)
    assert done.versions == dry.versions
    assert _shape(await _all_versions(backend, ns, "a", "1")) == [(4, False)]
    # the deleted key keeps its tombstone, which holds the numbering
    assert _shape(await _all_versions(backend, ns, "d", "1")) == [(1, True)]
    assert (await backend.save_entity(ns, "d", "1", {"n": 2})).version == 2
    assert [r.revision for r in (await backend.list_conversation_revisions(ns, "conv")).items] == [
        2
    ]
    await backend.replace_conversation(ns, "conv", [{"n": 3}])
    assert (await backend.list_conversation_revisions(ns, "conv", limit=1)).items[0].revision == 3


async def test_pruned_entity_leaves_a_retention_tombstone(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    await backend.save_entity(ns, "a", "1", {"n": 1})
    await backend.save_entity(ns, "a", "1", {"n": 2})
    await backend.save_entity(ns, "a", "p", {"n": 1})
    await backend.set_entity_pinned(ns, "a", "p", True)
    await backend.save_entity(ns, "a", "p", {"n": 2})
    old = await _tick()
    report = await backend.prune(ns, Cutoffs(entity_saved_before=old), old, dry_run=False, limit=50)
    assert [(e.id, e.version) for e in report.entities] == [("1", 2)]
    assert report.versions == []
    versions = await _all_versions(backend, ns, "a", "1")
    assert _shape(versions) == [(2, True), (2, False), (1, False)]
    assert versions[0].actor == changes.RETENTION_ACTOR and versions[1].data == {"n": 2}
    # the pinned entity stays, its history is trimmed all the same; the tombstone stays
    trim = await backend.prune(ns, Cutoffs(versions_keep=0), old, dry_run=False, limit=50)
    assert [(v.id, v.version, v.deleted) for v in trim.versions] == [
        ("1", 1, False),
        ("1", 2, False),
        ("p", 1, False),
    ]
    assert _shape(await _all_versions(backend, ns, "a", "1")) == [(2, True)]
    assert _shape(await _all_versions(backend, ns, "a", "p")) == [(2, False)]
    with pytest.raises(ConflictError):
        await backend.save_entity(ns, "a", "1", {"n": "stale"}, expected_version=1)
    assert (await backend.save_entity(ns, "a", "1", {"n": 3}, expected_version=0)).version == 3


async def test_purge_history_erases_all_but_the_numbering(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    for n in range(1, 4):
        await backend.save_entity(ns, "a", "1", {"n": n, "secret": "s3cr3t"})
    await backend.save_entity(ns, "b", "1", {"n": 1})
    await backend.save_entity(ns, "b", "1", {"n": 2})
    await backend.delete_entity(ns, "b", "1")
    await backend.append_messages(ns, "conv", [{"m": 1}])
    await backend.replace_conversation(ns, "conv", [{"m": 2}])
    other = f"{ns}x"
    await backend.save_entity(other, "a", "1", {"n": 1})
    await backend.save_entity(other, "a", "1", {"n": 2})

    removed = await backend.purge_history(ns)
    # a: v2, v1; b: v2, v1 (its tombstone stays); one revision
    assert removed == 5
    assert _shape(await _all_versions(backend, ns, "a", "1")) == [(3, False)]
    b_rows = await _all_versions(backend, ns, "b", "1")
    assert _shape(b_rows) == [(2, True)] and b_rows[0].data is None
    assert (await backend.list_conversation_revisions(ns, "conv")).items == []
    assert await backend.load_conversation_revision(ns, "conv", 1) is None
    # live data is untouched, numbering continues, the other namespace keeps its history
    loaded = await backend.load_entity(ns, "a", "1")
    assert loaded is not None and loaded.version == 3
    assert [m.message for m in await backend.load_messages(ns, "conv")] == [{"m": 2}]
    assert (await backend.save_entity(ns, "b", "1", {"n": 3}, expected_version=0)).version == 3
    assert _shape(await _all_versions(backend, other, "a", "1")) == [(2, False), (1, False)]
    assert await backend.purge_history(ns) == 1  # b's tombstone, now that b lives again


async def test_replication_copies_history(replicated: ReplicatedMemoryBackend, ns: str) -> None:
    """Through the replicated wrapper, the secondary ends with the primary's history."""
    backend = replicated
    with acting_as(Actor("alice")):
        for n in range(1, 4):
            await backend.save_entity(ns, "doc", "d", {"n": n})
        await backend.delete_entity(ns, "doc", "d")
        await backend.save_entity(ns, "doc", "d", {"n": 4})
        await backend.append_messages(ns, "c", [{"m": 1}])
        await backend.replace_conversation(ns, "c", [{"m": 2}])
        await backend.replace_conversation(ns, "c", [{"m": 3}])
    want = await _all_versions(backend.primary, ns, "doc", "d")
    want_revs = (await backend.primary.list_conversation_revisions(ns, "c")).items

    async def same() -> bool:
        got = await _all_versions(backend.secondary, ns, "doc", "d")
        revs = (await backend.secondary.list_conversation_revisions(ns, "c")).items
        return got == want and revs == want_revs

    for _ in range(500):
        if await same():
            break
        await asyncio.sleep(0.02)
    assert await _all_versions(backend.secondary, ns, "doc", "d") == want
    assert (await backend.secondary.list_conversation_revisions(ns, "c")).items == want_revs
    one = await backend.secondary.load_conversation_revision(ns, "c", 1)
    assert one is not None and [m.message for m in one[1]] == [{"m": 1}]


async def test_replication_follows_a_rewind(replicated: ReplicatedMemoryBackend, ns: str) -> None:
    """An import of an older version on the primary (a restore) rewinds the secondary's
    history the same way."""
    backend = replicated
    for n in range(1, 4):
        await backend.save_entity(ns, "doc", "d", {"n": n})
    await backend.delete_entity(ns, "doc", "d")
    now = time.time()
    await backend.import_entity(
        ns, EntityRecord("doc", "d", {"n": "dump-v1"}, 1, now - 100.0, now - 100.0, None)
    )
    await backend.save_entity(ns, "doc", "d", {"n": "after"}, expected_version=1)
    want = await _all_versions(backend.primary, ns, "doc", "d")
    assert [(v.version, v.data) for v in want] == [(2, {"n": "after"}), (1, {"n": "dump-v1"})]
    for _ in range(500):
        if await _all_versions(backend.secondary, ns, "doc", "d") == want:
            break
        await asyncio.sleep(0.02)
    assert await _all_versions(backend.secondary, ns, "doc", "d") == want


async def test_delete_history_rows_removes_exactly_those(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    """``delete_entity_versions`` / ``delete_conversation_revisions`` (what the replication
    uses to make a copy's history the source's): the named rows go, nothing else, never
    the current row; rows not stored are ignored."""
    for n in range(1, 4):
        await backend.save_entity(ns, "doc", "d", {"n": n})
    await backend.delete_entity(ns, "doc", "d")
    await backend.save_entity(ns, "doc", "d", {"n": 4})
    await backend.save_entity(ns, "doc", "other", {"n": 1})
    await backend.save_entity(ns, "doc", "other", {"n": 2})
    before = _shape(await _all_versions(backend, ns, "doc", "d"))
    assert before == [(4, False), (3, True), (3, False), (2, False), (1, False)]
    # the tombstone of 3 and version 2; (9, False) is not stored; (4, False) is current
    removed = await backend.delete_entity_versions(
        ns, "doc", "d", [(3, True), (2, False), (9, False), (4, False)]
    )
    assert removed == 2
    assert _shape(await _all_versions(backend, ns, "doc", "d")) == [
        (4, False),
        (3, False),
        (1, False),
    ]
    assert (await backend.load_entity(ns, "doc", "d")).data == {"n": 4}  # type: ignore[union-attr]
    assert await backend.load_entity_version(ns, "doc", "d", version=2) is None
    assert _shape(await _all_versions(backend, ns, "doc", "other")) == [(2, False), (1, False)]
    assert await backend.delete_entity_versions(ns, "doc", "d", []) == 0
    # numbering goes on from the highest version recorded
    assert (await backend.save_entity(ns, "doc", "d", {"n": 5})).version == 5

    await backend.append_messages(ns, "c", [{"m": 1}])
    for m in range(2, 5):
        await backend.replace_conversation(ns, "c", [{"m": m}])
    await backend.replace_conversation(ns, "keep", [{"m": 1}])
    await backend.replace_conversation(ns, "keep", [{"m": 2}])
    assert await backend.delete_conversation_revisions(ns, "c", [1, 3, 7]) == 2
    left = (await backend.list_conversation_revisions(ns, "c")).items
    assert [r.revision for r in left] == [2]
    assert await backend.load_conversation_revision(ns, "c", 1) is None
    two = await backend.load_conversation_revision(ns, "c", 2)
    assert two is not None and [m.message for m in two[1]] == [{"m": 2}]
    assert [m.message for m in await backend.load_messages(ns, "c")] == [{"m": 4}]
    assert [r.revision for r in (await backend.list_conversation_revisions(ns, "keep")).items] == [
        1
    ]
    assert await backend.delete_conversation_revisions(ns, "c", []) == 0

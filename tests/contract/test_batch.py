"""Batch writes (``save_entities``, ``append_messages_batch``) on every backend.

Each item gets what a single write gets (version, history row, change event, logical
bytes); the atomicity is each backend's as documented (docs/architecture.md, "Batch
writes"): all or nothing on the embedded backend, each item by itself elsewhere, with the
conflict error listing what was written anyway.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.sealed import SealedBackend
from memstore.core import changes
from memstore.core.errors import ConflictError, InvalidInputError, PayloadTooLargeError
from memstore.core.payload_codec import is_envelope, new_kek_line
from memstore.core.records import EntityWrite, MessagesWrite
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager


@pytest.fixture
def ns() -> str:
    return f"b{uuid.uuid4().hex[:12]}"


def all_or_nothing(settings: Settings) -> bool:
    """Whether the store's batches are one transaction (the embedded backend serving)."""
    return settings.memory_type == "embedded"


async def test_every_item_is_saved_with_its_event_and_history(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    old = await backend.save_entity(ns, "note", "a", {"v": 1})
    before = await backend.logical_bytes(ns)
    records = await backend.save_entities(
        ns,
        [
            EntityWrite("note", "a", {"v": 2}, expected_version=1),
            EntityWrite("note", "b", {"v": "b"}, expected_version=0, ttl=3600),
            EntityWrite("user", "c", {"name": "c"}),
        ],
    )
    assert [(r.type, r.id, r.version) for r in records] == [
        ("note", "a", 2),
        ("note", "b", 1),
        ("user", "c", 1),
    ]
    assert records[0].created_at == old.created_at < records[0].updated_at
    assert records[1].expires_at is not None
    for record in records:
        assert await backend.load_entity(ns, record.type, record.id) == record
    page = await backend.read_changes(ns, after=0, limit=10)
    saved = [(e.kind, e.entity_type, e.entity_id, e.version) for e in page.events]
    assert saved == [
        (changes.ENTITY_SAVED, "note", "a", 1),
        (changes.ENTITY_SAVED, "note", "a", 2),
        (changes.ENTITY_SAVED, "note", "b", 1),
        (changes.ENTITY_SAVED, "user", "c", 1),
    ]
    versions = await backend.list_entity_versions(ns, "note", "a")
    assert [(v.version, v.data) for v in versions.items] == [(2, {"v": 2}), (1, {"v": 1})]
    after = await backend.logical_bytes(ns)
    if before is not None:
        assert after is not None and after > before
    assert (await backend.summary(ns)).total_entities == 3


async def test_a_conflict_is_named_and_writes_as_documented(
    backend: DistributedMemoryBackend, backend_settings: Settings, ns: str
) -> None:
    await backend.save_entity(ns, "note", "a", {"v": 1})
    with pytest.raises(ConflictError) as failed:
        await backend.save_entities(
            ns,
            [
                EntityWrite("note", "b", {"v": "b"}),
                EntityWrite("note", "a", {"v": 2}, expected_version=5),
                EntityWrite("note", "c", {"v": "c"}, expected_version=0),
            ],
        )
    details = failed.value.details
    assert details["item"] == 1
    assert details["items"] == [1]
    assert failed.value.current_version == 1
    assert "item 1" in failed.value.message
    assert (await backend.load_entity(ns, "note", "a")).data == {"v": 1}  # type: ignore[union-attr]
    events = (await backend.read_changes(ns, after=0, limit=10)).events
    if all_or_nothing(backend_settings):
        assert details["written"] == details["versions"] == []
        assert await backend.load_entity(ns, "note", "b") is None
        assert await backend.load_entity(ns, "note", "c") is None
        assert len(events) == 1  # the first save only
        assert (await backend.summary(ns)).total_entities == 1
    else:
        assert details["written"] == [0, 2]
        assert details["versions"] == [1, 1]  # what each written item got
        assert (await backend.load_entity(ns, "note", "b")).data == {"v": "b"}  # type: ignore[union-attr]
        assert (await backend.load_entity(ns, "note", "c")).data == {"v": "c"}  # type: ignore[union-attr]
        assert sorted(e.entity_id or "" for e in events) == ["a", "b", "c"]


async def test_appends_to_several_conversations(backend: DistributedMemoryBackend, ns: str) -> None:
    await backend.append_messages(ns, "one", [{"m": 0}])
    results = await backend.append_messages_batch(
        ns,
        [
            MessagesWrite("one", [{"m": 1}, {"m": 2}]),
            MessagesWrite("two", [{"m": "x"}]),
        ],
    )
    assert [[(r.conversation_id, r.seq) for r in rs] for rs in results] == [
        [("one", 2), ("one", 3)],
        [("two", 1)],
    ]
    assert [m.message for m in await backend.load_messages(ns, "one")] == [
        {"m": 0},
        {"m": 1},
        {"m": 2},
    ]
    events = (await backend.read_changes(ns, after=0, limit=10)).events
    assert [(e.kind, e.conversation_id, e.version, e.count) for e in events] == [
        (changes.CONVERSATION_APPENDED, "one", 1, 1),
        (changes.CONVERSATION_APPENDED, "one", 3, 2),
        (changes.CONVERSATION_APPENDED, "two", 1, 1),
    ]


@pytest.fixture
async def sealed(backend_settings: Settings, tmp_path: Path) -> AsyncIterator[SealedBackend]:
    kek = tmp_path / "kek"
    kek.write_text(new_kek_line("k1") + "\n")
    settings = backend_settings.model_copy(
        update={"encryption_key_file": kek, "compression_min_bytes": 512}
    )
    store = DistributedMemoryFactory.create_memory_backend(settings)
    assert isinstance(store, SealedBackend)
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def test_sealed_batches_seal_every_value(sealed: SealedBackend, ns: str) -> None:
    records = await sealed.save_entities(
        ns, [EntityWrite("note", "a", {"secret": "a"}), EntityWrite("note", "b", {"s": "b"})]
    )
    assert [r.data for r in records] == [{"secret": "a"}, {"s": "b"}]
    assert (await sealed.load_entity(ns, "note", "a")).data == {"secret": "a"}  # type: ignore[union-attr]
    raw = await sealed.inner.load_entity(ns, "note", "b")
    assert raw is not None and is_envelope(raw.data)
    appended = await sealed.append_messages_batch(ns, [MessagesWrite("c", [{"text": "hi"}])])
    assert appended[0][0].message == {"text": "hi"}
    assert [m.message for m in await sealed.load_messages(ns, "c")] == [{"text": "hi"}]
    stored = await sealed.inner.load_messages(ns, "c")
    assert is_envelope(stored[0].message)


async def test_the_manager_checks_every_item_before_writing(
    backend_settings: Settings, ns: str
) -> None:
    settings = backend_settings.model_copy(update={"max_body_bytes": 2048})
    async with DistributedMemoryManager(settings=settings, namespace=ns) as memory:
        ok = EntityWrite("note", "a", {})
        bad_items: list[tuple[EntityWrite, type[InvalidInputError], str]] = [
            (EntityWrite("no/te", "b", {}), InvalidInputError, "entity_type"),
            (EntityWrite("note", "a", {}), InvalidInputError, "items"),
            (EntityWrite("note", "b", {"x": "y" * 4096}), PayloadTooLargeError, "data"),
            (EntityWrite("note", "b", {}, ttl=-1), InvalidInputError, "ttl"),
        ]
        for bad, error, field in bad_items:
            with pytest.raises(error) as refused:
                await memory.save_entities([ok, bad])
            assert refused.value.details["item"] == 1
            assert refused.value.details["field"] == field
            assert refused.value.message.startswith("item 1: ")
        with pytest.raises(InvalidInputError) as empty:
            await memory.append_messages_batch(
                [MessagesWrite("c1", [{"m": 1}]), MessagesWrite("c2", [])]
            )
        assert empty.value.details["item"] == 1
        with pytest.raises(InvalidInputError):
            await memory.save_entities([])
        assert await memory.get_entity("note", "a") is None
        assert await memory.load_messages("c1") == []
        assert (await memory.backend.read_changes(ns, after=0, limit=5)).events == []
        # and a good batch through the manager: the cache sees the new versions
        await memory.save_entity("note", "a", {"v": 1})
        assert (await memory.get_entity("note", "a")).version == 1  # type: ignore[union-attr]
        saved = await memory.save_entities([EntityWrite("note", "a", {"v": 2})])
        assert (await memory.get_entity("note", "a")) == saved[0]


async def test_an_embedded_batch_in_a_group_fails_alone(embedded_settings: Settings) -> None:
    """A batch that conflicts while other writes share its group transaction: its
    savepoint undoes all of its items, the others commit."""
    store = DistributedMemoryFactory.create_memory_backend(embedded_settings)
    await store.connect()
    try:
        ns = "group"
        await store.save_entity(ns, "note", "a", {"v": 1})
        writes = [
            store.save_entity(ns, "single", f"s{i}", {"i": i}) for i in range(10)
        ]  # queued behind the first, then committed as groups
        batch = store.save_entities(
            ns,
            [EntityWrite("note", f"b{i}", {}) for i in range(5)]
            + [EntityWrite("note", "a", {}, expected_version=0)],
        )
        good = store.save_entities(ns, [EntityWrite("note", "c", {}), EntityWrite("note", "d", {})])
        outcomes = await asyncio.gather(*writes, batch, good, return_exceptions=True)
        singles, failed, saved = outcomes[:-2], outcomes[-2], outcomes[-1]
        assert all(not isinstance(s, BaseException) for s in singles), singles
        assert isinstance(failed, ConflictError)
        assert failed.details["item"] == 5
        assert failed.details["written"] == []
        assert isinstance(saved, list)
        assert [r.id for r in saved] == ["c", "d"]
        for i in range(5):
            assert await store.load_entity(ns, "note", f"b{i}") is None
        events = (await store.read_changes(ns, after=0, limit=100)).events
        assert sorted(e.entity_id or "" for e in events) == sorted(
            ["a", "c", "d", *(f"s{i}" for i in range(10))]
        )
    finally:
        await store.close()

"""The old release's data, opened with compression and encryption at rest turned on: plain
payloads read as before, new writes are sealed next to them, and both read back."""

from __future__ import annotations

from pathlib import Path

import orjson

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.sealed import SealedBackend, build_sealed
from memstore.core.payload_codec import ENVELOPE_KEY, new_kek_line
from memstore.core.records import FeedbackRecord, ToolUsageRecord
from tests.migration.dataset import NAMESPACES, read_everything
from tests.migration.test_old_format import EXPECTED
from tests.migration.test_old_format import old_store as old_store_fixture
from tests.migration.test_old_format import test_writes_carry_on_from_old_data as writes_carry_on

# The old release's stores, loaded raw into fresh servers (the same fixture, by its name).
old_store = old_store_fixture


def sealed(backend: DistributedMemoryBackend, tmp_path: Path) -> SealedBackend:
    key_file = tmp_path / "keys"
    key_file.write_text(new_kek_line("k1") + "\n")
    settings = backend.settings.model_copy(
        update={"compression_min_bytes": 64, "encryption_key_file": key_file}
    )
    wrapped = build_sealed(backend, settings)
    assert isinstance(wrapped, SealedBackend)
    return wrapped


async def test_old_data_reads_as_before_with_at_rest_on(
    old_store: tuple[str, DistributedMemoryBackend], tmp_path: Path
) -> None:
    kind, backend = old_store
    wrapped = sealed(backend, tmp_path)
    assert await read_everything(wrapped) == EXPECTED[kind]
    for ns in NAMESPACES:
        # Plain payloads as written are what is stored (MongoDB: documents without "lbytes")
        logical = await wrapped.logical_bytes(ns)
        assert logical is not None and logical > 0
        assert logical == await wrapped.stored_bytes(ns)


async def test_writes_carry_on_sealed_next_to_old_plain_data(
    old_store: tuple[str, DistributedMemoryBackend], tmp_path: Path
) -> None:
    kind, backend = old_store
    wrapped = sealed(backend, tmp_path)
    await writes_carry_on((kind, wrapped))
    for ns in NAMESPACES:
        raw = await backend.load_entity(ns, "user", "u0")  # the wrapped backend's own view
        assert raw is not None and set(raw.data) == {ENVELOPE_KEY}
        everything = await read_everything(wrapped)
        assert everything[ns]["entities"] != []


def _size(value: object) -> int:
    return len(orjson.dumps(value))


async def test_logical_bytes_count_old_data_and_the_writes_made_before_the_first_count(
    old_store: tuple[str, DistributedMemoryBackend], tmp_path: Path
) -> None:
    """Old data counts as stored (it is plain), through sealed writes that replace, delete,
    pop and add to it before anything has counted the logical bytes (Redis: the first
    count backfills each shard's counter once), and the counts go on exact after it."""
    _, backend = old_store
    wrapped = sealed(backend, tmp_path)
    big = {"results": [{"i": i, "text": f"item {i} of the upgrade"} for i in range(200)]}
    for ns in NAMESPACES:
        old = await wrapped.stored_bytes(ns)
        assert old is not None and old > 0
        u0 = await wrapped.load_entity(ns, "user", "u0")
        u1 = await wrapped.load_entity(ns, "user", "u1")
        assert u0 is not None and u1 is not None
        await wrapped.save_entity(ns, "user", "u0", big)
        assert await wrapped.delete_entity(ns, "user", "u1")
        popped = await wrapped.pop_message(ns, "c3")
        assert popped is not None
        await wrapped.append_messages(ns, "c1", [big])
        use = ToolUsageRecord("up", "search", {"q": "upgrade"}, big, 1.0, True, 1.0e9)
        await wrapped.record_tool_usage(ns, use)
        await wrapped.save_feedback(ns, FeedbackRecord("up", "agent", "note", big, 1.0e9))
        removed = _size(u0.data) + _size(u1.data) + _size(popped.message)
        added = 4 * _size(big) + _size(use.input)
        expected = old - removed + added
        assert await wrapped.logical_bytes(ns) == expected
        stored = await wrapped.stored_bytes(ns)
        assert stored is not None and stored < expected
        # counted again: the same; a later write moves it by its own size
        assert await wrapped.logical_bytes(ns) == expected
        await wrapped.save_entity(ns, "user", "u0", {"small": True})
        assert await wrapped.logical_bytes(ns) == expected - _size(big) + _size({"small": True})

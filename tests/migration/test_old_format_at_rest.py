"""The old release's data, opened with compression and encryption at rest turned on: plain
payloads read as before, new writes are sealed next to them, and both read back."""

from __future__ import annotations

from pathlib import Path

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.sealed import SealedBackend, build_sealed
from memstore.core.payload_codec import ENVELOPE_KEY, new_kek_line
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

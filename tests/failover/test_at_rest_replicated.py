"""Encryption at rest with a secondary backend: the sealing wraps the replication once
(``DistributedMemoryFactory``), so the manager's key administration finds it, shredding
reaches every copy, and the replicator copies ciphertext without opening it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from memstore.backends.replicated import ReplicatedMemoryBackend
from memstore.backends.sealed import DATA_KEY_TYPE, KEYS_NAMESPACE, SealedBackend
from memstore.core.errors import DataShreddedError
from memstore.core.payload_codec import ENVELOPE_KEY, new_kek_line
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager, backend_layer
from tests.failover.conftest import wait_replicated


@pytest.fixture
def sealed_replicated(
    replicated_settings: Callable[..., Settings], tmp_path: Path
) -> Callable[..., Settings]:
    kek = tmp_path / "kek"
    kek.write_text(new_kek_line("k1") + "\n")

    def build(**overrides: Any) -> Settings:
        # A long key cache: a key this process still holds must not outlive a shred.
        return replicated_settings(
            encryption_key_file=kek, data_key_cache_seconds=300.0, **overrides
        )

    return build


@pytest.fixture
async def managers() -> AsyncIterator[Callable[[Settings], Any]]:
    opened: list[DistributedMemoryManager] = []

    async def open_manager(settings: Settings) -> DistributedMemoryManager:
        manager = DistributedMemoryManager(settings=settings)
        await manager.start()
        opened.append(manager)
        return manager

    yield open_manager
    for manager in opened:
        await manager.close()


def layers(manager: DistributedMemoryManager) -> tuple[SealedBackend, ReplicatedMemoryBackend]:
    sealed = backend_layer(manager.backend, SealedBackend)
    replicated = backend_layer(manager.backend, ReplicatedMemoryBackend)
    assert sealed is not None and replicated is not None
    return sealed, replicated


async def test_key_administration_finds_the_sealing_above_the_replication(
    sealed_replicated: Callable[..., Settings], managers: Callable[[Settings], Any]
) -> None:
    manager: DistributedMemoryManager = await managers(sealed_replicated())
    name = f"a{uuid.uuid4().hex[:8]}"
    memory = manager.for_namespace(name)
    await memory.save_entity("profile", "p", {"secret": "s"})
    got = await memory.get_entity("profile", "p", use_cache=False)  # the key is now cached
    assert got is not None and got.data == {"secret": "s"}
    assert manager.replication_status() is not None

    assert name in {k["namespace"] for k in await manager.list_data_keys()}
    rotated = await manager.rotate_data_keys()
    assert rotated["kek_id"] == "k1" and rotated["unchanged"] >= 1

    _, replicated = layers(manager)
    # The key and the entity live in two namespaces, replicated one after the other: only
    # the replicator's position in each says both are on the secondary.
    await wait_replicated(replicated, [KEYS_NAMESPACE, name])
    # The wrapped key reached the secondary as it is stored.
    wrapped = await replicated.secondary.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, name)
    assert wrapped == await replicated.primary.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, name)
    assert wrapped is not None
    copy = await replicated.secondary.load_entity(name, "profile", "p")
    assert copy is not None and ENVELOPE_KEY in copy.data  # ciphertext, copied unopened

    assert (await memory.shred_data_key())["shredded"] is True
    with pytest.raises(DataShreddedError):
        await memory.get_entity("profile", "p", use_cache=False)
    # The deletion of the key replicates: the secondary's copy is unreadable too.
    await wait_replicated(replicated, [KEYS_NAMESPACE, name])
    assert await replicated.secondary.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, name) is None
    assert await replicated.secondary.load_entity(name, "profile", "p") == copy


async def test_a_shredded_namespace_does_not_stop_the_replication(
    sealed_replicated: Callable[..., Settings], managers: Callable[[Settings], Any]
) -> None:
    """Events of a namespace whose key is gone, not yet replicated, then writes to
    another namespace: these still reach the secondary."""
    settings = sealed_replicated()
    shredded, other = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    # Written and shredded on the primary alone: the replication starts from their events.
    alone: DistributedMemoryManager = await managers(
        settings.model_copy(update={"secondary_backend": None})
    )
    await alone.for_namespace(shredded).save_entity("profile", "p", {"secret": "s"})
    await alone.for_namespace(shredded).shred_data_key()
    await alone.close()

    manager: DistributedMemoryManager = await managers(settings)
    await manager.for_namespace(other).save_entity("profile", "p", {"n": 1})
    replicated = backend_layer(manager.backend, ReplicatedMemoryBackend)
    assert replicated is not None

    await wait_replicated(replicated, [KEYS_NAMESPACE, shredded, other])
    assert await replicated.secondary.load_entity(other, "profile", "p") is not None
    assert await replicated.secondary.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, shredded) is None

"""Crypto-shredding reaches another replica through the invalidation bus at once, even
when that replica would keep the data key cached for an hour."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.sealed import SealedBackend
from memstore.core.errors import DataShreddedError
from memstore.core.payload_codec import new_kek_line
from memstore.core.settings import Settings


@pytest.mark.parametrize("fixture", ["redis_settings", "redis_cluster_settings"])
async def test_a_shred_reaches_the_other_replica_on_the_bus(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(new_kek_line("k1") + "\n")
    settings: Settings = request.getfixturevalue(fixture).model_copy(
        update={"encryption_key_file": key_file, "data_key_cache_seconds": 3600.0}
    )
    writer = DistributedMemoryFactory.create_memory_backend(settings)
    replica = DistributedMemoryFactory.create_memory_backend(settings)
    assert isinstance(writer, SealedBackend) and isinstance(replica, SealedBackend)
    dropped: list[str | None] = []

    async def on_invalidation(key: str | None) -> None:
        dropped.append(key)

    await writer.connect()
    await replica.connect()
    try:
        await replica.subscribe_invalidations(on_invalidation)
        await writer.save_entity("tenant", "doc", "d1", {"secret": "s"})
        loaded = await replica.load_entity("tenant", "doc", "d1")  # caches the key for 1 h
        assert loaded is not None and loaded.data == {"secret": "s"}

        await writer.shred_data_key("tenant")
        deadline = time.monotonic() + 10
        while None not in dropped:  # the replica's caches were told to drop everything
            assert time.monotonic() < deadline, dropped
            await asyncio.sleep(0.02)
        with pytest.raises(DataShreddedError):
            await replica.load_entity("tenant", "doc", "d1")
    finally:
        await writer.close()
        await replica.close()

"""The seed document's example, unchanged except for ``memory_type`` (and the data path,
so the test does not write into the working directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memstore.memory.manager import DistributedMemoryManager


async def test_seed_example_runs_on_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded default file lands in ./memstore-data/

    # --- from the seed, memory_type changed from "redis" to "embedded" ---
    memory_manager = DistributedMemoryManager(
        memory_type="embedded", config={}, namespace="example"
    )

    await memory_manager.save_entity(
        "user",
        "user123",
        {
            "name": "John Doe",
            "email": "john@example.com",
            "preferences": {"theme": "dark", "language": "en"},
        },
    )
    user = await memory_manager.load_entity("user", "user123")
    await memory_manager.delete_entity("user", "user123")
    summary = await memory_manager.get_memory_summary()
    # --- end of the seed's example ---

    assert user == {
        "name": "John Doe",
        "email": "john@example.com",
        "preferences": {"theme": "dark", "language": "en"},
    }
    assert await memory_manager.load_entity("user", "user123") is None
    assert "# Memory summary: `example`" in summary
    assert "## Entities" in summary
    assert (tmp_path / "memstore-data" / "memstore.db").exists()
    await memory_manager.close()


def test_seed_config_keys_are_accepted() -> None:
    redis = DistributedMemoryManager(
        memory_type="redis",
        config={"host": "cache", "port": 6380, "db": 2, "password": "pw", "prefix": "datamcp:"},
        namespace="example",
    ).settings
    assert (redis.redis_host, redis.redis_port, redis.redis_db) == ("cache", 6380, 2)
    assert redis.redis_password is not None
    assert redis.redis_password.get_secret_value() == "pw"
    assert "pw" not in repr(redis)
    assert redis.effective_redis_prefix == "datamcp:"
    default_prefix = DistributedMemoryManager(memory_type="redis", config={}, namespace="ns1")
    assert default_prefix.settings.effective_redis_prefix == "ns1:"
    mongo = DistributedMemoryManager(
        memory_type="mongodb",
        config={"connection_string": "mongodb://u:secret@db:27017/", "database_name": "mem"},
    ).settings
    assert mongo.mongodb_uri.get_secret_value() == "mongodb://u:secret@db:27017/"
    assert mongo.mongodb_db == "mem"
    assert "secret" not in repr(mongo)

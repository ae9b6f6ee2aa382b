"""Data an earlier release stored stays readable and writable, on every backend.

``fixtures/`` holds what main at 0fff600 (before version history, retention, compression
and encryption at rest) left in each store after ``dataset.write_dataset``
(``write_fixtures.py`` says how they were made). Each test loads those raw contents into a
fresh server, opens it with the current code, and checks that every read gives what the
old release read, and that writes carry on from the old state (versions, seqs, change
log positions).
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from bson import json_util
from pymongo import MongoClient

import redis as redis_sync
from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.core.changes import ENTITY_SAVED
from memstore.core.settings import Settings
from tests.migration.dataset import NAMESPACES, read_everything
from tests.servers.redis import LocalCluster, LocalRedis

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, Any] = orjson.loads((FIXTURES / "expected.json").read_bytes())["reads"]


def _unb64(value: str) -> bytes:
    return base64.b64decode(value)


def load_redis(keys: list[dict[str, Any]], prefix: str, client: Any) -> None:
    """Recreate the dumped keys under ``prefix`` (a standalone or a cluster client)."""
    for row in keys:
        name = prefix.encode() + _unb64(row["key"])
        value = row["value"]
        kind = row["type"]
        if kind == "string":
            client.set(name, _unb64(value))
        elif kind == "hash":
            client.hset(name, mapping={_unb64(k): _unb64(v) for k, v in value.items()})
        elif kind == "list":
            client.rpush(name, *[_unb64(v) for v in value])
        elif kind == "set":
            client.sadd(name, *[_unb64(v) for v in value])
        elif kind == "zset":
            client.zadd(name, {_unb64(m): s for m, s in value})
        elif kind == "stream":
            for entry_id, fields in value:
                client.xadd(name, {_unb64(k): _unb64(v) for k, v in fields.items()}, id=entry_id)
        else:
            raise AssertionError(kind)
        if row["pttl"] > 0:
            client.pexpire(name, row["pttl"])


@pytest.fixture(params=["embedded", "redis", "redis_cluster", "mongodb"])
async def old_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, DistributedMemoryBackend]]:
    kind: str = request.param
    settings: Settings
    if kind == "embedded":
        path = tmp_path / "memstore.db"
        shutil.copyfile(FIXTURES / "embedded.db", path)
        settings = Settings(memory_type="embedded", data_path=path)
    elif kind in ("redis", "redis_cluster"):
        settings = request.getfixturevalue(f"{kind}_settings")
        keys = orjson.loads((FIXTURES / "redis.json").read_bytes())
        if kind == "redis":
            server: LocalRedis = request.getfixturevalue("redis_server")
            client: Any = redis_sync.Redis(host="127.0.0.1", port=server.port)
        else:
            cluster: LocalCluster = request.getfixturevalue("redis_cluster")
            host, port = cluster.seed.split(",")[0].split(":")
            client = redis_sync.RedisCluster(host=host, port=int(port))
        load_redis(keys, settings.redis_prefix or "", client)
        client.close()
    else:
        settings = request.getfixturevalue("mongodb_settings")
        collections = json_util.loads((FIXTURES / "mongodb.json").read_text())
        mongo: MongoClient[Any] = MongoClient(request.getfixturevalue("ferretdb").uri)
        db = mongo[settings.mongodb_db]
        for name, docs in collections.items():
            if docs:
                db[name].insert_many(docs)
        mongo.close()
    backend = DistributedMemoryFactory.create_memory_backend(settings)
    await backend.connect()
    try:
        yield ("redis" if kind == "redis_cluster" else kind), backend
    finally:
        await backend.close()


async def test_old_data_reads_as_before(
    old_store: tuple[str, DistributedMemoryBackend],
) -> None:
    kind, backend = old_store
    assert await read_everything(backend) == EXPECTED[kind]


async def test_writes_carry_on_from_old_data(
    old_store: tuple[str, DistributedMemoryBackend],
) -> None:
    kind, backend = old_store
    for ns in NAMESPACES:
        old = EXPECTED[kind][ns]
        u0 = next(e for e in old["entities"] if e["id"] == "u0")
        saved = await backend.save_entity(
            ns, "user", "u0", {"after": "upgrade"}, expected_version=u0["version"]
        )
        assert saved.version == u0["version"] + 1
        assert saved.created_at == u0["created_at"]
        loaded = await backend.load_entity(ns, "user", "u0")
        assert loaded is not None and loaded.data == {"after": "upgrade"}

        c1 = next(c for c in old["conversations"] if c["info"]["conversation_id"] == "c1")
        appended = await backend.append_messages(ns, "c1", [{"role": "user", "content": "new"}])
        assert appended[0].seq == len(c1["messages"]) + 1
        popped = await backend.pop_message(ns, "c3")
        assert popped is not None and popped.seq == 2

        assert await backend.delete_entity(ns, "user", "u1")
        assert await backend.load_entity(ns, "user", "u1") is None

        changes = await backend.read_changes(ns, after=old["changes"]["last_position"], limit=10)
        assert changes.events[0].position == old["changes"]["last_position"] + 1
        assert changes.events[0].kind == ENTITY_SAVED
        assert changes.events[0].entity_id == "u0"

        summary = await backend.summary(ns)
        assert summary.messages == old["summary"]["messages"]  # one appended, one popped
        assert summary.entity_counts["user"] == old["summary"]["entity_counts"]["user"] - 1

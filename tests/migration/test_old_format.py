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
import time
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
from memstore.core.retention import RetentionPolicy
from memstore.core.settings import Settings
from tests.migration.dataset import NAMESPACES, read_everything
from tests.servers.redis import LocalCluster, LocalRedis

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, Any] = orjson.loads((FIXTURES / "expected.json").read_bytes())["reads"]

#: Fields records gained after the fixtures were written, and what old data reads as.
ADDED_ENTITY_FIELDS: dict[str, Any] = {
    "pinned": False,  # retention: nothing written before pins is pinned
}
for _reads in EXPECTED.values():
    for _ns in _reads.values():
        for _entity in _ns["entities"]:
            for _name, _default in ADDED_ENTITY_FIELDS.items():
                _entity.setdefault(_name, _default)


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


async def test_retention_applies_to_old_data(
    old_store: tuple[str, DistributedMemoryBackend],
) -> None:
    """Records written before pins and read times: unpinned, idle since their last save;
    they can be pinned, and a dry run and an enforcement name the same items."""
    kind, backend = old_store
    now = time.time() + 86400
    policy = RetentionPolicy(entity_idle_seconds=1, conversation_max_messages=1)
    for ns in NAMESPACES:
        old = EXPECTED[kind][ns]
        first = old["entities"][0]
        pinned = await backend.set_entity_pinned(ns, first["type"], first["id"], True)
        assert pinned is not None and pinned.pinned and pinned.version == first["version"]
        dry = await backend.prune(ns, policy.cutoffs(now), now, dry_run=True, limit=1000)
        done = await backend.prune(ns, policy.cutoffs(now), now, dry_run=False, limit=1000)
        assert (done.entities, done.conversations) == (dry.entities, dry.conversations)
        expected = sorted(
            (e["type"], e["id"])
            for e in old["entities"][1:]
            if e["expires_at"] is None or e["expires_at"] > now
        )
        assert sorted((e.type, e.id) for e in done.entities) == expected
        for conv in old["conversations"]:
            cid = conv["info"]["conversation_id"]
            left = await backend.load_messages(ns, cid)
            assert [m.seq for m in left] == [conv["messages"][-1]["seq"]]


async def test_version_history_starts_on_old_data(
    old_store: tuple[str, DistributedMemoryBackend],
) -> None:
    """Records written before version history have none: the first save after the upgrade
    keeps the old version (actor unknown), a delete leaves a tombstone, a re-create numbers
    on; a replace keeps the old messages as revision 1."""
    kind, backend = old_store
    for ns in NAMESPACES:
        old = EXPECTED[kind][ns]
        u0 = next(e for e in old["entities"] if e["id"] == "u0")
        before = await backend.list_entity_versions(ns, "user", "u0")
        assert [(v.version, v.data, v.actor) for v in before.items] == [
            (u0["version"], u0["data"], None)
        ]
        await backend.save_entity(ns, "user", "u0", {"after": "upgrade"})
        after = await backend.list_entity_versions(ns, "user", "u0")
        assert [(v.version, v.data) for v in after.items] == [
            (u0["version"] + 1, {"after": "upgrade"}),
            (u0["version"], u0["data"]),
        ]
        assert after.items[1].saved_at == u0["updated_at"]
        assert await backend.delete_entity(ns, "user", "u0")
        again = await backend.save_entity(ns, "user", "u0", {"again": True}, expected_version=0)
        assert again.version == u0["version"] + 2

        c1 = next(c for c in old["conversations"] if c["info"]["conversation_id"] == "c1")
        assert (await backend.list_conversation_revisions(ns, "c1")).items == []
        await backend.replace_conversation(ns, "c1", [{"role": "user", "content": "fresh"}])
        found = await backend.load_conversation_revision(ns, "c1", 1)
        assert found is not None
        assert [(m.seq, m.message) for m in found[1]] == [
            (m["seq"], m["message"]) for m in c1["messages"]
        ]

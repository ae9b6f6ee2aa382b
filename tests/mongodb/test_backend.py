"""MongoDB-specific behaviour, against a real MongoDB-wire server (FerretDB v1, SQLite).

The shared behaviour is in tests/contract (run with backend "mongodb" too). Here: exact
JSON round-trips through the server, size limits enforced before anything is sent, the
commands really sent (shard-key prefix in every filter, write concern), idempotent
start-up, the TTL fallback, error mapping, and the seed-style manager on MongoDB.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pymongo
import pytest
from pymongo import monitoring

from memstore.backends.common import ExpiredEntityPurge
from memstore.backends.mongodb import MongoDBMemoryBackend, schema
from memstore.core.errors import (
    BackendUnavailableError,
    ConflictError,
    MemoryStoreError,
    PayloadTooLargeError,
)
from memstore.core.records import EntityVersion, FeedbackRecord, ToolUsageRecord
from memstore.core.retention import Cutoffs
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from tests.servers.mongodb import FerretDB
from tests.support.procs import free_port

NASTY_KEYS = ["$set", "a.b", "$", ".", "", "\\", "\\e", "\\i", "x\x00y", "$where.$gt", "🧠"]


class Recorder(monitoring.CommandListener):
    """Records every command the driver sends (the real wire traffic, not a mock)."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        names = {"insert", "update", "delete", "findAndModify"}
        return [(n, c) for n, c in self.commands if n in names]


class RecordedMongoDBBackend(MongoDBMemoryBackend):
    """The backend with a PyMongo command listener on its client."""

    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        super().__init__(settings)
        self.recorder = recorder

    def create_client(self, uri: str, options: dict[str, Any]) -> pymongo.AsyncMongoClient[Any]:
        return pymongo.AsyncMongoClient(uri, **options, event_listeners=[self.recorder])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def mongo(
    mongodb_settings: Settings, recorder: Recorder
) -> AsyncIterator[MongoDBMemoryBackend]:
    backend = RecordedMongoDBBackend(mongodb_settings, recorder)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.close()


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 4 and roll < 0.3:
        return {
            rng.choice([*NASTY_KEYS, f"k{rng.randrange(100)}"]): _random_json(rng, depth + 1)
            for _ in range(rng.randrange(5))
        }
    if depth < 4 and roll < 0.45:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return rng.choice(
        [
            None,
            True,
            False,
            0,
            -0.0,
            0.0,
            1.5,
            -(2**63),
            2**63 - 1,
            2**64 - 1,
            2**63,
            rng.uniform(-1e300, 1e300),
            1e-320,
            "",
            "$not.an.operator",
            "\x00 nul",
            "ünïcødé 🧠",
            rng.randrange(-(10**6), 10**6),
        ]
    )


def _same(a: Any, b: Any) -> bool:
    """Exact JSON equality: key order, int vs float, -0.0 all count."""
    return orjson.dumps(a) == orjson.dumps(b)


async def test_arbitrary_json_roundtrips_exactly_through_the_server(
    mongo: MongoDBMemoryBackend,
) -> None:
    rng = random.Random(20261124)
    ns = "rt"
    for i in range(60):
        data = {k: _random_json(rng) for k in rng.sample(NASTY_KEYS, 5)}
        data["n"] = i
        await mongo.save_entity(ns, "doc", f"d{i}", data)
        loaded = await mongo.load_entity(ns, "doc", f"d{i}")
        assert loaded is not None
        assert _same(loaded.data, data), (loaded.data, data)
    listed = await mongo.list_entities(ns, "doc", limit=100)
    assert len(listed.items) == 60

    messages = [{"$role": "user", "content.text": _random_json(rng)} for _ in range(10)]
    await mongo.append_messages(ns, "c", messages)
    got = await mongo.load_messages(ns, "c")
    assert _same([m.message for m in got], messages)

    args, result = {"$query": {"a.b": [1, -0.0]}}, [2**64 - 1, {"": None}]
    record = ToolUsageRecord(uuid.uuid4().hex, "t", args, result, 1.0, True, 1.0)
    await mongo.record_tool_usage(ns, record)
    page = await mongo.query_tool_usage(ns, limit=5)
    assert _same(page.items[0].input, args)
    assert _same(page.items[0].output, result)

    fb = FeedbackRecord(uuid.uuid4().hex, "agent", "rating", {"$gt": {".": 1}}, 2.0)
    await mongo.save_feedback(ns, fb)
    assert (await mongo.query_feedback(ns, limit=5)).items == [fb]


async def test_payloads_are_stored_as_native_documents(
    mongo: MongoDBMemoryBackend, ferretdb: FerretDB, mongodb_database: str
) -> None:
    await mongo.save_entity("raw", "user", "u", {"name": "Ada", "$tag": {"x.y": 1}})
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(ferretdb.uri)
    try:
        doc = client[mongodb_database]["entities"].find_one({"ns": "raw"})
    finally:
        client.close()
    assert doc is not None
    assert doc["data"] == {"name": "Ada", "\\dtag": {"x\\py": 1}}
    assert (doc["type"], doc["id"], doc["version"]) == ("user", "u", 1)


async def test_oversized_payloads_never_reach_the_server(
    mongodb_settings: Settings, recorder: Recorder
) -> None:
    settings = mongodb_settings.model_copy(update={"max_body_bytes": 4096})
    backend = RecordedMongoDBBackend(settings, recorder)
    await backend.connect()
    try:
        big = {"blob": "x" * 5000}
        recorder.commands.clear()
        with pytest.raises(PayloadTooLargeError) as info:
            await backend.save_entity("ns", "t", "big", big)
        assert "4096" in str(info.value)
        with pytest.raises(PayloadTooLargeError):
            await backend.append_messages("ns", "c", [{"m": 1}, big])
        with pytest.raises(PayloadTooLargeError):
            await backend.replace_conversation("ns", "c", [big])
        with pytest.raises(PayloadTooLargeError):
            await backend.record_tool_usage(
                "ns", ToolUsageRecord("u1", "t", big, None, 1.0, True, 1.0)
            )
        with pytest.raises(PayloadTooLargeError):
            await backend.save_feedback("ns", FeedbackRecord("f1", "a", "k", big, 1.0))
        assert recorder.commands == []  # nothing was sent, not even a read
        assert await backend.load_messages("ns", "c") == []
        assert (await backend.summary("ns")).conversations == 0
    finally:
        await backend.close()


async def test_bson_limit_is_checked_before_sending_when_the_service_limit_allows_more(
    mongodb_settings: Settings, recorder: Recorder
) -> None:
    # 3 million one-digit ints: 6 MB of JSON (under a 64 MiB service limit) but ~36 MB of
    # BSON (each array element carries its index as a key), over MongoDB's 16 MiB.
    settings = mongodb_settings.model_copy(update={"max_body_bytes": 64 * 1024 * 1024})
    backend = RecordedMongoDBBackend(settings, recorder)
    await backend.connect()
    try:
        recorder.commands.clear()
        with pytest.raises(PayloadTooLargeError) as info:
            await backend.save_entity("ns", "t", "huge", {"a": [0] * 3_000_000})
        assert "BSON" in str(info.value)
        assert recorder.writes() == []
        # Big but within both limits: stored and read back whole.
        ok = {"a": [7] * 200_000}
        await backend.save_entity("ns", "t", "fits", ok)
        loaded = await backend.load_entity("ns", "t", "fits")
        assert loaded is not None
        assert loaded.data == ok
    finally:
        await backend.close()


def _filters(name: str, command: dict[str, Any]) -> list[dict[str, Any]]:
    if name in ("find", "count"):
        return [command.get("filter") or command.get("query") or {}]
    if name == "aggregate":
        first = command["pipeline"][0]
        return [first.get("$match", {})]
    if name == "update":
        return [u["q"] for u in command["updates"]]
    if name == "delete":
        return [d["q"] for d in command["deletes"]]
    if name == "findAndModify":
        return [command["query"]]
    if name == "insert":
        return list(command["documents"])
    raise AssertionError(f"unexpected command {name}")


async def test_every_command_carries_the_shard_key_prefix(
    mongo: MongoDBMemoryBackend, recorder: Recorder
) -> None:
    recorder.commands.clear()
    ns = "prefix"
    await mongo.save_entity(ns, "t", "a", {"x": 1}, ttl=60)
    await mongo.save_entity(ns, "t", "a", {"x": 2}, expected_version=1)
    await mongo.load_entity(ns, "t", "a")
    await mongo.list_entities(ns, "t", limit=1)
    page = await mongo.list_entities(ns, "t", limit=1)
    await mongo.list_entities(ns, "t", limit=1, cursor=page.next_cursor)
    await mongo.get_entity_types(ns)
    await mongo.delete_entity(ns, "t", "a", expected_version=2)
    await mongo.delete_entity(ns, "t", "a")
    await mongo.append_messages(ns, "c", [{"m": 1}, {"m": 2}])
    await mongo.load_messages(ns, "c")
    await mongo.load_messages(ns, "c", limit=1, before_seq=2)
    await mongo.pop_message(ns, "c")
    await mongo.replace_conversation(ns, "c", [{"m": 3}])
    await mongo.list_conversations(ns, limit=5)
    await mongo.pop_message(ns, "c")
    await mongo.delete_conversation(ns, "c")
    await mongo.record_tool_usage(ns, ToolUsageRecord("u", "t", 1, 2, 1.0, True, 5.0))
    await mongo.query_tool_usage(ns, tool_name="t", start=0, end=10, limit=5)
    await mongo.query_tool_usage(ns, limit=5)
    await mongo.get_tool_names(ns)
    await mongo.save_feedback(ns, FeedbackRecord("f", "a", "k", {}, 1.0))
    await mongo.query_feedback(ns, agent_name="a", limit=5)
    await mongo.summary(ns)
    # version history: every read, write, trim and purge of it
    await mongo.save_entity(ns, "t", "h", {"x": 1})
    await mongo.save_entity(ns, "t", "h", {"x": 2})
    await mongo.delete_entity(ns, "t", "h")
    await mongo.save_entity(ns, "t", "h", {"x": 3})
    versions = await mongo.list_entity_versions(ns, "t", "h", limit=1)
    await mongo.list_entity_versions(ns, "t", "h", cursor=versions.next_cursor, limit=1)
    await mongo.load_entity_version(ns, "t", "h", version=1)
    await mongo.load_entity_version(ns, "t", "h", at=time.time())
    keys = await mongo.list_versioned_entities(ns, limit=1)
    await mongo.list_versioned_entities(ns, cursor=keys.next_cursor, limit=1)
    await mongo.import_entity_versions(ns, versions.items)
    await mongo.append_messages(ns, "r", [{"m": 1}])
    await mongo.replace_conversation(ns, "r", [{"m": 2}])
    await mongo.replace_conversation(ns, "r", [{"m": 3}])
    revisions = await mongo.list_conversation_revisions(ns, "r", limit=1)
    await mongo.list_conversation_revisions(ns, "r", cursor=revisions.next_cursor, limit=1)
    loaded = await mongo.load_conversation_revision(ns, "r", 1)
    assert loaded is not None
    await mongo.import_conversation_revision(ns, *loaded)
    cutoffs = Cutoffs(versions_keep=0, versions_saved_before=time.time())
    await mongo.prune(ns, cutoffs, time.time(), dry_run=False, limit=10)
    await mongo.purge_history(ns)
    await mongo.delete_conversation(ns, "r")

    seen: set[str] = set()
    for name, command in recorder.commands:
        collection = command.get(name)
        if collection not in schema.COLLECTIONS:
            continue  # admin commands (ping, hello, ...)
        seen.add(name)
        for flt in _filters(name, command):
            for field in schema.QUERY_PREFIX[collection]:
                assert isinstance(flt.get(field), str), (name, collection, field, flt)
            assert flt["ns"] == ns
    assert {"find", "aggregate", "update", "delete", "findAndModify", "insert"} <= seen
    # A pop's findAndModify names the whole shard key of messages (MongoDB < 7.1 needs it).
    pops = [c for n, c in recorder.commands if n == "findAndModify" and c[n] == "messages"]
    assert len(pops) == 2
    assert all(isinstance(c["query"].get("seq"), int) for c in pops)


async def test_writes_ask_for_majority_and_journal(
    mongo: MongoDBMemoryBackend, recorder: Recorder
) -> None:
    recorder.commands.clear()
    await mongo.save_entity("wc", "t", "a", {})
    await mongo.save_entity("wc", "t", "a", {})
    await mongo.append_messages("wc", "c", [{}])
    await mongo.record_tool_usage("wc", ToolUsageRecord("u", "t", 1, 2, 1.0, True, 5.0))
    writes = recorder.writes()
    assert {n for n, _ in writes} == {"insert", "update", "findAndModify"}
    for _name, command in writes:
        assert command["writeConcern"] == {"w": "majority", "j": True}


async def test_write_concern_setting_is_applied(
    mongodb_settings: Settings, recorder: Recorder
) -> None:
    settings = mongodb_settings.model_copy(
        update={"mongodb_write_concern": "1", "mongodb_journal": False}
    )
    backend = RecordedMongoDBBackend(settings, recorder)
    await backend.connect()
    try:
        recorder.commands.clear()
        await backend.save_entity("wc", "t", "a", {})
        writes = recorder.writes()
        # the change-log claim, the entity, the event
        assert [(n, c[n]) for n, c in writes] == [
            ("findAndModify", "changes"),
            ("insert", "entities"),
            ("insert", "changes"),
        ]
        for _name, command in writes:
            assert command["writeConcern"] == {"w": 1, "j": False}
    finally:
        await backend.close()


async def test_startup_is_idempotent_and_creates_every_index(
    mongodb_settings: Settings, ferretdb: FerretDB, mongodb_database: str
) -> None:
    # Several replicas starting at once against one new database.
    backends = [MongoDBMemoryBackend(mongodb_settings) for _ in range(3)]
    await asyncio.gather(*(b.connect() for b in backends))
    await backends[0].save_entity("ns", "t", "a", {"v": 1})
    again = MongoDBMemoryBackend(mongodb_settings)
    await again.connect()  # existing collections, indexes and data: still fine
    backends.append(again)
    try:
        loaded = await again.load_entity("ns", "t", "a")
        assert loaded is not None
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(ferretdb.uri)
        try:
            db = client[mongodb_database]
            for collection, specs in schema.index_specs().items():
                info = db[collection].index_information()
                for spec in specs:
                    assert spec["name"] in info
                    assert dict(info[spec["name"]]["key"]) == spec["key"]
                    assert info[spec["name"]].get("unique", False) == spec.get("unique", False)
        finally:
            client.close()
    finally:
        for b in backends:
            await b.close()


async def test_without_ttl_indexes_expired_entities_are_purged(
    mongo: MongoDBMemoryBackend, ferretdb: FerretDB, mongodb_database: str
) -> None:
    # FerretDB v1 has no TTL indexes (documented gap); the backend says so and purges.
    assert mongo.describe()["ttl_index"] is False
    await mongo.save_entity("ttl", "s", "short", {}, ttl=0.2)
    await mongo.save_entity("ttl", "s", "long", {}, ttl=3600)
    await mongo.save_entity("ttl", "s", "forever", {})
    await asyncio.sleep(1.1)  # expire_on is rounded up to the millisecond
    assert await mongo.purge_expired() == 1
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(ferretdb.uri)
    try:
        ids = sorted(d["id"] for d in client[mongodb_database]["entities"].find({"ns": "ttl"}))
    finally:
        client.close()
    assert ids == ["forever", "long"]


async def test_the_purge_task_deletes_expired_entities_and_survives_a_failed_round(
    mongo: MongoDBMemoryBackend, ferretdb: FerretDB, mongodb_database: str
) -> None:
    """The backends' shared purge task, on this backend's purge, at a short interval."""
    rounds: list[int] = []

    async def purge() -> int:
        rounds.append(0)
        if len(rounds) == 1:
            raise BackendUnavailableError("first round fails")
        return await mongo.purge_expired()

    await mongo.save_entity("purge", "s", "short", {}, ttl=0.2)
    await mongo.save_entity("purge", "s", "forever", {})
    await asyncio.sleep(1.1)  # expire_on is rounded up to the millisecond
    task = ExpiredEntityPurge("test", purge, interval=0.05)
    task.start()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(ferretdb.uri)
    try:
        deadline = time.monotonic() + 10
        while True:
            ids = sorted(
                d["id"] for d in client[mongodb_database]["entities"].find({"ns": "purge"})
            )
            if ids == ["forever"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        client.close()
        await task.stop()
    assert ids == ["forever"]
    assert len(rounds) >= 2  # the failed first round did not stop the task
    assert not task.running


async def test_ferretdb_is_detected_and_gets_local_write_locks(
    mongo: MongoDBMemoryBackend,
) -> None:
    facts = mongo.describe()
    assert facts["local_write_locks"] is True  # FerretDB: updates are not atomic
    assert facts["transactions"] is False  # standalone, no multi-document transactions
    assert facts["sharded"] is False


async def test_sharding_setting_without_mongos_leaves_collections_unsharded(
    mongodb_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MongoDBMemoryBackend(mongodb_settings.model_copy(update={"mongodb_sharding": True}))
    await backend.connect()
    try:
        assert backend.describe()["sharded"] is False
        assert "does not point at mongos" in caplog.text
        await backend.save_entity("ns", "t", "a", {})
    finally:
        await backend.close()


async def test_unreachable_server_is_unavailable_and_secret_free() -> None:
    port = free_port()  # nothing listens there
    settings = Settings(
        memory_type="mongodb",
        mongodb_uri=f"mongodb://memuser:s3cr3t-pw@127.0.0.1:{port}/?authSource=admin",
        mongodb_db="x",
        mongodb_server_selection_timeout_ms=300,
        mongodb_timeout_ms=1000,
    )
    backend = MongoDBMemoryBackend(settings)
    with pytest.raises(BackendUnavailableError) as info:
        await backend.connect()
    assert "s3cr3t" not in str(info.value)
    assert "s3cr3t" not in repr(backend.describe())
    assert "s3cr3t" not in repr(settings)
    assert await backend.ping() is False
    await backend.close()


async def test_seed_manager_api_on_mongodb(ferretdb: FerretDB, mongodb_database: str) -> None:
    manager = DistributedMemoryManager(
        memory_type="mongodb",
        config={"connection_string": ferretdb.uri, "database_name": mongodb_database},
        namespace="seed",
    )
    async with manager:
        await manager.save_entity("user", "u1", {"name": "Ada", "prefs.theme": "$dark"})
        assert await manager.load_entity("user", "u1") == {"name": "Ada", "prefs.theme": "$dark"}
        manager.clear_cache()
        assert await manager.load_entity("user", "u1") == {"name": "Ada", "prefs.theme": "$dark"}
        await manager.save_conversation_history([{"role": "user", "content": "hi"}])
        history = await manager.load_conversation_history()
        assert [m["content"] for m in history] == ["hi"]
        await manager.save_tool_usage("search", {"q": "x"}, {"hits": 1}, usage_id="once")
        await manager.save_tool_usage("search", {"q": "x"}, {"hits": 1}, usage_id="once")
        summary = await manager.get_memory_summary_data()
        assert summary.tool_usage_counts == {"search": 1}
        assert summary.entity_counts == {"user": 1}
        assert manager.get_metrics()["backend"] == "mongodb"


async def test_conversation_last_n_reads_one_index_range(mongo: MongoDBMemoryBackend) -> None:
    for chunk in range(5):
        await mongo.append_messages("big", "c", [{"i": chunk * 100 + i} for i in range(100)])
    last = await mongo.load_messages("big", "c", limit=3)
    assert [m.message["i"] for m in last] == [497, 498, 499]
    page = await mongo.load_messages("big", "c", limit=2, before_seq=3)
    assert [m.seq for m in page] == [1, 2]
    assert time.time() >= last[0].created_at


async def test_transaction_path_sends_a_real_transaction(
    mongodb_settings: Settings, recorder: Recorder
) -> None:
    """With transactions forced on, append/replace/delete run inside one transaction.
    FerretDB v1 has none (a documented gap) and refuses it: the caller gets a project
    error, and nothing is half-written."""
    settings = mongodb_settings.model_copy(update={"mongodb_transactions": "on"})
    backend = RecordedMongoDBBackend(settings, recorder)
    await backend.connect()
    try:
        recorder.commands.clear()
        with pytest.raises(MemoryStoreError) as info:
            await backend.append_messages("txn", "c", [{"m": 1}])
        assert "mongodb append_messages failed" in str(info.value)
        first = next(
            c for n, c in recorder.commands if n == "findAndModify" and c[n] == "conversations"
        )
        assert first["startTransaction"] is True
        assert first["autocommit"] is False
        assert "lsid" in first
        assert "txnNumber" in first
        assert "writeConcern" not in first  # in a transaction only the commit carries it
        assert await backend.load_messages("txn", "c") == []
        assert (await backend.summary("txn")).conversations == 0
    finally:
        await backend.close()


async def test_connect_backfills_the_analytics_hour(
    mongodb_settings: Settings, mongo: MongoDBMemoryBackend
) -> None:
    """A document written before ``hour`` existed gets it at the next connect, so the
    windowed analytics count it as the overview does."""
    from memstore.core.analytics import BucketWindow, hour_of

    ns = f"hr{uuid.uuid4().hex[:8]}"
    ts = 1_767_225_600.0 + 90  # 2026-01-01T00:01:30Z
    for i in range(2):
        await mongo.record_tool_usage(
            ns, ToolUsageRecord(f"u{i}", "search", {}, None, 1.0, True, ts + i)
        )
    await mongo._coll(schema.TOOL_USAGE).update_one(
        {"ns": ns, "id": "u0"}, {"$unset": {"hour": ""}}
    )
    window = BucketWindow("hour", hour_of(ts), hour_of(ts))
    stale = await mongo.analytics_tools(ns, window, tool_name=None, limit=10)
    assert [t.calls for t in stale.tools] == [1]  # the pre-upgrade state
    again = MongoDBMemoryBackend(mongodb_settings)
    await again.connect()
    try:
        got = await again.analytics_tools(ns, window, tool_name=None, limit=10)
    finally:
        await again.close()
    assert [(t.tool_name, t.calls) for t in got.tools] == [("search", 2)]


# -- version history: the MongoDB steps ---------------------------------------------------


def _shape(versions: Any) -> list[tuple[int, bool]]:
    return [(v.version, v.deleted) for v in versions]


async def test_history_is_written_before_the_entity_changes(
    mongo: MongoDBMemoryBackend, recorder: Recorder
) -> None:
    """Without a transaction the replaced version is stored first: a writer that stops
    between its writes can leave a history row too many, never a version too few."""
    ns = f"h{uuid.uuid4().hex[:8]}"
    await mongo.save_entity(ns, "t", "a", {"v": 1})
    recorder.commands.clear()
    await mongo.save_entity(ns, "t", "a", {"v": 2})
    assert [(n, c[n]) for n, c in recorder.writes()] == [
        ("findAndModify", "changes"),  # the claim
        ("insert", "entity_versions"),  # v1 into history
        ("update", "entities"),  # compare-and-set on rev
        ("insert", "changes"),  # the event
    ]
    recorder.commands.clear()
    await mongo.delete_entity(ns, "t", "a")
    assert [(n, c[n]) for n, c in recorder.writes()] == [
        ("findAndModify", "changes"),
        ("insert", "entity_versions"),  # v2 into history
        ("delete", "entities"),
        ("insert", "entity_versions"),  # the tombstone
        ("insert", "changes"),
    ]


async def test_a_save_stopped_after_its_history_write_loses_nothing(
    mongo: MongoDBMemoryBackend,
) -> None:
    ns = f"h{uuid.uuid4().hex[:8]}"
    key = {"ns": ns, "type": "t", "id": "a"}
    await mongo.save_entity(ns, "t", "a", {"v": 1})
    await mongo.save_entity(ns, "t", "a", {"v": 2})
    # What a save of v3 that stopped after its first write leaves: v2 stored twice.
    current = await mongo._coll(schema.ENTITIES).find_one(key)
    assert current is not None
    await mongo._keep_version(key, current, None)
    assert await mongo._coll(schema.ENTITY_VERSIONS).count_documents(key) == 2
    listed = (await mongo.list_entity_versions(ns, "t", "a")).items
    assert _shape(listed) == [(2, False), (1, False)]
    page = await mongo.list_entity_versions(ns, "t", "a", limit=1)
    rest = await mongo.list_entity_versions(ns, "t", "a", cursor=page.next_cursor, limit=1)
    assert _shape(page.items + rest.items) == [(2, False), (1, False)]
    assert rest.next_cursor is None
    keep_none = Cutoffs(versions_keep=0)
    dry = await mongo.prune(ns, keep_none, time.time(), dry_run=True, limit=10)
    assert [(v.version, v.deleted) for v in dry.versions] == [(1, False)]
    # the next save writes the same row again (its insert meets the unique key, so it
    # replaces the row) and carries on
    assert (await mongo.save_entity(ns, "t", "a", {"v": 3})).version == 3
    assert await mongo._coll(schema.ENTITY_VERSIONS).count_documents(key) == 2
    listed = (await mongo.list_entity_versions(ns, "t", "a")).items
    assert [(v.version, v.data) for v in listed] == [(3, {"v": 3}), (2, {"v": 2}), (1, {"v": 1})]


async def test_a_delete_stopped_before_its_tombstone_keeps_the_numbering(
    mongo: MongoDBMemoryBackend,
) -> None:
    ns = f"h{uuid.uuid4().hex[:8]}"
    key = {"ns": ns, "type": "t", "id": "a"}
    await mongo.save_entity(ns, "t", "a", {"v": 1})
    await mongo.save_entity(ns, "t", "a", {"v": 2})
    # A delete that stopped after removing the entity: v2 in history, no tombstone.
    current = await mongo._coll(schema.ENTITIES).find_one(key)
    assert current is not None
    await mongo._keep_version(key, current, None)
    await mongo._coll(schema.ENTITIES).delete_one(key)
    again = await mongo.save_entity(ns, "t", "a", {"v": "new"}, expected_version=0)
    assert again.version == 3
    listed = (await mongo.list_entity_versions(ns, "t", "a")).items
    assert _shape(listed) == [(3, False), (2, False), (1, False)]


async def test_purged_expired_entity_moves_to_history(mongo: MongoDBMemoryBackend) -> None:
    ns = f"h{uuid.uuid4().hex[:8]}"
    key = {"ns": ns, "type": "t", "id": "a"}
    saved = await mongo.save_entity(ns, "t", "a", {"v": 1}, ttl=3600)
    # aged on the server instead of waiting: expired a second ago
    past = time.time() - 1
    await mongo._coll(schema.ENTITIES).update_one(
        key, {"$set": {"expires_at": past, "expire_on": datetime.datetime(2000, 1, 1)}}
    )
    # before the purge the expired row is the key's newest version, and after it too
    before = (await mongo.list_entity_versions(ns, "t", "a")).items
    assert await mongo.purge_expired() >= 1
    assert await mongo._coll(schema.ENTITIES).find_one(key) is None
    after = (await mongo.list_entity_versions(ns, "t", "a")).items
    assert after == before
    assert [(v.version, v.deleted, v.data, v.expires_at) for v in after] == [
        (1, False, {"v": 1}, past)
    ]
    assert after[0].saved_at == saved.updated_at
    # it holds the numbering: a create continues, and nothing prunes that last row
    assert (
        await mongo.prune(ns, Cutoffs(versions_keep=0), time.time(), dry_run=True, limit=9)
    ).versions == []
    assert (await mongo.save_entity(ns, "t", "a", {"v": 2}, expected_version=0)).version == 2


async def test_concurrent_saves_keep_every_version_once(mongo: MongoDBMemoryBackend) -> None:
    ns = f"h{uuid.uuid4().hex[:8]}"
    saved = await asyncio.gather(*(mongo.save_entity(ns, "t", "a", {"n": n}) for n in range(20)))
    by_version = {r.version: r.data for r in saved}
    assert sorted(by_version) == list(range(1, 21))
    listed = (await mongo.list_entity_versions(ns, "t", "a")).items
    assert [(v.version, v.data) for v in listed] == [(n, by_version[n]) for n in range(20, 0, -1)]
    # conditional saves on the same version: one wins, its predecessor is stored once
    results = await asyncio.gather(
        *(mongo.save_entity(ns, "t", "a", {"c": n}, expected_version=20) for n in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ConflictError) for r in results if isinstance(r, BaseException))
    rows = await mongo._coll(schema.ENTITY_VERSIONS).count_documents({"ns": ns, "version": 20})
    assert rows == 1


async def test_revision_numbers_survive_the_conversation_document(
    mongo: MongoDBMemoryBackend,
) -> None:
    """Popping the last message deletes the conversation document, not its revisions; a
    replace that stopped after copying messages leaves them numbered: neither number is
    given again."""
    ns = f"h{uuid.uuid4().hex[:8]}"
    await mongo.append_messages(ns, "c", [{"m": 1}])
    await mongo.replace_conversation(ns, "c", [{"m": 2}])  # revision 1
    assert await mongo.pop_message(ns, "c") is not None
    assert await mongo._coll(schema.CONVERSATIONS).find_one({"ns": ns, "id": "c"}) is None
    await mongo.append_messages(ns, "c", [{"m": 3}])
    await mongo.replace_conversation(ns, "c", [{"m": 4}])
    listed = (await mongo.list_conversation_revisions(ns, "c")).items
    assert [(r.revision, r.message_count) for r in listed] == [(2, 1), (1, 1)]
    # messages of a revision 3 whose document was never written
    await mongo._coll(schema.REVISION_MESSAGES).insert_one(
        {"ns": ns, "cid": "c", "rev": 3, "seq": 1, "message": {"stray": 1}, "created_at": 1.0}
    )
    await mongo.replace_conversation(ns, "c", [{"m": 5}])
    listed = (await mongo.list_conversation_revisions(ns, "c")).items
    assert [r.revision for r in listed] == [4, 2, 1]
    loaded = await mongo.load_conversation_revision(ns, "c", 4)
    assert loaded is not None and [m.message for m in loaded[1]] == [{"m": 4}]
    assert await mongo.load_conversation_revision(ns, "c", 3) is None
    assert await mongo.delete_conversation(ns, "c")
    for collection in (schema.REVISIONS, schema.REVISION_MESSAGES):
        assert await mongo._coll(collection).count_documents({"ns": ns}) == 0


async def test_version_retention_walks_candidate_keys_in_batches(
    mongo: MongoDBMemoryBackend,
) -> None:
    """The candidate keys of each rule are read ``limit + 1`` at a time and merged: every
    bounded prune names exactly the first rows of the unbounded one, also when candidate
    keys give no row (a deleted key's lone tombstone) and one rule's keys are sparse
    among the other's (a merge that ran past a full batch would skip keys)."""
    ns = f"h{uuid.uuid4().hex[:8]}"
    for n in (0, 5):  # an old history row each
        await mongo.save_entity(ns, "t", f"k{n}", {"v": 1})
        await mongo.save_entity(ns, "t", f"k{n}", {"v": 2})
    await asyncio.sleep(0.01)
    old = time.time()
    await asyncio.sleep(0.01)
    await mongo.save_entity(ns, "t", "k3", {"v": 1})  # a young history row
    await mongo.save_entity(ns, "t", "k3", {"v": 2})
    lone = [
        EntityVersion("t", f"k{n}", 1, None, time.time(), None, deleted=True)
        for n in (1, 2, 4, 6, 7)
    ]
    await mongo.import_entity_versions(ns, lone)  # candidates by count, nothing to remove
    now = time.time()
    cases = {
        Cutoffs(versions_keep=0): [("k0", 1), ("k3", 1), ("k5", 1)],
        Cutoffs(versions_saved_before=old): [("k0", 1), ("k5", 1)],
        Cutoffs(versions_keep=0, versions_saved_before=old): [("k0", 1), ("k3", 1), ("k5", 1)],
    }
    for cutoffs, expected in cases.items():
        full = await mongo.prune(ns, cutoffs, now, dry_run=True, limit=100)
        assert [(v.id, v.version) for v in full.versions] == expected
        assert not any(v.deleted for v in full.versions)
        for limit in range(1, len(expected) + 1):
            page = await mongo.prune(ns, cutoffs, now, dry_run=True, limit=limit)
            assert page.versions == full.versions[:limit], (cutoffs, limit)
            assert page.more["versions"] is (limit < len(expected))

"""Compression and encryption at rest, on every backend (``memstore.backends.sealed``).

The raw-content checks read what the server really holds: the SQLite file's bytes, every
value under the test's Redis prefix through a raw client (every master of a cluster), and
every document of the test's MongoDB database through PyMongo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard
from bson import encode as bson_encode
from pymongo import MongoClient

import redis as redis_sync
from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.backends.replicated import ReplicatedMemoryBackend
from memstore.backends.sealed import SealedBackend
from memstore.core.analytics import check_window
from memstore.core.errors import ConfigurationError, DataShreddedError, PayloadUnreadableError
from memstore.core.payload_codec import ENVELOPE_KEY, new_kek_line
from memstore.core.records import (
    ConversationRevision,
    EntityRecord,
    EntityVersion,
    FeedbackRecord,
    MessageRecord,
    ToolUsageRecord,
)
from memstore.core.retention import Cutoffs
from memstore.core.settings import Settings
from memstore.memory.manager import backend_layer
from tests.contract.conftest import CONTRACT_BACKENDS
from tests.servers.redis import LocalRedis

PLANT = "PLANTED-c0ffee-secret-payload"
UNICODE = "Grüße, 東京, emoji 🧠, RTL עברית"
NESTED: dict[str, Any] = {
    "profile": {"name": UNICODE, "tags": ["a", "b", {"deep": [1, 2.5, None, True]}]},
    "notes": [{"i": i, "text": f"note {i} {UNICODE}"} for i in range(20)],
}


def big_payload(kb: int) -> dict[str, Any]:
    """Search-result-like JSON: repetitive in shape, varied in content (compresses as real
    tool outputs do, not as a run of one character)."""
    return {
        "results": [
            {
                "title": f"Result {i}: how agents remember {i * 7 % 13}",
                "url": f"https://example.org/articles/{i}/{uuid.uuid5(uuid.NAMESPACE_URL, str(i))}",
                "snippet": f"<p>Memory item {i} talks about <b>{UNICODE}</b> and {i * i}</p>",
                "score": round(1 / (i + 1), 6),
            }
            for i in range(kb * 4)
        ]
    }


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def plain_settings(request: pytest.FixtureRequest, backend_name: str) -> Settings:
    settings: Settings = request.getfixturevalue(f"{backend_name}_settings")
    if backend_name == "embedded":
        # Several backends on one store stand for several replicas (shared-file mode).
        settings = settings.model_copy(update={"embedded_shared": True})
    return settings


def kek_file(path: Path, *ids: str, lines: dict[str, str] | None = None) -> Path:
    known = lines if lines is not None else {}
    for key_id in ids:
        known.setdefault(key_id, new_kek_line(key_id))
    path.write_text("\n".join(known[k] for k in ids) + "\n")
    return path


@pytest.fixture
def kek_lines() -> dict[str, str]:
    return {}


@pytest.fixture
def sealed_settings(
    plain_settings: Settings, tmp_path: Path, kek_lines: dict[str, str]
) -> Settings:
    return plain_settings.model_copy(
        update={
            "compression_min_bytes": 512,
            "encryption_key_file": kek_file(tmp_path / "kek1", "k1", lines=kek_lines),
            "data_key_cache_seconds": 0.0,
        }
    )


Opened = Callable[[Settings], Any]


@pytest.fixture
async def open_backend() -> AsyncIterator[Callable[[Settings], Any]]:
    opened: list[DistributedMemoryBackend] = []

    async def make(settings: Settings) -> DistributedMemoryBackend:
        backend = DistributedMemoryFactory.create_memory_backend(settings)
        await backend.connect()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
def raw_dump(request: pytest.FixtureRequest, backend_name: str) -> Callable[[Settings], bytes]:
    """Everything the test's store holds, as the server keeps it."""

    def redis_dump(servers: list[LocalRedis], prefix: str) -> bytes:
        out = bytearray()
        for server in servers:
            tls: dict[str, Any] = {}
            if server.tls is not None:
                tls = {
                    "ssl": True,
                    "ssl_ca_certs": str(server.tls.ca),
                    "ssl_certfile": str(server.tls.client_cert),
                    "ssl_keyfile": str(server.tls.client_key),
                }
            raw = redis_sync.Redis(host="127.0.0.1", port=server.port, **tls)
            if "cluster" in backend_name:
                raw.execute_command("READONLY")  # replicas' copies are read too
            for key in raw.scan_iter(match=f"{prefix}*", count=1000):
                kind = raw.type(key)
                value: Any
                if kind == b"string":
                    value = raw.get(key)
                elif kind == b"hash":
                    value = raw.hgetall(key)
                elif kind == b"list":
                    value = raw.lrange(key, 0, -1)
                elif kind == b"set":
                    value = raw.smembers(key)
                elif kind == b"zset":
                    value = raw.zrange(key, 0, -1, withscores=True)
                elif kind == b"stream":
                    value = raw.xrange(key)
                else:
                    raise AssertionError(f"unexpected Redis type {kind!r}")
                out += key + repr(value).encode()
            raw.close()
        return bytes(out)

    def mongo_dump(settings: Settings) -> bytes:
        client: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_uri.get_secret_value())
        try:
            db = client[settings.mongodb_db]
            return b"".join(
                bson_encode(doc) for name in db.list_collection_names() for doc in db[name].find()
            )
        finally:
            client.close()

    def dump(settings: Settings) -> bytes:
        if backend_name == "embedded":
            # The file's bytes (WAL included), and every cell of every table read with
            # sqlite3 itself (a value split over overflow pages is whole there).
            path = Path(settings.data_path)
            files = b"".join(
                p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)
            )
            with contextlib.closing(sqlite3.connect(path)) as conn:
                tables = [
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                cells = [
                    v if isinstance(v, bytes) else str(v).encode()
                    for t in tables
                    for row in conn.execute(f'SELECT * FROM "{t}"')
                    for v in row
                ]
            return files + b"\n".join(cells)
        if backend_name == "mongodb":
            return mongo_dump(settings)
        if backend_name == "redis_to_mongodb":
            # The primary's keys and the secondary's documents (call ``replicated`` first).
            server = request.getfixturevalue("redis_server")
            return redis_dump([server], settings.redis_prefix or "") + mongo_dump(settings)
        if "cluster" in backend_name:
            fixture = "redis_cluster" if backend_name == "redis_cluster" else "redis_tls_cluster"
            cluster = request.getfixturevalue(fixture)
            return redis_dump(cluster.nodes, settings.redis_prefix or "")
        server = request.getfixturevalue(
            {"redis": "redis_server", "redis_mtls": "redis_mtls_server"}[backend_name]
        )
        return redis_dump([server], settings.redis_prefix or "")

    return dump


async def replicated(backend: DistributedMemoryBackend) -> None:
    """With a secondary: wait until it holds everything the primary holds now."""
    stack = backend_layer(backend, ReplicatedMemoryBackend)
    if stack is None:
        return
    for _ in range(500):
        behind = False
        for name in await stack.primary.list_namespaces() or []:
            page = await stack.primary.read_changes(name, after=0, limit=1)
            behind = behind or stack.forward.positions.get(name, 0) < page.last_position
        if not behind:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the secondary did not catch up")


def readable_forms(raw: bytes) -> bytes:
    """``raw`` plus everything an onlooker gets from it without a key: every base64 run
    decoded, and zstd-decompressed where it is a zstd frame."""
    out = [raw]
    for run in re.findall(rb"[A-Za-z0-9+/]{16,}={0,2}", raw):
        try:
            decoded = base64.b64decode(run + b"=" * (-len(run) % 4))
        except ValueError:
            continue
        out.append(decoded)
        with contextlib.suppress(zstandard.ZstdError):
            out.append(zstandard.ZstdDecompressor().decompress(decoded))
    return b"\n".join(out)


async def write_everything(backend: DistributedMemoryBackend, ns: str, secret: str) -> None:
    await backend.save_entity(ns, "profile", "p1", {"secret": secret, **NESTED})
    await backend.save_entity(ns, "profile", "big", {"secret": secret, **big_payload(64)})
    await backend.append_messages(
        ns,
        "c1",
        [
            {"role": "user", "content": f"{secret} {UNICODE}"},
            {"role": "assistant", "content": "ok"},
        ],
    )
    await backend.record_tool_usage(
        ns,
        ToolUsageRecord(
            id=f"t-{ns}",
            tool_name="web.search",
            input={"query": secret},
            output=big_payload(8) | {"echo": secret},
            duration_ms=12.5,
            success=True,
            timestamp=1_767_225_600.0,
        ),
    )
    await backend.save_feedback(
        ns,
        FeedbackRecord(
            id=f"f-{ns}",
            agent_name="agent",
            feedback_type="rating",
            data={"rating": 4, "comment": secret},
            timestamp=1_767_225_600.0,
        ),
    )


async def read_everything(backend: DistributedMemoryBackend, ns: str, secret: str) -> None:
    p1 = await backend.load_entity(ns, "profile", "p1")
    assert p1 is not None and p1.data == {"secret": secret, **NESTED}
    big = await backend.load_entity(ns, "profile", "big")
    assert big is not None and big.data == {"secret": secret, **big_payload(64)}
    listed = await backend.list_entities(ns, "profile", limit=10)
    assert [r.data["secret"] for r in listed.items] == [secret, secret]
    # what the HTTP API answers with: the opened entities, never the stored envelopes
    entity_rows = await backend.list_entity_rows(ns, "profile", limit=10)
    assert [orjson.loads(r.data_json) for r in entity_rows.items] == [r.data for r in listed.items]
    messages = await backend.load_messages(ns, "c1")
    assert [m.message["content"] for m in messages] == [f"{secret} {UNICODE}", "ok"]
    # what the HTTP API answers with: the opened messages, never the stored envelopes
    rows = await backend.load_message_rows(ns, "c1", limit=10)
    assert [(r.seq, orjson.loads(r.message_json)) for r in rows] == [
        (m.seq, m.message) for m in messages
    ]
    uses = await backend.query_tool_usage(ns, limit=10)
    assert [u.input for u in uses.items] == [{"query": secret}]
    assert uses.items[0].output == big_payload(8) | {"echo": secret}
    feedback = await backend.query_feedback(ns, limit=10)
    assert [f.data for f in feedback.items] == [{"rating": 4, "comment": secret}]


async def test_round_trip_of_sealed_payloads(
    sealed_settings: Settings, open_backend: Opened
) -> None:
    backend = await open_backend(sealed_settings)
    assert isinstance(backend, SealedBackend)
    ns = f"rt{uuid.uuid4().hex[:8]}"
    await write_everything(backend, ns, PLANT)
    await read_everything(backend, ns, PLANT)
    # What the backend holds is the envelope, not the payload.
    stored = await backend.inner.load_entity(ns, "profile", "p1")
    assert stored is not None and set(stored.data) == {ENVELOPE_KEY}
    # Replace, pop and non-object tool payloads go through the same codec.
    await backend.replace_conversation(ns, "c1", [{"role": "user", "content": UNICODE}])
    popped = await backend.pop_message(ns, "c1")
    assert popped is not None and popped.message == {"role": "user", "content": UNICODE}
    for value in ("a plain string " * 100, [1, "two", {"three": 3}], None, 42):
        use = ToolUsageRecord(
            id=f"v{uuid.uuid4().hex[:6]}", tool_name="t", input=value, output=value,
            duration_ms=1.0, success=False, timestamp=1_767_225_601.0,
        )  # fmt: skip
        assert (await backend.record_tool_usage(ns, use)).input == value
    outputs = [
        u.output for u in (await backend.query_tool_usage(ns, tool_name="t", limit=10)).items
    ]
    assert sorted(map(repr, outputs)) == sorted(
        map(repr, ("a plain string " * 100, [1, "two", {"three": 3}], None, 42))
    )
    # The feedback analytics still read the rating (kept in clear next to the envelope).
    window = check_window("hour", 1_767_225_600.0, 1_767_229_200.0, 1_767_229_200.0)
    feedback = await backend.analytics_feedback(ns, window)
    assert (feedback.count, feedback.rating_count, feedback.rating_mean) == (1, 1, 4)


async def test_raw_store_holds_no_plaintext(
    sealed_settings: Settings, open_backend: Opened, raw_dump: Callable[[Settings], bytes]
) -> None:
    ns = f"raw{uuid.uuid4().hex[:8]}"
    backend = await open_backend(sealed_settings)
    await write_everything(backend, ns, PLANT)
    await replicated(backend)
    await backend.close()
    raw = readable_forms(raw_dump(sealed_settings))
    assert ns.encode() in raw  # the dump really holds this namespace (names stay in clear)
    for text in (PLANT, "Grüße", "Grü", "how agents remember", "note 3"):
        assert text.encode() not in raw, text
        assert text.encode("unicode_escape") not in raw, text


async def test_plaintext_is_visible_without_sealing(
    plain_settings: Settings, open_backend: Opened, raw_dump: Callable[[Settings], bytes]
) -> None:
    """The control for the test above: the same dump does find a plain payload."""
    ns = f"ctl{uuid.uuid4().hex[:8]}"
    backend = await open_backend(plain_settings)
    await write_everything(backend, ns, PLANT)
    await replicated(backend)
    await backend.close()
    assert PLANT.encode() in readable_forms(raw_dump(plain_settings))


async def test_compression_alone_does_not_hide_payloads(
    plain_settings: Settings, open_backend: Opened, raw_dump: Callable[[Settings], bytes]
) -> None:
    """Compression is not encryption: the onlooker of the test above reads it back."""
    ns = f"zo{uuid.uuid4().hex[:8]}"
    settings = plain_settings.model_copy(update={"compression_min_bytes": 64})
    backend = await open_backend(settings)
    await backend.save_entity(ns, "profile", "p", {"secret": PLANT, **big_payload(4)})
    await replicated(backend)
    await backend.close()
    raw = raw_dump(settings)
    assert PLANT.encode() not in raw
    assert PLANT.encode() in readable_forms(raw)


async def test_compressed_values_are_smaller_in_the_raw_store(
    plain_settings: Settings, open_backend: Opened, raw_dump: Callable[[Settings], bytes]
) -> None:
    payload = big_payload(256)
    logical = len(orjson.dumps(payload))
    stored: dict[str, int | None] = {}
    grew: dict[str, int] = {}
    for label, threshold in (("plain", 0), ("zstd", 1024)):
        settings = plain_settings.model_copy(update={"compression_min_bytes": threshold})
        backend = await open_backend(settings)
        ns = f"z{label}{uuid.uuid4().hex[:6]}"
        before = len(raw_dump(plain_settings))
        await backend.save_entity(ns, "doc", "d", payload)
        got = await backend.load_entity(ns, "doc", "d")
        assert got is not None and got.data == payload
        stored[label] = await backend.stored_bytes(ns)
        await replicated(backend)
        await backend.close()
        grew[label] = len(raw_dump(plain_settings)) - before
    # The backend's own byte count, and what the raw store grew by, shrink alike.
    assert stored["plain"] is not None and stored["plain"] >= logical
    assert stored["zstd"] is not None and stored["zstd"] * 3 < logical, stored
    assert grew["plain"] > 0, grew
    assert grew["zstd"] * 3 < grew["plain"], grew


async def test_rotation_rewraps_and_everything_reads(
    sealed_settings: Settings, open_backend: Opened, tmp_path: Path, kek_lines: dict[str, str]
) -> None:
    ns = f"rot{uuid.uuid4().hex[:8]}"
    first = await open_backend(sealed_settings)
    await write_everything(first, ns, PLANT)
    assert {k["namespace"]: k["kek_id"] for k in await first.data_keys()}[ns] == "k1"

    # The new KEK first (it wraps), the old one kept (it unwraps until rotation is done).
    both = sealed_settings.model_copy(
        update={"encryption_key_file": kek_file(tmp_path / "kek2", "k2", "k1", lines=kek_lines)}
    )
    rotating = await open_backend(both)
    await read_everything(rotating, ns, PLANT)
    result = await rotating.rotate_data_keys()
    assert result["kek_id"] == "k2" and result["rewrapped"] >= 1
    assert {k["namespace"]: k["kek_id"] for k in await rotating.data_keys()}[ns] == "k2"
    again = await rotating.rotate_data_keys()
    assert again["rewrapped"] == 0

    # After rotation the old KEK is no longer needed: k2 alone reads everything ...
    only_new = sealed_settings.model_copy(
        update={"encryption_key_file": kek_file(tmp_path / "kek3", "k2", lines=kek_lines)}
    )
    await read_everything(await open_backend(only_new), ns, PLANT)
    # ... and k1 alone no longer opens the namespace's data key.
    with pytest.raises(ConfigurationError, match="k2"):
        await read_everything(first, ns, PLANT)


async def test_shredding_makes_one_namespace_unreadable(
    sealed_settings: Settings, open_backend: Opened
) -> None:
    shredded, kept = f"shr{uuid.uuid4().hex[:8]}", f"kpt{uuid.uuid4().hex[:8]}"
    backend = await open_backend(sealed_settings)
    replica = await open_backend(sealed_settings)  # another process on the same store
    for ns in (shredded, kept):
        await write_everything(backend, ns, PLANT)
    await read_everything(replica, shredded, PLANT)

    result = await backend.shred_data_key(shredded)
    assert result["shredded"] is True

    for reader in (backend, replica):
        for read in (
            lambda b: b.load_entity(shredded, "profile", "p1"),
            lambda b: b.list_entities(shredded, "profile", limit=10),
            lambda b: b.load_messages(shredded, "c1"),
            lambda b: b.query_tool_usage(shredded, limit=10),
            lambda b: b.query_feedback(shredded, limit=10),
        ):
            with pytest.raises(DataShreddedError) as caught:
                await read(reader)
            assert caught.value.namespace == shredded
            assert caught.value.http_status == 410 and caught.value.code == "data_shredded"
        await read_everything(reader, kept, PLANT)
    # Counts and analytics never needed the payloads.
    summary = await backend.summary(shredded)
    assert summary.entity_counts == {"profile": 2}
    # The namespace can be written again, under a new key; the old records stay unreadable.
    await backend.save_entity(shredded, "profile", "new", {"fresh": True})
    fresh = await replica.load_entity(shredded, "profile", "new")
    assert fresh is not None and fresh.data == {"fresh": True}
    with pytest.raises(DataShreddedError):
        await replica.load_entity(shredded, "profile", "p1")


async def test_a_ciphertext_moved_to_another_record_does_not_open(
    sealed_settings: Settings, open_backend: Opened
) -> None:
    backend = await open_backend(sealed_settings)
    assert isinstance(backend, SealedBackend)
    ns = f"mv{uuid.uuid4().hex[:8]}"
    await backend.save_entity(ns, "profile", "alice", {"secret": "alice's"})
    await backend.save_entity(ns, "profile", "bob", {"secret": "bob's"})
    alice = await backend.inner.load_entity(ns, "profile", "alice")
    assert alice is not None
    await backend.inner.save_entity(ns, "profile", "bob", alice.data)
    with pytest.raises(PayloadUnreadableError):
        await backend.load_entity(ns, "profile", "bob")


async def test_plain_data_written_before_reads_through_the_codec(
    plain_settings: Settings, sealed_settings: Settings, open_backend: Opened
) -> None:
    ns = f"old{uuid.uuid4().hex[:8]}"
    await write_everything(await open_backend(plain_settings), ns, PLANT)
    await read_everything(await open_backend(sealed_settings), ns, PLANT)


async def test_imports_pins_and_loads_by_id_go_through_the_codec(
    sealed_settings: Settings, open_backend: Opened, raw_dump: Callable[[Settings], bytes]
) -> None:
    ns = f"imp{uuid.uuid4().hex[:8]}"
    backend = await open_backend(sealed_settings)
    record = EntityRecord("profile", "imported", {"secret": PLANT}, 4, 1.0e9, 1.0e9 + 5, None)
    await backend.import_entity(ns, record)
    await backend.import_conversation(
        ns, "c9", [MessageRecord("c9", 1, {"content": f"{PLANT} {UNICODE}"}, 1.0e9)]
    )
    assert await backend.load_entity(ns, "profile", "imported") == record
    assert [m.message for m in await backend.load_messages(ns, "c9")] == [
        {"content": f"{PLANT} {UNICODE}"}
    ]
    pinned = await backend.set_entity_pinned(ns, "profile", "imported", True)
    assert pinned is not None and pinned.data == {"secret": PLANT} and pinned.pinned
    await write_everything(backend, ns, PLANT)
    use = await backend.load_tool_usage(ns, f"t-{ns}")
    assert use is not None and use.input == {"query": PLANT}
    feedback = await backend.load_feedback(ns, f"f-{ns}")
    assert feedback is not None and feedback.data == {"rating": 4, "comment": PLANT}
    await replicated(backend)
    await backend.close()
    raw = readable_forms(raw_dump(sealed_settings))
    assert ns.encode() in raw
    assert PLANT.encode() not in raw


def written_size(*values: Any) -> int:
    return sum(len(orjson.dumps(v)) for v in values)


@pytest.mark.parametrize("encrypted", [True, False], ids=["zstd+aes", "zstd"])
async def test_logical_bytes_count_payloads_as_written(
    sealed_settings: Settings, plain_settings: Settings, open_backend: Opened, encrypted: bool
) -> None:
    """``logical_bytes``: what the bytes quota counts, exact through saves, replaces, deletes,
    pops and conversation replaces, whatever is sealed (compression alone seals only the
    large payloads, so a tool use may have one sealed part and one plain)."""
    settings = sealed_settings
    if not encrypted:
        settings = settings.model_copy(update={"encryption_key_file": None})
    backend = await open_backend(settings)
    ns = f"lb{uuid.uuid4().hex[:8]}"
    assert await backend.logical_bytes(ns) == 0
    small, big = {"name": UNICODE}, {"secret": PLANT, **big_payload(16)}
    await backend.save_entity(ns, "doc", "small", small)
    await backend.save_entity(ns, "doc", "big", big)
    await backend.save_entity(ns, "doc", "gone", big)
    messages = [{"role": "user", "content": UNICODE}, big_payload(4), {"c": "x" * 300}]
    await backend.append_messages(ns, "c1", messages)
    await backend.append_messages(ns, "c2", [{"n": 1}])
    use = ToolUsageRecord(
        id="t1", tool_name="web.search", input={"q": "?"}, output=big_payload(8),
        duration_ms=2.5, success=True, timestamp=1_767_225_600.0, conversation_id="c1",
    )  # fmt: skip
    await backend.record_tool_usage(ns, use)
    use2 = ToolUsageRecord(
        id="t2", tool_name="t", input=big_payload(2), output=None,
        duration_ms=1.0, success=False, timestamp=1_767_225_601.0,
    )  # fmt: skip
    await backend.record_tool_usage(ns, use2)
    rated = {"rating": 4.5, "comment": PLANT}
    await backend.save_feedback(ns, FeedbackRecord("f1", "agent", "rating", rated, 1_767_225_600.0))
    await backend.save_feedback(
        ns, FeedbackRecord("f2", "agent", "note", big_payload(2), 1_767_225_601.0)
    )
    expected = written_size(
        small, big, big, *messages, {"n": 1}, use.input, use.output, use2.input, use2.output,
        rated, big_payload(2),
    )  # fmt: skip
    assert await backend.logical_bytes(ns) == expected
    stored = await backend.stored_bytes(ns)
    assert stored is not None and stored * 2 < expected, (stored, expected)
    # replaces, deletes, pops, conversation replaces
    await backend.save_entity(ns, "doc", "big", small)
    await backend.delete_entity(ns, "doc", "gone")
    popped = await backend.pop_message(ns, "c1")
    assert popped is not None
    await backend.replace_conversation(ns, "c2", [big_payload(3), {"n": 2}])
    expected = written_size(
        small, small, *messages[:2], big_payload(3), {"n": 2}, use.input, use.output,
        use2.input, use2.output, rated, big_payload(2),
    )  # fmt: skip
    assert await backend.logical_bytes(ns) == expected
    # Another namespace neither sees nor changes them.
    await backend.save_entity(ns + "x", "doc", "d", big)
    assert await backend.logical_bytes(ns) == expected
    assert await backend.logical_bytes(ns + "x") == written_size(big)
    # Without the at-rest layer nothing is sealed: logical and stored bytes are one.
    plain = await open_backend(plain_settings)
    other = f"lp{uuid.uuid4().hex[:8]}"
    await plain.save_entity(other, "doc", "big", big)
    await plain.append_messages(other, "c", messages)
    await plain.record_tool_usage(other, use)
    await plain.save_feedback(other, FeedbackRecord("f", "a", "r", rated, 1_767_225_600.0))
    want = written_size(big, *messages, use.input, use.output, rated)
    assert await plain.logical_bytes(other) == await plain.stored_bytes(other) == want


async def test_logical_bytes_follow_expiry_retention_imports_and_history(
    sealed_settings: Settings, open_backend: Opened
) -> None:
    """``logical_bytes`` stays exact through the paths the test above leaves out: saves
    that move the replaced version into history, TTL expiry, retention's prune of entities,
    conversations (whole and trimmed), tool uses and feedback, and imports of live data and
    of history. History rows (old versions, tombstones, revisions) count nowhere, in the
    stored bytes neither."""
    backend = await open_backend(sealed_settings)
    ns = f"lx{uuid.uuid4().hex[:8]}"
    small, big = {"name": UNICODE}, {"secret": PLANT, **big_payload(16)}
    assert await backend.logical_bytes(ns) == 0
    # saves moving each replaced version into history; a delete leaves a tombstone
    for data in (big, big_payload(8), small):
        await backend.save_entity(ns, "doc", "h", data)
    await backend.save_entity(ns, "doc", "d", big)
    await backend.delete_entity(ns, "doc", "d")
    await backend.replace_conversation(ns, "c", [big_payload(4)])
    await backend.replace_conversation(ns, "c", [{"n": 1}, big_payload(2)])
    live = [small, {"n": 1}, big_payload(2)]
    assert await backend.logical_bytes(ns) == written_size(*live)
    # TTL: counted while live, gone once expired (TTL'd then plain, and plain then TTL'd)
    await backend.save_entity(ns, "doc", "t1", big, ttl=1.0)
    await backend.save_entity(ns, "doc", "t2", small, ttl=1.0)
    await backend.save_entity(ns, "doc", "t2", big_payload(3))
    await backend.save_entity(ns, "doc", "t3", small)
    await backend.save_entity(ns, "doc", "t3", big_payload(5), ttl=1.0)
    await backend.save_entity(ns, "doc", "keep", small, ttl=3600)
    live += [big_payload(3), small]
    assert await backend.logical_bytes(ns) == written_size(*live, big, big_payload(5))
    await asyncio.sleep(1.6)
    # the backend's own expiry round (every backend runs one; embedded counts an expired
    # row, in its stored bytes too, until it has removed it)
    stack = backend_layer(backend, ReplicatedMemoryBackend)
    single: Any = stack.primary if stack is not None else backend
    while isinstance(single, SealedBackend):
        single = single.inner
    await single.purge_expired()
    assert await backend.logical_bytes(ns) == written_size(*live)
    # imports: a live entity (over a stored one, whose row moves into history) and a
    # conversation count; imported history rows and revisions do not
    await backend.import_entity(ns, EntityRecord("doc", "h", big_payload(6), 9, 1.0e9, 1.0e9 + 5))
    await backend.import_entity(ns, EntityRecord("doc", "new", big, 1, 1.0e9, 1.0e9))
    await backend.import_conversation(
        ns, "c", [MessageRecord("c", 3, big_payload(1), 1.0e9), MessageRecord("c", 4, small, 1.0e9)]
    )
    await backend.import_entity_versions(
        ns, [EntityVersion("doc", "old", 2, big_payload(7), 1.0e9 - 5)]
    )
    await backend.import_conversation_revision(
        ns, ConversationRevision("c", 7, 1.0e9, 1), [MessageRecord("c", 1, big, 1.0e9)]
    )
    live = [big_payload(6), big_payload(3), small, big, big_payload(1), small]
    assert await backend.logical_bytes(ns) == written_size(*live)
    # retention: entities saved before the bound, a conversation trimmed to its last
    # message, tool uses and feedback before theirs; history pruned to nothing
    t0 = time.time()
    await backend.append_messages(ns, "c2", [big_payload(2), {"n": 2}, small])
    await backend.append_messages(ns, "c3", [big_payload(3)])
    use = ToolUsageRecord(
        id="t", tool_name="web", input={"q": "?"}, output=big_payload(8),
        duration_ms=1.0, success=True, timestamp=t0 - 100,
    )  # fmt: skip
    await backend.record_tool_usage(ns, use)
    await backend.save_feedback(ns, FeedbackRecord("f", "a", "note", big_payload(2), t0 - 100))
    await backend.save_feedback(ns, FeedbackRecord("g", "a", "note", small, t0 + 100))
    before = written_size(*live, big_payload(2), {"n": 2}, small, big_payload(3))
    assert await backend.logical_bytes(ns) == before + written_size(
        use.input, use.output, big_payload(2), small
    )
    stored_before = await backend.stored_bytes(ns)
    cutoffs = Cutoffs(
        entity_saved_before=t0 + 1,
        conversation_max_messages=1,
        tool_usage_before=t0,
        feedback_before=t0,
        versions_keep=0,
    )
    report = await backend.prune(ns, cutoffs, t0 + 1, dry_run=False, limit=100)
    assert report.entities and report.tool_usage and report.feedback and report.versions
    # entities all gone; conversations keep their last message each; feedback "g" stays
    assert await backend.logical_bytes(ns) == written_size(small, small, big_payload(3), small)
    stored = await backend.stored_bytes(ns)
    assert stored is not None and stored_before is not None and stored < stored_before
    # idle conversations go whole
    idle = Cutoffs(conversation_idle_before=time.time() + 1)
    report = await backend.prune(ns, idle, time.time() + 1, dry_run=False, limit=100)
    assert len(report.conversations) == 3
    assert await backend.logical_bytes(ns) == written_size(small)


async def test_version_history_is_sealed_like_live_payloads(
    sealed_settings: Settings, open_backend: Opened, raw_dump: Callable[[Settings], bytes]
) -> None:
    """Old versions, tombstoned keys, conversation revisions and imported history rows hold
    no plaintext in the raw store, and read back whole through the codec; shredding the
    namespace's key takes its history with it."""
    ns = f"hist{uuid.uuid4().hex[:8]}"
    backend = await open_backend(sealed_settings)
    await backend.save_entity(ns, "profile", "p1", {"secret": PLANT, "v": 1, **NESTED})
    await backend.save_entity(ns, "profile", "p1", {"secret": PLANT, "v": 2})
    await backend.save_entity(ns, "profile", "gone", {"secret": PLANT, "big": big_payload(16)})
    await backend.delete_entity(ns, "profile", "gone")
    await backend.append_messages(ns, "c1", [{"content": f"{PLANT} {UNICODE}"}])
    await backend.replace_conversation(ns, "c1", [{"content": "replaced"}])
    await backend.import_entity_versions(
        ns, [EntityVersion("profile", "old", 1, {"secret": PLANT, "imported": True}, 1000.0)]
    )
    await backend.import_conversation_revision(
        ns,
        ConversationRevision("c2", 1, 1000.0, 1),
        [MessageRecord("c2", 1, {"content": PLANT}, 999.0)],
    )
    versions = (await backend.list_entity_versions(ns, "profile", "p1")).items
    assert [v.data for v in versions] == [
        {"secret": PLANT, "v": 2},
        {"secret": PLANT, "v": 1, **NESTED},
    ]
    gone = await backend.load_entity_version(ns, "profile", "gone", version=1)
    assert gone is not None and gone.data == {"secret": PLANT, "big": big_payload(16)}
    old = await backend.load_entity_version(ns, "profile", "old", version=1)
    assert old is not None and old.data == {"secret": PLANT, "imported": True}
    keys = (await backend.list_versioned_entities(ns)).items
    assert [(k.id, k.deleted, k.data is None) for k in keys] == [
        ("gone", True, True),  # its tombstone
        ("old", False, False),
        ("p1", False, False),
    ]
    revision = await backend.load_conversation_revision(ns, "c1", 1)
    assert revision is not None
    assert [m.message for m in revision[1]] == [{"content": f"{PLANT} {UNICODE}"}]
    imported = await backend.load_conversation_revision(ns, "c2", 1)
    assert imported is not None and imported[1][0].message == {"content": PLANT}
    await replicated(backend)
    await backend.close()
    raw = readable_forms(raw_dump(sealed_settings))
    assert ns.encode() in raw
    for text in (PLANT, "Grüße", "how agents remember", "note 3"):
        assert text.encode() not in raw, text
        assert text.encode("unicode_escape") not in raw, text

    # after shredding, the history of the namespace is as unreadable as its live data
    backend = await open_backend(sealed_settings)
    assert isinstance(backend, SealedBackend)
    await backend.shred_data_key(ns)
    with pytest.raises(DataShreddedError):
        await backend.load_entity_version(ns, "profile", "p1", version=1)
    with pytest.raises(DataShreddedError):
        await backend.load_conversation_revision(ns, "c1", 1)
    # the listings still answer: a version that no longer opens is listed without its
    # data, flagged, so what is saved after the shred stays listable beside it
    await backend.save_entity(ns, "profile", "p1", {"fresh": True})
    versions = (await backend.list_entity_versions(ns, "profile", "p1")).items
    assert [(v.version, v.data, v.shredded) for v in versions] == [
        (3, {"fresh": True}, False),
        (2, None, True),
        (1, None, True),
    ]
    fresh = await backend.load_entity_version(ns, "profile", "p1", version=3)
    assert fresh is not None and fresh.data == {"fresh": True} and not fresh.shredded
    with pytest.raises(DataShreddedError):
        await backend.load_entity_version(ns, "profile", "p1", version=2)
    keys = (await backend.list_versioned_entities(ns)).items
    assert [(k.id, k.deleted, k.data, k.shredded) for k in keys] == [
        ("gone", True, None, False),  # a tombstone holds no data to shred
        ("old", False, None, True),
        ("p1", False, {"fresh": True}, False),
    ]

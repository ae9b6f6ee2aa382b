"""Raw backend operations: the floor the service is measured against.

Each class does, per operation, the same kind of work the memstore backend does on the same
technology (the same commands, the same transaction shape, the same version check) and
nothing else: no validation models, no manager, no cache, no metrics. They answer with the
JSON bytes the service would send, so the baseline HTTP app (``bench.baseline``) is one
``web.Response`` around each call and the raw mixed-agent driver (``bench.agents``) calls
them directly without HTTP.

Payloads are stored as the JSON bytes received and re-emitted with ``orjson.Fragment``
(no parse/serialise round trip): that is the cheapest a server can possibly be.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

import orjson

Json = dict[str, Any]


class Conflict(Exception):
    """Version check failed (HTTP 412)."""


class RawOps(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get_entity(self, ns: str, etype: str, eid: str) -> bytes | None: ...
    async def put_entity(
        self, ns: str, etype: str, eid: str, data: bytes, expected: int | None
    ) -> tuple[int, bytes]: ...
    async def append(self, ns: str, cid: str, messages: list[bytes]) -> bytes: ...
    async def load_last(self, ns: str, cid: str, limit: int) -> bytes: ...
    async def record_tool(self, ns: str, record: Json) -> bytes: ...


def entity_body(
    etype: str, eid: str, data: bytes, version: int, created: float, updated: float
) -> bytes:
    return orjson.dumps(
        {
            "type": etype,
            "id": eid,
            "data": orjson.Fragment(data),
            "version": version,
            "created_at": created,
            "updated_at": updated,
            "expires_at": None,
        }
    )


def messages_body(cid: str, rows: list[tuple[int, float, bytes]]) -> bytes:
    return orjson.dumps(
        {
            "items": [
                {
                    "conversation_id": cid,
                    "seq": seq,
                    "message": orjson.Fragment(raw),
                    "created_at": ts,
                }
                for seq, ts, raw in rows
            ],
            "next_before": None,
        }
    )


def tool_record(ns: str, body: Json) -> Json:
    return {
        "id": body.get("id") or uuid.uuid4().hex,
        "tool_name": body["tool_name"],
        "input": body.get("input"),
        "output": body.get("output"),
        "duration_ms": float(body.get("duration_ms", 0.0)),
        "success": bool(body.get("success", True)),
        "timestamp": float(body.get("timestamp") or time.time()),
        "conversation_id": body.get("conversation_id"),
    }


# -- in-memory (the cache-hit floor) -------------------------------------------------------


class DictOps:
    """Everything in dicts; GET returns stored bytes (what a perfect cache hit costs)."""

    def __init__(self) -> None:
        self.entities: dict[tuple[str, str, str], tuple[int, float, bytes]] = {}
        self.messages: dict[tuple[str, str], list[tuple[int, float, bytes]]] = {}
        self.tools: dict[tuple[str, str], bytes] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get_entity(self, ns: str, etype: str, eid: str) -> bytes | None:
        hit = self.entities.get((ns, etype, eid))
        return None if hit is None else hit[2]

    async def put_entity(
        self, ns: str, etype: str, eid: str, data: bytes, expected: int | None
    ) -> tuple[int, bytes]:
        key = (ns, etype, eid)
        cur = self.entities.get(key)
        current = cur[0] if cur else 0
        if expected is not None and expected != current:
            raise Conflict
        now = time.time()
        created = cur[1] if cur else now
        body = entity_body(etype, eid, data, current + 1, created, now)
        self.entities[key] = (current + 1, created, body)
        return current + 1, body

    async def append(self, ns: str, cid: str, messages: list[bytes]) -> bytes:
        rows = self.messages.setdefault((ns, cid), [])
        now = time.time()
        new = [(len(rows) + 1 + i, now, m) for i, m in enumerate(messages)]
        rows.extend(new)
        return messages_body(cid, new)

    async def load_last(self, ns: str, cid: str, limit: int) -> bytes:
        return messages_body(cid, self.messages.get((ns, cid), [])[-limit:])

    async def record_tool(self, ns: str, record: Json) -> bytes:
        body = orjson.dumps(record)
        self.tools.setdefault((ns, record["id"]), body)
        return body


# -- SQLite (the embedded backend's technology) ----------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    ns TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, data BLOB NOT NULL,
    version INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (ns, type, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversations (
    ns TEXT NOT NULL, id TEXT NOT NULL, next_seq INTEGER NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (ns, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    ns TEXT NOT NULL, cid TEXT NOT NULL, seq INTEGER NOT NULL, message BLOB NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (ns, cid, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tool_usage (
    ns TEXT NOT NULL, id TEXT NOT NULL, tool_name TEXT NOT NULL, record BLOB NOT NULL,
    ts REAL NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tool_usage_by_tool ON tool_usage (ns, tool_name, ts, id);
"""


class SqliteOps:
    """aiosqlite with a reader and a writer connection, WAL, IMMEDIATE write transactions
    under a lock: the same shape as the embedded backend."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self.reader: Any = None
        self.writer: Any = None

    async def _open(self) -> Any:
        import aiosqlite

        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = await self._open()
        await self.writer.executescript(SQLITE_SCHEMA)
        self.reader = await self._open()

    async def close(self) -> None:
        for conn in (self.reader, self.writer):
            if conn is not None:
                await conn.close()

    @contextlib.asynccontextmanager
    async def _tx(self) -> Any:
        async with self._lock:
            await self.writer.execute("BEGIN IMMEDIATE")
            try:
                yield self.writer
            except BaseException:
                await self.writer.execute("ROLLBACK")
                raise
            await self.writer.execute("COMMIT")

    async def get_entity(self, ns: str, etype: str, eid: str) -> bytes | None:
        async with self.reader.execute(
            "SELECT data, version, created_at, updated_at FROM entities "
            "WHERE ns = ? AND type = ? AND id = ?",
            (ns, etype, eid),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return entity_body(etype, eid, row[0], row[1], row[2], row[3])

    async def put_entity(
        self, ns: str, etype: str, eid: str, data: bytes, expected: int | None
    ) -> tuple[int, bytes]:
        now = time.time()
        async with self._tx() as conn:
            async with conn.execute(
                "SELECT version, created_at FROM entities WHERE ns = ? AND type = ? AND id = ?",
                (ns, etype, eid),
            ) as cur:
                row = await cur.fetchone()
            current = row[0] if row else 0
            if expected is not None and expected != current:
                raise Conflict
            created = row[1] if row else now
            await conn.execute(
                "INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ns, type, id) "
                "DO UPDATE SET data = excluded.data, version = excluded.version, "
                "updated_at = excluded.updated_at",
                (ns, etype, eid, data, current + 1, created, now),
            )
        return current + 1, entity_body(etype, eid, data, current + 1, created, now)

    async def append(self, ns: str, cid: str, messages: list[bytes]) -> bytes:
        now = time.time()
        async with self._tx() as conn:
            async with conn.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?) ON CONFLICT (ns, id) DO UPDATE "
                "SET next_seq = next_seq + ?, updated_at = excluded.updated_at "
                "RETURNING next_seq",
                (ns, cid, len(messages) + 1, now, len(messages)),
            ) as cur:
                row = await cur.fetchone()
            first = row[0] - len(messages)
            rows = [(first + i, now, m) for i, m in enumerate(messages)]
            await conn.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?)",
                [(ns, cid, seq, m, now) for seq, _, m in rows],
            )
        return messages_body(cid, rows)

    async def load_last(self, ns: str, cid: str, limit: int) -> bytes:
        async with self.reader.execute(
            "SELECT seq, created_at, message FROM messages WHERE ns = ? AND cid = ? "
            "ORDER BY seq DESC LIMIT ?",
            (ns, cid, limit),
        ) as cur:
            rows = await cur.fetchall()
        return messages_body(cid, [(r[0], r[1], r[2]) for r in reversed(rows)])

    async def record_tool(self, ns: str, record: Json) -> bytes:
        body = orjson.dumps(record)
        async with self._tx() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO tool_usage VALUES (?, ?, ?, ?, ?)",
                (ns, record["id"], record["tool_name"], body, record["timestamp"]),
            )
        return body


# -- Redis (standalone and cluster) ------------------------------------------------------

SHARDS = 16

# KEYS: entity hash, index zset (same slot). ARGV: data, now, expected|"", id
PUT_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'v', 'c')
local v = tonumber(cur[1] or '0')
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= v then return {-1, ''} end
v = v + 1
local c = cur[2] or ARGV[2]
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'v', v, 'c', c, 'u', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return {v, c}
"""

# KEYS: meta hash, message list. ARGV: now, message... -> first seq
APPEND_LUA = """
local first = redis.call('LLEN', KEYS[2]) + 1
local items = {}
for i = 2, #ARGV do
  items[#items + 1] = tostring(first + i - 2) .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[i]
end
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('HSET', KEYS[1], 'u', ARGV[1])
return first
"""

# KEYS: records hash, time zset, per-tool zset, counts hash. ARGV: id, ts, tool, value
TOOL_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
return 1
"""


def _sha(src: str) -> str:
    return hashlib.sha1(src.encode()).hexdigest()  # noqa: S324 - Redis script id


def _shard(member: str) -> int:
    return binascii.crc32(member.encode()) % SHARDS


class RedisOps:
    """redis-py asyncio (hiredis parser), one Lua script per write, single-slot keys."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, cluster_nodes: str = "") -> None:
        self.host, self.port, self.cluster_nodes = host, port, cluster_nodes
        self.client: Any = None
        self.prefix = "rawbench:"

    async def start(self) -> None:
        if self.cluster_nodes:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            nodes = [
                ClusterNode(h, int(p))
                for h, p in (n.rsplit(":", 1) for n in self.cluster_nodes.split(","))
            ]
            self.client = RedisCluster(startup_nodes=nodes, max_connections=64)
            await self.client.initialize()
        else:
            from redis.asyncio import Redis

            self.client = Redis(host=self.host, port=self.port, max_connections=64)
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()

    async def _eval(self, src: str, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError

        try:
            return await self.client.execute_command("EVALSHA", _sha(src), len(keys), *keys, *args)
        except NoScriptError:
            return await self.client.execute_command("EVAL", src, len(keys), *keys, *args)

    def _ekeys(self, ns: str, etype: str, eid: str) -> list[str]:
        tag = f"{ns}|{etype}|{_shard(eid)}"
        return [f"{self.prefix}e:{{{tag}}}:{eid}", f"{self.prefix}ei:{{{tag}}}"]

    async def get_entity(self, ns: str, etype: str, eid: str) -> bytes | None:
        key = self._ekeys(ns, etype, eid)[0]
        d, v, c, u = await self.client.execute_command("HMGET", key, "d", "v", "c", "u")
        if d is None:
            return None
        return entity_body(etype, eid, d, int(v), float(c), float(u))

    async def put_entity(
        self, ns: str, etype: str, eid: str, data: bytes, expected: int | None
    ) -> tuple[int, bytes]:
        now = time.time()
        res = await self._eval(
            PUT_LUA,
            self._ekeys(ns, etype, eid),
            [data, repr(now), "" if expected is None else str(expected), eid],
        )
        version = int(res[0])
        if version < 0:
            raise Conflict
        return version, entity_body(etype, eid, data, version, float(res[1]), now)

    def _ckeys(self, ns: str, cid: str) -> list[str]:
        tag = f"{ns}|c|{cid}"
        return [f"{self.prefix}c:{{{tag}}}", f"{self.prefix}m:{{{tag}}}"]

    async def append(self, ns: str, cid: str, messages: list[bytes]) -> bytes:
        now = time.time()
        first = int(await self._eval(APPEND_LUA, self._ckeys(ns, cid), [repr(now), *messages]))
        return messages_body(cid, [(first + i, now, m) for i, m in enumerate(messages)])

    async def load_last(self, ns: str, cid: str, limit: int) -> bytes:
        items = await self.client.execute_command("LRANGE", self._ckeys(ns, cid)[1], -limit, -1)
        rows = []
        for it in items:
            seq, ts, raw = it.split(b"\n", 2)
            rows.append((int(seq), float(ts), raw))
        return messages_body(cid, rows)

    async def record_tool(self, ns: str, record: Json) -> bytes:
        tag = f"{ns}|t|{_shard(record['id'])}"
        p = self.prefix
        body = orjson.dumps(record)
        await self._eval(
            TOOL_LUA,
            [
                f"{p}th:{{{tag}}}",
                f"{p}tz:{{{tag}}}",
                f"{p}tt:{{{tag}}}:{record['tool_name']}",
                f"{p}tc:{{{tag}}}",
            ],
            [record["id"], repr(record["timestamp"]), record["tool_name"], body],
        )
        return body


# -- MongoDB (PyMongo async) -----------------------------------------------------------------


class MongoOps:
    """PyMongo's AsyncMongoClient: find_one / conditional update / insert, majority writes."""

    def __init__(self, uri: str, db: str = "rawbench") -> None:
        self.uri, self.dbname = uri, db
        self.client: Any = None

    async def start(self) -> None:
        from pymongo import ASCENDING, AsyncMongoClient

        # The service's defaults: majority write concern, journaled, retryable writes.
        self.client = AsyncMongoClient(
            self.uri, maxPoolSize=64, w="majority", journal=True, retryWrites=True
        )
        db = self.client[self.dbname]
        self.entities = db["entities"]
        self.conversations = db["conversations"]
        self.messages = db["messages"]
        self.tools = db["tool_usage"]
        await self.messages.create_index([("ns", ASCENDING), ("cid", ASCENDING), ("seq", -1)])
        await self.tools.create_index([("ns", ASCENDING), ("tool", ASCENDING), ("ts", ASCENDING)])

    async def close(self) -> None:
        await self.client.close()

    async def get_entity(self, ns: str, etype: str, eid: str) -> bytes | None:
        doc = await self.entities.find_one({"_id": f"{ns}/{etype}/{eid}"})
        if doc is None:
            return None
        return orjson.dumps(
            {
                "type": etype,
                "id": eid,
                "data": doc["d"],
                "version": doc["v"],
                "created_at": doc["c"],
                "updated_at": doc["u"],
                "expires_at": None,
            }
        )

    async def put_entity(
        self, ns: str, etype: str, eid: str, data: bytes, expected: int | None
    ) -> tuple[int, bytes]:
        from pymongo import ReturnDocument
        from pymongo.errors import DuplicateKeyError

        now = time.time()
        key = f"{ns}/{etype}/{eid}"
        doc_data = orjson.loads(data)  # stored as a BSON document, as a bare PyMongo app would
        if expected == 0:
            try:
                await self.entities.insert_one(
                    {"_id": key, "d": doc_data, "v": 1, "c": now, "u": now}
                )
            except DuplicateKeyError as exc:
                raise Conflict from exc
            return 1, entity_body(etype, eid, data, 1, now, now)
        flt: Json = {"_id": key}
        if expected is not None:
            flt["v"] = expected
        doc = await self.entities.find_one_and_update(
            flt,
            {"$set": {"d": doc_data, "u": now}, "$inc": {"v": 1}, "$setOnInsert": {"c": now}},
            upsert=expected is None,
            return_document=ReturnDocument.AFTER,  # no projection: FerretDB v1 rejects one
        )
        if doc is None:
            raise Conflict
        return doc["v"], entity_body(etype, eid, data, doc["v"], doc["c"], now)

    async def append(self, ns: str, cid: str, messages: list[bytes]) -> bytes:
        from pymongo import ReturnDocument

        now = time.time()
        meta = await self.conversations.find_one_and_update(
            {"_id": f"{ns}/{cid}"},
            {"$inc": {"n": len(messages)}, "$set": {"u": now}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        first = meta["n"] - len(messages) + 1
        rows = [(first + i, now, m) for i, m in enumerate(messages)]
        await self.messages.insert_many(
            [{"ns": ns, "cid": cid, "seq": s, "m": orjson.loads(m), "t": now} for s, _, m in rows]
        )
        return messages_body(cid, rows)

    async def load_last(self, ns: str, cid: str, limit: int) -> bytes:
        cursor = self.messages.find({"ns": ns, "cid": cid}).sort("seq", -1).limit(limit)
        docs = await cursor.to_list(limit)
        return orjson.dumps(
            {
                "items": [
                    {
                        "conversation_id": cid,
                        "seq": d["seq"],
                        "message": d["m"],
                        "created_at": d["t"],
                    }
                    for d in reversed(docs)
                ],
                "next_before": None,
            }
        )

    async def record_tool(self, ns: str, record: Json) -> bytes:
        from pymongo.errors import DuplicateKeyError

        body = orjson.dumps(record)
        doc = {
            "_id": f"{ns}/{record['id']}",
            "ns": ns,
            "tool": record["tool_name"],
            "ts": record["timestamp"],
            "r": record,
        }
        with contextlib.suppress(DuplicateKeyError):  # a retried id: already recorded
            await self.tools.insert_one(doc)
        return body


def make_ops(kind: str, **opts: Any) -> RawOps:
    if kind == "dict":
        return DictOps()
    if kind == "sqlite":
        return SqliteOps(Path(opts["path"]))
    if kind == "redis":
        return RedisOps(opts.get("host", "127.0.0.1"), int(opts["port"]))
    if kind == "redis-cluster":
        return RedisOps(cluster_nodes=opts["nodes"])
    if kind == "mongodb":
        return MongoOps(opts["uri"])
    raise ValueError(f"unknown raw backend {kind!r}")

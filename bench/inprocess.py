# ruff: noqa: S603 - the driver starts its own worker processes
"""``python -m bench.inprocess``: writes (and, with ``--ops get,last50``, reads) in process,
without HTTP: the embedded store through
``DistributedMemoryManager`` against LangGraph's ``AsyncSqliteStore`` and, with
``--reference-tree``, against another checkout's memstore.

Each side is a worker process of its own (one event loop, its own SQLite file), started
once and told what to run over its stdin: an operation, a concurrency (that many tasks
calling it in a loop) and a duration. A sample is the operations completed in that time
and the worker's CPU time (user + system, its threads included: aiosqlite's) per
operation. The two sides of a row alternate for ``--rounds`` rounds, the order flipped each
round, after a warm-up in each sample; the ratio is the median of the per-round ratios, as
in ``make bench``.

Durability is set alike on both sides of a row: memstore's ``MEMSTORE_EMBEDDED_SYNCHRONOUS``
(WAL journal) against the same ``journal_mode``/``synchronous`` on the peer's connection;
``lg-default`` is LangGraph's connection as ``from_conn_string`` opens it (SQLite's
defaults: rollback journal, ``synchronous=FULL``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import workload as W
from bench.procs import REPO, checkout_env

RESULTS = Path(__file__).resolve().parent / "results"

OPS = ("put", "append", "tool")
#: Reads, not run unless asked for (``--ops get,last50``): memstore's side reads the store
#: (``use_cache=False``), as the peer's does.
READ_OPS = ("get", "last50")
#: A worker: which store ("memstore", "memstore-ref", "langgraph") and its durability.
SYNCHRONOUS = ("normal", "full")


# -- the worker (one side) ------------------------------------------------------------------


async def memstore_ops(path: Path, synchronous: str) -> tuple[dict[str, Any], Any]:
    from memstore import DistributedMemoryManager
    from memstore.core.settings import Settings

    settings = Settings(memory_type="embedded", data_path=path, embedded_synchronous=synchronous)
    memory = DistributedMemoryManager(namespace=W.NAMESPACE, settings=settings)
    await memory.start()
    data, message, tool = W.entity_data(), W.message(), W.tool_body()

    async def put(i: int) -> None:
        await memory.save_entity(W.ENTITY_TYPE, f"e{i % W.ENTITIES}", data)

    async def append(i: int) -> None:
        await memory.append_messages([message], f"c{i % W.CONVERSATIONS}")

    async def record(i: int) -> None:
        await memory.save_tool_usage(
            tool["tool_name"], tool["input"], tool["output"], duration_ms=tool["duration_ms"]
        )

    async def get(i: int) -> None:
        entity = await memory.get_entity(W.ENTITY_TYPE, f"e{i % W.ENTITIES}", use_cache=False)
        assert entity is not None

    async def last50(i: int) -> None:
        assert len(await memory.load_messages(f"c{i % W.CONVERSATIONS}", limit=50)) == 50

    # what the reads read: every entity, and 50 messages in every conversation
    await asyncio.gather(
        *(memory.save_entity(W.ENTITY_TYPE, f"e{i}", data) for i in range(W.ENTITIES))
    )
    for c in range(W.CONVERSATIONS):
        await memory.append_messages([message] * 50, f"c{c}")
    ops = {"put": put, "append": append, "tool": record, "get": get, "last50": last50}
    return ops, memory


async def langgraph_ops(path: Path, journal: str) -> tuple[dict[str, Any], Any]:
    """``journal``: ``wal-normal``/``wal-full`` set those pragmas on the store's connection;
    ``default`` leaves SQLite's (rollback journal, ``synchronous=FULL``)."""
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    opened = AsyncSqliteStore.from_conn_string(str(path))
    store = await opened.__aenter__()
    if journal != "default":
        mode, sync = journal.split("-")
        await store.conn.execute(f"PRAGMA journal_mode={mode.upper()}")
        await store.conn.execute(f"PRAGMA synchronous={sync.upper()}")
    await store.setup()
    data, message, tool = W.entity_data(), W.message(), W.tool_body()
    counter = itertools.count()

    async def put(i: int) -> None:
        await store.aput((W.NAMESPACE, W.ENTITY_TYPE), f"e{i % W.ENTITIES}", data, index=False)

    # The store has no conversation log or tool-usage table: a message or a tool use is
    # an item of its own under the conversation's (or the tool log's) namespace.
    async def append(i: int) -> None:
        cid = f"c{i % W.CONVERSATIONS}"
        await store.aput((W.NAMESPACE, "conv", cid), f"m{next(counter)}", message, index=False)

    async def record(i: int) -> None:
        await store.aput((W.NAMESPACE, "tool"), f"t{next(counter)}", tool, index=False)

    async def get(i: int) -> None:
        assert await store.aget((W.NAMESPACE, W.ENTITY_TYPE), f"e{i % W.ENTITIES}") is not None

    for i in range(W.ENTITIES):
        await store.aput((W.NAMESPACE, W.ENTITY_TYPE), f"e{i}", data, index=False)
    return {"put": put, "append": append, "tool": record, "get": get}, opened


async def measure(
    op: Callable[[int], Awaitable[None]],
    concurrency: int,
    seconds: float,
    warmup: float,
    store_cpu: Callable[[], float] | None = None,
) -> dict[str, float]:
    """``concurrency`` tasks calling ``op`` in a loop; after ``warmup``, the operations
    done in ``seconds`` and this process's CPU per operation. ``store_cpu``: the CPU
    seconds so far of the store's server processes (Redis, PostgreSQL), read at the same
    instants and reported apart (``store_cpu_us_per_op``)."""
    done = 0
    progressed = asyncio.Event()
    counter = itertools.count()
    stop = False

    async def loop() -> None:
        nonlocal done
        while not stop:
            await op(next(counter))
            done += 1
            progressed.set()

    tasks = [asyncio.create_task(loop()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    server = store_cpu or (lambda: 0.0)
    n0, cpu0, srv0, t0 = done, sum(os.times()[:2]), server(), time.perf_counter()
    await asyncio.sleep(seconds)
    if done == n0:  # a sample has at least one operation (short samples of slow peers)
        progressed.clear()
        await progressed.wait()
    n1, cpu1, srv1, t1 = done, sum(os.times()[:2]), server(), time.perf_counter()
    stop = True
    await asyncio.gather(*tasks)
    ops = n1 - n0
    out = {
        "ops": ops,
        "seconds": t1 - t0,
        "ops_per_s": ops / (t1 - t0),
        "cpu_us_per_op": 1e6 * (cpu1 - cpu0) / max(1, ops),
    }
    if store_cpu is not None:
        out["store_cpu_us_per_op"] = 1e6 * (srv1 - srv0) / max(1, ops)
    return out


async def worker(store: str, durability: str, path: Path) -> None:
    if store == "langgraph":
        ops, handle = await langgraph_ops(path, durability)
    else:
        ops, handle = await memstore_ops(path, durability)
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": True}), flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        cmd = json.loads(line)
        result = await measure(ops[cmd["op"]], cmd["concurrency"], cmd["seconds"], cmd["warmup"])
        print(json.dumps(result), flush=True)
    if store == "langgraph":
        await handle.__aexit__(None, None, None)
    else:
        await handle.close()


# -- the driver ----------------------------------------------------------------------------


class Worker:
    #: The module whose ``--worker STORE DURABILITY PATH`` runs the side (bench.peers has its own).
    module = "bench.inprocess"

    def __init__(self, store: str, durability: str, workdir: Path, tree: Path | None) -> None:
        self.name = f"{store}/{durability}"
        env = {**os.environ, **(checkout_env(tree) if tree is not None else {})}
        path = workdir / f"{store}-{durability}.db"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--worker", store, durability, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            env=env,
            text=True,
        )
        self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited ({self.proc.wait()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def run(self, op: str, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        cmd = {"op": op, "concurrency": concurrency, "seconds": seconds, "warmup": warmup}
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rows(reference_tree: bool) -> list[tuple[str, str, str, str]]:
    """(title, reference worker, measured worker, operations)."""
    out = []
    if reference_tree:
        for sync in SYNCHRONOUS:
            out.append(
                (
                    f"memstore: this tree / reference tree (WAL, synchronous={sync.upper()})",
                    f"memstore-ref/{sync}",
                    f"memstore/{sync}",
                    "put,append,tool,get,last50",
                )
            )
    for sync in SYNCHRONOUS:
        out.append(
            (
                f"memstore / LangGraph AsyncSqliteStore (both WAL, synchronous={sync.upper()})",
                f"langgraph/wal-{sync}",
                f"memstore/{sync}",
                "put,append,tool,get",
            )
        )
    out.append(
        (
            "memstore (WAL, synchronous=FULL) / LangGraph AsyncSqliteStore (its default: "
            "rollback journal, synchronous=FULL)",
            "langgraph/default",
            "memstore/full",
            "put",
        )
    )
    return out


def median_ratio(pairs: list[tuple[float, float]]) -> float | None:
    ratios = [m / r for r, m in pairs if r > 0]
    return round(statistics.median(ratios), 3) if ratios else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    p.add_argument(
        "--worker", nargs=3, metavar=("STORE", "DURABILITY", "PATH"), help=argparse.SUPPRESS
    )
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--concurrency", default="1,16", help="comma-separated, e.g. 1,16")
    p.add_argument(
        "--ops", default=",".join(OPS), help=f"comma-separated, of {', '.join(OPS + READ_OPS)}"
    )
    p.add_argument("--only", help="regex on a row's title")
    p.add_argument("--reference-tree", type=Path, help="another checkout: adds this / that rows")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.worker:
        store, durability, path = args.worker
        asyncio.run(worker(store, durability, Path(path)))
        return 0

    import re

    ops = [o for o in args.ops.split(",") if o]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    selected = [
        r
        for r in rows(args.reference_tree is not None)
        if args.only is None or re.search(args.only, r[0])
    ]
    started = dt.datetime.now(dt.UTC)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memstore-inprocess-") as tmp:
        workers: dict[str, Worker] = {}

        def get(name: str) -> Worker:
            if name not in workers:
                store, durability = name.split("/")
                tree = args.reference_tree if store == "memstore-ref" else None
                workers[name] = Worker(store, durability, Path(tmp), tree)
            return workers[name]

        try:
            for title, ref, meas, row_ops in selected:
                for op in (o for o in ops if o in row_ops.split(",")):
                    for c in concurrencies:
                        samples: dict[str, list[dict[str, Any]]] = {"ref": [], "meas": []}
                        for rnd in range(args.rounds):
                            order = [("ref", ref), ("meas", meas)]
                            for side, name in order if rnd % 2 == 0 else order[::-1]:
                                samples[side].append(
                                    get(name).run(op, c, args.seconds, args.warmup)
                                )
                        res = summarise(title, ref, meas, op, c, samples)
                        results.append(res)
                        print(line(res), file=sys.stderr, flush=True)
        finally:
            for w in workers.values():
                w.stop()
    report = {
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "reference_tree": str(args.reference_tree) if args.reference_tree else None,
        },
        "rows": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"inprocess-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(markdown(results))
    print(f"results: {path}", file=sys.stderr)
    return 0


def summarise(
    title: str, ref: str, meas: str, op: str, c: int, samples: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    def med(side: str, key: str) -> float:
        return float(statistics.median(s[key] for s in samples[side]))

    rps = list(
        zip(
            (s["ops_per_s"] for s in samples["ref"]),
            (s["ops_per_s"] for s in samples["meas"]),
            strict=True,
        )
    )
    cpu_ref, cpu_meas = med("ref", "cpu_us_per_op"), med("meas", "cpu_us_per_op")
    return {
        "title": title,
        "reference": ref,
        "measured": meas,
        "op": op,
        "concurrency": c,
        "ref_ops_per_s": round(med("ref", "ops_per_s")),
        "meas_ops_per_s": round(med("meas", "ops_per_s")),
        "ratio": median_ratio(rps),
        "ref_cpu_us_per_op": round(cpu_ref),
        "meas_cpu_us_per_op": round(cpu_meas),
        "cpu_ratio": round(cpu_ref / cpu_meas, 3) if cpu_meas else None,
        "samples": samples,
    }


def line(r: dict[str, Any]) -> str:
    return (
        f"{r['measured']} vs {r['reference']} {r['op']} c={r['concurrency']}: "
        f"{r['meas_ops_per_s']} / {r['ref_ops_per_s']} op/s ({r['ratio']}), CPU µs/op "
        f"{r['meas_cpu_us_per_op']} / {r['ref_cpu_us_per_op']} ({r['cpu_ratio']})"
    )


def markdown(results: list[dict[str, Any]]) -> str:
    out = []
    for title, group in itertools.groupby(results, key=lambda r: r["title"]):
        out += [
            f"\n**{title}**\n",
            "| op | concurrency | measured op/s | reference op/s | ratio | "
            "CPU µs/op measured / reference | CPU ratio (ref ÷ meas) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['op']} | {r['concurrency']} | {r['meas_ops_per_s']:,} | "
            f"{r['ref_ops_per_s']:,} | {r['ratio']} | {r['meas_cpu_us_per_op']} / "
            f"{r['ref_cpu_us_per_op']} | {r['cpu_ratio']} |"
            for r in group
        ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())

# ruff: noqa: S603 - runs this module in a child process per checkout, by design
"""What a listing page costs on Redis and the Redis Cluster: round trips, commands, CPU.

``python -m bench.listings [--items 1000] [--calls 200] [--rounds 3] [--reference-tree <checkout>]``
seeds one namespace per side with ``--items`` entities of ~1 KB (one type), ``--items``
tool uses and one conversation of ``--items`` messages, then calls, ``--calls`` times each,
the backend's listings (no HTTP: the cost of the backend alone):

* ``entity-page``: ``list_entities(limit=50)``, alternately the first page and the page
  after a cursor in the middle;
* ``tool-range``: ``query_tool_usage(start, end, limit=50)`` over a range in the middle;
* ``last-50``: ``load_messages(limit=50)``.

Per call it reports the round trips (requests the service waited for: one command, or one
pipeline, which a cluster client sends to its nodes in parallel), the commands the Redis
servers executed (``INFO commandstats`` delta, summed over the masters), the service's
CPU (``time.process_time``) and the Redis servers' CPU (``INFO cpu``), each per call and
the service CPU per listed item. With ``--reference-tree`` the same worker runs on the
other checkout's ``memstore`` too (``bench.procs.checkout_env``), on the same servers under
its own key prefix, the two sides' rounds alternating.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench.procs import REPO, Procs, checkout_env, run_json_module
from bench.sections import Section, value_only

NS = "bench-listings"
LIMIT = 50
OPS = ("entity-page", "tool-range", "last-50")


def _servers(ports: list[int]) -> list[Any]:
    import redis

    return [redis.Redis(port=p) for p in ports]


def _commands(clients: list[Any]) -> int:
    """Commands executed so far by the masters (replicas' replication traffic left out)."""
    total = 0
    for c in clients:
        if c.info("replication")["role"] != "master":
            continue
        for name, stats in c.info("commandstats").items():
            if name not in ("cmdstat_info",):
                total += int(stats["calls"])
    return total


def _redis_cpu(clients: list[Any]) -> float:
    total = 0.0
    for c in clients:
        info = c.info("cpu")
        total += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    return total


class _Trips:
    """Counts the requests the backend waits for by wrapping its connection object's
    send methods (the worker's own instance: nothing in the service changes)."""

    def __init__(self, connection: Any) -> None:
        self.n = 0
        for name in ("execute", "eval", "pipeline", "read"):
            if hasattr(connection, name):
                setattr(connection, name, self._counted(getattr(connection, name)))

    def _counted(self, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.n += 1
            return await call(*args, **kwargs)

        return counted


async def _seed(backend: Any, items: int) -> None:
    from memstore.core.records import ToolUsageRecord

    sem = asyncio.Semaphore(32)
    body = {"name": "x" * 40, "bio": "lorem ipsum " * 70, "tags": ["a", "b", "c"], "n": 1}

    async def put(i: int) -> None:
        async with sem:
            await backend.save_entity(NS, "profile", f"p{i:06d}", {**body, "n": i})

    async def tool(i: int) -> None:
        async with sem:
            rec = ToolUsageRecord(
                id=f"t{i:06d}",
                tool_name=("search", "fetch", "calc")[i % 3],
                input={"q": "what is the weather in " + "x" * 60},
                output={"result": "sunny " * 30},
                duration_ms=12.5,
                success=True,
                timestamp=1_700_000_000.0 + i,
            )
            await backend.record_tool_usage(NS, rec)

    await asyncio.gather(*(put(i) for i in range(items)))
    await asyncio.gather(*(tool(i) for i in range(items)))
    message = {"role": "user", "content": "hello there " * 18}
    for start in range(0, items, 100):
        await backend.append_messages(NS, "c1", [message] * min(100, items - start))


async def _worker(nodes: str, port: int, prefix: str, items: int, calls: int) -> dict[str, Any]:
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.backends.sealed import build_sealed
    from memstore.core.settings import Settings

    ports = [int(p.rsplit(":", 1)[1]) for p in nodes.split(",")] if nodes else [port]
    settings = Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=port or 6379,
        redis_cluster_nodes=nodes,
        redis_prefix=prefix,
    )
    inner = DistributedMemoryFactory.create_memory_backend(settings)
    backend = build_sealed(inner, settings)
    await backend.connect()
    clients = _servers(ports)
    trips = _Trips(inner.connection)  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    try:
        first = await inner.list_entities(NS, "profile", limit=1)
        if not first.items:
            await _seed(backend, items)
        middle = (await backend.list_entities(NS, "profile", limit=items // 2)).next_cursor
        t0 = 1_700_000_000.0 + items / 4

        async def entity_page(i: int) -> int:
            page = await backend.list_entities(
                NS, "profile", limit=LIMIT, cursor=middle if i % 2 else None
            )
            return len(page.items)

        async def tool_range(i: int) -> int:
            page = await backend.query_tool_usage(NS, start=t0, end=t0 + items / 2, limit=LIMIT)
            return len(page.items)

        async def last_50(i: int) -> int:
            return len(await backend.load_messages(NS, "c1", limit=LIMIT))

        ops: dict[str, Callable[[int], Awaitable[int]]] = {
            "entity-page": entity_page,
            "tool-range": tool_range,
            "last-50": last_50,
        }
        for name, op in ops.items():
            for i in range(min(20, calls)):  # warm-up: scripts loaded, connections open
                await op(i)
            listed = 0
            trips.n = 0
            commands, redis_cpu = _commands(clients), _redis_cpu(clients)
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(calls):
                listed += await op(i)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[name] = {
                "items": listed / calls,
                "round_trips": trips.n / calls,
                "commands": (_commands(clients) - commands) / calls,
                "service_cpu_us": cpu * 1e6 / calls,
                "service_cpu_us_per_item": cpu * 1e6 / max(listed, 1),
                "redis_cpu_us": (_redis_cpu(clients) - redis_cpu) * 1e6 / calls,
                "wall_us": wall * 1e6 / calls,
            }
    finally:
        for c in clients:
            c.close()
        await backend.close()
    return out


def _run_side(
    tree: Path | None, nodes: str, port: int, prefix: str, items: int, calls: int
) -> dict[str, Any]:
    env = dict(os.environ)
    path = [str(REPO)]
    if tree is not None:
        path.insert(0, checkout_env(tree)["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    done = subprocess.run(
        [sys.executable, "-m", "bench.listings", "--worker", "--nodes", nodes,
         "--port", str(port), "--prefix", prefix, "--items", str(items),
         "--calls", str(calls)],
        env=env, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"worker failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(
    items: int, calls: int, rounds: int, reference_tree: Path | None, cluster: bool = True
) -> list[dict[str, Any]]:
    """Rows ``{backend, side, op, <medians of the per-call figures>}``."""
    sides: dict[str, Path | None] = {"this tree": None}
    if reference_tree is not None:
        sides["reference tree"] = reference_tree
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-listings-") as tmp:
        procs = Procs(Path(tmp))
        try:
            targets = {"redis": ("", procs.redis("redis"))}
            if cluster:
                ports = procs.redis_cluster("cluster")
                targets["redis-cluster"] = (",".join(f"127.0.0.1:{p}" for p in ports), 0)
            for backend, (nodes, port) in targets.items():
                results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
                for r in range(rounds):
                    order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
                    for name, tree in order:
                        prefix = f"ls{list(sides).index(name)}:"
                        results[name].append(_run_side(tree, nodes, port, prefix, items, calls))
                for name, per_round in results.items():
                    for op in OPS:
                        fields = per_round[0][op].keys()
                        rows.append(
                            {
                                "backend": backend,
                                "side": name,
                                "op": op,
                                **{
                                    f: statistics.median(r[op][f] for r in per_round)
                                    for f in fields
                                },
                            }
                        )
        finally:
            procs.stop_all()
    return rows


def in_process_of_its_own(rounds: int, reference_tree: Path | None) -> list[dict[str, Any]]:
    """``python -m bench.listings --json`` in a process of its own: ``make bench``'s row
    ``listings/redis`` (its CPU time is its own)."""
    print("## listings/redis", file=sys.stderr)
    args = ["--json", "--rounds", str(rounds)]
    if reference_tree is not None:
        args += ["--reference-tree", str(reference_tree)]
    rows: list[dict[str, Any]] = run_json_module("bench.listings", args)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        "Listings on Redis, the backend alone (`python -m bench.listings`): per call, "
        f"a page of {LIMIT}",
        "",
        "| backend | side | listing | items | round trips | commands | service CPU µs "
        "| µs/item | Redis CPU µs | wall µs |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['side']} | {r['op']} | {r['items']:.0f} "
            f"| {r['round_trips']:.2f} | {r['commands']:.1f} | {r['service_cpu_us']:.0f} "
            f"| {r['service_cpu_us_per_item']:.1f} | {r['redis_cpu_us']:.0f} "
            f"| {r['wall_us']:.0f} |"
        )
    return "\n".join(lines)


#: ``report["listings"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (
    Section(
        "listings",
        "Listings on Redis: round trips and CPU per page",
        value_only(markdown),
        order=55,
    ),
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.listings", description=__doc__)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-cluster", action="store_true", help="standalone Redis only")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--reference-tree", type=Path)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--nodes", default="", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        out = asyncio.run(_worker(a.nodes, a.port, a.prefix, a.items, a.calls))
        print(json.dumps(out))
        return 0
    rows = run(a.items, a.calls, a.rounds, a.reference_tree, cluster=not a.no_cluster)
    if a.json:
        print(json.dumps(rows))
    else:
        print(
            f"{a.items:,} items per kind, {a.calls} calls per listing a round, "
            f"{a.rounds} rounds (medians), limit {LIMIT}"
        )
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Batch writes over HTTP: one ``POST entities:batch`` of 50 items against 50 single PUTs.

``python -m bench.batch`` (``make bench`` runs it in a process of its own, the rows
``batch/<backend>``) starts ``memstore serve`` on each backend it can (embedded always;
Redis when ``redis-server`` is on ``PATH``), then alternates rounds of the two sides for
``--seconds`` each after a warm-up, order flipped each round, same client, same keys:

* **single**: 50 ``PUT entities/{type}/{id}`` requests one after the other, by each of
  16 concurrent clients (16 requests in flight; aiohttp client);
* **batch**: one ``POST entities:batch`` with the same 50 items, by each of 16 concurrent
  clients (16 batches in flight).

Reported per side: entity saves per second (medians over rounds), the service's CPU per
save (user + system of its process, from /proc, over the round) and the backend's CPU
per save where it is a process of its own (Redis); the ratio is batch / single.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import Procs, cpu_seconds, redis_pid, run_json_module
from bench.sections import Section, value_only

ITEMS = 50
IN_FLIGHT = 16
NS = "/v1/namespaces/bench-batch"
PAYLOAD = {"name": "Ada", "facts": [f"fact {i}: remembered" for i in range(8)], "score": 0.5}


async def _single(session: aiohttp.ClientSession, url: str, round_no: int, k: int) -> None:
    for i in range(ITEMS):
        async with session.put(
            f"{url}{NS}/entities/doc/r{round_no}-k{k}-{i}", json={"data": PAYLOAD}
        ) as resp:
            assert resp.status in (200, 201), await resp.text()


async def _batch(session: aiohttp.ClientSession, url: str, round_no: int, k: int) -> None:
    items = [{"type": "doc", "id": f"r{round_no}-k{k}-{i}", "data": PAYLOAD} for i in range(ITEMS)]
    async with session.post(f"{url}{NS}/entities:batch", json={"items": items}) as resp:
        assert resp.status == 200, await resp.text()


async def _side(
    url: str, batch: bool, seconds: float, round_no: int, pids: list[int], store: list[int]
) -> dict[str, float]:
    """Saves per second and CPU per save of one side for ``seconds``."""
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        saves = 0
        counter = iter(range(10**9))
        deadline = time.perf_counter() + seconds
        cpu0, store0, t0 = cpu_seconds(pids), cpu_seconds(store), time.perf_counter()

        async def worker() -> None:
            nonlocal saves
            while time.perf_counter() < deadline:
                k = next(counter)
                if batch:
                    await _batch(session, url, round_no, k)
                else:
                    await _single(session, url, round_no, k)
                saves += ITEMS

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - t0
        cpu, store_cpu = cpu_seconds(pids) - cpu0, cpu_seconds(store) - store0
    return {
        "saves_per_s": saves / elapsed,
        "service_us_per_save": cpu / saves * 1e6,
        "store_us_per_save": store_cpu / saves * 1e6 if store else 0.0,
    }


def _backend(procs: Procs, name: str, rounds: int, seconds: float) -> dict[str, Any]:
    store: list[int] = []
    env = {"MEMORY_TYPE": "embedded"}
    if name == "redis":
        port = procs.redis("redis-batch")
        store = [redis_pid(port)]
        env = {"MEMORY_TYPE": "redis", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
    url, proc = procs.service(f"svc-batch-{name}", env)
    results: dict[str, list[dict[str, float]]] = {"single": [], "batch": []}
    # warm-up (connections, scripts, SQLite pages), not counted
    asyncio.run(_side(url, True, 0.5, -1, [proc.pid], store))
    asyncio.run(_side(url, False, 0.5, -2, [proc.pid], store))
    for r in range(rounds):
        order = ["single", "batch"] if r % 2 == 0 else ["batch", "single"]
        for side in order:
            sample = asyncio.run(_side(url, side == "batch", seconds, r, [proc.pid], store))
            results[side].append(sample)
    procs.stop(proc)
    row: dict[str, Any] = {"backend": name, "items": ITEMS}
    for side, samples in results.items():
        row[side] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    row["ratio"] = row["batch"]["saves_per_s"] / row["single"]["saves_per_s"]
    return row


def bench_in_process(rounds: int, seconds: float, backends: list[str]) -> list[dict[str, Any]]:
    """``python -m bench.batch`` in a process of its own (its client CPU is its own), for
    ``make bench`` (rows ``batch/embedded``, ``batch/redis``)."""
    print(f"## batch/{','.join(backends)}", file=sys.stderr)
    rows: list[dict[str, Any]] = run_json_module(
        "bench.batch",
        [
            "--json",
            "--rounds",
            f"{rounds}",
            "--seconds",
            f"{seconds}",
            "--backends",
            ",".join(backends),
        ],
    )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = [
        f"### Batch writes: one `POST entities:batch` of {ITEMS} vs {ITEMS} PUTs",
        "",
        "| backend | single saves/s | batch saves/s | batch ÷ single | service µs CPU per save "
        "(single → batch) | store µs CPU per save (single → batch) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s, b = r["single"], r["batch"]
        lines.append(
            f"| {r['backend']} | {s['saves_per_s']:,.0f} | {b['saves_per_s']:,.0f} "
            f"| {r['ratio']:.2f} | {s['service_us_per_save']:.0f} → "
            f"{b['service_us_per_save']:.0f} | {s['store_us_per_save']:.0f} → "
            f"{b['store_us_per_save']:.0f} |"
        )
    return "\n".join(lines)


#: ``report["batch"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (Section("batch", "Batch writes", value_only(markdown), order=50),)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--backends", default="embedded,redis")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        procs = Procs(Path(tmp))
        try:
            for name in args.backends.split(","):
                if name == "redis" and shutil.which("redis-server") is None:
                    print("batch/redis: skipped, no redis-server on PATH", file=sys.stderr)
                    continue
                rows.append(_backend(procs, name, args.rounds, args.seconds))
        finally:
            procs.stop_all()
    print(json.dumps(rows) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

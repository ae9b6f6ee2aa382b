"""Analytics routes at scale: ``python -m bench.analytics``.

Per backend (embedded, Redis standalone), one namespace of 100,000 entities (~100 bytes,
5 types), 10,000 tool uses (5 tools, spread over the last 48 hours), 100 conversations of
50 messages and 2,000 feedback records with a rating, seeded through the backend; then a
real ``memstore serve`` answers each analytics call over HTTP, one request at a time. The
reference, in the same run and alternating with each call round by round, is
``GET .../summary`` (the aggregate the service already had). Printed per call: p50, p99
and max latency, the ratio of its p50 to the summary's, and CPU per request of the service
process and (Redis) of redis-server, from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import Procs, cpu_seconds, redis_pid

NS = "bench"
CALLS = {
    "summary (reference)": ("/summary", {}),
    "overview": ("/analytics/overview", {}),
    "growth entities": ("/analytics/growth", {"kind": "entities"}),
    "growth messages": ("/analytics/growth", {"kind": "messages"}),
    "growth tool_usage": ("/analytics/growth", {"kind": "tool_usage"}),
    "growth feedback": ("/analytics/growth", {"kind": "feedback"}),
    "tools (hour, 48 h)": ("/analytics/tools", {}),
    "tools (day, 30 d)": ("/analytics/tools", {"bucket": "day"}),
    "feedback": ("/analytics/feedback", {}),
}


async def seed(settings: Any, entities: int, tools: int) -> float:
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.core.records import FeedbackRecord, ToolUsageRecord

    backend = DistributedMemoryFactory.create_memory_backend(settings)
    await backend.connect()
    started = time.perf_counter()
    rng = random.Random(7)
    now = time.time()
    sem = asyncio.Semaphore(64)

    async def bounded(coro: Any) -> None:
        async with sem:
            await coro

    try:
        await asyncio.gather(
            *(
                bounded(
                    backend.save_entity(
                        NS, f"type{i % 5}", f"e{i:06d}", {"n": i, "text": "x" * 80}
                    )
                )
                for i in range(entities)
            )
        )
        await asyncio.gather(
            *(
                bounded(
                    backend.record_tool_usage(
                        NS,
                        ToolUsageRecord(
                            id=f"u{i:06d}",
                            tool_name=f"tool{i % 5}",
                            input={"q": i},
                            output={"ok": True},
                            duration_ms=rng.lognormvariate(3, 1.2),
                            success=rng.random() > 0.1,
                            timestamp=now - rng.random() * 48 * 3600,
                        ),
                    )
                )
                for i in range(tools)
            )
        )
        await asyncio.gather(
            *(
                bounded(backend.append_messages(NS, f"c{c}", [{"role": "user", "t": "hi"}] * 50))
                for c in range(100)
            )
        )
        await asyncio.gather(
            *(
                bounded(
                    backend.save_feedback(
                        NS,
                        FeedbackRecord(
                            f"f{i}", "bot", "rating", {"rating": i % 5 + 1}, now - i * 60
                        ),
                    )
                )
                for i in range(2000)
            )
        )
    finally:
        await backend.close()
    return time.perf_counter() - started


async def measure(
    url: str, pids: list[int], store_pids: list[int], rounds: int, per_round: int
) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in CALLS}
    cpu: dict[str, list[float]] = {name: [] for name in CALLS}
    store_cpu: dict[str, list[float]] = {name: [] for name in CALLS}
    async with aiohttp.ClientSession() as session:

        async def one(name: str) -> None:
            path, params = CALLS[name]
            full = f"{url}/v1/namespaces/{NS}{path}"
            c0, s0 = cpu_seconds(pids), cpu_seconds(store_pids)
            for _ in range(per_round):
                t = time.perf_counter()
                async with session.get(full, params=params) as resp:
                    await resp.read()
                    assert resp.status == 200, (name, resp.status)
                samples[name].append(time.perf_counter() - t)
            cpu[name].append((cpu_seconds(pids) - c0) / per_round)
            store_cpu[name].append((cpu_seconds(store_pids) - s0) / per_round)

        for name in CALLS:  # warm-up
            await one(name)
            samples[name].clear()
            cpu[name].clear()
            store_cpu[name].clear()
        for r in range(rounds):
            for name in list(CALLS)[1:]:
                order = ["summary (reference)", name]
                for side in order if r % 2 == 0 else reversed(order):
                    await one(side)
    out: dict[str, Any] = {}
    ref = statistics.median(samples["summary (reference)"])
    for name, values in samples.items():
        values.sort()
        out[name] = {
            "requests": len(values),
            "p50_ms": statistics.median(values) * 1000,
            "p99_ms": values[max(0, -(-99 * len(values) // 100) - 1)] * 1000,
            "max_ms": values[-1] * 1000,
            "ratio_to_summary": statistics.median(values) / ref,
            "service_cpu_ms": statistics.median(cpu[name]) * 1000,
            "store_cpu_ms": statistics.median(store_cpu[name]) * 1000,
        }
    return out


def run_backend(
    procs: Procs, backend: str, entities: int, tools: int, rounds: int, per_round: int
) -> dict[str, Any]:
    from memstore.core.settings import Settings

    store_pids: list[int] = []
    if backend == "redis":
        port = procs.redis("redis")
        store_pids = [redis_pid(port)]
        env = {"MEMORY_TYPE": "redis", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
        settings = Settings(memory_type="redis", redis_host="127.0.0.1", redis_port=port)
    else:
        path = procs.workdir / "embedded" / "memstore.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {"MEMORY_TYPE": "embedded", "MEMSTORE_DATA_PATH": str(path)}
        settings = Settings(memory_type="embedded", data_path=str(path))
    seconds = asyncio.run(seed(settings, entities, tools))
    print(f"{backend}: seeded in {seconds:.0f} s", file=sys.stderr)
    url, proc = procs.service(
        f"service-{backend}", {**env, "MEMSTORE_REQUEST_TIMEOUT_SECONDS": "60"}
    )
    result = asyncio.run(measure(url, [proc.pid], store_pids, rounds, per_round))
    procs.stop(proc)
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Namespace: {report['entities']:,} entities, {report['tools']:,} tool uses, "
        "5,000 messages, 2,000 feedback records; one request at a time.",
        "",
        "| backend | call | p50 ms | p99 ms | max ms | p50 / summary | service CPU ms/req "
        "| store CPU ms/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend, rows in report["backends"].items():
        for name, r in rows.items():
            lines.append(
                f"| {backend} | {name} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['max_ms']:.1f} | {r['ratio_to_summary']:.2f} | {r['service_cpu_ms']:.1f} "
                f"| {r['store_cpu_ms']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="embedded,redis")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--tools", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"entities": args.entities, "tools": args.tools, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        procs = Procs(Path(tmp))
        try:
            for backend in args.backends.split(","):
                report["backends"][backend] = run_backend(
                    procs, backend, args.entities, args.tools, args.rounds, args.per_round
                )
        finally:
            procs.stop_all()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench.retention``: request latency while retention prunes a large backlog.

One process, one event loop, one ``DistributedMemoryManager``, as in ``memstore serve``: a
load of ``--concurrency`` tasks reads (cache off: every read reaches the backend) and
saves 1 KB entities in the namespace ``live``, while the namespace ``backlog`` holds
``--backlog`` entities and conversations of 30 messages that the policy (entities older
than a second, conversations beyond 10 messages) selects when judged an hour later. Each
round has two phases of ``--seconds``: without pruning, and with the pruning the
background task does (``prune_namespace``: batches of ``--batch`` per kind, paced as in
the service), in alternating order (ABBA); the backlog is written again
before each round (not timed). The figure is each phase's p50/p99 over all rounds, and
the ratio of the p99s (target: within 1.2).

    python -m bench.retention --backend embedded --backlog 20000
    python -m bench.retention --backend redis --backlog 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import workload as W
from bench.procs import Procs

HOUR = 3600.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def run(args: argparse.Namespace, settings: Any) -> dict[str, Any]:
    from memstore import DistributedMemoryManager
    from memstore.core.retention import RetentionPolicy

    policy = RetentionPolicy(entity_max_age_seconds=1.0, conversation_max_messages=10)
    data = W.entity_data()
    async with DistributedMemoryManager(namespace="live", settings=settings) as memory:
        backlog = memory.for_namespace("backlog")
        for i in range(200):
            await memory.save_entity("doc", f"e{i}", data)

        async def fill() -> None:
            async def writer(k: int) -> None:
                for i in range(k, args.backlog, 16):
                    await backlog.save_entity("old", f"o{i}", data)
                    if i % 10 == 0:
                        await backlog.append_messages([W.message()] * 30, f"c{i}")

            await asyncio.gather(*(writer(k) for k in range(16)))

        latencies: dict[str, list[float]] = {"idle": [], "pruning": []}
        pruned = {"items": 0}

        async def load(phase: str, until: float) -> None:
            i = 0
            out = latencies[phase]
            while time.perf_counter() < until:
                key = f"e{i % 200}"
                began = time.perf_counter()
                if i % 2:
                    await memory.save_entity("doc", key, data)
                else:
                    await memory.get_entity("doc", key, use_cache=False)
                out.append(time.perf_counter() - began)
                i += 1

        async def prune(until: float) -> None:
            # the background task's own loop (batches, pacing), stopped at the phase's end
            before = await backlog_items()
            await memory.prune_namespace(
                "backlog",
                now=time.time() + HOUR,
                policy=policy,
                until=time.monotonic() + (until - time.perf_counter()),
            )
            pruned["items"] += before - await backlog_items()

        async def backlog_items() -> int:
            summary = await backlog.get_memory_summary_data()
            return summary.total_entities + summary.messages

        async def phase(name: str) -> None:
            until = time.perf_counter() + args.seconds
            tasks = [load(name, until) for _ in range(args.concurrency)]
            if name == "pruning":
                tasks.append(prune(until))
            await asyncio.gather(*tasks)

        for r in range(args.rounds):
            await fill()
            order = ("idle", "pruning") if r % 2 == 0 else ("pruning", "idle")
            for name in order:
                await phase(name)
        result: dict[str, Any] = {"backend": settings.memory_type, "backlog": args.backlog}
        for name, values in latencies.items():
            result[name] = {
                "requests": len(values),
                "p50_ms": round(1000 * statistics.median(values), 3),
                "p99_ms": round(1000 * _percentile(values, 0.99), 3),
            }
        result["p99_ratio"] = round(result["pruning"]["p99_ms"] / result["idle"]["p99_ms"], 3)
        result["pruned_items"] = pruned["items"]
        # over the whole pruning phases: the pacing's pauses included
        result["pruned_per_second"] = round(pruned["items"] / (args.rounds * args.seconds), 1)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("embedded", "redis"), default="embedded")
    parser.add_argument("--backlog", type=int, default=20_000, help="entities per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--share", type=float, default=0.05, help="MEMSTORE_RETENTION_MAX_SHARE")
    parser.add_argument("--pause", type=float, default=0.02)
    args = parser.parse_args(argv)
    from memstore.core.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        procs = Procs(Path(tmp))
        try:
            common: dict[str, Any] = {
                "cache_ttl_seconds": 0,
                "retention_enforce": False,
                "retention_batch": args.batch,
                "retention_pause_seconds": args.pause,
                "retention_max_share": args.share,
            }
            if args.backend == "redis":
                port = procs.redis("redis")
                settings = Settings(
                    memory_type="redis", redis_host="127.0.0.1", redis_port=port, **common
                )
            else:
                settings = Settings(
                    memory_type="embedded", data_path=Path(tmp) / "memstore.db", **common
                )
            result = asyncio.run(run(args, settings))
        finally:
            procs.stop_all()
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

# ruff: noqa: S603 - runs this module in a child process per checkout, by design
"""What one ``logical_bytes`` call costs on a large namespace (Redis backend).

``python -m bench.logical_bytes [--entities 10000] [--calls 20] [--reference-tree <checkout>]``
seeds one namespace with ``--entities`` entity profiles (``bench.atrest.payloads``)
through the at-rest layer (compression on: the profiles are stored sealed), then calls
``logical_bytes`` ``--calls`` times and reports the wall ms per call and the Redis
server's CPU ms per call (``INFO cpu``), plus the first call alone (where a shard's
logical counter is first read: the one-time backfill). With ``--reference-tree`` the same
worker runs on the other checkout's ``memstore`` too (``bench.procs.checkout_env``: same
interpreter and libraries), on the same Redis server under its own key prefix, the two
sides' measuring rounds alternating.
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
from pathlib import Path
from typing import Any

from bench.procs import REPO, Procs, checkout_env

NS = "bench-lb"


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _worker(port: int, prefix: str, entities: int, calls: int, seed: bool) -> dict[str, Any]:
    import redis
    from bench.atrest import payloads
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.backends.sealed import build_sealed
    from memstore.core.settings import Settings

    settings = Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=port,
        redis_prefix=prefix,
        compression_min_bytes=256,
    )
    inner = DistributedMemoryFactory.create_memory_backend(settings)
    backend = build_sealed(inner, settings)
    await backend.connect()
    client = redis.Redis(port=port)
    out: dict[str, Any] = {}
    try:
        if seed:
            values = payloads("entity profile", 200)
            sem = asyncio.Semaphore(32)

            async def put(i: int) -> None:
                async with sem:
                    await backend.save_entity(NS, "profile", f"p{i}", values[i % len(values)])

            await asyncio.gather(*(put(i) for i in range(entities)))
            t, cpu = time.perf_counter(), _redis_cpu(client)
            out["first"] = await backend.logical_bytes(NS)
            out["first_ms"] = (time.perf_counter() - t) * 1000
            out["first_store_cpu_ms"] = (_redis_cpu(client) - cpu) * 1000
        wall: list[float] = []
        t_cpu = _redis_cpu(client)
        for _ in range(calls):
            t = time.perf_counter()
            out["value"] = await backend.logical_bytes(NS)
            wall.append((time.perf_counter() - t) * 1000)
        out["ms"] = wall
        out["store_cpu_ms"] = (_redis_cpu(client) - t_cpu) * 1000 / calls
    finally:
        client.close()
        await backend.close()
    return out


def _run_side(
    tree: Path | None, port: int, prefix: str, entities: int, calls: int, seed: bool
) -> dict[str, Any]:
    env = dict(os.environ)
    path = [str(REPO)]
    if tree is not None:
        path.insert(0, checkout_env(tree)["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(path)
    done = subprocess.run(
        [sys.executable, "-m", "bench.logical_bytes", "--worker", "--port", str(port),
         "--prefix", prefix, "--entities", str(entities), "--calls", str(calls),
         "--seed", str(int(seed))],
        env=env, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"worker failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.logical_bytes", description=__doc__)
    p.add_argument("--entities", type=int, default=10_000)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reference-tree", type=Path)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        out = asyncio.run(_worker(a.port, a.prefix, a.entities, a.calls, bool(a.seed)))
        print(json.dumps(out))
        return 0
    sides: dict[str, Path | None] = {"this tree": None}
    if a.reference_tree is not None:
        sides["reference tree"] = a.reference_tree
    with tempfile.TemporaryDirectory(prefix="bench-lb-") as tmp:
        procs = Procs(Path(tmp))
        try:
            port = procs.redis("redis")
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
            for r in range(a.rounds):
                order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
                for name, tree in order:
                    prefix = f"lb{list(sides).index(name)}:"
                    results[name].append(
                        _run_side(tree, port, prefix, a.entities, a.calls, seed=r == 0)
                    )
        finally:
            procs.stop_all()
    print(f"{a.entities:,} entities, {a.calls} calls a round, {a.rounds} rounds (medians)")
    print("| side | logical bytes | first call ms (store CPU ms) | ms/call | store CPU ms/call |")
    print("|---|---|---|---|---|")
    for name, rounds in results.items():
        first = rounds[0]
        ms = statistics.median(m for r in rounds for m in r["ms"])
        cpu = statistics.median(r["store_cpu_ms"] for r in rounds)
        print(
            f"| {name} | {first['value']:,} | {first['first_ms']:.1f} "
            f"({first['first_store_cpu_ms']:.1f}) | {ms:.2f} | {cpu:.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

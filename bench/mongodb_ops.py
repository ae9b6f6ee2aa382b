# ruff: noqa: S603 - runs this module in a child process per checkout, by design
"""MongoDB backend writes without HTTP, two checkouts side by side: what a change costs.

``python -m bench.mongodb_ops --trees ../old .`` starts one FerretDB and, for entity saves
(replacing one of 20 entities, ~1 KB) and one-message appends (to one of 20
conversations), sequentially and with 8 concurrent writers, runs each checkout's backend
in its own process (``bench.procs.checkout_env``: its ``service/`` first on
``PYTHONPATH``, this checkout's environment) in alternating rounds. It prints, per
checkout, the median over the rounds of: commands sent per write (PyMongo command
monitoring; exact), the process's CPU per write, and writes per second. Each run gets a
fresh database.
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
import uuid
from pathlib import Path
from typing import Any

from bench.procs import REPO, Procs, checkout_env

ROWS = (("put", 300, 1), ("put", 400, 8), ("append", 300, 1), ("append", 400, 8))


async def _one(uri: str, database: str, op: str, n: int, writers: int) -> dict[str, float]:
    from pymongo import AsyncMongoClient, monitoring

    from memstore.backends.mongodb import MongoDBMemoryBackend
    from memstore.core.settings import Settings

    class Count(monitoring.CommandListener):
        n = 0

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name not in {"hello", "ismaster", "ping", "buildInfo", "endSessions"}:
                self.n += 1

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    counter = Count()

    class Counted(MongoDBMemoryBackend):
        def create_client(self, uri: str, options: dict[str, Any]) -> AsyncMongoClient[Any]:
            return AsyncMongoClient(uri, **options, event_listeners=[counter])

    backend = Counted(Settings(memory_type="mongodb", mongodb_uri=uri, mongodb_db=database))
    await backend.connect()
    ns = "ops"
    for i in range(20):
        await backend.save_entity(ns, "e", f"k{i}", {"x": 0})
        await backend.append_messages(ns, f"c{i}", [{"m": 0}])
    counter.n = 0
    todo = list(range(n))

    async def writer() -> None:
        while todo:
            i = todo.pop()
            if op == "put":
                await backend.save_entity(ns, "e", f"k{i % 20}", {"x": i, "pad": "p" * 900})
            else:
                await backend.append_messages(ns, f"c{i % 20}", [{"content": "m" * 200}])

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await backend.close()
    return {
        "commands_per_write": counter.n / n,
        "cpu_us_per_write": 1e6 * cpu / n,
        "writes_per_s": n / wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mongodb_ops", description=__doc__)
    p.add_argument("--trees", nargs=2, required=True, metavar=("BEFORE", "AFTER"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        uri, database, op, n, writers = args.child
        print(json.dumps(asyncio.run(_one(uri, database, op, int(n), int(writers)))))
        return 0
    trees = [Path(t).resolve() for t in args.trees]
    try:
        paths = {t: checkout_env(t)["PYTHONPATH"] for t in trees}
    except ValueError as exc:
        p.error(str(exc))
    procs = Procs(Path(tempfile.mkdtemp(prefix="memstore-ops-")))
    try:
        uri = procs.ferretdb("ferretdb")
        for op, n, writers in ROWS:
            samples: dict[Path, list[dict[str, float]]] = {t: [] for t in trees}
            for r in range(args.rounds):
                for tree in trees if r % 2 == 0 else list(reversed(trees)):
                    service = paths[tree]
                    child = [uri, f"d{uuid.uuid4().hex[:8]}", op, str(n), str(writers)]
                    me = [sys.executable, "-m", "bench.mongodb_ops", "--trees", *args.trees]
                    out = subprocess.run(
                        [*me, "--child", *child],
                        env={**os.environ, "PYTHONPATH": f"{service}:{REPO}"},
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=900,
                    )
                    samples[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for tree in trees:
                median = {
                    k: round(statistics.median(s[k] for s in samples[tree]), 2)
                    for k in samples[tree][0]
                }
                print(f"{op} writers={writers} {tree}: {json.dumps(median)}", flush=True)
    finally:
        procs.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())

# ruff: noqa: S603 - the tool runs local processes (valgrind, the service) by design
"""Instructions per request, counted by callgrind: the figure that does not move with the
machine's load, for comparing two commits (or two configurations) of the service.

``make bench`` measures time, which on these shared machines moves by ±10% between two
identical service processes; a change of a few percent is lost in it. Callgrind counts the
user-space instructions the service process executes (all its threads) while the requests
run, the same on every run. It does not see cache misses, so it complements CPU time; it
does not replace it. Each operation of the bench rows runs ``N`` times, sequentially on one
connection, after 200 requests to warm the process (cache, code paths); every measured run
starts from the same seeded data.

    .venv/bin/python -m bench.instructions --backend embedded --trees ../old .
    .venv/bin/python -m bench.instructions --ops get --trees . \\
        --env tracing10=OTEL_TRACES_SAMPLER_ARG=0.1,OTEL_TRACES_EXPORTER=console

Each tree is a checkout whose service runs with this checkout's interpreter and libraries
(``bench.procs.checkout_env``, as ``make bench --reference-tree`` runs it); the first is
the reference. ``--env NAME=K=V,K=V`` adds a configuration of the last tree. valgrind
must be installed (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import workload as W
from bench.procs import Procs, checkout_env, free_port, http_ok, wait_until

NS = f"/v1/namespaces/{W.NAMESPACE}"
OPS = ("get", "miss", "put", "append", "load50", "tool")
JSON = {"Content-Type": "application/json"}


@dataclass
class Variant:
    name: str
    tree: Path
    env: dict[str, str] = field(default_factory=dict)


def request(op: str, i: int, tag: str) -> tuple[str, str, bytes | None, dict[str, str]]:
    """The i-th request of an operation, as the bench's Lua scripts make it."""
    if op in ("get", "miss"):
        return "GET", f"{NS}/entities/{W.ENTITY_TYPE}/e{i % 100}", None, {}
    if op == "put":
        return "PUT", f"{NS}/entities/{W.ENTITY_TYPE}/{tag}-{i}", W.put_body().encode(), JSON
    if op == "append":
        return "POST", f"{NS}/conversations/a{i % 100}/messages", W.append_body().encode(), JSON
    if op == "load50":
        path = f"{NS}/conversations/c{i % W.CONVERSATIONS}/messages?limit=50"
        return "GET", path, None, {}
    if op == "tool":
        return "POST", f"{NS}/tool-usage", orjson.dumps(W.tool_body()), JSON
    raise ValueError(op)


def drive(port: int, op: str, count: int, tag: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        for i in range(count):
            method, path, body, headers = request(op, i, tag)
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"{op}: {method} {path} answered {response.status}")
    finally:
        conn.close()


class Counter:
    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.procs = Procs(workdir)
        # One hash seed for every process: string hashes decide dict layouts, and with them
        # a few percent of the count.
        self.env = {
            "MEMSTORE_HOST": "127.0.0.1",
            "MEMSTORE_LOG_LEVEL": "WARNING",
            "PYTHONHASHSEED": "0",
        }
        if backend == "redis":
            port = self.procs.redis("redis")
            self.env |= {"MEMORY_TYPE": "redis", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
        elif backend == "redis-cluster":
            seed = ",".join(f"127.0.0.1:{p}" for p in self.procs.redis_cluster("cluster"))
            self.env |= {"MEMORY_TYPE": "redis", "MEMSTORE_REDIS_CLUSTER_NODES": seed}
        else:
            self.env |= {"MEMORY_TYPE": "embedded"}
        self.runs = 0

    def data(self) -> dict[str, str]:
        """A copy of the seeded file for each run (a file grown by earlier runs would charge
        later ones with deeper trees and WAL checkpoints)."""
        if self.backend != "embedded":
            return {}
        run = self.workdir / f"run-{self.runs}"
        run.mkdir()
        for f in (self.workdir / "seed").iterdir():
            if not f.name.endswith(".lock"):
                shutil.copy(f, run / f.name)
        return {"MEMSTORE_DATA_PATH": str(run / "memstore.db")}

    def start(
        self, variant: Variant, env: dict[str, str], out: Path | None
    ) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        full = {
            **os.environ,
            **self.env,
            "MEMSTORE_PORT": str(port),
            **checkout_env(variant.tree),
            **variant.env,
            **env,
        }
        args = [sys.executable, "-m", "memstore", "serve"]
        if out is not None:
            valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            args = [*valgrind, f"--callgrind-out-file={out}", *args]
        proc = subprocess.Popen(
            args, env=full, cwd=variant.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.procs.children.append(proc)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), "service", 300, proc)
        return proc, port

    def seed(self, variant: Variant) -> None:
        (self.workdir / "seed").mkdir()
        env = {"MEMSTORE_DATA_PATH": str(self.workdir / "seed" / "memstore.db")}
        proc, port = self.start(variant, env, None)
        url = f"http://127.0.0.1:{port}"
        asyncio.run(W.seed(url, entities=100, read_back=False))
        self.procs.stop(proc)

    def count(self, variant: Variant, op: str, n: int) -> float:
        """Instructions per request of ``op`` in a fresh service process of ``variant``."""
        self.runs += 1  # names this run's data, output and entity ids: nothing is reused
        out = self.workdir / f"callgrind-{self.runs}-{op}.out"
        env = {"MEMSTORE_CACHE_TTL_SECONDS": "0"} if op == "miss" else {}
        proc, port = self.start(variant, env | self.data(), out)
        try:
            drive(port, op, 200, f"warm{self.runs}")
            control = ["callgrind_control", "-i"]
            subprocess.run([*control, "on", str(proc.pid)], check=True, capture_output=True)
            drive(port, op, n, f"run{self.runs}")
            subprocess.run([*control, "off", str(proc.pid)], check=True, capture_output=True)
            # Written now: a process that is slow to stop under valgrind may be killed
            # before it writes its profile at exit.
            dump = ["callgrind_control", "--dump", str(proc.pid)]
            subprocess.run(dump, check=True, capture_output=True)
        finally:
            self.procs.stop(proc)
        total = 0
        for part in self.workdir.glob(out.name + "*"):
            for line in part.read_text().splitlines():
                if line.startswith(("totals:", "summary:")):
                    total = max(total, int(line.split()[1]))
        if not total:
            raise RuntimeError(f"{op}: callgrind wrote no counts for {variant.name}")
        return total / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backend", choices=("embedded", "redis", "redis-cluster"), default="embedded"
    )
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma list of {', '.join(OPS)}")
    parser.add_argument("-n", type=int, default=1000, help="measured requests per operation")
    parser.add_argument("--trees", nargs="+", type=Path, default=[Path(".")])
    parser.add_argument("--env", action="append", default=[], help="NAME=K=V,K=V")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    try:
        variants = [Variant(t.resolve().name, t.resolve()) for t in args.trees]
        for v in variants:
            checkout_env(v.tree)
    except ValueError as exc:
        parser.error(str(exc))
    for spec in args.env:
        name, _, pairs = spec.partition("=")
        env = dict(p.split("=", 1) for p in pairs.split(",") if p)
        variants.append(Variant(name, variants[-1].tree, env))
    with tempfile.TemporaryDirectory() as tmp:
        counter = Counter(args.backend, Path(tmp))
        try:
            counter.seed(variants[-1])
            print(" ".join([f"{args.backend:9s} {'op':7s}", *(f"{v.name:>12s}" for v in variants)]))
            for op in args.ops.split(","):
                counts = [counter.count(v, op, args.n) for v in variants]
                cells = [f"{c:12,.0f}" for c in counts]
                ratios = [f"{c / counts[0]:.3f}" for c in counts[1:]]
                print(f"{args.backend:9s} {op:7s} {' '.join(cells)}  ÷ first: {' '.join(ratios)}")
        finally:
            counter.procs.stop_all()


if __name__ == "__main__":
    main()

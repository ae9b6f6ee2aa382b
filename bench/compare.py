"""Two checkouts' services side by side in one run: the same wrk loads as ``make bench``,
alternating rounds, for the time and CPU a change costs (``bench.instructions`` counts its
instructions).

    .venv/bin/python -m bench.compare ../old . --only 'put|append' --rounds 8

Each tree is a checkout with its own ``.venv``; the first is the reference. Each service
runs on the embedded backend from its own tree (default settings), on its own file seeded
alike. A row is a
"cost" scenario of the bench (``bench/run.py``): warm-up, then four times ``--rounds``
rounds of ``--seconds``, the two sides back to back and in flipped order each round; the
throughput ratio (new ÷ old) is the median of the per-round ratios, the CPU ratio is old ÷
new CPU per request (under 1: the new tree spends more)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

from bench import run as R
from bench import workload as W
from bench.procs import free_port, http_ok, wait_until

LOADS: dict[str, Callable[[], R.Wrk]] = {
    "put": R.put_load,
    "append": R.append_load,
    "tool": R.tool_load,
    "get-hit": R.get_load,
}


class TreesRun(R.Run):
    """A bench run whose targets ``old`` and ``new`` are services of two checkouts."""

    def __init__(self, args: argparse.Namespace, trees: dict[str, Path]) -> None:
        super().__init__(args)
        self.trees = trees

    def start(self, g: R.Group, key: str, t: R.Target) -> None:
        tree = self.trees[key]
        port = free_port()
        data = self.workdir / key
        data.mkdir(parents=True, exist_ok=True)
        proc = self.procs.spawn(
            f"service-{key}",
            [str(tree / ".venv/bin/python"), "-m", "memstore", "serve"],
            env={
                "MEMSTORE_HOST": "127.0.0.1",
                "MEMSTORE_PORT": str(port),
                "MEMORY_TYPE": "embedded",
                "MEMSTORE_DATA_PATH": str(data / "memstore.db"),
                "MEMSTORE_LOG_LEVEL": "WARNING",
            },
            cwd=tree,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(url + "/readyz"), key, proc=proc)
        t.urls.append(url)
        t.procs.append(proc)
        asyncio.run(
            W.seed(url, entities=g.entities, conversations=g.conversations, messages=g.messages)
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("old", type=Path, help="the reference checkout")
    p.add_argument("new", type=Path, help="the checkout measured against it")
    p.add_argument("--only", default=None, help=f"regex on the rows: {', '.join(LOADS)}")
    p.add_argument("--seconds", type=int, default=1)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", type=Path, default=None, help="also write the rows (JSON)")
    a = p.parse_args(argv)
    trees = {"old": a.old.resolve(), "new": a.new.resolve()}
    args = argparse.Namespace(
        only=None if a.only is None else f"trees/({a.only})$",
        seconds=a.seconds,
        rounds=a.rounds,
        warmup=1,
        half_max=False,
    )
    run = TreesRun(args, trees)
    scenarios = [
        R.Scenario(key, key, R.Side("old", load()), R.Side("new", load()), None, kind="cost")
        for key, load in LOADS.items()
    ]
    group = R.Group("trees", lambda g, ctx: None, scenarios)
    group.targets = {key: R.Target("service", key) for key in trees}
    try:
        run.run_group(group)
    finally:
        run.procs.stop_all()
    if a.out is not None:
        a.out.write_bytes(orjson.dumps({"trees": trees, "rows": run.results}, default=str))
    print(f"old: {trees['old']}\nnew: {trees['new']}")
    print("| row | old req/s | new req/s | new ÷ old | CPU µs/req old | new | old ÷ new |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in run.results:
        old, new = r["reference"], r["measured"]
        print(
            f"| {r['key']} | {old['rps']:,.0f} | {new['rps']:,.0f} | {r['ratio']} | "
            f"{old['cpu_us_per_req']:,.0f} | {new['cpu_us_per_req']:,.0f} | {r['cpu_ratio']} |"
        )
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())

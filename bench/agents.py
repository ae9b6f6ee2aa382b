"""Mixed agent workload: N concurrent agents, read-heavy, in a process of its own.

``--mode http`` drives the service through the project's ``MemoryClient`` (what an agent
really uses); ``--mode raw`` does the same operations straight on the backend with
``bench.raw`` (no HTTP, no service): the limit for an agent on this stack.

Each agent loops: 60% GET a shared entity, 15% load the last 50 messages of a shared
conversation, 10% append a message to its own conversation, 10% replace its own entity
with a version check, 5% record a tool use. Prints one JSON line (same fields as wrk's).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bench.workload import CONVERSATIONS, ENTITIES, ENTITY_TYPE, entity_data, message, tool_body

Op = Callable[[], Awaitable[Any]]


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[i]


class Agent:
    def __init__(self, i: int, tag: str) -> None:
        self.i = i
        self.rng = random.Random(i)
        self.own_entity = f"agent-{tag}-{i}"
        self.own_conv = f"agent-{tag}-{i}"
        self.version = 0


async def run_http(
    args: argparse.Namespace, agents: list[Agent]
) -> tuple[list[list[float]], float]:
    from memstore.client import MemoryClient

    data = entity_data()
    msg = message()
    tb = tool_body()
    async with MemoryClient(args.url, args.namespace) as client:

        def ops(a: Agent) -> list[tuple[float, Op]]:
            async def put() -> None:
                rec = await client.save_entity(
                    ENTITY_TYPE, a.own_entity, data, expected_version=a.version
                )
                a.version = rec.version

            return [
                (
                    0.60,
                    lambda: client.get_entity(ENTITY_TYPE, f"e{a.rng.randrange(args.entities)}"),
                ),
                (
                    0.75,
                    lambda: client.load_messages(
                        f"c{a.rng.randrange(args.conversations)}", limit=50
                    ),
                ),
                (0.85, lambda: client.append_message(msg, a.own_conv)),
                (0.95, put),
                (
                    1.00,
                    lambda: client.save_tool_usage(
                        tb["tool_name"], tb["input"], tb["output"], duration_ms=tb["duration_ms"]
                    ),
                ),
            ]

        return await drive(args, agents, ops)


async def run_raw(args: argparse.Namespace, agents: list[Agent]) -> tuple[list[list[float]], float]:
    from bench.raw import make_ops, tool_record

    opts = dict(o.split("=", 1) for o in args.opt)
    raw = make_ops(args.backend, **opts)
    await raw.start()
    ns = args.namespace
    data = orjson.dumps(entity_data())
    msg = orjson.dumps(message())
    tb = tool_body()
    try:

        def ops(a: Agent) -> list[tuple[float, Op]]:
            async def put() -> None:
                a.version, _ = await raw.put_entity(ns, ENTITY_TYPE, a.own_entity, data, a.version)

            return [
                (
                    0.60,
                    lambda: raw.get_entity(ns, ENTITY_TYPE, f"e{a.rng.randrange(args.entities)}"),
                ),
                (0.75, lambda: raw.load_last(ns, f"c{a.rng.randrange(args.conversations)}", 50)),
                (0.85, lambda: raw.append(ns, a.own_conv, [msg])),
                (0.95, put),
                (1.00, lambda: raw.record_tool(ns, tool_record(ns, tb))),
            ]

        return await drive(args, agents, ops)
    finally:
        await raw.close()


async def drive(
    args: argparse.Namespace,
    agents: list[Agent],
    make_ops: Callable[[Agent], list[tuple[float, Op]]],
) -> tuple[list[list[float]], float]:
    began = time.perf_counter()
    stop = began + args.seconds
    latencies: list[list[float]] = [[] for _ in agents]

    async def loop(a: Agent) -> None:
        table = make_ops(a)
        out = latencies[a.i]
        while time.perf_counter() < stop:
            r = a.rng.random()
            call = next(op for edge, op in table if r < edge)
            began = time.perf_counter()
            await call()
            out.append(time.perf_counter() - began)

    await asyncio.gather(*(loop(a) for a in agents))
    return latencies, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["http", "raw"], required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--backend", default="")
    parser.add_argument("--opt", action="append", default=[])
    parser.add_argument("--namespace", default="bench")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--entities", type=int, default=ENTITIES)
    parser.add_argument("--conversations", type=int, default=CONVERSATIONS)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:8]
    agents = [Agent(i, tag) for i in range(args.agents)]
    runner = run_http if args.mode == "http" else run_raw
    per_agent, elapsed = asyncio.run(runner(args, agents))
    lat = sorted(x for xs in per_agent for x in xs)
    print(
        orjson.dumps(
            {
                "requests": len(lat),
                "duration_us": int(elapsed * 1e6),
                "errors": 0,
                "latency_us": {
                    "p50": int(percentile(lat, 50) * 1e6),
                    "p90": int(percentile(lat, 90) * 1e6),
                    "p99": int(percentile(lat, 99) * 1e6),
                },
            }
        ).decode()
    )


if __name__ == "__main__":
    main()

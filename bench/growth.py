"""``python -m bench.growth``: what one operation costs as the data behind it grows.

One process, one event loop, one ``DistributedMemoryManager`` per backend with its cache
off (``cache_ttl_seconds=0``: every read reaches the backend), on the backend servers
``make bench`` starts (``bench.procs``). Three series per backend, each grown in place:

* **entities**: one namespace, one entity type, grown through ``--entity-sizes`` (1k, 10k,
  100k, 1M by default; FerretDB stops at ``--mongodb-max``). At each size: ``get`` (a
  random entity), ``put`` (replace a random entity) and ``list50`` (a page of 50 after a
  random entity id: the cursor ``list_entities`` issues for that id).
* **conversation**: one conversation grown through ``--message-sizes`` (10 → 100k). At
  each size: ``append`` (one message; the messages a sample appended are popped again,
  untimed, so the next sample and size start from the same length) and ``last50``.
* **tool usage**: the tool-usage log grown through ``--tool-sizes``; ``tool-range`` asks
  for a fixed one-minute window that holds the same 50 records at every size, while the
  rest of the log lies before and after it.

Data is filled through the manager's own write calls (``save_entity``,
``append_messages`` in batches of 1,000, ``save_tool_usage``), ``--fill-concurrency`` of
them at a time: on the embedded backend concurrent writes share a group commit. Nothing
is written around the backend.

A sample is ``--seconds`` of one operation called in a loop by one task (concurrency 1:
wall µs per operation is its latency); the operations of a size take turns for
``--rounds`` rounds and each figure is the median of its rounds. CPU per operation is this
process's (user + system, its threads: SQLite's) plus, apart, the backend servers'
(Redis, FerretDB). The growth ratio is the wall µs/op at the largest size reached over the
smallest; the target (issue 22) is ≤ 1.5 for 1k → 1M.

Memory per item after each fill step, over all items of the series: Redis ``used_memory``
(the cluster: its primaries' sum), the SQLite file's used pages, FerretDB's ``dbStats``.
A namespace's other structures (change log, version history, indexes) are included: that
is what an item costs.

``--budget-seconds`` stops a series before a fill step its measured fill rate says would
not end in time; the sizes reached are in the result and the table.

The embedded backend is measured on one CPU (``--embedded-cpu``, the last one by
default): each operation hops from the event loop to a SQLite thread and back, and when
the kernel runs the two threads on different CPUs each hop is a cross-CPU wake-up, which
in this VM costs 40-100 µs of CPU depending on where the threads happened to land; runs
that were otherwise equal differed by 2.5x in ``get`` at 1k. Pinned, a series' ratio
measures the data's growth, not the scheduler.

    python -m bench.growth                                # every backend, to 1M
    python -m bench.growth --backends redis --max 100000
    python -m bench.growth --quick                        # tiny sizes, every backend
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import workload as W
from bench.procs import Procs, cpu_seconds, redis_cli, redis_pid
from bench.sections import Section, value_only

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("embedded", "redis", "redis-cluster", "mongodb")
TARGET = 1.5  # largest / smallest size, wall µs per operation (issue 22)
SERIES_OPS = {
    "entities": ("get", "put", "list50"),
    "conversation": ("append", "last50"),
    "tool usage": ("tool-range",),
}
#: The smallest size at which an operation reads as much as at the largest (the growth
#: ratio starts there).
FULL_FROM = {"last50": 50}
ENTITY_TYPE = "doc"
CONVERSATION = "grow"
WINDOW = 50  # tool uses inside the queried window, at every size
BATCH = 1000  # messages per append_messages call while filling (the API's maximum)


def _sizes(start: int, stop: int) -> list[int]:
    out, n = [], start
    while n <= stop:
        out.append(n)
        n *= 10
    return out


@dataclass
class Backend:
    """A started backend: the manager's settings, its servers' pids, its memory gauge."""

    name: str
    settings: Any
    store_pids: list[int] = field(default_factory=list)
    stored_bytes: Callable[[], int] = lambda: 0
    bytes_source: str = ""


def start_backend(name: str, procs: Procs, workdir: Path) -> Backend:
    from memstore.core.settings import Settings

    common: dict[str, Any] = {"cache_ttl_seconds": 0, "memory_namespace": "growth"}
    if name == "embedded":
        path = workdir / "growth.db"

        def sqlite_bytes() -> int:
            # the pages in use (WAL included: a reader sees the committed state), not the
            # file's length, which a checkpoint changes
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                ((used,),) = conn.execute(
                    "SELECT (page_count - freelist_count) * page_size "
                    "FROM pragma_page_count, pragma_freelist_count, pragma_page_size"
                ).fetchall()
            return int(used)

        return Backend(
            name,
            Settings(memory_type="embedded", data_path=path, **common),
            stored_bytes=sqlite_bytes,
            bytes_source="SQLite pages in use",
        )
    if name == "redis":
        port = procs.redis("growth-redis")
        return Backend(
            name,
            Settings(memory_type="redis", redis_host="127.0.0.1", redis_port=port, **common),
            [redis_pid(port)],
            lambda: _used_memory([port]),
            "Redis used_memory",
        )
    if name == "redis-cluster":
        ports = procs.redis_cluster("growth-cluster")
        seed = ",".join(f"127.0.0.1:{p}" for p in ports)
        return Backend(
            name,
            Settings(memory_type="redis", redis_cluster_nodes=seed, **common),
            [redis_pid(p) for p in ports],
            lambda: _used_memory([p for p in ports if _is_primary(p)]),
            "used_memory of the primaries (each replica holds as much again)",
        )
    if name == "mongodb":
        uri = procs.ferretdb("growth-ferretdb")
        pid = procs.children[-1].pid
        return Backend(
            name,
            Settings(memory_type="mongodb", mongodb_uri=uri, mongodb_db="growth", **common),
            [pid],
            lambda: _mongo_bytes(uri, "growth"),
            "FerretDB dbStats (data + indexes)",
        )
    raise ValueError(name)


def _used_memory(ports: list[int]) -> int:
    total = 0
    for port in ports:
        info = redis_cli(port, "INFO", "memory")
        total += int(info.split("used_memory:")[1].split()[0])
    return total


def _is_primary(port: int) -> bool:
    return "role:master" in redis_cli(port, "INFO", "replication")


def _mongo_bytes(uri: str, db: str) -> int:
    import pymongo

    client: Any = pymongo.MongoClient(uri)
    try:
        stats = client[db].command("dbStats")
    finally:
        client.close()
    return int(stats.get("dataSize", 0)) + int(stats.get("indexSize", 0))


# -- measuring ------------------------------------------------------------------------


async def sample(
    op: Callable[[], Awaitable[None]], seconds: float, store_pids: list[int]
) -> dict[str, float]:
    """``op`` in a loop for ``seconds`` (at least 3 calls): wall and CPU µs per call."""
    ops = 0
    cpu0, srv0, t0 = sum(os.times()[:2]), cpu_seconds(store_pids), time.perf_counter()
    until = t0 + seconds
    while ops < 3 or time.perf_counter() < until:
        await op()
        ops += 1
    t1, cpu1, srv1 = time.perf_counter(), sum(os.times()[:2]), cpu_seconds(store_pids)
    return {
        "ops": ops,
        "us_per_op": 1e6 * (t1 - t0) / ops,
        "cpu_us_per_op": 1e6 * (cpu1 - cpu0) / ops,
        "store_cpu_us_per_op": 1e6 * (srv1 - srv0) / ops,
    }


def _median(samples: list[dict[str, float]], key: str) -> float:
    return round(float(statistics.median(s[key] for s in samples)), 1)


async def measure(
    ops: dict[str, Callable[[], Awaitable[None]]],
    after: dict[str, Callable[[int], Awaitable[None]]],
    args: argparse.Namespace,
    store_pids: list[int],
) -> dict[str, Any]:
    """Each operation's samples, the operations taking turns round by round; ``after[op]``
    (untimed) undoes what a sample of ``op`` added (its argument: the sample's calls)."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in ops}
    for rnd in range(args.rounds):
        names = list(ops) if rnd % 2 == 0 else list(reversed(ops))
        for name in names:
            s = await sample(ops[name], args.seconds, store_pids)
            samples[name].append(s)
            if name in after:
                await after[name](int(s["ops"]))
    return {
        name: {
            "us_per_op": _median(ss, "us_per_op"),
            "cpu_us_per_op": _median(ss, "cpu_us_per_op"),
            "store_cpu_us_per_op": _median(ss, "store_cpu_us_per_op"),
            "ops": int(sum(s["ops"] for s in ss)),
        }
        for name, ss in samples.items()
    }


async def fill(count: int, write: Callable[[int], Awaitable[None]], concurrency: int) -> None:
    """``write(i)`` for every i < count, ``concurrency`` at a time."""
    it = iter(range(count))

    async def worker() -> None:
        for i in it:
            await write(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))


class Series:
    """One series grown through its sizes, with the fill-time budget."""

    def __init__(self, name: str, sizes: list[int], backend: Backend, deadline: float | None):
        self.name, self.sizes, self.backend, self.deadline = name, sizes, backend, deadline
        self.rows: list[dict[str, Any]] = []
        self.stopped = ""
        self.base_bytes = backend.stored_bytes()

    def fits(self, have: int, size: int, rate: float | None) -> bool:
        """Whether filling up to ``size`` and measuring it ends before the deadline."""
        if self.deadline is None or rate is None:
            return True
        needed = (size - have) / rate
        if time.monotonic() + needed > self.deadline:
            self.stopped = (
                f"stopped before {size:,}: filling {size - have:,} more at the "
                f"{rate:,.0f}/s measured would take {needed:,.0f} s, beyond --budget-seconds"
            )
            return False
        return True

    async def grow(
        self,
        fill_to: Callable[[int, int], Awaitable[None]],
        measure_at: Callable[[int], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        have, rate = 0, None
        for size in self.sizes:
            if not self.fits(have, size, rate):
                break
            t0 = time.perf_counter()
            await fill_to(have, size)
            took = time.perf_counter() - t0
            if size > have:
                rate = (size - have) / max(took, 1e-6)
            have = size
            used = self.backend.stored_bytes() - self.base_bytes
            row = {
                "size": size,
                "fill_seconds": round(took, 2),
                "fill_per_second": round(rate or 0.0),
                "bytes_per_item": round(used / size, 1),
                "ops": await measure_at(size),
            }
            self.rows.append(row)
            print(_progress(self.backend.name, self.name, row), file=sys.stderr, flush=True)
        return {"series": self.name, "rows": self.rows, "stopped": self.stopped}


def _progress(backend: str, series: str, row: dict[str, Any]) -> str:
    ops = ", ".join(
        f"{k} {v['us_per_op']:,.0f} µs (CPU {v['cpu_us_per_op']:,.0f}"
        f"+{v['store_cpu_us_per_op']:,.0f})"
        for k, v in row["ops"].items()
    )
    return (
        f"growth/{backend} {series} {row['size']:,}: filled in {row['fill_seconds']} s, "
        f"{row['bytes_per_item']:,.0f} B/item; {ops}"
    )


async def run_backend(
    b: Backend, args: argparse.Namespace, limits: dict[str, list[int]]
) -> list[Any]:
    from memstore import DistributedMemoryManager
    from memstore.core.validation import encode_cursor

    def deadline() -> float | None:
        return None if not args.budget_seconds else time.monotonic() + args.budget_seconds

    data, message, tool = W.entity_data(args.payload), W.message(), W.tool_body()
    rng = random.Random(22)
    out: list[Any] = []
    async with DistributedMemoryManager(settings=b.settings) as memory:
        conc = args.fill_concurrency

        # -- entities
        def eid(i: int) -> str:
            return f"e{i:08d}"

        async def put(i: int) -> None:
            await memory.save_entity(ENTITY_TYPE, eid(i), data)

        async def fill_entities(have: int, size: int) -> None:
            await fill(size - have, lambda i: put(have + i), conc)

        async def entities_at(n: int) -> dict[str, Any]:
            async def get() -> None:
                rec = await memory.get_entity(ENTITY_TYPE, eid(rng.randrange(n)))
                assert rec is not None, "a stored entity was not found"

            async def replace() -> None:
                await put(rng.randrange(n))

            async def page() -> None:
                after = eid(rng.randrange(max(1, n - 50)))
                got = await memory.list_entities(ENTITY_TYPE, limit=50, cursor=encode_cursor(after))
                assert len(got.items) == min(50, n - 1 - int(after[1:])), "short page"

            return await measure(
                {"get": get, "put": replace, "list50": page}, {}, args, b.store_pids
            )

        sizes = limits["entities"]
        if "entities" in args.series:
            series = Series("entities", sizes, b, deadline())
            out.append(await series.grow(fill_entities, entities_at))

        # -- one conversation
        async def fill_messages(have: int, size: int) -> None:
            left = size - have
            while left > 0:
                k = min(BATCH, left)
                await memory.append_messages([message] * k, CONVERSATION)
                left -= k

        async def conversation_at(n: int) -> dict[str, Any]:
            async def append() -> None:
                await memory.append_messages([message], CONVERSATION)

            async def pop_back(k: int) -> None:
                for _ in range(k):
                    await memory.pop_message(CONVERSATION)

            async def last50() -> None:
                got = await memory.load_messages(CONVERSATION, limit=50)
                assert len(got) == min(50, n), "short page of messages"

            return await measure(
                {"append": append, "last50": last50}, {"append": pop_back}, args, b.store_pids
            )

        sizes = limits["messages"]
        if "conversation" in args.series:
            series = Series("conversation", sizes, b, deadline())
            out.append(await series.grow(fill_messages, conversation_at))

        # -- tool usage: WINDOW records inside [w0, w0 + 60), the rest before and after
        w0 = time.time() - 7 * 24 * 3600

        def stamp(i: int) -> float:
            if i < WINDOW:
                return w0 + 1 + i * (58 / WINDOW)
            j = i - WINDOW
            return w0 - 1 - j * 1e-3 if j % 2 == 0 else w0 + 61 + j * 1e-3

        async def record(i: int) -> None:
            await memory.save_tool_usage(
                tool["tool_name"],
                tool["input"],
                tool["output"],
                duration_ms=tool["duration_ms"],
                timestamp=stamp(i),
                usage_id=f"t{i:08d}",
            )

        async def fill_tools(have: int, size: int) -> None:
            await fill(size - have, lambda i: record(have + i), conc)

        async def tools_at(n: int) -> dict[str, Any]:
            async def window() -> None:
                got = await memory.query_tool_usage(start=w0, end=w0 + 60, limit=WINDOW)
                assert len(got.items) == min(WINDOW, n), "the window's records were not all found"

            return await measure({"tool-range": window}, {}, args, b.store_pids)

        sizes = limits["tools"]
        if "tool usage" in args.series:
            series = Series("tool usage", sizes, b, deadline())
            out.append(await series.grow(fill_tools, tools_at))
    return out


# -- report ---------------------------------------------------------------------------


def growth_ratio(rows: list[dict[str, Any]], op: str, cpu: bool = False) -> float | None:
    """Largest size ÷ smallest: wall µs/op, or (``cpu``) CPU µs/op, servers' included.
    ``last50`` from the first size with 50 messages: below, it reads fewer."""
    rows = [r for r in rows if r["size"] >= FULL_FROM.get(op, 0)]
    if len(rows) < 2:
        return None

    def cost(row: dict[str, Any]) -> float:
        o = row["ops"][op]
        return float(o["cpu_us_per_op"] + o["store_cpu_us_per_op"] if cpu else o["us_per_op"])

    first, last = cost(rows[0]), cost(rows[-1])
    return round(last / first, 2) if first else None


def _n(size: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1000)):
        if size >= div and size % div == 0:
            return f"{size // div}{unit}"
    return str(size)


def _marked(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}" + (" ✓" if ratio <= TARGET else " ✗")


def markdown(result: dict[str, Any]) -> str:
    """Per backend and series: µs/op (CPU µs/op: this process + the backend's servers) at
    each size, the growth ratio against the target, and bytes per item."""
    lines = [
        "Growth (`bench/growth.py`): wall µs/op at concurrency 1, cache off; in brackets "
        "CPU µs/op of the process (+ the backend's servers). Ratios: largest size reached "
        f"÷ smallest (last50: the smallest with 50 messages), wall and CPU, target ≤ {TARGET}."
    ]
    for b in result["backends"]:
        if b.get("skipped") or b.get("failed"):
            why = f"skipped — {b['skipped']}" if b.get("skipped") else f"FAILED — {b['failed']}"
            lines.append(f"\n_growth/{b['backend']}: {why}_")
            continue
        for s in b["series"]:
            rows = s["rows"]
            if not rows:
                lines.append(f"\n_growth/{b['backend']} {s['series']}: no size measured_")
                continue
            unit = {"entities": "entities", "conversation": "messages"}.get(
                s["series"], "tool uses"
            )
            head = " | ".join(f"{_n(r['size'])} {unit}" for r in rows)
            lines += [
                "",
                f"| {b['backend']}: {s['series']} | {head} | ratio (≤ {TARGET}) | CPU ratio |",
                "|---|" + "---:|" * (len(rows) + 2),
            ]
            for op in SERIES_OPS[s["series"]]:
                cells = " | ".join(
                    f"{r['ops'][op]['us_per_op']:,.0f} ({r['ops'][op]['cpu_us_per_op']:,.0f}"
                    + (
                        f"+{r['ops'][op]['store_cpu_us_per_op']:,.0f})"
                        if b["store_server"]
                        else ")"
                    )
                    for r in rows
                )
                lines.append(
                    f"| {op} | {cells} | {_marked(growth_ratio(rows, op))} "
                    f"| {_marked(growth_ratio(rows, op, cpu=True))} |"
                )
            cells = " | ".join(f"{r['bytes_per_item']:,.0f}" for r in rows)
            lines.append(f"| bytes / item ({b['bytes_source']}) | {cells} | | |")
            cells = " | ".join(f"{r['fill_per_second']:,.0f}" for r in rows)
            lines.append(f"| fill rate (items/s) | {cells} | | |")
            if s["stopped"]:
                lines.append(f"\n_growth/{b['backend']} {s['series']}: {s['stopped']}_")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------


def series_sizes(backend: str, args: argparse.Namespace) -> dict[str, list[int]]:
    """The sizes each series of ``backend`` grows through."""
    if args.quick:
        return {"entities": [20, 80], "messages": [10, 60], "tools": [20, 80]}
    if backend == "mongodb":
        # from 100: its largest size is small (--mongodb-max), and one decade needs two sizes
        top = args.mongodb_max
        return {
            "entities": _sizes(100, top),
            "messages": _sizes(10, min(top, args.max_messages)),
            "tools": _sizes(100, top),
        }
    return {
        "entities": _sizes(1000, args.max),
        "messages": _sizes(10, args.max_messages),
        "tools": _sizes(1000, args.max),
    }


#: ``report["growth"]`` of ``python -m bench`` as Markdown (bench/sections.py).
SECTIONS = (
    Section(
        "growth",
        "Growth curves: cost per operation as the data grows",
        value_only(markdown),
        order=45,
    ),
)


@contextlib.contextmanager
def _pinned(cpu: int) -> Iterator[None]:
    """This thread, and the threads it starts meanwhile (SQLite's), on ``cpu`` alone
    (module docstring); ``-1``: as they are."""
    if cpu < 0:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    p.add_argument(
        "--max",
        type=int,
        default=int(env("BENCH_GROWTH_MAX", "1000000")),
        help="largest namespace (entities, tool uses) on embedded, Redis and the cluster",
    )
    p.add_argument(
        "--max-messages",
        type=int,
        default=int(env("BENCH_GROWTH_MAX_MESSAGES", "100000")),
        help="longest conversation",
    )
    # FerretDB v1 on SQLite writes ~100 entities/s once a collection holds thousands and
    # reads by scanning (bench/README.md, Growth): 1M would take days.
    p.add_argument(
        "--mongodb-max",
        type=int,
        default=int(env("BENCH_GROWTH_MONGODB_MAX", "1000")),
        help="the largest size of every series on FerretDB",
    )
    p.add_argument(
        "--series",
        default=",".join(SERIES_OPS),
        help="comma-separated: entities, conversation, tool usage",
    )
    p.add_argument("--seconds", type=float, default=0.5, help="per sample")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--payload", type=int, default=1024, help="entity JSON bytes")
    p.add_argument("--fill-concurrency", type=int, default=32)
    p.add_argument(
        "--budget-seconds",
        type=float,
        default=float(env("BENCH_GROWTH_BUDGET_SECONDS", "0")),
        help="per series: stop it before a fill step that would end later (0: none)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        default=env("BENCH_GROWTH_QUICK") == "1",
        help="tiny sizes (20 and 80 items, 10 and 60 messages), short samples: a smoke run",
    )
    p.add_argument(
        "--embedded-cpu",
        type=int,
        default=int(env("BENCH_GROWTH_EMBEDDED_CPU", str(max(os.sched_getaffinity(0))))),
        help="the CPU the embedded backend is measured on (-1: not pinned)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON, not tables")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 0.02, 2
    backends = [b for b in args.backends.split(",") if b]
    args.series = [s for s in args.series.split(",") if s]
    if unknown := set(args.series) - set(SERIES_OPS):
        p.error(f"unknown series: {', '.join(sorted(unknown))}")
    started = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "settings": {
            k: getattr(args, k)
            for k in (
                "max",
                "max_messages",
                "mongodb_max",
                "seconds",
                "rounds",
                "payload",
                "fill_concurrency",
                "budget_seconds",
                "quick",
                "embedded_cpu",
            )
        },
        "backends": [],
    }
    failed = False
    for name in backends:
        limits = series_sizes(name, args)
        entry: dict[str, Any] = {"backend": name, "store_server": name != "embedded"}
        with tempfile.TemporaryDirectory(prefix=f"bench-growth-{name}-") as tmp:
            procs = Procs(Path(tmp))
            try:
                try:
                    b = start_backend(name, procs, Path(tmp))
                except Exception as exc:  # a backend that cannot start is reported skipped
                    entry["skipped"] = f"could not start: {exc}"
                    print(f"## growth/{name}: skipped ({exc})", file=sys.stderr)
                else:
                    entry["bytes_source"] = b.bytes_source
                    with _pinned(args.embedded_cpu if name == "embedded" else -1):
                        entry["series"] = asyncio.run(run_backend(b, args, limits))
            except Exception as exc:
                entry["failed"] = f"{type(exc).__name__}: {exc}"
                failed = True
                print(f"## growth/{name}: FAILED: {exc}", file=sys.stderr)
            finally:
                procs.stop_all()
        result["backends"].append(entry)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"growth-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path}", file=sys.stderr)
    print(json.dumps(result) if args.json else markdown(result))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

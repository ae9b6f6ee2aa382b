# ruff: noqa: S603, S607 - the harness runs local tools (wrk, redis-*, the service) by design
"""``make bench`` / ``python -m bench``: the service against its physical limits.

A *scenario* is (backend group, reference side, measured side, load). A side is a target
(a service process with some configuration, the baseline app, or the raw client) plus the
load that drives it (a wrk Lua script, or the mixed-agent driver). Sides alternate for
several rounds after a warm-up; we keep the median throughput and the median p50/p99,
and report measured/reference as the ratio. Ratios, not absolute numbers, are the result:
the machines are shared and noisy, and both sides see the same noise.

Backend groups are independent: a group whose tools or backend module are missing is
reported as skipped with the reason, never silently dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import l2cache as L2
from bench import search as S
from bench import sections, workers
from bench import workload as W
from bench.batch import bench_in_process as batch_bench
from bench.growth import BACKENDS as GROWTH_BACKENDS
from bench.listings import in_process_of_its_own as listings_bench
from bench.peers import ROWS as PEER_ROWS
from bench.procs import (
    REPO,
    Procs,
    checkout_env,
    cpu_seconds,
    redis_cli,
    redis_pid,
    run_json_module,
    wait_for_workers,
    with_children,
)
from bench.sections import Section, value_only
from bench.wrk import Sample, run_wrk

RESULTS = Path(__file__).resolve().parent / "results"

ENT = f"/v1/namespaces/{W.NAMESPACE}/entities/{W.ENTITY_TYPE}/"
CONV = f"/v1/namespaces/{W.NAMESPACE}/conversations/"
TOOL = f"/v1/namespaces/{W.NAMESPACE}/tool-usage"


# -- what a scenario is ------------------------------------------------------------------


@dataclass(frozen=True)
class Wrk:
    script: str
    params: Callable[[], dict[str, str]]
    connections: int = 16


@dataclass(frozen=True)
class Agents:
    mode: str  # "http" (service through MemoryClient) or "raw" (bench.raw, no HTTP)
    agents: int = 20


@dataclass(frozen=True)
class Side:
    target: str  # a key of Group.targets; "raw" for the raw client (no server)
    load: Wrk | Agents
    label: str = ""


@dataclass(frozen=True)
class Scenario:
    key: str  # short id used by --only, e.g. "get-hit"
    title: str
    ref: Side
    meas: Side
    target_ratio: float | None
    half_max: bool = False  # also measure p99 at half the max throughput (single-entity ops)
    kind: str = "baseline"  # "baseline" | "cost" (ratio of the same service, feature on/off)


@dataclass
class Target:
    kind: str  # "service" | "baseline"
    store: str  # targets with the same store share data (seeded once)
    env: dict[str, str] = field(default_factory=dict)  # service settings
    raw: tuple[str, dict[str, str]] = ("", {})  # baseline raw backend
    urls: list[str] = field(default_factory=list)
    procs: list[Any] = field(default_factory=list)
    count: int = 1  # service processes (same store, separate ports)


@dataclass
class Group:
    """One backend: its servers, targets and scenarios."""

    name: str
    setup: Callable[[Group, Run], None]  # starts the backend, fills env/raw of the targets
    scenarios: list[Scenario]
    requires: Callable[[], str | None] = lambda: None  # reason to skip, or None
    targets: dict[str, Target] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)
    raw: tuple[str, dict[str, str]] = ("", {})
    seeded: set[str] = field(default_factory=set)
    # Entities seeded and read (FerretDB writes are fsync-bound: a smaller set keeps the
    # mongodb group's seeding within the time budget).
    entities: int = W.ENTITIES
    rounds: int | None = None  # None: --rounds
    seconds: int | None = None  # None: --seconds
    conversations: int = W.CONVERSATIONS
    messages: int = W.MESSAGES_PER_CONVERSATION
    connections: int | None = None  # None: the load's own
    store_pids: list[int] = field(default_factory=list)  # the backend's server processes
    # Search rows (``search-<n>``, bench/search.py) up to this many entities; larger sizes
    # are listed as skipped with the reason.
    search_max: int | None = None
    search_max_reason: str = ""
    search_store_wait: float = 180.0  # seconds the row waits for its vectors to be stored


# -- loads ----------------------------------------------------------------------------------


def get_load() -> Wrk:
    return Wrk("get", lambda: {"base": ENT, "n": str(W.ENTITIES)})


def put_load() -> Wrk:
    return Wrk("put", lambda: {"base": ENT, "tag": uuid.uuid4().hex[:10], "body": W.put_body()})


def append_load() -> Wrk:
    return Wrk("append", lambda: {"base": CONV, "n": "100", "body": W.append_body()})


def load_load() -> Wrk:
    return Wrk("load", lambda: {"base": CONV, "n": str(W.CONVERSATIONS), "limit": "50"})


def tool_load() -> Wrk:
    return Wrk("tool", lambda: {"url": TOOL, "body": orjson.dumps(W.tool_body()).decode()})


def backend_scenarios(
    svc: str = "svc", miss: str = "svc_nocache", base: str = "base", mixed: bool = True
) -> list[Scenario]:
    """The per-backend table: cache miss, PUT, conversation, tool usage, mixed agents."""
    out = [
        Scenario(
            "get-miss",
            "entity GET, cache miss",
            Side(base, get_load()),
            Side(miss, get_load()),
            0.85,
            half_max=True,
        ),
        Scenario(
            "put",
            "entity PUT (create 20% / replace 80%, version check)",
            Side(base, put_load()),
            Side(svc, put_load()),
            0.85,
            half_max=True,
        ),
        Scenario(
            "load50",
            "conversation load last 50",
            Side(base, load_load()),
            Side(svc, load_load()),
            0.80,
        ),
        Scenario(
            "append",
            "conversation append 1 message",
            Side(base, append_load()),
            Side(svc, append_load()),
            0.80,
        ),
        Scenario(
            "tool", "tool-usage record", Side(base, tool_load()), Side(svc, tool_load()), 0.80
        ),
    ]
    if mixed:
        out.append(
            Scenario(
                "mixed",
                "mixed agents (20, read-heavy) vs raw client, no HTTP",
                Side("raw", Agents("raw")),
                Side(svc, Agents("http")),
                None,
            )
        )
    return out


# -- groups -----------------------------------------------------------------------------------


def _have_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def need_redis() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server not installed (`make tools`)"
    if not _have_module("memstore.backends.redis"):
        return "the Redis backend is not in this build"
    return None


def need_mongo() -> str | None:
    if not _have_module("memstore.backends.mongodb.backend") and not _have_module(
        "memstore.backends.mongodb"
    ):
        return "the MongoDB backend is not in this build"
    if not _have_module("pymongo"):
        return "pymongo not installed"
    return None


def setup_embedded(g: Group, ctx: Run) -> None:
    g.service_env = {"MEMORY_TYPE": "embedded"}
    g.raw = ("sqlite", {"path": str(ctx.workdir / "raw-sqlite" / "raw.db")})
    g.targets["dict"] = Target("baseline", "dict", raw=("dict", {}))


def setup_redis(g: Group, ctx: Run) -> None:
    port = ctx.procs.redis("redis")
    ctx.redis_port = port
    g.store_pids = [redis_pid(port)]
    g.service_env = {"MEMORY_TYPE": "redis", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
    g.raw = ("redis", {"port": str(port)})


def setup_redis_cluster(g: Group, ctx: Run) -> None:
    ports = ctx.procs.redis_cluster("cluster")
    seed = ",".join(f"127.0.0.1:{p}" for p in ports)
    g.store_pids = [redis_pid(p) for p in ports]
    g.service_env = {"MEMORY_TYPE": "redis", "MEMSTORE_REDIS_CLUSTER_NODES": seed}
    g.raw = ("redis-cluster", {"nodes": seed})


def setup_mongo(g: Group, ctx: Run) -> None:
    uri = ctx.procs.ferretdb("ferretdb")
    g.store_pids = [ctx.procs.children[-1].pid]  # the FerretDB just started
    g.service_env = {"MEMORY_TYPE": "mongodb", "MONGODB_URI": uri, "MONGODB_DB": "bench"}
    g.raw = ("mongodb", {"uri": uri})


# -- the run ---------------------------------------------------------------------------------


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def summarise(samples: list[Sample]) -> dict[str, Any]:
    return {
        "rps": round(median([s.rps for s in samples]), 1),
        "p50_ms": round(median([s.p50_ms for s in samples]), 3),
        "p99_ms": round(median([s.p99_ms for s in samples]), 3),
        "errors": sum(s.errors for s in samples),
        "cpu_us_per_req": round(median([s.cpu_us for s in samples]), 1),
        "store_cpu_us_per_req": round(median([s.store_cpu_us for s in samples]), 1),
        "loadgen_cpu_us_per_req": round(median([s.loadgen_cpu_us for s in samples]), 1),
        "rounds": [s.to_dict() for s in samples],
    }


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="memstore-bench-"))
        self.procs = Procs(self.workdir)
        self.redis_port = 0
        self.sink_url = ""
        self.memcached_url = ""
        self.results: list[dict[str, Any]] = []
        self.search_results: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.failed: list[dict[str, str]] = []
        self.extras: dict[str, Any] = {}

    def selected(self, key: str) -> bool:
        return self.args.only is None or re.search(self.args.only, key) is not None

    # -- targets ------------------------------------------------------------------------

    def target(self, g: Group, key: str) -> Target:
        if key in g.targets:
            t = g.targets[key]
        elif key.startswith("svc"):
            env = self.service_env(g, key)
            t = g.targets[key] = Target("service", "svc", env=env, count=2 if key == "svc2" else 1)
        elif key.startswith("tree"):  # "tree", "tree_nocache": --reference-tree's service
            env = self.service_env(g, key) | self.tree_env()
            t = g.targets[key] = Target("service", "tree", env=env)
        elif key == "base":
            t = g.targets[key] = Target("baseline", "raw", raw=g.raw)
        else:
            raise KeyError(key)
        if not t.urls:
            self.start(g, key, t)
        return t

    def service_env(self, g: Group, key: str) -> dict[str, str]:
        """The group's service settings for a target key: ``_nocache`` turns the cache
        off, then the observability variant of ``variant_env``."""
        env = dict(g.service_env)
        if "nocache" in key:
            env["MEMSTORE_CACHE_TTL_SECONDS"] = "0"
        if "_l2" in key and not self.memcached_url:
            self.memcached_url, pid = L2.start_memcached(self.procs)
            g.store_pids.append(pid)
        env |= L2.service_env(key, g.entities, self.memcached_url)
        if m := re.search(r"_w(\d+)", key):  # "svc_w2": memstore serve --workers 2
            env["MEMSTORE_WORKERS"] = m.group(1)
        return env | self.variant_env(key)

    def variant_env(self, key: str) -> dict[str, str]:
        """Observability variants of the service: ``svc_off`` has metrics and tracing off;
        ``svc_t100`` / ``svc_t10`` trace 100% / 10% of requests (metrics off) into a local
        OTLP sink. Plain ``svc`` is the default deployment: metrics on, tracing off."""
        if key.endswith("_off"):
            return {"MEMSTORE_METRICS_ENABLED": "false"}
        for suffix, ratio in (("_t100", "1.0"), ("_t10", "0.1")):
            if key.endswith(suffix):
                return {
                    "MEMSTORE_METRICS_ENABLED": "false",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{self.otlp_sink()}/v1/traces",
                    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                    "OTEL_TRACES_SAMPLER_ARG": ratio,
                    "OTEL_SERVICE_NAME": "memstore-bench",
                }
        return {}

    def tree_env(self) -> dict[str, str]:
        """The ``--reference-tree`` checkout's service, with this checkout's environment
        (``checkout_env``) and its own data (Redis prefix, database, file) on the same
        backend servers: two versions of the code may not share a data layout."""
        return {
            **checkout_env(self.args.reference_tree),
            "REDIS_PREFIX": "memstore-ref:",
            "MONGODB_DB": "bench_ref",
            "MEMSTORE_DATA_PATH": str(self.workdir / "embedded-ref.db"),
        }

    def otlp_sink(self) -> str:
        if not self.sink_url:
            self.sink_url, _ = self.procs.python_app("otlp-sink", "bench.otlp_sink")
        return self.sink_url

    def start(self, g: Group, key: str, t: Target) -> None:
        name = f"{g.name}-{key}"
        if t.kind == "service":
            if g.name == "embedded":
                # every service process of the group shares one file (multi-process WAL),
                # which the embedded backend allows only when each process opts in
                t.env.setdefault("MEMSTORE_DATA_PATH", str(self.workdir / "embedded.db"))
                t.env.setdefault("MEMSTORE_EMBEDDED_SHARED", "true")
            for i in range(t.count):
                url, proc = self.procs.service(f"{name}-{i}", t.env)
                if "MEMSTORE_WORKERS" in t.env:
                    wait_for_workers(url, int(t.env["MEMSTORE_WORKERS"]))
                t.urls.append(url)
                t.procs.append(proc)
        else:
            url, proc = self.procs.baseline(name, t.raw[0], t.raw[1])
            t.urls.append(url)
            t.procs.append(proc)
        if t.store not in g.seeded:
            asyncio.run(
                W.seed(
                    t.urls[0],
                    entities=g.entities,
                    conversations=g.conversations,
                    messages=g.messages,
                )
            )
            g.seeded.add(t.store)

    def stop_group(self, g: Group) -> None:
        for t in g.targets.values():
            for p in t.procs:
                self.procs.stop(p)
            t.urls, t.procs = [], []

    # -- measuring ------------------------------------------------------------------------

    def measure(self, g: Group, side: Side, seconds: int, delay_ms: float | None = None) -> Sample:
        load = side.load
        if isinstance(load, Agents):
            return self.agents(g, side, load, seconds)
        t = self.target(g, side.target)
        urls = t.urls if len(t.urls) > 1 else t.urls * (2 if side.label == "x2" else 1)
        # The workers of `serve --workers` too: a parent's CPU time counts only children
        # it has reaped.
        pids = with_children([p.pid for p in t.procs])
        cpu0 = cpu_seconds(pids)
        store0 = cpu_seconds(g.store_pids)
        params = load.params()
        if load.script == "get":
            params["n"] = str(g.entities)
        elif load.script == "load":
            params["n"] = str(g.conversations)
        sample = run_wrk(
            urls,
            load.script,
            params,
            seconds=seconds,
            connections=g.connections or load.connections,
            delay_ms=delay_ms,
        )
        sample.cpu_us = 1e6 * (cpu_seconds(pids) - cpu0) / max(1, sample.requests)
        sample.store_cpu_us = 1e6 * (cpu_seconds(g.store_pids) - store0) / max(1, sample.requests)
        return sample

    def agents(self, g: Group, side: Side, load: Agents, seconds: int) -> Sample:
        cmd = [
            sys.executable,
            "-m",
            "bench.agents",
            "--mode",
            load.mode,
            "--agents",
            str(load.agents),
            "--seconds",
            str(seconds),
            "--entities",
            str(g.entities),
            "--conversations",
            str(g.conversations),
        ]
        pids: list[int] = []
        if load.mode == "http":
            t = self.target(g, side.target)
            cmd += ["--url", t.urls[0]]
            pids = [p.pid for p in t.procs]
        else:
            self.target(g, "base")  # the raw client works on the baseline's seeded store
            cmd += ["--backend", g.raw[0]]
            for k, v in g.raw[1].items():
                cmd += ["--opt", f"{k}={v}"]
        cpu0 = cpu_seconds(pids) + _children_cpu()
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=seconds + 120,
        )
        cpu = cpu_seconds(pids) + _children_cpu() - cpu0
        if out.returncode != 0:
            raise RuntimeError(f"agents failed: {out.stderr[-800:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        secs = r["duration_us"] / 1e6
        return Sample(
            rps=r["requests"] / secs,
            p50_ms=r["latency_us"]["p50"] / 1000,
            p90_ms=r["latency_us"]["p90"] / 1000,
            p99_ms=r["latency_us"]["p99"] / 1000,
            requests=r["requests"],
            errors=r["errors"],
            seconds=secs,
            cpu_us=1e6 * cpu / max(1, r["requests"]),
        )

    def run_scenario(self, g: Group, sc: Scenario) -> dict[str, Any]:
        a = self.args
        ref: list[Sample] = []
        meas: list[Sample] = []
        for side in (sc.ref, sc.meas):
            # Cache entries live MEMSTORE_CACHE_TTL_SECONDS (30 s): refill them before a
            # cache-hit scenario, whatever ran before.
            if isinstance(side.load, Wrk) and side.load.script == "get" and side.target != "raw":
                for url in self.target(g, side.target).urls:
                    asyncio.run(W.read_all(url, entities=g.entities))
        if a.warmup:
            self.measure(g, sc.ref, a.warmup)
            self.measure(g, sc.meas, a.warmup)
        rounds = min(a.rounds, g.rounds or a.rounds)
        if sc.kind == "cost":
            # A cost row compares two nearly equal configurations: its few percent are less
            # than this machine's second-to-second noise (single rounds of the 10% tracing
            # row ranged 0.58-1.40), so it gets four times the rounds.
            rounds *= 4
        for r in range(rounds):
            order = [(sc.ref, ref), (sc.meas, meas)]
            for side, out in order if r % 2 == 0 else reversed(order):
                out.append(self.measure(g, side, g.seconds or a.seconds))
        res: dict[str, Any] = {
            "group": g.name,
            "key": sc.key,
            "title": sc.title,
            "kind": sc.kind,
            "reference": {"target": sc.ref.target, **summarise(ref)},
            "measured": {"target": sc.meas.target, **summarise(meas)},
        }
        # Each round's two samples ran back to back: the median of the per-round ratios
        # cancels slow drifts of the machine's background load better than a ratio of
        # medians would.
        pairs = [m.rps / r.rps for r, m in zip(ref, meas, strict=True) if r.rps > 0]
        res["ratio"] = round(median(pairs), 3) if pairs else None
        cpu_m, cpu_r = res["measured"]["cpu_us_per_req"], res["reference"]["cpu_us_per_req"]
        # Reference CPU per request / measured: the efficiency ratio, independent of how
        # much CPU the machine's other tenants left us.
        res["cpu_ratio"] = round(cpu_r / cpu_m, 3) if cpu_m and cpu_r else None
        res["target_ratio"] = sc.target_ratio
        if sc.target_ratio is not None and res["ratio"] is not None:
            res["meets_target"] = res["ratio"] >= sc.target_ratio
        rate = res["measured"]["rps"] / 2
        if sc.half_max and a.half_max and isinstance(sc.meas.load, Wrk) and rate > 0:
            conns = g.connections or 32
            side = Side(sc.meas.target, Wrk(sc.meas.load.script, sc.meas.load.params, conns))
            # Each connection loops: wait, send, read. The wait is sized for the target rate,
            # then corrected once from a 1 s calibration run (the cycle includes latency).
            delay = 1000 * conns / rate
            probe = self.measure(g, side, 1, delay_ms=delay)
            if probe.rps > 0:
                delay = max(0.0, delay - 1000 * conns * (1 / probe.rps - 1 / rate))
            s = self.measure(g, side, a.seconds + 1, delay_ms=delay)
            res["half_max"] = {
                "offered_rps": round(rate, 1),
                "achieved_rps": round(s.rps, 1),
                "p50_ms": round(s.p50_ms, 3),
                "p99_ms": round(s.p99_ms, 3),
                "meets_target": s.p99_ms <= 5.0,
            }
        return res

    def search(self, g: Group, entities: int) -> dict[str, Any]:
        """A ``search-<n>`` row: ``bench.search`` in its own process against the group's
        backend (its own namespace, database or file), its JSON line as the result."""
        a = self.args
        env = {
            **g.service_env,
            "PYTHONPATH": str(REPO),
            "MEMSTORE_LOG_LEVEL": "WARNING",
            "MEMSTORE_DATA_PATH": str(self.workdir / f"search-{entities}.db"),
            "MONGODB_DB": f"bench_search_{entities}",
        }
        argv = [
            "--entities",
            str(entities),
            "--namespace",
            f"search{entities}",
            "--rounds",
            str(min(a.rounds, g.rounds or a.rounds)),
            "--seconds",
            str(g.seconds or a.seconds),
            "--store-wait",
            str(g.search_store_wait),
        ]
        row: dict[str, Any] = run_json_module(
            "bench.search", argv, env=env, timeout=3600, stream_stderr=True, last_line=True
        )
        return {"group": g.name, "key": S.size_key(entities), **row}

    def run_group(self, g: Group) -> None:
        todo = [sc for sc in g.scenarios if self.selected(f"{g.name}/{sc.key}")]
        sizes = [n for n in self.args.search_sizes if self.selected(f"{g.name}/{S.size_key(n)}")]
        if not (todo or sizes):
            return
        reason = g.requires()
        if reason:
            self.skipped.append({"group": g.name, "reason": reason})
            print(f"## {g.name}: skipped ({reason})", file=sys.stderr)
            return
        try:
            try:
                g.setup(g, self)
            except Exception as exc:  # a backend that cannot start skips its group only
                self.skipped.append({"group": g.name, "reason": f"could not start: {exc}"})
                print(f"## {g.name}: skipped (could not start: {exc})", file=sys.stderr)
                return
            for sc in todo:
                began = time.monotonic()
                try:
                    res = self.run_scenario(g, sc)
                except Exception as exc:  # recorded, reported, and the run goes on
                    self.failed.append({"group": g.name, "key": sc.key, "error": str(exc)})
                    print(f"## {g.name}/{sc.key}: FAILED: {exc}", file=sys.stderr)
                    continue
                self.results.append(res)
                store = ""
                if g.store_pids:
                    store = (
                        f", store CPU {res['measured']['store_cpu_us_per_req']:.0f} vs "
                        f"{res['reference']['store_cpu_us_per_req']:.0f} µs/req"
                    )
                print(
                    f"{g.name}/{sc.key}: {res['measured']['rps']:.0f} vs "
                    f"{res['reference']['rps']:.0f} req/s = {res['ratio']}, service CPU "
                    f"{res['measured']['cpu_us_per_req']:.0f} vs "
                    f"{res['reference']['cpu_us_per_req']:.0f} µs/req{store} "
                    f"({time.monotonic() - began:.0f}s)",
                    file=sys.stderr,
                )
            for n in sizes:
                if g.search_max is not None and n > g.search_max:
                    reason = f"{S.size_key(n)}: {g.search_max_reason}"
                    self.skipped.append({"group": g.name, "reason": reason})
                    print(f"## {g.name}: skipped {reason}", file=sys.stderr)
                    continue
                began = time.monotonic()
                try:
                    self.search_results.append(self.search(g, n))
                except Exception as exc:
                    self.failed.append({"group": g.name, "key": S.size_key(n), "error": str(exc)})
                    print(f"## {g.name}/{S.size_key(n)}: FAILED: {exc}", file=sys.stderr)
                    continue
                print(
                    f"{g.name}/{S.size_key(n)}: done ({time.monotonic() - began:.0f}s)",
                    file=sys.stderr,
                )
        finally:
            self.stop_group(g)


# -- extras: redis-benchmark and bytes per entity --------------------------------------------


def redis_benchmark(port: int) -> list[dict[str, Any]]:
    """redis-benchmark on the same machine: the outer limit for anything over Redis."""
    out = []
    runs = [
        (
            "GET/SET/HSET/LPUSH/LRANGE_100, 50 clients",
            ["-t", "get,set,hset,lpush,lrange_100", "-c", "50", "-n", "100000", "-d", "1024"],
        ),
        ("GET, 50 clients, pipeline 16", ["-t", "get", "-c", "50", "-n", "400000", "-P", "16"]),
    ]
    for label, args in runs:
        proc = subprocess.run(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv", *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        header = [h.strip('"') for h in lines[0].split(",")]
        for ln in lines[1:]:
            row = dict(zip(header, [c.strip('"') for c in ln.split(",")], strict=False))
            out.append(
                {
                    "run": label,
                    "test": row["test"],
                    "rps": float(row["rps"]),
                    "p50_ms": float(row.get("p50_latency_ms", 0)),
                    "p99_ms": float(row.get("p99_latency_ms", 0)),
                }
            )
    return out


def bytes_per_entity(ctx: Run, g: Group) -> list[dict[str, Any]]:
    """Write N entities of 1 KB and 10 KB through the service; Redis memory per entity."""
    port = ctx.redis_port
    url = ctx.target(g, "svc").urls[0]
    out = []
    n = 500
    for size in (1024, 10 * 1024):
        ns = f"mem{size}"
        data = W.entity_data(size)
        payload = len(orjson.dumps(data))
        before = int(redis_cli(port, "INFO", "memory").split("used_memory:")[1].split()[0])
        asyncio.run(_put_many(url, ns, data, n))
        after = int(redis_cli(port, "INFO", "memory").split("used_memory:")[1].split()[0])
        keys = redis_cli(port, "--scan", "--pattern", f"*e:{{{ns}|*")
        sample = [k for k in keys.split() if k][:50]
        usage = [int(redis_cli(port, "MEMORY", "USAGE", k, "SAMPLES", "0")) for k in sample]
        per = (after - before) / n
        out.append(
            {
                "payload_bytes": payload,
                "used_memory_delta_per_entity": round(per),
                "memory_usage_entity_key": round(median([float(u) for u in usage])),
                "limit": round(1.3 * payload + 200),
                "meets_target": per <= 1.3 * payload + 200,
            }
        )
    return out


async def _put_many(url: str, ns: str, data: dict[str, Any], n: int) -> None:
    import aiohttp

    body = orjson.dumps({"data": data})
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def put(i: int) -> None:
            async with (
                sem,
                http.put(
                    f"{url}/v1/namespaces/{ns}/entities/doc/m{i}",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as r,
            ):
                r.raise_for_status()
                await r.read()

        await asyncio.gather(*(put(i) for i in range(n)))


# -- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"

    def version(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return ""

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "wrk": version(["wrk", "-v"]),
        "redis": re.sub(
            r"^Redis server v=(\S+).*", r"Redis \1", version(["redis-server", "--version"])
        ),
    }


def _ratio(r: dict[str, Any]) -> str:
    if r["ratio"] is None:
        return "n/a"
    tgt = r.get("target_ratio")
    mark = "" if "meets_target" not in r else (" ✓" if r["meets_target"] else " ✗")
    return f"{r['ratio']:.2f}" + (f" (≥{tgt:.2f}){mark}" if tgt else "")


def _lat(s: dict[str, Any]) -> str:
    return f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}"


def _cpu(r: dict[str, Any]) -> str:
    m, b = r["measured"]["cpu_us_per_req"], r["reference"]["cpu_us_per_req"]
    if not (m and b):
        return ""
    return f"{m:,.0f} / {b:,.0f} ({r['cpu_ratio']:.2f})"


def baseline_table(scenarios: list[dict[str, Any]], report: dict[str, Any]) -> str:
    """The service against its bare baseline, one row per (backend, scenario)."""
    baselines = [r for r in scenarios if r["kind"] == "baseline"]
    if not baselines:
        return ""
    lines = [
        "| backend | scenario | service req/s | baseline req/s | ratio (target) "
        "| CPU µs/req service / baseline (ratio) | p50 / p99 ms service "
        "| p50 / p99 ms baseline | p99 at ½ max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in baselines:
        m, b = r["measured"], r["reference"]
        half = r.get("half_max")
        half_s = (
            (
                f"{half['p99_ms']:.1f} ms @ {half['achieved_rps']:,.0f}/s"
                + (" ✓" if half["meets_target"] else " ✗")
            )
            if half
            else ""
        )
        lines.append(
            f"| {r['group']} | {r['title']} | {m['rps']:,.0f} | {b['rps']:,.0f} | {_ratio(r)} "
            f"| {_cpu(r)} | {_lat(m)} | {_lat(b)} | {half_s} |"
        )
    return "\n".join(lines)


def comparison_table(scenarios: list[dict[str, Any]], report: dict[str, Any]) -> str:
    """The same service with one thing changed (the workers rows have their own table)."""
    costs = [r for r in scenarios if r["kind"] == "cost" and not workers.is_workers_row(r)]
    if not costs:
        return ""
    lines = [
        "| comparison | with req/s | without req/s | ratio (target) "
        "| CPU µs/req with / without (ratio) | p50 / p99 ms with | p50 / p99 ms without |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in costs:
        m, b = r["measured"], r["reference"]
        lines.append(
            f"| {r['group']}: {r['title']} | {m['rps']:,.0f} | {b['rps']:,.0f} "
            f"| {_ratio(r)} | {_cpu(r)} | {_lat(m)} | {_lat(b)} |"
        )
    return "\n".join(lines)


def redis_benchmark_table(rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    lines = [
        "| redis-benchmark (outer limit) | test | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['test']} | {r['rps']:,.0f} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    return "\n".join(lines)


def redis_memory_table(rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    lines = [
        "| Redis, per entity | payload bytes | used_memory Δ / entity "
        "| MEMORY USAGE of the entity hash | target ≤ 1.3 x payload + 200 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ok = " ✓" if r["meets_target"] else " ✗"
        lines.append(
            f"| {r['payload_bytes']:,} B payload | {r['payload_bytes']:,} "
            f"| {r['used_memory_delta_per_entity']:,}{ok} "
            f"| {r['memory_usage_entity_key']:,} | {r['limit']:,} |"
        )
    return "\n".join(lines)


#: How this module's own keys of a results file are rendered (bench/sections.py).
SECTIONS = (
    Section("scenarios", "Against the bare baselines", baseline_table, order=10),
    Section("scenarios", "Comparisons: the same service, one thing changed", comparison_table, 20),
    Section("scenarios", "Workers: `serve --workers 2` ÷ one worker", workers.markdown, 25),
    Section("scenarios", "Shared second-level cache", value_only(L2.markdown), 30),
    Section("redis_benchmark", "redis-benchmark on the same machine", redis_benchmark_table, 90),
    Section("redis_memory", "Redis memory per entity", redis_memory_table, 91),
)


def markdown(report: dict[str, Any]) -> str:
    """What ``make bench`` prints: every table of the report (bench/sections.py)."""
    return sections.markdown(report)


# -- main ---------------------------------------------------------------------------------------


def workers_rows() -> list[Scenario]:
    """``memstore serve --workers 2`` against one worker, same backend, same load (16
    connections, which the kernel spreads over the workers by SO_REUSEPORT)."""
    return [
        Scenario(
            "workers-get-hit",
            "--workers 2 / 1 (GET, cache hit)",
            Side("svc", get_load()),
            Side("svc_w2", get_load()),
            1.7,
            kind="cost",
        ),
        Scenario(
            "workers-get-hit-off",
            "--workers 2 / 1, metrics off (GET, cache hit)",
            Side("svc_off", get_load()),
            Side("svc_w2_off", get_load()),
            1.7,
            kind="cost",
        ),
        Scenario(
            "workers-get-miss",
            "--workers 2 / 1 (GET from Redis, cache off)",
            Side("svc_nocache", get_load()),
            Side("svc_w2_nocache", get_load()),
            1.7,
            kind="cost",
        ),
    ]


def redis_tracing_costs() -> list[Scenario]:
    """Tracing on a request that reaches the backend (server and backend spans): the
    cache-miss GET against the same service with tracing off."""
    return [
        Scenario(
            f"cost-{name}",
            f"{title} (GET, cache miss)",
            Side("svc_nocache_off", get_load()),
            Side(target, get_load()),
            target_ratio,
            kind="cost",
        )
        for name, title, target, target_ratio in (
            ("trace100", "tracing 100% sampled / all off", "svc_nocache_t100", None),
            ("trace10", "tracing 10% sampled / all off", "svc_nocache_t10", 0.90),
        )
    ]


def tree_comparisons(scenarios: list[Scenario]) -> list[Scenario]:
    """``--reference-tree``: what a change costs. Every service row of a group (the
    service against the raw baseline) once more as ``tree-<key>``: the same load against
    this checkout's service and another checkout's (e.g. a branch against main), same
    settings, same backend servers, rounds alternating as in every cost row."""
    return [
        Scenario(
            f"tree-{sc.key}",
            # the service side's part of the title (the mixed row's also names its raw reference)
            f"{sc.title.partition(' vs ')[0]}: this tree / reference tree",
            Side(sc.meas.target.replace("svc", "tree", 1), sc.meas.load),
            sc.meas,
            0.90,
            kind="cost",
        )
        for sc in scenarios
        if sc.kind == "baseline" and sc.meas.target.startswith("svc")
    ]


def groups(reference_tree: bool = False) -> list[Group]:
    def trees(scenarios: list[Scenario]) -> list[Scenario]:
        return scenarios + (tree_comparisons(scenarios) if reference_tree else [])

    embedded = backend_scenarios()
    embedded.insert(
        0,
        Scenario(
            "get-hit",
            "entity GET, cache hit",
            Side("dict", get_load()),
            Side("svc", get_load()),
            0.75,
            half_max=True,
        ),
    )
    embedded += [
        Scenario(
            f"cost-{name}",
            f"{title} (GET, cache hit)",
            Side("svc_off", get_load()),
            Side(target, get_load()),
            target_ratio,
            kind="cost",
        )
        for name, title, target, target_ratio in (
            ("metrics", "Prometheus metrics on / all off", "svc", None),
            ("trace100", "tracing 100% sampled / all off", "svc_t100", None),
            ("trace10", "tracing 10% sampled / all off", "svc_t10", 0.85),
        )
    ]
    embedded.append(
        Scenario(
            "two-procs",
            "two service processes vs one (GET, cache hit)",
            Side("svc", get_load(), label="x2"),
            Side("svc2", get_load()),
            None,
            kind="cost",
        )
    )
    return [
        Group("embedded", setup_embedded, trees(embedded)),
        Group(
            "redis",
            setup_redis,
            trees(backend_scenarios() + redis_tracing_costs() + workers_rows()),
            need_redis,
        ),
        Group("redis-cluster", setup_redis_cluster, trees(backend_scenarios()), need_redis),
        # FerretDB v1 on SQLite is the bottleneck there (fsync per write, sorts in memory):
        # fewer entities, connections and rounds keep the group inside the time budget.
        Group(
            "mongodb",
            setup_mongo,
            trees(backend_scenarios()) + L2.scenarios(),
            need_mongo,
            entities=100,
            conversations=5,
            messages=60,
            rounds=2,
            seconds=2,
            connections=4,
            # FerretDB v1 on SQLite scans a collection for each write here: ~1 write/s
            # with a few thousand documents, so the search rows stop at 1,000 entities and
            # measure while the vectors are still being stored.
            search_max=1000,
            search_max_reason="FerretDB v1/SQLite stores ~1 entity/s at this size (beyond "
            "the time budget)",
            search_store_wait=30.0,
        ),
    ]


def embedding_bench(rounds: int, seconds: int) -> dict[str, Any]:
    """``bench.embeddings`` in a process of its own (its CPU time is its own)."""
    print("## embeddings/wordllama", file=sys.stderr)
    result: dict[str, Any] = run_json_module(
        "bench.embeddings", ["--json", "--rounds", str(rounds), "--seconds", str(seconds)]
    )
    return result


def export_bench(items: int, backends: list[str]) -> list[dict[str, Any]]:
    """``bench.export`` in a process of its own (each of its phases in one more)."""
    print(f"## export ({items:,} records: {', '.join(backends)})", file=sys.stderr)
    rows: list[dict[str, Any]] = run_json_module(
        "bench.export", ["--json", "--items", str(items), "--backends", ",".join(backends)]
    )
    return rows


def peers_bench(rounds: int, seconds: int, keys: list[str]) -> dict[str, Any]:
    """``bench.peers`` in a process of its own (each side in one more): memstore against
    LangGraph's stores, OpenAI Agents' sessions and Agent Memory Server
    (``BENCH_PEERS_QUICK=1``: its quick mode)."""
    print(f"## peers ({', '.join(keys)})", file=sys.stderr)
    result: dict[str, Any] = run_json_module(
        "bench.peers",
        [
            "--json",
            *("--rounds", str(rounds), "--seconds", str(seconds)),
            *("--only", f"^({'|'.join(keys)})$"),
        ],
        stream_stderr=True,
    )
    return result


def growth_bench(backends: list[str], out: Path) -> dict[str, Any]:
    """``bench.growth`` in a process of its own (its sizes and budget: ``BENCH_GROWTH_*``,
    see its ``--help``): the growth curves; its own result file goes to ``out`` too."""
    print(f"## growth ({', '.join(backends)})", file=sys.stderr)
    result: dict[str, Any] = run_json_module(
        "bench.growth",
        ["--json", "--out", str(out), "--backends", ",".join(backends)],
        stream_stderr=True,
        last_line=True,
        partial=True,  # it prints its result even when a backend failed
    )
    return result


def atrest_bench(rounds: int, seconds: int) -> dict[str, Any]:
    """``bench.atrest`` in a process of its own (its CPU time is its own)."""
    print("## atrest/codec", file=sys.stderr)
    result: dict[str, Any] = run_json_module(
        "bench.atrest", ["--json", "--rounds", f"{rounds}", "--seconds", f"{seconds}"]
    )
    return result


def _commit(tree: Path) -> str:
    """The checkout's commit, ``+`` if it has uncommitted changes."""
    git = ["git", "-C", str(tree)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated entity counts") from None
    if any(n < 20 for n in sizes):
        raise argparse.ArgumentTypeError("each search size is at least 20 entities")
    return sizes


def _readme(readme: Path, results: Path) -> int:
    changed = sections.write_readme(readme, json.loads(results.read_text()))
    state = "rewritten" if changed else "already up to date"
    print(f"{readme}: Performance section {state} from {results}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", help="regex on group/scenario keys, e.g. 'embedded/get-hit'")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "1")))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "4")))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-half-max", dest="half_max", action="store_false")
    p.add_argument(
        "--no-extras",
        dest="extras",
        action="store_false",
        help="skip redis-benchmark and Redis bytes per entity",
    )
    p.add_argument(
        "--search-sizes",
        type=_sizes,
        default=_sizes(os.environ.get("BENCH_SEARCH_SIZES", "1000,10000,100000")),
        help="entities per search row (search-<n>), comma-separated; e.g. 1000,10000 "
        "for a quicker run",
    )
    p.add_argument(
        "--export-items",
        type=int,
        default=int(os.environ.get("BENCH_EXPORT_ITEMS", "100000")),
        help="records of the namespace the export rows (export/<backend>) export and "
        "import; 0 skips them",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--reference-tree",
        type=Path,
        help="another checkout (e.g. a worktree of main): adds a row tree-<key> for every "
        "service row <key>, its service against this tree's (pick them with --only)",
    )
    p.add_argument(
        "--connections",
        type=int,
        help="wrk connections for every row (the concurrency; default: each load's own, 16)",
    )
    p.add_argument("--report", type=Path, help="only print the tables of an earlier result file")
    p.add_argument(
        "--readme",
        type=Path,
        nargs="?",
        const=Path(),
        metavar="RESULTS",
        help="only rewrite README.md's Performance section from a results file (default: "
        "the newest whole run in bench/results)",
    )
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="after a whole run (no --only), rewrite README.md's Performance section from "
        "it (make bench does, unless BENCH_README=0)",
    )
    p.add_argument(
        "--readme-path",
        type=Path,
        default=REPO / "README.md",
        help="the README that --readme and --update-readme rewrite (default: this checkout's)",
    )
    args = p.parse_args(argv)
    if args.reference_tree is not None:
        try:
            checkout_env(args.reference_tree)
        except ValueError as exc:
            p.error(str(exc))
    if args.report is not None:
        print(sections.performance_section(json.loads(args.report.read_text())))
        return 0
    if args.readme is not None:
        try:
            source = args.readme if args.readme != Path() else sections.latest_full_run(args.out)
            return _readme(args.readme_path, source)
        except (OSError, ValueError) as exc:  # no results file, no markers in the README
            p.error(str(exc))
    run = Run(args)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "seconds": args.seconds,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "only": args.only,
            "connections": args.connections,
            "entities": W.ENTITIES,
            "entity_payload_bytes": len(orjson.dumps(W.entity_data())),
            "search_sizes": args.search_sizes,
            "tree": _commit(REPO),
            "reference_tree": _commit(args.reference_tree) if args.reference_tree else None,
        },
    }
    try:
        for g in groups(args.reference_tree is not None):
            if args.connections is not None:
                g.connections = args.connections
            run.run_group(g)
        if run.selected("embeddings/wordllama"):
            try:
                run.extras["embeddings"] = embedding_bench(args.rounds, args.seconds)
            except Exception as exc:
                run.failed.append({"group": "embeddings", "key": "wordllama", "error": str(exc)})
                print(f"## embeddings/wordllama: FAILED: {exc}", file=sys.stderr)
        export_backends = [
            b
            for b in ("embedded", "redis")
            if run.selected(f"export/{b}") and (b == "embedded" or need_redis() is None)
        ]
        if export_backends and args.export_items > 0:
            try:
                run.extras["export"] = export_bench(args.export_items, export_backends)
            except Exception as exc:
                run.failed.append({"group": "export", "key": "export", "error": str(exc)})
                print(f"## export: FAILED: {exc}", file=sys.stderr)
        if peer_keys := [r.key for r in PEER_ROWS if run.selected(f"peers/{r.key}")]:
            try:
                peers = peers_bench(args.rounds, args.seconds, peer_keys)
                run.extras["peers"] = peers["rows"]
                run.skipped += peers["skipped"]
            except Exception as exc:
                run.failed.append({"group": "peers", "key": "peers", "error": str(exc)})
                print(f"## peers: FAILED: {exc}", file=sys.stderr)
        growth_requires = {"redis": need_redis, "redis-cluster": need_redis, "mongodb": need_mongo}
        growth_backends = []
        for b in (b for b in GROWTH_BACKENDS if run.selected(f"growth/{b}")):
            if reason := growth_requires.get(b, lambda: None)():
                run.skipped.append({"group": f"growth/{b}", "reason": reason})
            else:
                growth_backends.append(b)
        if growth_backends:
            try:
                run.extras["growth"] = growth = growth_bench(growth_backends, args.out)
                run.failed += [
                    {"group": f"growth/{b['backend']}", "key": "growth", "error": b["failed"]}
                    for b in growth["backends"]
                    if "failed" in b
                ]
            except Exception as exc:
                run.failed.append({"group": "growth", "key": "growth", "error": str(exc)})
                print(f"## growth: FAILED: {exc}", file=sys.stderr)
        if run.selected("atrest/codec"):
            try:
                run.extras["atrest"] = atrest_bench(args.rounds, args.seconds)
            except Exception as exc:
                run.failed.append({"group": "atrest", "key": "codec", "error": str(exc)})
                print(f"## atrest/codec: FAILED: {exc}", file=sys.stderr)
        if batch_keys := [b for b in ("embedded", "redis") if run.selected(f"batch/{b}")]:
            try:
                run.extras["batch"] = batch_bench(args.rounds, args.seconds, batch_keys)
            except Exception as exc:
                run.failed.append({"group": "batch", "key": "batch", "error": str(exc)})
                print(f"## batch: FAILED: {exc}", file=sys.stderr)
        if run.selected("listings/redis") and need_redis() is None:
            try:
                run.extras["listings"] = listings_bench(args.rounds, args.reference_tree)
            except Exception as exc:
                run.failed.append({"group": "listings", "key": "redis", "error": str(exc)})
                print(f"## listings/redis: FAILED: {exc}", file=sys.stderr)
        if args.extras and run.selected("redis/extras") and need_redis() is None:
            g = Group("redis", setup_redis, [])
            try:
                setup_redis(g, run)
                run.extras["redis_benchmark"] = redis_benchmark(run.redis_port)
                run.extras["redis_memory"] = bytes_per_entity(run, g)
            except Exception as exc:
                run.failed.append({"group": "redis", "key": "extras", "error": str(exc)})
                print(f"## redis/extras: FAILED: {exc}", file=sys.stderr)
            finally:
                run.stop_group(g)
    finally:
        run.procs.stop_all()
    report.update(run.extras)
    report["scenarios"] = run.results
    report["search"] = run.search_results
    report["skipped"] = run.skipped
    report["failed"] = run.failed
    report["elapsed_seconds"] = round(time.monotonic() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    table = markdown(report)
    print(table)
    print(
        f"\n{len(run.results)} scenarios, {len(run.search_results)} search rows in "
        f"{report['elapsed_seconds']}s; results: {path}",
        file=sys.stderr,
    )
    if args.update_readme:
        if args.only is None:
            _readme(args.readme_path, path)
        else:
            print(f"{args.readme_path.name} not rewritten: a partial run (--only)", file=sys.stderr)
    if run.failed:
        print(f"logs of the failed run kept in {run.workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(run.workdir, ignore_errors=True)
    return 0

"""What tracing and metrics cost the service: throughput and server CPU per request.

Not a test (no timed assertions in tests): a measurement to run by hand or from the bench
harness. Each variant is a real service process (embedded backend) on a free loopback port,
driven by a closed-loop aiohttp load generator in this process; spans go over OTLP/HTTP to a
real OpenTelemetry Collector (mk/otelcol.mk). Variants run interleaved, several rounds, and
the best round (highest throughput, lowest CPU per request: the least disturbed by
other work on a shared machine) is reported as a ratio to ``off`` (metrics and tracing both off).

    .venv/bin/python -m tests.observability.tracing_cost [--requests 4000] [--rounds 3]

Variants (all switchable by environment alone, see docs/architecture.md, Observability):
  off          MEMSTORE_METRICS_ENABLED=false, no OTEL endpoint
  metrics      metrics on (default), no OTEL endpoint
  thin-100     metrics + tracing (memstore's middleware), parentbased_traceidratio 1.0
  thin-10      same at 0.1
  contrib-100  server spans from opentelemetry-instrumentation-aiohttp-server instead of
  contrib-10   memstore's middleware (backend/cache spans as in thin-*); only when that
               package is importable by --python (it is not a memstore dependency)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.servers.otelcol import Collector
from tests.support.procs import free_port, wait_http

SERVE_CODE = """
import os
from aiohttp import web
from memstore.server.app import create_app
from memstore.core.settings import Settings
from memstore.observability.logs import configure_logging
from memstore.observability.tracing import Tracing

settings = Settings()
configure_logging("WARNING")
tracing = Tracing.from_env()
contrib = os.environ.get("BENCH_CONTRIB") == "1"
if contrib:
    # The contrib instrumentor, installed its documented way (before the app is built) on
    # an SDK tracer provider configured by the same OTEL_* variables (it needs an SDK
    # provider); memstore's own middleware then keeps metrics only and the manager keeps
    # its backend/cache spans.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
app = create_app(settings, tracing=tracing)
if contrib:
    from memstore.server.telemetry import observability_middleware
    from memstore.server.state import METRICS
    for i, mw in enumerate(app.middlewares):
        if getattr(mw, "__module__", "") == "memstore.server.telemetry":
            app.middlewares[i] = observability_middleware(app[METRICS], None)
web.run_app(app, host="127.0.0.1", port=settings.port, access_log=None, print=None)
"""

HOT = 100  # entities read back (cache hits after the first read)


def variants(collector: Collector, contrib: bool) -> dict[str, dict[str, str]]:
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "memstore-bench",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http",  # contrib: emit the same (new) attributes
    }
    out = {
        "off": {"MEMSTORE_METRICS_ENABLED": "false"},
        "metrics": {},
        "thin-100": {**traced, "OTEL_TRACES_SAMPLER_ARG": "1.0"},
        "thin-10": {**traced, "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    }
    if contrib:
        out["contrib-100"] = {**traced, "OTEL_TRACES_SAMPLER_ARG": "1.0", "BENCH_CONTRIB": "1"}
        out["contrib-10"] = {**traced, "OTEL_TRACES_SAMPLER_ARG": "0.1", "BENCH_CONTRIB": "1"}
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(url: str, requests: int, concurrency: int) -> float:
    """Closed loop: 60% GET of hot entities, 20% PUT, 20% GET of a missing id (404)."""
    ns = f"{url}/v1/namespaces/bench/entities/user"
    async with aiohttp.ClientSession() as session:
        for i in range(HOT):
            async with session.put(f"{ns}/hot{i}", json={"data": {"i": i}}) as r:
                assert r.status in (200, 201), r.status
        counter = iter(range(requests))

        async def worker() -> None:
            for n in counter:
                kind = n % 5
                if kind < 3:
                    async with session.get(f"{ns}/hot{n % HOT}") as r:
                        await r.read()
                elif kind == 3:
                    async with session.put(f"{ns}/w{n % 1000}", json={"data": {"n": n}}) as r:
                        await r.read()
                else:
                    async with session.get(f"{ns}/missing{n % 1000}") as r:
                        await r.read()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began


def run_variant(
    python: str, env: dict[str, str], workdir: Path, requests: int, concurrency: int
) -> tuple[float, float]:
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "MEMSTORE_PORT": str(port),
        "MEMSTORE_DATA_PATH": str(workdir / f"bench-{port}.db"),
        **env,
    }
    with (workdir / f"serve-{port}.log").open("ab") as log:
        proc = subprocess.Popen(
            [python, "-c", SERVE_CODE], env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/livez", proc=proc)
        asyncio.run(drive(url, requests // 10, concurrency))  # warm-up
        cpu0 = cpu_seconds(proc.pid)
        elapsed = asyncio.run(drive(url, requests, concurrency))
        cpu = cpu_seconds(proc.pid) - cpu0
        return requests / elapsed, 1e6 * cpu / requests
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter that runs the service"
    )
    parser.add_argument("--only", nargs="*", help="variant names to run")
    args = parser.parse_args()
    has_contrib = (
        subprocess.run(
            [args.python, "-c", "import opentelemetry.instrumentation.aiohttp_server"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    workdir = Path(tempfile.mkdtemp(prefix="tracing-cost-"))
    if True:  # logs stay in workdir for a look after a failure
        collector = Collector(workdir).start()
        try:
            chosen = variants(collector, has_contrib)
            if args.only:
                chosen = {k: v for k, v in chosen.items() if k in args.only}
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in chosen}
            for _ in range(args.rounds):
                for name, env in chosen.items():
                    results[name].append(
                        run_variant(args.python, env, workdir, args.requests, args.concurrency)
                    )
        finally:
            collector.stop()
            (workdir / "traces.jsonl").unlink(missing_ok=True)
    print(f"service logs: {workdir}")
    report(results)


def report(results: dict[str, list[tuple[float, float]]]) -> None:
    med: dict[str, Any] = {
        k: (max(r for r, _ in v), min(c for _, c in v)) for k, v in results.items()
    }
    base = med.get("off")
    print(f"{'variant':<12} {'req/s':>8} {'ratio':>6} {'cpu us/req':>11} {'ratio':>6}")
    for name, (rps, cpu) in med.items():
        r1 = f"{rps / base[0]:.3f}" if base else "-"
        r2 = f"{cpu / base[1]:.3f}" if base else "-"
        print(f"{name:<12} {rps:8.0f} {r1:>6} {cpu:11.0f} {r2:>6}")


if __name__ == "__main__":
    main()

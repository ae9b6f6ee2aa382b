# ruff: noqa: S603 - the harness runs local tools (wrk, redis-*, the service) by design
"""Run ``wrk`` (one thread: the machine has two cores and the server needs one) with a
scenario's Lua script and return a ``Sample``.

Several wrk processes can run at once against several URLs (the two-process scenario);
their counts add up and the slowest percentile is kept.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua"


@dataclass
class Sample:
    """One measurement of one side."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int
    seconds: float
    # CPU time the server process(es) used per request, in microseconds: the figure that
    # stays comparable when other work shares the machine (throughput does not).
    cpu_us: float = 0.0
    # CPU time the backend's server processes (Redis) used per request, both sides alike.
    store_cpu_us: float = 0.0
    # CPU time the load generator (the wrk processes) used per request: on a machine with
    # few cores it competes with the server for them (bench/README.md, Workers).
    loadgen_cpu_us: float = 0.0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found; `make bench` installs it (mk/bench.mk)")
    return found


def script_text(name: str, rate_limited: bool) -> str:
    parts = [(LUA / "common.lua").read_text(), (LUA / f"{name}.lua").read_text()]
    if rate_limited:
        parts.append((LUA / "rate.lua").read_text())
    return "\n".join(parts)


def run_wrk(
    urls: list[str],
    script: str,
    params: dict[str, str],
    *,
    seconds: float,
    connections: int,
    delay_ms: float | None = None,
) -> Sample:
    """Drive every URL in ``urls`` at once for ``seconds``, ``connections`` split evenly."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script_text(script, delay_ms is not None))
        path = f.name
    # wrk's CPU time: what this process's reaped children used, before and after (the
    # harness reaps no other child while wrk runs).
    cpu0 = _children_cpu()
    try:
        per = max(1, connections // len(urls))
        procs = []
        for i, url in enumerate(urls):
            args = [f"{k}={v}" for k, v in params.items()] + [f"seed={i}"]
            if delay_ms is not None:
                args.append(f"delay_ms={delay_ms}")
            cmd = [
                wrk_binary(),
                "-t1",
                f"-c{per}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "5s",
                "-s",
                path,
                url,
                "--",
                *args,
            ]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=seconds + 60)
            if p.returncode != 0:
                raise RuntimeError(f"wrk failed ({p.returncode}): {err.decode()[-500:]}")
            line = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
            if not line:
                raise RuntimeError(f"wrk printed no result: {out.decode()[-500:]}")
            outs.append(json.loads(line[-1]))
    finally:
        Path(path).unlink(missing_ok=True)
    loadgen_cpu = _children_cpu() - cpu0
    duration = max(o["duration_us"] for o in outs) / 1e6
    requests = sum(o["requests"] for o in outs)
    errors = sum(sum(o["errors"].values()) for o in outs)
    return Sample(
        rps=sum(o["requests"] / (o["duration_us"] / 1e6) for o in outs),
        p50_ms=max(o["latency_us"]["p50"] for o in outs) / 1000,
        p90_ms=max(o["latency_us"]["p90"] for o in outs) / 1000,
        p99_ms=max(o["latency_us"]["p99"] for o in outs) / 1000,
        requests=requests,
        errors=errors,
        seconds=duration,
        loadgen_cpu_us=1e6 * loadgen_cpu / max(1, requests),
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

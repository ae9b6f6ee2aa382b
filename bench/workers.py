"""The workers table: ``memstore serve --workers 2`` ÷ one worker (rows ``redis/workers-*``
of ``bench.run``), with what bounds the ratio on this machine.

The load generator (wrk) and Redis run on the same cores as the service. One worker can
use at most one core; two workers at most two, and together with wrk and Redis at most
every core of the machine. From CPU per request alone (which other tenants of the machine
do not change, unlike throughput), the best each side could do with the machine to itself:

    max_1 = min(1 / s1, cores / (s1 + g1 + r1))
    max_2 = min(2 / s2, cores / (s2 + g2 + r2))

with s the service's CPU per request (supervisor and workers), g wrk's and r Redis's. The
ratio cannot exceed ``max_2 / max_1``: the *CPU bound* column. On 2 cores, wrk and Redis
alone (g + r ≈ 14 µs against s ≈ 78 µs on the cache hit) bound it at 2 s1 / (s1 + g + r)
≈ 1.7 even if a second worker cost nothing more per request (bench/README.md, Workers).
"""

from __future__ import annotations

import statistics
from typing import Any

#: The rows of ``bench.run.workers_rows``.
PREFIX = "workers-"


def is_workers_row(row: dict[str, Any]) -> bool:
    return str(row.get("key", "")).startswith(PREFIX)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def busy_cores(side: dict[str, Any]) -> float:
    """Cores the service, Redis and wrk kept busy together (median over the rounds)."""
    return _median(
        [
            r["rps"]
            * (r["cpu_us"] + r.get("store_cpu_us", 0.0) + r.get("loadgen_cpu_us", 0.0))
            / 1e6
            for r in side.get("rounds", [])
        ]
    )


def _per_request(side: dict[str, Any]) -> tuple[float, float, float]:
    return (
        side["cpu_us_per_req"],
        side.get("loadgen_cpu_us_per_req", 0.0),
        side.get("store_cpu_us_per_req", 0.0),
    )


def cpu_bound(row: dict[str, Any], cores: int) -> float | None:
    """``max_2 / max_1`` (module docstring): the best ratio the CPU per request allows."""
    s1, g1, r1 = _per_request(row["reference"])
    s2, g2, r2 = _per_request(row["measured"])
    if not (s1 and s2):
        return None
    max_1 = min(1 / s1, cores / (s1 + g1 + r1))
    max_2 = min(2 / s2, cores / (s2 + g2 + r2))
    return max_2 / max_1


def markdown(scenarios: list[dict[str, Any]], report: dict[str, Any]) -> str:
    """The workers rows of ``report["scenarios"]``, as a table."""
    cores = int(report["machine"]["cores"])
    rows = [r for r in scenarios if is_workers_row(r)]
    if not rows:
        return ""
    out = [
        "| workers 2 ÷ 1 | 2 workers req/s | 1 worker req/s | ratio (target) "
        "| CPU µs/req service 2 / 1 | wrk µs/req 2 / 1 | store µs/req 2 / 1 "
        f"| cores busy 2 / 1 (of {cores}) | CPU bound |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m, b = r["measured"], r["reference"]
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        if r.get("target_ratio"):
            ratio += f" (≥{r['target_ratio']:.2f})"
        if "meets_target" in r:
            ratio += " ✓" if r["meets_target"] else " ✗"
        bound = cpu_bound(r, cores)
        out.append(
            f"| {r['group']}: {r['title']} | {m['rps']:,.0f} | {b['rps']:,.0f} | {ratio} "
            f"| {m['cpu_us_per_req']:,.0f} / {b['cpu_us_per_req']:,.0f} "
            f"| {m.get('loadgen_cpu_us_per_req', 0):,.0f} / "
            f"{b.get('loadgen_cpu_us_per_req', 0):,.0f} "
            f"| {m.get('store_cpu_us_per_req', 0):,.0f} / {b.get('store_cpu_us_per_req', 0):,.0f} "
            f"| {busy_cores(m):.2f} / {busy_cores(b):.2f} "
            f"| {'' if bound is None else f'{bound:.2f}'} |"
        )
    return "\n".join(out)

"""The shared second-level cache (Memcached) in ``make bench``: the mongodb group's rows
``l2-get-nocache`` and ``l2-get-small``.

Both are comparison rows (rounds alternating, four times ``--rounds``): the same entity
GET load (wrk, ``get.lua``, the group's entities read at random) against two service
processes on the same FerretDB, one without and one with ``MEMSTORE_L2_CACHE_URL``:

* ``l2-get-nocache``: the per-replica cache off (``MEMSTORE_CACHE_TTL_SECONDS=0``), so
  every GET reaches the shared cache (with) or FerretDB (without);
* ``l2-get-small``: the per-replica cache on but holding a fifth of the working set
  (``MEMSTORE_CACHE_MAX_ENTRIES``), so most GETs miss it: where the shared cache pays.

CPU per request counts the service process and the store's processes (FerretDB, and
Memcached, idle on the side without it): ``store_cpu_us_per_req`` in the JSON, summed
with the service's in the table printed by ``markdown``.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from bench.procs import Procs, free_port, tcp_ok, wait_until

if TYPE_CHECKING:
    from bench.run import Scenario

#: Share of the working set the per-replica cache holds in ``l2-get-small``.
SMALL_CACHE_SHARE = 5


def scenarios() -> list[Scenario]:
    from bench.run import Scenario, Side, get_load

    return [
        Scenario(
            "l2-get-nocache",
            "entity GET, per-replica cache off: with / without Memcached",
            Side("svc_nocache", get_load()),
            Side("svc_nocache_l2", get_load()),
            None,
            kind="cost",
        ),
        Scenario(
            "l2-get-small",
            f"entity GET, per-replica cache 1/{SMALL_CACHE_SHARE} of the working set: "
            "with / without Memcached",
            Side("svc_small", get_load()),
            Side("svc_small_l2", get_load()),
            None,
            kind="cost",
        ),
    ]


def service_env(key: str, entities: int, memcached_url: str) -> dict[str, str]:
    """The settings a target key adds: ``_l2`` the shared cache, ``_small`` a per-replica
    cache smaller than the working set."""
    env: dict[str, str] = {}
    if "_l2" in key:
        env["MEMSTORE_L2_CACHE_URL"] = memcached_url
    if "_small" in key:
        env["MEMSTORE_CACHE_MAX_ENTRIES"] = str(max(1, entities // SMALL_CACHE_SHARE))
    return env


def start_memcached(procs: Procs) -> tuple[str, int]:
    """A memcached on a free loopback port: its URL and pid."""
    binary = shutil.which("memcached")
    if binary is None:
        raise RuntimeError("memcached not found; `make tools` installs it (mk/memcached.mk)")
    port = free_port()
    proc = procs.spawn(
        f"memcached-{port}",
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-u", "nobody"],
    )
    wait_until(lambda: tcp_ok(port), f"memcached {port}", proc=proc)
    return f"memcached://127.0.0.1:{port}", proc.pid


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The shared-cache rows with CPU per request of the service plus its stores."""
    rows = [r for r in rows if r["key"].startswith("l2-")]
    if not rows:
        return []

    def total(side: dict[str, Any]) -> float:
        return float(side["cpu_us_per_req"] + side["store_cpu_us_per_req"])

    lines = [
        "| shared cache (Memcached) | with req/s | without req/s | ratio "
        "| CPU µs/req service+stores with / without | p50 / p99 ms with | p50 / p99 ms without |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        m, b = r["measured"], r["reference"]
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['group']}: {r['title']} | {m['rps']:,.0f} | {b['rps']:,.0f} | {ratio} "
            f"| {total(m):,.0f} / {total(b):,.0f} "
            f"| {m['p50_ms']:.2f} / {m['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} |"
        )
    return lines

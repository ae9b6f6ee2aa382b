"""Smoke run of ``python -m bench.listings`` (``make bench``'s ``listings/redis`` row) on a
small standalone Redis: the rows have the documented shape, and the round trips and
commands, which do not depend on timing, are what the Redis backend's listings cost
(tests/redis/test_listings.py counts them on the servers). No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_listing_rows() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.listings", "--items", "120", "--calls", "4",
         "--rounds", "1", "--no-cluster", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["op"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"entity-page", "tool-range", "last-50"}
    for r in rows.values():
        assert r["backend"] == "redis"
        assert r["side"] == "this tree"
        assert r["items"] == 50
        assert r["round_trips"] == 1
        assert r["service_cpu_us"] > 0
        assert r["redis_cpu_us"] >= 0
    # one script per index shard (16), and the commands the scripts run inside
    assert rows["last-50"]["commands"] == 1
    assert rows["entity-page"]["commands"] >= 16

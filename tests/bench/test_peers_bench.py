"""Smoke run of ``python -m bench.peers --quick`` on the real peers: LangGraph's SQLite and
Postgres stores (a PostgreSQL server of its own, mk/postgres.mk), OpenAI Agents' SQLite
and Redis sessions, and Agent Memory Server over HTTP (mk/ams.mk). Every row must be
measured (none skipped), every sample must have completed operations on both sides, and
the table must show each row at both concurrencies. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.peers import ROWS

REPO = Path(__file__).resolve().parents[2]


def test_every_peer_row_is_measured_in_quick_mode(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            *(sys.executable, "-m", "bench.peers", "--quick"),
            *("--concurrency", "1,4", "--out", str(tmp_path)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    (path,) = tmp_path.glob("peers-*.json")
    report = json.loads(path.read_text())
    assert report["skipped"] == [], report["skipped"]
    assert report["settings"]["quick"] is True
    rows = report["rows"]
    assert {(r["key"], r["op"], r["concurrency"]) for r in rows} == {
        (row.key, op, c) for row in ROWS for op in row.ops for c in (1, 4)
    }
    for r in rows:
        assert len(r["samples"]["ref"]) == len(r["samples"]["meas"]) == 2
        assert all(s["ops"] > 0 for side in r["samples"].values() for s in side), r
        assert r["ratio"] > 0 and r["cpu_per_op_ratio"] > 0
        assert r["durability_memstore"] and r["durability_peer"]
    # Redis and PostgreSQL sides count their server's CPU beside the client's.
    postgres = [r for r in rows if r["key"] == "postgres"]
    assert any(r["peer_store_cpu_us_per_op"] > 0 for r in postgres)
    for row in ROWS:
        assert f"| {row.title} | {row.ops[0]} | 4 |" in out.stdout

"""Smoke run of the benchmark harness (``make bench`` itself is not part of ``make test``).

One second per side on the embedded backend: the service and the baseline app start as
processes, wrk drives them, and the result file and table must have the documented shape.
The PUT scenario also proves the version-check script works against both servers: every
If-Match / If-None-Match request must succeed (a 412 would count as an error).
No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_one_scenario_round_trip(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "^embedded/(get-hit|put)$",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--no-half-max",
            "--no-extras",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    report = json.loads(files[0].read_text())

    assert {"started", "machine", "settings", "scenarios", "skipped", "elapsed_seconds"} <= set(
        report
    )
    assert report["machine"]["cores"] >= 1
    by_key = {r["key"]: r for r in report["scenarios"]}
    assert set(by_key) == {"get-hit", "put"}
    for r in by_key.values():
        assert r["group"] == "embedded"
        for side in ("reference", "measured"):
            s = r[side]
            assert s["rps"] > 0
            assert s["errors"] == 0, (r["key"], side, s)
            assert 0 < s["p50_ms"] <= s["p99_ms"]
            assert s["cpu_us_per_req"] > 0
            assert len(s["rounds"]) == 1
            assert s["rounds"][0]["requests"] > 0
        # One round: the ratio is that round's, rounded to 3 places (and rps to 0.1).
        assert r["ratio"] == pytest.approx(r["measured"]["rps"] / r["reference"]["rps"], abs=1e-3)
        assert isinstance(r["meets_target"], bool)
        assert r["cpu_ratio"] > 0
    assert by_key["get-hit"]["reference"]["target"] == "dict"
    assert by_key["put"]["reference"]["target"] == "base"

    table = out.stdout
    assert table.startswith("| backend | scenario | service req/s | baseline req/s |")
    assert "| embedded | entity GET, cache hit |" in table
    assert "| embedded | entity PUT" in table

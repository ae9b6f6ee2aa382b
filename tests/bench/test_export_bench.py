"""The export bench (bench/export.py) at a small size: every phase ran in its own process
and the import wrote what the export read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_export_bench_small() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.export",
            "--items",
            "600",
            "--backends",
            "embedded",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads(out.stdout)
    assert row["backend"] == "embedded"
    assert row["items"] == sum(row["counts"].values()) == 600
    phases = row["phases"]
    assert set(phases) == {"idle", "list", "export", "import"}
    assert phases["list"]["records"] == phases["export"]["records"] == 600
    assert phases["import"]["records"] == 600
    for phase in phases.values():
        assert phase["peak_rss_kb"] >= phase["rss_start_kb"] > 0
    assert row["dump_bytes"] > 600 * 50

"""Smoke run of ``python -m bench.inprocess`` (writes in process, memstore against LangGraph's
``AsyncSqliteStore`` and another checkout): a fraction of a second per side, then the result
file and table must have their shape and every sample must have completed writes. No
timing is asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_rows_against_langgraph_and_a_reference_tree(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    shutil.copytree(REPO / "service", ref / "service")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.inprocess",
            "--rounds",
            "2",
            "--seconds",
            "0.2",
            "--warmup",
            "0.05",
            "--concurrency",
            "1,4",
            "--only",
            "NORMAL",
            "--reference-tree",
            str(ref),
            "--out",
            str(tmp_path / "results"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    (path,) = (tmp_path / "results").glob("inprocess-*.json")
    rows = json.loads(path.read_text())["rows"]
    keys = {(r["measured"], r["reference"], r["op"], r["concurrency"]) for r in rows}
    assert keys == {
        (meas, ref_side, op, c)
        for meas, ref_side in (
            ("memstore/normal", "memstore-ref/normal"),
            ("memstore/normal", "langgraph/wal-normal"),
        )
        for op in ("put", "append", "tool")
        for c in (1, 4)
    }
    for r in rows:
        assert len(r["samples"]["ref"]) == len(r["samples"]["meas"]) == 2
        assert all(s["ops"] > 0 for side in r["samples"].values() for s in side), r
        assert r["ratio"] > 0 and r["cpu_ratio"] > 0
    assert "| put | 4 |" in out.stdout

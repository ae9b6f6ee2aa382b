"""Smoke run of the benchmark harness (``make bench`` itself is not part of ``make test``).

One second per side on the embedded backend: the service and the baseline app start as
processes, wrk drives them, and the result file and table must have the documented shape.
The PUT scenario also proves the version-check script works against both servers: every
If-Match / If-None-Match request must succeed (a 412 would count as an error).
``--reference-tree`` runs the other checkout's service beside this one's (a copy of the
service code here; a broken copy proves it is that code which runs). No timing is asserted.
"""

from __future__ import annotations

import json
import shutil
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


def _reference_tree(tmp_path: Path) -> Path:
    """A checkout to compare against: a copy of this tree's service code."""
    tree = tmp_path / "ref"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "service", tree / "service", ignore=ignore)
    return tree


def _bench_tree_put(tmp_path: Path, tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "^embedded/tree-put$",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--no-extras",
            "--out",
            str(tmp_path / "out"),
            "--reference-tree",
            str(tree),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_reference_tree_row(tmp_path: Path) -> None:
    out = _bench_tree_put(tmp_path, _reference_tree(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    (file,) = (tmp_path / "out").glob("*.json")
    report = json.loads(file.read_text())
    (row,) = report["scenarios"]
    assert (row["group"], row["key"], row["kind"]) == ("embedded", "tree-put", "cost")
    assert row["reference"]["target"] == "tree"
    assert row["measured"]["target"] == "svc"
    for side in ("reference", "measured"):
        assert row[side]["rps"] > 0
        assert row[side]["errors"] == 0, (side, row[side])
        assert len(row[side]["rounds"]) == 4  # a cost row: four times --rounds
    assert "reference_tree" in report["settings"]
    assert out.stdout.startswith("| comparison |")
    assert "| embedded: entity PUT" in out.stdout
    assert ": this tree / reference tree |" in out.stdout


def test_reference_tree_runs_that_trees_code(tmp_path: Path) -> None:
    tree = _reference_tree(tmp_path)
    (tree / "service" / "memstore" / "__main__.py").write_text("raise SystemExit(7)\n")
    out = _bench_tree_put(tmp_path, tree)
    assert out.returncode == 1
    (file,) = (tmp_path / "out").glob("*.json")
    (failure,) = json.loads(file.read_text())["failed"]
    assert failure["key"] == "tree-put"
    assert "exited with 7" in failure["error"]
    kept = out.stderr.rsplit("logs of the failed run kept in ", 1)[1].strip()
    shutil.rmtree(kept)


def test_reference_tree_must_be_a_checkout(tmp_path: Path) -> None:
    out = _bench_tree_put(tmp_path, tmp_path)
    assert out.returncode == 2
    assert "not a memstore checkout" in out.stderr
    assert "Traceback" not in out.stderr


def test_workers_row_counts_every_worker(tmp_path: Path) -> None:
    """``redis/workers-get-miss``: one worker against ``--workers 2`` on the bench's own
    Redis. The CPU per request of the two-worker side is the workers' (a supervisor that
    only waits would give a small fraction of a microsecond per request)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "^redis/workers-get-miss$",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--no-extras",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads(next(tmp_path.glob("*.json")).read_text())["scenarios"]
    assert (row["reference"]["target"], row["measured"]["target"]) == (
        "svc_nocache",
        "svc_w2_nocache",
    )
    assert row["target_ratio"] == 1.7
    for side in ("reference", "measured"):
        assert row[side]["errors"] == 0
        assert row[side]["cpu_us_per_req"] > 10, row[side]
    assert "| redis: --workers 2 / 1 (GET from Redis, cache off) |" in out.stdout

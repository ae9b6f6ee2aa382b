"""The growth curves (``bench/growth.py``) in quick mode, through ``python -m bench`` as
``make bench`` runs them, on the real backends: embedded, Redis, Redis Cluster and FerretDB.
Every backend must be measured (none skipped or failed), every series must reach both of
its sizes with every operation measured (the operations check what they read: a page of
50, the window's tool uses), and the table must show each series. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bench import growth

REPO = Path(__file__).resolve().parents[2]


def test_every_backend_grows_and_is_measured_in_quick_mode(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "^growth/", "--out", str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "BENCH_GROWTH_QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    (path,) = tmp_path.glob("2*.json")  # the run's report (bench.growth writes its own too)
    report = json.loads(path.read_text())
    assert report["skipped"] == [] and report["failed"] == []
    result = report["growth"]
    assert result["settings"]["quick"] is True
    assert result["settings"]["embedded_cpu"] == max(os.sched_getaffinity(0))
    assert [b["backend"] for b in result["backends"]] == list(growth.BACKENDS)
    sizes = {"entities": [20, 80], "conversation": [10, 60], "tool usage": [20, 80]}
    for b in result["backends"]:
        assert [s["series"] for s in b["series"]] == list(growth.SERIES_OPS), b
        for s in b["series"]:
            assert [r["size"] for r in s["rows"]] == sizes[s["series"]], (b["backend"], s)
            assert s["stopped"] == ""
            for r in s["rows"]:
                assert set(r["ops"]) == set(growth.SERIES_OPS[s["series"]])
                for op in r["ops"].values():
                    assert op["ops"] > 0 and op["us_per_op"] > 0
        # 80 entities of 1 KB take room in the store (read from the store itself); the
        # other series' few small items are within the noise of Redis's used_memory
        # (client buffers), so only that they were read is checked
        assert b["series"][0]["rows"][-1]["bytes_per_item"] > 0, b["backend"]
        assert all(isinstance(r["bytes_per_item"], float) for s in b["series"] for r in s["rows"])
        # the servers' CPU is counted apart; embedded has none (SQLite is in process)
        store_cpu = sum(
            op["store_cpu_us_per_op"]
            for s in b["series"]
            for r in s["rows"]
            for op in r["ops"].values()
        )
        assert (store_cpu > 0) is b["store_server"], b["backend"]
        assert f"| {b['backend']}: entities | 20 entities | 80 entities |" in out.stdout
    assert "| get |" in out.stdout and "| tool-range |" in out.stdout


def test_a_series_stops_before_a_fill_beyond_its_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--quick", "--backends", "embedded", "--budget-seconds", "0.001", "--json"]
    assert growth.main([*args, "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    (embedded,) = result["backends"]
    for s in embedded["series"]:
        # the first size has no fill rate to judge by; the next one is beyond 1 ms
        assert [r["size"] for r in s["rows"]] == [s["rows"][0]["size"]]
        assert s["stopped"].startswith("stopped before "), s
    table = growth.markdown(result)
    assert "embedded entities: stopped before 80" in table
    assert growth.growth_ratio(embedded["series"][0]["rows"], "get") is None


def test_the_threads_started_while_pinned_run_on_that_cpu_alone() -> None:
    # What pins the embedded backend's SQLite threads: they start inside the block.
    cpus = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    with growth._pinned(max(cpus)):
        thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
        thread.start()
        thread.join()
    assert seen == [{max(cpus)}]
    assert os.sched_getaffinity(0) == cpus

"""The batch bench (bench/batch.py) at a small size: both sides ran against a real
service and the table has its row."""

from __future__ import annotations

from bench.batch import bench_in_process, markdown


def test_batch_bench_small() -> None:
    (row,) = bench_in_process(1, 0.3, ["embedded"])
    assert row["backend"] == "embedded"
    assert row["items"] == 50
    for side in ("single", "batch"):
        assert row[side]["saves_per_s"] > 0
        assert row[side]["service_us_per_save"] > 0
    assert row["ratio"] == row["batch"]["saves_per_s"] / row["single"]["saves_per_s"]
    assert "| embedded |" in markdown([row])

"""Smoke run of ``bench.embeddings`` (part of ``make bench``): the result's shape, and the
memory figures that follow from the vector's definition. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.embeddings import markdown

REPO = Path(__file__).resolve().parents[2]


def test_one_round() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.embeddings",
            "--json",
            "--rounds",
            "1",
            "--seconds",
            "0.2",
            "--batches",
            "1,8",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [row["batch"] for row in result["throughput"]] == [1, 8]
    for row in result["throughput"]:
        for side in ("memstore", "library"):
            assert row[side]["texts_per_s"] > 0
            assert row[side]["cpu_us_per_text"] > 0
        assert row["ratio"] > 0
        assert row["cpu_ratio"] > 0
    memory = result["memory"]
    assert memory["embedder"] == "wordllama/l2_supercat/256"
    assert memory["float32_bytes_per_vector"] == 1024
    assert 1024 <= memory["matrix_bytes_per_vector"] < 1100
    assert memory["base64_chars_per_vector"] == 1368  # 4 * ceil(1024 / 3)
    assert memory["model_rss_bytes"] > 16_000_000  # the 256-d table alone is 32 MB as float32
    table = markdown(result)
    assert table.startswith("| embedding (wordllama/l2_supercat/256) | texts per call |")
    assert "| one vector in base64 (persisted form) | 1,368 |" in table

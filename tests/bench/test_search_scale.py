"""Smoke run of the search rows of ``make bench`` (``bench/search.py``) at a tiny size.

200 entities on the embedded backend, one round of one second: the manager's search and
the bare-library baseline (FTS5, numpy, a Python loop) both answer, the result file and
the tables have the documented shape, and the two sides find the same hits (the baseline
does the same work). No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_search_row_at_a_tiny_size(tmp_path: Path) -> None:
    out = _bench(
        tmp_path,
        "--only",
        "^embedded/search",
        "--search-sizes",
        "200",
        "--seconds",
        "1",
        "--rounds",
        "1",
        "--no-extras",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (file,) = tmp_path.glob("*.json")
    report = json.loads(file.read_text())
    assert report["scenarios"] == []
    assert report["settings"]["search_sizes"] == [200]
    (row,) = report["search"]
    assert (row["group"], row["key"], row["entities"]) == ("embedded", "search-200", 200)
    assert row["embedder"].startswith("wordllama/")
    assert set(row["modes"]) == {"filter", "keyword", "semantic", "hybrid"}
    for mode, r in row["modes"].items():
        for side in ("measured", "reference"):
            s = r[side]
            assert s["qps"] > 0, (mode, side)
            assert 0 < s["p50_ms"] <= s["p99_ms"], (mode, side)
            assert s["cpu_us_per_query"] > 0, (mode, side)
            assert len(s["rounds"]) == 1
        assert r["ratio"] > 0
        # Same data, same condition, same BM25 constants, same vectors: the same hits (ties
        # at the tenth place may fall either way).
        assert r["agreement"] >= 0.9, (mode, r["agreement"])
    build, memory = row["build"], row["memory"]
    for figure in (
        "load_entities_per_s",
        "keyword_first_s",
        "semantic_first_s",
        "restart_semantic_first_s",
        "baseline_fts5_s",
    ):
        assert build[figure] > 0, figure
    assert build["vectors_stored_s"] >= 0  # stored before measuring
    assert memory["matrix_bytes_per_vector"] >= 256 * 4  # wordllama's 256 float32
    assert memory["baseline_numpy_bytes_per_vector"] == 256 * 4
    assert memory["baseline_fts5_bytes_per_entity"] > 0

    table = out.stdout
    assert table.startswith("| backend | entities | mode | memstore q/s |")
    for mode in ("filter", "keyword", "semantic", "hybrid"):
        assert f"| embedded | 200 | {mode} |" in table
    assert "| embedded | 200 | " in table.split("first keyword search", 1)[1]


def test_search_sizes_must_be_counts(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--search-sizes", "1k")
    assert out.returncode == 2
    assert "comma-separated entity counts" in out.stderr
    assert "Traceback" not in out.stderr

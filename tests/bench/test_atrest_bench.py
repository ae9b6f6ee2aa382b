"""Smoke run of ``bench.atrest`` (part of ``make bench``): the result's shape and the size
ratios, which follow from the generator's fixed seed. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.atrest import KINDS, markdown

REPO = Path(__file__).resolve().parents[2]


def test_one_round() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.atrest", "--json", "--rounds", "1", "--seconds", "0.2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [row["kind"] for row in result["codec"]] == list(KINDS)
    for row in result["codec"]:
        assert row["plain"]["ratio"] == 1.0
        for config in ("zstd", "aes-gcm", "zstd+aes-gcm"):
            assert row[config]["encode_us"] >= 0 and row[config]["decode_us"] >= 0
        assert row["aes-gcm"]["ratio"] > 1  # base64, nonce, tag and header
        if row["mean_bytes"] > 2 * result["threshold_bytes"]:
            assert row["zstd"]["ratio"] < 0.8, row  # text compresses, ids do not
    assert [r["config"] for r in result["backend"]] == ["plain", "zstd", "aes-gcm", "zstd+aes-gcm"]
    assert all(r["put_per_s"] > 0 and r["get_per_s"] > 0 for r in result["backend"])
    assert "| payload | mean bytes | plain | zstd | aes-gcm | zstd+aes-gcm |" in markdown(result)

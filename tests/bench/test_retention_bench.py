"""A short run of the retention bench: it measures both phases and prunes the backlog."""

from __future__ import annotations

import json

import pytest

from bench import retention


def test_the_retention_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--backend", "embedded", "--backlog", "64", "--rounds", "2", "--seconds", "0.3"]
    assert retention.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["idle"]["requests"] > 0 and out["pruning"]["requests"] > 0
    # per round 64 entities, and 7 conversations get 30 messages and keep 10
    assert out["pruned_items"] == (64 + 7 * 20) + (64 + 7 * 30)
    assert out["p99_ratio"] > 0

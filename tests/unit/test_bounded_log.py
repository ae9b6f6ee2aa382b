"""The log budget for bad HTTP requests (server.protocol.BoundedLog), on a fake clock."""

from __future__ import annotations

import logging

import pytest

from memstore.server.protocol import BoundedLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_line_per_interval_with_the_dropped_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    bounded = BoundedLog(logging.getLogger("test.bounded"), burst=3, per_second=0.5, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.bounded"):
        written = [bounded.warning("bad request %d", i) for i in range(10)]
        assert written == [True] * 3 + [False] * 7
        clock.now += 1.0  # half a token
        assert not bounded.warning("bad request %d", 10)
        clock.now += 1.0  # one token
        assert bounded.warning("bad request %d", 11)
        assert not bounded.warning("bad request %d", 12)
        clock.now += 3600  # refills to the burst, not beyond
        assert [bounded.warning("late %d", i) for i in range(4)] == [True, True, True, False]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "bad request 0",
        "bad request 1",
        "bad request 2",
        "bad request 11 (8 more like it not logged)",
        "late 0 (1 more like it not logged)",
        "late 1",
        "late 2",
    ]
    assert all(r.exc_info is None for r in caplog.records)

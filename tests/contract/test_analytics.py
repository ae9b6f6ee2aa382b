"""Analytics: every backend gives the same, exact numbers for one seeded namespace.

Tool uses and feedback carry their own timestamps; entities and messages take the
backend's clock, which the test sets (each backend module's ``time``) so creation times
are known too. Every expected number below is written out, worked from the seed by hand.
"""

from __future__ import annotations

import time
import types
import uuid

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.analytics import BucketWindow, check_window
from memstore.core.records import FeedbackRecord, ToolUsageRecord

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
H0 = 490_896  # T0 / 3600
HOUR = 3600.0
DAY = 86400.0

CLOCK_MODULES = (
    "memstore.backends.embedded",
    "memstore.backends.redis.backend",
    "memstore.backends.mongodb.backend",
)


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        fake = types.SimpleNamespace(
            **{n: getattr(time, n) for n in dir(time) if not n.startswith("__")}
        )
        fake.time = lambda: self.now
        for name in CLOCK_MODULES:
            module = __import__(name, fromlist=["time"])
            monkeypatch.setattr(module, "time", fake)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def ns() -> str:
    return f"a{uuid.uuid4().hex[:12]}"


MESSAGE = {"role": "user", "content": "hi"}  # 30 bytes of compact JSON

# tool "search": durations 10..100 ms every 10 minutes from T0 (hours 0 and 1), calls 3
# and 7 failed; "fetch": three calls on day 2; two more calls outside every window below.
SEARCH = [(T0 + 600 * i, 10.0 * (i + 1), i not in (3, 7)) for i in range(10)]
FETCH = [(T0 + DAY + 1, 5.5, True), (T0 + DAY + 2, 2500.25, False), (T0 + DAY + 3, 0.5, True)]
OUTSIDE = [(T0 - 1, 7.0, True), (T0 + 3 * DAY, 7.0, False)]


def use(name: str, i: int, ts: float, duration: float, ok: bool) -> ToolUsageRecord:
    return ToolUsageRecord(
        id=f"{name}-{i:02d}",
        tool_name=name,
        input={"q": "s"},  # 9 bytes
        output=None,  # 4 bytes
        duration_ms=duration,
        success=ok,
        timestamp=ts,
    )


FEEDBACK: list[tuple[float, object]] = [
    (T0 + 100, {"rating": 4}),  # 12 bytes
    (T0 + 200, {"rating": 5}),  # 12
    (T0 + 3700, {"note": "x"}),  # 12, no rating
    (T0 + 3800, {"rating": True}),  # 15, a boolean is not a rating
    (T0 + DAY + 5, {"rating": 2.5}),  # 14
    (T0 + DAY + 6, "plain string"),  # 14
]


async def seed(backend: DistributedMemoryBackend, ns: str, clock: Clock) -> None:
    clock.now = T0 + 100
    await backend.save_entity(ns, "doc", "z", {"n": 0}, ttl=60)  # expired by query time
    clock.now = T0 + 600
    await backend.save_entity(ns, "user", "a", {"n": 1})
    await backend.save_entity(ns, "user", "b", {"n": 2})  # deleted below
    await backend.append_messages(ns, "c1", [MESSAGE, MESSAGE, MESSAGE])
    clock.now = T0 + 2 * HOUR + 5
    await backend.save_entity(ns, "user", "c", {"n": 3})
    await backend.save_entity(ns, "doc", "x", {"n": 4})
    await backend.append_messages(ns, "c2", [MESSAGE, MESSAGE])
    assert await backend.pop_message(ns, "c2") is not None
    clock.now = T0 + DAY + 10
    await backend.save_entity(ns, "doc", "y", {"n": 5})
    assert await backend.delete_entity(ns, "user", "b")
    # a replace keeps created_at (it still counts at T0 + 600)
    await backend.save_entity(ns, "user", "a", {"n": 9})
    for name, rows in (("search", SEARCH), ("fetch", FETCH), ("other", OUTSIDE)):
        for i, (ts, duration, ok) in enumerate(rows):
            await backend.record_tool_usage(ns, use(name, i, ts, duration, ok))
    for i, (ts, data) in enumerate(FEEDBACK):
        await backend.save_feedback(ns, FeedbackRecord(f"f{i}", "agent", "rating", data, ts))
    clock.now = T0 + 4 * DAY


def hours(first_offset: int, last_offset: int) -> BucketWindow:
    return BucketWindow("hour", H0 + first_offset, H0 + last_offset)


def counts(series: dict[str, object]) -> dict[int, int]:
    """{hour offset: count} of the non-zero points of a growth series (as a dict)."""
    points = series["points"]
    assert isinstance(points, list)
    return {int((p["start"] - T0) // HOUR): p["count"] for p in points if p["count"]}


async def test_overview(backend: DistributedMemoryBackend, ns: str, clock: Clock) -> None:
    await seed(backend, ns, clock)
    got = (await backend.analytics_overview(ns)).to_dict()
    assert got == {
        "namespace": ns,
        "entities": {"count": 4, "bytes": 28, "oldest": T0 + 600, "newest": T0 + DAY + 10},
        "entity_types": {
            "doc": {"count": 2, "bytes": 14, "oldest": T0 + 7205, "newest": T0 + DAY + 10},
            "user": {"count": 2, "bytes": 14, "oldest": T0 + 600, "newest": T0 + 7205},
        },
        "conversations": 2,
        "messages": {"count": 4, "bytes": 120, "oldest": T0 + 600, "newest": T0 + 7205},
        "tool_usage": {"count": 15, "bytes": 195, "oldest": T0 - 1, "newest": T0 + 3 * DAY},
        "tool_usage_by_tool": {"fetch": 3, "other": 2, "search": 10},
        "feedback": {"count": 6, "bytes": 79, "oldest": T0 + 100, "newest": T0 + DAY + 6},
        # the namespace's totals are the manager's (stored_bytes, logical_bytes)
        "stored_bytes": None,
        "logical_bytes": None,
    }


async def test_overview_of_an_empty_namespace(backend: DistributedMemoryBackend, ns: str) -> None:
    got = (await backend.analytics_overview(ns)).to_dict()
    empty = {"count": 0, "bytes": 0, "oldest": None, "newest": None}
    assert got == {
        "namespace": ns,
        "entities": empty,
        "entity_types": {},
        "conversations": 0,
        "messages": empty,
        "tool_usage": empty,
        "tool_usage_by_tool": {},
        "feedback": empty,
        "stored_bytes": None,
        "logical_bytes": None,
    }


async def test_growth(backend: DistributedMemoryBackend, ns: str, clock: Clock) -> None:
    await seed(backend, ns, clock)
    window = hours(0, 24)
    expected = {
        "entities": {0: 1, 2: 2, 24: 1},
        "messages": {0: 3, 2: 1},
        "tool_usage": {0: 6, 1: 4, 24: 3},
        "feedback": {0: 2, 1: 2, 24: 2},
    }
    for kind, nonzero in expected.items():
        series = (await backend.analytics_growth(ns, kind, window)).to_dict()
        assert series["bucket"] == "hour"
        assert series["bucket_seconds"] == 3600
        assert series["start"] == T0
        assert series["end"] == T0 + 25 * HOUR
        assert len(series["points"]) == 25  # empty buckets included
        assert [p["start"] for p in series["points"]] == [T0 + i * HOUR for i in range(25)]
        assert counts(series) == nonzero, kind
        assert series["total"] == sum(nonzero.values())
    days = BucketWindow("day", (H0 - 24) // 24, H0 // 24 + 3)  # the day before .. day 4
    series = (await backend.analytics_growth(ns, "tool_usage", days)).to_dict()
    assert [p["count"] for p in series["points"]] == [1, 10, 3, 0, 1]
    assert series["start"] == T0 - DAY


async def test_growth_edges_of_a_bucket(backend: DistributedMemoryBackend, ns: str) -> None:
    # the last instant of hour 0, the first of hour 1
    for i, ts in enumerate((T0 + HOUR - 0.001, T0 + HOUR, T0 + 2 * HOUR - 1e-6)):
        await backend.record_tool_usage(ns, use("edge", i, ts, 1.0, True))
    series = (await backend.analytics_growth(ns, "tool_usage", hours(1, 1))).to_dict()
    assert [p["count"] for p in series["points"]] == [2]
    series = (await backend.analytics_growth(ns, "tool_usage", hours(0, 0))).to_dict()
    assert [p["count"] for p in series["points"]] == [1]


async def test_tools(backend: DistributedMemoryBackend, ns: str, clock: Clock) -> None:
    await seed(backend, ns, clock)
    got = (await backend.analytics_tools(ns, hours(0, 24), tool_name=None, limit=2)).to_dict()
    assert (got["bucket"], got["start"], got["end"]) == ("hour", T0, T0 + 25 * HOUR)
    fetch, search = got["tools"]  # "other" has no call in the window
    assert search["tool_name"] == "search"
    assert (search["calls"], search["successes"], search["failures"]) == (10, 8, 2)
    assert search["success_rate"] == 0.8
    assert search["duration_ms"] == {"p50": 50.0, "p90": 90.0, "p99": 100.0}
    assert [b["count"] for b in search["histogram"]] == [
        0,
        0,
        1,
        1,
        3,
        5,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
    assert [b["le"] for b in search["histogram"]][-3:] == [30000, 60000, None]
    nonzero = [
        (p["start"], p["calls"], p["successes"], p["success_rate"])
        for p in search["series"]
        if p["calls"]
    ]
    assert nonzero == [(T0, 6, 5, 5 / 6), (T0 + HOUR, 4, 3, 0.75)]
    assert len(search["series"]) == 25
    assert search["series"][5]["success_rate"] is None
    assert [r["id"] for r in search["slowest"]] == ["search-09", "search-08"]
    assert [r["id"] for r in search["recent_failures"]] == ["search-07", "search-03"]
    assert search["slowest"][0] == {
        "id": "search-09",
        "tool_name": "search",
        "input": {"q": "s"},
        "output": None,
        "duration_ms": 100.0,
        "success": True,
        "timestamp": T0 + 5400,
        "conversation_id": None,
    }
    assert fetch["tool_name"] == "fetch"
    assert (fetch["calls"], fetch["successes"], fetch["failures"]) == (3, 2, 1)
    assert fetch["duration_ms"] == {"p50": 5.5, "p90": 2500.25, "p99": 2500.25}
    assert [b["count"] for b in fetch["histogram"]] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert [r["id"] for r in fetch["slowest"]] == ["fetch-01", "fetch-00"]
    assert [r["id"] for r in fetch["recent_failures"]] == ["fetch-01"]
    # one tool, no listed calls, a window of hour 1 only
    one = (await backend.analytics_tools(ns, hours(1, 1), tool_name="search", limit=0)).to_dict()
    (search,) = one["tools"]
    assert (search["calls"], search["successes"]) == (4, 3)
    assert search["duration_ms"] == {"p50": 80.0, "p90": 100.0, "p99": 100.0}
    assert search["slowest"] == [] and search["recent_failures"] == []
    none = await backend.analytics_tools(ns, hours(2, 3), tool_name=None, limit=5)
    assert none.tools == []


async def test_tool_percentiles_are_nearest_rank(
    backend: DistributedMemoryBackend, ns: str
) -> None:
    # 1..200 ms, recorded in shuffled order: p50 = 100, p90 = 180, p99 = 198
    order = [(i * 37) % 200 for i in range(200)]
    for i, d in enumerate(order):
        await backend.record_tool_usage(ns, use("t", i, T0 + i, float(d + 1), True))
    got = await backend.analytics_tools(ns, hours(0, 0), tool_name="t", limit=3)
    (t,) = got.tools
    assert t.duration_ms == {"p50": 100.0, "p90": 180.0, "p99": 198.0}
    assert [r.duration_ms for r in t.slowest] == [200.0, 199.0, 198.0]
    assert [b.count for b in t.histogram][:7] == [1, 4, 5, 15, 25, 50, 100]


async def test_feedback(backend: DistributedMemoryBackend, ns: str, clock: Clock) -> None:
    await seed(backend, ns, clock)
    got = (await backend.analytics_feedback(ns, hours(0, 24))).to_dict()
    assert (got["count"], got["rating_count"]) == (6, 3)
    assert got["rating_mean"] == 3.8333333333333335  # (4 + 5 + 2.5) / 3
    nonzero = [
        (p["start"], p["count"], p["rating_count"], p["rating_mean"])
        for p in got["points"]
        if p["count"]
    ]
    assert nonzero == [(T0, 2, 2, 4.5), (T0 + HOUR, 2, 0, None), (T0 + DAY, 2, 1, 2.5)]
    assert len(got["points"]) == 25
    day1 = (await backend.analytics_feedback(ns, BucketWindow("day", H0 // 24, H0 // 24))).to_dict()
    assert (day1["count"], day1["rating_count"], day1["rating_mean"]) == (4, 2, 4.5)


async def test_namespaces_are_separate(
    backend: DistributedMemoryBackend, ns: str, clock: Clock
) -> None:
    await seed(backend, ns, clock)
    other = f"{ns}x"
    overview = await backend.analytics_overview(other)
    assert overview.entities.count == 0 and overview.tool_usage.count == 0
    assert (await backend.analytics_growth(other, "messages", hours(0, 24))).total == 0
    assert (await backend.analytics_tools(other, hours(0, 24), tool_name=None, limit=5)).tools == []
    assert (await backend.analytics_feedback(other, hours(0, 24))).count == 0


def test_window_rules() -> None:
    w = check_window("hour", T0 + 10, T0 + 2 * HOUR, now=T0 + 5 * DAY)
    assert (w.first, w.last, w.start, w.end) == (H0, H0 + 2, T0, T0 + 3 * HOUR)
    w = check_window("day", None, None, now=T0 + 5)
    assert (w.last - w.first + 1, w.end) == (30, T0 + DAY)

"""Analytics: the shapes of the answers and the arithmetic every backend shares.

The backends aggregate (SQL, MongoDB pipelines, Lua on Redis); what must come out the
same everywhere is defined here once, in exact terms:

* **Buckets.** A time ``t`` (POSIX seconds) is in hour ``h`` when ``h * 3600 <= t < (h +
  1) * 3600`` (exact comparisons: each backend corrects the rounding of ``t / 3600``), and in
  day ``h // 24`` (UTC days). A bucket's key is that number; it starts at ``key *
  bucket_seconds``, so a bucket is exactly the timestamps in ``[start, start + width)``.
* **Window.** ``since``/``until`` are widened to whole buckets: the series covers every
  bucket from the one holding ``since`` to the one holding ``until``, both included, and
  counts what falls in them. Every bucket of the window is in the answer, empty ones with
  zero counts (a dense series a chart draws as it is).
* **Percentiles** are nearest-rank: of ``n`` durations sorted ascending, ``p`` is the
  ``ceil(p * n / 100)``-th (1-based). Always a duration that was recorded; no
  interpolation, so every backend gives the same number.
* **Histogram**: fixed upper bounds :data:`HISTOGRAM_BOUNDS_MS`, a duration ``d`` is in the
  first bin whose bound is ``>= d`` (Prometheus's ``le``), the last bin (``le: null``) holds
  the rest. Counts per bin, not cumulative.
* **Ratings**: a feedback record's ``data.rating`` counts when ``data`` is an object and
  ``rating`` a JSON number (not a boolean); the mean is their sum divided by their count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, with_config

from memstore.core.bounds import TIMESTAMP_SECONDS, check_in
from memstore.core.errors import InvalidInputError
from memstore.core.records import JSONObject, ToolUsageRecord

#: bucket name -> width in hours
BUCKET_HOURS: dict[str, int] = {"hour": 1, "day": 24}
#: buckets of a window when ``since`` is not given
DEFAULT_BUCKETS: dict[str, int] = {"hour": 48, "day": 30}
#: the most buckets one answer may hold
MAX_BUCKETS = 1000
#: what ``analytics_growth`` counts: live items by creation time
GROWTH_KINDS = ("entities", "messages", "tool_usage", "feedback")
# fmt: off
HISTOGRAM_BOUNDS_MS: tuple[float, ...] = (
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
)
# fmt: on
PERCENTILES = (50, 90, 99)
#: slowest and failing calls listed per tool when ``limit`` is not given, and the most
MAX_LISTED_CALLS = 100
DEFAULT_LISTED_CALLS = 5

_RESPONSE = ConfigDict(json_schema_serialization_defaults_required=True)


def hour_of(ts: float) -> int:
    """The ``h`` with ``h * 3600 <= ts < (h + 1) * 3600``, exactly (the division's rounding
    corrected), so a range count on timestamps agrees with it at every edge."""
    h = math.floor(ts / 3600.0)
    if h * 3600 > ts:
        return h - 1
    if (h + 1) * 3600 <= ts:
        return h + 1
    return h


def percentile_rank(p: int, n: int) -> int:
    """The 1-based rank of the nearest-rank ``p``-th percentile of ``n`` values (n >= 1)."""
    return max(1, (p * n + 99) // 100)


def histogram_bin(duration_ms: float) -> int:
    for i, bound in enumerate(HISTOGRAM_BOUNDS_MS):
        if duration_ms <= bound:
            return i
    return len(HISTOGRAM_BOUNDS_MS)


@dataclass(frozen=True, slots=True)
class BucketWindow:
    """Whole buckets ``first..last`` (keys, both included) of width ``hours``."""

    bucket: str
    first: int
    last: int

    @property
    def hours(self) -> int:
        return BUCKET_HOURS[self.bucket]

    @property
    def seconds(self) -> int:
        return self.hours * 3600

    @property
    def start(self) -> float:
        return float(self.first * self.seconds)

    @property
    def end(self) -> float:
        return float((self.last + 1) * self.seconds)

    def key(self, ts: float) -> int:
        return hour_of(ts) // self.hours

    def index(self, ts: float) -> int | None:
        """Position of ``ts``'s bucket in the window, ``None`` outside it."""
        k = self.key(ts)
        return k - self.first if self.first <= k <= self.last else None

    @property
    def scan_range(self) -> tuple[float, float]:
        """A timestamp range holding every time of the window (one second wider on each
        side): index scans read it, and the bucket key then decides, so a time within a
        rounding error of an edge falls where ``key`` puts it on every backend."""
        return max(0.0, self.start - 1.0), self.end + 1.0

    def starts(self) -> list[float]:
        return [float(k * self.seconds) for k in range(self.first, self.last + 1)]


def check_window(bucket: object, since: object, until: object, now: float) -> BucketWindow:
    """The window of an analytics call, or ``InvalidInputError`` naming the parameter."""
    if not isinstance(bucket, str) or bucket not in BUCKET_HOURS:
        raise InvalidInputError(f"bucket must be one of {', '.join(BUCKET_HOURS)}", field="bucket")
    hours = BUCKET_HOURS[bucket]
    end = now if until is None else check_in("until", until, TIMESTAMP_SECONDS)
    last = hour_of(end) // hours
    if since is None:
        first = max(0, last - DEFAULT_BUCKETS[bucket] + 1)
    else:
        begin = check_in("since", since, TIMESTAMP_SECONDS)
        if begin > end:
            raise InvalidInputError("since must not be after until", field="since")
        first = hour_of(begin) // hours
    if last - first + 1 > MAX_BUCKETS:
        raise InvalidInputError(
            f"the window holds {last - first + 1} {bucket} buckets; at most {MAX_BUCKETS}"
            " (narrow since/until or use a wider bucket)",
            field="since",
        )
    return BucketWindow(bucket, first, last)


def check_growth_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in GROWTH_KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(GROWTH_KINDS)}", field="kind")
    return kind


def check_listed_calls(limit: object) -> int:
    if limit is None:
        return DEFAULT_LISTED_CALLS
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LISTED_CALLS:
        raise InvalidInputError(
            f"limit must be an integer in [0, {MAX_LISTED_CALLS}]", field="limit"
        )
    return limit


# -- answers ------------------------------------------------------------------------------


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class KindStats:
    """Live items of one kind: how many, their payload bytes (the compact JSON the quota
    counts), and the oldest and newest creation time (``None`` when there are none)."""

    count: int = 0
    bytes: int = 0
    oldest: float | None = None
    newest: float | None = None

    def to_dict(self) -> JSONObject:
        return {
            "count": self.count,
            "bytes": self.bytes,
            "oldest": self.oldest,
            "newest": self.newest,
        }


def merge_stats(parts: Iterable[KindStats]) -> KindStats:
    count = size = 0
    oldest: float | None = None
    newest: float | None = None
    for p in parts:
        count += p.count
        size += p.bytes
        if p.oldest is not None and (oldest is None or p.oldest < oldest):
            oldest = p.oldest
        if p.newest is not None and (newest is None or p.newest > newest):
            newest = p.newest
    return KindStats(count, size, oldest, newest)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class AnalyticsOverview:
    """Counts and stored bytes per kind; ``entities`` sums ``entity_types``; a
    conversation's messages are in ``messages``. ``stored_bytes`` and ``logical_bytes``:
    the namespace's payloads as stored (after compression and encryption at rest,
    envelopes included) and as written (what the bytes quota counts); set by the manager,
    ``None`` where the backend cannot tell."""

    namespace: str
    entities: KindStats
    entity_types: dict[str, KindStats]
    conversations: int
    messages: KindStats
    tool_usage: KindStats
    tool_usage_by_tool: dict[str, int]
    feedback: KindStats
    stored_bytes: int | None = None
    logical_bytes: int | None = None

    def to_dict(self) -> JSONObject:
        return {
            "namespace": self.namespace,
            "entities": self.entities.to_dict(),
            "entity_types": {t: s.to_dict() for t, s in self.entity_types.items()},
            "conversations": self.conversations,
            "messages": self.messages.to_dict(),
            "tool_usage": self.tool_usage.to_dict(),
            "tool_usage_by_tool": dict(self.tool_usage_by_tool),
            "feedback": self.feedback.to_dict(),
            "stored_bytes": self.stored_bytes,
            "logical_bytes": self.logical_bytes,
        }


def overview(
    namespace: str,
    entity_types: Mapping[str, KindStats],
    conversations: int,
    messages: KindStats,
    tool_usage_by_tool: Mapping[str, int],
    tool_usage: KindStats,
    feedback: KindStats,
) -> AnalyticsOverview:
    types = {t: s for t, s in sorted(entity_types.items()) if s.count > 0}
    return AnalyticsOverview(
        namespace=namespace,
        entities=merge_stats(types.values()),
        entity_types=types,
        conversations=conversations,
        messages=messages,
        tool_usage=tool_usage,
        tool_usage_by_tool={t: n for t, n in sorted(tool_usage_by_tool.items()) if n > 0},
        feedback=feedback,
    )


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class BucketCount:
    start: float
    count: int


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class GrowthSeries:
    """Items created per bucket, ``start <= t < end``: live entities by ``created_at``,
    stored messages by ``created_at``, tool uses and feedback by ``timestamp``."""

    kind: str
    bucket: str
    bucket_seconds: int
    start: float
    end: float
    total: int
    points: list[BucketCount]

    def to_dict(self) -> JSONObject:
        return {
            "kind": self.kind,
            "bucket": self.bucket,
            "bucket_seconds": self.bucket_seconds,
            "start": self.start,
            "end": self.end,
            "total": self.total,
            "points": [{"start": p.start, "count": p.count} for p in self.points],
        }


def growth(kind: str, window: BucketWindow, counts: Mapping[int, int]) -> GrowthSeries:
    """The dense series from ``{bucket key: count}`` (keys outside the window ignored)."""
    points = [
        BucketCount(start, int(counts.get(key, 0)))
        for key, start in zip(range(window.first, window.last + 1), window.starts(), strict=True)
    ]
    return GrowthSeries(
        kind,
        window.bucket,
        window.seconds,
        window.start,
        window.end,
        sum(p.count for p in points),
        points,
    )


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ToolPoint:
    start: float
    calls: int
    successes: int
    success_rate: float | None


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class HistogramBin:
    """Calls with ``previous bound < duration_ms <= le`` (``le`` ``None``: above the last)."""

    le: float | None
    count: int


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ToolStats:
    tool_name: str
    calls: int
    successes: int
    failures: int
    success_rate: float | None
    #: nearest-rank percentiles of duration_ms, keys "p50", "p90", "p99"
    duration_ms: dict[str, float]
    histogram: list[HistogramBin]
    series: list[ToolPoint]
    #: the slowest calls, by duration_ms then timestamp then id, all descending
    slowest: list[ToolUsageRecord]
    #: the most recent failed calls, by timestamp then id, descending
    recent_failures: list[ToolUsageRecord]

    def to_dict(self) -> JSONObject:
        return {
            "tool_name": self.tool_name,
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "success_rate": self.success_rate,
            "duration_ms": dict(self.duration_ms),
            "histogram": [{"le": b.le, "count": b.count} for b in self.histogram],
            "series": [
                {
                    "start": p.start,
                    "calls": p.calls,
                    "successes": p.successes,
                    "success_rate": p.success_rate,
                }
                for p in self.series
            ],
            "slowest": [r.to_dict() for r in self.slowest],
            "recent_failures": [r.to_dict() for r in self.recent_failures],
        }


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ToolAnalytics:
    """Tool uses with ``start <= timestamp < end``, per tool (tools without a call in the
    window are left out), sorted by tool name."""

    bucket: str
    bucket_seconds: int
    start: float
    end: float
    tools: list[ToolStats] = field(default_factory=list)

    def to_dict(self) -> JSONObject:
        return {
            "bucket": self.bucket,
            "bucket_seconds": self.bucket_seconds,
            "start": self.start,
            "end": self.end,
            "tools": [t.to_dict() for t in self.tools],
        }


def _rate(successes: int, calls: int) -> float | None:
    return successes / calls if calls else None


@dataclass(slots=True)
class ToolTally:
    """What a backend aggregated for one tool, before :func:`tool_stats` shapes it."""

    calls: int = 0
    successes: int = 0
    #: percentile (50, 90, 99) -> duration
    percentiles: dict[int, float] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BOUNDS_MS) + 1))
    #: bucket key -> [calls, successes]
    series: dict[int, list[int]] = field(default_factory=dict)
    slowest: list[ToolUsageRecord] = field(default_factory=list)
    recent_failures: list[ToolUsageRecord] = field(default_factory=list)


def tool_stats(window: BucketWindow, tool_name: str, tally: ToolTally) -> ToolStats:
    points = []
    for key, start in zip(range(window.first, window.last + 1), window.starts(), strict=True):
        calls, successes = tally.series.get(key, (0, 0))
        points.append(ToolPoint(start, calls, successes, _rate(successes, calls)))
    bounds: list[float | None] = [*HISTOGRAM_BOUNDS_MS, None]
    return ToolStats(
        tool_name=tool_name,
        calls=tally.calls,
        successes=tally.successes,
        failures=tally.calls - tally.successes,
        success_rate=_rate(tally.successes, tally.calls),
        duration_ms={f"p{p}": tally.percentiles[p] for p in PERCENTILES},
        histogram=[HistogramBin(le, n) for le, n in zip(bounds, tally.histogram, strict=True)],
        series=points,
        slowest=tally.slowest,
        recent_failures=tally.recent_failures,
    )


def tool_analytics(window: BucketWindow, tallies: Mapping[str, ToolTally]) -> ToolAnalytics:
    return ToolAnalytics(
        window.bucket,
        window.seconds,
        window.start,
        window.end,
        [tool_stats(window, name, t) for name, t in sorted(tallies.items()) if t.calls > 0],
    )


def slowest_order(record: ToolUsageRecord) -> tuple[float, float, str]:
    """Sort key, reversed: the slowest first (ties: the newest, then the highest id)."""
    return (record.duration_ms, record.timestamp, record.id)


def recent_order(record: ToolUsageRecord) -> tuple[float, str]:
    return (record.timestamp, record.id)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class FeedbackPoint:
    start: float
    count: int
    rating_count: int
    rating_mean: float | None


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class FeedbackAnalytics:
    """Feedback records with ``start <= timestamp < end`` per bucket, and the mean of
    their numeric ``data.rating`` where they have one."""

    bucket: str
    bucket_seconds: int
    start: float
    end: float
    count: int
    rating_count: int
    rating_mean: float | None
    points: list[FeedbackPoint]

    def to_dict(self) -> JSONObject:
        return {
            "bucket": self.bucket,
            "bucket_seconds": self.bucket_seconds,
            "start": self.start,
            "end": self.end,
            "count": self.count,
            "rating_count": self.rating_count,
            "rating_mean": self.rating_mean,
            "points": [
                {
                    "start": p.start,
                    "count": p.count,
                    "rating_count": p.rating_count,
                    "rating_mean": p.rating_mean,
                }
                for p in self.points
            ],
        }


def feedback_analytics(
    window: BucketWindow, buckets: Mapping[int, tuple[int, int, float]]
) -> FeedbackAnalytics:
    """From ``{bucket key: (count, rating count, rating sum)}``."""
    points = []
    for key, start in zip(range(window.first, window.last + 1), window.starts(), strict=True):
        n, rated, total = buckets.get(key, (0, 0, 0.0))
        points.append(FeedbackPoint(start, n, rated, total / rated if rated else None))
    rated = sum(b[1] for k, b in buckets.items() if window.first <= k <= window.last)
    total = sum(b[2] for k, b in buckets.items() if window.first <= k <= window.last)
    return FeedbackAnalytics(
        window.bucket,
        window.seconds,
        window.start,
        window.end,
        sum(p.count for p in points),
        rated,
        total / rated if rated else None,
        points,
    )


def rating_of(data: Any) -> float | None:
    """The rating a feedback record's data holds, by the rule above (Python side)."""
    if isinstance(data, dict):
        value = data.get("rating")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


Answer = TypeVar("Answer", AnalyticsOverview, GrowthSeries, ToolAnalytics, FeedbackAnalytics)
_ADAPTERS: dict[type, Any] = {}


def from_dict(cls: type[Answer], body: JSONObject) -> Answer:
    """An answer rebuilt from its ``to_dict()`` JSON (the HTTP client's side)."""
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    answer: Answer = adapter.validate_python(body)
    return answer

"""Token bucket and quota bookkeeping, with explicit clocks (no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from memstore.core.errors import QuotaExceededError, RateLimitedError
from memstore.server.limits import DeadlineWatchdog, QuotaTracker, RateLimiter


def test_bucket_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=2)
    limiter.check("k", now=0.0)
    limiter.check("k", now=0.0)
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("k", now=0.0)
    assert refused.value.retry_after == 1  # 0.5 s rounded up to whole seconds
    limiter.check("k", now=0.5)  # one token back after 1/rate seconds
    with pytest.raises(RateLimitedError):
        limiter.check("k", now=0.5)
    limiter.check("other", now=0.5)


def test_buckets_are_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        limiter.check(key, now=0.0)
    assert len(limiter._buckets) == 2


def test_disabled_limiter_never_refuses() -> None:
    limiter = RateLimiter(rate=0.0)
    for _ in range(1000):
        limiter.check("k", now=0.0)


async def test_quota_reservations_are_given_back() -> None:
    reads = []

    async def read_usage(namespace: str) -> tuple[int, int | None]:
        reads.append(namespace)
        return 1, 100

    async def missing() -> bool:
        return False

    quotas = QuotaTracker(read_usage, max_entities=2, max_bytes=150, refresh_seconds=3600)
    first = await quotas.reserve("ns", incoming_bytes=30, entity_exists=missing)
    assert first is not None
    assert first.entity
    # The first write's reservation counts until it is settled.
    with pytest.raises(QuotaExceededError) as full:
        await quotas.reserve("ns", incoming_bytes=10, entity_exists=missing)
    assert full.value.details["quota"] == "entities"
    quotas.settle(first, succeeded=True, created=False)  # it was a replace
    second = await quotas.reserve("ns", incoming_bytes=10, entity_exists=missing)
    assert second is not None
    with pytest.raises(QuotaExceededError) as too_big:
        await quotas.reserve("ns", incoming_bytes=20)
    assert too_big.value.details == {"quota": "bytes", "limit": 150, "used": 140}
    assert reads == ["ns"]  # one exact read, the rest is bookkeeping
    quotas.forget("ns")
    await quotas.reserve("ns", incoming_bytes=1)
    assert reads == ["ns", "ns"]


async def _guarded(watchdog: DeadlineWatchdog, work: float) -> str:
    task = asyncio.current_task()
    assert task is not None
    entry = watchdog.watch(task)
    try:
        await asyncio.sleep(work)
        return "finished"
    except asyncio.CancelledError:
        if watchdog.expired(entry):
            return "timed out"
        raise
    finally:
        watchdog.done(entry)


async def test_watchdog_cuts_only_the_late_requests() -> None:
    watchdog = DeadlineWatchdog(0.2, resolution=0.02)
    results = await asyncio.gather(
        _guarded(watchdog, 0.01), _guarded(watchdog, 5.0), _guarded(watchdog, 0.05)
    )
    assert list(results) == ["finished", "timed out", "finished"]
    assert len(watchdog) == 0
    # Idle: no timer left behind; the next request arms it again.
    assert await _guarded(watchdog, 5.0) == "timed out"


async def test_watchdog_lets_other_cancellations_through() -> None:
    watchdog = DeadlineWatchdog(30.0, resolution=0.02)
    task = asyncio.create_task(_guarded(watchdog, 5.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(watchdog) == 0

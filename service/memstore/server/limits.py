"""Per-token rate limits and per-namespace quotas. No aiohttp here.

Rate limit: one token bucket per caller key (the token's name; the client address when
auth is off), refilled at ``rate`` per second up to ``burst``. A refused request learns
how long until the next token (``Retry-After``). Buckets live in this process: with N
replicas a caller gets up to N times the rate (document it, or divide the rate by N).

Quotas (entities, bytes per namespace) without counting on every write: the exact usage is
read from the backend (``summary`` counts, the optional ``logical_bytes`` hook: payloads
as written, before compression and encryption at rest) at most every
``refresh_seconds`` per namespace; in between, each admitted write reserves what it may add
(one entity, its body bytes) and gives back what it did not use. Within one process the
quota is exact up to replaced payloads (counted as growth until the next refresh, so the
error is on the safe side); across replicas it can overshoot by the writes other replicas
admit within one refresh interval. A replace of an existing entity is never refused by the
entity quota: when a create would cross it, the entity's existence is checked first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from memstore.core.errors import QuotaExceededError, RateLimitedError

MAX_TRACKED_KEYS = 10_000


class TokenBucket:
    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, rate: float, burst: int = 0, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.rate = rate
        self.burst = float(burst) if burst > 0 else max(1.0, 2.0 * rate)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, key: str, now: float | None = None) -> None:
        """Raise ``RateLimitedError`` when ``key`` has no token left."""
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_keys:
                # The least recently seen key starts over with a full bucket: bounded memory.
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise RateLimitedError(
                f"rate limit of {self.rate:g} requests/s exceeded; retry after {retry_after}s",
                retry_after=retry_after,
            )


class InflightLimiter:
    """At most ``limit`` requests in flight per caller key (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._inflight: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        if self.limit <= 0:
            return False
        count = self._inflight.get(key, 0)
        if count >= self.limit:
            raise RateLimitedError(
                f"more than {self.limit} requests in flight for this caller; retry after 1s",
                retry_after=1,
            )
        self._inflight[key] = count + 1
        return True

    def release(self, key: str) -> None:
        count = self._inflight.get(key, 0) - 1
        if count > 0:
            self._inflight[key] = count
        else:
            self._inflight.pop(key, None)


@dataclass
class NamespaceUsage:
    entities: int
    bytes: int | None  # None: the backend cannot tell
    read_at: float
    stale: bool = False


#: Reads the exact usage of a namespace: (entities, logical payload bytes or None).
UsageReader = Callable[[str], Awaitable[tuple[int, int | None]]]


@dataclass
class Reservation:
    """What an admitted write may add; settled with :meth:`QuotaTracker.settle`."""

    namespace: str
    bytes: int
    #: entities counted in advance (those the write may create)
    entities: int

    @property
    def entity(self) -> bool:
        return self.entities > 0


class QuotaTracker:
    def __init__(
        self,
        read_usage: UsageReader,
        *,
        max_entities: int = 0,
        max_bytes: int = 0,
        refresh_seconds: float = 10.0,
        max_keys: int = MAX_TRACKED_KEYS,
    ) -> None:
        self.read_usage = read_usage
        self.max_entities = max_entities
        self.max_bytes = max_bytes
        self.refresh_seconds = refresh_seconds
        self.max_keys = max_keys
        self._usage: OrderedDict[str, NamespaceUsage] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def enabled(self) -> bool:
        return self.max_entities > 0 or self.max_bytes > 0

    async def _current(self, namespace: str) -> NamespaceUsage:
        usage = self._usage.get(namespace)
        now = time.monotonic()
        if usage is not None and not usage.stale and now - usage.read_at < self.refresh_seconds:
            self._usage.move_to_end(namespace)
            return usage
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:
            usage = self._usage.get(namespace)
            if usage is None or usage.stale or now - usage.read_at >= self.refresh_seconds:
                entities, stored = await self.read_usage(namespace)
                usage = NamespaceUsage(entities, stored, time.monotonic())
                self._usage[namespace] = usage
                if len(self._usage) > self.max_keys:
                    old, _ = self._usage.popitem(last=False)
                    self._locks.pop(old, None)
        return usage

    async def reserve(
        self,
        namespace: str,
        *,
        incoming_bytes: int,
        entity_exists: Callable[[], Awaitable[bool]] | None = None,
        absent_entities: Callable[[], Awaitable[int]] | None = None,
        entities: int = 1,
    ) -> Reservation | None:
        """Admit a write or raise ``QuotaExceededError``. ``entity_exists`` is given for
        an entity save (which may create one), ``absent_entities`` for a batch of
        ``entities`` saves (how many of its keys do not exist); either is only called
        when the write could pass the entity limit."""
        if not self.enabled:
            return None
        usage = await self._current(namespace)
        if (
            self.max_bytes
            and usage.bytes is not None
            and usage.bytes + incoming_bytes > self.max_bytes
        ):
            raise QuotaExceededError(
                f"namespace {namespace} would exceed its quota of {self.max_bytes} bytes",
                quota="bytes",
                limit=self.max_bytes,
                used=usage.bytes,
            )
        if entity_exists is not None:
            exists = entity_exists

            async def absent_one() -> int:
                return 0 if await exists() else 1

            absent_entities, entities = absent_one, 1
        counted = 0
        if self.max_entities and absent_entities is not None:
            if usage.entities + entities > self.max_entities:
                # Counted only when the limit is near: how many the write would add.
                counted = await absent_entities()
                if counted and usage.entities + counted > self.max_entities:
                    raise QuotaExceededError(
                        f"namespace {namespace} is at its quota of {self.max_entities} entities",
                        quota="entities",
                        limit=self.max_entities,
                        used=usage.entities,
                    )
            else:
                counted = entities
        if usage.bytes is not None:
            usage.bytes += incoming_bytes
        usage.entities += counted
        return Reservation(namespace, incoming_bytes, counted)

    def settle(
        self, reservation: Reservation | None, *, succeeded: bool, created: bool | int = False
    ) -> None:
        """Give back what the write did not use (all of it when it failed). ``created``:
        whether the write created its entity, or how many it created (a batch)."""
        if reservation is None:
            return
        usage = self._usage.get(reservation.namespace)
        if usage is None:
            return
        if not succeeded:
            if usage.bytes is not None:
                usage.bytes = max(0, usage.bytes - reservation.bytes)
            usage.entities = max(0, usage.entities - reservation.entities)
            # A failed write may still have landed (timeouts): read the truth next time.
            usage.stale = True
        else:
            usage.entities = max(0, usage.entities + int(created) - reservation.entities)

    def forget(self, namespace: str) -> None:
        """Something was deleted or replaced: read the exact usage on the next write."""
        usage = self._usage.get(namespace)
        if usage is not None:
            usage.stale = True


class Watch:
    """One request under a ``DeadlineWatchdog``."""

    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self, task: asyncio.Task[object], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        self.expired = False


class DeadlineWatchdog:
    """The request timeout, for every request, with one shared timer.

    ``asyncio.timeout`` pushes a timer on the event loop's heap and cancels it for every
    request (~8 µs per request on the benchmark machine). The timeout is the same for every
    request, so deadlines expire in arrival order: a request is an entry in an
    insertion-ordered dict (add on start, remove on finish: two dict operations), and one
    timer, armed only while requests are in flight, walks the oldest entries every
    ``resolution`` seconds and cancels the tasks whose deadline has passed. A request is
    therefore cut between ``timeout`` and ``timeout + resolution`` seconds.

    The caller turns the cancellation into its own error with ``expired`` (``asyncio.timeout``
    semantics: a cancellation that did not come from the watchdog, or came on top of
    another one, propagates as ``CancelledError``).
    """

    def __init__(self, timeout: float, resolution: float | None = None) -> None:
        self.timeout = timeout
        self.resolution = resolution or min(1.0, max(0.01, timeout / 8))
        self._active: dict[Watch, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._active)

    def watch(self, task: asyncio.Task[object]) -> Watch:
        entry = Watch(task, time.monotonic() + self.timeout)
        self._active[entry] = None
        if self._timer is None or self._loop is not task.get_loop():
            self._arm(task.get_loop())
        return entry

    def done(self, entry: Watch) -> None:
        self._active.pop(entry, None)

    def expired(self, entry: Watch) -> bool:
        """After a ``CancelledError``: True when it is this watchdog's timeout alone."""
        return entry.expired and entry.task.uncancel() <= entry.cancelling

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._loop = loop
        self._timer = loop.call_later(self.resolution, self._sweep)

    def _sweep(self) -> None:
        self._timer = None
        now = time.monotonic()
        late: list[Watch] = []
        for entry in self._active:
            if entry.deadline > now:
                break
            late.append(entry)
        for entry in late:
            del self._active[entry]
            if not entry.task.done():
                entry.expired = True
                entry.task.cancel()
        if self._active and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(self.resolution, self._sweep)

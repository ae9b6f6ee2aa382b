"""Local read cache: TTL- and size-bounded, invalidated on writes.

Why a generation counter: a reader that misses, loads from the backend and then stores
the value can race a writer that invalidated the key in between; the stored value would
be stale until its TTL. ``begin_load`` returns the current generation and ``store`` drops
the value if any invalidation happened since, so the race can only cost a miss.
``max TTL`` bounds staleness even when a cross-replica invalidation is lost.

Why ``accept``: a reader that knows a newer state exists (read-your-writes: it wrote or
read version n through another replica) asks only for an entry that is at least that
new; an older entry counts as a miss and stays until the caller stores what it loads.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0
    flushes: int = 0
    #: Lookups that carried a condition (``get(..., accept=...)``): also in hits/misses.
    conditional_hits: int = 0
    conditional_misses: int = 0
    #: Conditional lookups that found an entry and refused it (too old for the reader).
    refused: int = 0
    #: Reads told to skip the cache (``skip()``): not lookups, in neither hits nor misses.
    bypasses: int = 0


class LocalCache(Generic[V]):
    def __init__(self, *, ttl_seconds: float, max_entries: int) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._generation = 0
        self.stats = CacheStats()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, accept: Callable[[V], bool] | None = None) -> V | None:
        """The cached value, or ``None``; with ``accept``, only a value it accepts (a
        refused one stays cached for readers without the condition)."""
        stats = self.stats
        entry = self._data.get(key)
        value: V | None = None
        if entry is not None:
            expires, value = entry
            if expires <= time.monotonic():
                del self._data[key]
                value = None
            elif accept is not None and not accept(value):
                stats.refused += 1
                value = None
        if value is None:
            stats.misses += 1
            if accept is not None:
                stats.conditional_misses += 1
            return None
        self._data.move_to_end(key)
        stats.hits += 1
        if accept is not None:
            stats.conditional_hits += 1
        return value

    def skip(self) -> None:
        """Count a read that does not look in the cache (its caller wants the backend)."""
        self.stats.bypasses += 1

    def begin_load(self) -> int:
        return self._generation

    def store(
        self, key: str, value: V, generation: int, *, expires_in: float | None = None
    ) -> None:
        """Cache ``value`` unless invalidated since ``generation``. ``expires_in`` can only
        shorten the cache TTL (e.g. an entity that expires sooner)."""
        if not self.enabled or generation != self._generation:
            return
        ttl = self.ttl if expires_in is None else min(self.ttl, expires_in)
        if ttl <= 0:
            return
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
            self.stats.evictions += 1

    def invalidate(self, key: str) -> None:
        self._generation += 1
        self.stats.invalidations += 1
        self._data.pop(key, None)

    def clear(self) -> int:
        self._generation += 1
        self.stats.flushes += 1
        count = len(self._data)
        self._data.clear()
        return count

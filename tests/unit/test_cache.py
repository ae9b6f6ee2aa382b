"""LocalCache: TTL, LRU bound, and the generation guard against stale re-inserts."""

from __future__ import annotations

import time

from memstore.memory.cache import LocalCache


def test_hit_miss_and_ttl(monkeypatch: object) -> None:
    cache: LocalCache[str] = LocalCache(ttl_seconds=0.05, max_entries=10)
    assert cache.get("k") is None
    cache.store("k", "v", cache.begin_load())
    assert cache.get("k") == "v"
    time.sleep(0.06)
    assert cache.get("k") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)


def test_lru_bound_evicts_least_recently_used() -> None:
    cache: LocalCache[int] = LocalCache(ttl_seconds=60, max_entries=2)
    for key in ("a", "b"):
        cache.store(key, 1, cache.begin_load())
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.store("c", 1, cache.begin_load())
    assert cache.get("b") is None
    assert cache.get("a") == 1 and cache.get("c") == 1
    assert cache.stats.evictions == 1 and len(cache) == 2


def test_a_load_that_raced_an_invalidation_is_not_cached() -> None:
    cache: LocalCache[str] = LocalCache(ttl_seconds=60, max_entries=10)
    generation = cache.begin_load()  # a reader misses and goes to the backend ...
    cache.invalidate("k")  # ... a writer changes the key meanwhile ...
    cache.store("k", "stale", generation)  # ... the reader's value must not stick
    assert cache.get("k") is None


def test_disabled_cache_stores_nothing() -> None:
    cache: LocalCache[str] = LocalCache(ttl_seconds=0, max_entries=10)
    cache.store("k", "v", cache.begin_load())
    assert cache.get("k") is None and len(cache) == 0


def test_clear_counts_entries() -> None:
    cache: LocalCache[str] = LocalCache(ttl_seconds=60, max_entries=10)
    for key in "abc":
        cache.store(key, key, cache.begin_load())
    assert cache.clear() == 3
    assert len(cache) == 0 and cache.stats.flushes == 1

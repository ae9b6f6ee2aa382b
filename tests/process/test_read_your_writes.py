"""Read-your-writes across two real ``memstore serve`` processes on one backend (Redis
standalone, Redis Cluster, MongoDB on FerretDB), each with its local cache on and a long
TTL: writes through replica A, each immediately read through replica B.

* With the two clients sharing a ``VersionTracker`` no read is older than its write.
* Without (independent clients, as before read-your-writes) B serves its cached copy:
  on MongoDB, which has no invalidation bus, until the TTL; on Redis until the
  invalidation message arrives (a race the reads sometimes win).
* The cache keeps serving readers without a token as before: their hit rate, counted by
  replica B's own figures (``/v1/metrics``), with token users around and without.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from memstore.client import MemoryClient, VersionTracker
from memstore.client.versions import EntityKey
from tests.support.procs import running_service
from tests.support.shared_backend import backend_env

NS = "ryw"
LONG_TTL = "300"
PAIRS = 10_000
WORKERS = 32
KEYS_PER_WORKER = 4
#: FerretDB (SQLite) is the slow one: 1,500 pairs took from 17 s to over a minute here,
#: with the shared machine's load; 10,000 would take minutes. So MongoDB runs fewer, with
#: fewer keys (its queries scan the collection); without a token every one of its pairs
#: reads stale, so fewer still tell a broken check at once.
MONGODB_PAIRS = 1_500
MONGODB_WORKERS = 8
MONGODB_KEYS_PER_WORKER = 2


def replica_env(backend: str, request: pytest.FixtureRequest, shared_dir: Path) -> dict[str, str]:
    env = backend_env(request, backend, shared_dir)
    return env | {"MEMSTORE_CACHE_TTL_SECONDS": LONG_TTL, "MEMSTORE_LOG_LEVEL": "WARNING"}


@pytest.fixture
def two_replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(backend, URL of replica A, URL of replica B)."""
    backend: str = request.param
    env = replica_env(backend, request, tmp_path)
    with running_service(tmp_path / "a", env) as a, running_service(tmp_path / "b", env) as b:
        yield backend, a.url, b.url


class NoTracker(VersionTracker):
    """A client that remembers nothing: reads as every client did before read-your-writes."""

    def floor(self, key: EntityKey) -> int | None:
        return None


class AnyVersion(VersionTracker):
    """Reads that any cached copy satisfies (min version 1), so they are served as
    without a token, yet B counts them apart from the plain readers' (min_version_*)."""

    def floor(self, key: EntityKey) -> int | None:
        return 1


@dataclass
class Outcome:
    pairs: int = 0
    stale: int = 0


async def ready(*clients: MemoryClient) -> None:
    """Each replica connected (and, on Redis, subscribed to its bus) before the run."""
    for client in clients:
        for _ in range(100):
            if await client.ping():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{client} never became ready")


async def write_then_read(
    writer: MemoryClient,
    reader: MemoryClient,
    pairs: int,
    workers: int = WORKERS,
    keys_per_worker: int = KEYS_PER_WORKER,
) -> Outcome:
    """``pairs`` writes through ``writer``, each read at once through ``reader``; each
    worker owns its keys (no two writes of one key at once), so the version a write
    answers is the least a read after it may return. Each key is read through B first,
    so B holds a cached copy of it from then on."""
    outcome = Outcome()
    keys = [[f"w{w}k{k}" for k in range(keys_per_worker)] for w in range(workers)]
    for own in keys:
        for eid in own:
            await writer.save_entity("doc", eid, {"n": 0})
            await reader.get_entity("doc", eid)

    async def worker(own: list[str], count: int) -> None:
        for i in range(count):
            eid = own[i % len(own)]
            written = await writer.save_entity("doc", eid, {"n": i})
            read = await reader.get_entity("doc", eid)
            outcome.pairs += 1
            if read is None or read.version < written.version:
                outcome.stale += 1
            elif read.version == written.version:
                assert read.data == {"n": i}

    share, extra = divmod(pairs, workers)
    await asyncio.gather(*(worker(own, share + (w < extra)) for w, own in enumerate(keys)))
    return outcome


ALL_BACKENDS = ["redis", "redis_cluster", "mongodb"]


@pytest.mark.parametrize("two_replicas", ALL_BACKENDS, indirect=True)
async def test_writes_through_one_replica_are_read_through_the_other(
    two_replicas: tuple[str, str, str],
) -> None:
    backend, url_a, url_b = two_replicas
    tracker = VersionTracker()
    async with (
        MemoryClient(url_a, NS, versions=tracker) as on_a,
        MemoryClient(url_b, NS, versions=tracker) as on_b,
    ):
        await ready(on_a, on_b)
        if backend == "mongodb":
            pairs = MONGODB_PAIRS
            outcome = await write_then_read(
                on_a, on_b, pairs, MONGODB_WORKERS, MONGODB_KEYS_PER_WORKER
            )
        else:
            pairs = PAIRS
            outcome = await write_then_read(on_a, on_b, pairs)
        cache = (await on_b.get_metrics())["cache"]
    print(
        f"\n{backend}: {outcome.pairs} pairs with a shared tracker, {outcome.stale} stale; "
        f"B's cached copies refused as too old: {cache['min_version_refused']}"
    )
    assert outcome.pairs == pairs
    assert outcome.stale == 0
    assert cache["min_version_hits"] + cache["min_version_misses"] >= pairs


@pytest.mark.parametrize("two_replicas", ["mongodb"], indirect=True)
async def test_without_the_token_the_other_replica_reads_stale(
    two_replicas: tuple[str, str, str],
) -> None:
    """The same workload with independent clients: B answers from its cache, which
    nothing invalidates on MongoDB. (The check that a test above can fail.)"""
    backend, url_a, url_b = two_replicas
    async with MemoryClient(url_a, NS) as on_a, MemoryClient(url_b, NS) as on_b:
        await ready(on_a, on_b)
        outcome = await write_then_read(on_a, on_b, 500, MONGODB_WORKERS, MONGODB_KEYS_PER_WORKER)
    print(f"\n{backend}: {outcome.pairs} pairs without a shared tracker, {outcome.stale} stale")
    assert outcome.stale > 0


# -- the cache's benefit for readers without a token ---------------------------------

READS_PER_WRITE = 20
HOT_KEYS = 200


async def hit_rate_of_plain_readers(
    url_a: str, url_b: str, *, tokens: bool, rounds: int, prefix: str
) -> float:
    """Plain readers (no token) read random keys through B, ``READS_PER_WRITE`` for each
    write-then-read pair made through A then B on the same keys by token users
    (``tokens``), or by clients reading as before read-your-writes. Returns the plain
    readers' hit rate in B's cache: B's hits and lookups less those of reads that carried
    a min_version (the pairs' reads, in both cases)."""
    tracker = VersionTracker() if tokens else AnyVersion()
    rng = random.Random(17)
    keys = [f"{prefix}{i}" for i in range(HOT_KEYS)]
    async with (
        MemoryClient(url_a, NS, versions=tracker) as on_a,
        MemoryClient(url_b, NS, versions=tracker) as on_b,
        MemoryClient(url_b, NS, versions=NoTracker()) as plain,
    ):
        await ready(on_a, on_b)
        for eid in keys:
            await on_a.save_entity("doc", eid, {"n": 0})
        before = (await plain.get_metrics())["cache"]

        async def agent(own: list[str]) -> None:
            for i in range(rounds):
                await on_a.save_entity("doc", own[i % len(own)], {"n": i})
                await on_b.get_entity("doc", own[i % len(own)])
                for _ in range(READS_PER_WRITE):
                    await plain.get_entity("doc", rng.choice(keys))

        await asyncio.gather(*(agent(keys[w::8]) for w in range(8)))
        after = (await plain.get_metrics())["cache"]
    delta: dict[str, int] = {k: after[k] - before[k] for k in after if isinstance(after[k], int)}
    hits = delta["hits"] - delta["min_version_hits"]
    lookups = hits + delta["misses"] - delta["min_version_misses"]
    assert delta["min_version_hits"] + delta["min_version_misses"] == 8 * rounds
    assert lookups == 8 * rounds * READS_PER_WRITE
    return hits / lookups


@pytest.mark.parametrize("two_replicas", ALL_BACKENDS, indirect=True)
async def test_readers_without_a_token_keep_their_hit_rate(
    two_replicas: tuple[str, str, str],
) -> None:
    backend, url_a, url_b = two_replicas
    rounds = 25 if backend == "mongodb" else 150
    without = await hit_rate_of_plain_readers(
        url_a, url_b, tokens=False, rounds=rounds, prefix="plain"
    )
    with_tokens = await hit_rate_of_plain_readers(
        url_a, url_b, tokens=True, rounds=rounds, prefix="token"
    )
    print(
        f"\n{backend}: hit rate of readers without a token: {without:.4f} beside writers "
        f"and readers as before, {with_tokens:.4f} beside token users"
    )
    assert without > 0.5  # the workload is read-heavy: the cache serves most reads
    assert abs(with_tokens - without) <= 0.1 * without

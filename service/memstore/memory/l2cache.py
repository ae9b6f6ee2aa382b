"""The shared second-level cache: entities in Memcached, between the local cache and the
backend, shared by every replica (docs/architecture.md, "Second-level cache (Memcached)").

Why a stale value cannot be served after an acknowledged write (the argument in full is in
the architecture document):

* Each entity has a *generation* key and each namespace an *epoch* key in Memcached. A
  cached value lives under a key that names both, read *before* the backend was read.
* A write through any replica replaces the entity's generation with a fresh random
  62-bit number after the backend applied it and before the write is acknowledged, so a
  reader that starts after the acknowledgement reads the new generation and finds no
  value under it. A slow reader that loaded the old state stores it under the old
  generation, which nobody reads any more.
* A generation or epoch key that is missing (never set, evicted, Memcached restarted) is
  created by the next reader (``add``), with a random number too: never a counter that
  could come back to a number a value is still stored under (a collision is a 2^-62
  chance per new generation).
* A writer that cannot reach Memcached remembers what it owes (per key, or per namespace
  once there are too many keys) and retries; this process reads nothing from Memcached
  while it owes a bump. Other replicas that can reach Memcached meanwhile may serve the
  old state until the bump lands or the value's TTL ends (the one residual window).

Memcached down (refused, timed out, any protocol error) is never an error to the caller:
the read goes to the backend, a counter and a rate-limited log line say so, and Memcached
is left alone for a second before it is tried again. No key, value or payload is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from memstore.core.errors import ConfigurationError, MemoryStoreError
from memstore.core.records import EntityRecord
from memstore.core.settings import L2CacheSettings, memcached_address

if TYPE_CHECKING:
    import aiomcache

log = logging.getLogger(__name__)

#: Memcached's default item limit is 1 MiB (``-I``), key and header included; a larger
#: value would be refused on every miss, so it is not sent.
MAX_VALUE_BYTES = 1_000_000
#: After a failure, Memcached is not tried again for this long (reads go to the backend).
RETRY_AFTER_SECONDS = 1.0
#: Owed generation bumps kept per key up to this many; beyond, their namespaces' epochs
#: are bumped instead (one key each, whatever the number of entities).
MAX_OWED_KEYS = 10_000
#: The least time a generation bump may take before it counts as failed.
WRITE_TIMEOUT_SECONDS = 2.0
#: At most one "Memcached unavailable" log line per this many seconds.
LOG_EVERY_SECONDS = 30.0


@dataclass(slots=True)
class L2Stats:
    hits: int = 0
    misses: int = 0
    #: Values written after a miss.
    stores: int = 0
    #: Generation bumps (entity writes) and epoch bumps sent.
    invalidations: int = 0
    #: Memcached calls that failed or timed out.
    errors: int = 0
    #: Reads served by the backend without asking Memcached (down, or bumps still owed).
    bypasses: int = 0
    #: Values not stored because they are larger than Memcached takes.
    too_large: int = 0


class EntitySealer(Protocol):
    """Encryption at rest (``SealedBackend``): what Memcached holds is an entity as the
    backend keeps it, its data sealed with the namespace's data key."""

    async def seal_cached_entity(
        self, namespace: str, record: EntityRecord
    ) -> EntityRecord | None: ...

    async def open_cached_entity(self, namespace: str, record: EntityRecord) -> EntityRecord: ...


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def namespace_of(key: str) -> str:
    """The namespace of an entity cache key (``entity/<ns>/<type>/<id>``)."""
    return key.split("/", 2)[1]


def _fresh_generation() -> bytes:
    return str(secrets.randbits(62)).encode()


class SharedEntityCache:
    """Entities in one Memcached server, for every replica of one store."""

    def __init__(self, settings: L2CacheSettings) -> None:
        if settings.l2_cache_url is None:
            raise ValueError("no MEMSTORE_L2_CACHE_URL")
        # Checked here, without importing it: constructing a manager imports no driver.
        if importlib.util.find_spec("aiomcache") is None:
            raise ConfigurationError(
                "MEMSTORE_L2_CACHE_URL needs the Memcached client: "
                "pip install 'memstore[memcached]'"
            )
        self.host, self.port = memcached_address(settings.l2_cache_url)
        self.ttl = settings.l2_cache_ttl_seconds
        self.timeout = settings.l2_cache_timeout_seconds
        self._pool_size = settings.l2_cache_pool_size
        self._prefix = settings.l2_cache_prefix
        self._client: aiomcache.Client | None = None
        self.stats = L2Stats()
        self._down_until = 0.0
        self._last_log = -math.inf
        # Bumps this process owes (it could not send them): keys per namespace, and whole
        # namespaces (their epoch) once the keys overflowed.
        self._owed_keys: dict[str, set[str]] = {}
        self._owed_namespaces: set[str] = set()
        self._owed_count = 0
        self._repay_task: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, Any]:
        return {"url": f"memcached://{self.host}:{self.port}", "ttl_seconds": self.ttl}

    @property
    def available(self) -> bool:
        """Whether reads may use Memcached now (not marked down, no bump owed)."""
        return not self._owes() and time.monotonic() >= self._down_until

    # -- keys ---------------------------------------------------------------------------

    def _generation_key(self, key: str) -> bytes:
        return f"{self._prefix}:g:{_digest(key)}".encode()

    def _epoch_key(self, namespace: str) -> bytes:
        return f"{self._prefix}:n:{_digest(namespace)}".encode()

    def _value_key(self, key: str, epoch: bytes, generation: bytes) -> bytes:
        return f"{self._prefix}:v:{_digest(key)}:{epoch.decode()}:{generation.decode()}".encode()

    # -- reads --------------------------------------------------------------------------

    async def read(
        self,
        namespace: str,
        key: str,
        load: Callable[[], Awaitable[EntityRecord | None]],
        accept: Callable[[EntityRecord], bool] | None = None,
        sealer: EntitySealer | None = None,
    ) -> EntityRecord | None:
        """The entity from Memcached, else from ``load()`` (the backend), which is then
        stored for the next reader. ``accept``: a cached value it refuses counts as a miss
        (a reader that knows of a newer version). ``sealer``: values are stored sealed and
        opened on a hit; one that does not open (its key shredded) is a miss."""
        if not self.available:
            self.stats.bypasses += 1
            return await load()
        tags = await self._tags(namespace, key)
        if tags is None:
            self.stats.bypasses += 1
            return await load()
        value_key = self._value_key(key, *tags)
        cached = await self._call(lambda client: client.get(value_key))
        if cached is None:
            self.stats.bypasses += 1
            return await load()
        if isinstance(cached, bytes):
            record = self._decode(key, cached)
            if record is not None and sealer is not None:
                try:
                    record = await sealer.open_cached_entity(namespace, record)
                except MemoryStoreError:
                    record = None  # the backend gives the authoritative answer
            if (
                record is not None
                and (record.expires_at is None or record.expires_at > time.time())
                and (accept is None or accept(record))
            ):
                self.stats.hits += 1
                return record
        self.stats.misses += 1
        record = await load()
        if record is not None:
            stored: EntityRecord | None = record
            if sealer is not None:
                try:
                    stored = await sealer.seal_cached_entity(namespace, record)
                except MemoryStoreError:
                    stored = None  # the read succeeded: only the caching is skipped
            if stored is not None:
                await self._store(value_key, key, stored)
        return record

    async def _tags(self, namespace: str, key: str) -> tuple[bytes, bytes] | None:
        """(epoch, generation) now, creating missing ones; ``None`` if Memcached failed."""
        epoch_key, generation_key = self._epoch_key(namespace), self._generation_key(key)
        for _ in range(2):
            found = await self._call(lambda client: client.multi_get(epoch_key, generation_key))
            if found is None:
                return None
            epoch, generation = found
            if isinstance(epoch, bytes) and isinstance(generation, bytes):
                return epoch, generation
            # ``add`` only creates: of two replicas creating the same key, one wins and
            # both read its number on the next pass.
            for name, value in ((epoch_key, epoch), (generation_key, generation)):
                if value is None and await self._create(name) is None:
                    return None
        return None

    async def _create(self, name: bytes) -> bool | None:
        fresh = _fresh_generation()
        added: bool | None = await self._call(lambda client: client.add(name, fresh))
        return added

    async def _store(self, value_key: bytes, key: str, record: EntityRecord) -> None:
        ttl = self.ttl
        if record.expires_at is not None:
            left = record.expires_at - time.time()
            if left <= 0:
                return
            ttl = min(ttl, math.ceil(left))
        try:
            payload = orjson.dumps(
                [
                    key,
                    record.type,
                    record.id,
                    record.data,
                    record.version,
                    record.created_at,
                    record.updated_at,
                    record.expires_at,
                    record.pinned,
                ]
            )
        except TypeError:
            return
        if len(payload) > MAX_VALUE_BYTES:
            self.stats.too_large += 1
            return
        if await self._call(lambda client: client.set(value_key, payload, exptime=ttl)):
            self.stats.stores += 1

    @staticmethod
    def _decode(key: str, payload: bytes) -> EntityRecord | None:
        try:
            (stored_key, type_, id_, data, version, created, updated, expires, pinned) = (
                orjson.loads(payload)
            )
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None  # also a value of an older layout (a miss: read from the backend)
        # The key is stored with the value: a digest collision cannot answer another entity.
        if stored_key != key:
            return None
        return EntityRecord(type_, id_, data, version, created, updated, expires, pinned is True)

    # -- writes -------------------------------------------------------------------------

    async def invalidate(self, namespace: str, key: str) -> None:
        """After a write of ``key`` reached the backend: bump its generation (or owe it)."""
        self.stats.invalidations += 1
        if self.available and await self._bump(self._generation_key(key)):
            return
        self._owe(namespace, key)

    async def invalidate_namespace(self, namespace: str) -> None:
        """After a write of many entities of ``namespace`` at once (a restore, a bulk
        delete): every cached entity of it is unreachable from then on."""
        self.stats.invalidations += 1
        if self.available and await self._bump(self._epoch_key(namespace)):
            return
        self._owe(namespace, None)

    async def _bump(self, name: bytes) -> bool:
        """Replace a generation (or epoch) with a fresh random number: one round trip
        whether or not the key exists, and never a number used before (an ``incr`` of an
        evicted key would fail, and a counter could come back to an old value).

        A bump that fails opens the one window where other replicas may serve the old
        state, so it gets a longer deadline than a read (a busy event loop can take a
        read's 0.25 s on its own) and a second try; a refused connection fails at once."""
        fresh = _fresh_generation()
        deadline = max(self.timeout, WRITE_TIMEOUT_SECONDS)
        for _ in range(2):
            done = await self._call(lambda client: client.set(name, fresh), seconds=deadline)
            if done is not None:
                return True
        return False

    def _owes(self) -> bool:
        return self._owed_count > 0 or bool(self._owed_namespaces)

    def _owe(self, namespace: str, key: str | None) -> None:
        if key is None:
            self._owed_namespaces.add(namespace)
        elif namespace not in self._owed_namespaces:
            keys = self._owed_keys.setdefault(namespace, set())
            if key not in keys:
                keys.add(key)
                self._owed_count += 1
            if self._owed_count > MAX_OWED_KEYS:
                self._owed_namespaces.update(self._owed_keys)
                self._owed_keys.clear()
                self._owed_count = 0
        if self._repay_task is None or self._repay_task.done():
            self._repay_task = asyncio.get_running_loop().create_task(
                self._repay(), name="memstore-l2-cache-repay"
            )

    async def _repay(self) -> None:
        """Send the owed bumps once Memcached answers again (reads wait for this)."""
        while self._owes():
            await asyncio.sleep(max(self._down_until - time.monotonic(), 0.05))
            await self._repay_once()

    async def _repay_once(self) -> None:
        for namespace in list(self._owed_namespaces):
            if not await self._bump(self._epoch_key(namespace)):
                return
            self._owed_namespaces.discard(namespace)
            # The epoch covers the namespace's keys too.
            self._owed_count -= len(self._owed_keys.pop(namespace, ()))
        for namespace in list(self._owed_keys):
            keys = self._owed_keys.get(namespace)
            while keys:
                key = next(iter(keys))
                if not await self._bump(self._generation_key(key)):
                    return
                # An overflow meanwhile may have moved the keys to their namespace.
                if self._owed_keys.get(namespace) is keys and key in keys:
                    keys.discard(key)
                    self._owed_count -= 1
            if self._owed_keys.get(namespace) is keys:
                del self._owed_keys[namespace]

    # -- the client ---------------------------------------------------------------------

    async def _call(
        self, call: Callable[[aiomcache.Client], Awaitable[Any]], *, seconds: float | None = None
    ) -> Any:
        """``call(client)``'s result, or ``None`` after marking Memcached down."""
        import aiomcache

        client = self._client
        if client is None:
            client = self._client = aiomcache.Client(
                self.host, self.port, pool_size=self._pool_size
            )
        try:
            async with asyncio.timeout(seconds or self.timeout):
                result = await call(client)
        except TimeoutError:
            # aiomcache returns a connection interrupted mid-reply to its pool (its
            # release path sees no exception on a cancel): its unread reply would answer
            # the next command. Closing the idle connections drops it; nothing can have
            # taken it yet, as the pool's queue is drained without yielding.
            await client.close()
            self._failed("timeout")
            return None
        except (
            aiomcache.ClientException,
            OSError,
            EOFError,
            asyncio.IncompleteReadError,
            ValueError,
        ) as exc:
            self._failed(type(exc).__name__)
            return None
        return result if result is not None else False

    def _failed(self, reason: str) -> None:
        self.stats.errors += 1
        now = time.monotonic()
        self._down_until = now + RETRY_AFTER_SECONDS
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            log.warning(
                "Memcached (second-level cache) unavailable; reading from the backend",
                extra={"reason": reason, "memcached": f"{self.host}:{self.port}"},
            )

    async def close(self) -> None:
        """Stop repaying (a later write starts again) and close the connections."""
        task, self._repay_task = self._repay_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owes():
            # A last attempt (it stops at the first failure): owed bumps die with the process.
            self._down_until = 0.0
            await self._repay_once()
        if self._client is not None:
            await self._client.close()
            self._client = None

"""``RedisMemoryBackend``: standalone Redis or Redis Cluster through redis-py asyncio.

Shape (see "Redis backend" in docs/architecture.md for the reasoning and trade-offs):

* One client per process (``Redis`` with a connection pool, or ``RedisCluster``), built in
  ``connect`` and closed in ``close``. Library retries are off; this module retries
  connection loss, timeouts and cluster re-routing itself, with jittered exponential
  backoff, refreshing the cluster topology between attempts. Every write carries an
  operation id stored on the object, so a retried write is applied once.
* Every write is one Lua script on one hash slot (``scripts.py``); multi-shard reads
  (listings, summary) are one pipeline of single-slot commands (``keys.py``).
* Durable mode (``MEMSTORE_REDIS_WAIT_REPLICAS`` > 0) sends the script and ``WAIT`` on
  the same connection to the slot's master and raises ``BackendUnavailableError`` when
  fewer replicas acknowledge in time (the write may still have been applied there).
* Only the master of a slot is read (no replica reads), so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from memstore.backends.base import DistributedMemoryBackend, InvalidationCallback
from memstore.backends.redis import scripts
from memstore.backends.redis.invalidation import InvalidationBus
from memstore.backends.redis.keys import Keys, key_slot
from memstore.core.errors import (
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    MemoryStoreError,
)
from memstore.core.records import (
    ConversationInfo,
    EntityRecord,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageRecord,
    Page,
    ToolUsageRecord,
)
from memstore.core.validation import decode_cursor, encode_cursor
from redis import exceptions as rexc

if TYPE_CHECKING:
    from memstore.core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "try again, maybe elsewhere": connection loss, timeouts, failover in
# progress, slot moved. Authentication failures are ConnectionError subclasses but final.
RETRYABLE: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ClusterError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.AskError,
    rexc.ReadOnlyError,
    rexc.RedisClusterException,
    rexc.BusyLoadingError,
)
FINAL: tuple[type[BaseException], ...] = (
    rexc.AuthenticationError,
    rexc.AuthorizationError,
    rexc.CrossSlotTransactionError,
)


def parse_nodes(spec: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (an optional ``redis+cluster://`` scheme is accepted)."""
    spec = spec.strip()
    for scheme in ("redis+cluster://", "redis-cluster://", "redis://"):
        if spec.startswith(scheme):
            spec = spec[len(scheme) :]
    nodes: list[tuple[str, int]] = []
    for part in spec.split(","):
        part = part.strip().rstrip("/")
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError("MEMSTORE_REDIS_CLUSTER_NODES must be host:port,host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError("MEMSTORE_REDIS_CLUSTER_NODES names no node")
    return nodes


def _f(value: float) -> str:
    """Float as text Redis and Lua parse back to the identical double."""
    return repr(float(value))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score_pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """WITHSCORES replies come flat or already paired depending on the client's callbacks."""
    if reply and isinstance(reply[0], list | tuple):
        return [(_s(m), float(sc)) for m, sc in reply]
    return [(_s(reply[j]), float(reply[j + 1])) for j in range(0, len(reply), 2)]


def _op_id() -> str:
    return os.urandom(12).hex()


def _cache_key(namespace: str, entity_type: str, entity_id: str) -> str:
    """The manager's cache key of an entity (``manager.entity_cache_key``; backends may
    not import the manager, tests check both agree). If they ever differ, nothing goes
    stale: the manager's own publish is then not recognised as done and is sent."""
    return f"entity/{namespace}/{entity_type}/{entity_id}"


#: The cache key whose invalidation the last entity write of this task published inside
#: its script (or that needs none: a conflict changed nothing). ``publish_invalidation``
#: for that key is then a no-op: one round trip per write instead of two. A task that
#: never calls it (direct backend use) leaves the value behind harmlessly; a write that
#: raises clears it, so the manager's fallback publish still goes out after a timeout.
_announced: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "memstore_redis_announced", default=None
)


def _parse_entity(value: bytes) -> tuple[bytes, int, float, float, float | None]:
    """``<version>|<created>|<updated>|<expires>|<op>\\n<payload>`` (see scripts.py)."""
    head, _, data = value.partition(b"\n")
    v, c, u, x, _op = head.split(b"|", 4)
    return data, int(v), float(c), float(u), float(x) if x else None


class RedisMemoryBackend(DistributedMemoryBackend):
    name = "redis"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cluster_mode = bool(settings.redis_cluster_nodes.strip())
        self.nodes = parse_nodes(settings.redis_cluster_nodes) if self.cluster_mode else []
        prefix = settings.effective_redis_prefix
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError("REDIS_PREFIX must not contain '{' or '}' (hash tags)")
        self.keys = Keys(prefix, settings.redis_index_shards)
        self.instance_id = _op_id()
        self._client: Any = None
        self._pool: ConnectionPool | None = None
        self._bus: InvalidationBus | None = None
        self._known_types: set[tuple[str, str]] = set()
        self._known_namespaces: set[str] = set()
        # redis-py's cluster client raises MaxConnectionsError instead of waiting when a
        # node's pool is exhausted; bounding in-flight calls per process keeps every node's
        # pool within MEMSTORE_REDIS_POOL_SIZE. Standalone: the same bound keeps a plain
        # pool within its size, so it needs no BlockingConnectionPool (whose condition
        # variable and timeout cost ~10% of a cache-miss GET's CPU). Every command,
        # ``ping`` included, runs under this semaphore.
        self._inflight = asyncio.Semaphore(settings.redis_pool_size)
        self._topology_lock = asyncio.Lock()
        self._topology_epoch = 0
        #: entity writes publish their cache invalidation inside the write script; False
        #: writes without telling other replicas (tests simulating a lost message)
        self.announce_writes = True

    def __repr__(self) -> str:
        return f"RedisMemoryBackend({self.describe()!r})"

    # -- lifecycle --------------------------------------------------------------------

    def _connection_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "password": s.redis_password.get_secret_value() if s.redis_password else None,
            "socket_timeout": s.redis_socket_timeout_seconds,
            "socket_connect_timeout": s.redis_connect_timeout_seconds,
            "socket_keepalive": True,
            "client_name": "memstore",
            "decode_responses": False,
            "protocol": 3,
        }

    async def connect(self) -> None:
        s = self.settings
        kwargs = self._connection_kwargs()
        try:
            if self.cluster_mode:
                self._client = RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],
                    require_full_coverage=False,
                    max_connections=s.redis_pool_size,
                    retry=Retry(NoBackoff(), 0),
                    **kwargs,
                )
            else:
                self._pool = ConnectionPool(
                    host=s.redis_host,
                    port=s.redis_port,
                    db=s.redis_db,
                    max_connections=s.redis_pool_size,
                    retry=Retry(NoBackoff(), 0),
                    **kwargs,
                )
                self._client = Redis(connection_pool=self._pool)
        except rexc.RedisError as exc:
            raise ConfigurationError(f"invalid Redis settings: {type(exc).__name__}") from exc
        try:
            await self._retrying(lambda: self._client.execute_command("PING"))
        except BaseException:
            await self.close()
            raise
        self._bus = InvalidationBus(self, kwargs)

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.stop()
            self._bus = None
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except (rexc.RedisError, OSError):
                log.debug("error closing the Redis client", exc_info=True)
        if self._pool is not None:
            try:
                await self._pool.disconnect()
            except (rexc.RedisError, OSError):
                log.debug("error closing the Redis pool", exc_info=True)
            self._pool = None

    async def ping(self) -> bool:
        client = self._client
        if client is None:
            return False
        s = self.settings
        timeout = s.redis_connect_timeout_seconds + s.redis_socket_timeout_seconds

        async def bounded() -> Any:
            async with self._inflight:  # keeps the pool within its size
                if self.cluster_mode:
                    # Ready = every master serving a slot answers (a dead replica or a
                    # failed ex-master does not stop the service from serving).
                    return await client.execute_command("PING", target_nodes=RedisCluster.PRIMARIES)
                return await client.execute_command("PING")

        try:
            return bool(await asyncio.wait_for(bounded(), timeout=timeout))
        except (TimeoutError, AttributeError, rexc.RedisError, rexc.RedisClusterException, OSError):
            # Re-read the slot map so the next probe sees a promoted replica.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_topology(), timeout=timeout)
            return False

    def describe(self) -> dict[str, Any]:
        s = self.settings
        info: dict[str, Any] = {
            "backend": self.name,
            "mode": "cluster" if self.cluster_mode else "standalone",
            "prefix": self.keys.prefix,
            "index_shards": self.keys.shards,
            "wait_replicas": s.redis_wait_replicas,
        }
        if self.cluster_mode:
            info["seed_nodes"] = [f"{h}:{p}" for h, p in self.nodes]
        else:
            info["address"] = f"{s.redis_host}:{s.redis_port}/{s.redis_db}"
        return info

    @property
    def invalidation_bus(self) -> InvalidationBus | None:
        """The invalidation subscriber (state and counters for readiness, metrics, tests)."""
        return self._bus

    # -- cache invalidation -------------------------------------------------------------

    async def publish_invalidation(self, key: str) -> None:
        if _announced.get() == key:
            _announced.set(None)  # the write script already published it
            return
        if self._bus is not None:
            await self._bus.publish(key)

    def _announce_args(
        self, namespace: str, entity_type: str, entity_id: str, tag: str
    ) -> list[Any]:
        """ARGV tail of the entity write scripts: how, channel, message (see scripts.py)."""
        if not self.announce_writes:
            return ["", "", ""]
        message = f"{self.instance_id}\n{_cache_key(namespace, entity_type, entity_id)}"
        if self.cluster_mode:
            return ["SPUBLISH", self.keys.invalidation_slot_channel(key_slot(tag)), message]
        return ["PUBLISH", self.keys.invalidation_channel(), message]

    async def subscribe_invalidations(self, callback: InvalidationCallback) -> None:
        if self._bus is None:
            raise BackendUnavailableError("Redis backend is not connected")
        await self._bus.start(callback)

    # -- plumbing -----------------------------------------------------------------------

    def _c(self) -> Any:
        if self._client is None:
            raise BackendUnavailableError("Redis backend is not connected")
        return self._client

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        ceiling = min(
            s.redis_retry_backoff_cap_seconds, s.redis_retry_backoff_base_seconds * 2**attempt
        )
        return random.uniform(ceiling / 2, ceiling)

    async def _refresh_topology(self) -> None:
        """Re-read the cluster's slot map, once for all callers failing at the same time."""
        if not self.cluster_mode or self._client is None:
            return
        seen = self._topology_epoch
        async with self._topology_lock:
            if self._topology_epoch != seen:
                return  # another caller refreshed while this one waited
            try:
                await self._client.nodes_manager.initialize()
            except (rexc.RedisError, rexc.RedisClusterException, OSError):
                log.debug("cluster topology refresh failed; will retry", exc_info=True)
            self._topology_epoch += 1

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``, retrying transient failures; map driver errors to ours."""
        attempt = 0
        while True:
            try:
                async with self._inflight:
                    try:
                        return await call()
                    except AttributeError as exc:
                        # redis-py's cluster client closes every connection, in use or
                        # not, when it sees CLUSTERDOWN; a coroutine mid-command then
                        # finds its socket writer gone ("'NoneType' object has no
                        # attribute ..."). That is a lost connection: retry it as one.
                        if "NoneType" not in str(exc):
                            raise
                        raise rexc.ConnectionError("connection closed under the command") from exc
            except MemoryStoreError:
                raise
            except FINAL as exc:
                raise BackendUnavailableError(f"Redis refused: {type(exc).__name__}") from exc
            except RETRYABLE as exc:
                # A failover may have lost recent un-WAITed writes, e.g. a type's entry in
                # the namespace's type set: register types and namespaces again from now on.
                self._known_types.clear()
                self._known_namespaces.clear()
                if attempt >= self.settings.redis_retries:
                    raise BackendUnavailableError(
                        f"Redis unavailable after {attempt + 1} attempts: "
                        f"{type(exc).__name__}: {str(exc)[:200]}"
                    ) from exc
                await asyncio.sleep(self._backoff(attempt))
                await self._refresh_topology()
                attempt += 1
            except (rexc.RedisError, OSError) as exc:
                raise BackendUnavailableError(
                    f"Redis error: {type(exc).__name__}: {str(exc)[:200]}"
                ) from exc

    async def _eval_once(self, script: scripts.Script, keys: list[str], args: list[Any]) -> Any:
        client = self._c()
        try:
            return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)

    async def _eval(self, script: scripts.Script, keys: list[str], args: list[Any]) -> Any:
        return await self._retrying(lambda: self._eval_once(script, keys, args))

    async def _write(self, script: scripts.Script, keys: list[str], args: list[Any]) -> Any:
        """A write script; in durable mode followed by WAIT on the same connection."""
        if self.settings.redis_wait_replicas <= 0:
            return await self._eval(script, keys, args)
        return await self._retrying(lambda: self._durable_once(script, keys, args))

    async def _durable_once(self, script: scripts.Script, keys: list[str], args: list[Any]) -> Any:
        s = self.settings
        commands: list[tuple[Any, ...]] = [
            ("EVAL", script.source, len(keys), *keys, *args),
            ("WAIT", s.redis_wait_replicas, s.redis_wait_timeout_ms),
        ]
        result, acks = await self._on_one_connection(keys[0], commands)
        if isinstance(result, BaseException):
            raise result
        if isinstance(acks, BaseException):
            raise acks
        if int(acks) < s.redis_wait_replicas:
            raise BackendUnavailableError(
                f"write acknowledged by {int(acks)} of {s.redis_wait_replicas} replicas within "
                f"{s.redis_wait_timeout_ms} ms; it may or may not survive a failover",
                acknowledged_replicas=int(acks),
                required_replicas=s.redis_wait_replicas,
            )
        return result

    async def _on_one_connection(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` back to back on one connection to ``key``'s master (WAIT
        only counts the writes of its own connection). Error replies are returned."""
        client = self._c()
        s = self.settings
        # WAIT blocks up to its own timeout before answering.
        read_timeout = s.redis_socket_timeout_seconds + s.redis_wait_timeout_ms / 1000
        if self.cluster_mode:
            node = client.get_node_from_key(key)
            conn = node.acquire_connection()
        else:
            assert self._pool is not None
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            results: list[Any] = []
            for _ in commands:
                try:
                    results.append(await conn.read_response(timeout=read_timeout))
                except rexc.ResponseError as exc:
                    results.append(exc)
            return results
        except BaseException:
            # Replies may still be in flight: never hand this connection to someone else.
            await asyncio.shield(conn.disconnect())
            raise
        finally:
            if self.cluster_mode:
                node.release(conn)
            else:
                assert self._pool is not None
                await self._pool.release(conn)

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run single-slot commands in one pipeline (per node on a cluster). A command
        ``("SCRIPT", script, keys, args)`` runs a script. Results in order."""
        if not commands:
            return []

        async def run() -> list[Any]:
            client = self._c()
            pipe = client.pipeline(transaction=False)
            for cmd in commands:
                if cmd[0] == "SCRIPT":
                    script, keys, args = cmd[1], cmd[2], cmd[3]
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                else:
                    pipe.execute_command(*cmd)
            results: list[Any] = list(await pipe.execute(raise_on_error=False))
            for i, res in enumerate(results):
                if isinstance(res, rexc.NoScriptError):
                    _, script, keys, args = commands[i]
                    results[i] = await self._eval_once(script, keys, args)
                elif isinstance(res, BaseException):
                    raise res
            return results

        return await self._retrying(run)

    # -- entities -----------------------------------------------------------------------

    def _entity_keys(self, ns: str, entity_type: str, entity_id: str) -> list[str]:
        """entity, index, expiry, sizes, bytes: the KEYS of the entity write scripts."""
        tag = self.keys.entity_tag(ns, entity_type, entity_id)
        return [self.keys.entity(tag, entity_id), *self._entity_shard_keys(tag)]

    def _entity_shard_keys(self, tag: str) -> list[str]:
        """index, expiry, sizes, bytes of one entity shard (the pruning scripts' KEYS)."""
        k = self.keys
        return [k.entity_index(tag), k.entity_expiry(tag), k.entity_sizes(tag), k.entity_bytes(tag)]

    async def _sadd(self, key: str, member: str) -> None:
        if self.settings.redis_wait_replicas > 0:
            await self._retrying(lambda: self._durable_sadd(key, member))
        else:
            await self._retrying(lambda: self._c().execute_command("SADD", key, member))

    async def _register_type(self, ns: str, entity_type: str) -> None:
        await self._register_namespace(ns)
        if (ns, entity_type) in self._known_types:
            return
        await self._sadd(self.keys.entity_types(ns), entity_type)
        if len(self._known_types) > 100_000:
            self._known_types.clear()
        self._known_types.add((ns, entity_type))

    async def _register_namespace(self, ns: str) -> None:
        """Add ``ns`` to the namespace registry before its first write from this process
        (like the type registry: a superset, so a failed write leaves a harmless entry)."""
        if ns in self._known_namespaces:
            return
        await self._sadd(self.keys.namespaces(), ns)
        if len(self._known_namespaces) > 100_000:
            self._known_namespaces.clear()
        self._known_namespaces.add(ns)

    async def _durable_sadd(self, key: str, member: str) -> None:
        s = self.settings
        res, acks = await self._on_one_connection(
            key, [("SADD", key, member), ("WAIT", s.redis_wait_replicas, s.redis_wait_timeout_ms)]
        )
        for r in (res, acks):
            if isinstance(r, BaseException):
                raise r
        if int(acks) < s.redis_wait_replicas:
            raise BackendUnavailableError(
                f"write acknowledged by {int(acks)} of {s.redis_wait_replicas} replicas",
                acknowledged_replicas=int(acks),
                required_replicas=s.redis_wait_replicas,
            )

    async def save_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        data: JSONObject,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
    ) -> EntityRecord:
        _announced.set(None)
        payload = orjson.dumps(data)
        await self._register_type(namespace, entity_type)
        now = time.time()
        expires_at = now + ttl if ttl is not None else None
        tag = self.keys.entity_tag(namespace, entity_type, entity_id)
        res = await self._write(
            scripts.SAVE_ENTITY,
            [self.keys.entity(tag, entity_id), *self._entity_shard_keys(tag)],
            [
                entity_id,
                payload,
                _f(now),
                _f(expires_at) if expires_at is not None else "",
                str(expected_version) if expected_version is not None else "",
                _op_id(),
                str(math.ceil(expires_at * 1000)) if expires_at is not None else "",
                *self._announce_args(namespace, entity_type, entity_id, tag),
            ],
        )
        if self.announce_writes:
            # published in the script; a conflict changed nothing and needs no message
            _announced.set(_cache_key(namespace, entity_type, entity_id))
        if _s(res[0]) == "conflict":
            current = int(res[1]) if res[1] else None
            raise ConflictError(
                f"expected version {expected_version}, found "
                f"{current if current is not None else 'none'}",
                expected_version=expected_version,
                current_version=current,
            )
        return EntityRecord(
            type=entity_type,
            id=entity_id,
            data=data,
            version=int(res[1]),
            created_at=float(res[2]),
            updated_at=float(res[3]),
            expires_at=float(res[4]) if res[4] else None,
        )

    @staticmethod
    def _entity_from(
        entity_type: str, entity_id: str, value: bytes | None, now: float
    ) -> EntityRecord | None:
        if value is None:
            return None
        data, version, created, updated, expires_at = _parse_entity(value)
        if expires_at is not None and expires_at <= now:
            return None
        return EntityRecord(
            type=entity_type,
            id=entity_id,
            data=orjson.loads(data),
            version=version,
            created_at=created,
            updated_at=updated,
            expires_at=expires_at,
        )

    def _entity_key(self, namespace: str, entity_type: str, entity_id: str) -> str:
        k = self.keys
        return k.entity(k.entity_tag(namespace, entity_type, entity_id), entity_id)

    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None:
        key = self._entity_key(namespace, entity_type, entity_id)
        value = await self._retrying(lambda: self._c().execute_command("GET", key))
        return self._entity_from(entity_type, entity_id, value, time.time())

    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        _announced.set(None)
        tag = self.keys.entity_tag(namespace, entity_type, entity_id)
        res = await self._write(
            scripts.DELETE_ENTITY,
            [
                self.keys.entity(tag, entity_id),
                *self._entity_shard_keys(tag),
                self.keys.entity_tombstone(tag, entity_id),
            ],
            [
                entity_id,
                _f(time.time()),
                str(expected_version) if expected_version is not None else "",
                _op_id(),
                *self._announce_args(namespace, entity_type, entity_id, tag),
            ],
        )
        if self.announce_writes:
            _announced.set(_cache_key(namespace, entity_type, entity_id))
        if _s(res[0]) == "conflict":
            current = int(res[1]) if res[1] else None
            raise ConflictError(
                f"expected version {expected_version}, found "
                f"{current if current is not None else 'none'}",
                expected_version=expected_version,
                current_version=current,
            )
        return _s(res[1]) == "1"

    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        after = decode_cursor(cursor, str)[0] if cursor else None
        lo = f"({after}" if after else "-"
        now = time.time()
        tags = self.keys.entity_tags(namespace, entity_type)
        shard_ids = await self._pipeline(
            [
                (
                    "SCRIPT",
                    scripts.LIST_ENTITY_IDS,
                    self._entity_shard_keys(t),
                    [_f(now), lo, limit + 1],
                )
                for t in tags
            ]
        )
        ids = sorted({_s(m) for ms in shard_ids for m in ms})[: limit + 1]
        page_ids = ids[:limit]
        rows = await self._pipeline(
            [("GET", self._entity_key(namespace, entity_type, i)) for i in page_ids]
        )
        items = [
            rec
            for i, row in zip(page_ids, rows, strict=True)
            if (rec := self._entity_from(entity_type, i, row, now)) is not None
        ]
        more = len(ids) > limit
        return Page(items, encode_cursor(page_ids[-1]) if more else None)

    async def _types_ever(self, namespace: str) -> list[str]:
        """The namespace's type registry (a superset of the types with live entities)."""
        key = self.keys.entity_types(namespace)
        members = await self._retrying(lambda: self._c().execute_command("SMEMBERS", key))
        return sorted(_s(t) for t in members)

    async def _entity_counts(self, namespace: str) -> dict[str, int]:
        types = await self._types_ever(namespace)
        now = _f(time.time())
        k = self.keys
        commands: list[tuple[Any, ...]] = [
            ("SCRIPT", scripts.COUNT_ENTITIES, self._entity_shard_keys(tag), [now])
            for t in types
            for tag in k.entity_tags(namespace, t)
        ]
        counts = await self._pipeline(commands)
        shards = k.shards
        out: dict[str, int] = {}
        for i, t in enumerate(types):
            total = sum(int(c) for c in counts[i * shards : (i + 1) * shards])
            if total > 0:
                out[t] = total
        return out

    async def get_entity_types(self, namespace: str) -> list[str]:
        return sorted(await self._entity_counts(namespace))

    # -- conversations ------------------------------------------------------------------

    def _conversation_keys(self, ns: str, conversation_id: str) -> list[str]:
        tag = self.keys.conversation_tag(ns, conversation_id)
        k = self.keys
        return [
            k.conversation_meta(tag, conversation_id),
            k.conversation_messages(tag, conversation_id),
            k.conversation_index(tag),
            k.conversation_counter(tag),
            k.conversation_bytes(tag),
        ]

    async def append_messages(
        self, namespace: str, conversation_id: str, messages: list[JSONObject]
    ) -> list[MessageRecord]:
        raws = [orjson.dumps(m) for m in messages]
        await self._register_namespace(namespace)
        now = time.time()
        first = int(
            await self._write(
                scripts.APPEND_MESSAGES,
                self._conversation_keys(namespace, conversation_id),
                [conversation_id, _f(now), _op_id(), *raws],
            )
        )
        return [MessageRecord(conversation_id, first + i, m, now) for i, m in enumerate(messages)]

    @staticmethod
    def _message_from(conversation_id: str, item: bytes) -> MessageRecord:
        seq, ts, raw = item.split(b"\n", 2)
        return MessageRecord(conversation_id, int(seq), orjson.loads(raw), float(ts))

    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        key = self._conversation_keys(namespace, conversation_id)[1]
        if before_seq is None:
            start = 0 if limit is None else -limit
            items = await self._retrying(
                lambda: self._c().execute_command("LRANGE", key, start, -1)
            )
        else:
            if before_seq <= 1:
                return []
            items = await self._eval(
                scripts.LOAD_MESSAGES_BEFORE,
                [key],
                [before_seq, limit if limit is not None else ""],
            )
        loads = orjson.loads
        out: list[MessageRecord] = []
        for item in items:  # inlined _message_from: this loop is the load's Python cost
            seq, ts, raw = item.split(b"\n", 2)
            out.append(MessageRecord(conversation_id, int(seq), loads(raw), float(ts)))
        return out

    async def replace_conversation(
        self, namespace: str, conversation_id: str, messages: list[JSONObject]
    ) -> list[MessageRecord]:
        raws = [orjson.dumps(m) for m in messages]
        await self._register_namespace(namespace)
        now = time.time()
        await self._write(
            scripts.REPLACE_CONVERSATION,
            self._conversation_keys(namespace, conversation_id),
            [conversation_id, _f(now), _op_id(), *raws],
        )
        return [MessageRecord(conversation_id, 1 + i, m, now) for i, m in enumerate(messages)]

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        res = await self._write(
            scripts.DELETE_CONVERSATION,
            self._conversation_keys(namespace, conversation_id),
            [conversation_id],
        )
        return int(res) == 1

    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        after = decode_cursor(cursor, str)[0] if cursor else None
        lo = f"({after}" if after else "-"
        k = self.keys
        shard_ids = await self._pipeline(
            [
                ("ZRANGEBYLEX", k.conversation_index(t), lo, "+", "LIMIT", 0, limit + 1)
                for t in k.conversation_tags(namespace)
            ]
        )
        ids = sorted({_s(m) for ms in shard_ids for m in ms})[: limit + 1]
        page_ids = ids[:limit]
        commands: list[tuple[Any, ...]] = []
        for cid in page_ids:
            meta, msgs = self._conversation_keys(namespace, cid)[:2]
            commands.append(("HMGET", meta, "c", "u"))
            commands.append(("LLEN", msgs))
        rows = await self._pipeline(commands)
        items: list[ConversationInfo] = []
        for i, cid in enumerate(page_ids):
            (created, updated), count = rows[2 * i], rows[2 * i + 1]
            if created is None:
                continue  # deleted since the index was read
            items.append(ConversationInfo(cid, int(count), float(created), float(updated)))
        more = len(ids) > limit
        return Page(items, encode_cursor(page_ids[-1]) if more else None)

    # -- tool usage ---------------------------------------------------------------------

    def _tool_cutoff(self, now: float) -> float | None:
        keep = self.settings.redis_tool_usage_retention_seconds
        return now - keep if keep > 0 else None

    async def record_tool_usage(self, namespace: str, record: ToolUsageRecord) -> ToolUsageRecord:
        tag = self.keys.tool_tag(namespace, record.id)
        k = self.keys
        size = len(orjson.dumps(record.input)) + len(orjson.dumps(record.output))
        # tool name, accounted bytes, record: the script reads the first two on trimming
        value = b"%s\n%d\n%s" % (record.tool_name.encode(), size, orjson.dumps(record.to_dict()))
        cutoff = self._tool_cutoff(time.time())
        await self._register_namespace(namespace)
        await self._write(
            scripts.RECORD_TOOL_USAGE,
            [
                k.tool_records(tag),
                k.tool_time(tag),
                k.tool_by_name(tag, record.tool_name),
                k.tool_counts(tag),
                k.tool_bytes(tag),
            ],
            [
                record.id,
                _f(record.timestamp),
                record.tool_name,
                value,
                _f(cutoff) if cutoff is not None else "",
                k.tool_by_name_prefix(tag),
                str(size),
            ],
        )
        return record

    async def _time_page(
        self,
        index_keys: list[str],
        record_keys: list[str],
        *,
        start: float | None,
        end: float | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[bytes | None], list[tuple[float, str]], bool]:
        """Merge one (timestamp, id)-ordered page out of per-shard time indexes.

        Returns the stored values of the page's candidates (None if gone), the candidates,
        and whether more follow."""
        lo_num = start if start is not None else -math.inf
        hi = f"({_f(end)}" if end is not None else "+inf"
        c_ts: float | None = None
        c_id = ""
        if cursor:
            c_ts, c_id = decode_cursor(cursor, float, str)
            c_ts = float(c_ts)
        commands: list[tuple[Any, ...]] = []
        for zkey in index_keys:
            if c_ts is not None:
                commands.append(("ZRANGEBYSCORE", zkey, _f(c_ts), _f(c_ts)))
                lo = f"({_f(c_ts)}" if c_ts >= lo_num else _f(lo_num)
            else:
                lo = _f(lo_num) if start is not None else "-inf"
            commands.append(("ZRANGEBYSCORE", zkey, lo, hi, "WITHSCORES", "LIMIT", 0, limit + 1))
        results = await self._pipeline(commands)
        cands: list[tuple[float, str, int]] = []
        pos = 0
        for shard in range(len(index_keys)):
            if c_ts is not None:
                same = results[pos]
                pos += 1
                in_range = c_ts >= lo_num and (end is None or c_ts < end)
                if in_range:
                    cands += [(c_ts, m, shard) for m in map(_s, same) if m > c_id]
            cands += [(score, m, shard) for m, score in _score_pairs(results[pos])]
            pos += 1
        cands.sort()
        cands = cands[: limit + 1]
        page = cands[:limit]
        values = await self._pipeline([("HGET", record_keys[sh], m) for _, m, sh in page])
        return values, [(ts, m) for ts, m, _ in page], len(cands) > limit

    async def query_tool_usage(
        self,
        namespace: str,
        *,
        tool_name: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[ToolUsageRecord]:
        k = self.keys
        tags = k.tool_tags(namespace)
        cutoff = self._tool_cutoff(time.time())
        if cutoff is not None:
            start = cutoff if start is None else max(start, cutoff)
        index = [k.tool_by_name(t, tool_name) if tool_name else k.tool_time(t) for t in tags]
        values, cands, more = await self._time_page(
            index,
            [k.tool_records(t) for t in tags],
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
        )
        items: list[ToolUsageRecord] = []
        for value in values:
            if value is None:
                continue
            # "tool\nbytes\nJSON" (older records: "tool\nJSON"; JSON has no raw newline)
            raw = value.split(b"\n", 2)[-1]
            items.append(ToolUsageRecord(**orjson.loads(raw)))
        nxt = encode_cursor(cands[-1][0], cands[-1][1]) if more else None
        return Page(items, nxt)

    def _tool_shard_commands(self, namespace: str, script: scripts.Script) -> list[tuple[Any, ...]]:
        """One trimming script per tool-usage shard (TOOL_COUNTS or TOOL_BYTES)."""
        k = self.keys
        cutoff = self._tool_cutoff(time.time())
        return [
            (
                "SCRIPT",
                script,
                [
                    k.tool_records(t),
                    k.tool_time(t),
                    k.tool_time(t),
                    k.tool_counts(t),
                    k.tool_bytes(t),
                ],
                [_f(cutoff) if cutoff is not None else "", k.tool_by_name_prefix(t)],
            )
            for t in k.tool_tags(namespace)
        ]

    async def _tool_counts(self, namespace: str) -> dict[str, int]:
        commands = self._tool_shard_commands(namespace, scripts.TOOL_COUNTS)
        out: dict[str, int] = {}
        for flat in await self._pipeline(commands):
            for j in range(0, len(flat), 2):
                n = int(flat[j + 1])
                if n > 0:
                    name = _s(flat[j])
                    out[name] = out.get(name, 0) + n
        return dict(sorted(out.items()))

    async def get_tool_names(self, namespace: str) -> list[str]:
        return sorted(await self._tool_counts(namespace))

    # -- feedback -----------------------------------------------------------------------

    async def save_feedback(self, namespace: str, record: FeedbackRecord) -> FeedbackRecord:
        tag = self.keys.feedback_tag(namespace, record.id)
        k = self.keys
        await self._register_namespace(namespace)
        await self._write(
            scripts.SAVE_FEEDBACK,
            [
                k.feedback_records(tag),
                k.feedback_time(tag),
                k.feedback_time(tag, agent=record.agent_name),
                k.feedback_time(tag, kind=record.feedback_type),
                k.feedback_time(tag, agent=record.agent_name, kind=record.feedback_type),
                k.feedback_bytes(tag),
            ],
            [
                record.id,
                _f(record.timestamp),
                orjson.dumps(record.to_dict()),
                str(len(orjson.dumps(record.data))),
            ],
        )
        return record

    async def query_feedback(
        self,
        namespace: str,
        *,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        k = self.keys
        tags = k.feedback_tags(namespace)
        values, cands, more = await self._time_page(
            [k.feedback_time(t, agent=agent_name, kind=feedback_type) for t in tags],
            [k.feedback_records(t) for t in tags],
            start=None,
            end=None,
            limit=limit,
            cursor=cursor,
        )
        items = [FeedbackRecord(**orjson.loads(v)) for v in values if v is not None]
        nxt = encode_cursor(cands[-1][0], cands[-1][1]) if more else None
        return Page(items, nxt)

    # -- summary ------------------------------------------------------------------------

    async def summary(self, namespace: str) -> MemorySummary:
        k = self.keys
        entity_counts, tool_counts = await asyncio.gather(
            self._entity_counts(namespace), self._tool_counts(namespace)
        )
        conv_tags = k.conversation_tags(namespace)
        fb_tags = k.feedback_tags(namespace)
        commands: list[tuple[Any, ...]] = []
        for t in conv_tags:
            commands.append(("ZCARD", k.conversation_index(t)))
            commands.append(("GET", k.conversation_counter(t)))
        commands += [("ZCARD", k.feedback_time(t)) for t in fb_tags]
        res = await self._pipeline(commands)
        n = len(conv_tags)
        conversations = sum(int(res[2 * i]) for i in range(n))
        messages = sum(int(res[2 * i + 1] or 0) for i in range(n))
        feedback = sum(int(x) for x in res[2 * n :])
        return MemorySummary(
            namespace=namespace,
            entity_counts=entity_counts,
            conversations=conversations,
            messages=messages,
            tool_usage_counts=tool_counts,
            feedback_count=feedback,
        )

    # -- optional usage hooks (quotas, cross-namespace summary) -------------------------

    async def stored_bytes(self, namespace: str) -> int | None:
        """Sum of the per-shard byte counters the write scripts keep (after pruning expired
        entities and trimming tool usage past retention, as the counts do)."""
        k = self.keys
        now = _f(time.time())
        commands: list[tuple[Any, ...]] = [
            ("SCRIPT", scripts.ENTITY_BYTES, self._entity_shard_keys(tag), [now])
            for t in await self._types_ever(namespace)
            for tag in k.entity_tags(namespace, t)
        ]
        commands += [("GET", k.conversation_bytes(t)) for t in k.conversation_tags(namespace)]
        commands += self._tool_shard_commands(namespace, scripts.TOOL_BYTES)
        commands += [("GET", k.feedback_bytes(t)) for t in k.feedback_tags(namespace)]
        return sum(int(r or 0) for r in await self._pipeline(commands))

    async def list_namespaces(self) -> list[str] | None:
        """The namespace registry, minus namespaces without live data (all deleted or
        expired). One pipelined probe per shard per namespace: an admin-route cost."""
        key = self.keys.namespaces()
        registered = sorted(
            _s(n) for n in await self._retrying(lambda: self._c().execute_command("SMEMBERS", key))
        )
        if not registered:
            return []
        k = self.keys
        type_sets = await self._pipeline([("SMEMBERS", k.entity_types(n)) for n in registered])
        now = _f(time.time())
        commands: list[tuple[Any, ...]] = []
        owners: list[str] = []
        for ns, types in zip(registered, type_sets, strict=True):
            probes: list[tuple[Any, ...]] = [
                ("SCRIPT", scripts.COUNT_ENTITIES, self._entity_shard_keys(tag), [now])
                for t in sorted(_s(x) for x in types)
                for tag in k.entity_tags(ns, t)
            ]
            probes += [("ZCARD", k.conversation_index(t)) for t in k.conversation_tags(ns)]
            probes += [("HLEN", k.tool_records(t)) for t in k.tool_tags(ns)]
            probes += [("ZCARD", k.feedback_time(t)) for t in k.feedback_tags(ns)]
            commands += probes
            owners += [ns] * len(probes)
        live = {ns for ns, n in zip(owners, await self._pipeline(commands), strict=True) if int(n)}
        return [ns for ns in registered if ns in live]

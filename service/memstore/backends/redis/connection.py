"""``RedisConnection``: the one redis-py client of a process and how commands are sent.

Shared by the backend (data commands) and the invalidation bus (publish, topology for
subscribing), so the bus needs nothing of the backend's own.

* One client per process (``Redis`` with a connection pool, or ``RedisCluster``), built in
  ``open`` and closed in ``close``. Library retries are off; ``retrying`` retries
  connection loss, timeouts and cluster re-routing itself, with jittered exponential
  backoff, refreshing the cluster topology between attempts.
* Durable mode (``MEMSTORE_REDIS_WAIT_REPLICAS`` > 0) sends a write and ``WAIT`` on the
  same connection to the slot's master and raises ``BackendUnavailableError`` when fewer
  replicas acknowledge in time (the write may still have been applied there).
* Multi-shard reads are one pipeline of single-slot commands (``pipeline``).
* Reads of one key (``read``) are grouped (``CallGroups``, as the embedded backend groups
  its reads): one made when no read is out is sent at once, alone; those made while one
  is out wait and then go together as one pipeline (up to ``_MAX_READS``), so concurrent
  readers share a connection checkout and a round trip instead of paying one each. Each
  read still gets its own reply or error, and is sent after every write acknowledged
  before it was made. A read whose reply may be long (``grouped=False``: a conversation's
  whole history) goes on its own, so that the reads made meanwhile do not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import hiredis
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from memstore.backends.common import ErrorTranslation
from memstore.backends.grouping import CallGroups
from memstore.backends.redis.scripts import Script
from memstore.core.errors import BackendUnavailableError, ConfigurationError, MemoryStoreError
from redis import exceptions as rexc

if TYPE_CHECKING:
    from memstore.core.settings import RedisSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The most reads one pipeline of grouped reads takes (``RedisConnection.read``).
_MAX_READS = 64

# Errors that mean "try again, maybe elsewhere": connection loss, timeouts, failover in
# progress, slot moved. Authentication failures are ConnectionError subclasses but final.
RETRYABLE: tuple[type[Exception], ...] = (
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
FINAL: tuple[type[Exception], ...] = (
    rexc.AuthenticationError,
    rexc.AuthorizationError,
    rexc.CrossSlotTransactionError,
)

#: redis-py's exceptions that reach the caller (after retries) -> the project's.
DRIVER_ERRORS = ErrorTranslation(
    [
        # Redis's own text ("invalid username-password pair or user is disabled.", the
        # NOPERM reason) says what to fix; it never repeats the credentials.
        (
            FINAL,
            lambda exc, _op: BackendUnavailableError(
                f"Redis refused: {type(exc).__name__}: {str(exc)[:200]}"
            ),
        ),
        (
            (rexc.RedisError, OSError),
            lambda exc, _op: BackendUnavailableError(
                f"Redis error: {type(exc).__name__}: {str(exc)[:200]}"
            ),
        ),
    ]
)


class _CommandConnectionBase(Connection):
    """How this process's command connections pack and send, through redis-py's
    ``connection_class`` option; everything else is redis-py's ``Connection``.

    * Packing: hiredis's C packer, which redis-py's synchronous client already uses when
      hiredis is installed (its asyncio client packs in Python: ~8 µs for a write script's
      ~15 arguments, against ~2), for what hiredis takes (``str``, ``bytes``, exact
      ``int``, ``float``): the same bytes as redis-py's packer. Anything else (an ``int``
      subclass, a ``bytearray``, a value redis-py refuses) goes through redis-py's own
      packer, so its bytes and its ``DataError`` are redis-py's.
    * Sending: on Python 3.11 ``asyncio.wait_for``, which redis-py wraps around every
      write when a socket timeout is set, creates a Task and a timer per command (~10 µs
      of a ~50 µs command). A write the socket takes whole returns without waiting, so the
      timeout can only matter when bytes are left over; then redis-py's own path drains
      them, with its timeout and its errors (also for a connection closing under us).
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args
        if isinstance(command[0], str):
            command = tuple(command[0].encode().split()) + command[1:]
        elif b" " in command[0]:
            command = tuple(command[0].split()) + command[1:]
        try:
            return [hiredis.pack_command(command)]
        except TypeError:
            return super().pack_command(*args)

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected or isinstance(command, (bytes, str)):
            await super().send_packed_command(command, check_health)
            return
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        writer = self._writer
        if (
            writer is None
            or writer.transport.is_closing()
            or writer.transport.get_write_buffer_size()
        ):
            await super().send_packed_command(command, check_health=False)
            return
        writer.writelines(command)
        if writer.transport.is_closing() or writer.transport.get_write_buffer_size():
            await super().send_packed_command((), check_health=False)


class CommandConnection(_CommandConnectionBase):
    """A plain TCP command connection (see ``_CommandConnectionBase``)."""


class SSLCommandConnection(_CommandConnectionBase, SSLConnection):
    """A TLS command connection (see ``_CommandConnectionBase``)."""


def parse_nodes(spec: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (an optional ``redis+cluster://`` scheme is accepted;
    ``rediss://`` / ``rediss+cluster://`` also turn TLS on, see ``RedisSettings``)."""
    spec = spec.strip()
    for scheme in (
        "redis+cluster://",
        "redis-cluster://",
        "redis://",
        "rediss+cluster://",
        "rediss-cluster://",
        "rediss://",
    ):
        if spec.lower().startswith(scheme):
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


class RedisConnection:
    """The client, the retry policy and the cluster topology of one process."""

    def __init__(self, settings: RedisSettings, *, on_retry: Callable[[], None]) -> None:
        self.settings = settings
        self.cluster_mode = bool(settings.redis_cluster_nodes.strip())
        self.nodes = parse_nodes(settings.redis_cluster_nodes) if self.cluster_mode else []
        #: called before each retry (the backend forgets what a failover may have lost)
        self._on_retry = on_retry
        self._client: Any = None
        self._pool: ConnectionPool | None = None
        # redis-py's cluster client raises MaxConnectionsError instead of waiting when a
        # node's pool is exhausted; bounding in-flight calls per process keeps every node's
        # pool within MEMSTORE_REDIS_POOL_SIZE. Standalone: the same bound keeps a plain
        # pool within its size, so it needs no BlockingConnectionPool (whose condition
        # variable and timeout cost ~10% of a cache-miss GET's CPU). Every command,
        # ``ping`` included, runs under this semaphore.
        self._inflight = asyncio.Semaphore(settings.redis_pool_size)
        self._topology_lock = asyncio.Lock()
        self._topology_epoch = 0
        # grouped reads (``read``, module docstring)
        self._reads = CallGroups(self._read_alone, self._read_group, max_group=_MAX_READS)

    # -- lifecycle --------------------------------------------------------------------

    def connection_kwargs(self) -> dict[str, Any]:
        """What every connection of the process is opened with (the pool's, the cluster
        client's, the invalidation subscriber's): credentials, timeouts and, with TLS,
        redis-py's ``SSLConnection`` and its ``ssl_*`` options."""
        s = self.settings
        kwargs: dict[str, Any] = {
            "username": s.redis_username,
            "password": s.redis_password.get_secret_value() if s.redis_password else None,
            "socket_timeout": s.redis_socket_timeout_seconds,
            "socket_connect_timeout": s.redis_connect_timeout_seconds,
            "socket_keepalive": True,
            "client_name": "memstore",
            "decode_responses": False,
            "protocol": 3,
            "connection_class": CommandConnection,
        }
        if s.redis_tls_enabled:
            kwargs.update(self.tls_kwargs())
        return kwargs

    def tls_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "connection_class": SSLCommandConnection,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": s.redis_tls_verify_hostname,
            "ssl_ca_certs": str(s.redis_tls_ca_file) if s.redis_tls_ca_file else None,
            "ssl_certfile": str(s.redis_tls_cert_file) if s.redis_tls_cert_file else None,
            "ssl_keyfile": str(s.redis_tls_key_file) if s.redis_tls_key_file else None,
        }

    def check_tls_files(self) -> None:
        """Load the CA and the client certificate once before connecting, so a file that
        is not PEM (or a key that does not match its certificate) is a start-up error
        naming the setting, not a connection failure retried until it times out."""
        s = self.settings
        if not s.redis_tls_enabled:
            return
        context = ssl.create_default_context()
        if s.redis_tls_ca_file is not None:
            try:
                context.load_verify_locations(cafile=str(s.redis_tls_ca_file))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigurationError(
                    f"MEMSTORE_REDIS_TLS_CA_FILE: cannot load a CA bundle: {exc}"
                ) from None
        if s.redis_tls_cert_file is not None and s.redis_tls_key_file is not None:
            try:
                context.load_cert_chain(str(s.redis_tls_cert_file), str(s.redis_tls_key_file))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigurationError(
                    "MEMSTORE_REDIS_TLS_CERT_FILE / MEMSTORE_REDIS_TLS_KEY_FILE: cannot load "
                    f"the client certificate and key: {exc}"
                ) from None

    async def open(self) -> None:
        s = self.settings
        self.check_tls_files()
        kwargs = self.connection_kwargs()
        try:
            if self.cluster_mode:
                # The cluster client takes ssl=True and no connection class: it opens
                # the nodes it discovers with the options in its ``connection_kwargs``
                # (the dict its own maintenance notifications update), so the class
                # goes there, before the first discovery.
                cluster_kwargs = dict(kwargs)
                connection_class = cluster_kwargs.pop("connection_class")
                cluster_kwargs["ssl"] = s.redis_tls_enabled
                client = RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in self.nodes],
                    require_full_coverage=False,
                    max_connections=s.redis_pool_size,
                    retry=Retry(NoBackoff(), 0),
                    **cluster_kwargs,
                )
                client.nodes_manager.connection_kwargs["connection_class"] = connection_class
                self._client = client
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
            await self.retrying(lambda: self._client.execute_command("PING"))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
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
                await asyncio.wait_for(self.refresh_topology(), timeout=timeout)
            return False

    @property
    def client(self) -> Any:
        """The redis-py client (``Redis`` or ``RedisCluster``)."""
        if self._client is None:
            raise BackendUnavailableError("Redis backend is not connected")
        return self._client

    # -- retries and topology -----------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        s = self.settings
        ceiling = min(
            s.redis_retry_backoff_cap_seconds, s.redis_retry_backoff_base_seconds * 2**attempt
        )
        return random.uniform(ceiling / 2, ceiling)

    async def refresh_topology(self) -> None:
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

    async def retrying(self, call: Callable[[], Awaitable[T]], *, bounded: bool = True) -> T:
        """Run ``call``, retrying transient failures; map driver errors to ours.
        ``bounded=False``: ``call`` takes its ``_inflight`` slot itself, only around what
        uses a connection (a grouped read waiting for its group uses none)."""
        attempt = 0
        with DRIVER_ERRORS("command"):
            while True:
                try:
                    async with self._inflight if bounded else contextlib.nullcontext():
                        try:
                            return await call()
                        except AttributeError as exc:
                            # redis-py's cluster client closes every connection, in use or
                            # not, when it sees CLUSTERDOWN; a coroutine mid-command then
                            # finds its socket writer gone ("'NoneType' object has no
                            # attribute ..."). That is a lost connection: retry it as one.
                            if "NoneType" not in str(exc):
                                raise
                            raise rexc.ConnectionError(
                                "connection closed under the command"
                            ) from exc
                except RETRYABLE as exc:
                    if isinstance(exc, FINAL):
                        raise
                    self._on_retry()
                    if attempt >= self.settings.redis_retries:
                        raise BackendUnavailableError(
                            f"Redis unavailable after {attempt + 1} attempts: "
                            f"{type(exc).__name__}: {str(exc)[:200]}"
                        ) from exc
                    await asyncio.sleep(self.backoff(attempt))
                    await self.refresh_topology()
                    attempt += 1

    async def execute(self, *args: Any) -> Any:
        """One command, retried."""
        return await self.retrying(lambda: self.client.execute_command(*args))

    # -- scripts, durable writes, pipelines ---------------------------------------------

    async def eval_once(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        client = self.client
        try:
            return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            return await client.execute_command("EVAL", script.source, len(keys), *keys, *args)

    async def eval(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return await self.retrying(lambda: self.eval_once(script, keys, args))

    async def write(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """A write script; in durable mode followed by WAIT on the same connection."""
        if self.settings.redis_wait_replicas <= 0:
            return await self.eval(script, keys, args)
        command = ("EVAL", script.source, len(keys), *keys, *args)
        return await self.retrying(lambda: self._durable_once(keys[0], command))

    async def add_to_set(self, key: str, member: str) -> None:
        """SADD, durable like the write scripts."""
        if self.settings.redis_wait_replicas > 0:
            await self.retrying(lambda: self._durable_once(key, ("SADD", key, member)))
        else:
            await self.execute("SADD", key, member)

    async def _durable_once(self, key: str, command: tuple[Any, ...]) -> Any:
        s = self.settings
        result, acks = await self._on_one_connection(
            key, [command, ("WAIT", s.redis_wait_replicas, s.redis_wait_timeout_ms)]
        )
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
        client = self.client
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

    async def _pipelined(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """One pipeline of single-slot commands (per node on a cluster), not retried: the
        replies in order, an error reply as its exception; a lost connection raises. A
        command ``("SCRIPT", script, keys, args)`` runs a script."""
        commands = list(commands)
        pipe = self.client.pipeline(transaction=False)
        for cmd in commands:
            if cmd[0] == "SCRIPT":
                script, keys, args = cmd[1], cmd[2], cmd[3]
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            else:
                pipe.execute_command(*cmd)
        results: list[Any] = list(await pipe.execute(raise_on_error=False))
        # A node that does not hold a script yet (first use, restart, failover): those
        # scripts again with their source, in one more pipeline (not one call each).
        missing = [i for i, res in enumerate(results) if isinstance(res, rexc.NoScriptError)]
        if missing:
            again = self.client.pipeline(transaction=False)
            for i in missing:
                _, script, keys, args = commands[i]
                again.execute_command("EVAL", script.source, len(keys), *keys, *args)
            for i, res in zip(missing, await again.execute(raise_on_error=False), strict=True):
                results[i] = res
        return results

    async def read(self, *command: Any, grouped: bool = True) -> Any:
        """One read of one key (a command, or ``"SCRIPT", script, keys, args``), retried,
        grouped with the reads made while one is out (module docstring). ``grouped=False``:
        a read whose reply may be long (a conversation's whole history) goes on its own:
        the reads made while it is out do not wait for it, as they would for a grouped one
        (tens of milliseconds for 20,000 messages)."""
        send = self._reads if grouped else self._read_alone
        return await self.retrying(lambda: send(command), bounded=False)

    async def _read_alone(self, command: tuple[Any, ...]) -> Any:
        async with self._inflight:
            if command[0] == "SCRIPT":
                return await self.eval_once(command[1], command[2], command[3])
            return await self.client.execute_command(*command)

    async def _read_group(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline of reads: each one's reply, or its error as an exception."""
        try:
            async with self._inflight:
                return await self._pipelined(commands)
        except Exception:
            if not self.cluster_mode or len(commands) == 1:
                raise
            # One pipeline spans the group's nodes and fails whole when one of them cannot
            # be reached (a node's error replies come back per command): each read again
            # on its own, so only that node's reads fail (and are retried by their
            # callers).
            return await asyncio.gather(
                *(self._read_alone(command) for command in commands), return_exceptions=True
            )

    async def pipeline(self, commands: list[tuple[Any, ...]], *, batch: bool = False) -> list[Any]:
        """Run single-slot commands in one pipeline (per node on a cluster). A command
        ``("SCRIPT", script, keys, args)`` runs a script. Results in order. ``batch``: the
        commands are the items of a batch write, and an error that is not retried names
        the first that failed (``item``) and those that ran (``written``)."""
        if not commands:
            return []

        async def run() -> list[Any]:
            results = await self._pipelined(commands)
            failed = [i for i, res in enumerate(results) if isinstance(res, BaseException)]
            if failed:
                error = results[failed[0]]
                if not batch or (isinstance(error, RETRYABLE) and not isinstance(error, FINAL)):
                    raise error  # a transient failure: the whole pipeline again
                # The other commands ran, each atomic by itself (a script that fails on one
                # node, out of memory, leaves the other nodes' written): the error says
                # which failed first and which were written, as a batch's conflict does.
                written = [i for i, res in enumerate(results) if not isinstance(res, BaseException)]
                try:
                    with DRIVER_ERRORS("batch write"):
                        raise error
                except MemoryStoreError as mapped:
                    mapped.details.update(item=failed[0], written=written)
                    raise
            return results

        return await self.retrying(run)

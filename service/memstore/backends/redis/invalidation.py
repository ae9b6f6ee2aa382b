"""Cross-replica cache invalidation over Redis pub/sub.

* Standalone: one classic channel ``<prefix>inv`` (PUBLISH / SUBSCRIBE).
* Cluster: one sharded channel per slot (SPUBLISH / SSUBSCRIBE), 16384 in all
  (``Keys.invalidation_slot_channel``). The entity write scripts publish on the channel
  of their own slot in the same atomic step as the write (a script may only touch its
  own slot), so invalidation traffic follows the data over the masters. A subscriber
  holds one connection per master and subscribes to the channels of that master's
  slots, pipelined (one SSUBSCRIBE per slot: no CROSSSLOT). Cost: 16384 subscriptions
  per replica (~0.1-0.2 KB each on the masters).
* Messages are ``<instance id>\\n<cache key>``; a replica ignores its own messages.
  ``announcement`` gives the write scripts the channel and message to publish.
* ``publish`` is only the fallback for writes whose script did not report back (error,
  timeout): the backend skips it when the write script already published the same key.
* The bus sends through the process's ``RedisConnection`` (retries, cluster topology),
  which the backend hands to its constructor with the key layout and the instance id.
* The subscriber owns its connections (no library auto-reconnect, which would hide a gap).
  It PINGs every ``MEMSTORE_REDIS_PUBSUB_HEALTH_SECONDS``; a missed PONG, a closed socket,
  or a server-side unsubscribe (slot moved, failover) counts as a drop. On a drop the
  callback gets ``None`` (flush everything), the subscriber reconnects with backoff, and
  once subscribed again calls ``None`` once more: anything cached during the gap is gone.
* ``stop`` does not rely on its cancel arriving (redis-py can lose one, see ``stop``):
  the subscriber also checks a closed flag after every await and its pump waits on a
  closing event, so ``close()`` returns with the task, its readers and sockets gone.
* Publishing never raises: the write it follows has already happened, and the manager's
  cache TTL bounds how stale another replica can be if a message is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from memstore.backends.base import InvalidationCallback
from memstore.backends.redis.connection import RedisConnection
from memstore.backends.redis.keys import SLOTS, Keys, key_slot
from redis import exceptions as rexc

log = logging.getLogger(__name__)

ERRORS = (rexc.RedisError, rexc.RedisClusterException, OSError, asyncio.TimeoutError)


class InvalidationBus:
    def __init__(self, connection: RedisConnection, keys: Keys, instance_id: str) -> None:
        self._redis = connection
        self._kwargs = connection.connection_kwargs()
        self._kwargs["retry"] = Retry(NoBackoff(), 0)
        # RESP2: subscription replies and messages arrive as ordinary replies that this
        # module reads itself (RESP3 would route them to redis-py's push handler).
        self._kwargs["protocol"] = 2
        # Named so an operator (or a test) can find and kill exactly this subscription.
        self.client_name = f"memstore-inv-{instance_id[:12]}"
        self._kwargs["client_name"] = self.client_name
        # SSLConnection with TLS (the same ssl_* options as the command connections).
        self._connection_class: type[Connection] = self._kwargs.pop("connection_class", Connection)
        self._cluster = connection.cluster_mode
        self._keys = keys
        self._channel = keys.invalidation_channel()
        self._me = instance_id.encode()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._closing = asyncio.Event()
        #: set while every channel is subscribed; tests and readiness can wait on it
        self.subscribed = asyncio.Event()
        #: number of times the subscription was lost (observability, tests)
        self.drops = 0
        self.publish_failures = 0

    # -- publishing ---------------------------------------------------------------------

    def message(self, key: str) -> bytes:
        return self._me + b"\n" + key.encode()

    def announcement(self, key: str, slot_tag: str) -> list[Any]:
        """What a write script on ``slot_tag``'s slot publishes for ``key``: the command
        (PUBLISH on standalone, SPUBLISH on a cluster: a script may only touch its own
        slot, so the channel is that slot's), the channel and the message."""
        if self._cluster:
            channel = self._keys.invalidation_slot_channel(key_slot(slot_tag))
            return ["SPUBLISH", channel, self.message(key)]
        return ["PUBLISH", self._channel, self.message(key)]

    async def publish(self, key: str) -> None:
        channel = (
            self._keys.invalidation_slot_channel(key_slot(key)) if self._cluster else self._channel
        )
        payload = self.message(key)
        connection = self._redis

        async def send() -> Any:
            client = connection.client
            if self._cluster:
                node = client.get_node_from_key(channel)
                return await client.execute_command("SPUBLISH", channel, payload, target_nodes=node)
            return await client.execute_command("PUBLISH", channel, payload)

        try:
            await connection.retrying(send)
        except Exception:
            self.publish_failures += 1
            log.warning("cache invalidation not published; other replicas rely on cache TTL")

    # -- subscribing --------------------------------------------------------------------

    async def start(self, callback: InvalidationCallback) -> None:
        if self._task is not None:
            raise RuntimeError("invalidations are already subscribed")
        self._task = asyncio.create_task(self._run(callback), name="memstore-redis-invalidation")

    async def stop(self) -> None:
        # Cancelling is the fast path, not the guarantee: a cancel can be lost inside
        # redis-py (on Python 3.11 its sends go through ``asyncio.wait_for``, which
        # returns the result instead of raising when the cancel lands in the same loop
        # turn as the send completes). So the subscriber also stops on ``_closed`` and
        # ``_closing``, which it checks after every await. ``asyncio.wait`` rather than
        # ``await task``: a cancellation of our caller must reach our caller, not be
        # taken for the subscriber's own and suppressed.
        self._closed = True
        self._closing.set()
        task = self._task
        if task is None:
            return
        task.cancel()
        if task.get_loop() is not asyncio.get_running_loop():
            # Waiting here for a task of a loop that is not running would never end; it
            # stops by itself when its loop runs again, or a stop() there waits for it.
            raise RuntimeError(
                "the Redis invalidation subscriber runs on another event loop: "
                "close the manager on the loop that started it"
            )
        self._task = None
        await asyncio.wait([task])
        if not task.cancelled():
            task.result()

    async def _flush(self, callback: InvalidationCallback) -> None:
        try:
            await callback(None)
        except Exception:
            log.exception("cache flush callback failed")

    async def _run(self, callback: InvalidationCallback) -> None:
        attempt = 0
        while not self._closed:
            conns: list[Connection] = []
            try:
                conns = await self._subscribe()
                if self._closed:
                    return  # stopped while subscribing (the finally below disconnects)
                attempt = 0
                await self._flush(callback)
                self.subscribed.set()
                await self._pump(conns, callback)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cache invalidation channel lost: %s", type(exc).__name__)
            finally:
                self.subscribed.clear()
                for conn in conns:
                    with contextlib.suppress(*ERRORS):
                        await conn.disconnect()
            if self._closed:
                return
            self.drops += 1
            await self._flush(callback)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._redis.backoff(attempt)):
                    await self._closing.wait()
            if self._closed:
                return
            attempt = min(attempt + 1, 10)
            await self._redis.refresh_topology()

    def _connection(self, host: str, port: int, db: int) -> Connection:
        return self._connection_class(host=host, port=port, db=db, **self._kwargs)

    async def _subscribe(self) -> list[Connection]:
        s = self._redis.settings
        if not self._cluster:
            conn = self._connection(s.redis_host, s.redis_port, s.redis_db)
            await conn.connect()  # type: ignore[no-untyped-call]
            await conn.send_command("SUBSCRIBE", self._channel)
            await self._expect(conn, b"subscribe")
            return [conn]
        client = self._redis.client
        await client.initialize()
        by_node: dict[str, tuple[Any, list[str]]] = {}
        manager = client.nodes_manager
        for slot in range(SLOTS):
            node = manager.get_node_from_slot(slot)
            channel = self._keys.invalidation_slot_channel(slot)
            by_node.setdefault(node.name, (node, []))[1].append(channel)
        conns: list[Connection] = []
        try:
            for node, channels in by_node.values():
                conn = self._connection(node.host, node.port, 0)
                conns.append(conn)
                await conn.connect()  # type: ignore[no-untyped-call]
                # one SSUBSCRIBE per slot (no CROSSSLOT), sent as one pipeline
                await conn.send_packed_command(
                    conn.pack_commands([("SSUBSCRIBE", ch) for ch in channels])
                )
                for _ in channels:
                    await self._expect(conn, b"ssubscribe")
        except BaseException:
            for conn in conns:
                with contextlib.suppress(*ERRORS):
                    await conn.disconnect()
            raise
        return conns

    async def _expect(self, conn: Connection, kind: bytes) -> None:
        reply = await conn.read_response()
        if not isinstance(reply, list) or not reply or reply[0] != kind:
            raise rexc.ConnectionError("unexpected reply while subscribing")

    async def _pump(self, conns: list[Connection], callback: InvalidationCallback) -> None:
        tasks = [asyncio.create_task(self._read(c, callback)) for c in conns]
        closing = asyncio.create_task(self._closing.wait())
        try:
            done, _ = await asyncio.wait([*tasks, closing], return_when=asyncio.FIRST_COMPLETED)
            if self._closed:
                return
            for task in done:
                task.result()  # re-raise the reason the channel dropped
            raise rexc.ConnectionError("invalidation reader stopped")
        finally:
            for task in (*tasks, closing):
                task.cancel()
            for task in (*tasks, closing):
                with contextlib.suppress(asyncio.CancelledError, *ERRORS):
                    await task

    async def _read(self, conn: Connection, callback: InvalidationCallback) -> None:
        health = self._redis.settings.redis_pubsub_health_seconds
        waiting_pong = False
        while not self._closed:
            msg = await conn.read_response(timeout=health)
            if msg is None:
                if waiting_pong:
                    raise rexc.TimeoutError("no PONG on the invalidation channel")
                await conn.send_command("PING")
                waiting_pong = True
                continue
            if not isinstance(msg, list) or not msg:
                continue
            kind = msg[0]
            if kind in (b"message", b"smessage"):
                sender, _, key = bytes(msg[2]).partition(b"\n")
                if sender != self._me:
                    try:
                        await callback(key.decode())
                    except Exception:
                        log.exception("cache invalidation callback failed")
            elif kind == b"pong":
                waiting_pong = False
            elif kind in (b"unsubscribe", b"sunsubscribe"):
                # the server dropped our subscription (slot migrated or node demoted)
                raise rexc.ConnectionError("invalidation channel unsubscribed by the server")

"""The command connections' own packing and sending (``backends/redis/connection.py``,
``CommandConnection``): the same bytes and errors as redis-py, used by every connection
that sends commands (standalone, Cluster, TLS), large writes intact, and the socket
timeout still cutting a write the server does not read."""

from __future__ import annotations

import enum
import signal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.connection import Connection

from memstore.backends.redis import RedisMemoryBackend
from memstore.backends.redis.connection import (
    CommandConnection,
    RedisConnection,
    SSLCommandConnection,
)
from memstore.core.errors import BackendUnavailableError
from memstore.core.settings import Settings
from redis import exceptions as rexc
from tests.servers.redis import LocalRedis, unique_prefix


class Level(enum.IntEnum):
    HIGH = 3


COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "k"),
    ("SET", "k", "é∂ unicode", "PX", 1500),
    ("CONFIG GET", "maxmemory"),  # redis-py splits a command name given with its words
    (b"CLIENT LIST",),
    ("HSET", b"h", b"\x00\xff", 0, -1, 2**70, 0.1, 1e20, -0.0, 1.5e-7, float("inf")),
    ("SET", "k", memoryview(b"a view")),
    ("SET", "k", bytearray(b"an array")),
    ("SET", "k", b"x" * 100_000),  # above redis-py's 6,000-byte chunking cutoff
    ("SET", "k", Level.HIGH),  # an int subclass: hiredis refuses it, redis-py packs it
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packing_is_byte_for_byte_redis_pys(command: tuple[Any, ...]) -> None:
    ours = b"".join(CommandConnection().pack_command(*command))
    theirs = b"".join(bytes(part) for part in Connection().pack_command(*command))
    assert ours == theirs


@pytest.mark.parametrize("value", [None, True, object()], ids=["None", "bool", "object"])
def test_values_redis_py_refuses_are_refused_alike(value: object) -> None:
    with pytest.raises(rexc.DataError):
        Connection().pack_command("SET", "k", value)  # type: ignore[arg-type]
    with pytest.raises(rexc.DataError):
        CommandConnection().pack_command("SET", "k", value)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("redis_settings", CommandConnection),
        ("redis_cluster_settings", CommandConnection),
        ("redis_tls_settings", SSLCommandConnection),
        ("redis_tls_cluster_settings", SSLCommandConnection),
    ],
)
async def test_every_command_goes_through_the_command_connection(
    fixture: str, expected: type[Connection], request: pytest.FixtureRequest
) -> None:
    settings: Settings = request.getfixturevalue(fixture)
    backend = RedisMemoryBackend(settings)
    await backend.connect()
    try:
        await backend.save_entity("ns", "t", "e1", {"a": 1})
        assert (await backend.load_entity("ns", "t", "e1")) is not None
        client = backend.connection.client
        if backend.connection.cluster_mode:
            # the nodes found by discovery: where every data command goes
            classes = {node.connection_class for node in client.get_nodes()}
        else:
            classes = {client.connection_pool.connection_class}
        assert classes == {expected}
    finally:
        await backend.close()


async def test_large_values_cross_intact(any_redis_settings: Settings) -> None:
    """Values far larger than a socket buffer: the part the socket does not take at once
    is drained on redis-py's path."""
    connection = RedisConnection(any_redis_settings, on_retry=lambda: None)
    await connection.open()
    try:
        key = f"{any_redis_settings.redis_prefix}large"
        value = bytes(range(256)) * (48 * 1024)  # 12 MiB
        await connection.execute("SET", key, value)
        assert await connection.execute("GET", key) == value
        await connection.execute("DEL", key)
    finally:
        await connection.close()


async def test_a_write_the_server_does_not_read_is_cut_by_the_socket_timeout(
    tmp_path: Path,
) -> None:
    """A stopped server stops reading: a write larger than the socket buffers must fail
    as a write timeout after MEMSTORE_REDIS_SOCKET_TIMEOUT_SECONDS, as redis-py's own
    path does, not wait for ever (or only fail later, reading)."""
    server = LocalRedis(tmp_path)
    settings = Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=server.port,
        redis_prefix=unique_prefix(),
        redis_socket_timeout_seconds=1.0,
        redis_retries=0,
    )
    connection = RedisConnection(settings, on_retry=lambda: None)
    await connection.open()
    try:
        server.proc.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(BackendUnavailableError, match="Timeout writing to socket"):
                # larger than what the kernel's socket buffers hold for a stopped reader
                await connection.execute("SET", "big", b"x" * (32 * 1024 * 1024))
        finally:
            server.proc.send_signal(signal.SIGCONT)
        # the connection that timed out was dropped; the next command opens a fresh one
        assert await connection.execute("PING") in (True, b"PONG", "PONG")
    finally:
        await connection.close()
        server.stop()

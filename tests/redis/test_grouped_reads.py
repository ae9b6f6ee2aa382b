"""Grouped reads on Redis (``RedisConnection.read``): reads made while one is out go
together as one pipeline, each gets its own reply or error, a script read survives a
server without the script, a read sees every write acknowledged before it was made, and
reads cut by a lost connection are retried."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from memstore.backends.redis import RedisMemoryBackend, scripts
from memstore.backends.redis.connection import RedisConnection
from memstore.core.errors import BackendUnavailableError
from memstore.core.settings import Settings
from redis import exceptions as rexc


class GroupRecordingConnection(RedisConnection):
    """Records the size of each group of reads sent (a read sent alone is not one)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, on_retry=lambda: None)
        self.groups: list[int] = []

    async def _read_group(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.groups.append(len(commands))
        return await super()._read_group(commands)


@pytest.fixture
async def connection(any_redis_settings: Settings) -> AsyncIterator[GroupRecordingConnection]:
    conn = GroupRecordingConnection(any_redis_settings)
    await conn.open()
    try:
        yield conn
    finally:
        await conn.close()


def key(settings: Settings, name: str) -> str:
    return f"{settings.redis_prefix}{name}"


async def test_reads_made_together_go_as_groups_and_get_their_own_replies(
    connection: GroupRecordingConnection, any_redis_settings: Settings
) -> None:
    keys = [key(any_redis_settings, f"k{i}") for i in range(100)]
    for i, k in enumerate(keys):
        await connection.execute("SET", k, f"v{i}")
    values = await asyncio.gather(*(connection.read("GET", k) for k in keys))
    assert values == [f"v{i}".encode() for i in range(100)]
    # the first alone, every other one in a group (at most 64 in flight: the pool size)
    assert sum(connection.groups) == 99 and len(connection.groups) <= 4


async def test_a_failing_read_fails_alone_in_its_group(
    connection: GroupRecordingConnection, any_redis_settings: Settings
) -> None:
    text, missing = key(any_redis_settings, "text"), key(any_redis_settings, "missing")
    await connection.execute("SET", text, "hello")
    outcomes = await asyncio.gather(
        connection.read("GET", text),  # alone
        connection.read("LRANGE", text, 0, -1),  # WRONGTYPE, in the group with the next two
        connection.read("GET", text),
        connection.read("GET", missing),
        return_exceptions=True,
    )
    assert connection.groups == [3]
    first, wrong, again, absent = outcomes
    assert first == again == b"hello"
    assert isinstance(wrong, BackendUnavailableError) and "WRONGTYPE" in str(wrong)
    assert absent is None


async def test_script_reads_in_a_group_survive_a_flushed_script_cache(
    connection: GroupRecordingConnection, any_redis_settings: Settings
) -> None:
    conv = key(any_redis_settings, "{conv}:messages")
    # items as the conversation list holds them: each starts with its seq
    await connection.execute("RPUSH", conv, *[f"{i}|m{i}" for i in range(1, 11)])
    if connection.cluster_mode:
        for node in connection.client.get_primaries():
            await connection.client.execute_command("SCRIPT", "FLUSH", target_nodes=node)
    else:
        await connection.execute("SCRIPT", "FLUSH")
    script: Any = scripts.LOAD_MESSAGES_BEFORE
    pages = await asyncio.gather(
        *(connection.read("SCRIPT", script, [conv], [before, 2]) for before in range(3, 11))
    )
    assert len(pages) == 8 and all(len(page) == 2 for page in pages)
    assert connection.groups == [7]


async def test_a_read_sees_every_write_acknowledged_before_it_was_made(
    any_redis_settings: Settings,
) -> None:
    backend = RedisMemoryBackend(any_redis_settings)
    await backend.connect()
    stop = False

    async def reader(i: int) -> None:
        while not stop:
            await backend.load_entity("ns", "user", f"other{i}")

    readers = [asyncio.create_task(reader(i)) for i in range(16)]
    try:
        for n in range(1, 101):
            await backend.save_entity("ns", "user", "hot", {"n": n})
            record = await backend.load_entity("ns", "user", "hot")
            assert record is not None and record.data == {"n": n}
    finally:
        stop = True
        await asyncio.gather(*readers)
        await backend.close()


async def test_reads_cut_by_a_lost_connection_are_retried(
    connection: GroupRecordingConnection, any_redis_settings: Settings
) -> None:
    keys = [key(any_redis_settings, f"r{i}") for i in range(50)]
    for i, k in enumerate(keys):
        await connection.execute("SET", k, f"v{i}")

    async def kill_clients() -> None:
        for _ in range(5):
            await asyncio.sleep(0.01)
            if connection.cluster_mode:
                for node in connection.client.get_primaries():
                    # the killer's connection may be one an earlier round killed
                    with contextlib.suppress(rexc.ConnectionError):
                        await connection.client.execute_command(
                            "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes", target_nodes=node
                        )
            else:
                await connection.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    async def read_all() -> list[Any]:
        out: list[Any] = []
        for _ in range(10):
            out = await asyncio.gather(*(connection.read("GET", k) for k in keys))
        return out

    values, _ = await asyncio.gather(read_all(), kill_clients())
    assert values == [f"v{i}".encode() for i in range(50)]


async def test_a_group_cancelled_by_the_loop_ending_leaves_no_read_waiting(
    redis_settings: Settings,
) -> None:
    """As when ``asyncio.run`` cancels every task: the groups' task cancelled (maybe
    before its first step) cancels the reads of the group it had out; the waiting ones go
    in a new task, none waits for ever, and the next read goes alone."""
    connection = GroupRecordingConnection(redis_settings)
    await connection.open()
    try:
        await cancelled_group(connection, key(redis_settings, "c"))
    finally:
        await connection.close()


async def cancelled_group(connection: GroupRecordingConnection, k: str) -> None:
    await connection.execute("SET", k, "v")
    first = asyncio.create_task(connection.read("GET", k))
    waiting = [asyncio.create_task(connection.read("GET", k)) for _ in range(5)]
    while (groups := connection._reads._groups) is None:
        await asyncio.sleep(0)
    groups.cancel()
    assert await first == b"v"
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
    assert all(r == b"v" or isinstance(r, asyncio.CancelledError) for r in results), results
    assert await asyncio.wait_for(connection.read("GET", k), 10) == b"v"


def test_on_a_cluster_a_node_that_is_down_fails_only_its_own_reads(tmp_path: Path) -> None:
    """One pipeline spans the group's nodes and fails whole when one cannot be reached:
    the group's reads are sent again one by one, so the reads of the nodes that answer
    succeed. A private cluster of three masters, one of them killed (node_down_reads.py,
    in a process of its own)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.redis.node_down_reads", str(tmp_path)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    first, value = report["first"]
    assert value == first
    assert {down for _, down, _ in report["grouped"]} == {True, False}
    for k, down, value in report["grouped"]:
        assert value == ("unavailable" if down else k), (k, down, value)
    assert report["groups"] == [len(report["grouped"])]


@pytest.mark.parametrize(("limit", "grouped"), [(None, False), (2000, False), (50, True)])
async def test_a_long_history_read_goes_on_its_own(
    any_redis_settings: Settings, limit: int | None, grouped: bool
) -> None:
    """A conversation's whole history (or more than 1,000 messages) is not a grouped read:
    a read made while it is out goes at once instead of waiting for its reply. The last
    50 messages are one, and a read made meanwhile waits for it, in a group."""
    backend = RedisMemoryBackend(any_redis_settings)
    recording = GroupRecordingConnection(any_redis_settings)
    backend.connection = recording
    await backend.connect()
    try:
        await backend.append_messages("ns", "c", [{"n": i} for i in range(100)])
        await backend.save_entity("ns", "user", "u", {"n": 1})
        history = asyncio.create_task(backend.load_messages("ns", "c", limit=limit))
        await asyncio.sleep(0)  # the history read is out
        entity = await backend.load_entity("ns", "user", "u")
        assert entity is not None
        assert len(await history) == (100 if limit is None else min(limit, 100))
        assert recording.groups == ([1] if grouped else [])
    finally:
        await backend.close()

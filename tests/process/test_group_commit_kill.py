"""An acknowledged write under group commit survives ``kill -9``: a child process writes
from 16 concurrent tasks (entity saves, appends, tool usage, feedback), telling the parent
of each write through a pipe only after the call returned; the parent kills it with
SIGKILL in the middle of the load, reopens the file and finds every acknowledged write,
each with its change event."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memstore import DistributedMemoryManager
from memstore.core import changes
from memstore.core.settings import Settings

WRITER = """
import asyncio
import itertools
import sys

from memstore import DistributedMemoryManager

counter = itertools.count()
run = sys.argv[1]  # ids unique across the runs on one file
# A commit of many pages takes longer to write, so a kill lands inside one more often.
PAD = "x" * 32768


def ack(line: str) -> None:
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()


async def worker(memory: DistributedMemoryManager, w: int) -> None:
    while True:
        i = next(counter)
        kind = i % 4
        if kind == 0:
            rec = await memory.save_entity("note", f"e{run}-{i}", {"i": i, "pad": PAD})
            ack(f"entity e{run}-{i} {rec.version}")
        elif kind == 1:
            message = {"role": "user", "content": f"{run}-{i}"}
            recs = await memory.append_messages([message], f"c{w}")
            ack(f"message c{w} {recs[0].seq} {run}-{i}")
        elif kind == 2:
            rec = await memory.save_tool_usage("search", {"i": i}, {}, usage_id=f"t{run}-{i}")
            ack(f"tool {rec.id}")
        else:
            rec = await memory.save_learning_feedback("agent", "rating", {"i": i})
            ack(f"feedback {rec.id}")


async def main() -> None:
    async with DistributedMemoryManager(memory_type="embedded", namespace="kill") as memory:
        await asyncio.gather(*(worker(memory, w) for w in range(16)))


asyncio.run(main())
"""


def read_acks(proc: subprocess.Popen[bytes], want: int, timeout: float) -> list[str]:
    """Lines the child wrote, until ``want`` of them or ``timeout`` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < want and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
    return buf.decode().splitlines()


def drain(proc: subprocess.Popen[bytes]) -> list[str]:
    """What the child wrote before it died (complete lines only: a line cut by the kill
    was never a whole acknowledgement)."""
    assert proc.stdout is not None
    rest = proc.stdout.read()
    lines = rest.decode().split("\n")
    return lines[:-1]  # the part after the last newline is incomplete (or empty)


def write_until_killed(data: Path, synchronous: str, run: int, acks_before_kill: int) -> list[str]:
    """Start the writer, SIGKILL it after ``acks_before_kill`` acknowledgements; return
    every acknowledgement it wrote."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "MEMSTORE_DATA_PATH": str(data),
            "MEMSTORE_EMBEDDED_SYNCHRONOUS": synchronous,
        },
    )
    try:
        acks = read_acks(proc, want=acks_before_kill, timeout=60)
        assert len(acks) >= acks_before_kill, (len(acks), proc.poll())
        proc.send_signal(signal.SIGKILL)  # mid-load: 16 tasks have writes in flight
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        return acks + drain(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_acknowledged_writes_survive_kill_9(tmp_path: Path, synchronous: str) -> None:
    """Six kills on one file (each kill is a chance to catch an acknowledgement sent
    before its commit was durable); the store is checked after each."""
    data = tmp_path / "kill.db"
    acks: list[str] = []
    for run in range(6):
        acks += write_until_killed(data, synchronous, run, acks_before_kill=400)
        asyncio.run(check_store(data, acks))


async def check_store(data: Path, acks: list[str]) -> None:
    settings = Settings(memory_type="embedded", data_path=data)
    async with DistributedMemoryManager(namespace="kill", settings=settings) as memory:
        events = []
        after = 0
        while True:
            page = await memory.read_changes(after=after, limit=500)
            events += page.events
            if not page.events:
                break
            after = page.events[-1].position
        assert [e.position for e in events] == list(range(1, len(events) + 1))
        saved = {(e.entity_id, e.version) for e in events if e.kind == changes.ENTITY_SAVED}
        appended = {
            (e.conversation_id, e.version)
            for e in events
            if e.kind == changes.CONVERSATION_APPENDED
        }
        tools = {e.record_id for e in events if e.kind == changes.TOOL_USAGE_RECORDED}
        feedback = {e.record_id for e in events if e.kind == changes.FEEDBACK_SAVED}
        counts = dict.fromkeys(("entity", "message", "tool", "feedback"), 0)
        for line in acks:
            kind, *rest = line.split()
            counts[kind] += 1
            if kind == "entity":
                entity = await memory.get_entity("note", rest[0])
                assert entity is not None and entity.version == int(rest[1]), line
                assert (rest[0], int(rest[1])) in saved, line
            elif kind == "message":
                cid, seq, i = rest[0], int(rest[1]), rest[2]
                (message,) = await memory.load_messages(cid, before_seq=seq + 1, limit=1)
                assert (message.seq, message.message["content"]) == (seq, i), line
                assert (cid, seq) in appended, line  # an append's version is its last seq
            elif kind == "tool":
                assert rest[0] in tools, line
            else:
                assert rest[0] in feedback, line
        assert all(n > 50 for n in counts.values()), counts
        # the store is whole after the kill
        tool_page = await memory.query_tool_usage(limit=1)
        assert tool_page.items

"""A change stream and the life of the process serving it (real ``memstore serve``): a
graceful stop ends open streams cleanly instead of holding the stop until the shutdown
timeout, and ``MemoryClient.watch`` rides over a killed and restarted service, resuming
where it stopped without missing or repeating a change."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from memstore.client import MemoryClient
from memstore.core.records import ChangeEvent
from tests.support.procs import ServiceProcess

NS = "streams"


async def test_a_graceful_stop_ends_open_streams(tmp_path: Path) -> None:
    # A stream left open would hold the stop for the whole (long) shutdown timeout.
    svc = ServiceProcess(tmp_path, {"MEMSTORE_SHUTDOWN_TIMEOUT_SECONDS": "120"}).start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{svc.url}/v1/namespaces/{NS}/changes",
                headers={"Accept": "text/event-stream"},
            ) as resp,
        ):
            assert resp.status == 200
            assert await resp.content.readline() == b": keep-alive\n"
            assert svc.proc is not None
            svc.proc.send_signal(signal.SIGTERM)
            # The rest of the stream, then a clean end (no ClientPayloadError).
            rest = await asyncio.wait_for(resp.content.read(), 60)
            assert rest == b"\n"
        assert await asyncio.to_thread(svc.proc.wait, 60) == 0
    finally:
        svc.stop()
    assert "Traceback" not in svc.logs()


async def test_watch_resumes_across_a_killed_and_restarted_service(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path).start()
    try:
        async with MemoryClient(svc.url, NS) as memory:
            seen: list[ChangeEvent] = []

            async def follow() -> None:
                async for change in memory.watch():
                    seen.append(change)

            watcher = asyncio.create_task(follow())
            for i in range(5):
                await memory.save_entity("doc", f"d{i}", {"i": i})
            while len(seen) < 5:
                await asyncio.sleep(0.05)
            svc.stop(signal.SIGKILL)  # the stream drops mid-way, no goodbye
            svc.start()  # same port, same file
            for i in range(5, 10):
                await memory.save_entity("doc", f"d{i}", {"i": i})
            for _ in range(600):
                if len(seen) >= 10:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # a duplicate would arrive now
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    finally:
        svc.stop()
    assert [e.position for e in seen] == list(range(1, 11))
    assert [e.entity_id for e in seen] == [f"d{i}" for i in range(10)]


async def test_a_stream_its_client_left_gives_back_its_in_flight_slot(tmp_path: Path) -> None:
    # The keep-alive (whose write would find the client gone) is far off: only noticing
    # the closed connection ends the stream, and frees the caller's one slot.
    env = {"MEMSTORE_MAX_INFLIGHT_PER_CALLER": "1", "MEMSTORE_CHANGES_KEEPALIVE_SECONDS": "30"}
    svc = ServiceProcess(tmp_path, env).start()
    url = f"{svc.url}/v1/namespaces/{NS}/changes"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={"Accept": "text/event-stream"}) as resp:
                assert resp.status == 200
                async with session.get(url) as busy:
                    assert busy.status == 429  # the open stream holds the slot
            # The stream's connection is closed now; wait (bounded) for the slot.
            for _ in range(100):
                async with session.get(url) as again:
                    if again.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the slot was not given back within 10 s")
    finally:
        svc.stop()

"""SIGTERM under write load: in-flight requests finish, nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from tests.support.procs import ServiceProcess

WRITERS = 8


async def write_until_refused(url: str, writer: int, acked: dict[str, int]) -> int:
    """PUT entities until the server stops answering; record every 2xx. Returns errors seen."""
    errors = 0
    async with aiohttp.ClientSession() as session:
        for i in range(100_000):
            key = f"w{writer}-{i}"
            try:
                async with session.put(
                    f"{url}/v1/namespaces/shutdown/entities/item/{key}",
                    json={"data": {"writer": writer, "i": i, "pad": "x" * 200}},
                ) as resp:
                    if resp.status in (200, 201):
                        acked[key] = i
                    else:
                        errors += 1
            except (TimeoutError, aiohttp.ClientError):
                # The listener is closed: this write was never acknowledged.
                return errors
    return errors


async def test_sigterm_during_writes_loses_no_acknowledged_write(tmp_path: Path) -> None:
    svc = ServiceProcess(tmp_path).start()
    acked: dict[str, int] = {}
    writers = [asyncio.create_task(write_until_refused(svc.url, w, acked)) for w in range(WRITERS)]
    while len(acked) < 300:
        await asyncio.sleep(0.02)
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGTERM)
    results = await asyncio.wait_for(asyncio.gather(*writers), timeout=60)
    exit_code = await asyncio.to_thread(svc.proc.wait, 30)

    assert exit_code == 0, svc.logs()[-2000:]
    assert sum(results) == 0, "requests accepted before SIGTERM must complete, not fail"
    assert "Traceback" not in svc.logs()

    restarted = ServiceProcess(tmp_path).start()
    try:
        async with aiohttp.ClientSession() as session:
            missing = []
            for key, i in acked.items():
                async with session.get(
                    f"{restarted.url}/v1/namespaces/shutdown/entities/item/{key}"
                ) as resp:
                    if resp.status != 200 or (await resp.json())["data"]["i"] != i:
                        missing.append(key)
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged writes lost"
    finally:
        restarted.stop()

"""A webhook receiver on loopback (aiohttp), and real ``memstore serve`` processes with
fast retry settings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

#: Retries in milliseconds rather than minutes, so tests see several attempts quickly.
FAST = {
    "MEMSTORE_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
    "MEMSTORE_WEBHOOK_BACKOFF_CAP_SECONDS": "0.2",
    "MEMSTORE_WEBHOOK_POLL_SECONDS": "0.1",
    "MEMSTORE_WEBHOOK_TIMEOUT_SECONDS": "1",
    "MEMSTORE_WEBHOOK_LEASE_SECONDS": "2",
}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads(self.body)
        return value


@dataclass
class Receiver:
    """Answers 500 to the first ``fail_first`` requests (every one with ``always_fail``),
    2xx to the others; records each request and how many were in flight at once."""

    url: str = ""
    fail_first: int = 0
    always_fail: bool = False
    delay: float = 0.0
    #: Requests wait for this before answering (never set: the receiver hangs); with
    #: ``hold_first``, only the first that many requests do.
    hold: asyncio.Event | None = None
    hold_first: int | None = None
    entered: int = 0
    #: ``webhook-id`` of every request, as it arrives (before any answer).
    arrived_ids: list[str] = field(default_factory=list)
    requests: list[Delivery] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def accepted(self) -> list[Delivery]:
        return [d for d in self.requests if d.status < 300]

    def accepted_positions(self) -> list[int]:
        return [d.event["position"] for d in self.accepted]

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            self.entered += 1
            self.arrived_ids.append(request.headers.get("webhook-id", ""))
            held = self.hold_first is None or self.entered <= self.hold_first
            if self.hold is not None and held:
                await self.hold.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            failing = self.always_fail or len(self.requests) < self.fail_first
            status = 500 if failing else 204
            self.requests.append(Delivery(dict(request.headers), body, status))
            return web.Response(status=status)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def make_receiver() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def make(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        receiver.url = f"http://127.0.0.1:{port}/hook"
        return receiver

    yield make
    for runner in runners:
        await runner.cleanup()


async def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` on the running loop (the receiver runs on it) until it is truthy."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last value: {value!r}")


async def scrape(
    session: aiohttp.ClientSession, base: str
) -> dict[tuple[str, tuple[Any, ...]], float]:
    """The service's samples: (name, sorted labels) -> value."""
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)

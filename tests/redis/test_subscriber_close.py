"""Closing a manager stops its invalidation subscriber promptly, wherever it is.

A cancellation can be lost inside redis-py: with a socket timeout its sends go through
``asyncio.wait_for``, which on Python 3.11 returns the send's result instead of raising
when the cancel lands in the same loop turn as the send completes. The subscriber must
stop anyway and leave no task or socket behind (``filterwarnings = error`` turns a pending
task destroyed at exit or an unclosed socket into a failure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from redis.asyncio.connection import Connection

from memstore.backends.redis import RedisMemoryBackend
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager

SUBSCRIBER_TASK = "memstore-redis-invalidation"


def subscriber_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == SUBSCRIBER_TASK]


async def closes_promptly(manager: DistributedMemoryManager, when: str) -> None:
    """close() returns within a bound. Not ``asyncio.timeout`` around it: cancelling a
    hung close() would cancel the subscriber a second time and hide the hang."""
    closing = asyncio.create_task(manager.close())
    done, _ = await asyncio.wait([closing], timeout=15)
    if not done:
        closing.cancel()
        await asyncio.wait([closing])
        raise AssertionError(f"close() hung when called {when}")
    closing.result()
    assert not subscriber_tasks()


class SubscribeSentBackend(RedisMemoryBackend):
    """A backend whose subscriber connections set ``subscribe_sent`` as soon as the
    (S)SUBSCRIBE command is written, i.e. in the loop turn in which redis-py's send
    completes: a close() the test runs right then is the lost-cancel case."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.subscribe_sent = asyncio.Event()

    async def connect(self) -> None:
        await super().connect()
        sent = self.subscribe_sent

        class SignallingConnection(Connection):
            async def _send_packed_command(self, command: Iterable[bytes]) -> None:
                parts = list(command)
                await super()._send_packed_command(parts)
                if any(b"SUBSCRIBE" in bytes(part) for part in parts):
                    sent.set()

        assert self.invalidation_bus is not None
        self.invalidation_bus._connection_class = SignallingConnection


@pytest.mark.timeout(60)
async def test_close_as_the_subscribe_is_sent_returns(any_redis_settings: Settings) -> None:
    backend = SubscribeSentBackend(any_redis_settings)
    manager = DistributedMemoryManager(settings=any_redis_settings, backend=backend)
    await manager.start()
    await backend.subscribe_sent.wait()
    # close() starts in this very turn, the one in which the subscriber's send task has
    # completed, and cancels the subscriber before it wakes up.
    await closes_promptly(manager, "as the SUBSCRIBE was sent")


@pytest.mark.timeout(60)
def test_close_in_a_later_runner_run_returns(any_redis_settings: Settings) -> None:
    """The reported shape: pytest-asyncio runs an async fixture's setup, the test and the
    fixture's teardown as separate ``Runner.run`` calls on one loop, so a close() in the
    teardown lands wherever the subscription stopped when the loop last did."""

    async def test_body() -> None:
        pass

    with asyncio.Runner() as runner:
        manager = DistributedMemoryManager(settings=any_redis_settings)
        runner.run(manager.start())
        runner.run(test_body())
        runner.run(closes_promptly(manager, "in a later Runner.run"))


@pytest.mark.timeout(120)
async def test_close_returns_at_every_point_of_the_subscription(
    any_redis_settings: Settings,
) -> None:
    """Close after 0, 1, 2, ... loop turns, so that the close lands on the subscriber's
    successive awaits (connect, handshake, SUBSCRIBE, reading)."""
    for turns in range(30):
        manager = DistributedMemoryManager(settings=any_redis_settings)
        await manager.start()
        for _ in range(turns):
            await asyncio.sleep(0)
        await closes_promptly(manager, f"after {turns} loop turns")


@pytest.mark.timeout(60)
async def test_a_cancelled_close_stays_cancelled(redis_settings: Settings) -> None:
    """Cancelling the caller of close() cancels the caller: the subscriber's own
    cancellation is the one to suppress, not the caller's."""
    backend = RedisMemoryBackend(redis_settings)
    await backend.connect()
    flushing, release = asyncio.Event(), asyncio.Event()

    async def slow_to_stop(key: str | None) -> None:
        if key is None:  # the flush once subscribed
            flushing.set()
            try:
                await asyncio.Event().wait()
            finally:
                await release.wait()  # a cleanup that takes a while

    await backend.subscribe_invalidations(slow_to_stop)
    await flushing.wait()
    subscriber = subscriber_tasks()
    assert subscriber
    closing = asyncio.create_task(backend.close())
    for _ in range(3):  # close() cancels the subscriber and waits for its cleanup
        await asyncio.sleep(0)
    assert not closing.done()
    closing.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await closing
    finally:
        release.set()
        await asyncio.wait(subscriber)  # it still stops, on its own
        await backend.close()
    assert all(t.done() for t in subscriber)


@pytest.mark.timeout(60)
def test_close_on_another_loop_fails_promptly(redis_settings: Settings) -> None:
    """A close() on a loop other than the subscriber's cannot wait for it (that loop is
    not running): it says so instead of hanging, and the subscriber, told to stop, ends
    when its own loop runs again."""
    with asyncio.Runner() as first, asyncio.Runner() as second:
        backend = RedisMemoryBackend(redis_settings)
        first.run(backend.connect())
        first.run(backend.subscribe_invalidations(lambda key: asyncio.sleep(0)))
        with pytest.raises(RuntimeError, match="another event loop"):
            second.run(backend.close())
        first.run(backend.close())
        assert backend.invalidation_bus is None

"""One event loop on a helper thread, for the synchronous methods of the adapters.

A ``MemoryAPI`` is asynchronous, and a framework's sync method may be called from plain
sync code or from inside a running event loop (where waiting on that same loop would
deadlock). Both are served alike: the call's coroutine runs on this module's loop, on its
own daemon thread, and the caller's thread waits for the result.

What it means for the ``MemoryAPI`` given to an adapter:

* ``MemoryClient`` keeps one HTTP session per event loop, so one client serves the sync
  methods (on this loop) and the async ones (on the caller's loop) alike.
* The in-process ``DistributedMemoryManager`` opens its backend on the first loop that
  uses it, and Redis and MongoDB connections belong to that loop: a manager used through
  sync methods must be used only through them (``run_sync(memory.close())`` closes it).

The loop starts on first use and stops at interpreter exit (``atexit``), ending like
``asyncio.run``: the tasks still pending are cancelled and awaited, which closes the
clients' sessions on it.

``run_on`` is for the adapters that also serve an app's own loop (LangGraph's saver and
store): made where a loop runs, they run their sync methods on that loop, from another
thread, because the app's memory (a manager's Redis or MongoDB connections) belongs to it.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running on a daemon thread until ``stop`` (or interpreter exit)."""

    def __init__(self, name: str = "memstore-sync") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any thread but the
        loop's own)."""
        loop = self._started()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError(
                "a synchronous memstore method was called from its own background loop; "
                "await the async method instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._main, args=(ready,), name=self._name, daemon=True
                )
                thread.start()
                ready.wait()
                self._thread = thread
                atexit.register(self.stop)
            assert self._loop is not None
            return self._loop

    def _main(self, ready: threading.Event) -> None:
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            self._stopping = asyncio.Event()
            ready.set()
            runner.run(self._stopping.wait())
            # Leaving the Runner cancels and awaits every task still pending.

    def stop(self) -> None:
        """Stop the loop, ending its pending tasks as ``asyncio.run`` does; the next
        ``run`` starts a new one."""
        with self._lock:
            loop, thread, stopping = self._loop, self._thread, self._stopping
            self._loop = self._thread = self._stopping = None
            atexit.unregister(self.stop)
        if loop is None or thread is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)


_SHARED = BackgroundLoop()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the adapters' shared background loop and return its result."""
    return _SHARED.run(coro)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running this thread's code, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_on(loop: asyncio.AbstractEventLoop | None, coro: Coroutine[Any, Any, T], owner: str) -> T:
    """Run ``coro`` for a sync caller on ``loop`` (``None``: the shared background loop) and
    wait for its result. On ``loop``'s own thread that wait would block the loop the call
    needs, so it raises ``asyncio.InvalidStateError`` naming ``owner`` instead."""
    if loop is None:
        return run_sync(coro)
    if running_loop() is loop:
        coro.close()
        raise asyncio.InvalidStateError(
            f"synchronous calls to {owner} would block the event loop they need: "
            "call them from another thread (await asyncio.to_thread(graph.invoke, ...)) "
            "or use the async methods (await graph.ainvoke(...))"
        )
    return asyncio.run_coroutine_threadsafe(coro, loop).result()

"""Change-feed readers: one position in a namespace's change log, read forward.

``DistributedMemoryManager.watch`` and the HTTP feed (event stream and long-poll) are made
of ``ChangeReader``. A reader reads a page of the log after its position and keeps the
events its filter wants. When the log has nothing new it waits until this process hears
of a change in its namespace (``ChangeSignal``, fed by the manager's change hook: writes
through this process, and through other replicas where the backend's invalidation bus
carries them) or until the poll interval passes, whichever comes first: the interval
bounds the latency of the changes nobody announces here (MongoDB has no bus; tool uses
and feedback are not announced). A wake-up only says "read again": what is read is the
log, so every reader sees the same events in the same order whatever woke it, and a
missed or duplicated wake-up costs a read, never an event.

The reader's position is the last position *scanned*, events its filter dropped
included, so a reader resumed from it reads nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from memstore.core.changes import ChangeFilter
from memstore.core.errors import RequestTimeoutError
from memstore.core.records import ChangeEvent, ChangePage

#: Reads up to ``limit`` events after ``after`` (the manager's ``read_changes``).
ReadChanges = Callable[[int, int], Awaitable[ChangePage]]


class ChangeSignal:
    """Wakes the readers waiting on a namespace. ``changed`` is a change listener of the
    manager (``add_change_listener``): a key names its namespace (``core/keys.py``:
    ``entity/<ns>/...``, ``conversation/<ns>/...``); ``None`` (the bus was lost, anything
    may have changed) wakes every reader."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}

    def changed(self, key: str | None) -> None:
        if not self._waiting:
            return
        if key is None:
            for events in self._waiting.values():
                for event in events:
                    event.set()
            return
        namespace = key.split("/", 2)[1] if key.count("/") >= 2 else None
        for event in self._waiting.get(namespace or "", ()):
            event.set()

    def register(self, namespace: str, event: asyncio.Event) -> Callable[[], None]:
        """Set ``event`` on each change in ``namespace``; returns the call that stops it."""
        self._waiting.setdefault(namespace, set()).add(event)

        def unregister() -> None:
            events = self._waiting.get(namespace)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[namespace]

        return unregister


class ChangeReader:
    """Reads one namespace's change log forward from ``position`` (see the module doc).
    ``close`` stops it: a waiting ``next_events`` returns ``[]`` at once, and so does
    every later call."""

    def __init__(
        self,
        read: ReadChanges,
        *,
        after: int,
        wanted: ChangeFilter,
        page_size: int,
        poll_seconds: float,
        wake: asyncio.Event,
        unregister: Callable[[], None],
        read_timeout: float | None = None,
    ) -> None:
        self.position = after
        #: From the last page read: the oldest retained and the newest given position.
        self.first_position: int | None = None
        self.last_position: int | None = None
        self._read = read
        self._wanted = None if wanted.everything else wanted
        self._page_size = page_size
        self._poll_seconds = poll_seconds
        self._wake = wake
        self._unregister = unregister
        self._read_timeout = read_timeout
        self.closed = False

    async def next_events(self, within: float | None = None) -> list[ChangeEvent]:
        """The next events the filter wants (at most a page), oldest first, waiting for
        them up to ``within`` seconds (``None``: until there are some; 0: one read).
        Not a cancellation: a read under way finishes, and the position stays exact.
        ``[]`` when the time is up or the reader was closed; the position may have moved
        on over events the filter dropped meanwhile. Raises ``ChangesPrunedError`` when
        retention removed events after the position (the reader fell behind)."""
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        while not self.closed:
            self._wake.clear()  # before the read: a change during it wakes the next wait
            page = await self._read_page()
            self.first_position, self.last_position = page.first_position, page.last_position
            if page.events:
                self.position = page.events[-1].position
                wanted = self._wanted
                found = (
                    page.events if wanted is None else [e for e in page.events if wanted.matches(e)]
                )
                if found:
                    return found
            now = loop.time()
            if deadline is not None and now >= deadline:
                return []
            if page.events:
                continue  # every event scanned was filtered out: read on at once
            wait = (
                self._poll_seconds if deadline is None else min(self._poll_seconds, deadline - now)
            )
            try:
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            except TimeoutError:
                pass
        return []

    async def _read_page(self) -> ChangePage:
        if self._read_timeout is None:
            return await self._read(self.position, self._page_size)
        try:
            async with asyncio.timeout(self._read_timeout):
                return await self._read(self.position, self._page_size)
        except TimeoutError:
            raise RequestTimeoutError(
                f"reading the change log took longer than {self._read_timeout:g}s"
            ) from None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._unregister()
            self._wake.set()

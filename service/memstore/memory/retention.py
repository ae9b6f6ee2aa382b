"""Retention in the service: reads that refresh the idle clock, and background pruning.

* ``ReadRecorder``: an entity read in a namespace whose policy has an idle time is queued
  as a *touch*, at most once per ``TOUCH_FRACTION`` of that idle time per entity in this
  process; a task writes the queued touches every second, one backend call per namespace
  (``touch_entities``). A read therefore never waits for a write, and the reads of one
  entity cost at most one backend write per tenth of its idle time per replica.
* ``RetentionPruner``: every ``MEMSTORE_RETENTION_INTERVAL_SECONDS`` it walks the
  namespaces (internal ones, named ``_...``, excepted), and in each whose policy is not
  empty calls ``prune`` in batches of ``MEMSTORE_RETENTION_BATCH`` items per kind,
  pausing ``MEMSTORE_RETENTION_PAUSE_SECONDS`` between batches so a large backlog is
  removed without holding the backend for long; a failed round is logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from memstore.core.errors import MemoryStoreError
from memstore.core.retention import TOUCH_FRACTION, RetentionConfig

if TYPE_CHECKING:
    from memstore.backends.base import DistributedMemoryBackend

log = logging.getLogger(__name__)

#: Seconds between two writes of the queued touches.
TOUCH_FLUSH_SECONDS = 1.0
#: Entities whose last touch this process remembers (beyond it, the memory is cleared:
#: the next read of each touches again, one write more).
_REMEMBERED = 100_000


class ReadRecorder:
    """Queues and writes the touches of entity reads (module docstring)."""

    def __init__(
        self,
        config: RetentionConfig,
        backend: Callable[[], DistributedMemoryBackend],
        interval: float = TOUCH_FLUSH_SECONDS,
    ) -> None:
        self._config = config
        self._backend = backend
        self._interval = interval
        self._idle: dict[str, float | None] = {}
        self._touched: dict[tuple[str, str, str], float] = {}
        self._queued: dict[str, dict[tuple[str, str], float]] = {}
        self._task: asyncio.Task[None] | None = None

    def idle_seconds(self, namespace: str) -> float | None:
        idle = self._idle.get(namespace, -1.0)
        if idle == -1.0:
            idle = self._idle[namespace] = self._config.policy_for(namespace).entity_idle_seconds
        return idle

    def read(self, namespace: str, entity_type: str, entity_id: str, now: float) -> None:
        """Note a read of the entity at ``now`` (queued when due)."""
        idle = self.idle_seconds(namespace)
        if idle is None:
            return
        key = (namespace, entity_type, entity_id)
        last = self._touched.get(key)
        if last is not None and now - last < idle * TOUCH_FRACTION:
            return
        if len(self._touched) >= _REMEMBERED:
            self._touched.clear()
        self._touched[key] = now
        self._queued.setdefault(namespace, {})[(entity_type, entity_id)] = now

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queued.values())

    async def flush(self) -> None:
        """Write every queued touch (one call per namespace, at its latest read time)."""
        queued, self._queued = self._queued, {}
        for namespace, keys in queued.items():
            try:
                await self._backend().touch_entities(namespace, list(keys), max(keys.values()))
            except Exception as exc:  # any failure: the recorder must outlive it
                # the entities count from an older read: they may go sooner, never later
                if isinstance(exc, MemoryStoreError):
                    log.warning("could not record entity reads in %s: %s", namespace, exc)
                else:
                    log.exception("could not record entity reads in %s", namespace)
                for key in keys:
                    self._touched.pop((namespace, *key), None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memstore-retention-touches")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                # only cancellation ends the recorder: a failure loses this second's reads
                log.exception("recording entity reads failed; will retry")


class RetentionPruner:
    """Background pruning (module docstring). ``prune_namespace(ns)`` is the manager's
    enforcement for one namespace until nothing more is due (or the batch budget of one
    round ends); it returns the number of items removed."""

    def __init__(
        self,
        list_namespaces: Callable[[], Awaitable[list[str] | None]],
        prune_namespace: Callable[[str], Awaitable[int]],
        interval: float,
    ) -> None:
        self._list = list_namespaces
        self._prune = prune_namespace
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memstore-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_round(self) -> int:
        """One pass over every namespace; the number of items removed. A namespace that
        fails (being imported, its data key shredded, a backend error) is logged and
        skipped: the others are pruned all the same, and the next round retries it."""
        removed = 0
        for namespace in await self._list() or []:
            if namespace.startswith("_"):
                continue  # internal: stored search vectors, webhook state
            try:
                removed += await self._prune(namespace)
            except MemoryStoreError as exc:
                log.warning("retention skipped namespace %s this round: %s", namespace, exc)
            except Exception:
                log.exception("retention skipped namespace %s this round", namespace)
        self.rounds += 1
        return removed

    async def _run(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.run_round()
            except MemoryStoreError as exc:
                log.warning("retention round failed; will retry: %s", exc)
            except Exception:
                log.exception("retention round failed; will retry")
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - began)))

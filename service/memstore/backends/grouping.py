"""``CallGroups``: calls made while one is out wait, then go together as one group.

The embedded store's group commit and grouped reads and Redis's grouped reads are this one
pattern; each gives it what one call and one group cost in its technology.

* A call made when none is out runs at once, alone, in its caller's task: with nobody to
  group with, it pays nothing for grouping (no task to start and switch to).
* Calls made while one is out wait. When it is back, the waiting ones go together, up to
  ``max_group``, as one group, then the next group, until none waits. After a group of
  several, one turn of the loop passes before the next is formed, so the callers just
  answered, who often call again at once, join it: a burst of concurrent callers keeps
  going in groups. After a group of one it does not (unless ``always_rejoin``), and the
  task is done with as soon as nothing waits, so a caller calling in sequence goes alone
  again instead of queueing for a group of one each time. The groups run in a
  task of their own, so a caller cancelled while its group is out does not cancel the
  other callers' calls.
* Each caller gets its own outcome: its result, or its own error (a group that failed
  whole gives its error to each of its calls). A caller cancelled before its call went is
  left out of the group.
* When the groups' task ends without answering (cancelled, even before its first step, as
  ``asyncio.run`` does to every task on its way out): the calls of the group it had out
  are cancelled, and what still waits goes in a new task, never left waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")
R = TypeVar("R")


class CallGroups(Generic[C, R]):
    """Runs calls of type ``C`` alone or in groups (module docstring). ``alone(call)``
    returns the call's result or raises its error; ``together(calls)`` returns one outcome
    per call, in order, an exception instance for a call that failed, and raises when the
    group failed whole. ``always_rejoin``: leave a turn of the loop for the callers just
    answered after a group of one too (writes, whose commit costs far more than a task
    switch)."""

    def __init__(
        self,
        alone: Callable[[C], Awaitable[R]],
        together: Callable[[list[C]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_group: int,
        always_rejoin: bool = False,
    ) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._alone = alone
        self._together = together
        self._max_group = max_group
        self._always_rejoin = always_rejoin
        self._waiting: deque[tuple[C, asyncio.Future[R]]] = deque()
        self._alone_out = False
        self._groups: asyncio.Task[None] | None = None
        #: set exactly when nothing is out: no call alone, no groups' task
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, call: C) -> R:
        if self._alone_out or self._groups is not None:
            waiting: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._waiting.append((call, waiting))
            return await waiting
        self._alone_out = True
        self._idle.clear()
        try:
            return await self._alone(call)
        finally:
            self._alone_out = False
            self._send_waiting()

    async def idle(self) -> None:
        """Return once every call made so far has been answered (none alone or in a group
        out, none waiting)."""
        await self._idle.wait()

    def _send_waiting(self) -> None:
        if self._waiting and self._groups is None:
            self._groups = asyncio.create_task(self._send_groups())
            # A task cancelled before its first step never runs its body: the callback
            # still sees it end.
            self._groups.add_done_callback(self._groups_ended)
        if not self._alone_out and self._groups is None:
            self._idle.set()

    async def _send_groups(self) -> None:
        try:
            while self._waiting:
                sent = await self._send_group()
                # (module docstring: a turn for the answered callers to join the next)
                if self._always_rejoin or sent > 1:
                    await asyncio.sleep(0)
        finally:
            # Ended here, not in the done callback a turn of the loop later: a caller
            # answered by the last group that calls again at once finds nothing out and
            # goes alone, instead of queueing for a group of one.
            if self._groups is asyncio.current_task():
                self._groups = None
                self._send_waiting()

    async def _send_group(self) -> int:
        """Send the next group; how many calls it had."""
        group: list[tuple[C, asyncio.Future[R]]] = []
        while self._waiting and len(group) < self._max_group:
            call = self._waiting.popleft()
            if not call[1].done():  # (its caller was cancelled: left out)
                group.append(call)
        if not group:
            return 0
        try:
            outcomes = await self._together([call for call, _ in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"{len(outcomes)} outcomes for a group of {len(group)}")
        except Exception as exc:
            outcomes = [exc] * len(group)
        except BaseException:
            for _, answer in group:
                answer.cancel()
            raise
        for (_, answer), outcome in zip(group, outcomes, strict=True):
            if answer.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)
        return len(group)

    def _groups_ended(self, task: asyncio.Task[None]) -> None:
        if task is self._groups:  # cancelled before its first step: no ``finally`` ran
            self._groups = None
            self._send_waiting()
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("a group of calls ended without answering", exc_info=error)

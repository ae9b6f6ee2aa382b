"""``CallGroups`` on its own (pure logic; the backends' tests show it on real stores): the
first call alone, the calls made meanwhile in groups of at most ``max_group``, each
caller its own outcome, cancelled callers left out, a group failing whole, the groups'
task cancelled, and ``idle``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from memstore.backends.grouping import CallGroups


class Recorder:
    """Doubles a call; ``-1`` fails alone, a group holding ``-2`` fails whole. Records
    what went alone and each group."""

    def __init__(self) -> None:
        self.alone_calls: list[int] = []
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def alone(self, call: int) -> int:
        self.alone_calls.append(call)
        await asyncio.sleep(0)  # out for a turn of the loop at least, as any I/O is
        await self.release.wait()
        if call == -1:
            raise ValueError("bad call")
        return call * 2

    async def together(self, calls: list[int]) -> Sequence[int | BaseException]:
        self.groups.append(calls)
        await asyncio.sleep(0)
        await self.release.wait()
        if -2 in calls:
            raise RuntimeError("group failed")
        return [ValueError("bad call") if c == -1 else c * 2 for c in calls]


async def test_first_alone_then_groups_of_at_most_max_group() -> None:
    rec = Recorder()
    groups = CallGroups(rec.alone, rec.together, max_group=4)
    results = await asyncio.gather(*(groups(i) for i in range(10)))
    assert results == [i * 2 for i in range(10)]
    assert rec.alone_calls == [0]
    assert rec.groups == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    await groups.idle()
    assert await groups(10) == 20 and rec.alone_calls == [0, 10]  # nothing out: alone


async def test_each_caller_gets_its_own_error_and_a_failed_group_fails_each() -> None:
    rec = Recorder()
    groups = CallGroups(rec.alone, rec.together, max_group=3)
    results = await asyncio.gather(
        groups(-1), groups(1), groups(-1), groups(3), groups(-2), groups(5),
        return_exceptions=True,
    )  # fmt: skip
    assert rec.groups == [[1, -1, 3], [-2, 5]]
    assert isinstance(results[0], ValueError)
    assert results[1] == 2 and isinstance(results[2], ValueError) and results[3] == 6
    assert all(isinstance(r, RuntimeError) for r in results[4:])


async def test_a_caller_cancelled_before_its_group_went_is_left_out() -> None:
    rec = Recorder()
    rec.release.clear()
    groups = CallGroups(rec.alone, rec.together, max_group=8)
    tasks = [asyncio.create_task(groups(i)) for i in range(4)]
    await asyncio.sleep(0)  # 0 alone, 1..3 waiting
    tasks[2].cancel()
    rec.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert rec.groups == [[1, 3]]
    assert results[0] == 0 and results[1] == 2 and results[3] == 6
    assert isinstance(results[2], asyncio.CancelledError)


@pytest.mark.parametrize("while_out", [False, True])
async def test_the_groups_task_cancelled_leaves_nobody_waiting(while_out: bool) -> None:
    rec = Recorder()
    rec.release.clear()
    groups = CallGroups(rec.alone, rec.together, max_group=2)
    tasks = [asyncio.create_task(groups(i)) for i in range(5)]
    await asyncio.sleep(0)  # 0 alone, 1..4 waiting
    rec.release.set()
    while groups._groups is None:
        await asyncio.sleep(0)
    if while_out:
        while not rec.groups:  # its first group is out
            await asyncio.sleep(0)
    groups._groups.cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert results[0] == 0
    if while_out:  # the group it had out is cancelled, the others still go
        assert [isinstance(r, asyncio.CancelledError) for r in results[1:3]] == [True, True]
        assert results[3:] == [6, 8]
    else:  # before its first step: every waiting call still goes
        assert results[1:] == [2, 4, 6, 8]
    await asyncio.wait_for(groups.idle(), 5)


async def test_a_caller_answered_by_a_group_that_calls_again_goes_alone() -> None:
    rec = Recorder()
    groups = CallGroups(rec.alone, rec.together, max_group=8)

    async def sequential() -> list[int]:
        return [await groups(i) for i in range(100, 105)]

    first = asyncio.create_task(groups(0))
    await asyncio.sleep(0)  # 0 out alone: the sequential caller's first call waits
    assert await sequential() == [200, 202, 204, 206, 208]
    await first
    assert rec.groups == [[100]]  # its first call, in a group of one
    assert rec.alone_calls == [0, 101, 102, 103, 104]  # then alone, each


async def test_callers_answered_by_a_group_of_several_join_the_next_group() -> None:
    rec = Recorder()
    rec.release.clear()
    groups = CallGroups(rec.alone, rec.together, max_group=8)

    async def twice(i: int) -> None:
        await groups(i)
        await groups(i + 10)

    tasks = [asyncio.create_task(twice(i)) for i in range(4)]
    await asyncio.sleep(0)  # 0 alone, 1..3 waiting
    rec.release.set()
    await asyncio.gather(*tasks)
    # 0's second call is made while the group of 1..3 is out; 1..3's second calls are
    # made in the turn the groups' task leaves before forming the next group: they join.
    assert rec.alone_calls == [0]
    assert rec.groups == [[1, 2, 3, 10], [11, 12, 13]]


async def test_with_always_rejoin_a_caller_answered_by_a_group_of_one_joins_the_next() -> None:
    rec = Recorder()
    groups = CallGroups(rec.alone, rec.together, max_group=8, always_rejoin=True)

    async def sequential() -> list[int]:
        return [await groups(i) for i in range(100, 103)]

    first = asyncio.create_task(groups(0))
    await asyncio.sleep(0)
    assert await sequential() == [200, 202, 204]
    await first
    assert rec.alone_calls == [0]
    assert rec.groups == [[100], [101], [102]]


async def test_a_group_answered_with_the_wrong_count_fails_each_call() -> None:
    async def alone(call: int) -> int:
        await asyncio.sleep(0)
        return call

    async def together(calls: list[int]) -> list[int]:
        return calls[:-1]  # one outcome short

    groups = CallGroups(alone, together, max_group=8)
    results = await asyncio.wait_for(
        asyncio.gather(*(groups(i) for i in range(4)), return_exceptions=True), 5
    )
    assert results[0] == 0
    assert all(
        isinstance(r, RuntimeError) and "2 outcomes for a group of 3" in str(r) for r in results[1:]
    )


def test_max_group_must_be_at_least_one() -> None:
    async def call(c: int) -> int:
        return c

    async def group(calls: list[int]) -> list[int]:
        return calls

    with pytest.raises(ValueError, match="max_group"):
        CallGroups(call, group, max_group=0)

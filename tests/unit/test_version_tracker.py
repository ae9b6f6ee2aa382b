"""``VersionTracker``: the per-entity version floor a client sends for read-your-writes."""

from __future__ import annotations

import threading

import pytest

from memstore.client import VersionTracker
from memstore.client.versions import NO_CACHE

KEY = ("ns", "doc", "a")


def test_unknown_keys_have_no_floor() -> None:
    assert VersionTracker().floor(KEY) is None


def test_the_floor_is_the_highest_version_seen() -> None:
    tracker = VersionTracker()
    tracker.saw(KEY, 3)
    assert tracker.floor(KEY) == 3
    tracker.saw(KEY, 5)
    tracker.saw(KEY, 4)  # an older answer (a read that raced a write) never lowers it
    assert tracker.floor(KEY) == 5
    assert tracker.floor(("ns", "doc", "b")) is None
    assert tracker.floor(("other", "doc", "a")) is None  # the namespace is part of the key


def test_a_delete_of_a_known_version_asks_for_a_later_one() -> None:
    tracker = VersionTracker()
    tracker.saw(KEY, 5)
    tracker.deleted(KEY)
    assert tracker.floor(KEY) == 6
    tracker.deleted(KEY)  # deleting again (404) does not move it further
    tracker.saw_absent(KEY)
    assert tracker.floor(KEY) == 6
    tracker.saw(KEY, 1)  # re-created: versions start again, the floor stays
    assert tracker.floor(KEY) == 6
    tracker.saw(KEY, 7)  # past the deleted life
    assert tracker.floor(KEY) == 7


def test_a_delete_of_an_unknown_version_skips_the_cache_for_good() -> None:
    tracker = VersionTracker()
    tracker.deleted(KEY)
    assert tracker.floor(KEY) == NO_CACHE
    tracker.saw(KEY, 1)
    tracker.saw(KEY, 50)  # no number bounds the deleted state's version
    assert tracker.floor(KEY) == NO_CACHE


def test_absent_answers_move_known_keys_only() -> None:
    tracker = VersionTracker()
    tracker.saw_absent(KEY)
    assert tracker.floor(KEY) is None
    assert len(tracker) == 0
    tracker.saw(KEY, 2)
    tracker.saw_absent(KEY)
    tracker.saw_absent(KEY)
    assert tracker.floor(KEY) == 3


def test_least_recently_used_keys_are_forgotten_first() -> None:
    tracker = VersionTracker(max_keys=3)
    keys = [("ns", "doc", str(i)) for i in range(4)]
    for key in keys[:3]:
        tracker.saw(key, 1)
    assert tracker.floor(keys[0]) == 1  # used: now the most recent
    tracker.saw(keys[3], 1)
    assert len(tracker) == 3
    assert tracker.floor(keys[1]) is None  # the least recently used went
    assert [tracker.floor(k) for k in (keys[0], keys[2], keys[3])] == [1, 1, 1]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_the_bound_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        VersionTracker(max_keys=bad)  # type: ignore[arg-type]


def test_threads_sharing_a_tracker_keep_the_highest_version() -> None:
    tracker = VersionTracker()

    def record(offset: int) -> None:
        for version in range(1, 2001):
            tracker.saw(("ns", "doc", str(version % 100)), version + offset)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tracker) == 100
    for key_no in range(100):
        highest = max(v for v in range(1, 2001) if v % 100 == key_no) + 3
        assert tracker.floor(("ns", "doc", str(key_no))) == highest

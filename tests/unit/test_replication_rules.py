"""The lenient failback's conflict rules (pure functions of the two copies)."""

from __future__ import annotations

import inspect

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.replicated import ReplicatedMemoryBackend, merge_messages, reconcile_entity
from memstore.core.records import EntityRecord, MessageRecord


def entity(version: int, updated: float, data: str = "x") -> EntityRecord:
    return EntityRecord("note", "a", {"v": data}, version, 1.0, updated)


def messages(*items: tuple[str, float]) -> list[MessageRecord]:
    return [MessageRecord("c", i, {"m": m}, at) for i, (m, at) in enumerate(items, start=1)]


def test_the_higher_version_wins() -> None:
    primary, secondary = entity(3, 10.0), entity(4, 5.0)
    assert reconcile_entity(primary, secondary, None) is secondary
    assert reconcile_entity(secondary, primary, None) is True


def test_equal_versions_the_later_update_wins_and_a_tie_keeps_the_primary() -> None:
    assert reconcile_entity(entity(2, 10.0, "p"), entity(2, 11.0, "s"), None) == entity(
        2, 11.0, "s"
    )
    assert reconcile_entity(entity(2, 11.0, "p"), entity(2, 10.0, "s"), None) is True
    assert reconcile_entity(entity(2, 10.0, "p"), entity(2, 10.0, "s"), None) is True
    assert reconcile_entity(entity(2, 10.0), entity(2, 10.0), None) is True


def test_deletes_and_keys_on_one_side() -> None:
    kept = entity(1, 1.0)
    assert reconcile_entity(None, kept, None) is kept
    assert reconcile_entity(entity(2, 1.0), None, 2) is None  # deleted what the primary has
    assert reconcile_entity(entity(3, 1.0), None, 2) is True  # the primary's is newer
    assert reconcile_entity(None, None, 2) is True


def test_appends_on_both_sides_are_merged_once() -> None:
    primary = messages(("a", 1), ("b", 2), ("p", 3))
    secondary = messages(("a", 1), ("b", 2), ("s", 4), ("t", 5))
    merged = merge_messages(primary, secondary)
    assert merged == messages(("a", 1), ("b", 2), ("p", 3), ("s", 4), ("t", 5))
    assert merge_messages(merged, secondary) is None  # idempotent


def test_the_secondary_copy_is_taken_whole_when_the_primary_has_nothing_more() -> None:
    primary = messages(("a", 1))
    secondary = messages(("a", 1), ("b", 2))
    assert merge_messages(primary, secondary) == secondary
    assert merge_messages(secondary, secondary) is None
    # A replace on the secondary while the primary had more: the primary's appends stay.
    assert merge_messages(messages(("a", 1), ("p", 2)), messages(("r", 3))) == messages(
        ("a", 1), ("p", 2), ("r", 3)
    )


def test_the_replicated_backend_routes_every_backend_method() -> None:
    """A backend method the replicated backend does not define would run the base class's
    default (often "not supported") instead of reaching the serving backend: a method
    added to the contract must be routed there too (a read, or a write)."""
    missing = [
        name
        for name, _ in inspect.getmembers(DistributedMemoryBackend, inspect.isfunction)
        if not name.startswith("_") and name not in ReplicatedMemoryBackend.__dict__
    ]
    assert missing == []

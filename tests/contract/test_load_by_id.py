"""``load_tool_usage`` and ``load_feedback``: one record by id, exactly as stored (the
replication between backends reads a record named by a change event this way)."""

from __future__ import annotations

import uuid

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.records import FeedbackRecord, ToolUsageRecord


@pytest.fixture
def ns() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def test_load_tool_usage_by_id(backend: DistributedMemoryBackend, ns: str) -> None:
    records = [
        ToolUsageRecord(
            id=f"use-{i}",
            tool_name="search" if i else "calc",
            input={"q": i, "nested": [1, {"x": None}]},
            output="ok" if i else None,
            duration_ms=1.5 * i,
            success=bool(i),
            timestamp=1_700_000_000.25 + i,
            conversation_id="c1" if i else None,
        )
        for i in range(3)
    ]
    for record in records:
        await backend.record_tool_usage(ns, record)
    for record in records:
        assert await backend.load_tool_usage(ns, record.id) == record
    assert await backend.load_tool_usage(ns, "missing") is None
    assert await backend.load_tool_usage(f"{ns}x", records[0].id) is None


async def test_load_feedback_by_id(backend: DistributedMemoryBackend, ns: str) -> None:
    records = [
        FeedbackRecord(f"fb-{i}", "agent", "rating", {"rating": i, "why": "é"}, 1_700_000_000.5 + i)
        for i in range(3)
    ]
    for record in records:
        await backend.save_feedback(ns, record)
    for record in records:
        assert await backend.load_feedback(ns, record.id) == record
    assert await backend.load_feedback(ns, "missing") is None
    assert await backend.load_feedback(f"{ns}x", records[0].id) is None

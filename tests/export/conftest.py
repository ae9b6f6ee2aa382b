"""Two stores of any backend (A and B, separate key spaces) and a varied namespace."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from memstore.core.retention import Cutoffs
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager

BACKENDS = ["embedded", "redis", "redis_cluster", "mongodb"]


def separate_store(settings: Settings, tmp_path: Path, label: str) -> Settings:
    """The same server, a key space of its own."""
    unique = f"t{uuid.uuid4().hex[:12]}"
    if settings.memory_type == "embedded":
        return settings.model_copy(update={"data_path": tmp_path / f"{label}.db"})
    if settings.memory_type == "redis":
        return settings.model_copy(update={"redis_prefix": f"{unique}:"})
    return settings.model_copy(update={"mongodb_db": unique})


@pytest.fixture
def store_settings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[str, str], Settings]:
    def make(backend: str, label: str) -> Settings:
        base: Settings = request.getfixturevalue(f"{backend}_settings")
        return separate_store(base, tmp_path, label)

    return make


@pytest.fixture
async def managers() -> AsyncIterator[Callable[[Settings], DistributedMemoryManager]]:
    opened: list[DistributedMemoryManager] = []

    def make(settings: Settings) -> DistributedMemoryManager:
        manager = DistributedMemoryManager(settings=settings, namespace="default")
        opened.append(manager)
        return manager

    yield make
    for manager in opened:
        await manager.close()


async def fill(view: DistributedMemoryManager, *, scale: int = 1) -> None:
    """A namespace with a bit of everything: entities of several types (one with a TTL),
    unicode, a large value, a pinned entity, conversations (one empty, one trimmed by
    retention so its seqs start after 1), tool uses and feedback; and version history: an
    old version, a key left only as a tombstone, a delete + re-create, a conversation
    replaced twice (two revisions)."""
    now = time.time()
    for i in range(12 * scale):
        await view.save_entity("user", f"u{i:03d}", {"name": f"Ünïcødé {i} 日本語 👋", "i": i})
    for i in range(5 * scale):
        await view.save_entity("doc", f"d{i}", {"body": "x" * 200, "n": [i, 1.5, None, True]})
    await view.save_entity("doc", "d0", {"body": "second version", "$k.y": {"a.b": 2**60}})
    await view.save_entity("session", "s1", {"ttl": True}, ttl=3600)
    await view.save_entity("blob", "big", {"payload": "é" * 60_000, "list": list(range(500))})
    await view.delete_entity("doc", f"d{5 * scale - 1}")  # only its tombstone stays
    await view.save_entity("note", "n1", {"v": 1})
    await view.delete_entity("note", "n1")
    await view.save_entity("note", "n1", {"v": 2})  # numbering goes on after the tombstone
    await view.pin_entity("user", "u001")  # the pin travels in the dump (retention)
    await view.append_messages([{"turn": t} for t in range(6)], conversation_id="trimmed")
    await view.backend.prune(
        view.namespace, Cutoffs(conversation_max_messages=2), time.time(), dry_run=False, limit=50
    )
    for c in range(3 * scale):
        await view.append_messages(
            [
                {"role": "user", "content": f"hello {c} ✓"},
                {"role": "assistant", "content": "y" * 3000},
            ],
            conversation_id=f"conv-{c}",
        )
    await view.append_messages([{"role": "user", "content": "more"}], conversation_id="conv-0")
    await view.backend.replace_conversation(view.namespace, "empty", [])
    await view.save_conversation_history([{"role": "user", "content": "v2 ✓"}], "conv-2")
    await view.save_conversation_history([{"n": 3}, {"n": 4}], "conv-2")  # revision 2: 1 message
    for i in range(8 * scale):
        await view.save_tool_usage(
            f"tool.{i % 3}",
            {"q": f"query {i} ñ"},
            [i, "result"],
            duration_ms=1.25 * i,
            success=i % 4 != 0,
            conversation_id="conv-1" if i % 2 else None,
            timestamp=now - 600 + i,
            usage_id=f"use-{i:03d}",
        )
    for i in range(4 * scale):
        await view.save_learning_feedback(f"agent-{i % 2}", "rating", {"rating": i, "note": "👍"})

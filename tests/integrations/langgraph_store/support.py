"""Stores for the LangGraph store tests: ``MemstoreStore`` over the in-process manager (on
a backend) or over ``MemoryClient`` against a real ``memstore serve``, each on a memstore
namespace no other test uses."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest

from memstore.client import MemoryClient
from memstore.integrations.background_loop import run_sync
from memstore.integrations.langgraph_store import MemstoreStore
from memstore.memory.api import MemoryAPI
from memstore.memory.manager import DistributedMemoryManager

#: What a store runs over: the manager in process (embedded), or the HTTP client.
MEMORIES = ["embedded", "http"]
#: ... and the manager on every other backend.
ALL_MEMORIES = [*MEMORIES, "redis", "redis_cluster", "mongodb"]


def _memory(kind: str, request: pytest.FixtureRequest) -> MemoryAPI:
    namespace = f"lgs{uuid.uuid4().hex[:12]}"
    if kind == "http":
        return MemoryClient(request.getfixturevalue("live_service").url, namespace=namespace)
    return DistributedMemoryManager(
        settings=request.getfixturevalue(f"{kind}_settings"), namespace=namespace
    )


@contextmanager
def sync_store(
    kind: str, request: pytest.FixtureRequest, **options: Any
) -> Iterator[MemstoreStore]:
    """A store for sync code: made where no loop runs, so its memory lives on the adapters'
    background loop."""
    memory = _memory(kind, request)
    run_sync(memory.__aenter__())
    try:
        yield MemstoreStore(memory, **options)
    finally:
        run_sync(memory.close())


@asynccontextmanager
async def async_store(
    kind: str, request: pytest.FixtureRequest, **options: Any
) -> AsyncIterator[MemstoreStore]:
    """A store made on the test's loop (its sync methods refuse to run on that loop)."""
    async with _memory(kind, request) as memory:
        yield MemstoreStore(memory, **options)


class StoreMaker:
    """Opens more stores of one kind within a test (LangGraph's tests that make their own)."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.request = request

    def open(self, **options: Any) -> Any:
        return sync_store(self.kind, self.request, **options)

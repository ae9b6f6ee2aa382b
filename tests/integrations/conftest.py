"""The adapters run over both kinds of ``MemoryAPI``: the in-process manager (embedded
backend; every backend's side of the operations is the contract suite's) and
``MemoryClient`` against a real ``memstore serve``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from memstore.client import MemoryClient
from memstore.core.settings import Settings
from memstore.memory.api import MemoryAPI
from memstore.memory.manager import DistributedMemoryManager
from tests.support.procs import ServiceProcess

MEMORIES = ["embedded", "client"]


def fresh_namespace() -> str:
    return f"it{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=MEMORIES)
async def memory(request: pytest.FixtureRequest) -> AsyncIterator[MemoryAPI]:
    """A MemoryAPI on a namespace no other test uses."""
    opened: MemoryAPI
    if request.param == "client":
        service: ServiceProcess = request.getfixturevalue("live_service")
        opened = MemoryClient(service.url, namespace=fresh_namespace())
    else:
        settings: Settings = request.getfixturevalue(f"{request.param}_settings")
        opened = DistributedMemoryManager(settings=settings, namespace=fresh_namespace())
    async with opened:
        yield opened

"""Search on Redis leaves out tool uses past MEMSTORE_REDIS_TOOL_USAGE_RETENTION_SECONDS,
as the reads do, also before a trim has deleted them (and logged ``tool_usage.pruned``)."""

from __future__ import annotations

import time
import types
import uuid

import pytest

from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager


async def test_search_leaves_out_tool_uses_past_the_retention(
    redis_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = redis_settings.model_copy(update={"redis_tool_usage_retention_seconds": 60.0})
    async with DistributedMemoryManager(
        settings=settings, namespace=f"r{uuid.uuid4().hex[:8]}"
    ) as memory:
        now = time.time()
        await memory.save_tool_usage("lookup", {"q": "hippo"}, "old", timestamp=now - 50)
        await memory.save_tool_usage("lookup", {"q": "hippo"}, "new", timestamp=now)
        uses = await memory.search_tool_usage("hippo", mode="keyword")
        assert sorted(h.record.output for h in uses.items) == ["new", "old"]
        # 20 s later the first is past the retention; no write came, so nothing trimmed it
        later = types.SimpleNamespace(
            **{n: getattr(time, n) for n in dir(time) if not n.startswith("__")}
        )
        later.time = lambda: now + 20
        for module in ("memstore.memory.search.service", "memstore.backends.redis.backend"):
            monkeypatch.setattr(f"{module}.time", later)
        uses = await memory.search_tool_usage("hippo", mode="keyword")
        assert [h.record.output for h in uses.items] == ["new"]
        # as the reads see it
        assert [u.output for u in (await memory.query_tool_usage()).items] == ["new"]

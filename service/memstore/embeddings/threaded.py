"""The part every in-process model shares: one worker thread of its own, so neither
loading nor embedding blocks the event loop, and concurrent calls queue instead of
competing for the CPU."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt


class ThreadedEmbedder:
    """A subclass sets ``name`` and ``dimension`` and implements ``embed_now``."""

    name: str
    dimension: int

    def __init__(self, thread_name: str) -> None:
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_now, list(texts))

    def embed_now(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """The blocking work of ``embed`` (in the caller's thread)."""
        raise NotImplementedError

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

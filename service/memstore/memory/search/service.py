"""Search on this replica: one :class:`~memstore.memory.search.index.NamespaceIndex` per
namespace searched, the embedder, and the background task that embeds and stores vectors.
The manager owns one (shared by its namespace views), started and closed with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.records import EntityHit, MessageHit, SearchPage, ToolUsageHit
from memstore.core.search import EntitySearch, TextSearch, matches_filter
from memstore.core.settings import Settings
from memstore.core.text import tokenize
from memstore.embeddings.base import Embedder, build_embedder
from memstore.memory.search.index import Collection, Key, Kind, NamespaceIndex
from memstore.memory.search.ranking import (
    Ranked,
    fingerprint,
    fuse,
    make_cursor,
    ordered,
    page_of,
    read_cursor,
)

log = logging.getLogger(__name__)

#: After a failed round of background embedding or vector writes, wait this long.
RETRY_SECONDS = 5.0

_UNSET: Any = object()


class SearchIndexes:
    """The search indexes of every namespace this replica searched."""

    def __init__(
        self,
        settings: Settings,
        backend: Callable[[], DistributedMemoryBackend],
        embedder: Embedder | None = _UNSET,
    ) -> None:
        self.settings = settings
        self._backend = backend
        self._embedder = embedder
        self._indexes: dict[str, NamespaceIndex] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def embedder(self) -> Embedder | None:
        """The embedder (built from the settings on first use), ``None`` without one."""
        if self._embedder is _UNSET:
            s = self.settings
            self._embedder = None if s.embedder == "none" else build_embedder(s)
        return self._embedder

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._embed_in_background(), name="memstore-search-embedding"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._indexes.clear()
        if self._embedder is not _UNSET and self._embedder is not None:
            await self._embedder.close()

    def index(self, namespace: str) -> NamespaceIndex:
        index = self._indexes.get(namespace)
        if index is None:
            index = self._indexes[namespace] = NamespaceIndex(
                self._backend(),
                namespace,
                fields=self.settings.search_fields,
                page_size=self.settings.max_page_size,
                embedder=self.embedder,
                on_pending=self._wake.set,
            )
        return index

    async def _embed_in_background(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for index in list(self._indexes.values()):
                for coll in index.collections():
                    try:
                        await index.embed_pending(coll)
                        await index.persist(coll)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.warning(
                            "search: background embedding failed; retrying",
                            exc_info=True,
                            extra={"namespace": index.namespace},
                        )
                        asyncio.get_running_loop().call_later(RETRY_SECONDS, self._wake.set)

    # -- searching -------------------------------------------------------------------------

    async def _rank(
        self,
        index: NamespaceIndex,
        coll: Collection[Any],
        mode: str,
        query: str | None,
        candidates: list[Key],
    ) -> Ranked:
        if mode == "filter":
            return ordered((key, 1.0) for key in candidates)
        keyword: Ranked = []
        semantic: Ranked = []
        if mode in ("keyword", "hybrid"):
            assert query is not None
            scores = coll.bm25.scores(tokenize(query))
            keyword = ordered((k, scores[k]) for k in candidates if k in scores)
        if mode in ("semantic", "hybrid"):
            assert query is not None
            assert index.embedder is not None
            await index.embed_pending(coll)
            if coll.has_work:
                self._wake.set()  # the vectors computed here are stored in the background
            vector = (await index.embedder.embed([query]))[0]
            semantic = ordered(coll.vectors.scores(vector, candidates).items())
        if mode == "keyword":
            return keyword
        if mode == "semantic":
            return semantic
        return fuse(keyword, semantic)

    def _embedder_name(self, mode: str) -> str | None:
        embedder = self.embedder
        return embedder.name if embedder is not None and mode in ("semantic", "hybrid") else None

    async def search_entities(
        self, namespace: str, search: EntitySearch, cursor: str | None
    ) -> SearchPage[EntityHit]:
        mark = fingerprint("entity", search.query, search.types, search.filter)
        after = read_cursor(cursor, search.mode, mark, (str, str))
        index = self.index(namespace)
        await index.catch_up("entity")
        coll = index.entities
        assert coll is not None
        now = time.time()
        types = None if search.types is None else set(search.types)
        candidates = [
            key
            for key, item in coll.items.items()
            if (types is None or key[0] in types)
            and (item.record.expires_at is None or item.record.expires_at > now)
            and (search.filter is None or matches_filter(item.record.data, search.filter))
        ]
        ranked = await self._rank(index, coll, search.mode, search.query, candidates)
        hits, more = page_of(ranked, after, search.limit)
        return SearchPage(
            [EntityHit(coll.items[key].record, score) for score, key in hits],
            make_cursor(search.mode, mark, *hits[-1]) if more else None,
            search.mode,
            self._embedder_name(search.mode),
        )

    async def search_messages(
        self, namespace: str, search: TextSearch, cursor: str | None
    ) -> SearchPage[MessageHit]:
        mark = fingerprint("message", search.query, search.scope)
        after = read_cursor(cursor, search.mode, mark, (str, int))
        index = self.index(namespace)
        await index.catch_up("message")
        coll = index.messages
        assert coll is not None
        candidates = [key for key in coll.items if search.scope is None or key[0] == search.scope]
        ranked = await self._rank(index, coll, search.mode, search.query, candidates)
        hits, more = page_of(ranked, after, search.limit)
        return SearchPage(
            [MessageHit(coll.items[key].record, score) for score, key in hits],
            make_cursor(search.mode, mark, *hits[-1]) if more else None,
            search.mode,
            self._embedder_name(search.mode),
        )

    async def search_tool_usage(
        self, namespace: str, search: TextSearch, cursor: str | None
    ) -> SearchPage[ToolUsageHit]:
        mark = fingerprint("tool_usage", search.query, search.scope)
        after = read_cursor(cursor, search.mode, mark, (str,))
        index = self.index(namespace)
        await index.catch_up("tool_usage")
        coll = index.tool_usage
        assert coll is not None
        candidates = [
            key
            for key, item in coll.items.items()
            if search.scope is None or item.record.tool_name == search.scope
        ]
        ranked = await self._rank(index, coll, search.mode, search.query, candidates)
        hits, more = page_of(ranked, after, search.limit)
        return SearchPage(
            [ToolUsageHit(coll.items[key].record, score) for score, key in hits],
            make_cursor(search.mode, mark, *hits[-1]) if more else None,
            search.mode,
            self._embedder_name(search.mode),
        )


__all__ = ["Kind", "SearchIndexes"]

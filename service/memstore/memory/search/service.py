"""Search on this replica: one :class:`~memstore.memory.search.index.NamespaceIndex` per
namespace searched, the embedder, and the background task that embeds and stores vectors.
The manager owns one (shared by its namespace views), started and closed with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.records import EntityHit, MessageHit, SearchPage, ToolUsageHit
from memstore.core.search import EntitySearch, TextSearch, matches_filter
from memstore.core.settings import Settings
from memstore.core.text import tokenize
from memstore.embeddings.base import Embedder, build_embedder
from memstore.memory.search.index import Collection, Key, NamespaceIndex
from memstore.memory.search.ranking import (
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
        # An embedder the caller gave is the caller's to close; one built here is closed
        # with the indexes (and built again if the manager starts again).
        self._own_embedder = embedder is _UNSET
        self._indexes: dict[str, NamespaceIndex] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def embedder(self) -> Embedder | None:
        """The embedder (built from the settings on first use), ``None`` without one."""
        if self._embedder is _UNSET:
            self._embedder = build_embedder(self.settings)
        return self._embedder

    def start(self) -> None:
        if self._task is None:
            # A manager may be started again on another event loop: a fresh event.
            self._wake = asyncio.Event()
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(
                self._embed_in_background(), name="memstore-search-embedding"
            )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # The flag too: a driver may turn the cancellation of a write in flight into
            # an error of its own, which the task logs and would otherwise carry on after.
            self._stopping = True
            self._wake.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._indexes.clear()
        if self._own_embedder and self._embedder is not _UNSET:
            embedder, self._embedder = self._embedder, _UNSET
            if embedder is not None:
                await embedder.close()

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
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            for index in list(self._indexes.values()):
                for coll in index.collections():
                    if self._stopping:
                        return
                    try:
                        await index.embed_pending(coll)
                        await index.persist(coll, lambda: self._stopping)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        if self._stopping:
                            return
                        log.warning(
                            "search: background embedding failed; retrying",
                            exc_info=True,
                            extra={"namespace": index.namespace},
                        )
                        asyncio.get_running_loop().call_later(RETRY_SECONDS, self._wake.set)

    # -- searching -------------------------------------------------------------------------

    async def _scores(
        self,
        index: NamespaceIndex,
        coll: Collection[Any],
        mode: str,
        query: str | None,
        accept: Callable[[Key], bool],
    ) -> Iterable[tuple[Key, float]]:
        """The score in ``mode`` of each item ``accept`` takes (unsorted; those the mode
        does not find left out: no query token for keywords, no vector for meaning). Each
        mode walks only what it found (a keyword search only the items with a token)."""
        if mode == "filter":
            return ((key, 1.0) for key in coll.items if accept(key))
        keyword: dict[Key, float] = {}
        semantic: dict[Key, float] = {}
        if mode in ("keyword", "hybrid"):
            assert query is not None
            scores = coll.bm25.scores(tokenize(query))
            keyword = {k: score for k, score in scores.items() if accept(k)}
        if mode in ("semantic", "hybrid"):
            assert query is not None
            assert index.embedder is not None
            await index.embed_pending(coll)
            if coll.has_work:
                self._wake.set()  # the vectors computed here are stored in the background
            vector = (await index.embedder.embed([query]))[0]
            semantic = {k: v for k, v in coll.vectors.scores(vector).items() if accept(k)}
        if mode == "keyword":
            return keyword.items()
        if mode == "semantic":
            return semantic.items()
        return fuse(ordered(keyword.items()), ordered(semantic.items())).items()

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
        items, flt = coll.items, search.filter

        def accept(key: Key) -> bool:
            record = items[key].record
            return (
                (types is None or key[0] in types)
                and (record.expires_at is None or record.expires_at > now)
                and (flt is None or matches_filter(record.data, flt))
            )

        scores = await self._scores(index, coll, search.mode, search.query, accept)
        hits, more = page_of(scores, after, search.limit)
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
        cid = search.scope
        scores = await self._scores(
            index, coll, search.mode, search.query, lambda key: cid is None or key[0] == cid
        )
        hits, more = page_of(scores, after, search.limit)
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
        tool, uses = search.scope, coll.items
        # past the backend's retention: gone for reads, whether or not a trim ran yet
        cutoff = self._backend().tool_usage_cutoff(time.time())

        def accept(key: Key) -> bool:
            record = uses[key].record
            return (tool is None or record.tool_name == tool) and (
                cutoff is None or record.timestamp >= cutoff
            )

        scores = await self._scores(index, coll, search.mode, search.query, accept)
        hits, more = page_of(scores, after, search.limit)
        return SearchPage(
            [ToolUsageHit(coll.items[key].record, score) for score, key in hits],
            make_cursor(search.mode, mark, *hits[-1]) if more else None,
            search.mode,
            self._embedder_name(search.mode),
        )

"""Search on this replica: one :class:`~memstore.memory.search.index.NamespaceIndex` per
namespace searched, the embedder, and the background task that embeds and stores vectors.
The manager owns one (shared by its namespace views), started and closed with it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from memstore.backends.base import DistributedMemoryBackend
from memstore.core.records import EntityHit, MessageHit, SearchPage, ToolUsageHit
from memstore.core.search import EntitySearch, TextSearch, compile_filter
from memstore.core.settings import Settings
from memstore.core.text import tokenize
from memstore.embeddings.base import Embedder, build_embedder
from memstore.memory.search.index import Collection, Key, Kind, NamespaceIndex
from memstore.memory.search.ranking import (
    RRF_K,
    Ranked,
    fingerprint,
    fuse,
    make_cursor,
    ordered,
    page_of,
    page_of_rows,
    ranks_of_rows,
    read_cursor,
)

log = logging.getLogger(__name__)

#: After a failed round of background embedding or vector writes, wait this long.
RETRY_SECONDS = 5.0

#: A collection of this many items or more is ranked in a worker thread.
OFFLOAD_ITEMS = 2000

_UNSET: Any = object()

H = TypeVar("H", EntityHit, MessageHit, ToolUsageHit)


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
        self._indexes: OrderedDict[str, NamespaceIndex] = OrderedDict()
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
        """The namespace's index, built on first use. Past ``search_max_namespaces`` the
        least recently searched index is dropped: a search holding it finishes on it, and
        vectors it had computed but not stored yet are computed again by the next build."""
        index = self._indexes.get(namespace)
        if index is not None:
            self._indexes.move_to_end(namespace)
            return index
        index = self._indexes[namespace] = NamespaceIndex(
            self._backend(),
            namespace,
            fields=self.settings.search_fields,
            page_size=self.settings.max_page_size,
            embedder=self.embedder,
            on_pending=self._wake.set,
        )
        while len(self._indexes) > self.settings.search_max_namespaces:
            self._indexes.popitem(last=False)
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

    async def _page(
        self,
        index: NamespaceIndex,
        coll: Collection[Any],
        mode: str,
        query: str | None,
        accept: Callable[[Key], bool],
        after: tuple[float, Key] | None,
        limit: int,
    ) -> tuple[Ranked, bool]:
        """The page of hits in ``mode`` among the items ``accept`` takes. The ranking runs
        in a worker thread once the collection is large (a scan of 100k items holds a
        core for a noticeable time; the event loop keeps serving meanwhile), with every
        change to the index held off until it is done."""
        vector: npt.NDArray[np.float32] | None = None
        if mode in ("semantic", "hybrid"):
            assert query is not None
            assert index.embedder is not None
            await index.embed_pending(coll)
            if coll.has_work:
                self._wake.set()  # the vectors computed here are stored in the background
            vector = (await index.embedder.embed([query]))[0]
        tokens = tokenize(query) if query is not None and mode in ("keyword", "hybrid") else None

        def rank() -> tuple[Ranked, bool]:
            return _rank(coll, mode, tokens, vector, accept, after, limit)

        if len(coll.items) < OFFLOAD_ITEMS:
            return rank()
        async with index.unchanged():
            return await asyncio.to_thread(rank)

    def _embedder_name(self, mode: str) -> str | None:
        embedder = self.embedder
        return embedder.name if embedder is not None and mode in ("semantic", "hybrid") else None

    async def _search(
        self,
        namespace: str,
        kind: Kind,
        search: EntitySearch | TextSearch,
        cursor: str | None,
        *,
        mark: str,
        key_types: tuple[type, ...],
        acceptor: Callable[[Collection[Any]], Callable[[Key], bool]],
        hit: Callable[[Any, float], H],
    ) -> SearchPage[H]:
        """One page of ``kind`` hits: read the cursor (it must belong to this search:
        ``mark``), catch the index up with the log, rank the items ``acceptor`` (given the
        caught-up collection) takes, and make the next cursor from the page's last hit."""
        after = read_cursor(cursor, search.mode, mark, key_types)
        index = self.index(namespace)
        await index.catch_up(kind)
        coll = index.collection(kind)
        hits, more = await self._page(
            index, coll, search.mode, search.query, acceptor(coll), after, search.limit
        )
        return SearchPage(
            [hit(coll.items[key].record, score) for score, key in hits],
            make_cursor(search.mode, mark, *hits[-1]) if more else None,
            search.mode,
            self._embedder_name(search.mode),
        )

    async def search_entities(
        self, namespace: str, search: EntitySearch, cursor: str | None
    ) -> SearchPage[EntityHit]:
        types = None if search.types is None else set(search.types)
        matches = None if search.filter is None else compile_filter(search.filter)

        def acceptor(coll: Collection[Any]) -> Callable[[Key], bool]:
            items, now = coll.items, time.time()

            def accept(key: Key) -> bool:
                record = items[key].record
                return (
                    (types is None or key[0] in types)
                    and (record.expires_at is None or record.expires_at > now)
                    and (matches is None or matches(record.data))
                )

            return accept

        return await self._search(
            namespace,
            "entity",
            search,
            cursor,
            mark=fingerprint("entity", search.query, search.types, search.filter),
            key_types=(str, str),
            acceptor=acceptor,
            hit=EntityHit,
        )

    async def search_messages(
        self, namespace: str, search: TextSearch, cursor: str | None
    ) -> SearchPage[MessageHit]:
        cid = search.scope

        def accept(key: Key) -> bool:
            return cid is None or key[0] == cid

        return await self._search(
            namespace,
            "message",
            search,
            cursor,
            mark=fingerprint("message", search.query, search.scope),
            key_types=(str, int),
            acceptor=lambda coll: accept,
            hit=MessageHit,
        )

    async def search_tool_usage(
        self, namespace: str, search: TextSearch, cursor: str | None
    ) -> SearchPage[ToolUsageHit]:
        tool = search.scope

        def acceptor(coll: Collection[Any]) -> Callable[[Key], bool]:
            uses = coll.items
            # past the backend's retention: gone for reads, whether or not a trim ran yet
            cutoff = self._backend().tool_usage_cutoff(time.time())

            def accept(key: Key) -> bool:
                record = uses[key].record
                return (tool is None or record.tool_name == tool) and (
                    cutoff is None or record.timestamp >= cutoff
                )

            return accept

        return await self._search(
            namespace,
            "tool_usage",
            search,
            cursor,
            mark=fingerprint("tool_usage", search.query, search.scope),
            key_types=(str,),
            acceptor=acceptor,
            hit=ToolUsageHit,
        )


def _rank(
    coll: Collection[Any],
    mode: str,
    tokens: list[str] | None,
    vector: npt.NDArray[np.float32] | None,
    accept: Callable[[Key], bool],
    after: tuple[float, Key] | None,
    limit: int,
) -> tuple[Ranked, bool]:
    """The page in ``mode`` (see :meth:`SearchIndexes._page`). Each mode walks only what
    it found: a keyword search only the items with a query token, a semantic one only
    the items with a vector, best first until the page is full."""
    if mode == "filter":
        return page_of(((key, 1.0) for key in coll.items if accept(key)), after, limit)
    keyword: dict[Key, float] = {}
    if tokens is not None:
        keyword = {k: score for k, score in coll.bm25.scores(tokens).items() if accept(k)}
        if mode == "keyword":
            return page_of(keyword.items(), after, limit)
    assert vector is not None
    table = coll.vectors
    rows, sims = table.similarities(vector)
    if mode == "semantic":
        return page_of_rows(rows, sims, table.key_at, accept, after, limit)
    # Hybrid: reciprocal rank fusion of the two full rankings, summed per row in numpy
    # (the keyword term first, as :func:`fuse` adds them, so the sums are the same).
    semantic_rows, semantic_keys = ranks_of_rows(rows, sims, table.key_at, accept)
    by_keyword = ordered(keyword.items())
    keyword_rows = [table.row_of(key) for _, key in by_keyword]
    if None in keyword_rows:  # an item with tokens and no vector yet: fuse by key
        semantic = [(0.0, key) for key in semantic_keys]
        return page_of(fuse(by_keyword, semantic).items(), after, limit)
    fused = np.zeros(table.rows, dtype=np.float64)
    found = np.zeros(table.rows, dtype=bool)
    if keyword_rows:
        at = np.array(keyword_rows, dtype=np.intp)
        fused[at] = 1.0 / (RRF_K + np.arange(1, at.shape[0] + 1))
        found[at] = True
    fused[semantic_rows] += 1.0 / (RRF_K + np.arange(1, semantic_rows.shape[0] + 1))
    found[semantic_rows] = True
    hit_rows = np.flatnonzero(found)
    return page_of_rows(hit_rows, fused[hit_rows], table.key_at, _always, after, limit)


def _always(key: Key) -> bool:
    return True

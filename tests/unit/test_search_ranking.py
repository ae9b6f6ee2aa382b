"""The vectorised ranking (numpy top-k, the hybrid fusion summed per row) against the plain
one it replaces (every score in a dict, a heap over them; ``fuse`` of the two sorted
rankings): the same pages, in the same order, with the same scores, cursor after cursor,
with many ties, removed rows and an ``accept`` that rejects some items."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from memstore.memory.search.index import Collection, Key
from memstore.memory.search.ranking import Ranked, fuse, ordered, page_of
from memstore.memory.search.service import _rank

WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]


def _collection(n: int, distinct: int, seed: int) -> Collection[Any]:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    base = nprng.normal(size=(distinct, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    coll: Collection[Any] = Collection("message")
    keys = [(f"c{rng.randrange(7)}", i) for i in range(n)]
    for key in keys:
        coll.bm25.put(key, [rng.choice(WORDS) for _ in range(rng.randrange(1, 4))])
        coll.vectors.put(key, base[rng.randrange(distinct)])
    for key in rng.sample(keys, n // 10):  # free rows in the matrix, gone from BM25 too
        coll.bm25.remove(key)
        coll.vectors.remove(key)
    return coll


def _reference(
    coll: Collection[Any],
    mode: str,
    tokens: list[str],
    vector: np.ndarray[Any, Any],
    accept: Callable[[Key], bool],
    after: tuple[float, Key] | None,
    limit: int,
) -> tuple[Ranked, bool]:
    keyword = {k: s for k, s in coll.bm25.scores(tokens).items() if accept(k)}
    rows, sims = coll.vectors.similarities(vector)
    semantic = {
        coll.vectors.key_at(r): s
        for r, s in zip(rows.tolist(), sims.tolist(), strict=True)
        if accept(coll.vectors.key_at(r))
    }
    if mode == "semantic":
        return page_of(semantic.items(), after, limit)
    return page_of(fuse(ordered(keyword.items()), ordered(semantic.items())).items(), after, limit)


def _walk(rank: Callable[..., tuple[Ranked, bool]], limit: int) -> list[Ranked]:
    pages: list[Ranked] = []
    after: tuple[float, Key] | None = None
    while True:
        hits, more = rank(after, limit)
        pages.append(hits)
        if not more:
            return pages
        after = hits[-1]


@pytest.mark.parametrize("mode", ["semantic", "hybrid"])
@pytest.mark.parametrize(("n", "distinct", "limit"), [(50, 3, 7), (3000, 5, 25), (3000, 2000, 300)])
@pytest.mark.parametrize("scoped", [False, True])
def test_vectorised_pages_equal_the_plain_ranking(
    mode: str, n: int, distinct: int, limit: int, scoped: bool
) -> None:
    coll = _collection(n, distinct, seed=n + distinct)
    query = np.random.default_rng(1).normal(size=16).astype(np.float32)
    query /= np.linalg.norm(query)
    tokens = ["alpha", "gamma"]

    def accept(key: Key) -> bool:
        return not scoped or key[0] in ("c1", "c2", "c5")

    got = _walk(lambda after, lim: _rank(coll, mode, tokens, query, accept, after, lim), limit)
    want = _walk(
        lambda after, lim: _reference(coll, mode, tokens, query, accept, after, lim), limit
    )
    assert got == want
    assert sum(len(p) for p in got) > limit  # several pages walked

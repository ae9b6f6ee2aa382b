"""Rankings, their fusion, and the cursor that continues a ranking on the next page."""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Iterable
from typing import Any

from memstore.core.errors import InvalidInputError
from memstore.core.validation import decode_cursor, encode_cursor

Key = tuple[Any, ...]
Ranked = list[tuple[float, Key]]

#: Reciprocal rank fusion's constant (Cormack et al.; also Elasticsearch's default).
RRF_K = 60


def ordered(scores: Iterable[tuple[Key, float]]) -> Ranked:
    """Best first; equal scores in key order, so every page agrees on one order."""
    ranked = [(score, key) for key, score in scores]
    ranked.sort(key=lambda hit: (-hit[0], hit[1]))
    return ranked


def fuse(*rankings: Ranked) -> dict[Key, float]:
    """Reciprocal rank fusion: each item scores the sum of 1 / (RRF_K + rank) over the
    rankings it is in (rank 1 = best)."""
    fused: dict[Key, float] = {}
    for ranking in rankings:
        for rank, (_, key) in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
    return fused


def fingerprint(*parts: Any) -> str:
    """Which search a cursor belongs to (its arguments), so a cursor is not reused for
    another search. The standard library's encoder: a filter may hold numbers orjson cannot
    write (integers beyond 64 bits, NaN, infinities), which still compare in a filter."""
    raw = json.dumps(list(parts), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def make_cursor(mode: str, search: str, score: float, key: Key) -> str:
    return encode_cursor(mode, search, score, *key)


def read_cursor(
    cursor: str | None, mode: str, search: str, key_types: tuple[type, ...]
) -> tuple[float, Key] | None:
    """The last hit of the previous page, or ``None`` for the first page."""
    if not cursor:
        return None
    values = decode_cursor(cursor, str, str, float, *key_types)
    if values[0] != mode or values[1] != search:
        raise InvalidInputError(
            "cursor belongs to another search (query, filter, types or mode differ)",
            field="cursor",
        )
    return float(values[2]), tuple(values[3:])


def page_of(
    scores: Iterable[tuple[Key, float]], after: tuple[float, Key] | None, limit: int
) -> tuple[Ranked, bool]:
    """The ``limit`` best hits after ``after`` (in :func:`ordered`'s order) and whether more
    follow. The scores need not be sorted: only the page is (a partial selection)."""
    order = ((-score, key) for key, score in scores)
    if after is not None:
        bound = (-after[0], after[1])
        order = (hit for hit in order if hit > bound)
    best = heapq.nsmallest(limit + 1, order)
    return [(-neg, key) for neg, key in best[:limit]], len(best) > limit

"""Rankings, their fusion, and the cursor that continues a ranking on the next page."""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

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


Scores = npt.NDArray[np.float64]
Rows = npt.NDArray[np.intp]


def page_of_rows(
    rows: Rows,
    scores: Scores,
    key_of: Callable[[int], Key],
    accept: Callable[[Key], bool],
    after: tuple[float, Key] | None,
    limit: int,
) -> tuple[Ranked, bool]:
    """:func:`page_of` over ``scores[i]`` of the item ``key_of(rows[i])``, taking only the
    items ``accept`` takes: the best are picked by numpy in growing slices (each slice
    every score at or above a threshold, so ties stay together and are put in key order)
    and ``accept`` is asked in ranking order until the page is full."""
    if after is not None:
        last_score, last_key = after
        keep = scores < last_score
        for i in np.flatnonzero(scores == last_score).tolist():
            keep[i] = key_of(int(rows[i])) > last_key
        rows, scores = rows[keep], scores[keep]
    need = limit + 1
    found: Ranked = []
    size = max(4 * need, 256)
    while len(found) < need and rows.shape[0]:
        if rows.shape[0] > size:
            threshold = np.partition(scores, rows.shape[0] - size)[rows.shape[0] - size]
            take = scores >= threshold
            slice_rows, slice_scores = rows[take], scores[take]
            rows, scores = rows[~take], scores[~take]
        else:
            slice_rows, slice_scores = rows, scores
            rows, scores = rows[:0], scores[:0]
        ranked = sorted(
            zip((-slice_scores).tolist(), map(key_of, slice_rows.tolist()), strict=True)
        )
        for neg, key in ranked:
            if accept(key):
                found.append((-neg, key))
                if len(found) == need:
                    break
        size *= 4
    return found[:limit], len(found) > limit


def ranks_of_rows(
    rows: Rows, scores: Scores, key_of: Callable[[int], Key], accept: Callable[[Key], bool]
) -> tuple[Rows, list[Key]]:
    """The items ``accept`` takes in :func:`ordered`'s order (best first, equal scores in
    key order): their rows and keys."""
    order = np.argsort(-scores, kind="stable")
    rows, scores = rows[order], scores[order]
    keys = list(map(key_of, rows.tolist()))
    # Runs of equal scores are put in key order (argsort left them in row order).
    tie = np.flatnonzero(scores[1:] == scores[:-1]).tolist()
    t = 0
    while t < len(tie):
        first = tie[t]
        while t + 1 < len(tie) and tie[t + 1] == tie[t] + 1:
            t += 1
        end = tie[t] + 2
        run = sorted(range(first, end), key=keys.__getitem__)
        rows[first:end] = rows[run]
        keys[first:end] = [keys[j] for j in run]
        t += 1
    taken = [j for j, key in enumerate(keys) if accept(key)]
    if len(taken) == len(keys):
        return rows, keys
    return rows[taken], [keys[j] for j in taken]

"""Keyword search: one tokenizer and BM25 ranking, pure Python (no numpy in the core).

The tokenizer follows SQLite FTS5's ``unicode61``: text is lower-cased, diacritics are
removed (``é`` -> ``e``), and tokens are the runs of Unicode letters and digits (``_`` and
every other character separate them). BM25 uses FTS5's constants and idf, so a native
FTS5 index can later return the same ranking: k1 = 1.2, b = 0.75,
idf = log((N - n + 0.5) / (n + 0.5)) floored at 1e-6. A query matches the documents that
hold at least one of its tokens (each distinct token counts once).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

K1 = 1.2
B = 0.75
MIN_IDF = 1e-6

_TOKEN = re.compile(r"[^\W_]+")

K = TypeVar("K", bound=Hashable)


def tokenize(text: str) -> list[str]:
    """Lower-case tokens of ``text`` without diacritics (``unicode61``'s rules)."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _TOKEN.findall(text.lower())


def strings_in(value: Any) -> Iterator[str]:
    """Every string value inside a JSON value (object keys excluded), depth first."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))


class BM25Index(Generic[K]):
    """Term statistics of one collection of documents (one namespace's entities, say),
    updated one document at a time, and the BM25 score of each document for a query."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[K, int]] = {}
        self._lengths: dict[K, int] = {}
        self._terms: dict[K, tuple[str, ...]] = {}  # each document's distinct tokens
        self._total_length = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def put(self, key: K, tokens: Iterable[str]) -> None:
        """Index (or re-index) the document ``key``."""
        self.remove(key)
        counts = Counter(tokens)
        length = sum(counts.values())
        self._lengths[key] = length
        self._total_length += length
        self._terms[key] = tuple(counts)
        for token, n in counts.items():
            self._postings.setdefault(token, {})[key] = n

    def remove(self, key: K) -> None:
        length = self._lengths.pop(key, None)
        if length is None:
            return
        self._total_length -= length
        for token in self._terms.pop(key, ()):
            docs = self._postings.get(token)
            if docs is not None:
                docs.pop(key, None)
                if not docs:
                    del self._postings[token]

    def scores(self, query_tokens: Iterable[str]) -> dict[K, float]:
        """BM25 score of every document holding at least one query token."""
        n_docs = len(self._lengths)
        if n_docs == 0:
            return {}
        avg = self._total_length / n_docs or 1.0
        out: dict[K, float] = {}
        for token in dict.fromkeys(query_tokens):  # distinct, in query order
            docs = self._postings.get(token)
            if not docs:
                continue
            n = len(docs)
            idf = max(math.log((n_docs - n + 0.5) / (n + 0.5)), MIN_IDF)
            for key, tf in docs.items():
                norm = tf + K1 * (1 - B + B * self._lengths[key] / avg)
                out[key] = out.get(key, 0.0) + idf * tf * (K1 + 1) / norm
        return out

"""Search (recall): the vocabulary shared by the manager, the HTTP API, the client and the
adapters. What the search does is in ``memstore.memory.search``; which text and vectors it
compares comes from ``memstore.embeddings``.

Modes:

* ``filter``: entities whose JSON matches ``filter`` (every hit scores 1.0);
* ``keyword``: full text over the indexed fields, ranked by BM25;
* ``semantic``: cosine similarity between the query's embedding and each item's;
* ``hybrid``: keyword and semantic rankings fused by reciprocal rank;
* ``auto``: ``hybrid`` when there is a query and an embedder, ``keyword`` when there is a
  query and no embedder, ``filter`` without a query.

A ``filter`` (modes other than ``filter`` take one too, applied before ranking) maps a
field path (dots walk nested objects: ``"author.name"``) to a value (equality) or to an
object of operators, as LangGraph's ``SearchOp.filter`` does.
"""

from __future__ import annotations

from typing import Literal

SearchMode = Literal["auto", "filter", "keyword", "semantic", "hybrid"]
SEARCH_MODES: tuple[SearchMode, ...] = ("auto", "filter", "keyword", "semantic", "hybrid")

# Comparison operators a filter accepts; a field's value without one means $eq.
FILTER_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")

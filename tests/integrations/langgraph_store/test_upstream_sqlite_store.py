"""LangGraph's own tests of its SQLite store (langgraph-checkpoint-sqlite's
``tests/test_store.py``, see ``upstream.py``), run against ``MemstoreStore`` over the
in-process manager (embedded) and over ``MemoryClient`` against a real ``memstore serve``.

What is replaced: the ``store`` fixture; ``create_vector_store(fake_embeddings, ...)``,
which opens one more such store (memstore embeds on the service: LangGraph's fake
embeddings, ``text_fields`` and distance are not the store's to choose, so its vector
tests that run rank with memstore's own search); ``fake_embeddings``, which here only
says which memory to open a store over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memstore.integrations.langgraph_store import MemstoreStore
from tests.integrations.langgraph_store import upstream
from tests.integrations.langgraph_store.support import MEMORIES, StoreMaker, sync_store

SQL_INTERNALS = "a test of the SQLite store's own SQL helpers, not of a store's behaviour"


@contextmanager
def create_vector_store(
    fake_embeddings: StoreMaker, *args: Any, **kwargs: Any
) -> Iterator[MemstoreStore]:
    """Upstream's opens a SqliteStore with the fake embeddings and ``text_fields``: here
    one more store over the same kind of memory (the service chooses what is embedded)."""
    with fake_embeddings.open() as opened:
        yield opened


globals().update(
    upstream.load(
        "langgraph-checkpoint-sqlite",
        "test_store.py",
        absent=("langgraph.store.sqlite", "tests"),
        replaced={
            "SqliteStore": MemstoreStore,
            "CharacterEmbeddings": StoreMaker,
            "create_vector_store": create_vector_store,
            "store": None,
            "fake_embeddings": None,
        },
        not_run={
            "TestSqliteStore": "opens SqliteStore itself; the same steps as "
            "test_basic_store_ops/test_list_namespaces/test_search of the postgres module",
            "test_vector_store_initialization": "reads the store's index_config of fake "
            "embeddings, which MemstoreStore refuses",
            "test_vector_update_with_embedding": "its last step expects an item put with "
            "index=False to stay out of a query's top hits: memstore indexes every item",
            "test_embed_with_path": "chooses the indexed fields per store and per put: "
            "MemstoreStore refuses that (the service chooses)",
            "test_embed_with_path_operation_config": "chooses the indexed fields per put: "
            "refused, as above",
            "test_scores": "asserts the exact cosine scores of the fake embeddings",
            "test_nonnull_migrations": SQL_INTERNALS,
            "test_escape_glob_literal": SQL_INTERNALS,
            "test_namespace_match_pattern": SQL_INTERNALS,
            "test_list_namespaces_prefix_uses_indexable_condition": SQL_INTERNALS,
            "test_sql_injection_vulnerability": "expects ValueError('Invalid filter key'); "
            "memstore refuses that key with its own InvalidInputError ('... is not a field "
            "path')",
            "test_numeric_filter_safety": "filters on infinity and NaN, which JSON cannot "
            "carry over HTTP (the client refuses them with InvalidInputError); "
            "test_store.py runs the same filters in process",
        },
    )
)


@pytest.fixture(params=MEMORIES)
def store(request: pytest.FixtureRequest) -> Iterator[MemstoreStore]:
    with sync_store(request.param, request) as opened:
        yield opened


@pytest.fixture(params=MEMORIES)
def fake_embeddings(request: pytest.FixtureRequest) -> StoreMaker:
    return StoreMaker(request.param, request)

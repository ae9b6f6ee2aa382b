"""LangGraph's own tests of its Postgres store (langgraph-checkpoint-postgres's
``tests/test_store.py``, see ``upstream.py``), run against ``MemstoreStore`` over the
in-process manager (embedded) and over ``MemoryClient`` against a real ``memstore serve``.

What is replaced: the ``store`` fixture, here with upstream's TTL configuration (6 s default
TTL, refreshed on read; memstore expires items itself, so there is no sweeper to start);
``vector_store`` and ``_create_vector_store(...)``, which here open one more store over the
same kind of memory (memstore embeds on the service: the fake embeddings, vector type,
distance and indexed fields are not the store's to choose, so the vector tests that run
rank with memstore's own search); ``fake_embeddings``, which here only says which memory to
open a store over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from memstore.integrations.langgraph_store import MemstoreStore
from tests.integrations.langgraph_store import upstream
from tests.integrations.langgraph_store.support import MEMORIES, StoreMaker, sync_store

SQL_INTERNALS = "a test of the Postgres store's own SQL helpers, not of a store's behaviour"
SQL_EXPIRY = "expires rows by editing them with SQL (memstore expires items itself)"


@contextmanager
def create_vector_store(
    vector_type: str, distance_type: str, fake_embeddings: StoreMaker, *args: Any, **kwargs: Any
) -> Iterator[MemstoreStore]:
    with fake_embeddings.open() as opened:
        yield opened


TESTS = upstream.load(
    "langgraph-checkpoint-postgres",
    "test_store.py",
    absent=("psycopg", "langgraph.store.postgres", "tests"),
    replaced={
        "PostgresStore": MemstoreStore,
        "CharacterEmbeddings": StoreMaker,
        "store": None,
        "_create_vector_store": create_vector_store,
        "_vector_params": None,
        "vector_store": None,
    },
    not_run={
        "test_escape_like_literal": SQL_INTERNALS,
        "test_namespace_match_pattern": SQL_INTERNALS,
        "test_nonnull_migrations": SQL_INTERNALS,
        "test_omit_expired_filters_read_paths": SQL_EXPIRY,
        "test_omit_expired_disabled_preserves_expired_rows": SQL_EXPIRY,
        "test_omit_expired_refresh_ttl_only_refreshes_live_rows": SQL_EXPIRY,
        "test_omit_expired_search_pagination": SQL_EXPIRY,
        "test_vector_store_initialization": "reads the store's index_config of fake "
        "embeddings, which MemstoreStore does not take",
        "test_vector_update_with_embedding": "its last step expects an item put with "
        "index=False to stay out of a query's top hits: memstore indexes every item",
        "test_embed_with_path_operation_config": "chooses the indexed fields per put "
        "(index=[...]): MemstoreStore refuses that (the service chooses)",
        "test_scores": "asserts the exact scores of the fake embeddings per distance",
    },
)
globals().update(TESTS)


@pytest.fixture(params=MEMORIES)
def store(request: pytest.FixtureRequest) -> Iterator[MemstoreStore]:
    ttl_minutes = upstream.module_globals(TESTS)["TTL_MINUTES"]
    ttl_config = {
        "default_ttl": ttl_minutes,
        "refresh_on_read": True,
        "sweep_interval_minutes": ttl_minutes / 2,
    }
    with sync_store(request.param, request, ttl=ttl_config) as opened:
        yield opened


@pytest.fixture(params=MEMORIES)
def fake_embeddings(request: pytest.FixtureRequest) -> StoreMaker:
    return StoreMaker(request.param, request)


@pytest.fixture
def vector_store(fake_embeddings: StoreMaker) -> Iterator[MemstoreStore]:
    with fake_embeddings.open() as opened:
        yield opened

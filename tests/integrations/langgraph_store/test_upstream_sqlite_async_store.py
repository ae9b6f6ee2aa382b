"""LangGraph's own async tests of its SQLite store (langgraph-checkpoint-sqlite's
``tests/test_async_store.py``, see ``upstream.py``), run against ``MemstoreStore`` made on
the test's loop, over the in-process manager (embedded) and over ``MemoryClient`` against a
real ``memstore serve``.

What is replaced: the ``store`` fixture; ``create_vector_store(fake_embeddings, ...)``, which
opens one more such store on the test's loop (memstore embeds on the service: LangGraph's
fake embeddings and ``text_fields`` are not the store's to use, so the vector tests that run
rank with memstore's own search); ``fake_embeddings``, which here only says which memory to
open a store over; ``conn_string`` (the SQLite database a vector store opens).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from memstore.integrations.langgraph_store import MemstoreStore
from tests.integrations.langgraph_store import upstream
from tests.integrations.langgraph_store.support import MEMORIES, StoreMaker, async_store


@asynccontextmanager
async def create_vector_store(
    fake_embeddings: StoreMaker, *args: Any, **kwargs: Any
) -> AsyncIterator[MemstoreStore]:
    """Upstream's opens an AsyncSqliteStore with the fake embeddings and ``text_fields``:
    here one more store on the test's loop over the same kind of memory (the service
    chooses what is embedded)."""
    async with async_store(fake_embeddings.kind, fake_embeddings.request) as opened:
        yield opened


globals().update(
    upstream.load(
        "langgraph-checkpoint-sqlite",
        "test_async_store.py",
        absent=("langgraph.store.sqlite", "tests"),
        replaced={
            "AsyncSqliteStore": MemstoreStore,
            "CharacterEmbeddings": StoreMaker,
            "create_vector_store": create_vector_store,
            "store": None,
            "fake_embeddings": None,
            "conn_string": None,
        },
        not_run={
            "test_vector_store_initialization": "reads the store's index_config of fake "
            "embeddings, which MemstoreStore does not take",
            "test_vector_update_with_embedding": "its last step expects an item put with "
            "index=False to stay out of a query's top hits: memstore indexes every item",
            "test_embed_with_path": "chooses the indexed fields per store and expects the "
            "fake embeddings' score (> 0.9) for a text found through one of them",
        },
    )
)


@pytest.fixture(params=MEMORIES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MemstoreStore]:
    async with async_store(request.param, request) as opened:
        yield opened


@pytest.fixture(params=MEMORIES)
def fake_embeddings(request: pytest.FixtureRequest) -> StoreMaker:
    return StoreMaker(request.param, request)


@pytest.fixture
def conn_string() -> str:
    """Upstream's names the SQLite database (in memory, in a file) a vector store opens;
    here ``fake_embeddings`` says which memory it opens over, so this is not used."""
    return "unused"

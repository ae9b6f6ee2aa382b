"""LangGraph's own tests of its store interface (langgraph-checkpoint's
``tests/test_store.py``, written against ``InMemoryStore``; see ``upstream.py``), run
against ``MemstoreStore`` over the in-process manager (embedded) and over ``MemoryClient``
against a real ``memstore serve``.

What is replaced: each test builds its store with ``InMemoryStore(...)``; here that call
returns the test's ``store`` (made outside the test's loop: its sync calls run on the
adapters' background loop, its async ones on the test's). The ``index`` settings a vector
test passes are not the store's to take (memstore embeds on the service), so the vector
tests that run rank with memstore's own search. The tests of LangGraph's
``AsyncBatchedBaseStore`` wrap the store they get that way (upstream's
``MockAsyncBatchedStore``), so they run over ``MemstoreStore`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from memstore.integrations.langgraph_store import MemstoreStore
from tests.integrations.langgraph_store import upstream
from tests.integrations.langgraph_store.support import MEMORIES, sync_store

LANGGRAPH_ITSELF = "a test of a LangGraph helper function that takes no store"
INDEX_FALSE = (
    "its last step expects an item put with index=False to stay out of a query's top "
    "hits: memstore indexes every item"
)
MOCKER = "spies on InMemoryStore.batch with pytest-mock (not installed here)"

EMBED_TEST_UTILS = upstream.load_helper("langgraph-checkpoint", "embed_test_utils.py")
TESTS = upstream.load(
    "langgraph-checkpoint",
    "test_store.py",
    absent=("tests", "pytest_mock"),
    replaced={
        "InMemoryStore": None,
        "CharacterEmbeddings": EMBED_TEST_UTILS.CharacterEmbeddings,
        "fake_embeddings": None,
    },
    not_run={
        "test_async_batch_store": MOCKER,
        "test_async_batch_store_deduplication": MOCKER,
        "test_dedupe_ops_maps_repeated_reads_and_puts_to_one_op": LANGGRAPH_ITSELF,
        "test_get_text_at_path": LANGGRAPH_ITSELF,
        "test_get_text_at_path_with_non_dict_mapping": LANGGRAPH_ITSELF,
        "test_validate_op_namespace_rejects_invalid_labels": LANGGRAPH_ITSELF,
        "test_validate_op_namespace_allows_empty_prefix_and_wildcards": LANGGRAPH_ITSELF,
        "test_rejects_invalid_namespace_labels": MOCKER,
        "test_async_rejects_invalid_namespace_labels": MOCKER,
        "test_vector_store_initialization": "reads the store's index_config of fake "
        "embeddings, which MemstoreStore does not take",
        "test_vector_update_with_embedding": INDEX_FALSE,
        "test_async_vector_update_with_embedding": INDEX_FALSE,
        "test_embed_with_path": "chooses the indexed fields per store and per put, and "
        "expects equal scores from the fake embeddings for texts it made equal that way",
    },
)
globals().update(TESTS)


@pytest.fixture(params=MEMORIES, autouse=True)
def store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MemstoreStore]:
    with sync_store(request.param, request) as opened:

        def in_memory_store(**index: Any) -> MemstoreStore:
            return opened

        monkeypatch.setitem(upstream.module_globals(TESTS), "InMemoryStore", in_memory_store)
        yield opened


@pytest.fixture
def fake_embeddings() -> Any:
    """Upstream's: the embeddings a vector test gives ``InMemoryStore(index=...)``, which
    the store here does not take (see above)."""
    return EMBED_TEST_UTILS.CharacterEmbeddings(dims=500)

"""``MemstoreStore`` beyond LangGraph's own tests: how items map onto memstore entities,
the errors of what cannot be stored, TTL in minutes and its refresh, the ``index``
settings it refuses, and recall with a query. Over the in-process manager on every backend
(embedded, Redis, Redis Cluster, MongoDB) and over ``MemoryClient`` against a real
``memstore serve``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp, SearchOp

from memstore.core.errors import InvalidInputError, PayloadTooLargeError
from memstore.integrations.langgraph_store import (
    MemstoreStore,
    id_key,
    key_id,
    namespace_type,
    type_namespace,
)
from tests.integrations.langgraph_store.support import ALL_MEMORIES, async_store


@pytest.fixture(params=ALL_MEMORIES)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MemstoreStore]:
    async with async_store(request.param, request) as opened:
        yield opened


# -- names (pure logic) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "entity_type"),
    [
        (("memories",), "lg.memories"),
        (("memories", "user-1"), "lg.memories.user--1"),
        (("user_123", "Prefs"), "lg.user_123.Prefs"),
        (("a b", "é", "x/y"), "lg.a-20b.-C3-A9.x-2Fy"),
        (("langgraph", "-", "--"), "lg.langgraph.--.----"),
    ],
)
def test_namespace_types(namespace: tuple[str, ...], entity_type: str) -> None:
    assert namespace_type(namespace) == entity_type
    assert type_namespace(entity_type) == namespace


@pytest.mark.parametrize(
    "entity_type",
    ["memories", "lg.", "lg.a..b", "lg.a-2Db", "lg.a-2db", "lg.a-ZZ", "lg.a-C3", "lgx.a"],
)
def test_types_the_store_did_not_make(entity_type: str) -> None:
    assert type_namespace(entity_type) is None


@pytest.mark.parametrize(
    ("key", "entity_id"),
    [
        ("doc1", "doc1"),
        ("a.b:c@d+e-f", "a.b:c@d+e-f"),
        ("_private", "__private"),
        ("", "_"),
        ("-dash", "_-dash"),
        ("a=b c", "a=3Db=20c"),
        ("é", "_=C3=A9"),
        ("7", "7"),
    ],
)
def test_key_ids(key: str, entity_id: str) -> None:
    assert key_id(key) == entity_id
    assert id_key(entity_id) == key


def test_long_namespaces_are_hashed() -> None:
    assert namespace_type(("x" * 61,)) == "lg." + "x" * 61
    hashed = namespace_type(("x" * 62,))
    assert hashed.startswith("lgh.") and len(hashed) == 52
    assert type_namespace(hashed) is None  # its labels are in the registry
    assert namespace_type(("x" * 62,)) == hashed
    assert namespace_type(("x" * 62, "y")) != hashed


def test_keys_too_long_for_memstore() -> None:
    with pytest.raises(ValueError, match="too long for memstore"):
        key_id("k" * 257)
    assert key_id("k" * 256) == "k" * 256
    with pytest.raises(ValueError, match="too long for memstore"):
        key_id("é" * 43)  # 258 characters escaped


# -- items as entities ----------------------------------------------------------------------


async def test_items_are_entities(store: MemstoreStore) -> None:
    await store.aput(("memories", "user-1"), "likes", {"food": "pizza", "n": 2})
    record = await store.memory.get_entity("lg.memories.user--1", "likes")
    assert record is not None and record.data == {"food": "pizza", "n": 2}
    item = await store.aget(("memories", "user-1"), "likes")
    assert item is not None
    assert item.value == {"food": "pizza", "n": 2}
    assert item.created_at.timestamp() == pytest.approx(record.created_at, abs=1e-3)
    assert item.updated_at.timestamp() == pytest.approx(record.updated_at, abs=1e-3)
    assert item.created_at.tzinfo is not None

    await asyncio.sleep(0.01)
    await store.aput(("memories", "user-1"), "likes", {"food": "soup"})
    again = await store.aget(("memories", "user-1"), "likes")
    assert again is not None and again.value == {"food": "soup"}
    assert again.created_at == item.created_at
    assert again.updated_at > item.updated_at

    await store.adelete(("memories", "user-1"), "likes")
    assert await store.memory.get_entity("lg.memories.user--1", "likes") is None


async def test_changing_an_item_changes_nothing_stored(store: MemstoreStore) -> None:
    await store.aput(("ns",), "k", {"text": "kept", "tags": ["a"]})
    item = await store.aget(("ns",), "k")
    assert item is not None
    item.value["text"] = "changed"
    item.value["tags"].append("b")
    (hit,) = await store.asearch(("ns",), query="kept")
    hit.value["text"] = "changed"
    again = await store.aget(("ns",), "k")
    assert again is not None and again.value == {"text": "kept", "tags": ["a"]}
    (hit,) = await store.asearch(("ns",), query="kept")
    assert hit.value == {"text": "kept", "tags": ["a"]}


async def test_other_entities_are_not_namespaces(store: MemstoreStore) -> None:
    await store.memory.save_entity("notes", "n1", {"text": "not a store item"})
    await store.memory.save_entity("lg.a-2Db", "n1", {"text": "not canonical"})
    await store.aput(("a-b",), "k", {"text": "an item"})
    assert await store.alist_namespaces() == [("a-b",)]


async def test_last_put_of_an_item_in_a_batch_counts(store: MemstoreStore) -> None:
    await store.abatch(
        [
            PutOp(("ns",), "k", {"v": 1}),
            PutOp(("ns",), "k", {"v": 2}),
            PutOp(("ns",), "gone", {"v": 1}),
            PutOp(("ns",), "gone", None),
        ]
    )
    item = await store.aget(("ns",), "k")
    assert item is not None and item.value == {"v": 2}
    assert await store.aget(("ns",), "gone") is None


async def test_a_batch_that_cannot_be_stored_writes_nothing(store: MemstoreStore) -> None:
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([PutOp(("ns",), "first", {"v": 1}), PutOp(("a", ""), "k", {})])
    with pytest.raises(ValueError, match="too long for memstore"):
        await store.abatch([PutOp(("ns",), "first", {"v": 1}), PutOp(("ns",), "k" * 300, {})])
    with pytest.raises(ValueError, match="MEMSTORE_SEARCH_FIELDS"):
        await store.abatch(
            [PutOp(("ns",), "first", {"v": 1}), PutOp(("ns",), "k", {"t": "x"}, index=["t"])]
        )
    with pytest.raises(InvalidNamespaceError):
        await store.abatch([PutOp(("ns",), "first", {"v": 1}), GetOp(("a.b",), "k")])
    assert await store.aget(("ns",), "first") is None
    assert await store.memory.get_entity_types() == []


async def test_a_value_memstore_refuses_fails_the_batch_before_any_write(
    store: MemstoreStore,
) -> None:
    with pytest.raises(InvalidInputError, match="NaN"):
        await store.abatch(
            [PutOp(("ns",), "a", {"x": 1}), PutOp(("ns",), "b", {"x": float("nan")})]
        )
    await asyncio.sleep(0.2)  # a write left running would land by now
    assert await store.aget(("ns",), "a") is None
    assert await store.memory.get_entity_types() == []


# In process only: a body too large for the service is also one aiohttp's client warns
# about (a ResourceWarning, an error under the test settings), before the service sees it.
@pytest.mark.parametrize("kind", [k for k in ALL_MEMORIES if k != "http"])
async def test_a_failed_batch_has_ended_all_its_writes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    async with async_store(kind, request) as store:
        # Too big for memstore: refused when its write runs, not by the checks before.
        too_big = {"text": "x" * 2_000_000}
        with pytest.raises(PayloadTooLargeError):
            await store.abatch([PutOp(("ns",), "a", {"x": 1}), PutOp(("ns",), "b", too_big)])
        # The other write ended before the error reached here: it is stored, at once.
        item = await store.memory.get_entity(namespace_type(("ns",)), "a")
        assert item is not None and item.data == {"x": 1}


async def test_memstore_refuses_what_json_cannot_carry(store: MemstoreStore) -> None:
    with pytest.raises(InvalidInputError):
        await store.aput(("ns",), "k", {"v": float("nan")})
    assert await store.aget(("ns",), "k") is None


async def test_index_settings_the_service_owns(store: MemstoreStore) -> None:
    with pytest.raises(ValueError, match="MEMSTORE_EMBEDDER"):
        MemstoreStore(store.memory, index={"dims": 3, "embed": lambda texts: [[0.0] * 3]})
    with pytest.raises(ValueError, match="MEMSTORE_SEARCH_FIELDS"):
        MemstoreStore(store.memory, index={"dims": 3, "fields": ["text"]})
    MemstoreStore(store.memory, index={"dims": 3, "fields": ["$"]})
    await store.aput(("ns",), "k", {"text": "kept"}, index=False)
    item = await store.aget(("ns",), "k")
    assert item is not None and item.value == {"text": "kept"}


async def test_long_namespaces(store: MemstoreStore) -> None:
    org, user = "7c4dae43-61fb-4288-ac9c-d0aea4909dfd", "2f9d15ea-850f-4c50-8f61-33d4a9aa6dc6"
    long_namespace = (org, user, "memories")
    await store.aput(long_namespace, "pet", {"text": "Ada has a dog named Rex"})
    await store.aput((org, "shared"), "rule", {"text": "be kind"})
    hashed = namespace_type(long_namespace)
    assert (await store.memory.get_entity(hashed, "pet")) is not None
    assert (await store.memory.load_entity("lg-namespaces", hashed)) == {
        "namespace": list(long_namespace)
    }
    item = await store.aget(long_namespace, "pet")
    assert item is not None and item.namespace == long_namespace

    # A store that never wrote there reads the registry.
    fresh = MemstoreStore(store.memory)
    assert await fresh.alist_namespaces(prefix=(org,)) == [(org, user, "memories"), (org, "shared")]
    assert await fresh.alist_namespaces(prefix=(org,), max_depth=2) == [
        (org, user),
        (org, "shared"),
    ]
    hits = await fresh.asearch((org, user), query="dog")
    assert [(h.namespace, h.key) for h in hits] == [(long_namespace, "pet")]
    assert {h.key for h in await fresh.asearch((org,))} == {"pet", "rule"}

    # A registry entry that does not name its type is not believed.
    await store.memory.save_entity("lg-namespaces", hashed, {"namespace": ["other"]})
    assert await MemstoreStore(store.memory).alist_namespaces() == [(org, "shared")]


# -- TTL --------------------------------------------------------------------------------------


async def test_ttl_in_minutes(store: MemstoreStore) -> None:
    before = time.time()
    await store.aput(("ns",), "short", {"v": 1}, ttl=2)
    await store.aput(("ns",), "forever", {"v": 1})
    short = await store.memory.get_entity("lg.ns", "short")
    forever = await store.memory.get_entity("lg.ns", "forever")
    assert short is not None and short.expires_at is not None
    assert before + 120 <= short.expires_at <= time.time() + 120
    assert forever is not None and forever.expires_at is None


@pytest.mark.parametrize("kind", ALL_MEMORIES)
async def test_default_ttl_and_refresh_on_read(kind: str, request: pytest.FixtureRequest) -> None:
    ttl_config = {"default_ttl": 1.0, "refresh_on_read": True}
    async with async_store(kind, request, ttl=ttl_config) as store:
        await store.aput(("ns",), "k", {"text": "remember me"})
        first = await store.memory.get_entity("lg.ns", "k")
        assert first is not None and first.expires_at is not None
        assert first.expires_at - first.updated_at == pytest.approx(60)

        await asyncio.sleep(0.05)
        await store.aget(("ns",), "k", refresh_ttl=False)
        unrefreshed = await store.memory.get_entity("lg.ns", "k")
        assert unrefreshed is not None and unrefreshed.expires_at == first.expires_at

        await store.aget(("ns",), "k")  # refresh_on_read: the store's default
        refreshed = await store.memory.get_entity("lg.ns", "k")
        assert refreshed is not None and refreshed.expires_at is not None
        assert refreshed.expires_at > first.expires_at
        assert refreshed.expires_at - refreshed.updated_at == pytest.approx(60)
        assert refreshed.data == first.data

        await asyncio.sleep(0.05)
        await store.asearch(("ns",))
        searched = await store.memory.get_entity("lg.ns", "k")
        assert searched is not None and searched.expires_at is not None
        assert searched.expires_at > refreshed.expires_at

        # An item without a TTL stays without one when read.
        await store.aput(("ns",), "forever", {"v": 1}, ttl=None)
        await store.aget(("ns",), "forever")
        forever = await store.memory.get_entity("lg.ns", "forever")
        assert forever is not None and forever.expires_at is None and forever.version == 1


async def test_expired_items_are_gone(store: MemstoreStore) -> None:
    # Three seconds: one was once too short to read the item back on a busy machine.
    await store.aput(("ns",), "brief", {"v": 1}, ttl=3 / 60)
    await store.aput(("other",), "kept", {"v": 1})
    assert await store.aget(("ns",), "brief", refresh_ttl=False) is not None
    await asyncio.sleep(3.2)
    assert await store.aget(("ns",), "brief") is None
    assert await store.asearch(("ns",)) == []
    assert await store.alist_namespaces() == [("other",)]


# -- search -----------------------------------------------------------------------------------

MEMORIES_OF_ADA = {
    "dog": {"text": "Ada has a dog named Rex", "kind": "pet", "year": 2019},
    "job": {"text": "Ada works as a dentist in Lyon", "kind": "work", "year": 2021},
    "food": {"text": "Ada loves spicy ramen", "kind": "taste", "year": 2023},
}


async def test_search_with_a_query_ranks(store: MemstoreStore) -> None:
    for key, value in MEMORIES_OF_ADA.items():
        await store.aput(("memories", "ada"), key, value)
    await store.aput(("memories", "bob"), "dog", {"text": "Bob has a dog named Max"})

    hits = await store.asearch(("memories", "ada"), query="what is the name of the dog?")
    assert hits[0].key == "dog"
    assert hits[0].namespace == ("memories", "ada")
    scores = [hit.score for hit in hits if hit.score is not None]
    assert len(scores) == len(hits)
    assert scores == sorted(scores, reverse=True)

    both = await store.asearch(("memories",), query="dog named", limit=2)
    assert {(h.namespace[1], h.key) for h in both} == {("ada", "dog"), ("bob", "dog")}

    filtered = await store.asearch(
        ("memories",), query="dog", filter={"year": {"$gte": 2021}}, limit=10
    )
    assert {h.key for h in filtered} <= {"job", "food"}

    unranked = await store.asearch(("memories", "ada"), filter={"kind": "work"})
    assert [(h.key, h.score) for h in unranked] == [("job", None)]


async def test_search_pages_with_offset(store: MemstoreStore) -> None:
    for i in range(7):
        await store.aput(("pages",), f"k{i}", {"i": i})
    store.page_size = 2  # several memstore pages per search
    seen = [
        h.key
        for offset in range(0, 7, 3)
        for h in await store.asearch(("pages",), limit=3, offset=offset)
    ]
    assert sorted(seen) == [f"k{i}" for i in range(7)]
    assert await store.asearch(("pages",), limit=0) == []
    assert await store.asearch(("nothing",)) == []


async def test_search_skips_entities_the_store_did_not_make(store: MemstoreStore) -> None:
    for key in ("k1", "k2", "k3"):
        await store.aput(("docs",), key, {"text": key})
    # An entity saved directly in the store's type, with an id no key encodes to.
    await store.memory.save_entity(namespace_type(("docs",)), "_k9", {"text": "foreign"})
    store.page_size = 2
    assert sorted(h.key for h in await store.asearch(("docs",), limit=3)) == ["k1", "k2", "k3"]
    assert len(await store.asearch(("docs",), limit=2, offset=1)) == 2
    assert len(await store.asearch(("docs",), query="k1 k2 k3 foreign", limit=3)) == 3


async def test_batch_search_sees_the_state_before_its_writes(store: MemstoreStore) -> None:
    await store.aput(("ns",), "old", {"v": 1})
    found, _, got = await store.abatch(
        [SearchOp(("ns",)), PutOp(("ns",), "new", {"v": 2}), GetOp(("ns",), "new")]
    )
    assert [h.key for h in found] == ["old"]  # type: ignore[union-attr]
    assert got is None
    assert {h.key for h in await store.asearch(("ns",))} == {"old", "new"}


@pytest.mark.parametrize("kind", ["embedded", "redis"])
async def test_numeric_filters_beyond_json(kind: str, request: pytest.FixtureRequest) -> None:
    """In process, filters on numbers JSON cannot carry (infinities, NaN, integers beyond
    64 bits) compare as Python numbers do, as in LangGraph's own stores."""
    async with async_store(kind, request) as store:
        for key, price in (("a", 10), ("b", 20), ("c", 30)):
            await store.aput(("items",), key, {"price": price})

        async def found(condition: dict[str, object]) -> list[str]:
            hits = await store.asearch(("items",), filter={"price": condition}, limit=10)
            return sorted(hit.key for hit in hits)

        assert await found({"$lt": float("inf")}) == ["a", "b", "c"]
        assert await found({"$gt": float("-inf")}) == ["a", "b", "c"]
        assert await found({"$eq": float("nan")}) == []
        assert await found({"$lt": 10**100}) == ["a", "b", "c"]
        assert await found({"$gt": 15}) == ["b", "c"]

"""A real LangGraph graph with ``MemstoreStore`` as its store: one node writes memories,
the next recalls them with ``store.search`` and a query; a second run (a new thread, the
same user) recalls what the first wrote. Async (``ainvoke``, async nodes) and sync
(``invoke``, sync nodes), over the in-process manager on every backend and over ``MemoryClient``
against a real ``memstore serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from memstore.integrations.langgraph_store import MemstoreStore
from tests.integrations.langgraph_store.support import ALL_MEMORIES, async_store, sync_store


class State(TypedDict, total=False):
    user: str
    learned: dict[str, str]
    question: str
    recalled: list[str]


def namespace(state: State) -> tuple[str, ...]:
    return ("memories", state["user"])


async def remember(state: State, *, store: BaseStore) -> State:
    for key, text in state.get("learned", {}).items():
        await store.aput(namespace(state), key, {"text": text})
    return {}


async def recall(state: State, *, store: BaseStore) -> State:
    hits = await store.asearch(namespace(state), query=state["question"], limit=2)
    return {"recalled": [hit.value["text"] for hit in hits]}


def remember_sync(state: State, *, store: BaseStore) -> State:
    for key, text in state.get("learned", {}).items():
        store.put(namespace(state), key, {"text": text})
    return {}


def recall_sync(state: State, *, store: BaseStore) -> State:
    hits = store.search(namespace(state), query=state["question"], limit=2)
    return {"recalled": [hit.value["text"] for hit in hits]}


def build(store: BaseStore, remember_node: Any, recall_node: Any) -> Any:
    graph = StateGraph(State)
    graph.add_node("remember", remember_node)
    graph.add_node("recall", recall_node)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "recall")
    graph.add_edge("recall", END)
    return graph.compile(store=store)


FIRST_RUN: State = {
    "user": "ada",
    "learned": {
        "pet": "Ada has a dog named Rex",
        "job": "Ada works as a dentist in Lyon",
        "food": "Ada loves spicy ramen",
    },
    "question": "what is the dog called?",
}
SECOND_RUN: State = {"user": "ada", "question": "where does Ada work as a dentist?"}


@pytest.fixture(params=ALL_MEMORIES)
async def astore(request: pytest.FixtureRequest) -> AsyncIterator[MemstoreStore]:
    async with async_store(request.param, request) as opened:
        yield opened


@pytest.fixture(params=ALL_MEMORIES)
def store(request: pytest.FixtureRequest) -> Iterator[MemstoreStore]:
    with sync_store(request.param, request) as opened:
        yield opened


async def test_graph_remembers_and_recalls(astore: MemstoreStore) -> None:
    graph = build(astore, remember, recall)
    first = await graph.ainvoke(FIRST_RUN, {"configurable": {"thread_id": "t1"}})
    assert first["recalled"][0] == "Ada has a dog named Rex"
    # Another thread, nothing learned: the memories are the store's, not the thread's.
    second = await graph.ainvoke(SECOND_RUN, {"configurable": {"thread_id": "t2"}})
    assert second["recalled"][0] == "Ada works as a dentist in Lyon"
    # What the graph wrote is memstore's own entities.
    assert await astore.memory.get_entity_types() == ["lg.memories.ada"]
    assert (await astore.memory.load_entity("lg.memories.ada", "pet")) == {
        "text": "Ada has a dog named Rex"
    }


def test_sync_graph_remembers_and_recalls(store: MemstoreStore) -> None:
    graph = build(store, remember_sync, recall_sync)
    first = graph.invoke(FIRST_RUN, {"configurable": {"thread_id": "t1"}})
    assert first["recalled"][0] == "Ada has a dog named Rex"
    second = graph.invoke(SECOND_RUN, {"configurable": {"thread_id": "t2"}})
    assert second["recalled"][0] == "Ada works as a dentist in Lyon"

"""``MemstoreSaver`` (LangGraph checkpointer) against real backends and a real service.

LangGraph's own conformance suite (``langgraph-checkpoint-conformance``) runs against the
saver over the in-process manager on embedded, Redis, Redis Cluster and MongoDB
(FerretDB), and over ``MemoryClient`` against real ``memstore serve`` processes (embedded
and Redis). A real
``StateGraph`` with a scripted fake chat model (no network) runs two turns on each; the
first turn's messages are then read back through memstore's own API.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import (
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
)
from langgraph.checkpoint.conformance.report import CapabilityReport
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.serde.types import ERROR
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command, interrupt

from memstore.client import MemoryClient
from memstore.core.errors import PayloadTooLargeError
from memstore.core.settings import Settings
from memstore.integrations.background_loop import run_sync
from memstore.integrations.langgraph import (
    MemstoreSaver,
    checkpoint_conversation_id,
    thread_conversation_id,
)
from memstore.memory.api import MemoryAPI
from memstore.memory.manager import DistributedMemoryManager
from tests.servers.redis import LocalRedis, unique_prefix
from tests.support.procs import ServiceProcess, running_service

MANAGER_BACKENDS = ["embedded", "redis", "redis_cluster", "mongodb"]
SERVICE_BACKENDS = ["embedded", "redis"]
MEMORIES = MANAGER_BACKENDS + [f"http-{b}" for b in SERVICE_BACKENDS]

#: What every backend must pass: every base capability, and the extended ones the saver
#: implements (``delete_for_runs`` is not: it would read every checkpoint of a namespace).
IMPLEMENTED = {c.value for c in BASE_CAPABILITIES} | {"copy_thread", "prune"}


def fresh_namespace() -> str:
    return f"lg{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def redis_service(
    redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    env = {
        "MEMORY_TYPE": "redis",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis_server.port),
        "REDIS_PREFIX": unique_prefix(),
    }
    with running_service(tmp_path_factory.mktemp("langgraph-redis-service"), env) as svc:
        yield svc


@pytest.fixture(params=MEMORIES)
async def memory(request: pytest.FixtureRequest) -> AsyncIterator[MemoryAPI]:
    """In process on each backend, or over HTTP to a real service (``http-<backend>``)."""
    name: str = request.param
    if name.startswith("http-"):
        service: ServiceProcess = request.getfixturevalue(
            "live_service" if name == "http-embedded" else "redis_service"
        )
        async with MemoryClient(service.url, namespace=fresh_namespace()) as client:
            yield client
    else:
        settings: Settings = request.getfixturevalue(f"{name}_settings")
        async with DistributedMemoryManager(settings=settings, namespace=fresh_namespace()) as m:
            yield m


# -- LangGraph's conformance suite ------------------------------------------------------


async def conformance(memory: MemoryAPI, where: str) -> CapabilityReport:
    @checkpointer_test(name=f"MemstoreSaver({type(memory).__name__}, {where})")
    async def saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        # A namespace per capability suite, as the suite wants a fresh saver.
        yield MemstoreSaver(memory.for_namespace(fresh_namespace()))

    report = await validate(saver)
    report.print_report()  # shown with -s, and on failure
    return report


def check_report(report: CapabilityReport) -> None:
    failures = {n: r.failures for n, r in report.results.items() if r.failures}
    assert not failures, failures
    assert report.passed_all_base()
    passed = {name for name, r in report.results.items() if r.passed}
    assert passed == IMPLEMENTED
    assert all(report.results[name].tests_passed > 0 for name in passed)
    for cap in EXTENDED_CAPABILITIES - {c for c in EXTENDED_CAPABILITIES if c.value in passed}:
        assert not report.results[cap.value].detected


async def test_conformance(memory: MemoryAPI, request: pytest.FixtureRequest) -> None:
    check_report(await conformance(memory, request.node.callspec.params["memory"]))


# -- a real graph -----------------------------------------------------------------------


class ScriptedChat:
    """A graph whose one node answers with a scripted fake chat model and records what
    the model was shown."""

    def __init__(self, replies: list[str]) -> None:
        self.model = GenericFakeChatModel(messages=iter([AIMessage(r) for r in replies]))
        self.seen: list[list[str]] = []

    async def answer(self, state: MessagesState) -> dict[str, list[BaseMessage]]:
        self.seen.append([str(m.content) for m in state["messages"]])
        return {"messages": [await self.model.ainvoke(state["messages"])]}

    def answer_sync(self, state: MessagesState) -> dict[str, list[BaseMessage]]:
        self.seen.append([str(m.content) for m in state["messages"]])
        return {"messages": [self.model.invoke(state["messages"])]}

    def build(self, saver: BaseCheckpointSaver[Any]) -> Any:
        graph = StateGraph(MessagesState)
        graph.add_node("model", RunnableLambda(self.answer_sync, afunc=self.answer))
        graph.add_edge(START, "model")
        return graph.compile(checkpointer=saver)


def decode(stored: dict[str, Any]) -> Any:
    """A value as the saver stores it, decoded with LangGraph's default serializer."""
    return JsonPlusSerializer().loads_typed((stored["type"], base64.b64decode(stored["data"])))


async def stored_messages(memory: MemoryAPI, thread_id: str) -> list[str]:
    """The latest root checkpoint's messages of a thread, read with memstore's own
    operations: the thread log names the checkpoint, whose conversation holds it."""
    log = await memory.load_messages(f"langgraph.thread:{thread_id}")
    latest = [e.message for e in log if e.message["checkpoint_ns"] == ""][-1]
    records = await memory.load_messages(
        f"langgraph.checkpoint:{thread_id}::{latest['checkpoint_id']}"
    )
    body = next(r.message for r in records if r.message["kind"] == "checkpoint")
    checkpoint = decode(body["checkpoint"])
    return [str(m.content) for m in checkpoint["channel_values"]["messages"]]


async def history(graph: Any, config: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A thread's states, newest first, as comparable tuples."""
    return [
        (
            [m.content for m in s.values.get("messages", [])],
            s.next,
            s.metadata["source"] if s.metadata else None,
            s.metadata["step"] if s.metadata else None,
            s.parent_config is None,
        )
        async for s in graph.aget_state_history(config)
    ]


async def test_graph_two_turns(memory: MemoryAPI) -> None:
    replies = ["Hello Ada.", "You told me your name is Ada."]
    chat = ScriptedChat(replies)
    graph = chat.build(MemstoreSaver(memory))
    config = {"configurable": {"thread_id": "chat-1"}}

    await graph.ainvoke({"messages": [HumanMessage("Hi, I am Ada.")]}, config)
    assert await stored_messages(memory, "chat-1") == ["Hi, I am Ada.", "Hello Ada."]

    out = await graph.ainvoke({"messages": [HumanMessage("What is my name?")]}, config)
    turns = ["Hi, I am Ada.", "Hello Ada.", "What is my name?", "You told me your name is Ada."]
    assert [m.content for m in out["messages"]] == turns
    # The second turn started from the first one's state, read back from memstore.
    assert chat.seen == [turns[:1], turns[:3]]
    assert await stored_messages(memory, "chat-1") == turns

    # The state's history is the one LangGraph's reference saver keeps for the same run.
    reference = ScriptedChat(replies).build(InMemorySaver())
    for text in ("Hi, I am Ada.", "What is my name?"):
        await reference.ainvoke({"messages": [HumanMessage(text)]}, config)
    expected = await history(reference, config)
    assert len(expected) == 6
    assert await history(graph, config) == expected


def approval_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """A graph whose subgraph (stored under its own checkpoint namespace) stops for a
    human's answer (an interrupt: LangGraph's special INTERRUPT and RESUME writes)."""

    def ask(state: MessagesState) -> dict[str, list[tuple[str, str]]]:
        return {"messages": [("ai", f"approved: {interrupt('approve?')}")]}

    inner = StateGraph(MessagesState).add_node(ask).add_edge(START, "ask").compile()
    outer = StateGraph(MessagesState).add_node("inner", inner).add_edge(START, "inner")
    return outer.compile(checkpointer=saver)


async def run_approval(saver: BaseCheckpointSaver[Any]) -> tuple[Any, ...]:
    graph = approval_graph(saver)
    config: RunnableConfig = {"configurable": {"thread_id": "approval"}}
    first = await graph.ainvoke({"messages": [HumanMessage("deploy")]}, config)
    waiting = await graph.aget_state(config, subgraphs=True)
    (task,) = waiting.tasks
    done = await graph.ainvoke(Command(resume="yes"), config)
    listed = [t async for t in saver.alist({"configurable": {"thread_id": "approval"}})]
    by_ns: dict[bool, list[Any]] = {}
    for t in listed:
        by_ns.setdefault(t.config["configurable"]["checkpoint_ns"] != "", []).append(
            (t.metadata.get("source"), t.metadata.get("step"))
        )
    return (
        [i.value for i in first["__interrupt__"]],
        task.state.config["configurable"]["checkpoint_ns"].split(":")[0],
        [m.content for m in done["messages"]],
        by_ns,
    )


async def test_graph_subgraph_interrupt_and_resume(memory: MemoryAPI) -> None:
    """A subgraph's checkpoints and an interrupt's writes, resumed: the same outcome and
    the same checkpoints, namespace by namespace, as with LangGraph's reference saver."""
    saver = MemstoreSaver(memory)
    outcome = await run_approval(saver)
    assert outcome == await run_approval(InMemorySaver())
    assert outcome[:3] == (["approve?"], "inner", ["deploy", "approved: yes"])
    # Across namespaces, newest first is by checkpoint id, as in LangGraph's SQL savers.
    ids = [
        t.checkpoint["id"] async for t in saver.alist({"configurable": {"thread_id": "approval"}})
    ]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True)


async def test_graph_sync_invoke_from_a_thread(memory: MemoryAPI) -> None:
    """``graph.invoke`` (the sync API) from a worker thread runs the saver's calls on the
    loop that owns the memory's connections."""
    chat = ScriptedChat(["one", "two"])
    graph = chat.build(MemstoreSaver(memory))
    config = {"configurable": {"thread_id": "sync-chat"}}
    await asyncio.to_thread(graph.invoke, {"messages": [HumanMessage("a")]}, config)
    out = await asyncio.to_thread(graph.invoke, {"messages": [HumanMessage("b")]}, config)
    assert [m.content for m in out["messages"]] == ["a", "one", "b", "two"]
    state = await asyncio.to_thread(graph.get_state, config)
    assert len(state.values["messages"]) == 4
    assert await stored_messages(memory, "sync-chat") == ["a", "one", "b", "two"]


# -- what the suite does not cover ------------------------------------------------------


async def put(
    saver: MemstoreSaver, thread_id: str, ns: str = "", parent: str | None = None, **md: Any
) -> RunnableConfig:
    config = generate_config(thread_id, checkpoint_ns=ns, checkpoint_id=parent)
    config["configurable"]["thread_id"] = thread_id  # also "" (generate_config makes one up)
    checkpoint = generate_checkpoint(channel_values={"v": md}, channel_versions={"v": 1})
    return await saver.aput(config, checkpoint, generate_metadata(**md), {"v": 1})


async def test_any_name_works(memory: MemoryAPI) -> None:
    """Thread ids, namespaces and checkpoint ids outside memstore's name charset, and too
    long for it, are stored and read back exactly; binary values round-trip."""
    saver = MemstoreSaver(memory)
    odd = "ü/ a:b{c}=3A\x00"
    long = "x" * 300
    for thread_id, ns in [(odd, "parent:task/1"), (long, long), ("", "")]:
        stored = await put(saver, thread_id, ns)
        assert stored["configurable"]["thread_id"] == thread_id
        await saver.aput_writes(stored, [("blob", b"\x00\xff" * 10)], "task:1")
        thread: RunnableConfig = {"configurable": {"thread_id": thread_id}}
        tup = await saver.aget_tuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
        )
        assert tup is not None
        assert tup.config["configurable"]["thread_id"] == thread_id
        assert tup.config["configurable"]["checkpoint_ns"] == ns
        assert tup.pending_writes == [("task:1", "blob", b"\x00\xff" * 10)]
        assert [t.config async for t in saver.alist(thread)] == [stored]
    ids = {c.conversation_id for c in (await memory.list_conversations(limit=50)).items}
    assert "langgraph.thread:=C3=BC=2F=20a=3Ab=7Bc=7D=3D3A=00" in ids  # escaped, readable
    assert sum(i.startswith("langgraph.thread:=h") for i in ids) == 1  # too long: hashed
    assert "langgraph.thread:" in ids  # the empty thread id


async def test_concurrent_writers_of_one_thread(memory: MemoryAPI) -> None:
    """Two savers write one thread at once (puts and many parallel put_writes): nothing
    is lost or mixed up."""
    savers = [MemstoreSaver(memory), MemstoreSaver(memory)]
    first = await put(savers[0], "shared", step=0)
    tasks = [f"task-{i}" for i in range(20)]
    await asyncio.gather(
        *(
            savers[i % 2].aput_writes(first, [("ch", i), ("other", -i)], task)
            for i, task in enumerate(tasks)
        ),
        *(put(savers[i % 2], "shared", step=i) for i in range(1, 11)),
    )
    tup = await savers[1].aget_tuple(first)
    assert tup is not None and tup.pending_writes is not None
    assert sorted(tup.pending_writes) == sorted(
        [(t, "ch", i) for i, t in enumerate(tasks)]
        + [(t, "other", -i) for i, t in enumerate(tasks)]
    )
    listed = [t async for t in savers[0].alist(generate_config("shared"))]
    assert sorted(t.metadata["step"] for t in listed) == list(range(11))


async def test_writes_before_their_checkpoint(memory: MemoryAPI) -> None:
    """With ``durability="async"`` a task's writes may be stored before the checkpoint
    they belong to: they are found once it is."""
    saver = MemstoreSaver(memory)
    config = generate_config("early", checkpoint_id="1f0-early")
    await saver.aput_writes(config, [("ch", "w")], "t1")
    assert await saver.aget_tuple(config) is None
    assert [t async for t in saver.alist(generate_config("early"))] == []
    checkpoint = generate_checkpoint(checkpoint_id="1f0-early")
    await saver.aput(generate_config("early"), checkpoint, generate_metadata(), {})
    tup = await saver.aget_tuple(generate_config("early"))
    assert tup is not None and tup.pending_writes == [("t1", "ch", "w")]


async def test_repeated_writes(memory: MemoryAPI) -> None:
    """A task's write sent again keeps its first value; a special channel (ERROR,
    INTERRUPT, ...) keeps its last, as in LangGraph's reference saver."""
    saver = MemstoreSaver(memory)
    stored = await put(saver, "again")
    await saver.aput_writes(stored, [("ch", "first"), (ERROR, "boom")], "t1")
    await saver.aput_writes(stored, [("ch", "second"), (ERROR, "bang")], "t1")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.pending_writes == [("t1", ERROR, "bang"), ("t1", "ch", "first")]


async def test_list_pages_through_a_long_log(memory: MemoryAPI) -> None:
    """Newest first across several log pages, with before, limit, filter and namespaces
    mixed; a pruned thread keeps its newest checkpoint per namespace."""
    saver = MemstoreSaver(memory, page_size=3)
    parent = None
    ids = []
    for step in range(10):
        stored = await put(saver, "long", parent=parent, step=step, even=step % 2 == 0)
        await put(saver, "long", "sub:1", step=step)
        parent = stored["configurable"]["checkpoint_id"]
        ids.append(parent)
    root = generate_config("long")

    async def listed(**kw: Any) -> list[str]:
        return [t.checkpoint["id"] async for t in saver.alist(root, **kw)]

    assert await listed() == ids[::-1]
    assert await listed(limit=4) == ids[::-1][:4]
    assert await listed(before=generate_config("long", checkpoint_id=ids[5])) == ids[4::-1]
    assert await listed(filter={"even": True}, limit=3) == [ids[8], ids[6], ids[4]]
    everything = [t async for t in saver.alist({"configurable": {"thread_id": "long"}})]
    assert len(everything) == 20
    await saver.aprune(["long"])
    assert await listed() == [ids[-1]]
    assert len([t async for t in saver.alist({"configurable": {"thread_id": "long"}})]) == 2
    tup = await saver.aget_tuple(generate_config("long", checkpoint_id=ids[0]))
    assert tup is None


async def test_list_sorts_what_it_reads_whole(memory: MemoryAPI) -> None:
    """Checkpoints put out of id order (by hand, or a subgraph's next to its parent's)
    are listed by id when the listing reads the whole log."""
    saver = MemstoreSaver(memory, page_size=2)
    ids = [f"1f0-{n}" for n in "28461"]
    for n, cid in enumerate(ids):
        config = generate_config("unordered", checkpoint_ns="" if n % 2 else "sub:1")
        await saver.aput(config, generate_checkpoint(checkpoint_id=cid), generate_metadata(), {})
    thread: RunnableConfig = {"configurable": {"thread_id": "unordered"}}
    newest_first = sorted(ids, reverse=True)
    assert [t.checkpoint["id"] async for t in saver.alist(thread)] == newest_first
    assert [t.checkpoint["id"] async for t in saver.alist(thread, limit=3)] == newest_first[:3]
    root = [t.checkpoint["id"] async for t in saver.alist(generate_config("unordered"))]
    assert root == ["1f0-8", "1f0-6"]


async def test_list_every_thread(memory: MemoryAPI) -> None:
    saver = MemstoreSaver(memory, page_size=2)
    for thread_id in ["a", "b", "c"]:
        await put(saver, thread_id, step=1)
        await put(saver, thread_id, step=2)
    await memory.append_message({"role": "user", "content": "not LangGraph's"}, "other")
    listed = [t async for t in saver.alist(None)]
    assert sorted(t.config["configurable"]["thread_id"] for t in listed) == list("aabbcc")
    assert len([t async for t in saver.alist(None, filter={"step": 2}, limit=2)]) == 2


async def test_sync_methods_need_another_thread(memory: MemoryAPI) -> None:
    saver = MemstoreSaver(memory)
    config = generate_config("sync")
    with pytest.raises(asyncio.InvalidStateError, match="another thread"):
        saver.get_tuple(config)
    stored = await asyncio.to_thread(
        saver.put, config, generate_checkpoint(), generate_metadata(), {}
    )
    await asyncio.to_thread(saver.put_writes, stored, [("ch", 1)], "t")
    found = await asyncio.to_thread(lambda: list(saver.list(config)))
    assert [t.pending_writes for t in found] == [[("t", "ch", 1)]]
    # Stopping early closes the listing on the loop.
    first = await asyncio.to_thread(lambda: next(iter(saver.list(config))))
    assert first.config == stored
    await asyncio.to_thread(saver.delete_thread, "sync")
    assert await saver.aget_tuple(config) is None


def test_sync_methods_in_a_plain_program(
    live_service: ServiceProcess, embedded_settings: Settings
) -> None:
    """No event loop anywhere (a plain sync program): the sync methods run on the
    adapters' background loop, for a client and for a manager used through them alone."""
    client = MemoryClient(live_service.url, namespace=fresh_namespace())
    manager = DistributedMemoryManager(settings=embedded_settings, namespace=fresh_namespace())
    try:
        for memory in (client, manager):
            saver = MemstoreSaver(memory)
            assert saver.loop is None
            graph = ScriptedChat(["one", "two"]).build(saver)
            config: RunnableConfig = {"configurable": {"thread_id": "plain"}}
            graph.invoke({"messages": [HumanMessage("a")]}, config)
            out = graph.invoke({"messages": [HumanMessage("b")]}, config)
            assert [m.content for m in out["messages"]] == ["a", "one", "b", "two"]
            assert len(list(saver.list(config))) == 6
            assert next(iter(saver.list(config, limit=1))).metadata["step"] == 4
            saver.delete_thread("plain")
            assert saver.get_tuple(config) is None
    finally:
        run_sync(client.close())
        run_sync(manager.close())


@pytest.mark.parametrize("backend", MANAGER_BACKENDS)
async def test_too_large_a_checkpoint_leaves_nothing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A checkpoint over the payload limit is refused with memstore's error, and neither
    it nor its log entry is stored; the thread's earlier checkpoint stays the latest."""
    settings: Settings = request.getfixturevalue(f"{backend}_settings")
    small = settings.model_copy(update={"max_body_bytes": 4096})
    async with DistributedMemoryManager(settings=small, namespace=fresh_namespace()) as memory:
        saver = MemstoreSaver(memory)
        first = await put(saver, "big", step=0)
        config = generate_config("big", checkpoint_id=first["configurable"]["checkpoint_id"])
        checkpoint = generate_checkpoint(channel_values={"v": "x" * 5000})
        with pytest.raises(PayloadTooLargeError):
            await saver.aput(config, checkpoint, generate_metadata(step=1), {"v": 2})
        assert [t.config async for t in saver.alist(generate_config("big"))] == [first]
        assert len(await memory.load_messages("langgraph.thread:big")) == 1
        assert (
            await saver.aget_tuple(generate_config("big", checkpoint_id=checkpoint["id"])) is None
        )


async def test_bad_arguments(memory: MemoryAPI) -> None:
    with pytest.raises(ValueError, match="page_size"):
        MemstoreSaver(memory, page_size=0)
    with pytest.raises(ValueError, match="unknown prune strategy 'all'"):
        await MemstoreSaver(memory).aprune(["t"], strategy="all")


def test_ids_the_tests_read() -> None:
    """The ids the tests above read are the ones the saver writes."""
    assert thread_conversation_id("chat-1") == "langgraph.thread:chat-1"
    assert checkpoint_conversation_id("t", "a:b", "1f0") == "langgraph.checkpoint:t:a=3Ab:1f0"

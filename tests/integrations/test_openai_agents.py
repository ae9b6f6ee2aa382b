"""``MemstoreSession`` against the Agents SDK: its reference ``SQLiteSession`` for the
semantics, and a real ``Runner`` with the SDK's scripted model (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled
from agents.memory import Session, SessionSettings
from agents.testing import ScriptedModel, assistant_message, function_call

from memstore.client import MemoryClient
from memstore.core.errors import InvalidInputError
from memstore.integrations.openai_agents import READ_PAGE, MemstoreSession
from memstore.memory.api import MemoryAPI
from tests.integrations.conftest import fresh_namespace
from tests.support.procs import ServiceProcess


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    # The SDK would try to export traces to OpenAI otherwise.
    set_tracing_disabled(True)
    yield
    set_tracing_disabled(False)


@pytest.fixture
async def reference() -> AsyncIterator[SQLiteSession]:
    session = SQLiteSession("reference")
    yield session
    session.close()


def items(n: int, start: int = 0) -> list[Any]:
    return [
        {"role": "user" if i % 2 else "assistant", "content": f"message {i}"}
        for i in range(start, start + n)
    ]


async def test_it_is_a_session(memory: MemoryAPI) -> None:
    assert isinstance(MemstoreSession("s", memory), Session)
    with pytest.raises(InvalidInputError) as info:
        MemstoreSession("not a valid id", memory)
    assert info.value.details["field"] == "conversation_id"


async def test_same_answers_as_the_sdks_sqlite_session(
    memory: MemoryAPI, reference: SQLiteSession
) -> None:
    session = MemstoreSession("s1", memory)
    for s in (session, reference):
        assert await s.get_items() == []
        assert await s.pop_item() is None
        await s.add_items([])
        await s.add_items(items(3))
        await s.add_items(items(READ_PAGE + 20, start=3))  # longer than one read page
    for limit in (None, 0, 1, 2, 5, READ_PAGE, READ_PAGE + 1, 500, -1):
        assert await session.get_items(limit) == await reference.get_items(limit), limit
    for _ in range(3):
        assert await session.pop_item() == await reference.pop_item()
    assert await session.get_items(4) == await reference.get_items(4)
    await session.add_items(items(1, start=1000))
    await reference.add_items(items(1, start=1000))
    assert await session.get_items() == await reference.get_items()
    for s in (session, reference):
        await s.clear_session()
        assert await s.get_items() == []
        assert await s.pop_item() is None


async def test_session_settings_limit(memory: MemoryAPI) -> None:
    session = MemstoreSession("s2", memory, session_settings=SessionSettings(limit=2))
    await session.add_items(items(5))
    latest: list[Any] = await session.get_items()
    assert [i["content"] for i in latest] == ["message 3", "message 4"]
    assert len(await session.get_items(4)) == 4
    assert MemstoreSession("s2", memory, session_settings={"limit": 1}).session_settings == (
        SessionSettings(limit=1)
    )


async def test_items_are_stored_as_messages_and_round_trip_exactly(memory: MemoryAPI) -> None:
    session = MemstoreSession("s3", memory)
    odd: list[Any] = [
        {"role": "user", "content": [{"type": "input_text", "text": "émoji 🧠 \u0000"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"x": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "ok", "n": 2**63},
        {"id": "r", "type": "reasoning", "summary": [], "empty": {}, "f": 1.5, "neg": -0.0},
    ]
    await session.add_items(odd)
    back = await session.get_items()
    assert back == odd
    assert repr(back) == repr(odd)  # -0.0, ints and key order too
    assert [m.message for m in await memory.load_messages("s3")] == odd


class CountingClient(MemoryClient):
    """Counts the HTTP requests the client sends."""

    sent = 0

    async def _send(self, *args: Any, **kwargs: Any) -> Any:
        CountingClient.sent += 1
        return await super()._send(*args, **kwargs)


async def test_adding_no_items_sends_nothing(live_service: ServiceProcess) -> None:
    async with CountingClient(live_service.url, namespace=fresh_namespace()) as client:
        session = MemstoreSession("s4", client)
        await session.add_items([])
        assert CountingClient.sent == 0
        await session.add_items(items(1))
        assert CountingClient.sent == 1


async def test_concurrent_pops_return_each_item_once(memory: MemoryAPI) -> None:
    sessions = [MemstoreSession("busy", memory) for _ in range(2)]
    await sessions[0].add_items(items(10))
    popped: list[Any] = await asyncio.gather(*(sessions[i % 2].pop_item() for i in range(20)))
    got = sorted(p["content"] for p in popped if p is not None)
    assert got == sorted(i["content"] for i in items(10))
    assert popped.count(None) == 10


@function_tool
def remember(name: str) -> str:
    """Remember the user's name."""
    return f"remembered {name}"


async def test_a_real_runner_keeps_its_history_in_memstore(memory: MemoryAPI) -> None:
    model = ScriptedModel(
        [
            [function_call("remember", {"name": "Ada"}, call_id="call-1")],
            [assistant_message("Nice to meet you, Ada.", item_id="msg-1")],
            [assistant_message("Your name is Ada.", item_id="msg-2")],
        ]
    )
    agent = Agent(name="assistant", instructions="Be brief.", model=model, tools=[remember])
    session = MemstoreSession("user-ada", memory)

    first = await Runner.run(agent, "My name is Ada.", session=session)
    assert first.final_output == "Nice to meet you, Ada."
    second = await Runner.run(agent, "What is my name?", session=session)
    assert second.final_output == "Your name is Ada."
    model.assert_complete()

    # The second turn's model call saw the first turn, read back from memstore.
    last_input = model.last_call.input if model.last_call else None
    assert isinstance(last_input, list)
    assert last_input[0] == {"role": "user", "content": "My name is Ada."}
    assert any(i.get("type") == "function_call_output" for i in last_input)

    # A fresh reader of the same namespace finds the first turn's messages.
    stored = [
        m.message for m in await memory.for_namespace(memory.namespace).load_messages("user-ada")
    ]
    assert stored[0] == {"role": "user", "content": "My name is Ada."}
    kinds = [m.get("type", m.get("role")) for m in stored]
    assert kinds[:4] == ["user", "function_call", "function_call_output", "message"]
    assert stored[3]["content"][0]["text"] == "Nice to meet you, Ada."
    assert stored[4] == {"role": "user", "content": "What is my name?"}
    assert stored[-1]["content"][0]["text"] == "Your name is Ada."
    assert stored == await session.get_items()

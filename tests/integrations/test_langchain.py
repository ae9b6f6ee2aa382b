"""``MemstoreChatMessageHistory`` with langchain-core: its async and sync methods (the sync
ones from plain code and from inside a running loop), and a real
``RunnableWithMessageHistory`` over langchain-core's fake chat model."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from memstore.client import MemoryClient
from memstore.core.errors import InvalidInputError
from memstore.core.settings import Settings
from memstore.integrations.background_loop import run_sync
from memstore.integrations.langchain import MemstoreChatMessageHistory
from memstore.memory.api import MemoryAPI
from memstore.memory.manager import DistributedMemoryManager
from tests.integrations.conftest import fresh_namespace
from tests.support.procs import ServiceProcess

CONVERSATION: list[BaseMessage] = [
    SystemMessage("Be brief."),
    HumanMessage("What is 2 + 2? 🧮", id="h1"),
    AIMessage(
        "",
        tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "call-1", "type": "tool_call"}],
        response_metadata={"model": "fake"},
    ),
    ToolMessage("4", tool_call_id="call-1"),
    AIMessage("4", additional_kwargs={"note": [1, None, 2.5]}),
]


async def test_async_methods_round_trip(memory: MemoryAPI) -> None:
    history = MemstoreChatMessageHistory("lc-1", memory)
    assert await history.aget_messages() == []
    await history.aadd_messages([])
    await history.aadd_messages(CONVERSATION[:2])
    await history.aadd_messages(CONVERSATION[2:])
    assert await history.aget_messages() == CONVERSATION
    stored = await memory.load_messages("lc-1")
    assert [m.message["type"] for m in stored] == ["system", "human", "ai", "tool", "ai"]
    await history.aclear()
    assert await history.aget_messages() == []
    assert await memory.load_messages("lc-1") == []
    with pytest.raises(InvalidInputError):
        MemstoreChatMessageHistory("not valid", memory)


def test_sync_methods_from_plain_code_with_a_client(live_service: ServiceProcess) -> None:
    client = MemoryClient(live_service.url, namespace=fresh_namespace())
    try:
        history = MemstoreChatMessageHistory("lc-2", client)
        history.add_messages(CONVERSATION)
        history.add_user_message("and 3 + 3?")
        assert history.messages == [*CONVERSATION, HumanMessage("and 3 + 3?")]
        history.clear()
        assert history.messages == []
    finally:
        run_sync(client.close())


def test_sync_methods_with_an_in_process_manager(tmp_path: Path) -> None:
    settings = Settings(memory_type="embedded", data_path=tmp_path / "lc.db")
    manager = DistributedMemoryManager(settings=settings, namespace=fresh_namespace())
    try:
        history = MemstoreChatMessageHistory("lc-3", manager)
        history.add_messages(CONVERSATION)
        assert history.messages == CONVERSATION
        history.clear()
        assert history.messages == []
    finally:
        run_sync(manager.close())


async def test_sync_methods_from_inside_a_running_loop(live_service: ServiceProcess) -> None:
    # One client serves its async methods on this loop and the sync ones on the
    # background loop (a session per loop).
    async with MemoryClient(live_service.url, namespace=fresh_namespace()) as client:
        history = MemstoreChatMessageHistory("lc-4", client)
        history.add_messages(CONVERSATION[:2])  # blocks this loop briefly: no deadlock
        await history.aadd_messages(CONVERSATION[2:])
        assert history.messages == CONVERSATION
        assert await history.aget_messages() == CONVERSATION
        history.clear()
        assert await history.aget_messages() == []
    run_sync(client.close())


class Chat:
    """A two-turn chat: prompt with the history, langchain-core's fake model."""

    def __init__(self, memory: MemoryAPI) -> None:
        self.prompts: list[list[BaseMessage]] = []

        def seen(prompt: PromptValue) -> PromptValue:
            self.prompts.append(prompt.to_messages())
            return prompt

        prompt = ChatPromptTemplate.from_messages(
            [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{input}")]
        )
        model = FakeMessagesListChatModel(
            responses=[AIMessage("Hello, Ada."), AIMessage("You are Ada.")]
        )
        self.chain = RunnableWithMessageHistory(
            prompt | RunnableLambda(seen) | model,
            lambda session_id: MemstoreChatMessageHistory(session_id, memory),
            input_messages_key="input",
            history_messages_key="history",
        )
        self.config: Any = {"configurable": {"session_id": "chat"}}

    def check(self, memory_messages: list[dict[str, Any]]) -> None:
        # The second turn's prompt held the first turn, read back from memstore.
        assert [m.content for m in self.prompts[1]] == [
            "Be brief.",
            "I am Ada.",
            "Hello, Ada.",
            "What is my name?",
        ]
        assert [(m["type"], m["data"]["content"]) for m in memory_messages] == [
            ("human", "I am Ada."),
            ("ai", "Hello, Ada."),
            ("human", "What is my name?"),
            ("ai", "You are Ada."),
        ]


# langchain-core 1.x marks RunnableWithMessageHistory deprecated (in favour of LangGraph's
# persistence) but still ships it; it is the runnable that drives a chat message history.
DEPRECATED_RUNNABLE = pytest.mark.filterwarnings(
    "ignore:RunnableWithMessageHistory is deprecated:"
    "langchain_core._api.deprecation.LangChainDeprecationWarning"
)


@DEPRECATED_RUNNABLE
async def test_a_runnable_with_message_history_async(memory: MemoryAPI) -> None:
    chat = Chat(memory)
    assert (await chat.chain.ainvoke({"input": "I am Ada."}, chat.config)).content == (
        "Hello, Ada."
    )
    assert (await chat.chain.ainvoke({"input": "What is my name?"}, chat.config)).content == (
        "You are Ada."
    )
    chat.check([m.message for m in await memory.load_messages("chat")])


@pytest.fixture
def sync_client(live_service: ServiceProcess) -> Iterator[MemoryClient]:
    client = MemoryClient(live_service.url, namespace=fresh_namespace())
    yield client
    run_sync(client.close())


@DEPRECATED_RUNNABLE
def test_a_runnable_with_message_history_sync(sync_client: MemoryClient) -> None:
    chat = Chat(sync_client)
    assert chat.chain.invoke({"input": "I am Ada."}, chat.config).content == "Hello, Ada."
    assert chat.chain.invoke({"input": "What is my name?"}, chat.config).content == ("You are Ada.")
    chat.check([m.message for m in run_sync(sync_client.load_messages("chat"))])


def test_a_sync_method_on_the_background_loop_itself_is_refused(
    sync_client: MemoryClient,
) -> None:
    history = MemstoreChatMessageHistory("lc-5", sync_client)

    async def inside() -> list[BaseMessage]:
        return history.messages  # would wait on the loop it runs on

    with pytest.raises(RuntimeError, match="await the async method"):
        run_sync(inside())


SYNC_SCRIPT = """
import sys
from langchain_core.messages import HumanMessage
from memstore.client import MemoryClient
from memstore.integrations.langchain import MemstoreChatMessageHistory

# Nothing is closed by hand: the background loop ends at exit and closes the session.
history = MemstoreChatMessageHistory("script", MemoryClient(sys.argv[1], namespace=sys.argv[2]))
history.add_messages([HumanMessage("hi")])
print(len(history.messages))
"""


def test_a_sync_script_exits_cleanly(live_service: ServiceProcess, tmp_path: Path) -> None:
    script = tmp_path / "sync_history.py"
    script.write_text(SYNC_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "always", str(script), live_service.url,
         fresh_namespace()],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert result.stderr == ""

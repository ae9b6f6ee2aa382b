"""LangChain: ``MemstoreChatMessageHistory``, a ``BaseChatMessageHistory`` whose messages are
those of one memstore conversation.

``pip install 'memstore[langchain]'``; use it wherever LangChain takes a chat history,
e.g. ``RunnableWithMessageHistory(chain, lambda sid: MemstoreChatMessageHistory(sid,
memory))``.

* A message is stored as langchain-core's ``message_to_dict`` (``{"type": "human", "data":
  {...}}``) and read back with ``messages_from_dict``; the conversation's id is the
  session id (``conversation_id`` rules).
* The async methods (``aget_messages``, ``aadd_messages``, ``aclear``) run on the caller's
  event loop. The sync ones (``messages``, ``add_messages``, ``clear``) run the same
  coroutines on one shared background loop (``background_loop``), so they work from
  plain sync code and from inside a running loop alike; see that module for what it
  means for the ``MemoryAPI`` given (a ``MemoryClient`` serves both kinds; an in-process
  manager on Redis or MongoDB serves one kind).
* ``add_messages`` is one atomic append (nothing is sent for none); ``clear`` deletes
  the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict

from memstore.core.validation import check_name
from memstore.integrations.background_loop import run_sync

if TYPE_CHECKING:
    from memstore.memory.api import MemoryAPI


class MemstoreChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history stored in memstore, over a ``MemoryAPI`` (the in-process
    ``DistributedMemoryManager`` or a ``MemoryClient``) that the caller opens and closes."""

    def __init__(self, session_id: str, memory: MemoryAPI) -> None:
        self.session_id = check_name("conversation_id", session_id)
        self.memory = memory

    def __repr__(self) -> str:
        return (
            f"MemstoreChatMessageHistory({self.session_id!r}, namespace={self.memory.namespace!r})"
        )

    # -- async: on the caller's loop -------------------------------------------------------

    async def aget_messages(self) -> list[BaseMessage]:
        records = await self.memory.load_messages(self.session_id)
        return messages_from_dict([r.message for r in records])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if not messages:
            return
        await self.memory.append_messages([message_to_dict(m) for m in messages], self.session_id)

    async def aclear(self) -> None:
        await self.memory.delete_conversation(self.session_id)

    # -- sync: the same coroutines on the background loop ------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return run_sync(self.aget_messages())

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        run_sync(self.aadd_messages(messages))

    def clear(self) -> None:
        run_sync(self.aclear())

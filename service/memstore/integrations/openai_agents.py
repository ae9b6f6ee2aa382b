"""OpenAI Agents SDK: ``MemstoreSession``, a ``Session`` (``agents.memory.Session``) whose
items are the messages of one memstore conversation.

``pip install 'memstore[agents]'``; then ``Runner.run(agent, text, session=session)``.

* Each item the SDK adds is stored as one message, the item's JSON object as it is (an
  input message reads ``{"role": "user", "content": "..."}`` in memstore too), and comes
  back identical; the conversation's id is the session id (``conversation_id`` rules).
* ``get_items(limit)``: the latest ``limit`` items in chronological order (``limit`` or
  ``session_settings.limit``; ``None`` or a negative number: all, ``0``: none, as
  ``SQLiteSession`` answers); a long history is read in pages from the end.
* ``add_items`` is one atomic append (``[]`` sends nothing); ``pop_item`` is the memory's
  server-side pop (``MemoryAPI.pop_message``): concurrent pops never return the same item;
  ``clear_session`` deletes the conversation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from agents.memory import Session, SessionSettings
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit

from memstore.core.records import JSONObject, MessageRecord
from memstore.core.validation import check_name

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

    from memstore.memory.api import MemoryAPI

#: Messages per request when ``get_items`` walks back through a long history (at most the
#: server's default maximum page size, 500).
READ_PAGE = 100


class MemstoreSession:
    """An Agents SDK session stored in memstore, over a ``MemoryAPI`` (the in-process
    ``DistributedMemoryManager`` or a ``MemoryClient``) that the caller opens and closes."""

    def __init__(
        self,
        session_id: str,
        memory: MemoryAPI,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self.session_id = check_name("conversation_id", session_id)
        self.memory = memory
        self.session_settings: SessionSettings | None = (
            SessionSettings()
            if session_settings is None
            else coerce_session_settings(session_settings)
        )

    def __repr__(self) -> str:
        return f"MemstoreSession({self.session_id!r}, namespace={self.memory.namespace!r})"

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items (all by default) in chronological order."""
        wanted = resolve_session_limit(limit, self.session_settings)
        if wanted is None or wanted < 0:
            records = await self.memory.load_messages(self.session_id)
        else:
            records = await self._last(wanted)
        return [cast("TResponseInputItem", r.message) for r in records]

    async def _last(self, wanted: int) -> list[MessageRecord]:
        records: list[MessageRecord] = []
        before: int | None = None
        while len(records) < wanted:
            ask = min(wanted - len(records), READ_PAGE)
            page = await self.memory.load_messages(self.session_id, limit=ask, before_seq=before)
            records = page + records
            if len(page) < ask or page[0].seq <= 1:
                break
            before = page[0].seq
        return records

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order, atomically."""
        if not items:
            return
        await self.memory.append_messages(
            [cast(JSONObject, item) for item in items], self.session_id
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the most recent item (server-side, atomic), or ``None``."""
        record = await self.memory.pop_message(self.session_id)
        return None if record is None else cast("TResponseInputItem", record.message)

    async def clear_session(self) -> None:
        """Delete every item of the session."""
        await self.memory.delete_conversation(self.session_id)


if TYPE_CHECKING:
    # mypy: MemstoreSession is a structural Session (the protocol the SDK checks).
    def _is_a_session(memory: MemoryAPI) -> Session:
        return MemstoreSession("s", memory)

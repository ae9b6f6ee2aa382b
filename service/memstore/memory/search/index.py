"""One namespace's search index on this replica: every entity, message and tool use of
the namespace with its tokens (BM25) and, when there is an embedder, its vector.

Built from the backend's own listings on first use (each kind on its own: a namespace
searched only for entities never loads its messages), then kept current by tailing the
namespace's change log: the position is read *before* the listings, so every write is
either in a listing or in an event after it; an event names what changed, which is read
again (its current state, so replaying an event is harmless). Every search first catches
up to the log's end, so it sees every write acknowledged before it started, through any
replica. If retention removed events the index has not read, it is built again.

Vectors are computed off the write path (``memory.search.service`` runs the background
embedding) and kept in the backend (``vectors.VECTORS_NAMESPACE``): a vector is reused
for the same text under the same embedder, else computed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from memstore.backends.base import DistributedMemoryBackend
from memstore.core import changes
from memstore.core.records import ChangeEvent, EntityRecord, MessageRecord, ToolUsageRecord
from memstore.core.search import MISSING, field_value
from memstore.core.text import BM25Index, strings_in, tokenize
from memstore.embeddings.base import Embedder
from memstore.memory.search.vectors import (
    VECTORS_NAMESPACE,
    VectorTable,
    read_stored_vector,
    stored_vector,
    text_digest,
    vector_id,
)

log = logging.getLogger(__name__)

Kind = Literal["entity", "message", "tool_usage"]
R = TypeVar("R", EntityRecord, MessageRecord, ToolUsageRecord)
Key = tuple[Any, ...]

#: Items re-read from the backend at once while catching up.
READ_CONCURRENCY = 32
#: Vectors written to the backend at once by the background task (the backend contract
#: has no batch write; one write at a time left the backend's round trips idle).
WRITE_CONCURRENCY = 16
#: Texts per call to the embedder.
EMBED_BATCH = 64
#: A tool use is looked for from this long before its event first (its timestamp is the
#: caller's, usually the moment of the write), then, if not found there, in all uses.
TOOL_USE_LOOKBACK_SECONDS = 3600.0


@dataclass(slots=True)
class Item(Generic[R]):
    record: R
    text: str
    digest: str


@dataclass
class Collection(Generic[R]):
    """The items of one kind."""

    kind: Kind
    items: dict[Key, Item[R]] = field(default_factory=dict)
    bm25: BM25Index[Key] = field(default_factory=BM25Index)
    vectors: VectorTable[Key] = field(default_factory=VectorTable)
    pending: dict[Key, None] = field(default_factory=dict)  # to embed, in arrival order
    to_persist: set[Key] = field(default_factory=set)
    to_delete: set[Key] = field(default_factory=set)
    persisted: set[Key] = field(default_factory=set)  # keys with a vector in the backend
    by_conversation: dict[str, set[int]] = field(default_factory=dict)

    def put(self, key: Key, record: R, text: str, embedding: bool) -> None:
        digest = text_digest(text)
        old = self.items.get(key)
        self.items[key] = Item(record, text, digest)
        if old is None or old.text != text:
            self.bm25.put(key, tokenize(text))
        if isinstance(record, MessageRecord):
            self.by_conversation.setdefault(record.conversation_id, set()).add(record.seq)
        if not embedding or (old is not None and old.digest == digest and key in self.vectors):
            return
        self.vectors.remove(key)
        if text:
            self.pending[key] = None
        else:
            self.pending.pop(key, None)
            if key in self.persisted:
                self.to_delete.add(key)

    def remove(self, key: Key) -> None:
        item = self.items.pop(key, None)
        if item is None:
            return
        self.bm25.remove(key)
        self.vectors.remove(key)
        self.pending.pop(key, None)
        if isinstance(item.record, MessageRecord):
            seqs = self.by_conversation.get(item.record.conversation_id)
            if seqs is not None:
                seqs.discard(item.record.seq)
                if not seqs:
                    del self.by_conversation[item.record.conversation_id]
        if key in self.persisted:
            self.to_delete.add(key)

    @property
    def has_work(self) -> bool:
        return bool(self.pending or self.to_persist or self.to_delete)


def entity_text(record: EntityRecord, fields: dict[str, list[str]]) -> str:
    """The indexed text of an entity: the strings at its type's configured fields
    (``MEMSTORE_SEARCH_FIELDS``, ``*`` for the other types), else every string in it."""
    paths = fields.get(record.type, fields.get("*"))
    if paths is None:
        return "\n".join(strings_in(record.data))
    parts: list[str] = []
    for path in paths:
        value = field_value(record.data, path)
        if value is not MISSING:
            parts.extend(strings_in(value))
    return "\n".join(parts)


def message_text(record: MessageRecord) -> str:
    """A message's text: the strings of its ``content`` (plain text or a list of parts),
    or every string in it when it has no ``content`` (so a role never matches a query)."""
    message = record.message
    return "\n".join(strings_in(message.get("content", message)))


def tool_usage_text(record: ToolUsageRecord) -> str:
    return "\n".join([record.tool_name, *strings_in(record.input), *strings_in(record.output)])


def entity_key(record: EntityRecord) -> Key:
    return (record.type, record.id)


def message_key(record: MessageRecord) -> Key:
    return (record.conversation_id, record.seq)


def tool_usage_key(record: ToolUsageRecord) -> Key:
    return (record.id,)


async def _gather_chunks(calls: Iterable[Callable[[], Awaitable[None]]]) -> None:
    it = iter(calls)
    while chunk := list(itertools.islice(it, READ_CONCURRENCY)):
        await asyncio.gather(*(call() for call in chunk))


class NamespaceIndex:
    """The search index of one namespace on this replica (see the module docstring)."""

    def __init__(
        self,
        backend: DistributedMemoryBackend,
        namespace: str,
        *,
        fields: dict[str, list[str]],
        page_size: int,
        embedder: Embedder | None,
        on_pending: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.namespace = namespace
        self.fields = fields
        self.page_size = page_size
        self.embedder = embedder
        self.on_pending = on_pending
        self.position: int | None = None
        self.entities: Collection[EntityRecord] | None = None
        self.messages: Collection[MessageRecord] | None = None
        self.tool_usage: Collection[ToolUsageRecord] | None = None
        self._lock = asyncio.Lock()
        self._embed_lock = asyncio.Lock()

    def collections(self) -> list[Collection[Any]]:
        return [c for c in (self.entities, self.messages, self.tool_usage) if c is not None]

    def collection(self, kind: Kind) -> Collection[Any]:
        """The collection of ``kind``, built by :meth:`catch_up`."""
        coll: Collection[Any] | None = getattr(self, _ATTR[kind])
        assert coll is not None, f"{kind} searched before catch_up built it"
        return coll

    @contextlib.asynccontextmanager
    async def unchanged(self) -> AsyncIterator[None]:
        """Hold off everything that changes the index (catching up with the log, storing
        computed vectors) while a worker thread reads it."""
        async with self._lock, self._embed_lock:
            yield

    # -- keeping up with the log ----------------------------------------------------------

    async def catch_up(self, kind: Kind) -> None:
        """Build ``kind`` if needed and apply every change logged so far."""
        async with self._lock:
            while True:
                if self.position is None:
                    page = await self.backend.read_changes(self.namespace, after=0, limit=1)
                    self.position = page.last_position
                if getattr(self, _ATTR[kind]) is None:
                    await self._build(kind)
                if await self._tail():
                    break
        if any(c.has_work for c in self.collections()):
            self.on_pending()

    async def _tail(self) -> bool:
        """Apply the log's events after ``position``; False when retention removed some
        the index had not read (everything is dropped, to be built again)."""
        assert self.position is not None
        while True:
            page = await self.backend.read_changes(
                self.namespace, after=self.position, limit=self.page_size
            )
            if page.first_position > self.position + 1:
                log.warning(
                    "search index behind the change log's retention: rebuilding",
                    extra={"namespace": self.namespace},
                )
                self.position = None
                self.entities = self.messages = self.tool_usage = None
                return False
            if not page.events:
                return True
            await self._apply(page.events)
            self.position = page.events[-1].position
            if self.position >= page.last_position:
                return True

    async def _apply(self, events: list[ChangeEvent]) -> None:
        entity_keys: dict[Key, None] = {}
        conversations: dict[str, list[int]] = {}  # cid -> [full, lowest seq, highest seq]
        tool_uses: dict[str, dict[str, float]] = {}  # tool -> record id -> event time
        tools_pruned = False
        for e in events:
            if e.kind.startswith("entity."):
                if self.entities is not None:
                    entity_keys[(e.entity_type, e.entity_id)] = None
            elif e.kind.startswith("conversation."):
                if self.messages is None or e.conversation_id is None:
                    continue
                c = conversations.setdefault(e.conversation_id, [0, 1 << 62, 0])
                if e.kind in (changes.CONVERSATION_REPLACED, changes.CONVERSATION_DELETED):
                    c[0] = 1
                elif e.version is not None:
                    first = e.version - (e.count or 1) + 1
                    if e.kind == changes.CONVERSATION_POPPED:
                        first = e.version
                    c[1] = min(c[1], first)
                    c[2] = max(c[2], e.version)
            elif e.kind == changes.TOOL_USAGE_RECORDED:
                if self.tool_usage is not None and e.tool_name and e.record_id:
                    uses = tool_uses.setdefault(e.tool_name, {})
                    uses[e.record_id] = min(uses.get(e.record_id, e.timestamp), e.timestamp)
            elif e.kind == changes.TOOL_USAGE_PRUNED:
                tools_pruned = self.tool_usage is not None
        if entity_keys:
            await _gather_chunks(self._reload_entity(k) for k in entity_keys)
        if conversations:
            await _gather_chunks(self._reload_messages(cid, *c) for cid, c in conversations.items())
        if tools_pruned:
            await self._build("tool_usage")
        elif tool_uses:
            await _gather_chunks(self._reload_tool_uses(t, u) for t, u in tool_uses.items())

    def _reload_entity(self, key: Key) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            record = await self.backend.load_entity(self.namespace, key[0], key[1])
            if self.entities is None:
                return
            if record is None:
                self.entities.remove(key)
            else:
                self._put_entity(record)

        return run

    def _reload_messages(
        self, cid: str, full: int, lowest: int, highest: int
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if full:
                records = await self.backend.load_messages(self.namespace, cid)
                stale = set(self.messages.by_conversation.get(cid, ())) if self.messages else set()
            else:
                records = await self.backend.load_messages(
                    self.namespace, cid, limit=highest - lowest + 1, before_seq=highest + 1
                )
                seqs = self.messages.by_conversation.get(cid, ()) if self.messages else ()
                stale = {s for s in seqs if lowest <= s <= highest}
            coll = self.messages
            if coll is None:
                return
            for record in records:
                stale.discard(record.seq)
                self._put_message(record)
            for seq in stale:
                coll.remove((cid, seq))

        return run

    def _reload_tool_uses(
        self, tool_name: str, uses: dict[str, float]
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            wanted = set(uses)
            start: float | None = min(uses.values()) - TOOL_USE_LOOKBACK_SECONDS
            while wanted:
                async for record in self._walk_tool_usage(tool_name, start):
                    if record.id in wanted:
                        wanted.discard(record.id)
                        self._put_tool_use(record)
                        if not wanted:
                            return
                if start is None:
                    return  # gone since (pruned): its pruned event rebuilds the kind
                start = None

        return run

    async def _walk_tool_usage(self, tool_name: str | None, start: float | None) -> Any:
        cursor: str | None = None
        while True:
            page = await self.backend.query_tool_usage(
                self.namespace,
                tool_name=tool_name,
                start=start,
                limit=self.page_size,
                cursor=cursor,
            )
            for record in page.items:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # -- building ----------------------------------------------------------------------

    async def _build(self, kind: Kind) -> None:
        embedding = self.embedder is not None
        backend, ns = self.backend, self.namespace
        if kind == "entity":
            self.entities = Collection("entity")
            for entity_type in await backend.get_entity_types(ns):
                cursor: str | None = None
                while True:
                    page = await backend.list_entities(
                        ns, entity_type, limit=self.page_size, cursor=cursor
                    )
                    for record in page.items:
                        self._put_entity(record)
                    if (cursor := page.next_cursor) is None:
                        break
        elif kind == "message":
            self.messages = Collection("message")
            cursor = None
            while True:
                conversations = await backend.list_conversations(
                    ns, limit=self.page_size, cursor=cursor
                )
                for info in conversations.items:
                    for message in await backend.load_messages(ns, info.conversation_id):
                        self._put_message(message)
                if (cursor := conversations.next_cursor) is None:
                    break
        else:
            self.tool_usage = Collection("tool_usage")
            async for record in self._walk_tool_usage(None, None):
                self._put_tool_use(record)
        if embedding:
            await self._load_vectors(kind)

    async def _load_vectors(self, kind: Kind) -> None:
        """Take the stored vectors of ``kind`` that still fit their item's text under this
        embedder; vectors of items gone are deleted in the background."""
        assert self.embedder is not None
        coll: Collection[Any] = getattr(self, _ATTR[kind])
        name = self.embedder.name
        cursor: str | None = None
        while True:
            page = await self.backend.list_entities(
                VECTORS_NAMESPACE, self.namespace, limit=self.page_size, cursor=cursor
            )
            for stored in page.items:
                data = stored.data
                if data.get("kind") != kind or not isinstance(data.get("key"), list):
                    continue
                key = tuple(data["key"])
                coll.persisted.add(key)
                item = coll.items.get(key)
                if item is None:
                    coll.to_delete.add(key)
                    continue
                if data.get("embedder") != name or data.get("text_sha256") != item.digest:
                    continue  # another vector space or an older text: computed again
                vector = read_stored_vector(data)
                if vector is not None:
                    coll.vectors.put(key, vector)
                    coll.pending.pop(key, None)
            if (cursor := page.next_cursor) is None:
                return

    def _put_entity(self, record: EntityRecord) -> None:
        assert self.entities is not None
        text = entity_text(record, self.fields)
        self.entities.put(entity_key(record), record, text, self.embedder is not None)

    def _put_message(self, record: MessageRecord) -> None:
        assert self.messages is not None
        self.messages.put(
            message_key(record), record, message_text(record), self.embedder is not None
        )

    def _put_tool_use(self, record: ToolUsageRecord) -> None:
        assert self.tool_usage is not None
        self.tool_usage.put(
            tool_usage_key(record), record, tool_usage_text(record), self.embedder is not None
        )

    # -- vectors -------------------------------------------------------------------------

    async def embed_pending(self, coll: Collection[Any]) -> None:
        """Compute the vectors still missing in ``coll`` (a search calls this before
        comparing vectors, so it reads its own writes; the background task otherwise)."""
        embedder = self.embedder
        if embedder is None or not coll.pending:
            return
        async with self._embed_lock:
            while coll.pending:
                batch = list(itertools.islice(coll.pending, EMBED_BATCH))
                items = [coll.items[k] for k in batch]
                vectors = await embedder.embed([item.text for item in items])
                for key, item, vector in zip(batch, items, vectors, strict=True):
                    current = coll.items.get(key)
                    if current is not None and current.digest == item.digest:
                        coll.vectors.put(key, vector)
                        coll.pending.pop(key, None)
                        coll.to_persist.add(key)

    async def persist(self, coll: Collection[Any], stopping: Callable[[], bool]) -> None:
        """Write the new vectors to the backend and delete those of items gone (until
        ``stopping()``)."""
        embedder = self.embedder
        if embedder is None:
            return
        while coll.to_persist and not stopping():
            keys = [
                coll.to_persist.pop() for _ in range(min(WRITE_CONCURRENCY, len(coll.to_persist)))
            ]
            saved: set[Key] = set()

            async def save(key: Key, saved: set[Key]) -> None:
                item = coll.items.get(key)
                vector = coll.vectors.get(key)
                if item is None or vector is None:
                    return
                version = item.record.version if isinstance(item.record, EntityRecord) else None
                await self.backend.save_entity(
                    VECTORS_NAMESPACE,
                    self.namespace,
                    vector_id(coll.kind, key),
                    stored_vector(coll.kind, key, embedder.name, item.digest, version, vector),
                )
                saved.add(key)
                coll.persisted.add(key)

            try:
                results = await asyncio.gather(
                    *(save(k, saved) for k in keys), return_exceptions=True
                )
            except BaseException:
                coll.to_persist.update(k for k in keys if k not in saved)
                raise
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                coll.to_persist.update(k for k in keys if k not in saved)
                raise failed[0]
        while coll.to_delete and not stopping():
            key = coll.to_delete.pop()
            if key in coll.items and key in coll.vectors:
                continue  # it came back meanwhile
            try:
                await self.backend.delete_entity(
                    VECTORS_NAMESPACE, self.namespace, vector_id(coll.kind, key)
                )
            except BaseException:
                coll.to_delete.add(key)
                raise
            coll.persisted.discard(key)


_ATTR: dict[str, str] = {"entity": "entities", "message": "messages", "tool_usage": "tool_usage"}

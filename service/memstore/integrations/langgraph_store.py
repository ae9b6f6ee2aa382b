"""LangGraph long-term memory on memstore: ``MemstoreStore`` (extra ``langgraph``).

``MemstoreStore(memory)`` is a ``langgraph.store.base.BaseStore`` over any ``MemoryAPI``: the
in-process ``DistributedMemoryManager`` or a ``MemoryClient``. Give it to a graph
(``builder.compile(store=store)``) and nodes read and write memories with
``store.put / get / search / list_namespaces``; ``search`` with a ``query`` is memstore's
recall (keywords and meaning, ranked on the service). A dedicated memstore namespace is
advised (``memory.for_namespace("langgraph")``).

Records
-------

An item is a memstore entity: its value is the entity's data (a JSON object), unchanged, so
memstore's own search, filters and change feed see it as it is.

* **Type**: one entity type per LangGraph namespace tuple: ``lg.`` then the labels joined
  by ``.`` (LangGraph forbids ``.`` in a label), each label with letters, digits and ``_``
  kept and every other character written ``-XX`` per UTF-8 byte, except ``-`` itself,
  written ``--``: ``("memories", "user-1")`` is ``lg.memories.user--1``. A type holds at
  most 64 characters (memstore's name rule); a namespace whose readable type would be
  longer (two UUIDs, say) gets ``lgh.<48 hex digits of the SHA-256 of its labels>``, and
  its labels are kept in the entity ``lg-namespaces/<that type>`` (``{"namespace":
  [labels]}``, written before its first item, never deleted: one small entity per long
  namespace ever used). Types that are neither (other entities of the namespace) are
  never listed or searched.
* **Id**: the key with letters, digits and ``_ . : @ + -`` kept and every other character
  written ``=XX`` per UTF-8 byte; an ``_`` in front when the key is empty or does not start
  with a letter, digit or ``_`` (memstore ids start with one), and in front of a key that
  starts with ``_``. An id holds at most 256 characters: a longer one is refused with
  ``ValueError``.
* ``value``: a copy of the entity's data (a caller may change it: the manager's cache and
  search index keep theirs). ``created_at`` / ``updated_at``: the entity's (UTC
  ``datetime``). A read that refreshes the TTL re-saves the item, so ``updated_at`` is
  then the time of that read.

Operations
----------

``batch`` / ``abatch`` check every op first (an op that cannot be encoded, or a value
memstore would refuse, such as one holding NaN, fails the batch before anything is
written), then run its reads (``GetOp``, ``SearchOp``,
``ListNamespacesOp``) against the state before the batch, then its writes (``PutOp``; of
several for one item the last counts), as ``InMemoryStore`` does; at most ``concurrency``
memstore calls at once. A call that fails fails the batch only once all its other calls
have ended (none writes after the batch returned or raised); the writes that succeeded
stay.

* ``GetOp``: one ``get_entity``.
* ``PutOp``: one ``save_entity``, or ``delete_entity`` for ``value=None`` (plus, the
  first time this store writes to a long namespace, its ``lg-namespaces`` entry).
* ``SearchOp``: ``get_entity_types`` (the types of the namespaces under the prefix, as
  for ``ListNamespacesOp``), then ``search_entities(query, types=..., filter=...,
  mode="auto")`` page by page (``page_size`` hits a call) until ``offset + limit``
  items (hits whose id the store did not make are skipped before offset and limit
  count): with a ``query``, hybrid (keyword and semantic) ranking, or keywords alone
  when the service runs ``MEMSTORE_EMBEDDER=none``, scores in
  ``SearchItem.score``; without one, every match of the filter (``score`` ``None``). The
  ``filter`` goes to memstore unchanged (LangGraph's syntax: a value is equality, or an
  object of ``$eq $ne $gt $gte $lt $lte``, memstore adds ``$in $nin``; dotted keys walk
  nested objects); over HTTP, JSON cannot carry NaN or infinities, so a filter holding one
  is refused there.
* ``ListNamespacesOp``: one ``get_entity_types`` (plus one read per long namespace this
  store has not met yet); prefix and suffix conditions (``"*"`` matches any one label),
  ``max_depth``, ``offset`` and ``limit`` as ``InMemoryStore``, namespaces sorted. A
  namespace is listed while it holds an unexpired item.

TTL (minutes, ``supports_ttl``)
-------------------------------

``ttl={"default_ttl": minutes, "refresh_on_read": bool}`` as LangGraph's ``TTLConfig``; a
``put(..., ttl=minutes)`` overrides the default. memstore expires entities itself (an
expired item is never returned), so there is no sweeper (``sweep_interval_minutes`` is
not used). Refreshing on read (``GetOp`` / ``SearchOp`` ``refresh_ttl``) re-saves each item
read that has a TTL with a fresh one of the same length (the entity's ``expires_at -
updated_at``), on the version read (``expected_version``: an item written meanwhile keeps
that write and its TTL): a new version, so on a service that embeds, the item is embedded
again on the next search.

Index (``index=``)
------------------

memstore embeds and indexes on the service: ``MEMSTORE_EMBEDDER`` chooses the model (an
offline one by default) and ``MEMSTORE_SEARCH_FIELDS`` the fields (per entity type, or
``"*"`` for all; default every string of the value). So ``index`` accepts no ``embed``
(the store cannot call it) and no ``fields`` other than ``["$"]`` (the whole value): both
are refused with ``ValueError`` naming the setting to use instead; ``dims`` is accepted
and unused. A ``put(..., index=[fields])`` is refused the same way; ``index=False`` is
accepted but the item is indexed anyway (memstore indexes every entity; a search still
finds it, with a score).

Synchronous methods
-------------------

As ``MemstoreSaver``: on the loop that was running where the store was made (or
``loop=``), from another thread (``await asyncio.to_thread(graph.invoke, ...)``), and on
that loop's own thread ``asyncio.InvalidStateError`` instead of a deadlock; made where no
loop runs, on the adapters' background loop (``background_loop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import string
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from memstore.core.errors import ConflictError
from memstore.core.records import EntityHit, EntityRecord
from memstore.core.validation import ID_RULE, TYPE_RULE, check_entity_write
from memstore.integrations.background_loop import run_on, running_loop
from memstore.memory.api import MemoryAPI

T = TypeVar("T")

#: What the store's readable entity types start with.
TYPE_PREFIX = "lg."
#: What the types of namespaces too long to be readable start with (then a hash).
HASHED_TYPE_PREFIX = "lgh."
HASH_CHARS = 48
#: The entity type whose entities name the namespace of each hashed type (id: the type).
REGISTRY_TYPE = "lg-namespaces"

_LABEL_LITERAL = frozenset(string.ascii_letters + string.digits + "_")
_KEY_LITERAL = frozenset(string.ascii_letters + string.digits + "_.:@+-")
_ALNUM = frozenset(string.ascii_letters + string.digits)
_HEX = frozenset("0123456789ABCDEF")

Namespace = tuple[str, ...]


# -- names ------------------------------------------------------------------------------


def _check_labels(namespace: Sequence[str], *, what: str = "namespace") -> Namespace:
    """LangGraph's label rules (its public methods check them; ops given to ``batch``
    directly are checked here): strings, not empty, no ``.``."""
    for label in namespace:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"invalid {what} label {label!r} in {tuple(namespace)!r}: labels are "
                "non-empty strings without '.' or NUL"
            )
    return tuple(namespace)


def _escape(text: str, literal: frozenset[str], mark: str) -> str:
    return "".join(
        ch if ch in literal else "".join(f"{mark}{b:02X}" for b in ch.encode("utf-8"))
        for ch in text
    )


def _unescape(text: str, mark: str) -> str | None:
    """The text an escaped form stands for, or ``None`` when it is no escaped form."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != mark:
            out += ch.encode("ascii")
            i += 1
            continue
        pair = text[i + 1 : i + 3]
        if len(pair) != 2 or not set(pair) <= _HEX:
            return None
        out.append(int(pair, 16))
        i += 3
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _escape_label(label: str) -> str:
    return "".join("--" if ch == "-" else _escape(ch, _LABEL_LITERAL, "-") for ch in label)


def _unescape_label(text: str) -> str | None:
    return _unescape(text.replace("--", "-2D"), "-")


def _readable_type(namespace: Namespace) -> str:
    return TYPE_PREFIX + ".".join(map(_escape_label, namespace))


def _hashed_type(namespace: Namespace) -> str:
    digest = hashlib.sha256(json.dumps(namespace).encode("ascii")).hexdigest()
    return HASHED_TYPE_PREFIX + digest[:HASH_CHARS]


def namespace_type(namespace: Sequence[str]) -> str:
    """The memstore entity type holding a LangGraph namespace's items: readable when it
    fits memstore's type names, else a hash (``is_hashed_type``)."""
    namespace = _check_labels(namespace)
    if not namespace:
        raise InvalidNamespaceError("namespace cannot be empty")
    readable = _readable_type(namespace)
    return readable if len(readable) <= TYPE_RULE.max_length else _hashed_type(namespace)


def is_hashed_type(entity_type: str) -> bool:
    return entity_type.startswith(HASHED_TYPE_PREFIX)


def type_namespace(entity_type: str) -> Namespace | None:
    """The namespace a readable entity type holds, or ``None`` for a type the store did
    not make this way (a hashed type's namespace is in the registry)."""
    if not entity_type.startswith(TYPE_PREFIX):
        return None
    labels = [_unescape_label(part) for part in entity_type[len(TYPE_PREFIX) :].split(".")]
    namespace = tuple(label for label in labels if label)
    if len(namespace) != len(labels):
        return None
    # Only the canonical form (what namespace_type writes) counts.
    return namespace if namespace_type(namespace) == entity_type else None


def key_id(key: str) -> str:
    """The memstore entity id of an item's key."""
    if not isinstance(key, str):
        raise ValueError(f"key must be a string, not {type(key).__name__}")
    encoded = _escape(key, _KEY_LITERAL, "=")
    if not encoded or encoded[0] not in _ALNUM:
        encoded = "_" + encoded
    if len(encoded) > ID_RULE.max_length:
        raise ValueError(
            f"key {key[:40]!r}... is too long for memstore: it is stored as an entity id of "
            f"{len(encoded)} characters (at most {ID_RULE.max_length}; characters other than "
            "letters, digits and _ . : @ + - count three per UTF-8 byte)"
        )
    return encoded


def id_key(entity_id: str) -> str | None:
    """The key an entity id stands for, or ``None`` for an id the store did not make."""
    key = _unescape(entity_id[1:] if entity_id.startswith("_") else entity_id, "=")
    return key if key is not None and key_id(key) == entity_id else None


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _matches(condition: MatchCondition, namespace: Namespace) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        part = namespace[: len(path)]
    elif condition.match_type == "suffix":
        part = namespace[len(namespace) - len(path) :]
    else:
        raise ValueError(f"unknown match_type {condition.match_type!r}: use prefix or suffix")
    return all(p == "*" or p == label for p, label in zip(path, part, strict=True))


def _check_index(index: IndexConfig | None) -> IndexConfig | None:
    if index is None:
        return None
    if index.get("embed") is not None:
        raise ValueError(
            "MemstoreStore cannot use index['embed']: the memstore service embeds with its "
            "own embedder (MEMSTORE_EMBEDDER: wordllama, local, openai or none)"
        )
    _check_fields(index.get("fields"), "index['fields']")
    return index


def _check_fields(fields: Any, what: str) -> None:
    if fields is None or fields is False or list(fields) == ["$"]:
        return
    raise ValueError(
        f"MemstoreStore cannot choose {what} per store or per item: the memstore service "
        "indexes the fields of MEMSTORE_SEARCH_FIELDS (per entity type, or '*'; default "
        f"every string of the value); the store's entity types are {TYPE_PREFIX}<namespace>"
    )


class MemstoreStore(BaseStore):
    """LangGraph store keeping items as memstore entities (see the module docstring)."""

    supports_ttl = True

    def __init__(
        self,
        memory: MemoryAPI,
        *,
        ttl: TTLConfig | None = None,
        index: IndexConfig | None = None,
        page_size: int = 100,
        concurrency: int = 16,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``page_size``: search hits asked per call (at most the service's
        ``MEMSTORE_MAX_PAGE_SIZE``); ``concurrency``: memstore calls a batch runs at once;
        ``loop``: where the sync methods run (default: the loop running here, if any;
        else the adapters' background loop)."""
        for name, value in (("page_size", page_size), ("concurrency", concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1")
        self.memory = memory
        self.ttl_config = ttl
        self.index_config = _check_index(index)
        self.page_size = page_size
        self.concurrency = concurrency
        self.loop = loop if loop is not None else running_loop()
        # Hashed types whose registry entry is known to be stored, and what they hold (a
        # hash names one namespace forever, so these never go stale).
        self._hashed: dict[str, Namespace] = {}

    def __repr__(self) -> str:
        return f"MemstoreStore(namespace={self.memory.namespace!r})"

    # -- batches ------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return run_on(self.loop, self.abatch(ops), "MemstoreStore")

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        reads: list[tuple[int, Awaitable[Result]]] = []
        writes: dict[tuple[str, str], Awaitable[None]] = {}
        try:
            for i, op in enumerate(ops):
                if isinstance(op, GetOp):
                    reads.append((i, self._get(op)))
                elif isinstance(op, SearchOp):
                    reads.append((i, self._search(op)))
                elif isinstance(op, ListNamespacesOp):
                    reads.append((i, self._list_namespaces(op)))
                elif isinstance(op, PutOp):
                    write = self._put(op)
                    # The last write of an item counts, as in LangGraph's own stores.
                    key = (namespace_type(op.namespace), key_id(op.key))
                    if (earlier := writes.pop(key, None)) is not None:
                        _discard(earlier)
                    writes[key] = write
                else:
                    raise ValueError(f"unknown operation {type(op).__name__}")
        except BaseException:
            for _, read in reads:
                _discard(read)
            for write in writes.values():
                _discard(write)
            raise
        results: list[Result] = [None] * len(ops)
        limit = asyncio.Semaphore(self.concurrency)

        async def bounded(call: Awaitable[T]) -> T:
            async with limit:
                return await call

        try:
            found = await _settle(bounded(read) for _, read in reads)
        except BaseException:
            for write in writes.values():
                _discard(write)
            raise
        for (i, _), result in zip(reads, found, strict=True):
            results[i] = result
        await _settle(bounded(write) for write in writes.values())
        return results

    # -- operations (each checks its names before its coroutine is made) ----------------

    def _get(self, op: GetOp) -> Awaitable[Item | None]:
        entity_type, entity_id = namespace_type(op.namespace), key_id(op.key)

        async def get() -> Item | None:
            record = await self.memory.get_entity(entity_type, entity_id)
            if record is None:
                return None
            if op.refresh_ttl:
                await self._refresh(record)
            return Item(
                value=copy.deepcopy(record.data),
                key=op.key,
                namespace=tuple(op.namespace),
                created_at=_time(record.created_at),
                updated_at=_time(record.updated_at),
            )

        return get()

    def _put(self, op: PutOp) -> Awaitable[None]:
        entity_type, entity_id = namespace_type(op.namespace), key_id(op.key)
        if op.value is None:

            async def delete() -> None:
                await self.memory.delete_entity(entity_type, entity_id)

            return delete()
        _check_fields(op.index, "index")
        value = dict(op.value)
        ttl = None if op.ttl is None else op.ttl * 60
        # The manager's own checks (JSON without NaN, a valid TTL), here so that a bad
        # value fails the batch before any of its writes runs.
        check_entity_write(entity_type, entity_id, value, ttl, None, None)
        namespace = tuple(op.namespace)

        async def save() -> None:
            if is_hashed_type(entity_type) and entity_type not in self._hashed:
                # The registry entry first: a type that holds items is always named.
                await self.memory.save_entity(
                    REGISTRY_TYPE, entity_type, {"namespace": list(namespace)}
                )
                self._hashed[entity_type] = namespace
            await self.memory.save_entity(entity_type, entity_id, value, ttl=ttl)

        return save()

    async def _refresh(self, record: EntityRecord) -> None:
        """Re-save an item that has a TTL with a fresh one of the same length."""
        if record.expires_at is None:
            return
        ttl = max(record.expires_at - record.updated_at, 0.001)
        # Written (or deleted) meanwhile: that write decides its TTL.
        with contextlib.suppress(ConflictError):
            await self.memory.save_entity(
                record.type, record.id, record.data, ttl=ttl, expected_version=record.version
            )

    async def _store_types(self) -> dict[str, Namespace]:
        """The namespace of each entity type the store made (that holds unexpired items)."""
        types = await self.memory.get_entity_types()
        unknown = [t for t in types if is_hashed_type(t) and t not in self._hashed]
        entries = await asyncio.gather(*(self.memory.get_entity(REGISTRY_TYPE, t) for t in unknown))
        for entity_type, entry in zip(unknown, entries, strict=True):
            labels = None if entry is None else entry.data.get("namespace")
            if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
                named: Namespace = tuple(labels)
                with contextlib.suppress(InvalidNamespaceError):
                    if namespace_type(named) == entity_type:
                        self._hashed[entity_type] = named
        found: dict[str, Namespace] = {}
        for entity_type in types:
            namespace = self._hashed.get(entity_type) or type_namespace(entity_type)
            if namespace is not None:
                found[entity_type] = namespace
        return found

    def _search(self, op: SearchOp) -> Awaitable[list[SearchItem]]:
        prefix = _check_labels(op.namespace_prefix, what="namespace_prefix")
        if op.limit < 0 or op.offset < 0:
            raise ValueError("limit and offset must be >= 0")

        async def search() -> list[SearchItem]:
            namespaces = {
                t: ns
                for t, ns in (await self._store_types()).items()
                if ns[: len(prefix)] == prefix
            }
            wanted = op.offset + op.limit
            if not namespaces or wanted == 0:
                return []
            # Hits whose id the store did not make (an entity saved in one of its types by
            # other code) are dropped before offset and limit count, so a page is short
            # only at the end of the results.
            hits: list[tuple[EntityHit, str]] = []
            cursor: str | None = None
            scored = True
            while len(hits) < wanted:
                page = await self.memory.search_entities(
                    op.query or None,
                    types=sorted(namespaces),
                    filter=op.filter or None,
                    mode="auto",
                    limit=min(wanted - len(hits), self.page_size),
                    cursor=cursor,
                )
                for hit in page.items:
                    if (key := id_key(hit.entity.id)) is not None:
                        hits.append((hit, key))
                scored = page.mode != "filter"
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            shown = hits[op.offset : wanted]
            items = [
                SearchItem(
                    namespace=namespaces[hit.entity.type],
                    key=key,
                    value=copy.deepcopy(hit.entity.data),
                    created_at=_time(hit.entity.created_at),
                    updated_at=_time(hit.entity.updated_at),
                    score=hit.score if scored else None,
                )
                for hit, key in shown
            ]
            if op.refresh_ttl:
                await _settle(self._refresh(hit.entity) for hit, _ in shown)
            return items

        return search()

    def _list_namespaces(self, op: ListNamespacesOp) -> Awaitable[list[Namespace]]:
        conditions = tuple(op.match_conditions or ())
        for condition in conditions:
            _check_labels([p for p in condition.path if p != "*"], what="match condition")
        if op.max_depth is not None and op.max_depth < 1:
            raise ValueError("max_depth must be >= 1")

        async def list_namespaces() -> list[Namespace]:
            found = {
                ns if op.max_depth is None else ns[: op.max_depth]
                for ns in (await self._store_types()).values()
                if all(_matches(c, ns) for c in conditions)
            }
            return sorted(found)[op.offset : op.offset + op.limit]

        return list_namespaces()


async def _settle(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``calls`` at once and wait for every one to end before raising the first
    error: no call of a batch goes on after the batch has returned or failed (a plain
    ``gather`` would leave the others running, writing after the caller saw the error)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks)
    except BaseException:
        # Cancelled while waiting: cancel the calls too, and wait for them to stop.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in tasks:
        if (error := task.exception()) is not None:
            raise error
    return [task.result() for task in tasks]


def _discard(call: Awaitable[Any]) -> None:
    """Close a coroutine that will not run (no 'never awaited' warning)."""
    close = getattr(call, "close", None)
    if close is not None:
        close()

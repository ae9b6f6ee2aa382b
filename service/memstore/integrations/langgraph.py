"""LangGraph checkpointer on memstore: ``MemstoreSaver`` (``pip install 'memstore[langgraph]'``).

``MemstoreSaver(memory)`` is a ``langgraph.checkpoint.base.BaseCheckpointSaver`` over any
``MemoryAPI``: the in-process ``DistributedMemoryManager`` or a ``MemoryClient``. It stores
everything with memstore's own conversation operations (append, load, replace, delete), so it
works unchanged on every backend. A dedicated namespace is advised
(``memory.for_namespace("langgraph")``): the saver's conversations are listed, counted and
deleted there like any other.

Records (all conversations; every payload is a JSON object)
-----------------------------------------------------------

* **Thread log** ``langgraph.thread:<thread>``: one entry per ``put``
  ``{"kind": "put", "thread_id", "checkpoint_ns", "checkpoint_id"}`` in the order the
  checkpoints were put, and a ``{"kind": "pruned", "checkpoints": [[ns, id], ...]}`` entry
  per ``prune`` that names the checkpoints it deleted.
* **Checkpoint** ``langgraph.checkpoint:<thread>:<ns>:<id>``: the checkpoint
  ``{"kind": "checkpoint", "thread_id", "checkpoint_ns", "checkpoint_id",
  "parent_checkpoint_id", "checkpoint", "metadata"}`` (the whole checkpoint, channel values
  included, and its metadata), then one ``{"kind": "writes", "task_id", "task_path",
  "writes": [{"idx", "channel", "value"}, ...]}`` per ``put_writes``. Values go through the
  saver's serde (``dumps_typed``) and are stored as ``{"type", "data": <base64>}``, so any
  value LangGraph can serialise, bytes included, comes back exactly.

Names in the ids are escaped so that any string works: letters, digits and ``_ . @ + -``
stay as they are, every other character becomes ``=XX`` per UTF-8 byte (``:`` included,
so the parts of an id cannot run into each other). An id longer than memstore's limit (256)
becomes ``langgraph.<kind>:=h<sha256 of the parts>`` (an escaped id never holds ``=h``);
the records carry the original names, which is what the saver reads back.

Order and semantics
-------------------

``list`` returns newest first: by descending checkpoint id when it reads the whole log
anyway (no ``limit``) or spans namespaces (no ``checkpoint_ns`` in the config); with a
``limit`` within one namespace (and for the latest checkpoint) in the order the checkpoints
of that namespace were put, which is the same for LangGraph (it saves a namespace's
checkpoints one after the other, with time-ordered ids), but not for checkpoints put out of
order by hand (copy another saver's threads oldest first). Otherwise it keeps the
reference (``InMemorySaver``) semantics exactly: ``checkpoint_ns`` absent from the
config means every namespace, ``before`` keeps ids lower than its ``checkpoint_id``,
``filter`` keeps checkpoints whose metadata equals every given key, ``limit`` counts what is
returned; with no config at all every thread of the namespace is listed, thread after
thread. Pending writes come in ``writes_sort_key`` order; a repeated ``(task_id, idx)`` keeps
its first value, except the special channels (``WRITES_IDX_MAP``), where the last wins.

Cost, in memstore calls
-----------------------

* ``put``: two appends, the checkpoint then its log entry; ``put_writes``: one append.
* ``get_tuple`` with a ``checkpoint_id``: one conversation read.
  Without one (the latest): one page of the thread log (``page_size`` entries, newest
  first), then one conversation read; more log pages only while the newest entries belong
  to other namespaces or were pruned.
* ``list``: the thread log page by page (``page_size`` entries per call, newest first),
  stopping once ``limit`` checkpoints of the namespace are found (no ``limit``, or no
  namespace given: the whole log, then sorted). The thread,
  namespace, ``checkpoint_id`` and ``before`` are decided from the log entries alone; each
  remaining candidate costs one conversation read (its checkpoint and writes), the reads of
  one page sent together, so a metadata ``filter`` reads every candidate it rejects. With
  no config: plus ``list_conversations`` over the whole namespace.
* ``delete_thread``: one log read, one delete per checkpoint (sent ``page_size`` at a
  time), one delete of the log. ``prune``: the log read, one read per checkpoint namespace
  (its newest), one delete per other checkpoint, one append;
  ``copy_thread``: one log read, then per checkpoint one read and one replace, and the new
  log entries appended ``page_size`` at a time.

Storage: each checkpoint holds its whole state, as ``SqliteSaver`` stores it; a thread's
checkpoints grow with its history (``prune(strategy="keep_latest")`` trims them). The log
keeps one small entry per checkpoint ever put until ``delete_thread``. One checkpoint (its
state in base64, a third larger than the serde's bytes) must fit in the service's payload
limit (``MEMSTORE_MAX_BODY_BYTES``, 1 MiB by default): a bigger one is refused with
``PayloadTooLargeError`` and nothing of it is stored.

Concurrency
-----------

Every write is an append, which memstore makes atomic (``seq`` numbers are never shared),
and nothing is read-modify-written: two writers of one thread (several runs, parallel tasks
writing their ``put_writes`` at once) can neither lose nor mix each other's records, so no
``expected_version`` is needed. A ``put`` appends the checkpoint, then its log entry, so
a listed checkpoint is always there to read (a reader that meets a log entry whose
checkpoint is gone skips it); a crash between the two leaves the checkpoint readable by id
but not listed. A ``put_writes`` may land before its checkpoint (LangGraph's
``durability="async"`` allows it). ``delete_thread`` racing a ``put`` on the same thread
can leave that checkpoint's record behind, unreachable. ``prune`` deletes, then records what
it deleted with an append (it never rewrites the log, which could drop a concurrent put).

Synchronous methods
-------------------

The sync methods (``graph.invoke``, ``get_state``, ...) run the async ones on an event
loop, and wait:

* on the loop that was running where the saver was made (or ``loop=``): the memory's
  connections (the manager's Redis or MongoDB driver) belong to the loop that opened them,
  and an app that builds its graph inside its loop and calls ``graph.invoke`` from a
  worker thread (``await asyncio.to_thread(graph.invoke, ...)``) uses one memory from both
  kinds of methods. LangGraph's own async savers do the same. On that loop's own thread
  the call would wait for itself, so it raises ``asyncio.InvalidStateError`` instead: use
  the async API there (``await graph.ainvoke(...)``);
* made where no loop runs (a plain sync program), on the adapters' shared background loop
  (``background_loop.run_sync``), as the other adapters' sync methods: a ``MemoryClient``
  serves it next to any other loop, a manager only if used through the sync methods alone.

Not implemented: ``delete_for_runs`` (it needs every checkpoint of the namespace read:
there is no index by run). ``prune(strategy="keep_latest")`` keeps each namespace's newest
checkpoint and its writes only, so LangGraph's beta ``DeltaChannel`` cannot rebuild from
older ones afterwards (the caveat LangGraph documents on ``prune``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import string
from collections.abc import AsyncGenerator, Coroutine, Iterator, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from memstore.core.records import JSONObject
from memstore.core.validation import ID_RULE
from memstore.integrations.background_loop import run_on, running_loop
from memstore.memory.api import MemoryAPI

T = TypeVar("T")

#: Prefixes of the saver's conversation ids.
THREAD_PREFIX = "langgraph.thread:"
CHECKPOINT_PREFIX = "langgraph.checkpoint:"

_LITERAL = frozenset(string.ascii_letters + string.digits + "_.@+-")

#: The prune strategies LangGraph defines.
PRUNE_STRATEGIES = ("keep_latest", "delete")


def _escape(text: str) -> str:
    return "".join(
        ch if ch in _LITERAL else "".join(f"={b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        for ch in text
    )


def _conversation_id(prefix: str, *parts: str) -> str:
    readable = prefix + ":".join(map(_escape, parts))
    if len(readable) <= ID_RULE.max_length:
        return readable
    digest = hashlib.sha256(json.dumps(parts).encode("ascii")).hexdigest()
    return f"{prefix}=h{digest}"


def thread_conversation_id(thread_id: str) -> str:
    """The conversation holding a thread's log (one entry per checkpoint put)."""
    return _conversation_id(THREAD_PREFIX, thread_id)


def checkpoint_conversation_id(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> str:
    """The conversation holding one checkpoint and its pending writes."""
    return _conversation_id(CHECKPOINT_PREFIX, thread_id, checkpoint_ns, checkpoint_id)


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


Key = tuple[str, str]  # (checkpoint_ns, checkpoint_id) within one thread


def _new_puts(entry: JSONObject, seen: set[Key]) -> list[Key]:
    """Read newest first: the checkpoint a log entry puts, unless a newer entry put it or
    a newer prune deleted it (``seen`` keeps both)."""
    kind = entry.get("kind")
    if kind == "pruned":
        seen.update((ns, cid) for ns, cid in entry["checkpoints"])
    elif kind == "put":
        key = (entry["checkpoint_ns"], entry["checkpoint_id"])
        if key not in seen:
            seen.add(key)
            return [key]
    return []


def _live_keys(entries: Sequence[JSONObject]) -> list[Key]:
    """The checkpoints a whole thread log names and no prune deleted, newest first."""
    seen: set[Key] = set()
    return [key for entry in reversed(entries) for key in _new_puts(entry, seen)]


def _matches(metadata: CheckpointMetadata, filter: dict[str, Any]) -> bool:
    found: dict[str, Any] = dict(metadata)
    return all(value == found.get(key) for key, value in filter.items())


class MemstoreSaver(BaseCheckpointSaver[int]):
    """LangGraph checkpointer storing threads in memstore (see the module docstring)."""

    def __init__(
        self,
        memory: MemoryAPI,
        *,
        serde: SerializerProtocol | None = None,
        page_size: int = 50,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """``page_size``: log entries read per call (at most the server's
        ``MEMSTORE_MAX_PAGE_SIZE``). ``loop``: where the sync methods run the async ones
        (default: the loop running here, if any; else the adapters' background loop)."""
        super().__init__(serde=serde)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ValueError("page_size must be an integer >= 1")
        self.memory = memory
        self.page_size = page_size
        self.loop = loop if loop is not None else running_loop()

    # -- encoding -----------------------------------------------------------------------

    def _dump(self, value: Any) -> JSONObject:
        type_, data = self.serde.dumps_typed(value)
        return {"type": type_, "data": base64.b64encode(data).decode("ascii")}

    def _load(self, stored: JSONObject) -> Any:
        return self.serde.loads_typed((stored["type"], base64.b64decode(stored["data"])))

    # -- reading ------------------------------------------------------------------------

    async def _read_checkpoint(
        self, thread_id: str, checkpoint_ns: str, checkpoint_id: str
    ) -> CheckpointTuple | None:
        records = await self.memory.load_messages(
            checkpoint_conversation_id(thread_id, checkpoint_ns, checkpoint_id)
        )
        body: JSONObject | None = None
        writes: dict[tuple[str, int], tuple[str, str, JSONObject]] = {}
        for record in records:
            message = record.message
            if message.get("kind") == "checkpoint":
                body = message  # a checkpoint put again: the last one counts
            elif message.get("kind") == "writes":
                task_id, task_path = message["task_id"], message["task_path"]
                for write in message["writes"]:
                    key = (task_id, write["idx"])
                    if key[1] >= 0 and key in writes:
                        continue  # a repeated write keeps its first value
                    writes[key] = (task_path, write["channel"], write["value"])
        if body is None:
            return None
        ordered = sorted(writes.items(), key=lambda kv: writes_sort_key(kv[1][0], *kv[0]))
        pending: list[PendingWrite] = [
            (task_id, channel, self._load(value)) for (task_id, _), (_, channel, value) in ordered
        ]
        parent = body["parent_checkpoint_id"]
        return CheckpointTuple(
            config=_config(thread_id, checkpoint_ns, checkpoint_id),
            checkpoint=self._load(body["checkpoint"]),
            metadata=self._load(body["metadata"]),
            parent_config=None if parent is None else _config(thread_id, checkpoint_ns, parent),
            pending_writes=pending,
        )

    async def _log_pages(self, log_id: str) -> AsyncGenerator[list[JSONObject], None]:
        """A thread log, newest first, one page per call."""
        before: int | None = None
        while True:
            page = await self.memory.load_messages(log_id, limit=self.page_size, before_seq=before)
            if not page:
                return
            yield [record.message for record in reversed(page)]
            before = page[0].seq
            if len(page) < self.page_size or before <= 1:
                return

    async def _scan(
        self,
        log_id: str,
        *,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before_id: str | None,
        filter: dict[str, Any] | None,
        limit: int | None,
    ) -> AsyncGenerator[CheckpointTuple, None]:
        """One thread's checkpoints, newest first, as ``list`` selects them."""
        if limit is not None and limit <= 0:
            return
        remaining = limit
        candidate_pages = self._candidates(
            log_id,
            checkpoint_ns=checkpoint_ns,
            checkpoint_id=checkpoint_id,
            before_id=before_id,
            whole=limit is None or checkpoint_ns is None,
        )
        async with aclosing(candidate_pages):
            async for candidates in candidate_pages:
                while candidates:
                    # Without a filter, the next `remaining` candidates are enough (unless
                    # some are gone); a filter may reject any of them.
                    take = len(candidates) if remaining is None or filter else remaining
                    batch, candidates = candidates[:take], candidates[take:]
                    found = await asyncio.gather(*(self._read_checkpoint(*c) for c in batch))
                    for tup in found:
                        if tup is None or (filter and not _matches(tup.metadata, filter)):
                            continue
                        yield tup
                        if remaining is not None:
                            remaining -= 1
                            if remaining == 0:
                                return

    async def _candidates(
        self,
        log_id: str,
        *,
        checkpoint_ns: str | None,
        checkpoint_id: str | None,
        before_id: str | None,
        whole: bool,
    ) -> AsyncGenerator[list[tuple[str, str, str]], None]:
        """The (thread, namespace, id) a list reads, newest first: page by page in log
        order, or (``whole``) every one of them at once, sorted by id.

        Puts reach the log in id order within one namespace (LangGraph saves a
        namespace's checkpoints one after the other), not across namespaces (a subgraph
        saves while its parent's save is still on its way). A listing that reads the
        whole log anyway (no ``limit``) or spans namespaces sorts by id; one that stops
        early (``limit``, the latest) trusts the log's order within its namespace."""
        seen: set[Key] = set()  # met already, or deleted by a prune met already
        collected: list[tuple[str, str, str]] = []
        pages = self._log_pages(log_id)
        async with aclosing(pages):
            async for page in pages:
                candidates = [
                    (entry["thread_id"], ns, cid)
                    for entry in page
                    for ns, cid in _new_puts(entry, seen)
                    if (checkpoint_ns is None or ns == checkpoint_ns)
                    and (checkpoint_id is None or cid == checkpoint_id)
                    and (before_id is None or cid < before_id)
                ]
                if whole:
                    collected += candidates
                else:
                    yield candidates
        if whole:
            yield sorted(collected, key=lambda c: c[2], reverse=True)

    async def _thread_logs(self) -> AsyncGenerator[str, None]:
        """Every thread log of the namespace."""
        cursor: str | None = None
        while True:
            page = await self.memory.list_conversations(limit=self.page_size, cursor=cursor)
            for info in page.items:
                if info.conversation_id.startswith(THREAD_PREFIX):
                    yield info.conversation_id
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            return await self._read_checkpoint(thread_id, checkpoint_ns, checkpoint_id)
        latest = self._scan(
            thread_conversation_id(thread_id),
            checkpoint_ns=checkpoint_ns,
            checkpoint_id=None,
            before_id=None,
            filter=None,
            limit=1,
        )
        async with aclosing(latest):
            async for tup in latest:
                return tup
        return None

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncGenerator[CheckpointTuple, None]:
        before_id = get_checkpoint_id(before) if before else None
        if config is not None:
            configurable = config["configurable"]
            logs: AsyncGenerator[str, None] = _one(
                thread_conversation_id(str(configurable["thread_id"]))
            )
            checkpoint_ns = configurable.get("checkpoint_ns")
            checkpoint_id = get_checkpoint_id(config)
        else:
            logs, checkpoint_ns, checkpoint_id = self._thread_logs(), None, None
        remaining = limit
        async with aclosing(logs):
            async for log_id in logs:
                found = self._scan(
                    log_id,
                    checkpoint_ns=checkpoint_ns,
                    checkpoint_id=checkpoint_id,
                    before_id=before_id,
                    filter=filter,
                    limit=remaining,
                )
                async with aclosing(found):
                    async for tup in found:
                        yield tup
                        if remaining is not None:
                            remaining -= 1
                if remaining is not None and remaining <= 0:
                    return

    # -- writing ------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        checkpoint_ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = checkpoint["id"]
        entry = {
            "kind": "put",
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
        body = {
            "kind": "checkpoint",
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
            "parent_checkpoint_id": configurable.get("checkpoint_id"),
            "checkpoint": self._dump(checkpoint),
            "metadata": self._dump(get_checkpoint_metadata(config, metadata)),
        }
        # The checkpoint first: one refused (too large, say) leaves nothing behind.
        await self.memory.append_messages(
            [body], checkpoint_conversation_id(thread_id, checkpoint_ns, checkpoint_id)
        )
        await self.memory.append_messages([entry], thread_conversation_id(thread_id))
        return _config(thread_id, checkpoint_ns, checkpoint_id)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not writes:
            return
        configurable = config["configurable"]
        message = {
            "kind": "writes",
            "task_id": task_id,
            "task_path": task_path,
            "writes": [
                {
                    "idx": WRITES_IDX_MAP.get(channel, idx),
                    "channel": channel,
                    "value": self._dump(v),
                }
                for idx, (channel, v) in enumerate(writes)
            ],
        }
        conversation = checkpoint_conversation_id(
            str(configurable["thread_id"]),
            configurable.get("checkpoint_ns", ""),
            configurable["checkpoint_id"],
        )
        await self.memory.append_messages([message], conversation)

    async def _delete_checkpoints(self, thread_id: str, keys: Sequence[Key]) -> None:
        for chunk in _chunks(keys, self.page_size):
            await asyncio.gather(
                *(
                    self.memory.delete_conversation(checkpoint_conversation_id(thread_id, ns, cid))
                    for ns, cid in chunk
                )
            )

    async def _log(self, thread_id: str) -> list[JSONObject]:
        records = await self.memory.load_messages(thread_conversation_id(thread_id))
        return [record.message for record in records]

    async def adelete_thread(self, thread_id: str) -> None:
        thread_id = str(thread_id)
        entries = await self._log(thread_id)
        keys = {(e["checkpoint_ns"], e["checkpoint_id"]) for e in entries if e.get("kind") == "put"}
        await self._delete_checkpoints(thread_id, sorted(keys))
        await self.memory.delete_conversation(thread_conversation_id(thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(
                f"unknown prune strategy {strategy!r}: use one of {', '.join(PRUNE_STRATEGIES)}"
            )
        for thread_id in map(str, thread_ids):
            if strategy == "delete":
                await self.adelete_thread(thread_id)
                continue
            kept: set[str] = set()  # namespaces whose newest checkpoint is found
            doomed: list[Key] = []
            for ns, cid in _live_keys(await self._log(thread_id)):
                if ns not in kept and await self._read_checkpoint(thread_id, ns, cid):
                    kept.add(ns)
                else:
                    doomed.append((ns, cid))
            if not doomed:
                continue
            await self._delete_checkpoints(thread_id, doomed)
            markers = [
                {"kind": "pruned", "checkpoints": [list(key) for key in chunk]}
                for chunk in _chunks(doomed, 1000)
            ]
            log_id = thread_conversation_id(thread_id)
            for batch in _chunks(markers, self.page_size):
                await self.memory.append_messages(list(batch), log_id)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source, target = str(source_thread_id), str(target_thread_id)
        copied: list[JSONObject] = []
        keys = list(reversed(_live_keys(await self._log(source))))  # oldest first
        for chunk in _chunks(keys, self.page_size):
            loaded = await asyncio.gather(
                *(
                    self.memory.load_messages(checkpoint_conversation_id(source, ns, cid))
                    for ns, cid in chunk
                )
            )
            copies = []
            for (ns, cid), records in zip(chunk, loaded, strict=True):
                messages = [record.message for record in records]
                if not any(m.get("kind") == "checkpoint" for m in messages):
                    continue  # named by the log, never written
                messages = [
                    {**m, "thread_id": target} if m.get("kind") == "checkpoint" else m
                    for m in messages
                ]
                copies.append(
                    self.memory.save_conversation_history(
                        messages, checkpoint_conversation_id(target, ns, cid)
                    )
                )
                copied.append(
                    {"kind": "put", "thread_id": target, "checkpoint_ns": ns, "checkpoint_id": cid}
                )
            await asyncio.gather(*copies)
        log_id = thread_conversation_id(target)
        for batch in _chunks(copied, self.page_size):
            await self.memory.append_messages(list(batch), log_id)

    # -- synchronous methods: the async ones, run on the memory's event loop -------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one of the async methods for a sync caller (see the module docstring)."""
        return run_on(self.loop, coro, "MemstoreSaver")

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._run(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        items = self.alist(config, filter=filter, before=before, limit=limit)

        async def step() -> CheckpointTuple | None:
            return await anext(items, None)

        try:
            while (tup := self._run(step())) is not None:
                yield tup
        finally:
            if self.loop is not None and running_loop() is self.loop:
                # Left unfinished and collected on the loop's own thread, which must not
                # wait for itself: the loop closes it later.
                asyncio.run_coroutine_threadsafe(items.aclose(), self.loop)
            else:
                self._run(items.aclose())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._run(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._run(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._run(self.adelete_thread(thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._run(self.aprune(thread_ids, strategy=strategy))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._run(self.acopy_thread(source_thread_id, target_thread_id))


async def _one(item: str) -> AsyncGenerator[str, None]:
    yield item

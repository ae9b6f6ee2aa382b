"""Compression and encryption at rest, the same on every backend: ``SealedBackend`` wraps
the configured backend and passes every payload through ``memstore.core.payload_codec``
on its way in (seal) and out (open). The wrapped backend stores the envelope as it
stores any JSON payload, so embedded, Redis (standalone and Cluster) and MongoDB need no
change of their own, and everything that reads through the backend (the manager, the
search indexes, the webhook store) sees plain payloads.

Data keys: one per namespace, created on the namespace's first sealed write, stored
wrapped by the primary key-encryption key (KEK) as an entity of the reserved namespace
``_keys`` (type ``data_key``, id = the namespace) in the same backend, so every replica
sees it; created with ``expected_version=0`` so two replicas racing agree on one key.
Each replica caches unwrapped keys for ``data_key_cache_seconds``; deleting a key
(crypto-shredding) announces ``data-key/<namespace>`` on the backend's invalidation bus
(Redis) so other replicas drop it at once (MongoDB, which has no bus: within the cache
time). Vectors of the search index (``_search``, type = the item's namespace) are
sealed with the key of the namespace they belong to, so shredding a namespace takes its
vectors with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from memstore.backends.base import DistributedMemoryBackend, InvalidationCallback
from memstore.core import payload_codec as codec
from memstore.core.errors import (
    ConfigurationError,
    ConflictError,
    DataShreddedError,
    NotFoundError,
)
from memstore.core.keys import DATA_KEY_PREFIX, data_key_change_key
from memstore.core.records import (
    ConversationInfo,
    ConversationRevision,
    EntityRecord,
    EntityRow,
    EntityVersion,
    EntityWrite,
    FeedbackRecord,
    JSONObject,
    MemorySummary,
    MessageRecord,
    MessageRow,
    MessagesWrite,
    Page,
    ToolUsageRecord,
)
from memstore.core.settings import StoreSettings

#: The reserved namespace of the wrapped data keys (outside the namespace rule: no request
#: can address it). Stored as is: never sealed.
KEYS_NAMESPACE = "_keys"
DATA_KEY_TYPE = "data_key"
#: The search index's vectors: type = the namespace whose items they are (search/vectors.py).
VECTORS_NAMESPACE = "_search"

#: Methods of the backend contract that carry no payload: passed to the wrapped backend as
#: they are. A new contract method must be added here or sealed below
#: (tests/unit/test_payload_codec.py checks that every method is one or the other).
PASSTHROUGH_METHODS = frozenset(
    {
        "connect",
        "close",
        "ping",
        "publish_invalidation",
        "delete_entity",
        "get_entity_types",
        "delete_conversation",
        "list_conversations",
        "get_tool_names",
        "read_changes",
        "trim_changes",
        "summary",
        "analytics_overview",
        "analytics_growth",
        "analytics_tools",
        "analytics_feedback",
        "stored_bytes",
        "logical_bytes",
        "tool_usage_cutoff",
        "list_namespaces",
        # retention: keys, read times and cutoffs, never a payload
        "touch_entities",
        "prune",
        # version history: revision headers and a purge carry no payload
        "list_conversation_revisions",
        "purge_history",
        "erase_pending",
    }
)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


class SealedBackend(DistributedMemoryBackend):
    """``inner`` with every payload compressed above ``compression_min_bytes`` and, with
    ``keks``, encrypted with its namespace's data key."""

    def __init__(
        self,
        inner: DistributedMemoryBackend,
        settings: StoreSettings,
        keks: codec.KeyEncryptionKeys | None,
    ) -> None:
        super().__init__(settings)
        self.inner = inner
        self.name = inner.name
        self._keks = keks
        self._min_bytes = settings.compression_min_bytes
        self._cache_seconds = settings.data_key_cache_seconds
        self._keys: dict[str, tuple[codec.DataKey | None, float]] = {}
        self._creating: dict[str, asyncio.Lock] = {}

    @property
    def encrypts(self) -> bool:
        return self._keks is not None

    def __repr__(self) -> str:
        return (
            f"SealedBackend({self.inner.name}, keks={self._keks!r}, "
            f"compression_min_bytes={self._min_bytes})"
        )

    def describe(self) -> dict[str, Any]:
        facts = self.inner.describe()
        facts["compression_min_bytes"] = self._min_bytes
        facts["encryption"] = self._keks is not None
        return facts

    # -- what carries no payload: the wrapped backend's, as it is ------------------------

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def delete_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        expected_version: int | None = None,
    ) -> bool:
        return await self.inner.delete_entity(
            namespace, entity_type, entity_id, expected_version=expected_version
        )

    async def get_entity_types(self, namespace: str) -> list[str]:
        return await self.inner.get_entity_types(namespace)

    async def delete_conversation(self, namespace: str, conversation_id: str) -> bool:
        return await self.inner.delete_conversation(namespace, conversation_id)

    async def list_conversations(
        self, namespace: str, *, limit: int, cursor: str | None = None
    ) -> Page[ConversationInfo]:
        return await self.inner.list_conversations(namespace, limit=limit, cursor=cursor)

    async def get_tool_names(self, namespace: str) -> list[str]:
        return await self.inner.get_tool_names(namespace)

    async def summary(self, namespace: str) -> MemorySummary:
        return await self.inner.summary(namespace)

    async def list_conversation_revisions(
        self, namespace: str, conversation_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[ConversationRevision]:
        return await self.inner.list_conversation_revisions(
            namespace, conversation_id, cursor=cursor, limit=limit
        )

    async def purge_history(self, namespace: str) -> int:
        return await self.inner.purge_history(namespace)

    async def delete_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        versions: Sequence[tuple[int, bool]],
    ) -> int:
        return await self.inner.delete_entity_versions(namespace, entity_type, entity_id, versions)

    async def delete_conversation_revisions(
        self, namespace: str, conversation_id: str, revisions: Sequence[int]
    ) -> int:
        return await self.inner.delete_conversation_revisions(namespace, conversation_id, revisions)

    # -- data keys ------------------------------------------------------------------------

    def _key_owner(self, namespace: str, entity_type: str | None = None) -> str:
        """Whose data key seals a payload: the search vectors' namespace, else its own."""
        if namespace == VECTORS_NAMESPACE and entity_type is not None:
            return entity_type
        return namespace

    async def _stored_key(self, owner: str) -> codec.DataKey | None:
        if self._keks is None:
            return None
        cached = self._keys.get(owner)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return cached[0]
        record = await self.inner.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, owner)
        key = None if record is None else codec.unwrap_data_key(self._keks, owner, record.data)
        self._keys[owner] = (key, time.monotonic())
        return key

    async def _write_key(self, owner: str) -> codec.DataKey | None:
        """The namespace's data key, created (once, whichever replica is first) if it has none."""
        if self._keks is None:
            return None
        key = await self._stored_key(owner)
        if key is not None:
            return key
        lock = self._creating.setdefault(owner, asyncio.Lock())
        async with lock:
            self._keys.pop(owner, None)
            key = await self._stored_key(owner)
            if key is not None:
                return key
            fresh = codec.new_data_key()
            try:
                await self.inner.save_entity(
                    KEYS_NAMESPACE,
                    DATA_KEY_TYPE,
                    owner,
                    codec.wrap_data_key(self._keks, owner, fresh),
                    expected_version=0,
                )
            except ConflictError:
                self._keys.pop(owner, None)  # another replica created it first: use theirs
                key = await self._stored_key(owner)
                if key is None:
                    raise
                return key
            self._keys[owner] = (fresh, time.monotonic())
            return fresh

    async def _key_by_id(self, owner: str, key_id: str, what: str) -> codec.DataKey:
        """The data key ``key_id`` of ``owner``; ``DataShreddedError`` when the namespace's
        key is another one or none (deleted)."""
        if self._keks is None:
            raise ConfigurationError(
                f"{what} is encrypted but no MEMSTORE_ENCRYPTION_KEY_FILE is set"
            )
        key = await self._stored_key(owner)
        if key is not None and key.key_id != key_id:
            self._keys.pop(owner, None)  # re-read once: another replica may have made it
            key = await self._stored_key(owner)
        if key is None or key.key_id != key_id:
            raise DataShreddedError(
                f"the data key {key_id!r} of namespace {owner!r} was deleted: {what} "
                "can no longer be read",
                namespace=owner,
                key_id=key_id,
            )
        return key

    async def _open(self, owner: str, stored: Any, aad: bytes) -> Any:
        key_id = codec.envelope_key_id(stored)
        if key_id is None:
            return codec.open_sealed(stored, key=None, aad=aad)
        key = await self._key_by_id(owner, key_id, "this payload")
        return codec.open_sealed(stored, key=key, aad=aad)

    # -- payloads kept outside the store: dumps, the shared cache --------------------------

    async def dump_sealer(self, namespace: str) -> codec.Sealer | None:
        """What seals a dump of ``namespace``: its data key; ``None`` without encryption or
        when the namespace has no key (nothing of it is sealed at rest either: it is
        exported as it is stored). A dump sealed with it opens only while the key exists,
        so shredding the namespace takes its dumps with it."""
        key = await self._stored_key(namespace)
        if key is None:
            return None
        record = await self.inner.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, namespace)
        wrapped = None if record is None else record.data
        return codec.Sealer(key, self._min_bytes, wrapped)

    async def dump_opener(
        self,
        namespace: str,
        key_id: str,
        wrapped: dict[str, Any] | None = None,
        *,
        store_key: bool = True,
    ) -> codec.Sealer:
        """What opens a dump sealed with data key ``key_id`` of ``namespace`` (the dump's
        source): that key from this store (unless not ``store_key``), else from ``wrapped``
        (a dump exported with its key: any store holding the KEK that wraps it);
        ``DataShreddedError`` otherwise."""
        key: codec.DataKey | None = None
        if store_key:
            with contextlib.suppress(DataShreddedError):
                key = await self._key_by_id(namespace, key_id, "the dump")
        if key is None:
            if wrapped is None or wrapped.get("key_id") != key_id:
                raise DataShreddedError(
                    f"the dump of namespace {namespace!r} is sealed with its data key "
                    f"{key_id!r}, which this store does not hold (shredded, or a store that "
                    "never held it; a dump exported with its key opens in any store sharing "
                    "the key-encryption key): the dump cannot be read",
                    namespace=namespace,
                    key_id=key_id,
                )
            key = codec.unwrap_data_key(self._require_keks(), namespace, wrapped)
        return codec.Sealer(key, self._min_bytes)

    async def seal_cached_entity(self, namespace: str, record: EntityRecord) -> EntityRecord | None:
        """``record`` as it is kept at rest (its data sealed with the namespace's key, bound
        to the entity), for a cache outside the process; ``None`` when the namespace has no
        key to seal it with (nothing is cached then)."""
        owner = self._key_owner(namespace, record.type)
        key = await self._stored_key(owner)
        if key is None:
            return None
        aad = codec.record_aad(namespace, "entity", record.type, record.id)
        stored, _ = self._seal(record.data, None, key, aad)
        return dataclasses.replace(record, data=stored)

    async def open_cached_entity(self, namespace: str, record: EntityRecord) -> EntityRecord:
        """The plain record of one :meth:`seal_cached_entity` made (``DataShreddedError`` once
        the key is gone)."""
        return await self._open_entity(namespace, record)

    def _seal(
        self,
        value: Any,
        value_json: bytes | None,
        key: codec.DataKey | None,
        aad: bytes,
        clear: dict[str, Any] | None = None,
    ) -> tuple[Any, bytes | None]:
        raw = value_json if value_json is not None else _json(value)
        envelope = codec.seal(
            raw, compress_min_bytes=self._min_bytes, key=key, aad=aad, clear=clear
        )
        if envelope is None:
            return value, value_json
        return envelope, _json(envelope)

    # -- key administration ---------------------------------------------------------------

    async def data_keys(self) -> list[dict[str, Any]]:
        return await list_data_keys(self.inner)

    async def rotate_data_keys(self) -> dict[str, Any]:
        """Re-wrap every data key with the primary KEK (old data stays readable: the data
        keys themselves do not change). Conditional on the version read, so a key deleted
        or re-wrapped meanwhile is left as the other writer left it."""
        keks = self._require_keks()
        rewrapped = unchanged = 0
        cursor: str | None = None
        while True:
            page = await self.inner.list_entities(
                KEYS_NAMESPACE, DATA_KEY_TYPE, limit=500, cursor=cursor
            )
            for record in page.items:
                if record.data.get("kek_id") == keks.primary:
                    unchanged += 1
                    continue
                key = codec.unwrap_data_key(keks, record.id, record.data)
                try:
                    await self.inner.save_entity(
                        KEYS_NAMESPACE,
                        DATA_KEY_TYPE,
                        record.id,
                        codec.wrap_data_key(keks, record.id, key),
                        expected_version=record.version,
                    )
                except ConflictError:
                    continue
                rewrapped += 1
                await self._announce(record.id)
            cursor = page.next_cursor
            if cursor is None:
                return {"kek_id": keks.primary, "rewrapped": rewrapped, "unchanged": unchanged}

    async def shred_data_key(self, namespace: str) -> dict[str, Any]:
        """Delete the namespace's data key: everything encrypted with it becomes unreadable
        on every replica and in every copy of the backend. The next write to the
        namespace creates a new key."""
        result = await delete_data_key(self.inner, namespace)
        self._keys.pop(namespace, None)
        return result

    def _require_keks(self) -> codec.KeyEncryptionKeys:
        if self._keks is None:
            raise ConfigurationError("encryption at rest is off: set MEMSTORE_ENCRYPTION_KEY_FILE")
        return self._keks

    async def _announce(self, namespace: str) -> None:
        await self.inner.publish_invalidation(data_key_change_key(namespace))

    async def subscribe_invalidations(self, callback: InvalidationCallback) -> None:
        async def on_change(key: str | None) -> None:
            if key is not None and key.startswith(DATA_KEY_PREFIX):
                self._keys.pop(key[len(DATA_KEY_PREFIX) :], None)
                await callback(None)  # cached plaintext of that namespace goes too
                return
            if key is None:
                self._keys.clear()
            await callback(key)

        await self.inner.subscribe_invalidations(on_change)

    # -- entities -------------------------------------------------------------------------

    async def save_entity(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        data: JSONObject,
        *,
        expected_version: int | None = None,
        ttl: float | None = None,
        data_json: bytes | None = None,
    ) -> EntityRecord:
        stored, stored_json = await self._seal_entity(
            namespace, EntityWrite(entity_type, entity_id, data, data_json=data_json)
        )
        record = await self.inner.save_entity(
            namespace,
            entity_type,
            entity_id,
            stored,
            expected_version=expected_version,
            ttl=ttl,
            data_json=stored_json,
        )
        return record if stored is data else dataclasses.replace(record, data=data)

    async def save_entities(
        self, namespace: str, items: Sequence[EntityWrite]
    ) -> list[EntityRecord]:
        """Each value sealed as ``save_entity`` seals it, then one batch of the inner
        backend (its atomicity)."""
        if namespace == KEYS_NAMESPACE:
            return await self.inner.save_entities(namespace, items)
        sealed = []
        for item in items:
            stored, stored_json = await self._seal_entity(namespace, item)
            sealed.append(dataclasses.replace(item, data=stored, data_json=stored_json))
        records = await self.inner.save_entities(namespace, sealed)
        return [
            dataclasses.replace(r, data=item.data) for r, item in zip(records, items, strict=True)
        ]

    async def _seal_entity(
        self, namespace: str, item: EntityWrite
    ) -> tuple[JSONObject, bytes | None]:
        """What the inner backend stores for ``item``'s data (and its JSON): the sealed
        envelope, or the data itself in the keys' own namespace."""
        if namespace == KEYS_NAMESPACE:
            return item.data, item.data_json
        key = await self._write_key(self._key_owner(namespace, item.entity_type))
        aad = codec.record_aad(namespace, "entity", item.entity_type, item.entity_id)
        return self._seal(item.data, item.data_json, key, aad)

    async def _open_entity(self, namespace: str, record: EntityRecord) -> EntityRecord:
        if namespace == KEYS_NAMESPACE or not codec.is_envelope(record.data):
            return record
        data = await self._open(
            self._key_owner(namespace, record.type),
            record.data,
            codec.record_aad(namespace, "entity", record.type, record.id),
        )
        return dataclasses.replace(record, data=data)

    async def load_entity(
        self, namespace: str, entity_type: str, entity_id: str
    ) -> EntityRecord | None:
        record = await self.inner.load_entity(namespace, entity_type, entity_id)
        return None if record is None else await self._open_entity(namespace, record)

    async def list_entities(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRecord]:
        page = await self.inner.list_entities(namespace, entity_type, limit=limit, cursor=cursor)
        items = [await self._open_entity(namespace, r) for r in page.items]
        return Page(items=items, next_cursor=page.next_cursor)

    async def list_entity_rows(
        self, namespace: str, entity_type: str, *, limit: int, cursor: str | None = None
    ) -> Page[EntityRow]:
        # The stored rows hold envelopes: the contract's default serialises the opened
        # entities instead.
        return await super().list_entity_rows(namespace, entity_type, limit=limit, cursor=cursor)

    async def import_entity(self, namespace: str, record: EntityRecord) -> None:
        if namespace != KEYS_NAMESPACE:
            key = await self._write_key(self._key_owner(namespace, record.type))
            aad = codec.record_aad(namespace, "entity", record.type, record.id)
            stored, _ = self._seal(record.data, None, key, aad)
            record = dataclasses.replace(record, data=stored)
        await self.inner.import_entity(namespace, record)

    async def set_entity_pinned(
        self, namespace: str, entity_type: str, entity_id: str, pinned: bool
    ) -> EntityRecord | None:
        record = await self.inner.set_entity_pinned(namespace, entity_type, entity_id, pinned)
        return None if record is None else await self._open_entity(namespace, record)

    # -- version history: a history row is the entity row it was, sealed as it was -------

    async def _open_version(self, namespace: str, version: EntityVersion) -> EntityVersion:
        if namespace == KEYS_NAMESPACE or not codec.is_envelope(version.data):
            return version
        data = await self._open(
            self._key_owner(namespace, version.type),
            version.data,
            codec.record_aad(namespace, "entity", version.type, version.id),
        )
        return dataclasses.replace(version, data=data)

    async def _list_version(self, namespace: str, version: EntityVersion) -> EntityVersion:
        """A listed version: one whose data key was shredded is listed without its data
        (``shredded``) rather than failing the page, so the versions saved since stay
        listable; loading it answers ``DataShreddedError``."""
        try:
            return await self._open_version(namespace, version)
        except DataShreddedError:
            return dataclasses.replace(version, data=None, shredded=True)

    async def list_entity_versions(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page[EntityVersion]:
        page = await self.inner.list_entity_versions(
            namespace, entity_type, entity_id, cursor=cursor, limit=limit
        )
        items = [await self._list_version(namespace, v) for v in page.items]
        return Page(items=items, next_cursor=page.next_cursor)

    async def load_entity_version(
        self,
        namespace: str,
        entity_type: str,
        entity_id: str,
        *,
        version: int | None = None,
        at: float | None = None,
    ) -> EntityVersion | None:
        found = await self.inner.load_entity_version(
            namespace, entity_type, entity_id, version=version, at=at
        )
        return None if found is None else await self._open_version(namespace, found)

    async def list_versioned_entities(
        self, namespace: str, *, cursor: str | None = None, limit: int = 100
    ) -> Page[EntityVersion]:
        page = await self.inner.list_versioned_entities(namespace, cursor=cursor, limit=limit)
        items = [await self._list_version(namespace, v) for v in page.items]
        return Page(items=items, next_cursor=page.next_cursor)

    async def import_entity_versions(
        self, namespace: str, versions: Sequence[EntityVersion]
    ) -> None:
        if namespace != KEYS_NAMESPACE:
            sealed: list[EntityVersion] = []
            for v in versions:
                if v.data is not None:
                    key = await self._write_key(self._key_owner(namespace, v.type))
                    aad = codec.record_aad(namespace, "entity", v.type, v.id)
                    stored, _ = self._seal(v.data, None, key, aad)
                    v = dataclasses.replace(v, data=stored)
                sealed.append(v)
            versions = sealed
        await self.inner.import_entity_versions(namespace, versions)

    async def load_conversation_revision(
        self, namespace: str, conversation_id: str, revision: int
    ) -> tuple[ConversationRevision, list[MessageRecord]] | None:
        found = await self.inner.load_conversation_revision(namespace, conversation_id, revision)
        if found is None:
            return None
        header, messages = found
        return header, [await self._open_message(namespace, m) for m in messages]

    async def import_conversation_revision(
        self,
        namespace: str,
        revision: ConversationRevision,
        messages: Sequence[MessageRecord],
    ) -> None:
        cid = revision.conversation_id
        stored, _ = await self._seal_messages(namespace, cid, [m.message for m in messages], None)
        await self.inner.import_conversation_revision(
            namespace,
            revision,
            [
                dataclasses.replace(m, conversation_id=cid, message=v)
                for m, v in zip(messages, stored, strict=True)
            ],
        )

    # -- conversations --------------------------------------------------------------------

    async def _seal_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        messages_json: Sequence[bytes] | None,
    ) -> tuple[list[JSONObject], list[bytes] | None]:
        key = await self._write_key(namespace)
        aad = codec.record_aad(namespace, "message", conversation_id)
        stored: list[JSONObject] = []
        raws: list[bytes] = []
        for i, message in enumerate(messages):
            value, raw = self._seal(
                message, None if messages_json is None else messages_json[i], key, aad
            )
            stored.append(value)
            raws.append(raw if raw is not None else _json(value))
        return stored, raws

    async def _open_message(self, namespace: str, record: MessageRecord) -> MessageRecord:
        if not codec.is_envelope(record.message):
            return record
        message = await self._open(
            namespace,
            record.message,
            codec.record_aad(namespace, "message", record.conversation_id),
        )
        return dataclasses.replace(record, message=message)

    async def append_messages(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        stored, raws = await self._seal_messages(
            namespace, conversation_id, messages, messages_json
        )
        records = await self.inner.append_messages(
            namespace, conversation_id, stored, messages_json=raws
        )
        return [dataclasses.replace(r, message=m) for r, m in zip(records, messages, strict=True)]

    async def append_messages_batch(
        self, namespace: str, items: Sequence[MessagesWrite]
    ) -> list[list[MessageRecord]]:
        sealed = []
        for item in items:
            stored, raws = await self._seal_messages(
                namespace, item.conversation_id, item.messages, item.messages_json
            )
            sealed.append(
                dataclasses.replace(
                    item, messages=stored, messages_json=None if raws is None else tuple(raws)
                )
            )
        results = await self.inner.append_messages_batch(namespace, sealed)
        return [
            [dataclasses.replace(r, message=m) for r, m in zip(records, item.messages, strict=True)]
            for records, item in zip(results, items, strict=True)
        ]

    async def import_conversation(
        self, namespace: str, conversation_id: str, messages: list[MessageRecord]
    ) -> None:
        stored, _ = await self._seal_messages(
            namespace, conversation_id, [m.message for m in messages], None
        )
        await self.inner.import_conversation(
            namespace,
            conversation_id,
            [dataclasses.replace(m, message=v) for m, v in zip(messages, stored, strict=True)],
        )

    async def replace_conversation(
        self,
        namespace: str,
        conversation_id: str,
        messages: list[JSONObject],
        *,
        messages_json: Sequence[bytes] | None = None,
    ) -> list[MessageRecord]:
        stored, raws = await self._seal_messages(
            namespace, conversation_id, messages, messages_json
        )
        records = await self.inner.replace_conversation(
            namespace, conversation_id, stored, messages_json=raws
        )
        return [dataclasses.replace(r, message=m) for r, m in zip(records, messages, strict=True)]

    async def load_messages(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRecord]:
        records = await self.inner.load_messages(
            namespace, conversation_id, limit=limit, before_seq=before_seq
        )
        return [await self._open_message(namespace, r) for r in records]

    async def load_message_rows(
        self,
        namespace: str,
        conversation_id: str,
        *,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[MessageRow]:
        # The stored rows hold envelopes: the contract's default serialises the opened
        # messages instead.
        return await super().load_message_rows(
            namespace, conversation_id, limit=limit, before_seq=before_seq
        )

    async def pop_message(self, namespace: str, conversation_id: str) -> MessageRecord | None:
        record = await self.inner.pop_message(namespace, conversation_id)
        return None if record is None else await self._open_message(namespace, record)

    # -- tool usage -----------------------------------------------------------------------

    async def record_tool_usage(
        self,
        namespace: str,
        record: ToolUsageRecord,
        *,
        input_json: bytes | None = None,
        output_json: bytes | None = None,
    ) -> ToolUsageRecord:
        key = await self._write_key(namespace)
        tool_input, input_raw = self._seal(
            record.input,
            input_json,
            key,
            codec.record_aad(namespace, "tool_input", record.tool_name, record.id),
        )
        tool_output, output_raw = self._seal(
            record.output,
            output_json,
            key,
            codec.record_aad(namespace, "tool_output", record.tool_name, record.id),
        )
        stored = dataclasses.replace(record, input=tool_input, output=tool_output)
        saved = await self.inner.record_tool_usage(
            namespace, stored, input_json=input_raw, output_json=output_raw
        )
        return dataclasses.replace(saved, input=record.input, output=record.output)

    async def _open_tool_use(self, namespace: str, record: ToolUsageRecord) -> ToolUsageRecord:
        if not (codec.is_envelope(record.input) or codec.is_envelope(record.output)):
            return record
        tool_input = await self._open(
            namespace,
            record.input,
            codec.record_aad(namespace, "tool_input", record.tool_name, record.id),
        )
        tool_output = await self._open(
            namespace,
            record.output,
            codec.record_aad(namespace, "tool_output", record.tool_name, record.id),
        )
        return dataclasses.replace(record, input=tool_input, output=tool_output)

    async def query_tool_usage(
        self,
        namespace: str,
        *,
        tool_name: str | None = None,
        start: float | None = None,
        end: float | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[ToolUsageRecord]:
        page = await self.inner.query_tool_usage(
            namespace, tool_name=tool_name, start=start, end=end, limit=limit, cursor=cursor
        )
        items = [await self._open_tool_use(namespace, r) for r in page.items]
        return Page(items=items, next_cursor=page.next_cursor)

    # -- feedback -------------------------------------------------------------------------

    async def save_feedback(
        self, namespace: str, record: FeedbackRecord, *, data_json: bytes | None = None
    ) -> FeedbackRecord:
        key = await self._write_key(namespace)
        # The numeric rating stays in clear: the feedback analytics average it where the
        # data is (SQL, Lua, aggregation), as they do a tool use's duration and success.
        clear = None
        if isinstance(record.data, dict):
            rating = record.data.get("rating")
            if isinstance(rating, int | float) and not isinstance(rating, bool):
                clear = {"rating": rating}
        data, raw = self._seal(
            record.data, data_json, key, codec.record_aad(namespace, "feedback", record.id), clear
        )
        saved = await self.inner.save_feedback(
            namespace, dataclasses.replace(record, data=data), data_json=raw
        )
        return dataclasses.replace(saved, data=record.data)

    async def query_feedback(
        self,
        namespace: str,
        *,
        agent_name: str | None = None,
        feedback_type: str | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> Page[FeedbackRecord]:
        page = await self.inner.query_feedback(
            namespace,
            agent_name=agent_name,
            feedback_type=feedback_type,
            limit=limit,
            cursor=cursor,
        )
        items = []
        for r in page.items:
            if codec.is_envelope(r.data):
                data = await self._open(
                    namespace, r.data, codec.record_aad(namespace, "feedback", r.id)
                )
                r = dataclasses.replace(r, data=data)
            items.append(r)
        return Page(items=items, next_cursor=page.next_cursor)

    async def load_tool_usage(self, namespace: str, record_id: str) -> ToolUsageRecord | None:
        record = await self.inner.load_tool_usage(namespace, record_id)
        return None if record is None else await self._open_tool_use(namespace, record)

    async def load_feedback(self, namespace: str, record_id: str) -> FeedbackRecord | None:
        record = await self.inner.load_feedback(namespace, record_id)
        if record is None or not codec.is_envelope(record.data):
            return record
        data = await self._open(
            namespace, record.data, codec.record_aad(namespace, "feedback", record.id)
        )
        return dataclasses.replace(record, data=data)

    def __getattr__(self, name: str) -> Any:
        # The wrapped backend's own attributes (its describe() facts, test helpers).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


# -- key administration that needs no key-encryption key (any backend, wrapped or not) -----


async def list_data_keys(backend: DistributedMemoryBackend) -> list[dict[str, Any]]:
    """Every namespace's data key: the namespace, key id and the id of the KEK wrapping it
    (never a secret)."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await backend.list_entities(KEYS_NAMESPACE, DATA_KEY_TYPE, limit=500, cursor=cursor)
        for record in page.items:
            out.append(
                {
                    "namespace": record.id,
                    "key_id": record.data.get("key_id"),
                    "kek_id": record.data.get("kek_id"),
                    "created_at": record.created_at,
                }
            )
        cursor = page.next_cursor
        if cursor is None:
            return out


async def delete_data_key(backend: DistributedMemoryBackend, namespace: str) -> dict[str, Any]:
    """Crypto-shredding: delete the namespace's wrapped data key and tell the other replicas.
    Needs no key-encryption key, so a replica whose key file is gone can still shred."""
    record = await backend.load_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, namespace)
    if record is None:
        raise NotFoundError(f"namespace {namespace!r} has no data key")
    await backend.delete_entity(KEYS_NAMESPACE, DATA_KEY_TYPE, namespace)
    await backend.publish_invalidation(data_key_change_key(namespace))
    return {"namespace": namespace, "key_id": record.data.get("key_id"), "shredded": True}


def _passthrough(name: str, member: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(member):

        async def call_async(self: SealedBackend, *args: Any, **kwargs: Any) -> Any:
            method: Callable[..., Awaitable[Any]] = getattr(self.inner, name)
            return await method(*args, **kwargs)

        call_async.__name__ = name
        call_async.passthrough = True  # type: ignore[attr-defined]
        return call_async

    def call(self: SealedBackend, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    call.__name__ = name
    call.passthrough = True  # type: ignore[attr-defined]
    return call


# The contract's optional methods (those with a default) go to the wrapped backend as they
# are, and so does a method a later change adds to the contract, until it is sealed here
# (tests/unit/test_payload_codec.py names it).
for _name, _member in list(vars(DistributedMemoryBackend).items()):
    if _name.startswith("_") or not callable(_member) or _name in vars(SealedBackend):
        continue
    setattr(SealedBackend, _name, _passthrough(_name, _member))
SealedBackend.__abstractmethods__ = frozenset()


def build_sealed(
    inner: DistributedMemoryBackend, settings: StoreSettings
) -> DistributedMemoryBackend:
    """``inner`` wrapped when compression or encryption is configured, else ``inner``."""
    keks = None
    if settings.encryption_key_file is not None:
        try:
            text = settings.encryption_key_file.read_text()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read MEMSTORE_ENCRYPTION_KEY_FILE: {exc.strerror}"
            ) from None
        keks = codec.parse_kek_file(text)
    if keks is None and settings.compression_min_bytes == 0:
        return inner
    return SealedBackend(inner, settings, keks)

"""Export and import of a whole namespace, streamed (the format: ``memstore.core.dump``).

Export reads the namespace page by page through the manager's listings and yields lines;
nothing but the current page (and one conversation's or revision's messages) is in
memory. The version history goes with it: every key's history rows (old versions and
tombstones, also of keys that now hold only a tombstone) and every conversation's
revisions; an entity row that expired but is still stored is not a live entity, so it
goes as the history row it is for the history listings. With
encryption at rest on, every payload is written sealed with the namespace's data key
(``memstore.core.dump``, ``SEALED_FORMAT_VERSION``): the dump opens only in a store holding
that key, and nowhere once the key is shredded; nothing is decrypted to disk on import
(the spool holds the dump as it came).

Import, in two passes over a spooled copy of the dump (a temporary file, so memory stays
bounded whatever the dump's size):

1. **Verify**: every line parsed and checked (structure, order, names, types), then the
   trailer's counts and sha256. A dump that fails is refused with ``DumpInvalidError``
   before anything is written; a sealed dump's key is looked up (``DataShreddedError``
   when this store does not hold it) and every payload opened once, also before.
2. **Apply**, under the namespace's import marker: an entity of the reserved namespace
   :data:`IMPORTS_NAMESPACE` (id = the namespace). While it exists every replica's
   manager answers every operation on the namespace with ``NamespaceImportingError``
   (409), except the import's own writes; replicas re-read the markers at most
   :data:`MARKER_REFRESH_SECONDS` apart, and the import waits that long after writing the
   marker before it writes data, so no replica can see a half-imported namespace. The
   marker is removed when the last record is written. An import that dies leaves the
   marker (the namespace stays unreadable, never half-visible); running the same import
   again finishes it. The marker holds the dump's sha256: an import of another dump into
   a marked namespace is refused (``NamespaceImportingError``), and the marker is created
   only where none exists, so of two imports starting at once one is refused.

Target rules: the namespace must hold no data, unless ``replace`` (its entities and
conversations are deleted first, and its version history is purged once the dump's
entity rows are written: only the tombstones holding the numbering of keys the dump
does not hold alive stay; tool uses and feedback, which memstore never deletes one by
one, stay, and the dump's are added by id) or it is marked by an unfinished import (an
interrupted replace finishes as a replace). History rows and revisions are written as
they are in the dump.
Records keep their ids, versions and times: importing the same dump twice gives the
same state.
"""

from __future__ import annotations

import asyncio
import contextvars
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from memstore.core import dump
from memstore.core.errors import (
    ConflictError,
    NamespaceImportingError,
    NamespaceNotEmptyError,
    PayloadUnreadableError,
    PermissionDeniedError,
)
from memstore.core.payload_codec import Sealer
from memstore.core.records import ConversationRevision, EntityVersion, MessageRecord

if TYPE_CHECKING:
    from memstore.memory.manager import DistributedMemoryManager

#: The reserved namespace of import markers: outside the namespace rule (a name starts
#: with a letter or digit), so no request can address it. One entity per namespace being
#: imported: type :data:`MARKER_TYPE`, id = the namespace.
IMPORTS_NAMESPACE: Final = "_imports"
MARKER_TYPE: Final = "import"
#: How long a replica trusts the markers it read (``DistributedMemoryManager``).
MARKER_REFRESH_SECONDS: Final = 1.0

#: The namespace whose import the current task is running: its own writes pass the marker.
IMPORTING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "memstore_importing", default=None
)

#: Writes in flight at once during an import, and items per listing page of an export.
_BATCH: Final = 64
_PAGE: Final = 500


# -- export -----------------------------------------------------------------------------


async def export_lines(
    view: DistributedMemoryManager, origin: dict[str, Any], *, with_key: bool = False
) -> AsyncIterator[bytes]:
    """The dump of ``view``'s namespace, line by line. ``origin`` goes into the manifest
    (with the change log's last position added). ``with_key``: a sealed dump carries its
    data key, wrapped by the KEK (it then opens in any store holding that KEK, and outlives
    a shred of the key)."""
    changes = await view.read_changes(after=0, limit=1)
    sealer = await view.dump_sealer()
    namespace = view.namespace
    yield dump.manifest_line(
        namespace,
        {**origin, "change_log_position": changes.last_position},
        key_id=None if sealer is None else sealer.key.key_id,
        wrapped_key=sealer.wrapped if sealer is not None and with_key else None,
    )
    tally = dump.Tally()
    sealed = None if sealer is None else (namespace, sealer.seal)
    for entity_type in await view.get_entity_types():
        cursor: str | None = None
        while True:
            page = await view.list_entities(entity_type, limit=_PAGE, cursor=cursor)
            for entity in page.items:
                yield tally.add(dump.ENTITY, dump.entity_line(entity, sealed))
            if (cursor := page.next_cursor) is None:
                break
    async for row in _entity_history(view):
        yield tally.add(dump.ENTITY_VERSION, dump.entity_version_line(row, sealed))
    cursor = None
    while True:
        conversations = await view.list_conversations(limit=_PAGE, cursor=cursor)
        for info in conversations.items:
            messages = await view.load_messages(info.conversation_id)
            yield tally.add(
                dump.CONVERSATION, dump.conversation_line(info.conversation_id, len(messages))
            )
            for message in messages:
                yield tally.add(dump.MESSAGE, dump.message_line(message, sealed))
        if (cursor := conversations.next_cursor) is None:
            break
    async for revision, messages in _revisions(view):
        yield tally.add(dump.REVISION, dump.revision_line(revision))
        for message in messages:
            yield tally.add(
                dump.REVISION_MESSAGE, dump.revision_message_line(revision, message, sealed)
            )
    cursor = None
    while True:
        uses = await view.query_tool_usage(limit=_PAGE, cursor=cursor)
        for use in uses.items:
            yield tally.add(dump.TOOL_USAGE, dump.tool_usage_line(use, sealed))
        if (cursor := uses.next_cursor) is None:
            break
    cursor = None
    while True:
        feedback = await view.query_learning_feedback(limit=_PAGE, cursor=cursor)
        for record in feedback.items:
            yield tally.add(dump.FEEDBACK, dump.feedback_line(record, sealed))
        if (cursor := feedback.next_cursor) is None:
            break
    yield tally.trailer_line()


async def _live_versions(view: DistributedMemoryManager) -> AsyncIterator[tuple[str, str, int]]:
    """(type, id, version) of the live entities, ascending (the entity lines' order)."""
    for entity_type in sorted(await view.get_entity_types()):
        cursor: str | None = None
        while True:
            page = await view.list_entities(entity_type, limit=_PAGE, cursor=cursor)
            for entity in page.items:
                yield entity_type, entity.id, entity.version
            if (cursor := page.next_cursor) is None:
                break


async def _entity_history(view: DistributedMemoryManager) -> AsyncIterator[EntityVersion]:
    """Every key's history rows by (type, id), newest first: what ``list_entity_versions``
    lists but the live entity row (which is the dump's entity line)."""
    live = _live_versions(view)
    entity = await anext(live, None)
    keys: str | None = None
    while True:
        page = await view.list_versioned_entities(limit=_PAGE, cursor=keys)
        for key in page.items:
            # the newest row is the entity row when a live entity of its version is
            # stored (found walking the live entities alongside, both by (type, id)); a
            # live newest row without one is a history row (an expired entity row, or
            # an imported history row) and goes as such
            while entity is not None and entity[:2] < (key.type, key.id):
                entity = await anext(live, None)
            current = None
            if not key.deleted:
                if entity is not None and entity[:2] == (key.type, key.id):
                    version: int | None = entity[2]
                else:  # not listed (expired, or written meanwhile): read it
                    stored = await view.stored_entity(key.type, key.id)
                    version = None if stored is None else stored.version
                if version == key.version:
                    current = key.version
                    if version == 1:
                        continue  # a first version has no history before it
            cursor: str | None = None
            while True:
                rows = await view.list_entity_versions(key.type, key.id, limit=_PAGE, cursor=cursor)
                for row in rows.items:
                    if row.version == current and not row.deleted:
                        current = None
                        continue
                    if row.shredded:
                        continue  # its data key is gone: nobody can read it, here or there
                    yield row
                if (cursor := rows.next_cursor) is None:
                    break
        if (keys := page.next_cursor) is None:
            return


async def _revisions(
    view: DistributedMemoryManager,
) -> AsyncIterator[tuple[ConversationRevision, list[MessageRecord]]]:
    """Every conversation's revisions with their messages, by conversation id, newest
    revision first (one revision's messages in memory at a time)."""
    conversations: str | None = None
    while True:
        page = await view.list_conversations(limit=_PAGE, cursor=conversations)
        for info in page.items:
            cid = info.conversation_id
            cursor: str | None = None
            while True:
                revisions = await view.list_conversation_revisions(cid, limit=_PAGE, cursor=cursor)
                for revision in revisions.items:
                    found = await view.get_conversation_revision(revision.revision, cid)
                    if found is not None:  # pruned meanwhile
                        yield found
                if (cursor := revisions.next_cursor) is None:
                    break
        if (conversations := page.next_cursor) is None:
            return


# -- import: pass 1, spool and verify -------------------------------------------------------


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """Lines (with their ``\\n``; the last one may lack it) of a byte stream cut anywhere."""
    rest = b""
    async for chunk in chunks:
        if not chunk:
            continue
        rest += chunk
        if len(rest) > dump.MAX_LINE_BYTES and b"\n" not in rest:
            raise dump.fail(0, f"a line longer than {dump.MAX_LINE_BYTES} bytes")
        *whole, rest = rest.split(b"\n")
        for raw in whole:
            yield raw + b"\n"
    if rest:
        yield rest


class _Order:
    """The order rules of a dump's record lines (``memstore.core.dump``)."""

    def __init__(self, format_version: int) -> None:
        self.kinds = dump.record_kinds(format_version)
        self.stage = 0
        self.conversation: str | None = None
        #: the open revision's number (the conversation is ``self.conversation``)
        self.revision: int | None = None
        self.expected = 0
        self.seen = 0
        self.last_seq = 0

    def close_conversation(self, where: int) -> None:
        if self.conversation is not None and self.seen != self.expected:
            what = "conversation" if self.revision is None else f"revision {self.revision} of"
            raise dump.fail(
                where,
                f"{what} {self.conversation} announced {self.expected} messages and has"
                f" {self.seen}",
            )
        self.conversation = None
        self.revision = None

    def record(self, kind: str, obj: dict[str, Any], where: int) -> None:
        if kind not in self.kinds:
            raise dump.fail(where, f"unknown record kind {kind!r}")
        stage = self.kinds.index(kind)
        if kind in (dump.MESSAGE, dump.REVISION_MESSAGE):
            if kind == dump.MESSAGE:
                revision, message = None, dump.read_message(obj, where)
            else:
                revision, message = dump.read_revision_message(obj, where)
            container = dump.CONVERSATION if revision is None else dump.REVISION
            if (
                self.conversation != message.conversation_id
                or self.revision != revision
                or self.kinds[self.stage] != container
            ):
                raise dump.fail(where, f"a {kind} outside its {container}")
            self.seen += 1
            # Retention's keep-last-N leaves seqs starting after 1: increasing is the rule.
            if message.seq <= self.last_seq:
                raise dump.fail(
                    where, f"seq {message.seq} after {self.last_seq}: seqs must increase"
                )
            self.last_seq = message.seq
            return
        self.close_conversation(where)
        if stage < self.stage:
            raise dump.fail(where, f"a {kind} record after the {self.kinds[self.stage]} records")
        self.stage = stage
        if kind == dump.ENTITY:
            dump.read_entity(obj, where)
        elif kind == dump.ENTITY_VERSION:
            dump.read_entity_version(obj, where)
        elif kind == dump.CONVERSATION:
            self.conversation, self.expected = dump.read_conversation(obj, where)
            self.seen = 0
            self.last_seq = 0
        elif kind == dump.REVISION:
            opened = dump.read_revision(obj, where)
            self.conversation, self.revision = opened.conversation_id, opened.revision
            self.expected = opened.message_count
            self.seen = 0
            self.last_seq = 0
        elif kind == dump.TOOL_USAGE:
            dump.read_tool_usage(obj, where)
        else:
            dump.read_feedback(obj, where)


async def spool_and_verify(
    chunks: AsyncIterable[bytes], spool: IO[bytes]
) -> tuple[dump.Manifest, str]:
    """Copy the dump to ``spool`` while checking all of it; raises ``DumpInvalidError``.
    Returns the manifest and the dump's sha256 (hex, the trailer's)."""
    where = 0
    manifest: dump.Manifest | None = None
    tally = dump.Tally()
    order = _Order(dump.FORMAT_VERSION)
    finished = False
    async for raw in _lines(chunks):
        where += 1
        if finished:
            if raw.strip():
                raise dump.fail(where, "data after the trailer")
            continue
        if manifest is None:
            manifest = dump.read_manifest(raw)
            tally = dump.Tally.of_version(manifest.format_version)
            order = _Order(manifest.format_version)
            spool.write(raw)
            continue
        obj = dump.parse_line(raw, where)
        if obj["kind"] == dump.TRAILER:
            order.close_conversation(where)
            dump.check_trailer(obj, tally, where)
            finished = True
        else:
            order.record(obj["kind"], obj, where)
            tally.add(obj["kind"], raw if raw.endswith(b"\n") else raw + b"\n")
        spool.write(raw)
    if manifest is None:
        raise dump.fail(1, "the dump is empty")
    if not finished:
        raise dump.fail(where, "no trailer: the dump is truncated")
    return manifest, tally.digest.hexdigest()


# -- import: pass 2, apply under the marker -------------------------------------------------


async def _is_empty(view: DistributedMemoryManager) -> bool:
    s = await view.get_memory_summary_data()
    return not (s.total_entities or s.conversations or s.total_tool_uses or s.feedback_count)


async def _gather(pending: list[Awaitable[Any]]) -> None:
    if pending:
        await asyncio.gather(*pending)
        pending.clear()


def _dump_entity_keys(spool: IO[bytes]) -> Iterator[tuple[str, str]]:
    """The (type, id) of the spooled dump's entity lines, in the dump's order (by type,
    then id), reading from the spool's current position."""
    spool.readline()  # the manifest
    for raw in spool:
        obj = orjson.loads(raw)
        if obj["kind"] != dump.ENTITY:
            return
        yield obj["type"], obj["id"]


async def _clear(view: DistributedMemoryManager, keep: Iterator[tuple[str, str]]) -> None:
    """Delete the namespace's entities and conversations (``replace``), but the entities
    ``keep`` names (the dump's, ascending): the import writes those over the stored row,
    where a delete would leave a tombstone at a version the dump may reuse."""
    pending: list[Awaitable[Any]] = []
    kept = next(keep, None)
    for entity_type in sorted(await view.get_entity_types()):
        cursor: str | None = None
        while True:
            page = await view.list_entities(entity_type, limit=_PAGE, cursor=cursor)
            for entity in page.items:
                key = (entity_type, entity.id)
                while kept is not None and kept < key:
                    kept = next(keep, None)
                if kept == key:
                    continue
                pending.append(view.delete_entity(entity_type, entity.id))
                if len(pending) >= _BATCH:
                    await _gather(pending)
            if (cursor := page.next_cursor) is None:
                break
    cursor = None
    while True:
        conversations = await view.list_conversations(limit=_PAGE, cursor=cursor)
        for info in conversations.items:
            pending.append(view.delete_conversation(info.conversation_id))
            if len(pending) >= _BATCH:
                await _gather(pending)
        if (cursor := conversations.next_cursor) is None:
            break
    await _gather(pending)


#: The readers of the record kinds with payloads (``dump.PAYLOAD_FIELDS``).
_PAYLOAD_READERS: Final[dict[str, Callable[[dict[str, Any], int], object]]] = {
    dump.ENTITY: dump.read_entity,
    dump.ENTITY_VERSION: dump.read_entity_version,
    dump.MESSAGE: dump.read_message,
    dump.REVISION_MESSAGE: dump.read_revision_message,
    dump.TOOL_USAGE: dump.read_tool_usage,
    dump.FEEDBACK: dump.read_feedback,
}


async def _check_sealed(spool: IO[bytes], namespace: str, opener: Sealer) -> None:
    """Open every payload of a sealed dump once before anything is written: one that does
    not open (altered, or sealed with another key) fails the import as an invalid dump."""
    spool.readline()  # the manifest
    where = 1
    for raw in spool:
        where += 1
        obj = dump.parse_line(raw, where)
        if obj["kind"] == dump.TRAILER:
            break
        try:
            opened = dump.map_payloads(obj["kind"], obj, namespace, opener.open)
        except PayloadUnreadableError as exc:
            raise dump.fail(where, f"a sealed payload does not open: {exc.message}") from None
        # what a payload opens to gets the checks a plain one gets in the verify pass (an
        # envelope passes them whatever it holds): the apply pass, under the marker, must
        # not meet a line it refuses
        reader = _PAYLOAD_READERS.get(obj["kind"])
        if reader is not None:
            reader(opened, where)
        if where % _BATCH == 0:
            await asyncio.sleep(0)  # decrypting a large dump does not hold the event loop


async def _apply(
    view: DistributedMemoryManager,
    spool: IO[bytes],
    format_version: int,
    opened: Callable[[str, dict[str, Any]], dict[str, Any]],
    *,
    replace: bool,
) -> dict[str, int]:
    """Write the spooled dump. ``replace``: once the entity rows are written, the
    namespace's history is purged (``purge_history`` keeps only the newest row of a key
    without an entity row), then the dump's history is written."""
    purged = not replace

    async def purge() -> None:
        nonlocal purged
        if not purged:
            await _gather(pending)
            await view.purge_history()
            purged = True

    counts = dict.fromkeys(dump.record_kinds(format_version), 0)
    pending: list[Awaitable[Any]] = []
    conversation: str | None = None
    revision: ConversationRevision | None = None
    messages: list[MessageRecord] = []
    versions: list[EntityVersion] = []

    def flush_conversation() -> None:
        nonlocal conversation, revision, messages
        if revision is not None:
            pending.append(view.import_conversation_revision(revision, messages))
        elif conversation is not None:
            pending.append(view.import_conversation(conversation, messages))
        conversation, revision, messages = None, None, []

    def flush_versions() -> None:
        nonlocal versions
        if versions:
            pending.append(view.import_entity_versions(versions))
            versions = []

    spool.readline()  # the manifest
    where = 1
    for raw in spool:
        where += 1
        obj = dump.parse_line(raw, where)
        kind = obj["kind"]
        if kind == dump.TRAILER:
            break
        obj = opened(kind, obj)
        counts[kind] += 1
        if kind == dump.MESSAGE:
            messages.append(dump.read_message(obj, where))
            continue
        if kind == dump.REVISION_MESSAGE:
            messages.append(dump.read_revision_message(obj, where)[1])
            continue
        flush_conversation()
        if kind == dump.ENTITY_VERSION:
            await purge()
            versions.append(dump.read_entity_version(obj, where))
            if len(versions) >= _BATCH:
                flush_versions()
            continue
        flush_versions()
        if kind != dump.ENTITY:
            await purge()
        if kind == dump.ENTITY:
            pending.append(view.import_entity(dump.read_entity(obj, where)))
        elif kind == dump.CONVERSATION:
            conversation = dump.read_conversation(obj, where)[0]
        elif kind == dump.REVISION:
            revision = dump.read_revision(obj, where)
        elif kind == dump.TOOL_USAGE:
            pending.append(view.import_tool_usage(dump.read_tool_usage(obj, where)))
        else:
            pending.append(view.import_feedback(dump.read_feedback(obj, where)))
        if len(pending) >= _BATCH:
            await _gather(pending)
    flush_conversation()
    flush_versions()
    await _gather(pending)
    await purge()
    return counts


def _importing_another(namespace: str) -> NamespaceImportingError:
    return NamespaceImportingError(
        f"namespace {namespace} is being imported from another dump; only that import"
        " (the same dump again, if it was interrupted) can run in it until it finishes",
        namespace=namespace,
    )


async def import_chunks(
    view: DistributedMemoryManager,
    chunks: AsyncIterable[bytes],
    *,
    replace: bool = False,
    allows_source: Callable[[str], bool] | None = None,
) -> dump.ImportResult:
    """Import a dump (any chunking of its bytes) into ``view``'s namespace (whatever the
    manifest's namespace is). See the module docstring for the rules. ``allows_source``:
    whether the caller may read a namespace (``None``: any)."""
    namespace = view.namespace
    with tempfile.TemporaryFile() as spool:
        manifest, sha256 = await spool_and_verify(chunks, spool)
        spool.seek(0)
        opener: Sealer | None = None
        if manifest.key_id is not None:
            source = manifest.namespace
            # This store's key of the source opens the dump only for a caller who may read
            # the source: else an admin of one namespace would read another's data by
            # importing its dump. Anyone else needs the key carried in the dump.
            store_key = source == namespace or allows_source is None or allows_source(source)
            if not store_key and manifest.wrapped_key is None:
                raise PermissionDeniedError(
                    f"the dump is of namespace {source!r}, sealed with its data key and"
                    " without that key: importing it into another namespace needs access to"
                    f" {source!r} (or a dump exported with its key, with_key)",
                    namespace=source,
                )
            # The dump's key must be here (not shredded) and open every payload before the
            # marker: a dump that cannot be read writes nothing.
            opener = await view.dump_opener(
                source, manifest.key_id, manifest.wrapped_key, store_key=store_key
            )
            await _check_sealed(spool, manifest.namespace, opener)
            spool.seek(0)

        def opened(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
            if opener is None:
                return obj
            return dump.map_payloads(kind, obj, manifest.namespace, opener.open)

        marker = await view.import_marker()
        resuming = marker is not None
        # a marker from before markers named their dump has no sha256: resumable as before
        if marker is not None and marker.get("sha256", sha256) != sha256:
            raise _importing_another(namespace)
        # an interrupted replace is finished as one (its clear and purge run again), so
        # what the first run wrote leaves no tombstone behind
        replace = replace or (marker is not None and marker.get("replace") is True)
        if not resuming and not replace and not await _is_empty(view):
            raise NamespaceNotEmptyError(
                f"namespace {namespace} already holds data: import into an empty namespace,"
                " or replace its entities and conversations (replace=true, --replace)",
                namespace=namespace,
            )
        marker = {
            "started_at": time.time(),
            "source_namespace": manifest.namespace,
            "replace": replace,
            "sha256": sha256,
        }
        try:
            # created only where none exists: of two imports starting at once, one wins
            await view.set_import_marker(marker, create=not resuming)
        except ConflictError:
            raise _importing_another(namespace) from None
        if not resuming:
            # every replica reads the markers again within this time: from then on none
            # serves the namespace until the marker goes
            await asyncio.sleep(MARKER_REFRESH_SECONDS * 1.2)
        token = IMPORTING.set(namespace)
        try:
            if replace:
                await _clear(view, _dump_entity_keys(spool))
                spool.seek(0)
            counts = await _apply(view, spool, manifest.format_version, opened, replace=replace)
        finally:
            IMPORTING.reset(token)
        await view.set_import_marker(None)
    return dump.ImportResult(namespace, manifest.namespace, counts, replace)

"""What every backend does the same way, written once.

* Paging: listings fetch up to ``limit + 1`` items after the cursor's key; the extra item
  only says that another page follows (``page_after_id``/``page_after_time`` read the
  cursor, ``build_page`` makes the page and the next cursor).
* Conditional writes: ``check_expected_version`` (the ``expected_version`` rules of the
  contract) and ``version_conflict`` (the error, also for checks made inside the server).
* Expired entities: ``ExpiredEntityPurge``, the background task of backends whose server
  does not delete expired entities by itself.
* Driver errors: ``ErrorTranslation``, a table from driver exception types to
  ``memstore.core.errors`` types, used as ``with DRIVER_ERRORS("operation"):``.
* Payload bytes: ``json_bytes`` reuses the compact JSON the manager's size check already
  produced, so a payload is serialised once per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

import orjson

from memstore.core import payload_codec
from memstore.core.errors import ConflictError, InvalidInputError, MemoryStoreError
from memstore.core.records import (
    ConversationRevision,
    EntityRecord,
    EntityVersion,
    MessageRecord,
    Page,
)
from memstore.core.validation import decode_cursor, encode_cursor

log = logging.getLogger(__name__)

T = TypeVar("T")

# -- paging -------------------------------------------------------------------------------


def page_after_id(cursor: str | None) -> str | None:
    """The id after which an id-ordered page starts (``None``: from the first)."""
    return str(decode_cursor(cursor, str)[0]) if cursor else None


def page_after_time(cursor: str | None) -> tuple[float, str] | None:
    """The (timestamp, id) after which a (timestamp, id)-ordered page starts."""
    if not cursor:
        return None
    ts, record_id = decode_cursor(cursor, float, str)
    return float(ts), record_id


def build_page(
    fetched: Sequence[T], limit: int, last_key: Callable[[T], tuple[str | float, ...]]
) -> Page[T]:
    """The page out of up to ``limit + 1`` fetched items; the cursor holds the sort key
    (``last_key``) of the page's last item when more follow."""
    items = list(fetched[:limit])
    if len(fetched) > limit:
        return Page(items, encode_cursor(*last_key(items[-1])))
    return Page(items, None)


def by_id(record: Any) -> tuple[str]:
    """Sort key of records listed by id."""
    return (record.id,)


def by_time(record: Any) -> tuple[float, str]:
    """Sort key of records listed by (timestamp, id)."""
    return (record.timestamp, record.id)


# -- version history (base.py, "Version history") -----------------------------------------

#: Namespaces starting with this are the service's own (data keys, search vectors,
#: replication state, import markers, webhooks, snapshots): they keep no version history.
#: A shredded data key must not survive as an old version, and the vectors and positions
#: are rewritten far too often for a history to be worth its space.
INTERNAL_PREFIX = "_"


def keeps_history(namespace: str) -> bool:
    """Whether writes in ``namespace`` keep version history (user namespaces do)."""
    return not namespace.startswith(INTERNAL_PREFIX)


def history_order(row: EntityVersion) -> tuple[int, int]:
    """Sort key of an entity's rows, newest first as ``list_entity_versions`` lists them
    (sort by it descending): version, then a tombstone before the live row of its version."""
    return (row.version, int(row.deleted))


def page_after_version(cursor: str | None) -> tuple[int, int] | None:
    """The (version, deleted) after which a page of ``list_entity_versions`` goes on
    (rows strictly below it in ``history_order``); ``None``: from the newest."""
    if not cursor:
        return None
    version, deleted = decode_cursor(cursor, int, int)
    return int(version), int(deleted)


def page_after_key(cursor: str | None) -> tuple[str, str] | None:
    """The (type, id) after which a page of ``list_versioned_entities`` goes on."""
    if not cursor:
        return None
    entity_type, entity_id = decode_cursor(cursor, str, str)
    return str(entity_type), str(entity_id)


def page_after_revision(cursor: str | None) -> int | None:
    """The revision below which a page of ``list_conversation_revisions`` goes on."""
    return int(decode_cursor(cursor, int)[0]) if cursor else None


def by_key(row: EntityVersion) -> tuple[str, str]:
    return (row.type, row.id)


def by_revision(revision: ConversationRevision) -> tuple[int]:
    return (revision.revision,)


def check_version_or_at(version: int | None, at: float | None) -> None:
    """``load_entity_version`` takes exactly one of them."""
    if (version is None) == (at is None):
        raise InvalidInputError("give exactly one of version and at", field="version")


# -- conditional writes ---------------------------------------------------------------------


def version_conflict(expected: int | None, current: int | None) -> ConflictError:
    """The error of a write whose ``expected_version`` is not the stored one."""
    return ConflictError(
        f"expected version {expected}, found {current if current is not None else 'none'}",
        expected_version=expected,
        current_version=current,
    )


def check_expected_version(expected: int | None, current: int | None) -> None:
    """Raise ``ConflictError`` unless ``current`` (None = absent) is what the caller expects.

    Backends that check inside the server (Lua, conditional updates) keep exactly these
    rules and raise ``version_conflict`` with what the server reported.
    """
    if expected is None:
        return
    if (expected == 0 and current is not None) or (expected > 0 and current != expected):
        raise version_conflict(expected, current)


# -- expired entities -----------------------------------------------------------------------

#: how often a backend whose server keeps expired entities deletes them
PURGE_INTERVAL_SECONDS = 60.0


class ExpiredEntityPurge:
    """Runs ``purge`` every ``interval`` seconds until stopped. Reads already hide expired
    entities; this only keeps them from accumulating, so a failed round is logged and
    the next one tries again."""

    def __init__(
        self,
        backend_name: str,
        purge: Callable[[], Awaitable[object]],
        interval: float = PURGE_INTERVAL_SECONDS,
    ) -> None:
        self._name = f"memstore-{backend_name}-purge"
        self._purge = purge
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._purge()
            except MemoryStoreError:
                log.warning("purge of expired entities failed; will retry")


# -- driver errors --------------------------------------------------------------------------

#: Builds our error from a driver exception and the operation's name.
ErrorFactory = Callable[[Exception, str], MemoryStoreError]


class ErrorTranslation:
    """Driver exception types -> ``memstore.core.errors`` types, first match wins.

    ``with translation("operation"):`` raises the mapped error ``from`` the driver's;
    ``MemoryStoreError`` and exceptions matching no rule pass through unchanged.
    """

    __slots__ = ("_blocks", "_rules")

    def __init__(
        self, rules: Sequence[tuple[type[Exception] | tuple[type[Exception], ...], ErrorFactory]]
    ) -> None:
        self._rules = tuple(rules)
        # one stateless block per operation name (a fixed set), reused by every call
        self._blocks: dict[str, _Translating] = {}

    def __call__(self, operation: str) -> _Translating:
        block = self._blocks.get(operation)
        if block is None:
            block = self._blocks[operation] = _Translating(self._rules, operation)
        return block


class _Translating:
    """The ``with`` block of one operation of an ``ErrorTranslation``; it keeps no state
    between enter and exit, so one instance serves every call, nested ones included (a
    class, not a generator: it wraps every backend call)."""

    __slots__ = ("_operation", "_rules")

    def __init__(self, rules: Any, operation: str) -> None:
        self._rules = rules
        self._operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, MemoryStoreError):
            return
        for types, factory in self._rules:
            if isinstance(exc, types):
                raise factory(exc, self._operation) from exc


# -- payload bytes --------------------------------------------------------------------------


def json_bytes(value: Any, encoded: bytes | None) -> bytes:
    """Compact JSON of ``value``: ``encoded`` when the caller already has it (the manager
    passes what its size check produced), else serialised here."""
    return encoded if encoded is not None else orjson.dumps(value)


def logical_size(stored: Any, size: int) -> int:
    """A stored payload's logical size (``logical_bytes``): its envelope's ``n`` when it is
    sealed, else ``size``, its stored compact JSON's length."""
    n = payload_codec.logical_size(stored)
    return size if n is None else n


def json_bytes_each(values: Sequence[Any], encoded: Sequence[bytes] | None) -> list[bytes]:
    """Compact JSON of each of ``values`` (see ``json_bytes``)."""
    if encoded is not None:
        return list(encoded)
    return [orjson.dumps(v) for v in values]


def check_imported_seqs(conversation_id: str, messages: Sequence[MessageRecord]) -> int:
    """``import_conversation``'s rule: the seqs increase strictly from 1 or later (a
    conversation trimmed by retention starts after 1). Returns the highest seq (0 when
    there is none): the next append takes the one after it."""
    last = 0
    for i, m in enumerate(messages, 1):
        if m.seq <= last:
            raise InvalidInputError(
                f"conversation {conversation_id}: message {i} has seq {m.seq} after"
                f" {last}; an imported conversation's seqs are 1 or more and increase",
                field="seq",
            )
        last = m.seq
    return last


def batch_outcome(outcomes: Sequence[T | BaseException]) -> list[T]:
    """The records of a batch whose items were written one by one (each atomic by itself,
    not the batch): all of them, or the error of the first item that failed. A version
    conflict names every item in conflict and the items stored anyway (``written``) with
    the version each got (``versions``, in the order of ``written``), so the caller knows
    what the batch changed."""
    failed = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    if not failed:
        return [o for o in outcomes if not isinstance(o, BaseException)]
    written = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException)]
    first, error = failed[0]
    conflicts = [i for i, o in failed if isinstance(o, ConflictError)]
    if isinstance(error, ConflictError):
        raise ConflictError(
            f"item {first}: {error.message}",
            expected_version=error.expected_version,
            current_version=error.current_version,
            item=first,
            items=conflicts,
            written=written,
            versions=[o.version for o in outcomes if isinstance(o, EntityRecord)],
        ) from error
    if isinstance(error, MemoryStoreError):
        error.details.setdefault("item", first)
        error.details.setdefault("written", written)
    raise error


def batch_conflict(item: int, error: ConflictError) -> ConflictError:
    """The error of an all-or-nothing batch whose item ``item`` is in conflict: nothing
    was written."""
    return ConflictError(
        f"item {item}: {error.message}; nothing was written",
        expected_version=error.expected_version,
        current_version=error.current_version,
        item=item,
        items=[item],
        written=[],
        versions=[],
    )

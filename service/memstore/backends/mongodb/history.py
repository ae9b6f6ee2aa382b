"""Version history of the MongoDB backend as pure functions: the documents it stores, how
they read back and the order they are listed in.

Shape (the reasoning is in docs/architecture.md, "MongoDB backend", "Version history"):

* The current version stays the ``entities`` document, so reads cost what they did. A
  save, delete, purge or prune first writes the version it replaces or removes to
  ``entity_versions`` (replacing a row with the same unique key ``{ns, type, id, version,
  deleted}``: ``MongoDBMemoryBackend._write_row``), then makes
  its compare-and-set write on ``rev``; a delete (and a retention prune) then adds the
  tombstone. History first means a version is never lost, even without transactions: a
  writer that stops in between leaves a history row equal to the current version, which
  reads skip (:func:`merge_newest_first`) and the next save overwrites with the same row.
* A row is the whole record of that version: ``data`` (stored as in ``entities``),
  ``bytes``, ``saved_at`` (the version's ``updated_at``; the delete time for a tombstone),
  ``actor`` (who wrote it, or who deleted), ``expires_at``.
* An expired ``entities`` document is a past version that the purge (or the next save)
  has not moved yet: history reads show it as the history row it is about to become, so
  they answer the same before and after the purge.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from memstore.backends.common import history_order
from memstore.backends.mongodb.codec import decode_value
from memstore.core.records import ConversationRevision, EntityVersion

Doc = dict[str, Any]

#: history rows, newest first (a tombstone before the live row of the same version)
NEWEST_FIRST = [("version", -1), ("deleted", -1)]

#: fields of an ``entities`` document a history row is made of
CURRENT_FIELDS = {
    "_id": 0,
    "version": 1,
    "data": 1,
    "bytes": 1,
    "updated_at": 1,
    "actor": 1,
    "expires_at": 1,
}

ROW_FIELDS = {
    "_id": 0,
    "type": 1,
    "id": 1,
    "version": 1,
    "deleted": 1,
    "data": 1,
    "saved_at": 1,
    "actor": 1,
    "expires_at": 1,
}


def row_key(key: Doc, version: int, *, deleted: bool) -> Doc:
    """The unique key of one history row (``key``: ``{ns, type, id}``)."""
    return {**key, "version": version, "deleted": deleted}


def history_row(key: Doc, current: Doc) -> Doc:
    """The history row of the version an ``entities`` document holds."""
    return {
        **row_key(key, current["version"], deleted=False),
        "data": current["data"],
        "bytes": current.get("bytes", 0),
        "saved_at": current["updated_at"],
        "actor": current.get("actor"),
        "expires_at": current.get("expires_at"),
    }


def tombstone_row(key: Doc, version: int, at: float, actor: str | None) -> Doc:
    """The tombstone a delete of ``version`` leaves (it holds the numbering)."""
    return {
        **row_key(key, version, deleted=True),
        "data": None,
        "bytes": 0,
        "saved_at": at,
        "actor": actor,
        "expires_at": None,
    }


def imported_row(key: Doc, version: EntityVersion, data: Any, size: int) -> Doc:
    """A history row written exactly as given (``data`` already encoded)."""
    return {
        **row_key(key, version.version, deleted=version.deleted),
        "data": data,
        "bytes": size,
        "saved_at": version.saved_at,
        "actor": version.actor,
        "expires_at": version.expires_at,
    }


def from_row(doc: Doc) -> EntityVersion:
    deleted = bool(doc.get("deleted", False))
    return EntityVersion(
        type=doc["type"],
        id=doc["id"],
        version=doc["version"],
        data=None if deleted else decode_value(doc["data"]),
        saved_at=doc["saved_at"],
        actor=doc.get("actor"),
        deleted=deleted,
        expires_at=doc.get("expires_at"),
    )


def from_current(doc: Doc) -> EntityVersion:
    """The version an ``entities`` document holds (``type``/``id`` included)."""
    return EntityVersion(
        type=doc["type"],
        id=doc["id"],
        version=doc["version"],
        data=decode_value(doc["data"]),
        saved_at=doc["updated_at"],
        actor=doc.get("actor"),
        deleted=False,
        expires_at=doc.get("expires_at"),
    )


# -- order (paging helpers are shared: ``backends.common``) ------------------------------


def older_than(after: tuple[int, int] | None) -> Doc:
    """Filter for history rows after ``after`` (``common.page_after_version``) in
    newest-first order."""
    if after is None:
        return {}
    version, deleted = after
    if deleted:
        return {"$or": [{"version": {"$lt": version}}, {"version": version, "deleted": False}]}
    return {"version": {"$lt": version}}


def merge_newest_first(
    current: EntityVersion | None, rows: Iterable[EntityVersion]
) -> list[EntityVersion]:
    """The current version (if any) among history rows, newest first; a history row
    equal to the current version (left by a writer that stopped between its two writes)
    is skipped."""
    items = [r for r in rows if current is None or history_order(r) != history_order(current)]
    if current is not None:
        items.append(current)
    items.sort(key=history_order, reverse=True)
    return items


def after_key(after: tuple[str, str] | None) -> Doc:
    """Filter for documents after ``(type, id)`` (``common.page_after_key``)."""
    if after is None:
        return {}
    t, i = after
    return {"$or": [{"type": {"$gt": t}}, {"type": t, "id": {"$gt": i}}]}


# -- conversation revisions -------------------------------------------------------------

REVISION_FIELDS = {
    "_id": 0,
    "cid": 1,
    "rev": 1,
    "replaced_at": 1,
    "message_count": 1,
    "actor": 1,
}


def from_revision(doc: Doc) -> ConversationRevision:
    return ConversationRevision(
        conversation_id=doc["cid"],
        revision=doc["rev"],
        replaced_at=doc["replaced_at"],
        message_count=doc["message_count"],
        actor=doc.get("actor"),
    )

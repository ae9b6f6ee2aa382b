"""The export format of one namespace ("memstore dump"): JSON lines, backend-neutral.

A dump is, one JSON object per line (docs/architecture.md, "Export and import")::

    {"kind": "manifest", "format": "memstore-dump", "format_version": 3,
     "namespace": ..., "origin": {...}}  (and "sealed": {"key_id": ...})
    {"kind": "entity", ...}            entities by (type, id)
    {"kind": "entity_version", ...}    history rows by (type, id), newest first
    {"kind": "conversation", ...}      conversations by id, each followed by
    {"kind": "message", ...}           its messages by seq
    {"kind": "revision", ...}          revisions by (conversation id, revision desc),
    {"kind": "revision_message", ...}  each followed by its messages by seq
    {"kind": "tool_usage", ...}        tool uses by (timestamp, id)
    {"kind": "feedback", ...}          feedback by (timestamp, id)
    {"kind": "trailer", "counts": {...}, "sha256": ...}

Record lines have sorted keys and orjson's exact float form, so the same data gives the
same bytes on every backend; ``origin`` (backend, time, version, change-log position) is
the only part of two dumps of the same data allowed to differ. The trailer's ``sha256``
is over the record lines (each with its ``\\n``), in order.

This module is pure: what a line is, how it is written and checked. Reading a namespace
and writing one are ``memstore.memory.export``'s.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from memstore.core import payload_codec
from memstore.core.errors import DumpInvalidError, InvalidInputError
from memstore.core.records import (
    ConversationRevision,
    EntityRecord,
    EntityVersion,
    FeedbackRecord,
    MessageRecord,
    ToolUsageRecord,
)
from memstore.core.validation import check_name

FORMAT: Final = "memstore-dump"
#: The newest version this code reads and writes. A reader accepts every version up to
#: its own and refuses a later one (it could not know what the new lines mean). Additions
#: (retention policies, ...) are new record kinds or new optional fields under a new
#: version.
FORMAT_VERSION: Final = 3
#: Version 1: plain payloads, no version history (what releases before sealed dumps wrote).
PLAIN_FORMAT_VERSION: Final = 1
#: From version 2 the manifest may say ``sealed``: {``key_id``}: every payload is an
#: at-rest envelope (``memstore.core.payload_codec``) encrypted with that data key of the
#: manifest's namespace, so the dump opens only where that key is held, and not at all
#: once it is shredded; ``sealed.wrapped_key`` (asked for at export) carries the key
#: wrapped by a KEK, so the dump opens wherever that KEK is, shredded or not. An earlier
#: release refuses it by its version rather than import envelopes as data.
SEALED_FORMAT_VERSION: Final = 2
#: From version 3 a dump carries the namespace's version history (``entity_version``,
#: ``revision`` and ``revision_message`` lines; the trailer counts them), sealed or not,
#: and every export writes it. A dump of an earlier version has no history: it imports
#: with none (and a ``revision`` line in it is refused as an unknown kind). A new number
#: rather than a manifest field: a release that does not know history refuses the dump by
#: its version (a clear "import it with a newer memstore") instead of failing on the first
#: unknown line, and a v3 dump always says its history is complete, even when empty.
HISTORY_FORMAT_VERSION: Final = 3

MANIFEST: Final = "manifest"
ENTITY: Final = "entity"
ENTITY_VERSION: Final = "entity_version"
CONVERSATION: Final = "conversation"
MESSAGE: Final = "message"
REVISION: Final = "revision"
REVISION_MESSAGE: Final = "revision_message"
TOOL_USAGE: Final = "tool_usage"
FEEDBACK: Final = "feedback"
TRAILER: Final = "trailer"

#: Record kinds in the order they appear in a dump (and the trailer's count keys).
RECORD_KINDS: Final = (
    ENTITY,
    ENTITY_VERSION,
    CONVERSATION,
    MESSAGE,
    REVISION,
    REVISION_MESSAGE,
    TOOL_USAGE,
    FEEDBACK,
)
#: The kinds of a dump before ``HISTORY_FORMAT_VERSION``.
_HISTORY_KINDS: Final = frozenset({ENTITY_VERSION, REVISION, REVISION_MESSAGE})


def record_kinds(format_version: int) -> tuple[str, ...]:
    """The record kinds (and trailer count keys) of a dump of ``format_version``."""
    if format_version >= HISTORY_FORMAT_VERSION:
        return RECORD_KINDS
    return tuple(k for k in RECORD_KINDS if k not in _HISTORY_KINDS)


#: The longest line a reader accepts (a record holds one payload: entity data, a message,
#: a tool use's input and output); well above the service's payload limits.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024

_OPTS: Final = orjson.OPT_SORT_KEYS


def line(obj: dict[str, Any]) -> bytes:
    """One line of a dump: compact JSON, sorted keys, ``\\n``."""
    return orjson.dumps(obj, option=_OPTS) + b"\n"


def manifest_line(
    namespace: str,
    origin: dict[str, Any],
    *,
    key_id: str | None = None,
    wrapped_key: dict[str, Any] | None = None,
) -> bytes:
    """``key_id``: the payloads are sealed with that data key of ``namespace``;
    ``wrapped_key``: the key itself, wrapped by a KEK (a dump exported with its key)."""
    manifest: dict[str, Any] = {
        "kind": MANIFEST,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "namespace": namespace,
        "origin": origin,
    }
    if key_id is not None:
        manifest["sealed"] = {"key_id": key_id}
        if wrapped_key is not None:
            manifest["sealed"]["wrapped_key"] = wrapped_key
    return line(manifest)


#: The payload fields of each record kind: what a sealed dump holds sealed.
PAYLOAD_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    ENTITY: ("data",),
    ENTITY_VERSION: ("data",),
    MESSAGE: ("message",),
    REVISION_MESSAGE: ("message",),
    TOOL_USAGE: ("input", "output"),
    FEEDBACK: ("data",),
}
#: The fields naming a record, bound to each of its sealed payloads.
_RECORD_KEY: Final[dict[str, tuple[str, ...]]] = {
    ENTITY: ("type", "id"),
    ENTITY_VERSION: ("type", "id", "version", "deleted"),
    MESSAGE: ("conversation_id", "seq"),
    REVISION_MESSAGE: ("conversation_id", "revision", "seq"),
    TOOL_USAGE: ("tool_name", "id"),
    FEEDBACK: ("id",),
}


def payload_aad(namespace: str, kind: str, name: str, fields: dict[str, Any]) -> bytes:
    """What a dump's sealed payload is bound to: the dump's namespace, the record kind and
    key, and the field; never valid for another record, field, or a record at rest."""
    key = (str(fields.get(k)) for k in _RECORD_KEY[kind])
    return payload_codec.record_aad(namespace, "dump", kind, name, *key)


def map_payloads(
    kind: str, fields: dict[str, Any], namespace: str, apply: Callable[[Any, bytes], Any]
) -> dict[str, Any]:
    """``fields`` (a record line's) with each payload replaced by ``apply(payload, aad)``:
    a sealer's ``seal`` on export, its ``open`` on import."""
    names = PAYLOAD_FIELDS.get(kind, ())
    if not names:
        return fields
    out = dict(fields)
    for name in names:
        if kind == ENTITY_VERSION and fields.get("deleted") is True:
            continue  # a tombstone has no payload to seal
        out[name] = apply(fields.get(name), payload_aad(namespace, kind, name, fields))
    return out


#: A sealed dump's payloads: (the dump's namespace, the sealer's ``seal``).
Sealing = tuple[str, Callable[[Any, bytes], Any]]


def record_line(kind: str, fields: dict[str, Any], sealed: Sealing | None = None) -> bytes:
    if sealed is not None:
        fields = map_payloads(kind, fields, *sealed)
    return line({"kind": kind, **fields})


def entity_line(r: EntityRecord, sealed: Sealing | None = None) -> bytes:
    return record_line(ENTITY, r.to_dict(), sealed)


def conversation_line(conversation_id: str, message_count: int) -> bytes:
    return line(
        {"kind": CONVERSATION, "conversation_id": conversation_id, "message_count": message_count}
    )


def message_line(r: MessageRecord, sealed: Sealing | None = None) -> bytes:
    return record_line(MESSAGE, r.to_dict(), sealed)


def entity_version_line(r: EntityVersion, sealed: Sealing | None = None) -> bytes:
    return record_line(ENTITY_VERSION, r.to_dict(), sealed)


def revision_line(r: ConversationRevision) -> bytes:
    return record_line(REVISION, r.to_dict())


def revision_message_line(
    revision: ConversationRevision, r: MessageRecord, sealed: Sealing | None = None
) -> bytes:
    """A message of ``revision`` (named by the revision's conversation, whatever the
    backend put in the record's ``conversation_id``)."""
    fields = {
        **r.to_dict(),
        "conversation_id": revision.conversation_id,
        "revision": revision.revision,
    }
    return record_line(REVISION_MESSAGE, fields, sealed)


def tool_usage_line(r: ToolUsageRecord, sealed: Sealing | None = None) -> bytes:
    return record_line(TOOL_USAGE, r.to_dict(), sealed)


def feedback_line(r: FeedbackRecord, sealed: Sealing | None = None) -> bytes:
    return record_line(FEEDBACK, r.to_dict(), sealed)


@dataclass
class Tally:
    """Counts and checksum of the record lines written or read so far."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECORD_KINDS, 0))
    digest: Any = field(default_factory=hashlib.sha256)

    @classmethod
    def of_version(cls, format_version: int) -> Tally:
        """A tally of the kinds a dump of ``format_version`` holds (its trailer's keys)."""
        return cls(dict.fromkeys(record_kinds(format_version), 0))

    def add(self, kind: str, raw: bytes) -> bytes:
        self.counts[kind] += 1
        self.digest.update(raw)
        return raw

    def trailer_line(self) -> bytes:
        return line({"kind": TRAILER, "counts": self.counts, "sha256": self.digest.hexdigest()})


@dataclass(frozen=True)
class Manifest:
    namespace: str
    format_version: int
    origin: dict[str, Any]
    #: The data key id the payloads are sealed with (``SEALED_FORMAT_VERSION``), or None.
    key_id: str | None = None
    #: That key wrapped by a KEK, when the dump was exported with it.
    wrapped_key: dict[str, Any] | None = None


@dataclass(frozen=True)
class ImportResult:
    """What an import wrote: the target namespace, the dump's manifest namespace and
    counts per record kind."""

    namespace: str
    source_namespace: str
    counts: dict[str, int] = field(default_factory=dict)
    replaced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "source_namespace": self.source_namespace,
            "counts": self.counts,
            "replaced": self.replaced,
        }


# -- reading ----------------------------------------------------------------------------


def _fail(where: int, problem: str) -> DumpInvalidError:
    return DumpInvalidError(f"line {where}: {problem}", line=where)


def parse_line(raw: bytes, where: int) -> dict[str, Any]:
    """One line as a JSON object with a string ``kind``."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _fail(where, "not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        raise _fail(where, 'not a JSON object with a "kind"')
    return obj


def read_manifest(raw: bytes) -> Manifest:
    """The first line of a dump."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or obj.get("kind") != MANIFEST or obj.get("format") != FORMAT:
        raise _fail(1, f"the first line is not a {FORMAT} manifest: is this an export dump?")
    version = obj.get("format_version")
    if type(version) is not int or version < 1:
        raise _fail(1, "format_version must be an integer >= 1")
    if version > FORMAT_VERSION:
        raise _fail(
            1,
            f"format_version {version} is newer than this memstore reads ({FORMAT_VERSION});"
            " import it with a newer memstore",
        )
    origin = obj.get("origin")
    try:
        namespace = check_name("namespace", obj.get("namespace"))
    except InvalidInputError as exc:
        raise _fail(1, exc.message) from None
    key_id = wrapped = None
    if version >= SEALED_FORMAT_VERSION and "sealed" in obj:
        sealed = obj["sealed"]
        if not isinstance(sealed, dict) or not isinstance(sealed.get("key_id"), str):
            raise _fail(1, 'sealed must be {"key_id": <the data key id>}')
        key_id = sealed["key_id"]
        wrapped = sealed.get("wrapped_key")
        if wrapped is not None and not (
            isinstance(wrapped, dict)
            and all(isinstance(wrapped.get(k), str) for k in ("key_id", "kek_id", "wrapped"))
        ):
            raise _fail(1, "sealed.wrapped_key must be {key_id, kek_id, wrapped}")
    origin = origin if isinstance(origin, dict) else {}
    return Manifest(namespace, version, origin, key_id, wrapped)


def check_trailer(obj: dict[str, Any], tally: Tally, where: int) -> None:
    """The trailer's counts and checksum against what was read."""
    digest = tally.digest.hexdigest()
    if obj.get("sha256") != digest:
        raise _fail(
            where,
            f"checksum mismatch: the trailer says {obj.get('sha256')!r}, the records hash to"
            f" {digest!r} (the dump was altered or damaged)",
        )
    if obj.get("counts") != tally.counts:
        raise _fail(where, f"counts mismatch: trailer {obj.get('counts')!r}, read {tally.counts!r}")


def _str(obj: dict[str, Any], key: str, where: int, name: str | None = None) -> str:
    try:
        return check_name(name or key, obj.get(key))
    except InvalidInputError as exc:
        raise _fail(where, exc.message) from None


def _num(obj: dict[str, Any], key: str, where: int, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, f"{key} must be a number")
    return value


def _int(obj: dict[str, Any], key: str, where: int, low: int) -> int:
    value = obj.get(key)
    if type(value) is not int or value < low:
        raise _fail(where, f"{key} must be an integer >= {low}")
    return value


def _bool(obj: dict[str, Any], key: str, where: int) -> bool:
    """An optional flag (absent: false)."""
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise _fail(where, f"{key} must be true or false")
    return value


def _object(obj: dict[str, Any], key: str, where: int) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _fail(where, f"{key} must be a JSON object")
    return value


def read_entity(obj: dict[str, Any], where: int) -> EntityRecord:
    return EntityRecord(
        type=_str(obj, "type", where, "entity_type"),
        id=_str(obj, "id", where, "entity_id"),
        data=_object(obj, "data", where),
        version=_int(obj, "version", where, 1),
        created_at=_num(obj, "created_at", where),
        updated_at=_num(obj, "updated_at", where),
        expires_at=_num(obj, "expires_at", where, optional=True),
        pinned=_bool(obj, "pinned", where),
    )


def read_conversation(obj: dict[str, Any], where: int) -> tuple[str, int]:
    return _str(obj, "conversation_id", where), _int(obj, "message_count", where, 0)


def read_message(obj: dict[str, Any], where: int) -> MessageRecord:
    return MessageRecord(
        conversation_id=_str(obj, "conversation_id", where),
        seq=_int(obj, "seq", where, 1),
        message=_object(obj, "message", where),
        created_at=_num(obj, "created_at", where),
    )


def read_entity_version(obj: dict[str, Any], where: int) -> EntityVersion:
    deleted = _bool(obj, "deleted", where)
    data = obj.get("data")
    if deleted and data is not None:
        raise _fail(where, "a tombstone has no data")
    actor = obj.get("actor")
    if actor is not None and not isinstance(actor, str):
        raise _fail(where, "actor must be a string or null")
    return EntityVersion(
        type=_str(obj, "type", where, "entity_type"),
        id=_str(obj, "id", where, "entity_id"),
        version=_int(obj, "version", where, 1),
        data=None if deleted else _object(obj, "data", where),
        saved_at=_num(obj, "saved_at", where),
        actor=actor,
        deleted=deleted,
        expires_at=_num(obj, "expires_at", where, optional=True),
    )


def read_revision(obj: dict[str, Any], where: int) -> ConversationRevision:
    actor = obj.get("actor")
    if actor is not None and not isinstance(actor, str):
        raise _fail(where, "actor must be a string or null")
    return ConversationRevision(
        conversation_id=_str(obj, "conversation_id", where),
        revision=_int(obj, "revision", where, 1),
        replaced_at=_num(obj, "replaced_at", where),
        message_count=_int(obj, "message_count", where, 0),
        actor=actor,
    )


def read_revision_message(obj: dict[str, Any], where: int) -> tuple[int, MessageRecord]:
    """(the revision number, the message)."""
    return _int(obj, "revision", where, 1), read_message(obj, where)


def read_tool_usage(obj: dict[str, Any], where: int) -> ToolUsageRecord:
    conversation = obj.get("conversation_id")
    if not isinstance(obj.get("success"), bool):
        raise _fail(where, "success must be true or false")
    if "input" not in obj or "output" not in obj:
        raise _fail(where, "a tool use has input and output")
    return ToolUsageRecord(
        id=_str(obj, "id", where, "entity_id"),
        tool_name=_str(obj, "tool_name", where),
        input=obj["input"],
        output=obj["output"],
        duration_ms=_num(obj, "duration_ms", where),
        success=obj["success"],
        timestamp=_num(obj, "timestamp", where),
        conversation_id=None if conversation is None else _str(obj, "conversation_id", where),
    )


def read_feedback(obj: dict[str, Any], where: int) -> FeedbackRecord:
    if "data" not in obj:
        raise _fail(where, "feedback has data")
    return FeedbackRecord(
        id=_str(obj, "id", where, "entity_id"),
        agent_name=_str(obj, "agent_name", where),
        feedback_type=_str(obj, "feedback_type", where),
        data=obj["data"],
        timestamp=_num(obj, "timestamp", where),
    )


def fail(where: int, problem: str) -> DumpInvalidError:
    """The error for a dump that breaks the format's order or structure at ``where``."""
    return _fail(where, problem)

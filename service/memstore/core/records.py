"""Records exchanged between backends, the manager, the HTTP API and the client.

Plain frozen dataclasses: cheap to build on the hot path and easy to compare in the
contract tests. Times are POSIX seconds (float, UTC). JSON payloads are ``dict[str, Any]``
already parsed; backends store them exactly (every key, including ``$x`` and ``a.b``).

They are defined once, here: the HTTP API answers with ``to_dict()`` of these, and its
OpenAPI response schemas are derived from these classes by pydantic
(``memstore.server.schemas``). ``to_dict`` always carries every field, so the schemas mark
every field required (``_RESPONSE``), defaults included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import orjson
from pydantic import ConfigDict, with_config

from memstore.core.validation import DEFAULT_CONVERSATION as DEFAULT_CONVERSATION
from memstore.core.validation import NAME_PATTERNS

JSONObject = dict[str, Any]

T = TypeVar("T")


def _name_patterns(schema: dict[str, Any]) -> None:
    # Names in an answer obey the rule they were checked with on the way in.
    for name, prop in schema["properties"].items():
        rule = NAME_PATTERNS.get(name)
        if rule is not None:
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "string":
                    branch["pattern"] = rule.pattern


# Only read when a schema is generated; building a record never touches pydantic.
_RESPONSE = ConfigDict(
    json_schema_serialization_defaults_required=True, json_schema_extra=_name_patterns
)


def _shallow(record: Any) -> JSONObject:
    """Fields as a dict, payloads shared, not copied: ``asdict`` deep-copies the JSON
    payload, which cost ~45 µs per 1 KB entity on every response (see bench/README.md)."""
    return {name: getattr(record, name) for name in record.__slots__}


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class EntityRecord:
    type: str
    id: str
    data: JSONObject
    version: int
    created_at: float
    updated_at: float
    expires_at: float | None = None
    #: Pinned entities are never removed by retention (docs/architecture.md, "Retention").
    pinned: bool = False

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@dataclass(frozen=True, slots=True)
class EntityWrite:
    """One item of a batch of entity saves (``save_entities``): what ``save_entity``
    takes for one key. ``data_json``: the data's compact JSON when the caller has it."""

    entity_type: str
    entity_id: str
    data: JSONObject
    expected_version: int | None = None
    ttl: float | None = None
    data_json: bytes | None = None


@dataclass(frozen=True, slots=True)
class MessagesWrite:
    """One item of a batch of appends (``append_messages_batch``): messages for one
    conversation, in order. ``messages_json``: each message's compact JSON, if known."""

    conversation_id: str
    messages: list[JSONObject]
    messages_json: tuple[bytes, ...] | None = None


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message of a conversation. ``seq`` runs 1..n within a conversation: an append
    takes the next one, a pop gives the last one back, replacing the history restarts it
    at 1. (MongoDB without transactions: a pop racing another process's append can leave
    the popped ``seq`` as a gap; docs/architecture.md, the pop table.)"""

    conversation_id: str
    seq: int
    message: JSONObject
    created_at: float

    def to_dict(self) -> JSONObject:
        return _shallow(self)


class MessageRow(NamedTuple):
    """A stored message with its JSON unparsed (``load_message_rows``): a page of messages
    answered as the backend holds them, without parsing each message and serialising it
    again (for a page of 50 messages of ~270 bytes, ~70 µs of the ~100 µs that building the
    answer from ``MessageRecord`` costs; bench/README.md, "Message pages")."""

    seq: int
    created_at: float
    #: The message's JSON text, as stored.
    message_json: bytes | str

    def to_dict(self, conversation_id: str) -> JSONObject:
        """The ``MessageRecord.to_dict()`` of this message in ``conversation_id``, which
        orjson serialises to the same JSON, with the message as it is stored."""
        return {
            "conversation_id": conversation_id,
            "seq": self.seq,
            "message": orjson.Fragment(self.message_json),
            "created_at": self.created_at,
        }


class EntityRow(NamedTuple):
    """An entity with its data's JSON unparsed (``list_entity_rows``): a page of entities
    answered as the backend holds them, without parsing each payload and serialising it
    again (bench/README.md, "Entity pages")."""

    type: str
    id: str
    #: The data's JSON text, as stored.
    data_json: bytes | str
    version: int
    created_at: float
    updated_at: float
    expires_at: float | None
    pinned: bool

    @classmethod
    def of(cls, record: EntityRecord) -> EntityRow:
        """The row of a parsed record (its data serialised)."""
        return cls(
            record.type,
            record.id,
            orjson.dumps(record.data),
            record.version,
            record.created_at,
            record.updated_at,
            record.expires_at,
            record.pinned,
        )

    def record(self) -> EntityRecord:
        """The parsed record (its data parsed)."""
        return EntityRecord(
            self.type,
            self.id,
            orjson.loads(self.data_json),
            self.version,
            self.created_at,
            self.updated_at,
            self.expires_at,
            self.pinned,
        )

    def to_dict(self) -> JSONObject:
        """``EntityRecord.to_dict()`` of this entity, which orjson serialises to the same
        JSON, with the data as it is stored."""
        return {
            "type": self.type,
            "id": self.id,
            "data": orjson.Fragment(self.data_json),
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "pinned": self.pinned,
        }


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class EntityVersion:
    """One version of an entity: a past or the current version, or the tombstone of a
    delete (``backends/base.py``, "Version history")."""

    type: str
    id: str
    version: int
    #: The version's payload; ``None`` for a tombstone (and a ``shredded`` version).
    data: JSONObject | None
    #: When this version was written (its ``updated_at``); a tombstone's: the delete time.
    saved_at: float
    #: Who wrote it (``memstore.core.changes.current_actor()``'s name), when declared.
    actor: str | None = None
    #: True: the tombstone a delete (or a retention prune) left at this version.
    deleted: bool = False
    expires_at: float | None = None
    #: True: a listed version whose payload was sealed with a crypto-shredded data key
    #: (``data`` is then ``None``; loading that version answers ``DataShreddedError``).
    shredded: bool = False

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ConversationRevision:
    """The messages a ``replace_conversation`` replaced, kept as revision ``revision``
    (1, 2, ... per conversation, never reused while the conversation has revisions)."""

    conversation_id: str
    revision: int
    replaced_at: float
    message_count: int
    actor: str | None = None

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class Snapshot:
    """A named instant of a namespace: a marker, not a copy (the version history holds the
    states it names)."""

    name: str
    created_at: float
    #: The namespace's change-log position when it was taken (information).
    change_position: int
    actor: str | None = None

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class SnapshotRevert:
    """What reverting a namespace's entities to a snapshot did: keys saved back to their
    state then (a new version each), deleted (they did not exist then), left as they were
    (unchanged since), and those a concurrent write changed while the revert ran (left to
    that write: ``conflicts``, as ``type/id``)."""

    snapshot: str
    saved: int
    deleted: int
    unchanged: int
    conflicts: list[str] = field(default_factory=list)

    def to_dict(self) -> JSONObject:
        return {**_shallow(self), "conflicts": list(self.conflicts)}


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ConversationInfo:
    conversation_id: str
    message_count: int
    created_at: float
    updated_at: float

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ToolUsageRecord:
    id: str
    tool_name: str
    input: Any
    output: Any
    duration_ms: float
    success: bool
    timestamp: float
    conversation_id: str | None = None

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """Learning feedback, kept for compatibility with the seed implementation."""

    id: str
    agent_name: str
    feedback_type: str
    data: Any
    timestamp: float

    def to_dict(self) -> JSONObject:
        return _shallow(self)


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One entry of a namespace's change log (``memstore.core.changes`` lists the kinds).

    ``position`` increases strictly within a namespace (1, 2, 3, ... in write order);
    the fields that name what changed are set for the kinds they apply to:

    * ``entity.saved``/``entity.deleted``/``entity.expired``: ``entity_type``,
      ``entity_id``, ``version`` (the new version; for a delete or an expiry, the version
      that was removed);
    * ``conversation.appended``/``replaced``: ``conversation_id``, ``version`` (the highest
      ``seq`` after the write), ``count`` (messages written); ``popped``: ``version`` (the
      popped ``seq``); ``deleted``: neither;
    * ``tool_usage.recorded``: ``record_id``, ``tool_name``, ``conversation_id`` when the
      use belongs to one; ``tool_usage.pruned``: ``count``;
    * ``feedback.saved``: ``record_id``.

    ``actor``/``address``: who wrote it (``memstore.core.changes.Actor``). Events never
    hold payloads."""

    position: int
    kind: str
    timestamp: float
    entity_type: str | None = None
    entity_id: str | None = None
    conversation_id: str | None = None
    tool_name: str | None = None
    record_id: str | None = None
    version: int | None = None
    count: int | None = None
    actor: str | None = None
    address: str | None = None

    def to_dict(self) -> JSONObject:
        return _shallow(self)

    def to_shared_dict(self) -> JSONObject:
        """The event as the feed and webhooks send it: without :data:`AUDIT_ONLY_FIELDS`."""
        body = _shallow(self)
        for name in AUDIT_ONLY_FIELDS:
            del body[name]
        return body


#: Fields of a change event that only the admin audit export shows: the client address
#: is for auditors, not for every reader of the feed or every webhook receiver.
AUDIT_ONLY_FIELDS = ("address",)


@dataclass(frozen=True, slots=True)
class ChangePage:
    """Events of one namespace with ``position > after``, ascending.

    ``first_position``: the oldest position still retained (``last_position + 1`` when
    retention removed everything); ``last_position``: the highest position ever given
    (0 for a namespace that never changed). A reader that asked for ``after <
    first_position - 1`` missed pruned events (the manager turns that into
    ``ChangesPrunedError``)."""

    events: list[ChangeEvent]
    first_position: int
    last_position: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is opaque and ``None`` on the last page."""

    items: list[T]
    next_cursor: str | None = None


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class EntityHit:
    """An entity a search found, with its score (higher is better; what the number means
    depends on the search's ``mode``: BM25 for keywords, cosine similarity for semantic,
    the fused reciprocal-rank score for hybrid, 1.0 for a filter alone)."""

    entity: EntityRecord
    score: float

    def to_dict(self) -> JSONObject:
        return {"entity": self.entity.to_dict(), "score": self.score}


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class MessageHit:
    """A conversation message a search found, with its score."""

    message: MessageRecord
    score: float

    def to_dict(self) -> JSONObject:
        return {"message": self.message.to_dict(), "score": self.score}


@with_config(_RESPONSE)
@dataclass(frozen=True, slots=True)
class ToolUsageHit:
    """A tool-usage record a search found, with its score."""

    record: ToolUsageRecord
    score: float

    def to_dict(self) -> JSONObject:
        return {"record": self.record.to_dict(), "score": self.score}


@dataclass(frozen=True, slots=True)
class SearchPage(Generic[T]):
    """One page of search hits, best first. ``next_cursor`` continues the same ranking
    (opaque, ``None`` on the last page: results are never silently capped); ``mode`` is the
    mode that ran (``auto`` resolved); ``embedder`` names the embedder whose vectors were
    compared (``None`` when no vector was)."""

    items: list[T]
    next_cursor: str | None
    mode: str
    embedder: str | None = None

    def to_dict(self) -> JSONObject:
        """The HTTP answer (the CLI prints it too): the hits' ``to_dict()`` and the rest."""
        return {
            "items": [hit.to_dict() for hit in self.items],  # type: ignore[attr-defined]
            "next_cursor": self.next_cursor,
            "mode": self.mode,
            "embedder": self.embedder,
        }


_SUMMARY_TOTALS = ("total_entities", "total_tool_uses")


def _summary_schema(schema: dict[str, Any]) -> None:
    _name_patterns(schema)
    # The totals are properties, which pydantic does not see; to_dict adds them.
    for name in _SUMMARY_TOTALS:
        schema["properties"][name] = {"type": "integer", "title": name.replace("_", " ").title()}
        schema["required"].append(name)


@with_config(
    ConfigDict(json_schema_serialization_defaults_required=True, json_schema_extra=_summary_schema)
)
@dataclass(frozen=True, slots=True)
class MemorySummary:
    namespace: str
    entity_counts: dict[str, int] = field(default_factory=dict)
    conversations: int = 0
    messages: int = 0
    tool_usage_counts: dict[str, int] = field(default_factory=dict)
    feedback_count: int = 0

    @property
    def total_entities(self) -> int:
        return sum(self.entity_counts.values())

    @property
    def total_tool_uses(self) -> int:
        return sum(self.tool_usage_counts.values())

    def to_dict(self) -> JSONObject:
        body = asdict(self)
        for name in _SUMMARY_TOTALS:
            body[name] = getattr(self, name)
        return body

    def to_markdown(self) -> str:
        lines = [f"# Memory summary: `{self.namespace}`", "", "## Entities", ""]
        if self.entity_counts:
            lines += [f"- {t}: {n}" for t, n in sorted(self.entity_counts.items())]
        else:
            lines.append("- none")
        lines += [
            "",
            "## Conversations",
            "",
            f"- conversations: {self.conversations}",
            f"- messages: {self.messages}",
            "",
            "## Tool usage",
            "",
        ]
        if self.tool_usage_counts:
            lines += [f"- {t}: {n}" for t, n in sorted(self.tool_usage_counts.items())]
        else:
            lines.append("- none")
        lines += ["", "## Learning feedback", "", f"- records: {self.feedback_count}", ""]
        return "\n".join(lines)

"""Request and response bodies. Requests are validated with these models (unknown fields
are rejected); responses are documented with them in /openapi.json, and the API tests
check real responses against that document.

Records (entities, messages, tool uses, feedback, summaries) are not re-declared here: the
answers are the records of ``memstore.core.records`` and their schemas are derived from
those dataclasses; the models below only wrap them (pages) or describe the answers that
are not records."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    RootModel,
    SecretStr,
    WithJsonSchema,
    create_model,
)

from memstore.core.bounds import (
    DURATION_MS,
    MAX_BATCH_ITEMS,
    SEQUENCE,
    TIMESTAMP_SECONDS,
    TTL_SECONDS,
)
from memstore.core.changes import CHANGE_KINDS
from memstore.core.records import (
    AUDIT_ONLY_FIELDS,
    ChangeEvent,
    ConversationInfo,
    ConversationRevision,
    EntityHit,
    EntityRecord,
    EntityVersion,
    FeedbackRecord,
    MemorySummary,
    MessageHit,
    MessageRecord,
    Snapshot,
    ToolUsageHit,
    ToolUsageRecord,
)
from memstore.core.search import (
    FILTER_OPERATORS,
    MAX_QUERY_LENGTH,
    SEARCH_MODES,
    TEXT_SEARCH_MODES,
)
from memstore.core.validation import (
    CURSOR_RE,
    ID_RE,
    NAMESPACE_RE,
    SNAPSHOT_RE,
    TOOL_RE,
    TYPE_RE,
    WEBHOOK_RE,
)
from memstore.server.webhooks.config import MAX_URL_LENGTH, SECRET_PATTERN, URL_PATTERN

ChangeKind = Literal[CHANGE_KINDS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    # strict: JSON types are checked as documented (no "1" -> 1 or false -> 0.0 coercion).
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests -------------------------------------------------------------------------


def _integral(value: Any) -> Any:
    # JSON has one number type: 20.0 is the integer 20 (JSON Schema says so too).
    return int(value) if isinstance(value, float) and value.is_integer() else value


class EntityPut(_Strict):
    data: dict[str, JsonValue] = Field(description="The entity: any JSON object, stored exactly.")
    ttl_seconds: Annotated[float, TTL_SECONDS] | None = Field(
        None, description="Expire the entity after this many seconds."
    )


class MessagesIn(_Strict):
    messages: list[dict[str, JsonValue]] = Field(
        min_length=1, description="Messages (JSON objects) in conversation order."
    )


def _entity_batch_item_rules(schema: dict[str, Any]) -> None:
    # An expected version and create_only (If-Match and If-None-Match: *) never hold
    # together: at most one of them is given.
    schema["anyOf"] = [
        {"properties": {"create_only": {"const": False}}},
        {"properties": {"expected_version": {"type": "null"}}},
    ]


class EntityBatchItem(_Strict):
    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra=_entity_batch_item_rules
    )

    type: str = Field(pattern=TYPE_RE.pattern, description="Entity type.")
    id: str = Field(pattern=ID_RE.pattern, description="Entity id.")
    data: dict[str, JsonValue] = Field(description="The entity: any JSON object, stored exactly.")
    ttl_seconds: Annotated[float, TTL_SECONDS] | None = Field(
        None, description="Expire the entity after this many seconds."
    )
    # An integral float is the integer: the document's "integer" admits 28.0.
    expected_version: Annotated[int, SEQUENCE, BeforeValidator(_integral)] | None = Field(
        None, description="Write only if the stored version is this one (the If-Match of a PUT)."
    )
    create_only: bool = Field(
        False, description="Write only if the entity does not exist (If-None-Match: *)."
    )


class EntityBatchIn(_Strict):
    items: list[EntityBatchItem] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description="Saves of distinct entities, checked all before any is written.",
    )


class MessagesBatchItem(_Strict):
    conversation_id: str = Field(pattern=ID_RE.pattern)
    messages: list[dict[str, JsonValue]] = Field(
        min_length=1, description="Messages (JSON objects) in conversation order."
    )


class MessagesBatchIn(_Strict):
    items: list[MessagesBatchItem] = Field(
        min_length=1,
        max_length=MAX_BATCH_ITEMS,
        description="Appends to distinct conversations, checked all before any is written.",
    )


class MessagesReplace(_Strict):
    messages: list[dict[str, JsonValue]] = Field(
        description="The whole new history, in order; empty deletes the conversation."
    )


class ToolUsageIn(_Strict):
    tool_name: str = Field(pattern=TOOL_RE.pattern)
    input: JsonValue = None
    output: JsonValue = None
    duration_ms: Annotated[float, DURATION_MS] = 0.0
    success: bool = True
    timestamp: Annotated[float, TIMESTAMP_SECONDS] | None = Field(
        None, description="POSIX seconds; default: when the server receives it."
    )
    conversation_id: str | None = Field(None, pattern=ID_RE.pattern)
    id: str | None = Field(
        None, pattern=ID_RE.pattern, description="Client-chosen id; makes retries idempotent."
    )


class SnapshotIn(_Strict):
    name: str = Field(pattern=SNAPSHOT_RE.pattern, description="The snapshot's name (new).")


class FeedbackIn(_Strict):
    agent_name: str = Field(pattern=TOOL_RE.pattern)
    feedback_type: str = Field(pattern=TYPE_RE.pattern)
    data: JsonValue = None


class WebhookPut(_Strict):
    url: str = Field(
        max_length=MAX_URL_LENGTH,
        pattern=URL_PATTERN,
        description="Where events are POSTed: an http:// or https:// URL with a host and no"
        " user name or password.",
    )
    secret: SecretStr | None = Field(
        None,
        # Checked by the webhook store (a pattern constraint does not apply to SecretStr).
        json_schema_extra={"pattern": SECRET_PATTERN},
        description="The signing secret, `whsec_` + base64 of 24 to 64 random bytes. Absent:"
        " a new webhook gets a generated one, shown once in this answer; a replaced one keeps"
        " its own.",
    )
    kinds: list[ChangeKind] | None = Field(
        None, max_length=len(CHANGE_KINDS), description="Only these kinds (absent: all)."
    )
    entity_types: list[Annotated[str, Field(pattern=TYPE_RE.pattern)]] | None = Field(
        None,
        max_length=64,
        description="Only entity events of these types (absent: every event).",
    )


# -- search requests ------------------------------------------------------------------
# The bodies are parsed here for their JSON types only. Every rule beyond the type (the
# modes, the filter's operators, the limit's range, a non-empty query, valid names, a
# cursor the server issued) is checked in one place, the core's search check that the
# manager runs (memstore.core.search), so an HTTP caller, a MemoryClient and an
# in-process caller get the same error for the same mistake. The document states those
# rules all the same (``_doc``: schema only, not enforced here), made from the same
# constants, so that what it calls a valid body is a valid search.


def _doc(**schema: Any) -> Any:
    return Field(json_schema_extra=schema)


#: Stands for a reference to one of ``SEARCH_COMPONENTS`` (recursive schemas pydantic does
#: not make); ``openapi.build_openapi`` turns it into a ``$ref``.
COMPONENT_KEY = "x-memstore-component"


def _ref(name: str) -> dict[str, str]:
    return {COMPONENT_KEY: name}


#: A field path: names joined by dots, none empty, not starting with ``$`` (an operator).
_FIELD_PATH = r"^[^$.][^.]*(\.[^.]+)*$"
_ORDERABLE: dict[str, Any] = {"type": ["number", "string"]}
_OPERAND: dict[str, dict[str, Any]] = {
    "$eq": {}, "$ne": {},
    "$gt": _ORDERABLE, "$gte": _ORDERABLE, "$lt": _ORDERABLE, "$lte": _ORDERABLE,
    "$in": {"type": "array"}, "$nin": {"type": "array"},
}  # fmt: skip
#: Components of /openapi.json that no pydantic model makes (recursive filter schemas).
SEARCH_COMPONENTS: dict[str, dict[str, Any]] = {
    "SearchFilter": {
        "type": "object",
        "description": "Field path (dots walk nested objects: `author.name`) -> a condition:"
        ' a value (the field equals it; `1` equals `1.0`, never `true` or `"1"`), an'
        " object of operators (all must hold), or an object of fields (the field is an"
        " object matching them). Every condition must hold.",
        "propertyNames": {"pattern": _FIELD_PATH},
        "additionalProperties": {
            "anyOf": [
                {"type": ["string", "number", "boolean", "null", "array"]},
                _ref("SearchOperators"),
                _ref("SearchFilter"),
            ]
        },
    },
    "SearchOperators": {
        "type": "object",
        "description": "Operators on one field: "
        + ", ".join(f"`{op}`" for op in FILTER_OPERATORS)
        + ". `$in`/`$nin` take a list; `$gt`..`$lte` a number or a string (numbers compare"
        " with numbers, strings with strings, other pairs never match); a missing field"
        " matches only `$ne` and `$nin`. Another operator is a 400 naming it"
        " (`filter.<path>.<operator>`).",
        "minProperties": 1,
        "properties": {op: _OPERAND[op] for op in FILTER_OPERATORS},
        "additionalProperties": False,
    },
}

_Query = Annotated[str, _doc(pattern=r"\S", maxLength=MAX_QUERY_LENGTH)]


def _nullable(schema: dict[str, Any]) -> Any:
    return WithJsonSchema({"anyOf": [schema, {"type": "null"}]})


# The page size goes to the manager as it came (an integral float as an integer),
# unchecked here: a MemoryClient forwards it without checking it itself (its bounds are the
# server's), so the answer must be the manager's own error, word for word. The document's
# maximum is the server's page size (openapi.py writes it in).
_PageSize = Annotated[Any, BeforeValidator(_integral), _nullable({"type": "integer", "minimum": 1})]
_Cursor = Annotated[str, _doc(pattern=f"^({CURSOR_RE.pattern})?$")]


class RevertIn(_Strict):
    version: Annotated[int, BeforeValidator(_integral)] = Field(
        ge=1, lt=2**63, description="The version whose data becomes the new one."
    )


_Filter = Annotated[dict[str, JsonValue], WithJsonSchema(_ref("SearchFilter"))]
_MODES = (
    "How hits are ranked: `keyword` (BM25 over the indexed fields), `semantic` (cosine"
    " similarity of embeddings), `hybrid` (both rankings fused by reciprocal rank), `auto`"
    " (hybrid, or keyword when the service has no embedder). `semantic` and `hybrid` need"
    " an embedder (not MEMSTORE_EMBEDDER=none)."
)
_QUERY = (
    "What to look for (words, a question): at least one character that is not white"
    f" space, at most {MAX_QUERY_LENGTH} characters."
)
_LIMIT = Field(
    None, description="Page size (absent: the server's default page size; at most its maximum)."
)
_CURSOR = Field(
    None,
    description="Opaque: the `next_cursor` of the previous page of the same search (same"
    " arguments). Any other value is a 400 `invalid_input` naming `cursor`.",
)


def _entity_search_rules(schema: dict[str, Any]) -> None:
    # The mode decides whether a query is needed: `filter` takes none, the ranking modes
    # need one, `auto` (the default) takes either.
    ranking = [m for m in SEARCH_MODES if m not in ("auto", "filter")]
    schema["anyOf"] = [
        {"properties": {"mode": {"const": "auto"}}},
        {"required": ["mode"],
         "properties": {"mode": {"const": "filter"}, "query": {"type": "null"}}},
        {"required": ["mode", "query"],
         "properties": {"mode": {"enum": ranking}, "query": {"type": "string"}}},
    ]  # fmt: skip


class EntitySearch(_Strict):
    """The body of ``search_entities``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_entity_search_rules)

    query: _Query | None = Field(
        None, description=_QUERY + " Absent or null: the filter alone (mode `filter`)."
    )
    types: (
        Annotated[list[Annotated[str, _doc(pattern=TYPE_RE.pattern)]], _doc(minItems=1)] | None
    ) = Field(None, description="Only entities of these types (absent: every type).")
    filter: _Filter | None = Field(None, description="Conditions on the entity's fields.")
    mode: str = Field(
        "auto",
        json_schema_extra={"enum": list(SEARCH_MODES)},
        description=_MODES + " `filter`: the filter alone, every hit scores 1.0, no query;"
        " `auto` without a query is `filter`.",
    )
    limit: _PageSize = _LIMIT
    cursor: _Cursor | None = _CURSOR


class MessageSearch(_Strict):
    """The body of ``search_messages``."""

    query: _Query = Field(description=_QUERY)
    conversation_id: Annotated[str, _doc(pattern=ID_RE.pattern)] | None = Field(
        None, description="Only this conversation's messages (absent: every conversation)."
    )
    mode: str = Field(
        "auto", json_schema_extra={"enum": list(TEXT_SEARCH_MODES)}, description=_MODES
    )
    limit: _PageSize = _LIMIT
    cursor: _Cursor | None = _CURSOR


class ToolUsageSearch(_Strict):
    """The body of ``search_tool_usage``."""

    query: _Query = Field(description=_QUERY)
    tool_name: Annotated[str, _doc(pattern=TOOL_RE.pattern)] | None = Field(
        None, description="Only this tool's uses (absent: every tool)."
    )
    mode: str = Field(
        "auto", json_schema_extra={"enum": list(TEXT_SEARCH_MODES)}, description=_MODES
    )
    limit: _PageSize = _LIMIT
    cursor: _Cursor | None = _CURSOR


# -- responses ------------------------------------------------------------------------


class ErrorOut(BaseModel):
    code: str = Field(description="Stable machine-readable error code.")
    message: str
    details: dict[str, Any] | None = None


class _Response(BaseModel):
    # Every field is always in the answer (records' to_dict, these models' dumps).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class EntityPage(_Response):
    items: list[EntityRecord]
    next_cursor: str | None


class PrunedEntityOut(BaseModel):
    type: str
    id: str
    reason: Literal["max_age", "idle"]
    version: int


class PrunedConversationOut(BaseModel):
    id: str
    reason: Literal["idle", "max_messages"]
    through_seq: int = Field(description="Messages with seq up to this one go (idle: all).")
    messages: int


class PrunedRecordOut(BaseModel):
    id: str
    timestamp: float
    reason: Literal["max_age"]


class PrunedVersionOut(BaseModel):
    type: str | None = Field(
        description="The entity type of an old version; null for a conversation revision."
    )
    id: str = Field(description="The entity id, or the conversation id of a revision.")
    version: int = Field(description="The version (or revision) number.")
    deleted: bool = Field(description="The row is a tombstone (the mark a delete left).")
    reason: Literal["max_age", "max_versions"]


class RetentionCountsOut(BaseModel):
    entities: int
    conversations: int = Field(description="Whole conversations (idle).")
    trimmed_conversations: int = Field(description="Conversations losing their oldest messages.")
    messages: int
    tool_usage: int
    feedback: int
    versions: int = Field(description="Old entity versions and conversation revisions.")


class RetentionReportOut(_Response):
    now: float = Field(description="The instant the policy was judged at (POSIX seconds).")
    dry_run: bool
    limit: int = Field(description="Items listed at most per kind.")
    complete: bool = Field(description="Nothing more is due beyond what is listed.")
    more: dict[str, bool] = Field(description="Per kind: more items are due beyond the limit.")
    counts: RetentionCountsOut
    entities: list[PrunedEntityOut]
    conversations: list[PrunedConversationOut]
    tool_usage: list[PrunedRecordOut]
    feedback: list[PrunedRecordOut]
    versions: list[PrunedVersionOut]


class EntityVersionPage(_Response):
    items: list[EntityVersion]
    next_cursor: str | None


class EntityAsOf(RootModel[EntityRecord | EntityVersion]):
    """The entity now (an ``EntityRecord``), or, with ``as_of``/``as_of_version``, the
    version it had then (an ``EntityVersion``)."""


class EntityDiffOut(_Response):
    type: str
    id: str
    from_version: int
    to_version: int
    patch: list[dict[str, JsonValue]] = Field(
        description="RFC 6902 JSON Patch operations turning `from_version`'s data into "
        "`to_version`'s."
    )


class ConversationRevisionPage(_Response):
    items: list[ConversationRevision]
    next_cursor: str | None


class ConversationRevisionOut(_Response):
    revision: ConversationRevision
    messages: list[MessageRecord] = Field(description="The messages it replaced, in order.")


class SnapshotList(_Response):
    items: list[Snapshot]


class HistoryPurgedOut(_Response):
    removed: int = Field(description="History rows and revisions removed.")
    erase_pending: bool = Field(
        description="True when the store replicates and its other backend was down: the "
        "history is erased there too, in order, once the replication copies again "
        "(until then a failover could serve it)."
    )


class EntityTypesOut(BaseModel):
    types: list[str]


class EntityBatchOut(_Response):
    items: list[EntityRecord] = Field(description="One record per item, in item order.")
    created: list[int] = Field(
        description="The indexes of the items that created their entity (a PUT's 201); "
        "the others replaced one."
    )


class MessagesBatchOut(_Response):
    items: list[MessagesOut] = Field(description="Each item's messages, in item order.")


class MessagesOut(_Response):
    items: list[MessageRecord]
    next_before: int | None = Field(
        description="Pass as `before` to get the previous page; null at the start."
    )


class ConversationPage(_Response):
    items: list[ConversationInfo]
    next_cursor: str | None


class ToolUsagePage(_Response):
    items: list[ToolUsageRecord]
    next_cursor: str | None


class ToolNamesOut(BaseModel):
    tools: list[str]


class FeedbackPage(_Response):
    items: list[FeedbackRecord]
    next_cursor: str | None


_RAN_MODE = Field(
    json_schema_extra={"enum": [m for m in SEARCH_MODES if m != "auto"]},
    description="The mode that ran (`auto` resolved).",
)
_EMBEDDER = Field(
    description="The embedder whose vectors were compared; null when none was (filter, keyword)."
)
_NEXT = Field(description="Pass as `cursor` for the next page; null on the last page.")


class EntitySearchPage(_Response):
    items: list[EntityHit] = Field(description="Hits, best first.")
    next_cursor: str | None = _NEXT
    mode: str = _RAN_MODE
    embedder: str | None = _EMBEDDER


class MessageSearchPage(_Response):
    items: list[MessageHit] = Field(description="Hits, best first.")
    next_cursor: str | None = _NEXT
    mode: str = _RAN_MODE
    embedder: str | None = _EMBEDDER


class ToolUsageSearchPage(_Response):
    items: list[ToolUsageHit] = Field(description="Hits, best first.")
    next_cursor: str | None = _NEXT
    mode: str = _RAN_MODE
    embedder: str | None = _EMBEDDER


class HealthOut(BaseModel):
    status: str
    backend: str | None = None
    # With a secondary backend: which one serves, the replication lag (totals), whether
    # and why the store is degraded (docs/architecture.md, "Replication and failover").
    replication: dict[str, Any] | None = None


class CacheClearedOut(BaseModel):
    cleared: int


class DataKeyOut(BaseModel):
    namespace: str
    key_id: str
    kek_id: str
    created_at: float


class DataKeyList(BaseModel):
    items: list[DataKeyOut]


class DataKeysRotatedOut(BaseModel):
    kek_id: str | None
    rewrapped: int
    unchanged: int


class DataKeyShreddedOut(BaseModel):
    namespace: str
    key_id: str
    shredded: bool


class MetricsOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    backend: str
    operations: dict[str, Any]
    cache: dict[str, Any]


class SkippedNamespaceOut(_Response):
    namespace: str = Field(pattern=NAMESPACE_RE.pattern)
    code: str = Field(description="The error code the namespace answers with.")
    message: str


class SummaryPageOut(_Response):
    items: list[MemorySummary] = Field(description="One summary per namespace, by name.")
    skipped: list[SkippedNamespaceOut] = Field(
        description="Namespaces of this page that could not be summarized now (being"
        " imported: `namespace_importing`; data key shredded: `data_shredded`); the others"
        " are listed all the same."
    )
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )
    complete: bool = Field(
        description="False when the backend cannot list namespaces (wildcard tokens only)."
    )


class WebhookOut(_Response):
    namespace: str = Field(pattern=NAMESPACE_RE.pattern)
    name: str = Field(pattern=WEBHOOK_RE.pattern)
    url: str
    secret: str = Field(
        description="`**********`, except in the answer to the PUT that generated it: the"
        " only time it is shown."
    )
    kinds: list[ChangeKind]
    entity_types: list[str]
    source: Literal["api", "file"] = Field(
        description="`file`: from the service's webhooks file (the MemoryStore spec); the"
        " API does not change those."
    )
    created_at: float | None
    updated_at: float | None


class WebhookPage(_Response):
    items: list[WebhookOut] = Field(description="The namespace's webhooks, by name.")


def _record_without(record: type, omitted: tuple[str, ...], name: str, doc: str) -> type[BaseModel]:
    """The schema of ``record``'s ``to_dict()`` less the fields ``omitted``: the fields
    come from the record itself, none is declared again here."""
    hints = typing.get_type_hints(record)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], ...) for f in dataclasses.fields(record) if f.name not in omitted
    }
    return create_model(name, __doc__=doc, **fields)


#: A change on the feed: ``ChangeEvent`` without ``AUDIT_ONLY_FIELDS`` (its ``to_shared_dict``).
FeedEvent = _record_without(
    ChangeEvent,
    AUDIT_ONLY_FIELDS,
    "FeedEvent",
    "One change (memstore.core.records.ChangeEvent) as the feed gives it: without the "
    "client address, which only the admin audit export shows.",
)


class ChangesPageOut(_Response):
    events: list[FeedEvent] = Field(  # type: ignore[valid-type]
        description="The changes after `after` that the filters keep, oldest first."
    )
    next_after: int = Field(
        description="The last position scanned (filtered-out changes count): pass it as "
        "`after` for the next page."
    )
    first_position: int = Field(description="The oldest position still retained.")
    last_position: int = Field(description="The newest position given (0: no change yet).")


class ImportResultOut(_Response):
    namespace: str = Field(description="The namespace imported into (the URL's).")
    source_namespace: str = Field(description="The namespace the dump was exported from.")
    counts: dict[str, int] = Field(
        description="Records imported per kind: entity, conversation, message, tool_usage, "
        "feedback."
    )
    replaced: bool = Field(description="Whether the namespace's data was replaced.")

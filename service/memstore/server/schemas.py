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

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, create_model

from memstore.core.bounds import DURATION_MS, TIMESTAMP_SECONDS, TTL_SECONDS
from memstore.core.changes import CHANGE_KINDS
from memstore.core.records import (
    AUDIT_ONLY_FIELDS,
    ChangeEvent,
    ConversationInfo,
    EntityRecord,
    FeedbackRecord,
    MemorySummary,
    MessageRecord,
    ToolUsageRecord,
)
from memstore.core.validation import ID_RE, NAMESPACE_RE, TOOL_RE, TYPE_RE, WEBHOOK_RE
from memstore.server.webhooks.config import MAX_URL_LENGTH, SECRET_PATTERN, URL_PATTERN

ChangeKind = Literal[CHANGE_KINDS]  # type: ignore[valid-type]


class _Strict(BaseModel):
    # strict: JSON types are checked as documented (no "1" -> 1 or false -> 0.0 coercion).
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests -------------------------------------------------------------------------


class EntityPut(_Strict):
    data: dict[str, JsonValue] = Field(description="The entity: any JSON object, stored exactly.")
    ttl_seconds: Annotated[float, TTL_SECONDS] | None = Field(
        None, description="Expire the entity after this many seconds."
    )


class MessagesIn(_Strict):
    messages: list[dict[str, JsonValue]] = Field(
        min_length=1, description="Messages (JSON objects) in conversation order."
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


class EntityTypesOut(BaseModel):
    types: list[str]


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


class HealthOut(BaseModel):
    status: str
    backend: str | None = None


class CacheClearedOut(BaseModel):
    cleared: int


class MetricsOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    backend: str
    operations: dict[str, Any]
    cache: dict[str, Any]


class SummaryPageOut(_Response):
    items: list[MemorySummary] = Field(description="One summary per namespace, by name.")
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

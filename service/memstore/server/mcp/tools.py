"""The MCP tools, written once over ``MemoryAPI``: the same table serves ``/mcp`` (the
service's manager) and ``memstore mcp`` (the manager on the embedded backend, or a
``MemoryClient`` proxying to a service).

Each tool is one row of ``TOOLS``: its name, what an LLM is told about it, its arguments
(a pydantic model: the JSON schema the client sees, and the first check of a call), the
token role it needs, and the call itself. Names, sizes and versions are then checked by the
``MemoryAPI`` operation the tool calls (``core/validation.py``), with the same messages the
HTTP API gives; the schemas carry the name patterns only as a hint for the model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memstore.core.errors import InvalidInputError
from memstore.core.records import JSONObject
from memstore.core.validation import NAME_PATTERNS
from memstore.memory.api import MemoryAPI
from memstore.server.auth import Role

A = TypeVar("A", bound="ToolArgs")


def _name(kind: str, description: str) -> Any:
    # The pattern is a hint in the schema; the MemoryAPI check names the rule in words.
    return Field(
        description=description, json_schema_extra={"pattern": NAME_PATTERNS[kind].pattern}
    )


def _optional_name(kind: str, description: str) -> Any:
    return Field(
        None, description=description, json_schema_extra={"pattern": NAME_PATTERNS[kind].pattern}
    )


#: The server refuses a page larger than its limit rather than shortening it silently.
_AT_MOST = "At most the server's MEMSTORE_MAX_PAGE_SIZE (500 unless configured); more is an error."


class ToolArgs(BaseModel):
    """Every tool takes an optional namespace; unknown arguments are refused."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = _optional_name(
        "namespace",
        "Memory namespace (tenant). Leave it out for the server's default namespace, or "
        "your token's namespace when it is limited to one.",
    )


class RememberArgs(ToolArgs):
    entity_type: str = _name("entity_type", "Kind of thing, e.g. 'user', 'project', 'fact'.")
    entity_id: str = _name("entity_id", "Its id within the type, e.g. 'alice'.")
    data: dict[str, Any] = Field(description="The whole JSON object to store (replaces it).")
    ttl_seconds: float | None = Field(
        None, gt=0, description="Forget it after this many seconds (default: keep)."
    )
    expected_version: int | None = Field(
        None,
        ge=0,
        description="Save only if the stored version is this one (the `version` recall "
        "returned): another agent's newer write is then not overwritten, you get a "
        "version_conflict and should recall and merge. 0: only if it does not exist yet.",
    )


class EntityArgs(ToolArgs):
    entity_type: str = _name("entity_type", "The entity's type.")
    entity_id: str = _name("entity_id", "The entity's id.")


class ForgetArgs(EntityArgs):
    expected_version: int | None = Field(
        None, ge=1, description="Delete only if the stored version is this one."
    )


class ListEntitiesArgs(ToolArgs):
    entity_type: str | None = _optional_name(
        "entity_type", "List the entities of this type; leave it out to list the types."
    )
    limit: int | None = Field(None, ge=1, description="Page size. " + _AT_MOST)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")


class AppendMessagesArgs(ToolArgs):
    conversation_id: str = _name("conversation_id", "The conversation, e.g. a session id.")
    messages: list[dict[str, Any]] = Field(
        min_length=1,
        description='Messages to append in order, each a JSON object such as {"role": '
        '"user", "content": "..."}; they get consecutive `seq` numbers.',
    )


class ReadConversationArgs(ToolArgs):
    conversation_id: str = _name("conversation_id", "The conversation.")
    limit: int = Field(50, ge=1, description="How many of the latest messages. " + _AT_MOST)
    before_seq: int | None = Field(
        None, ge=1, description="Only messages before this seq (`next_before` of a page)."
    )


class PageArgs(ToolArgs):
    limit: int | None = Field(None, ge=1, description="Page size. " + _AT_MOST)
    cursor: str | None = Field(None, description="`next_cursor` of the previous page.")


class RecordToolUseArgs(ToolArgs):
    tool_name: str = _name("tool_name", "The tool that was used.")
    input: Any = Field(None, description="What it was given (any JSON).")
    output: Any = Field(None, description="What it returned (any JSON).")
    duration_ms: float = Field(0.0, ge=0, description="How long it took.")
    success: bool = Field(True, description="Whether it succeeded.")
    conversation_id: str | None = _optional_name(
        "conversation_id", "The conversation it was used in."
    )
    usage_id: str | None = _optional_name(
        "entity_id", "An id of your own: retrying with the same id records it once."
    )


class QueryToolUsageArgs(PageArgs):
    tool_name: str | None = _optional_name("tool_name", "Only this tool's uses.")
    start: float | None = Field(None, description="From this time (POSIX seconds, inclusive).")
    end: float | None = Field(None, description="Until this time (POSIX seconds, exclusive).")


def parse_args(model: type[A], arguments: dict[str, Any] | None) -> A:
    """The arguments as ``model``; an ``InvalidInputError`` naming each wrong field."""
    try:
        return model.model_validate(arguments or {})
    except ValidationError as exc:
        # Locations and messages only: values may be payloads and are not echoed.
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "arguments", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise InvalidInputError(
            f"{first['field']}: {first['problem']}", field=first["field"], problems=problems
        ) from None


# -- the calls --------------------------------------------------------------------------


async def _remember(memory: MemoryAPI, a: RememberArgs) -> JSONObject:
    record = await memory.save_entity(
        a.entity_type,
        a.entity_id,
        a.data,
        ttl=a.ttl_seconds,
        expected_version=a.expected_version,
    )
    return {"entity": record.to_dict(), "created": record.version == 1}


async def _recall(memory: MemoryAPI, a: EntityArgs) -> JSONObject:
    record = await memory.get_entity(a.entity_type, a.entity_id)
    return {"found": record is not None, "entity": None if record is None else record.to_dict()}


async def _forget(memory: MemoryAPI, a: ForgetArgs) -> JSONObject:
    deleted = await memory.delete_entity(
        a.entity_type, a.entity_id, expected_version=a.expected_version
    )
    return {"deleted": deleted}


async def _list_entities(memory: MemoryAPI, a: ListEntitiesArgs) -> JSONObject:
    if a.entity_type is None:
        return {"types": await memory.get_entity_types()}
    page = await memory.list_entities(a.entity_type, limit=a.limit, cursor=a.cursor)
    return {"items": [e.to_dict() for e in page.items], "next_cursor": page.next_cursor}


async def _append_messages(memory: MemoryAPI, a: AppendMessagesArgs) -> JSONObject:
    records = await memory.append_messages(a.messages, a.conversation_id)
    return {"items": [m.to_dict() for m in records]}


async def _read_conversation(memory: MemoryAPI, a: ReadConversationArgs) -> JSONObject:
    records = await memory.load_messages(a.conversation_id, limit=a.limit, before_seq=a.before_seq)
    # seq is contiguous from 1: older messages exist exactly when the first seq > 1.
    next_before = records[0].seq if records and records[0].seq > 1 else None
    return {"items": [m.to_dict() for m in records], "next_before": next_before}


async def _list_conversations(memory: MemoryAPI, a: PageArgs) -> JSONObject:
    page = await memory.list_conversations(limit=a.limit, cursor=a.cursor)
    return {"items": [c.to_dict() for c in page.items], "next_cursor": page.next_cursor}


async def _record_tool_use(memory: MemoryAPI, a: RecordToolUseArgs) -> JSONObject:
    record = await memory.save_tool_usage(
        a.tool_name,
        a.input,
        a.output,
        duration_ms=a.duration_ms,
        success=a.success,
        conversation_id=a.conversation_id,
        usage_id=a.usage_id,
    )
    return record.to_dict()


async def _query_tool_usage(memory: MemoryAPI, a: QueryToolUsageArgs) -> JSONObject:
    page = await memory.query_tool_usage(
        a.tool_name, start=a.start, end=a.end, limit=a.limit, cursor=a.cursor
    )
    return {"items": [r.to_dict() for r in page.items], "next_cursor": page.next_cursor}


async def _summary(memory: MemoryAPI, a: ToolArgs) -> JSONObject:
    return (await memory.get_memory_summary_data()).to_dict()


# -- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec(Generic[A]):
    name: str
    description: str
    args: type[A]
    #: The token role a call needs (in the namespace it names).
    role: Role
    call: Callable[[MemoryAPI, A], Awaitable[JSONObject]]
    #: What the call changed (``"entity"`` or ``"conversation"``), for the change feed.
    changes: str | None = None
    #: Quota policy, as in the route table: the write can make the namespace bigger /
    #: create an entity (then its result says ``created``) / make it smaller.
    grows_storage: bool = False
    adds_entity: bool = False
    shrinks_storage: bool = False

    def input_schema(self) -> dict[str, Any]:
        return self.args.model_json_schema()


TOOLS: dict[str, ToolSpec[Any]] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "remember",
            "Store a JSON object under (entity_type, entity_id) in shared memory, replacing "
            "what was there. Returns it with its new `version`. To update safely when other "
            "agents may write the same entity, pass `expected_version` (from recall).",
            RememberArgs,
            "write",
            _remember,
            changes="entity",
            grows_storage=True,
            adds_entity=True,
        ),
        ToolSpec(
            "recall",
            "Load one entity by type and id: its data and `version` (use that version as "
            "remember's expected_version), or found=false.",
            EntityArgs,
            "read",
            _recall,
        ),
        ToolSpec(
            "list_entities",
            "List the entity types, or the entities of one type (ordered by id, one page; "
            "pass next_cursor back for the next page).",
            ListEntitiesArgs,
            "read",
            _list_entities,
        ),
        ToolSpec(
            "forget",
            "Delete an entity. Returns deleted=false when it did not exist.",
            ForgetArgs,
            "write",
            _forget,
            changes="entity",
            shrinks_storage=True,
        ),
        ToolSpec(
            "append_messages",
            "Append messages to a conversation (created on first append), atomically.",
            AppendMessagesArgs,
            "write",
            _append_messages,
            changes="conversation",
            grows_storage=True,
        ),
        ToolSpec(
            "read_conversation",
            "The latest `limit` messages of a conversation, oldest first; for older ones "
            "call again with before_seq = next_before.",
            ReadConversationArgs,
            "read",
            _read_conversation,
        ),
        ToolSpec(
            "list_conversations",
            "List conversation ids with their message counts (one page).",
            PageArgs,
            "read",
            _list_conversations,
        ),
        ToolSpec(
            "record_tool_use",
            "Record that a tool was used: its input, output, duration and success.",
            RecordToolUseArgs,
            "write",
            _record_tool_use,
            grows_storage=True,
        ),
        ToolSpec(
            "query_tool_usage",
            "Recorded tool uses, oldest first, optionally of one tool and in [start, end).",
            QueryToolUsageArgs,
            "read",
            _query_tool_usage,
        ),
        ToolSpec(
            "summary",
            "Counts of what the namespace holds: entities by type, conversations, "
            "messages, tool uses by tool, feedback.",
            ToolArgs,
            "read",
            _summary,
        ),
    )
}

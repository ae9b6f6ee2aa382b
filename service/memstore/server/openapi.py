"""Builds the OpenAPI 3.1 document from the route table (``routes.ROUTES``)."""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter

from memstore.core.search import SEARCH_MODES
from memstore.server.routing import BODY_CODINGS
from memstore.server.schemas import COMPONENT_KEY, SEARCH_COMPONENTS, ErrorOut

if TYPE_CHECKING:
    from memstore.core.settings import Settings
    from memstore.server.routing import Route

REF = "#/components/schemas/{model}"


_ENTITY = {
    "namespace": "$request.path.namespace",
    "entity_type": "$request.path.entity_type",
    "entity_id": "$request.path.entity_id",
}
_CONVERSATION = {
    "namespace": "$request.path.namespace",
    "conversation_id": "$request.path.conversation_id",
}
_NAMESPACE = {"namespace": "$request.path.namespace"}
_WEBHOOK = {"namespace": "$request.path.namespace", "webhook_name": "$request.path.webhook_name"}

#: OpenAPI links (what a response lets a client do next), for readers and for stateful
#: fuzzing: operation id -> statuses -> link name -> (target operation, parameters).
LINKS: dict[str, tuple[tuple[int, ...], dict[str, tuple[str, dict[str, str]]]]] = {
    "saveEntity": ((200, 201), {
        "GetEntity": ("getEntity", _ENTITY),
        "DeleteEntity": ("deleteEntity", _ENTITY),
        "ListEntities": ("listEntities", {
            "namespace": "$request.path.namespace", "entity_type": "$request.path.entity_type"}),
        "GetEntityTypes": ("getEntityTypes", _NAMESPACE),
    }),
    "appendMessages": ((201,), {
        "LoadMessages": ("loadMessages", _CONVERSATION),
        "PopMessage": ("popMessage", _CONVERSATION),
        "DeleteConversation": ("deleteConversation", _CONVERSATION),
        "ListConversations": ("listConversations", _NAMESPACE),
    }),
    "saveConversationHistory": ((200,), {
        "LoadMessages": ("loadMessages", _CONVERSATION),
        "DeleteConversation": ("deleteConversation", _CONVERSATION),
    }),
    "saveToolUsage": ((201,), {
        "QueryToolUsage": ("queryToolUsage", {
            "namespace": "$request.path.namespace", "tool_name": "$response.body#/tool_name"}),
        "GetToolNames": ("getToolNames", _NAMESPACE),
    }),
    "saveLearningFeedback": ((201,), {
        "GetLearningFeedback": ("getLearningFeedback", {
            "namespace": "$request.path.namespace",
            "agent_name": "$response.body#/agent_name",
            "feedback_type": "$response.body#/feedback_type"}),
        "GetMemorySummary": ("getMemorySummary", _NAMESPACE),
    }),
    "saveWebhook": ((200, 201), {
        "GetWebhook": ("getWebhook", _WEBHOOK),
        "DeleteWebhook": ("deleteWebhook", _WEBHOOK),
        "ListWebhooks": ("listWebhooks", _NAMESPACE),
    }),
}  # fmt: skip


_BODY_DESCRIPTION = (
    "A JSON object. It may be sent compressed with `Content-Encoding: "
    + " | ".join(BODY_CODINGS)
    + "` (one coding; the size limit applies to the decoded body, 413 beyond it); any "
    "other coding is answered 415 with `Accept-Encoding`. Integers in it must fit in 64 "
    "bits ([-2^63, 2^64 - 1]): a wider one is a 400 naming its path (send it as a string)."
)


def _json_value_schema() -> dict[str, Any]:
    """Any JSON value; the 64-bit rule for integer literals (read_body answers a wider
    one with 400) is in words only. JSON Schema cannot say it: it counts a float written
    with an exponent (``6.02e23``) as an integer too, and such floats are stored as they
    are, so a schema bound on integers would document valid bodies as invalid."""
    this = {"$ref": REF.format(model="JsonValue")}
    return {
        "description": "Any JSON value. An integer written without a fraction or an "
        "exponent must fit in 64 bits ([-2^63, 2^64 - 1]); a wider one is a 400 naming "
        "its path (send it as a string). Floats are stored as floats.",
        "items": this,
        "additionalProperties": this,
    }


def _error_responses(route: Route, settings: Settings, error_ref: dict[str, Any]) -> dict[str, Any]:
    """The answers the security middleware can give on this route (server.security)."""
    content = {"application/json": {"schema": error_ref}}
    out: dict[str, Any] = {}
    role = route.role
    if role is not None and settings.auth_enabled:
        out["401"] = {
            "description": "Missing or invalid bearer token.",
            "content": content,
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        }
        out["403"] = {
            "description": "The token lacks the role or the namespace (or a quota is full).",
            "content": content,
        }
    if route.grows_storage and (settings.quota_max_entities or settings.quota_max_bytes):
        out["403"] = {
            "description": "Forbidden (token scope), or the namespace's quota is full.",
            "content": content,
        }
    if role is not None and (settings.rate_limit_rps > 0 or settings.max_inflight_per_caller > 0):
        out["429"] = {
            "description": "Rate limit exceeded; retry after Retry-After seconds.",
            "content": content,
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
        }
    if settings.request_timeout_seconds > 0:
        out["504"] = {"description": "The request timed out.", "content": content}
    if route.body is not None or route.raw_body is not None:
        out["415"] = {
            "description": "The body's Content-Encoding is not one the server decodes.",
            "content": content,
            "headers": {
                "Accept-Encoding": {
                    "description": "The codings a request body may use.",
                    "schema": {"type": "string"},
                }
            },
        }
    return out


def _schema(
    body: type, mode: Literal["validation", "serialization"], components: dict[str, Any]
) -> dict[str, Any]:
    """A reference to ``body``'s schema (a pydantic model or a record dataclass), which
    pydantic derives and this puts in ``components``."""
    schema = TypeAdapter(body).json_schema(ref_template=REF, mode=mode)
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[body.__name__] = schema
    return {"$ref": REF.format(model=body.__name__)}


def _link(value: Any, used: set[str]) -> Any:
    """``value`` with each ``{COMPONENT_KEY: name}`` made a ``$ref`` (``used`` collects
    the names)."""
    if isinstance(value, dict):
        if COMPONENT_KEY in value:
            used.add(value[COMPONENT_KEY])
            return {"$ref": REF.format(model=value[COMPONENT_KEY])}
        return {k: _link(v, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_link(v, used) for v in value]
    return value


def _with_linked_components(components: dict[str, Any]) -> dict[str, Any]:
    """The components, with those of ``SEARCH_COMPONENTS`` they refer to (and those refer
    to) added, all references as ``$ref``."""
    used: set[str] = set()
    out: dict[str, Any] = _link(components, used)
    while pending := sorted(used - out.keys()):
        for name in pending:
            out[name] = _link(SEARCH_COMPONENTS[name], used)
    return out


#: The search modes that compare embeddings: a service without an embedder refuses them.
VECTOR_MODES = ("semantic", "hybrid")


def _without_modes(value: Any, modes: tuple[str, ...]) -> Any:
    """``value`` with ``modes`` left out of every enumeration of search modes."""
    if isinstance(value, dict):
        out = {k: _without_modes(v, modes) for k, v in value.items()}
        enum = value.get("enum")
        if isinstance(enum, list) and enum and set(enum) <= set(SEARCH_MODES):
            out["enum"] = [m for m in enum if m not in modes]
        return out
    if isinstance(value, list):
        return [_without_modes(v, modes) for v in value]
    return value


def build_openapi(routes: tuple[Route, ...], settings: Settings) -> dict[str, Any]:
    max_page_size = settings.max_page_size
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    error_ref = _schema(ErrorOut, "serialization", components)
    for route in routes:
        op: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
        }
        params = []
        for p in route.params:
            schema = dict(p.schema)
            if p.name == "limit":
                # a page size, unless the row states its own bound (analytics' listed calls)
                schema.setdefault("maximum", max_page_size)
            elif p.name == "wait":
                schema["maximum"] = settings.changes_max_wait_seconds
            params.append(
                {
                    "name": p.name,
                    "in": p.location,
                    "required": p.required or p.location == "path",
                    "description": p.description,
                    "schema": schema,
                }
            )
        if params:
            op["parameters"] = params
        if route.body is not None:
            body_ref = _schema(route.body, "validation", components)
            body_limit = components[route.body.__name__].get("properties", {}).get("limit")
            for branch in body_limit.get("anyOf", [body_limit]) if body_limit else ():
                if branch.get("type") == "integer":  # a page size in the body (search)
                    branch["maximum"] = max_page_size
            op["requestBody"] = {
                "required": True,
                "description": _BODY_DESCRIPTION,
                "content": {"application/json": {"schema": body_ref}},
            }
        if route.raw_body is not None:
            op["requestBody"] = {
                "required": True,
                "description": "Streamed, never read whole; " + _BODY_DESCRIPTION,
                "content": {route.raw_body: {"schema": {"type": "string"}}},
            }
        responses: dict[str, Any] = {}
        for status, (description, body) in sorted(route.responses.items()):
            resp: dict[str, Any] = {"description": description}
            if isinstance(body, str):
                resp["content"] = {body: {"schema": {}}}
            elif body is not None:
                ref = error_ref if body is ErrorOut else _schema(body, "serialization", components)
                resp["content"] = {"application/json": {"schema": ref}}
            for media_type in route.text_alternatives.get(status, ()):
                resp.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
            headers = route.response_headers.get(status)
            if headers:
                resp["headers"] = {
                    h: {"description": d, "schema": {"type": "string"}} for h, d in headers.items()
                }
            responses[str(status)] = resp
        for status_text, resp in _error_responses(route, settings, error_ref).items():
            responses.setdefault(status_text, resp)
        if settings.auth_enabled and route.role is not None:
            op["security"] = [{"bearerAuth": []}]
        statuses, links = LINKS.get(route.operation_id, ((), {}))
        for status in statuses:
            if str(status) in responses:
                responses[str(status)]["links"] = {
                    name: {"operationId": target, "parameters": dict(params)}
                    for name, (target, params) in links.items()
                }
        op["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = op
    components = _with_linked_components(components)
    if settings.embedder == "none":
        components = _without_modes(components, VECTOR_MODES)
    if "JsonValue" in components:
        components["JsonValue"] = _json_value_schema()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memstore",
            "version": version("memstore"),
            "description": "Distributed memory for AI agents: entities, conversations, "
            "tool usage and learning feedback per memory namespace.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            **(
                {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}}
                if settings.auth_enabled
                else {}
            ),
        },
    }

"""One row of the route table (``routes.ROUTES``) and how a request finds its row.

A row says everything about a route in one place: what the router needs (method, path,
handler), what ``/openapi.json`` says (parameters, body, responses), and the policy the
middlewares apply (role, quota, tracing). The middlewares read the row of the matched
route; no other module keeps lists of operation ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiohttp import web
from aiohttp.web_urldispatcher import ResourceRoute
from pydantic import BaseModel

from memstore.core.bounds import MAX_BATCH_ITEMS
from memstore.core.errors import InvalidInputError
from memstore.core.validation import ID_RE, TYPE_RE
from memstore.server.auth import Role

View = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Content codings a request body may carry. aiohttp decodes them (zlib) while the body
#: streams in, so ``client_max_size`` (413) bounds the decoded bytes: a compression bomb
#: is cut off at the limit. Anything else is a 415 before the body is read.
BODY_CODINGS = ("gzip", "deflate", "identity")


#: How many entities a batch write created, for the quota's settlement (a single save
#: says it with its status, 201).
CREATED_ENTITIES = web.RequestKey("created_entities", int)


@dataclass(frozen=True)
class Param:
    name: str
    location: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: View
    operation_id: str
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    #: A body that is not a JSON document but a stream of this media type (the import's
    #: dump), read by the handler as it arrives.
    raw_body: str | None = None
    # status -> (description, body type or media type string or None); a body type is a
    # pydantic model or a record of memstore.core.records (pydantic derives its schema).
    responses: dict[int, tuple[str, type | str | None]] = field(default_factory=dict)
    response_headers: dict[int, dict[str, str]] = field(default_factory=dict)
    # status -> further media types the same response may be rendered as (text bodies)
    text_alternatives: dict[int, tuple[str, ...]] = field(default_factory=dict)
    #: The token role the route needs; ``None``: open to anyone (probes, scrape, document).
    #: Namespaced routes are ``read`` for GET and ``write`` otherwise (the audit trail:
    #: ``admin`` on the namespace); process-wide ones ``admin``. Required on every row: a
    #: new route's access is always a decision.
    role: Role | None = field(kw_only=True)
    #: The write can make its namespace bigger: checked against the namespace's quotas.
    grows_storage: bool = False
    #: The write can create an entity: checked against the entity quota.
    adds_entity: bool = False
    #: After the write the namespace's usage is read again (it may have shrunk).
    shrinks_storage: bool = False
    #: Server spans for this route; probes and scrapes are counted in metrics only.
    traced: bool = True
    #: Matched before the other routes (the hottest requests try fewer patterns).
    hot: bool = False
    #: The answer may be a long-lived stream (MCP's listen streams): no request deadline
    #: for the whole request; the handler bounds each operation it runs itself.
    streaming: bool = False

    @property
    def namespaced(self) -> bool:
        return "{namespace}" in self.path


class TableRoute(ResourceRoute):
    """An aiohttp route that carries its row of the route table."""

    def __init__(self, row: Route, handler: View, resource: web.Resource) -> None:
        super().__init__(row.method, handler, resource)
        self.row = row


def route_row(request: web.Request) -> Route | None:
    """The matched route's row; ``None`` for an unmatched request or a route that is not
    in the table (policy code treats both as "unknown" and fails closed)."""
    route = request.match_info.route
    return route.row if isinstance(route, TableRoute) else None


def open_path(request: web.Request) -> bool:
    """Whether the request's path is served only by open routes (``role`` ``None``): a
    405 there (wrong method) tells nothing that a caller without a token cannot learn."""
    rows = [
        route.row
        for resource in request.app.router.resources()
        if isinstance(resource, web.PlainResource) and resource.canonical == request.path
        for route in resource
        if isinstance(route, TableRoute)
    ]
    return bool(rows) and all(row.role is None for row in rows)


#: What a body in another coding is answered (415), wherever it is refused.
UNSUPPORTED_CODING = f"Content-Encoding must be one of {', '.join(BODY_CODINGS)} (one coding)"
ACCEPT_ENCODING = ", ".join(BODY_CODINGS)


def check_content_coding(request: web.Request) -> None:
    """415 for a body in a coding the server does not decode (before reading it)."""
    values = request.headers.getall("Content-Encoding", ())
    if not values:  # nearly every request
        return
    codings = [c.strip().lower() for v in values for c in v.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in BODY_CODINGS):
        raise web.HTTPUnsupportedMediaType(
            text=UNSUPPORTED_CODING, headers={"Accept-Encoding": ACCEPT_ENCODING}
        )


async def read_raw_body(request: web.Request) -> bytes:
    """The decoded request body, for whoever reads it first (the quota check or the
    view; aiohttp caches it): 415 for a coding outside ``BODY_CODINGS``, 413 past
    ``client_max_size``, 400 for a body that does not decode."""
    check_content_coding(request)
    try:
        return await request.read()
    except web.RequestPayloadError as exc:
        # A body that does not decode under its Content-Encoding (or was cut short); the
        # answer closes the connection (server.errors), the rest of the stream is unusable.
        raise InvalidInputError(
            "request body could not be read: it does not decode under its Content-Encoding"
            " or was cut short",
            field="body",
        ) from exc


def batch_entity_keys(body: bytes) -> list[tuple[str, str]]:
    """The distinct (type, id) keys a batch of entity saves names, for the entity quota
    (which counts those that do not exist) before the handler checks the body: what does
    not parse, and a key that is not a valid type and id, counts as nothing here and is
    the handler's 400 (naming the item), never a lookup of a bad key."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    items = value.get("items") if isinstance(value, dict) else None
    if not isinstance(items, list):
        return []
    keys = {
        (item["type"], item["id"]): None
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("type"), str)
        and isinstance(item.get("id"), str)
        and TYPE_RE.fullmatch(item["type"])
        and ID_RE.fullmatch(item["id"])
    }
    return list(keys)[:MAX_BATCH_ITEMS]

"""Routes and views. Views stay thin: parse, call the manager, shape the response.

Every route is declared once in ``ROUTES`` with its parameters, body and responses; the
router and ``/openapi.json`` are both built from that table, so the document cannot drift
from what the server does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar, cast

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from memstore.core.analytics import (
    BUCKET_HOURS,
    DEFAULT_LISTED_CALLS,
    GROWTH_KINDS,
    MAX_BUCKETS,
    MAX_LISTED_CALLS,
    AnalyticsOverview,
    FeedbackAnalytics,
    GrowthSeries,
    ToolAnalytics,
)
from memstore.core.bounds import (
    CHANGE_POSITION,
    INTEGER_DIGITS,
    JSON_INTEGER,
    SEQUENCE,
    TIMESTAMP_SECONDS,
    check_in,
    contains,
    json_schema,
)
from memstore.core.changes import CHANGE_KINDS
from memstore.core.errors import (
    ConflictError,
    DataShreddedError,
    InvalidInputError,
    MemoryStoreError,
    NamespaceImportingError,
    NotFoundError,
    PermissionDeniedError,
    RequestTimeoutError,
)
from memstore.core.records import (
    ChangeEvent,
    ChangePage,
    EntityRecord,
    EntityVersion,
    EntityWrite,
    FeedbackRecord,
    MemorySummary,
    MessageRecord,
    MessagesWrite,
    Snapshot,
    SnapshotRevert,
    ToolUsageRecord,
)
from memstore.core.retention import RetentionPolicy
from memstore.core.search import SearchMode
from memstore.core.validation import (
    CURSOR_RE,
    ID_RE,
    MIN_VERSION_HEADER,
    NAME_RULES,
    NAMESPACE_RE,
    SNAPSHOT_RE,
    TOOL_RE,
    TYPE_RE,
    WEBHOOK_RE,
    check_limit,
    check_name,
    limit_error,
)
from memstore.memory.manager import DistributedMemoryManager
from memstore.server import schemas
from memstore.server.feed import EVENT_STREAM, get_changes
from memstore.server.routing import (
    CREATED_ENTITIES,
    Param,
    Route,
    TableRoute,
    View,
    check_content_coding,
    read_raw_body,
)
from memstore.server.security import principal_of
from memstore.server.state import MANAGER, METRICS, OPENAPI, WEBHOOKS, WORKER

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"
_KIND = "(" + "|".join(re.escape(k) for k in CHANGE_KINDS) + ")"
KINDS_PATTERN = f"^{_KIND}(,{_KIND})*$"
NDJSON = "application/x-ndjson"


def _pattern(rx: re.Pattern[str]) -> dict[str, Any]:
    return {"type": "string", "pattern": rx.pattern}


NS = Param("namespace", "path", _pattern(NAMESPACE_RE), "Memory namespace (tenant).", True)
ETYPE = Param("entity_type", "path", _pattern(TYPE_RE), "Entity type.", True)
EID = Param("entity_id", "path", _pattern(ID_RE), "Entity id.", True)
CID = Param("conversation_id", "path", _pattern(ID_RE), "Conversation id.", True)
WEBHOOK = Param("webhook_name", "path", _pattern(WEBHOOK_RE), "Webhook name (per namespace).", True)
SNAPSHOT = Param("snapshot", "path", _pattern(SNAPSHOT_RE), "Snapshot name (per namespace).", True)
#: Path segments that are numbers (an entity's version, a conversation's revision), each
#: an integer >= 1 of at most ``INTEGER_DIGITS`` digits; checked before the view runs.
NUMBER_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10**INTEGER_DIGITS - 1}
VERSION = Param("version", "path", NUMBER_SCHEMA, "A version of the entity.", True)
REVISION = Param("revision", "path", NUMBER_SCHEMA, "A revision of the conversation.", True)
# What query_int parses (INTEGER_DIGITS digits); the document says so, so clients and
# fuzzers agree.
BEFORE_SCHEMA = {"type": "integer", **json_schema(SEQUENCE)}
TIME_SCHEMA = {"type": "number", **json_schema(TIMESTAMP_SECONDS)}
LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1}, "Page size (capped).")
# Cursors are opaque (base64url of the last key seen, validation.encode_cursor): only one
# the server issued for the same listing is accepted. The pattern says what one looks
# like; it cannot say which the server issued, so any other string is a 400.
CURSOR = Param(
    "cursor",
    "query",
    {"type": "string", "pattern": f"^({CURSOR_RE.pattern})?$"},
    "Opaque: pass back a `next_cursor` this server returned for the same listing (empty or "
    "absent: the first page). Any other value, even one matching this pattern, is a 400 "
    "`invalid_input` naming `cursor`.",
)
_ETAG = rf'(W/)?"?[1-9][0-9]{{0,{INTEGER_DIGITS - 1}}}"?'
ETAG_PATTERN = rf"^{_ETAG}$"
# RFC 9110: If-None-Match is "*" or a list of entity tags.
ETAG_LIST_PATTERN = rf"^(\*|{_ETAG}( *, *{_ETAG})*)$"
IF_MATCH = Param(
    "If-Match",
    "header",
    {"type": "string", "pattern": ETAG_PATTERN},
    'Expected version as an ETag: "3". A mismatch answers 412.',
)
IF_NONE_MATCH_GET = Param(
    "If-None-Match",
    "header",
    {"type": "string", "pattern": ETAG_LIST_PATTERN},
    'The ETags you hold (`"3"`, or a list `"3", "4"`), or `*`: 304 when the entity '
    "exists with one of them (any version for `*`).",
)
MIN_VERSION = Param(
    MIN_VERSION_HEADER,
    "header",
    {"type": "string", "pattern": rf"^[1-9][0-9]{{0,{INTEGER_DIGITS - 1}}}$"},
    "Read-your-writes: a version of this entity you wrote or read (its ETag's number), "
    "through any replica. This replica does not answer from its local cache with an "
    "older copy; it reads the backend instead. Not a precondition (never 412): the answer "
    "is the stored state, which after a delete may be 404 (a re-create goes on from the "
    "deleted version's number). A value that is not a positive integer of at most "
    f"{INTEGER_DIGITS} digits is a 400 naming the header.",
)
CACHE_CONTROL = Param(
    "Cache-Control",
    "header",
    {"type": "string"},
    "`no-cache` (RFC 9111): read the backend, not this replica's local cache. Other "
    "directives are ignored.",
)
IF_NONE_MATCH_PUT = Param(
    "If-None-Match",
    "header",
    {"type": "string", "enum": ["*"]},
    "`*`: create only (412 when the entity exists).",
)

E400 = ("Invalid input.", schemas.ErrorOut)
E400_PAGE = ("Invalid input, or a cursor the server did not issue.", schemas.ErrorOut)
E400_SEARCH = (
    "Invalid search: `details.field` names the problem (e.g. `filter.stars.$foo` for an "
    "unknown operator, `limit` out of range, `query` empty or missing where the mode "
    "needs one, `mode` unknown or semantic without an embedder, `cursor` not issued by "
    "the server for this search).",
    schemas.ErrorOut,
)
E404 = ("Not found.", schemas.ErrorOut)
E403_QUOTA = (
    "Forbidden, or the namespace would pass a quota (`quota_exceeded`, checked for the "
    "whole batch: nothing written).",
    schemas.ErrorOut,
)
E412 = ("Version precondition failed.", schemas.ErrorOut)
E413 = ("Body too large.", schemas.ErrorOut)
E503 = ("Backend unavailable; retry later.", schemas.ErrorOut)
E409_IMPORTING = (
    "An import into the namespace is running (`namespace_importing`): retry when it is done.",
    schemas.ErrorOut,
)
E410 = (
    "The resume point is older than the retained log: changes after it were removed by "
    "retention (`details.first_position`: the oldest retained). Start again from a fresh "
    "state.",
    schemas.ErrorOut,
)
CHANGES_DESCRIPTION = (
    "The namespace's changes, oldest first, in the same order on every replica. With "
    "`Accept: text/event-stream`: Server-Sent Events, one per change (`id:` its position, "
    "`event:` its kind, `data:` the change as JSON), keep-alive comments on a quiet "
    "stream; resume with `Last-Event-ID` (or `after`); a stream that falls behind "
    "retention ends with an event `pruned`, one stopped by an error with an event "
    "`error` (data: the JSON error body). Otherwise one JSON page; `wait` makes it a "
    "long-poll."
)

# -- helpers ----------------------------------------------------------------------------


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON, headers=headers)


def manager_for(request: web.Request) -> DistributedMemoryManager:
    # The namespace was checked by ``_checking_path`` before the view ran.
    return request.app[MANAGER].for_checked_namespace(request.match_info["namespace"])


def _problem(err: ErrorDetails) -> str:
    """pydantic's message, except for a name: its rule in words instead of a regex."""
    field = err["loc"][-1] if err["loc"] else None
    kind = "entity_id" if field == "id" else field  # a tool use's id follows the id rule
    if err["type"] == "string_pattern_mismatch" and isinstance(kind, str):
        rule = NAME_RULES.get(kind)
        if rule is not None:
            return f"not valid: {rule.describe()}"
    return err["msg"]


# A 64-bit integer has at most 20 digits; any run of 19 could be outside JSON_INTEGER.
# Found by mapping every digit to "0" and every other byte to " ", then looking for 19
# zeros: ~0.9 µs for a 1 KB body, where the regular expression [0-9]{19} took ~8.5 µs.
_DIGIT_OR_NOT = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


def _too_wide_integer(raw: bytes) -> str | None:
    """The path of an integer in ``raw`` outside ``JSON_INTEGER`` (orjson reads those
    as floats, silently rounding), or ``None``. The standard library parser keeps
    integers exact; it runs only when a long run of digits makes it necessary."""
    if _LONG_DIGITS not in raw.translate(_DIGIT_OR_NOT):
        return None
    try:
        value = json.loads(raw)
    except RecursionError:  # nested deeper than the stdlib parser goes: no path to give
        return "body"
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool):
            if not contains(JSON_INTEGER, item):
                return path or "body"
        elif isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(item))
    return None


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse the body as JSON (whatever the Content-Type, so plain curl works) into
    ``model``; every problem is an ``InvalidInputError`` naming the field."""
    raw = await read_raw_body(request)
    if not raw:
        raise InvalidInputError("request body must be a JSON object", field="body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"request body is not valid JSON: {exc}", field="body") from exc
    if (wide := _too_wide_integer(raw)) is not None:
        raise InvalidInputError(
            f"{wide}: integers must fit in 64 bits, [-2^63, 2^64 - 1]; send wider ones as strings",
            field=wide,
        )
    if not isinstance(value, dict):
        raise InvalidInputError("request body must be a JSON object", field="body")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        # Locations and messages only: inputs may be payloads and must not be echoed.
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": _problem(err)}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise InvalidInputError(
            f"{first['field']}: {first['problem']}", field=first["field"], problems=problems
        ) from None


_INTEGER_RE = re.compile(rf"-?[0-9]{{1,{INTEGER_DIGITS}}}")


def query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if not _INTEGER_RE.fullmatch(raw):
        raise InvalidInputError(f"{name} must be an integer", field=name)
    return int(raw)


def query_limit(request: web.Request) -> int | None:
    """``limit``; one that is not an integer gets the manager's message for it (what an
    in-process caller passing it would get)."""
    raw = request.query.get("limit")
    if raw is None:
        return None
    if not _INTEGER_RE.fullmatch(raw):
        raise limit_error(request.app[MANAGER].settings.max_page_size)
    return int(raw)


def query_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number", field=name) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInputError(f"{name} must be a finite number", field=name)
    return value


def query_time(request: web.Request, name: str) -> float | None:
    value = query_float(request, name)
    return None if value is None else check_in(name, value, TIMESTAMP_SECONDS)


def query_str(request: web.Request, name: str) -> str | None:
    return request.query.get(name)


def etag(version: int) -> str:
    return f'"{version}"'


# The documented pattern (ETAG_PATTERN) with the version captured: versions start at 1.
_ETAG_RE = re.compile(rf'(?:W/)?"?([1-9][0-9]{{0,{INTEGER_DIGITS - 1}}})"?')


def parse_etag(value: str, header: str) -> int:
    match = _ETAG_RE.fullmatch(value.strip())
    if match is None:
        raise InvalidInputError(f'{header} must be an ETag such as "3"', field=header)
    return int(match.group(1))


def parse_etag_list(value: str, header: str) -> set[int] | None:
    """The versions of an ``If-None-Match`` list; ``None`` for ``*`` (any version)."""
    if value.strip() == "*":
        return None
    try:
        return {parse_etag(part, header) for part in value.split(",")}
    except InvalidInputError:
        raise InvalidInputError(
            f'{header} must be * or ETags such as "3" or "3", "4"', field=header
        ) from None


#: Read-your-writes on entity GETs: the lowest version the answer may have.
_MIN_VERSION_RE = re.compile(rf"[1-9][0-9]{{0,{INTEGER_DIGITS - 1}}}")


def parse_min_version(value: str) -> int:
    if _MIN_VERSION_RE.fullmatch(value.strip()) is None:
        raise InvalidInputError(
            f"{MIN_VERSION_HEADER} must be a version: an integer from 1 to {INTEGER_DIGITS} digits",
            field=MIN_VERSION_HEADER,
        )
    return int(value)


def asks_no_cache(request: web.Request) -> bool:
    """Whether the request's ``Cache-Control`` holds the ``no-cache`` directive (RFC 9111:
    comma-separated, case-insensitive; other directives are ignored)."""
    return any(
        directive.split("=", 1)[0].strip().lower() == "no-cache"
        for value in request.headers.getall("Cache-Control", ())
        for directive in value.split(",")
    )


def entity_body(record: EntityRecord) -> dict[str, Any]:
    return record.to_dict()


# -- health, metrics, admin -------------------------------------------------------------


async def livez(request: web.Request) -> web.Response:
    return json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    manager = request.app[MANAGER]
    ready = await manager.ping()
    body: dict[str, Any] = {
        "status": "ready" if ready else "unready",
        "backend": manager.memory_type,
    }
    # With a secondary backend: which one serves, the lag, why the store is degraded.
    replication = manager.replication_status()
    if replication is not None:
        # An open route: totals only, no namespace names (those are in /v1/metrics).
        body["replication"] = {k: v for k, v in replication.items() if k != "namespaces"}
    if ready:
        return json_response(body)
    return json_response(body, status=503, headers={"Retry-After": "1"})


async def prometheus_metrics(request: web.Request) -> web.Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    metrics = request.app[METRICS]
    metrics.publish()  # multiprocess mode: this worker's own figures, current
    body = generate_latest(metrics.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def metrics_json(request: web.Request) -> web.Response:
    figures = request.app[MANAGER].get_metrics()
    worker = request.app.get(WORKER)
    if worker is not None:
        # Under --workers: the answering worker's own figures (GET /metrics aggregates).
        figures["worker"] = worker
    return json_response(figures)


async def clear_cache(request: web.Request) -> web.Response:
    return json_response({"cleared": request.app[MANAGER].clear_cache()})


# -- encryption at rest: data keys ------------------------------------------------------


async def list_data_keys(request: web.Request) -> web.Response:
    keys = await request.app[MANAGER].list_data_keys()
    scope = principal_of(request).namespaces
    if scope is not None:
        # An admin of some namespaces sees their keys only (as /v1/summary).
        keys = [k for k in keys if k["namespace"] in scope]
    return json_response({"items": keys})


async def rotate_data_keys(request: web.Request) -> web.Response:
    if principal_of(request).namespaces is not None:
        # It re-wraps every namespace's key: not for an admin of some namespaces.
        raise PermissionDeniedError(
            "rotating the data keys re-wraps every namespace's key: it needs an admin token"
            " for all namespaces"
        )
    return json_response(await request.app[MANAGER].rotate_data_keys())


async def shred_data_key(request: web.Request) -> web.Response:
    return json_response(await manager_for(request).shred_data_key())


# -- entities ---------------------------------------------------------------------------


async def get_entity_types(request: web.Request) -> web.Response:
    return json_response({"types": await manager_for(request).get_entity_types()})


async def list_entities(request: web.Request) -> web.Response:
    page = await manager_for(request).list_entity_rows(
        request.match_info["entity_type"],
        limit=query_limit(request),
        cursor=query_str(request, "cursor"),
    )
    return json_response(
        {"items": [row.to_dict() for row in page.items], "next_cursor": page.next_cursor}
    )


def query_as_of(request: web.Request) -> float | None:
    """``as_of``: POSIX seconds, or an RFC 3339 date-time with its offset."""
    raw = request.query.get("as_of")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidInputError(
                "as_of must be POSIX seconds or an RFC 3339 date-time", field="as_of"
            ) from None
        if parsed.tzinfo is None:
            raise InvalidInputError(
                "as_of must give its UTC offset (e.g. 2026-12-05T18:00:00Z)", field="as_of"
            ) from None
        value = parsed.timestamp()
    return check_in("as_of", value, TIMESTAMP_SECONDS)


def path_number(name: str, value: str) -> int:
    """A version or revision in the path: an integer >= 1."""
    if _MIN_VERSION_RE.fullmatch(value) is None:
        raise InvalidInputError(f"{name} must be an integer >= 1", field=name)
    return int(value)


async def get_entity(request: web.Request) -> web.Response:
    mi = request.match_info
    as_of_version = query_int(request, "as_of_version")
    as_of = query_as_of(request)
    if as_of_version is not None or as_of is not None:
        return await _get_entity_as_of(request, as_of_version, as_of)
    # Read like If-Match: an ETag the server could have issued; an empty or malformed
    # value is a 400 (not silently "no condition"), whether the entity exists or not.
    held = request.headers.get("If-None-Match")
    held_versions = None if held is None else parse_etag_list(held, "If-None-Match")
    min_version = None
    if (floor := request.headers.get(MIN_VERSION_HEADER)) is not None:
        min_version = parse_min_version(floor)
    record = await manager_for(request).get_entity(
        mi["entity_type"],
        mi["entity_id"],
        min_version=min_version,
        use_cache=not asks_no_cache(request),
    )
    if record is None:
        raise NotFoundError(f"entity {mi['entity_type']}/{mi['entity_id']} does not exist")
    tag = etag(record.version)
    if held is not None and (held_versions is None or record.version in held_versions):
        return web.Response(status=304, headers={"ETag": tag})
    return json_response(entity_body(record), headers={"ETag": tag})


async def _get_entity_as_of(
    request: web.Request, version: int | None, at: float | None
) -> web.Response:
    mi = request.match_info
    then = await manager_for(request).get_entity_as_of(
        mi["entity_type"], mi["entity_id"], version=version, at=at
    )
    if then is None:
        what = f"version {version}" if version is not None else f"at {at}"
        raise NotFoundError(f"entity {mi['entity_type']}/{mi['entity_id']} has no {what}")
    return json_response(then.to_dict(), headers={"ETag": etag(then.version)})


def _write_precondition(request: web.Request) -> int | None:
    """The ``expected_version`` of a write: ``If-Match`` (at that version) or
    ``If-None-Match: *`` (must not exist)."""
    expected: int | None = None
    if (if_match := request.headers.get("If-Match")) is not None:
        expected = parse_etag(if_match, "If-Match")
    if (if_none := request.headers.get("If-None-Match")) is not None:
        if if_none.strip() != "*":
            raise InvalidInputError(
                f"If-None-Match on {request.method} must be *", field="If-None-Match"
            )
        if expected is not None:
            # RFC 9110: "must be at version n" and "must not exist" never hold together.
            raise ConflictError(
                "If-Match and If-None-Match: * cannot both hold",
                expected_version=expected,
                current_version=None,
            )
        expected = 0
    return expected


async def put_entity(request: web.Request) -> web.Response:
    mi = request.match_info
    # The body is checked before the preconditions: a malformed request is a 400 whatever
    # the stored version.
    body = await read_body(request, schemas.EntityPut)
    expected = _write_precondition(request)
    record = await manager_for(request).save_entity(
        mi["entity_type"],
        mi["entity_id"],
        body.data,
        ttl=body.ttl_seconds,
        expected_version=expected,
    )
    # a create (also a re-create after a delete, numbered on) sets both times at once
    created = record.created_at == record.updated_at
    headers = {"ETag": etag(record.version)}
    if created:
        headers["Location"] = request.rel_url.path
    return json_response(entity_body(record), status=201 if created else 200, headers=headers)


_ITEM_FIELD = re.compile(r"items\.([0-9]+)(?:\.|$)")


async def read_batch_body(request: web.Request, model: type[M]) -> M:
    """``read_body`` for a batch: a problem inside an item names its index (``item``)."""
    try:
        return await read_body(request, model)
    except InvalidInputError as exc:
        field = exc.details.get("field")
        found = _ITEM_FIELD.match(field) if isinstance(field, str) else None
        if found is not None:
            exc.details["item"] = int(found.group(1))
        raise


async def save_entities(request: web.Request) -> web.Response:
    body = await read_batch_body(request, schemas.EntityBatchIn)
    items = []
    for i, item in enumerate(body.items):
        if item.create_only and item.expected_version is not None:
            # the body form of If-Match with If-None-Match: *, which never hold together
            raise InvalidInputError(
                f"item {i}: expected_version and create_only cannot both hold",
                field=f"items.{i}.create_only",
                item=i,
            )
        expected = 0 if item.create_only else item.expected_version
        items.append(EntityWrite(item.type, item.id, item.data, expected, item.ttl_seconds))
    records = await manager_for(request).save_entities(items)
    # a create (also a re-create after a delete, numbered on) sets both times at once
    created = [i for i, r in enumerate(records) if r.created_at == r.updated_at]
    request[CREATED_ENTITIES] = len(created)
    return json_response({"items": [entity_body(r) for r in records], "created": created})


async def pin_entity(request: web.Request) -> web.Response:
    """PUT pins, DELETE unpins; the entity with its unchanged version."""
    mi = request.match_info
    record = await manager_for(request).pin_entity(
        mi["entity_type"], mi["entity_id"], pinned=request.method == "PUT"
    )
    if record is None:
        raise NotFoundError(f"entity {mi['entity_type']}/{mi['entity_id']} does not exist")
    return json_response(entity_body(record), headers={"ETag": etag(record.version)})


# -- version history ----------------------------------------------------------------------


async def list_entity_versions(request: web.Request) -> web.Response:
    mi = request.match_info
    page = await manager_for(request).list_entity_versions(
        mi["entity_type"],
        mi["entity_id"],
        limit=query_limit(request),
        cursor=query_str(request, "cursor"),
    )
    return json_response(
        {"items": [v.to_dict() for v in page.items], "next_cursor": page.next_cursor}
    )


async def get_entity_version(request: web.Request) -> web.Response:
    mi = request.match_info
    version = path_number("version", mi["version"])
    found = await manager_for(request).get_entity_version(
        mi["entity_type"], mi["entity_id"], version
    )
    if found is None:
        raise NotFoundError(
            f"entity {mi['entity_type']}/{mi['entity_id']} has no version {version}"
        )
    return json_response(found.to_dict(), headers={"ETag": etag(found.version)})


async def diff_entity_versions(request: web.Request) -> web.Response:
    mi = request.match_info
    numbers = {}
    for name in ("from", "to"):
        value = query_int(request, name)
        if value is None:
            raise InvalidInputError(f"{name} is required: a version of the entity", field=name)
        numbers[name] = value
    patch = await manager_for(request).diff_entity_versions(
        mi["entity_type"], mi["entity_id"], numbers["from"], numbers["to"]
    )
    return json_response(
        {
            "type": mi["entity_type"],
            "id": mi["entity_id"],
            "from_version": numbers["from"],
            "to_version": numbers["to"],
            "patch": patch,
        }
    )


async def revert_entity(request: web.Request) -> web.Response:
    mi = request.match_info
    body = await read_body(request, schemas.RevertIn)
    expected = _write_precondition(request)
    record = await manager_for(request).revert_entity(
        mi["entity_type"], mi["entity_id"], body.version, expected_version=expected
    )
    return json_response(entity_body(record), headers={"ETag": etag(record.version)})


async def list_conversation_revisions(request: web.Request) -> web.Response:
    page = await manager_for(request).list_conversation_revisions(
        request.match_info["conversation_id"],
        limit=query_limit(request),
        cursor=query_str(request, "cursor"),
    )
    return json_response(
        {"items": [r.to_dict() for r in page.items], "next_cursor": page.next_cursor}
    )


async def get_conversation_revision(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    revision = path_number("revision", request.match_info["revision"])
    found = await manager_for(request).get_conversation_revision(revision, cid)
    if found is None:
        raise NotFoundError(f"conversation {cid} has no revision {revision}")
    header, messages = found
    return json_response(
        {"revision": header.to_dict(), "messages": [m.to_dict() for m in messages]}
    )


async def restore_conversation_revision(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    revision = path_number("revision", request.match_info["revision"])
    records = await manager_for(request).restore_conversation_revision(revision, cid)
    return json_response({"items": [m.to_dict() for m in records], "next_before": None})


async def create_snapshot(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.SnapshotIn)
    snapshot = await manager_for(request).create_snapshot(body.name)
    return json_response(
        snapshot.to_dict(), status=201, headers={"Location": f"{request.rel_url.path}/{body.name}"}
    )


async def list_snapshots(request: web.Request) -> web.Response:
    snapshots = await manager_for(request).list_snapshots()
    return json_response({"items": [s.to_dict() for s in snapshots]})


async def get_snapshot(request: web.Request) -> web.Response:
    name = request.match_info["snapshot"]
    snapshot = await manager_for(request).get_snapshot(name)
    if snapshot is None:
        raise NotFoundError(f"snapshot {name} does not exist")
    return json_response(snapshot.to_dict())


async def delete_snapshot(request: web.Request) -> web.Response:
    name = request.match_info["snapshot"]
    if not await manager_for(request).delete_snapshot(name):
        raise NotFoundError(f"snapshot {name} does not exist")
    return web.Response(status=204)


async def revert_to_snapshot(request: web.Request) -> web.Response:
    result = await manager_for(request).revert_to_snapshot(request.match_info["snapshot"])
    return json_response(result.to_dict())


async def purge_history(request: web.Request) -> web.Response:
    manager = manager_for(request)
    removed = await manager.purge_history()
    # true: a replicated store's other backend was down; it is erased there once it is back
    return json_response(
        {"removed": removed, "erase_pending": await manager.history_erase_pending()}
    )


async def retention_policy(request: web.Request) -> web.Response:
    return json_response(manager_for(request).retention_policy().model_dump())


async def retention_dry_run(request: web.Request) -> web.Response:
    report = await manager_for(request).retention_dry_run(
        at=query_time(request, "at"), limit=query_limit(request)
    )
    return json_response(report.to_dict())


async def enforce_retention(request: web.Request) -> web.Response:
    report = await manager_for(request).enforce_retention(limit=query_limit(request))
    return json_response(report.to_dict())


async def delete_entity(request: web.Request) -> web.Response:
    mi = request.match_info
    expected = None
    if (if_match := request.headers.get("If-Match")) is not None:
        expected = parse_etag(if_match, "If-Match")
    deleted = await manager_for(request).delete_entity(
        mi["entity_type"], mi["entity_id"], expected_version=expected
    )
    if not deleted:
        raise NotFoundError(f"entity {mi['entity_type']}/{mi['entity_id']} does not exist")
    return web.Response(status=204)


# -- search (recall) --------------------------------------------------------------------
# POST with a JSON body (a filter is a nested object); a read all the same: role ``read``,
# nothing in the namespace changes (vectors are kept in the search's own namespace). The
# body's rules are the manager's search check, not repeated here.


async def search_entities(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.EntitySearch)
    page = await manager_for(request).search_entities(
        body.query,
        types=body.types,
        filter=body.filter,
        mode=cast(SearchMode, body.mode),  # checked by the manager
        limit=body.limit,
        cursor=body.cursor,
    )
    return json_response(page.to_dict())


async def search_messages(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.MessageSearch)
    page = await manager_for(request).search_messages(
        body.query,
        conversation_id=body.conversation_id,
        mode=cast(SearchMode, body.mode),
        limit=body.limit,
        cursor=body.cursor,
    )
    return json_response(page.to_dict())


async def search_tool_usage(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.ToolUsageSearch)
    page = await manager_for(request).search_tool_usage(
        body.query,
        tool_name=body.tool_name,
        mode=cast(SearchMode, body.mode),
        limit=body.limit,
        cursor=body.cursor,
    )
    return json_response(page.to_dict())


# -- conversations ----------------------------------------------------------------------


async def list_conversations(request: web.Request) -> web.Response:
    page = await manager_for(request).list_conversations(
        limit=query_limit(request), cursor=query_str(request, "cursor")
    )
    return json_response(
        {"items": [c.to_dict() for c in page.items], "next_cursor": page.next_cursor}
    )


async def get_messages(request: web.Request) -> web.Response:
    manager = manager_for(request)
    limit = query_limit(request)
    if limit is None:
        limit = manager.settings.default_page_size
    cid = request.match_info["conversation_id"]
    before = query_int(request, "before")
    rows = await manager.load_message_rows(cid, limit=limit, before_seq=before)
    if not rows and (before is None or not await manager.load_messages(cid, limit=1)):
        # A conversation is its messages: none means it was never written or was deleted,
        # and a deleted resource reads as 404 like an entity does, whatever page is asked
        # for (the client and the manager read it as an empty history). A page before the
        # first message of a conversation that has messages is 200 with no items.
        raise NotFoundError(f"conversation {cid} does not exist")
    # seq is contiguous from 1, so older messages exist exactly when the first seq > 1.
    next_before = rows[0].seq if rows and rows[0].seq > 1 else None
    return json_response({"items": [m.to_dict(cid) for m in rows], "next_before": next_before})


async def append_messages(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.MessagesIn)
    records = await manager_for(request).append_messages(
        body.messages, request.match_info["conversation_id"]
    )
    return json_response({"items": [m.to_dict() for m in records], "next_before": None}, status=201)


async def append_messages_batch(request: web.Request) -> web.Response:
    body = await read_batch_body(request, schemas.MessagesBatchIn)
    results = await manager_for(request).append_messages_batch(
        [MessagesWrite(item.conversation_id, item.messages) for item in body.items]
    )
    return json_response(
        {
            "items": [
                {"items": [m.to_dict() for m in records], "next_before": None}
                for records in results
            ]
        },
        status=201,
    )


async def replace_messages(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.MessagesReplace)
    records = await manager_for(request).save_conversation_history(
        body.messages, request.match_info["conversation_id"]
    )
    return json_response({"items": [m.to_dict() for m in records], "next_before": None})


async def pop_message(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    record = await manager_for(request).pop_message(cid)
    if record is None:
        # Nothing to pop reads like loading it: a conversation without messages is 404.
        raise NotFoundError(f"conversation {cid} does not exist")
    return json_response(record.to_dict())


async def delete_conversation(request: web.Request) -> web.Response:
    cid = request.match_info["conversation_id"]
    if not await manager_for(request).delete_conversation(cid):
        raise NotFoundError(f"conversation {cid} does not exist")
    return web.Response(status=204)


# -- tool usage and feedback ------------------------------------------------------------


async def record_tool_usage(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.ToolUsageIn)
    record = await manager_for(request).save_tool_usage(
        body.tool_name,
        body.input,
        body.output,
        duration_ms=body.duration_ms,
        success=body.success,
        conversation_id=body.conversation_id,
        timestamp=body.timestamp,
        usage_id=body.id,
    )
    return json_response(record.to_dict(), status=201)


async def query_tool_usage(request: web.Request) -> web.Response:
    page = await manager_for(request).query_tool_usage(
        query_str(request, "tool_name"),
        start=query_time(request, "start"),
        end=query_time(request, "end"),
        limit=query_limit(request),
        cursor=query_str(request, "cursor"),
    )
    return json_response(
        {"items": [r.to_dict() for r in page.items], "next_cursor": page.next_cursor}
    )


async def get_tool_names(request: web.Request) -> web.Response:
    return json_response({"tools": await manager_for(request).get_tool_names()})


async def save_feedback(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.FeedbackIn)
    record = await manager_for(request).save_learning_feedback(
        body.agent_name, body.feedback_type, body.data
    )
    return json_response(record.to_dict(), status=201)


async def query_feedback(request: web.Request) -> web.Response:
    page = await manager_for(request).query_learning_feedback(
        query_str(request, "agent_name"),
        query_str(request, "feedback_type"),
        limit=query_limit(request),
        cursor=query_str(request, "cursor"),
    )
    return json_response(
        {"items": [r.to_dict() for r in page.items], "next_cursor": page.next_cursor}
    )


async def summary(request: web.Request) -> web.Response:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "markdown"):
        raise InvalidInputError("format must be json or markdown", field="format")
    data = await manager_for(request).get_memory_summary_data()
    if fmt == "markdown":
        return web.Response(text=data.to_markdown(), content_type="text/markdown")
    return json_response(data.to_dict())


async def list_summaries(request: web.Request) -> web.Response:
    """Admin: summaries of the namespaces the token covers (every namespace for ``*``)."""
    manager = request.app[MANAGER]
    settings = manager.settings
    limit = check_limit(
        query_limit(request), settings.max_page_size, default=settings.default_page_size
    )
    after = query_str(request, "after")
    if after is not None:
        check_name("namespace", after)
    scope = principal_of(request).namespaces
    complete = True
    if scope is None:
        listed = await manager.list_namespaces()
        complete = listed is not None
        # Internal namespaces (e.g. the webhooks') are outside the namespace rule.
        names = [n for n in listed or [] if NAMESPACE_RE.fullmatch(n)]
    else:
        names = sorted(n for n in scope if NAMESPACE_RE.fullmatch(n))
    names = [n for n in names if after is None or n > after][: limit + 1]
    items: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for n in names[:limit]:
        try:
            items.append((await manager.for_namespace(n).get_memory_summary_data()).to_dict())
        except (NamespaceImportingError, DataShreddedError) as exc:
            # one namespace's state, not the store's: the others are listed all the same
            skipped.append({"namespace": n, "code": exc.code, "message": exc.message})
    next_after = names[limit - 1] if len(names) > limit else None
    return json_response(
        {"items": items, "skipped": skipped, "next_after": next_after, "complete": complete}
    )


# -- analytics ----------------------------------------------------------------------------


def _window_query(request: web.Request) -> dict[str, Any]:
    return {
        "bucket": request.query.get("bucket", "hour"),
        "since": query_time(request, "since"),
        "until": query_time(request, "until"),
    }


async def analytics_overview(request: web.Request) -> web.Response:
    return json_response((await manager_for(request).analytics_overview()).to_dict())


async def analytics_growth(request: web.Request) -> web.Response:
    kind = request.query.get("kind")
    if kind is None:
        raise InvalidInputError("kind is required", field="kind")
    series = await manager_for(request).analytics_growth(kind, **_window_query(request))
    return json_response(series.to_dict())


async def analytics_tools(request: web.Request) -> web.Response:
    answer = await manager_for(request).analytics_tools(
        **_window_query(request),
        tool_name=query_str(request, "tool_name"),
        limit=query_int(request, "limit"),
    )
    return json_response(answer.to_dict())


async def analytics_feedback(request: web.Request) -> web.Response:
    return json_response(
        (await manager_for(request).analytics_feedback(**_window_query(request))).to_dict()
    )


# -- webhooks ---------------------------------------------------------------------------


async def put_webhook(request: web.Request) -> web.Response:
    body = await read_body(request, schemas.WebhookPut)
    mi = request.match_info
    hook, created, generated = await request.app[WEBHOOKS].put(
        mi["namespace"],
        mi["webhook_name"],
        url=body.url,
        secret=body.secret,
        kinds=body.kinds,
        entity_types=body.entity_types,
    )
    answer = hook.public()
    if generated is not None:
        answer["secret"] = generated.get_secret_value()  # the one time it is shown
    return json_response(answer, status=201 if created else 200)


async def get_webhook(request: web.Request) -> web.Response:
    mi = request.match_info
    hook = await request.app[WEBHOOKS].get(mi["namespace"], mi["webhook_name"])
    if hook is None:
        raise NotFoundError(f"webhook {mi['webhook_name']} does not exist")
    return json_response(hook.public())


async def list_webhooks(request: web.Request) -> web.Response:
    hooks = await request.app[WEBHOOKS].list(request.match_info["namespace"])
    return json_response({"items": [h.public() for h in hooks]})


async def delete_webhook(request: web.Request) -> web.Response:
    mi = request.match_info
    if not await request.app[WEBHOOKS].delete(mi["namespace"], mi["webhook_name"]):
        raise NotFoundError(f"webhook {mi['webhook_name']} does not exist")
    return web.Response(status=204)


# -- audit ------------------------------------------------------------------------------


def _in_period(event: ChangeEvent, since: float | None, until: float | None) -> bool:
    return (since is None or event.timestamp >= since) and (
        until is None or event.timestamp < until
    )


async def export_audit(request: web.Request) -> web.StreamResponse:
    """The namespace's change log as JSON lines, oldest first: every retained event with a
    position after ``after`` and a time in ``[since, until)``. Without ``after``, from the
    oldest retained event; an ``after`` whose successors retention removed is a 410 (the
    caller would miss events). Ends at the newest event when the export started.

    The route is ``streaming`` (an export may outlast the request deadline): each read of
    the log has the deadline instead. An error once the answer has begun (retention
    removing what the export has not reached yet, a read out of time) ends it with one line
    ``{"error": <the error body>}``, never a silent gap."""
    manager = manager_for(request)
    after = query_int(request, "after")
    since = query_time(request, "since")
    until = query_time(request, "until")
    limit = manager.settings.max_page_size
    deadline = manager.settings.request_timeout_seconds or None

    async def read(position: int) -> ChangePage:
        try:
            async with asyncio.timeout(deadline):
                return await manager.read_changes(after=position, limit=limit)
        except TimeoutError:
            raise RequestTimeoutError("a read of the change log timed out") from None

    page = await read(after or 0)
    end = page.last_position
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    try:
        while True:
            events = [e for e in page.events if e.position <= end]
            lines = [orjson.dumps(e.to_dict()) for e in events if _in_period(e, since, until)]
            if lines:
                await response.write(b"\n".join(lines) + b"\n")
            if not events or events[-1].position >= end:
                break
            page = await read(events[-1].position)
    except MemoryStoreError as exc:
        log.warning("audit export ended early: %s", exc.code)
        await response.write(orjson.dumps({"error": exc.to_dict()}) + b"\n")
    await response.write_eof()
    return response


async def export_namespace(request: web.Request) -> web.StreamResponse:
    """The namespace's dump (``memstore.core.dump``), streamed as it is read. An error
    before the first line is an ordinary JSON error; one after it (the backend failing
    mid-way) ends the stream with a line ``{"error": <the error body>}`` and no trailer,
    so an import refuses the dump as truncated."""
    with_key = query_str(request, "with_key")
    if with_key not in (None, "true", "false"):
        raise InvalidInputError("with_key must be true or false", field="with_key")
    manager = manager_for(request)
    lines = manager.export_namespace(with_key=with_key == "true")
    first = await anext(lines)
    response = web.StreamResponse(
        headers={
            "Content-Type": NDJSON,
            "Content-Disposition": f'attachment; filename="{manager.namespace}.jsonl"',
        }
    )
    await response.prepare(request)
    buffer = [first]
    size = len(first)
    try:
        async for line in lines:
            buffer.append(line)
            size += len(line)
            if size >= _EXPORT_CHUNK:
                await response.write(b"".join(buffer))
                buffer, size = [], 0
    except MemoryStoreError as exc:
        log.warning("namespace export ended early: %s", exc.code)
        buffer.append(orjson.dumps({"error": exc.to_dict()}) + b"\n")
    await response.write(b"".join(buffer))
    await response.write_eof()
    return response


#: Bytes of dump lines gathered per write of an export.
_EXPORT_CHUNK = 64 * 1024


async def import_namespace(request: web.Request) -> web.Response:
    """Import a dump (the request body, streamed: never read whole) into the URL's
    namespace, whatever namespace the dump's manifest names."""
    check_content_coding(request)
    replace = query_str(request, "replace")
    if replace not in (None, "true", "false"):
        raise InvalidInputError("replace must be true or false", field="replace")
    manager = manager_for(request)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in request.content.iter_chunked(_EXPORT_CHUNK):
                yield chunk
        except web.RequestPayloadError as exc:
            raise InvalidInputError(
                "request body could not be read: it does not decode under its"
                " Content-Encoding or was cut short",
                field="body",
            ) from exc

    principal = principal_of(request)
    result = await manager.import_namespace(
        chunks(), replace=replace == "true", allows_source=principal.allows_namespace
    )
    return json_response(result.to_dict())


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


# -- the table --------------------------------------------------------------------------

P = "/v1/namespaces/{namespace}"
PAGE = (LIMIT, CURSOR)

#: The time window of the analytics routes.
WINDOW = (
    Param("bucket", "query", {"type": "string", "enum": list(BUCKET_HOURS)},
          "Bucket width: hour (default) or day (UTC)."),
    Param("since", "query", TIME_SCHEMA,
          "Window start, POSIX seconds, widened to its bucket's start (default: 48 hours "
          f"or 30 days before `until`). A `since` after `until`, or a window of more than "
          f"{MAX_BUCKETS} buckets, is a 400 naming `since`."),
    Param("until", "query", TIME_SCHEMA,
          "Window end, POSIX seconds, widened to its bucket's end (default: now)."),
)  # fmt: skip

# Open routes (role=None) are unauthenticated on purpose: probes (kubelet has no token),
# Prometheus scraping (counts and latencies only, no tenant data; restrict it with the
# NetworkPolicy), and the API description (public anyway).
ROUTES: tuple[Route, ...] = (
    Route("GET", "/livez", livez, "livez", "Liveness: the process is up.", "health",
          role=None, traced=False,
          responses={200: ("Alive.", schemas.HealthOut)}),
    Route("GET", "/readyz", readyz, "readyz", "Readiness: the backend answers.", "health",
          role=None, traced=False,
          responses={200: ("Ready.", schemas.HealthOut), 503: ("Not ready.", schemas.HealthOut)}),
    Route("GET", "/metrics", prometheus_metrics, "prometheusMetrics",
          "Prometheus metrics (text exposition format).", "metrics",
          role=None, traced=False,
          responses={200: ("Metrics.", "text/plain")}),
    Route("GET", "/openapi.json", openapi_json, "openapi", "This document.", "meta",
          role=None,
          responses={200: ("OpenAPI 3.1 document.", JSON)}),
    Route("GET", "/v1/metrics", metrics_json, "getMetrics",
          "Operation, error, latency and cache figures (the manager's get_metrics).", "admin",
          role="admin",
          responses={200: ("Metrics.", schemas.MetricsOut)}),
    Route("POST", "/v1/cache/clear", clear_cache, "clearCache",
          "Clear this replica's local cache.", "admin",
          role="admin",
          responses={200: ("Cleared.", schemas.CacheClearedOut)}),
    Route("GET", "/v1/keys", list_data_keys, "listDataKeys",
          "Encryption at rest: every namespace's data key (key id, the id of the"
          " key-encryption key wrapping it; never a secret); a token for some namespaces"
          " sees theirs.", "keys",
          role="admin",
          responses={200: ("Data keys.", schemas.DataKeyList), 503: E503}),
    Route("POST", "/v1/keys/rotate", rotate_data_keys, "rotateDataKeys",
          "Re-wrap every namespace's data key with the primary key-encryption key of"
          " MEMSTORE_ENCRYPTION_KEY_FILE (old data stays readable). Needs an admin token"
          " for every namespace.", "keys",
          role="admin",
          responses={200: ("Rotated.", schemas.DataKeysRotatedOut), 503: E503}),
    Route("GET", "/v1/summary", list_summaries, "listMemorySummaries",
          "Summaries of every namespace the token covers, by name, one page.", "admin",
          params=(LIMIT, Param("after", "query", _pattern(NAMESPACE_RE),
                               "Only namespaces after this one (from `next_after`).")),
          role="admin",
          responses={200: ("A page.", schemas.SummaryPageOut), 400: E400, 503: E503}),
    Route("GET", f"{P}/summary", summary, "getMemorySummary",
          "Counts of everything in the namespace.", "summary",
          params=(NS, Param("format", "query", {"type": "string", "enum": ["json", "markdown"]},
                            "json (default) or markdown.")),
          role="read",
          responses={200: ("Summary.", MemorySummary), 400: E400, 503: E503},
          text_alternatives={200: ("text/markdown",)}),
    Route("GET", f"{P}/entities", get_entity_types, "getEntityTypes",
          "Entity types with at least one entity.", "entities",
          params=(NS,), role="read",
          responses={200: ("Types.", schemas.EntityTypesOut), 400: E400, 503: E503}),
    Route("GET", f"{P}/entities/{{entity_type}}", list_entities, "listEntities",
          "Entities of one type, ordered by id, one page.", "entities",
          params=(NS, ETYPE, *PAGE),
          role="read",
          responses={200: ("A page.", schemas.EntityPage), 400: E400_PAGE, 503: E503}),
    Route("GET", f"{P}/entities/{{entity_type}}/{{entity_id}}", get_entity, "getEntity",
          "Load an entity; its version is the ETag. With `as_of_version` or `as_of`: the "
          "version it had then (an EntityVersion; 404 when it did not exist then).",
          "entities",
          params=(NS, ETYPE, EID, IF_NONE_MATCH_GET, MIN_VERSION, CACHE_CONTROL,
                  Param("as_of_version", "query", NUMBER_SCHEMA,
                        "Version history: this version of the entity (not with `as_of`)."),
                  Param("as_of", "query", TIME_SCHEMA,
                        "Version history: the entity as it was at this instant, POSIX "
                        "seconds (an RFC 3339 date-time with its UTC offset is read too). "
                        "Not with `as_of_version`: both is a 400 naming `as_of`.")),
          role="read", hot=True,
          responses={200: ("The entity (or its version then).", schemas.EntityAsOf),
                     304: ("Not modified.", None), 400: E400, 404: E404, 503: E503},
          response_headers={200: {"ETag": "The entity's version."}}),
    Route("GET", f"{P}/entities/{{entity_type}}/{{entity_id}}/versions", list_entity_versions,
          "listEntityVersions",
          "Every version of the entity, newest first: the current one, then older ones "
          "and the tombstones deletes left (`deleted`: true, no data), one page. A version "
          "sealed with a crypto-shredded data key is listed without its data (`shredded`: "
          "true); reading it answers 410 `data_shredded`.",
          "history",
          params=(NS, ETYPE, EID, *PAGE), role="read",
          responses={200: ("A page.", schemas.EntityVersionPage), 400: E400_PAGE,
                     503: E503}),
    Route("GET", f"{P}/entities/{{entity_type}}/{{entity_id}}/versions/{{version}}",
          get_entity_version, "getEntityVersion",
          "One version of the entity (current or older; never a tombstone).", "history",
          params=(NS, ETYPE, EID, VERSION), role="read",
          responses={200: ("The version.", EntityVersion), 400: E400, 404: E404, 503: E503},
          response_headers={200: {"ETag": "The version."}}),
    Route("GET", f"{P}/entities/{{entity_type}}/{{entity_id}}/diff", diff_entity_versions,
          "diffEntityVersions",
          "The RFC 6902 JSON Patch that turns version `from` of the entity into version "
          "`to`.", "history",
          params=(NS, ETYPE, EID,
                  Param("from", "query", NUMBER_SCHEMA, "The version to start from.", True),
                  Param("to", "query", NUMBER_SCHEMA, "The version to arrive at.", True)),
          role="read",
          responses={200: ("The patch.", schemas.EntityDiffOut), 400: E400, 404: E404,
                     503: E503}),
    Route("POST", f"{P}/entities/{{entity_type}}/{{entity_id}}/revert", revert_entity,
          "revertEntity",
          "Save an older version's data as a new version (history is never rewritten; "
          "after a delete it re-creates the entity, without a TTL). If-Match makes it "
          "conditional.", "history",
          params=(NS, ETYPE, EID, IF_MATCH, IF_NONE_MATCH_PUT), body=schemas.RevertIn,
          role="write", grows_storage=True, adds_entity=True,
          responses={200: ("The new version.", EntityRecord), 400: E400, 404: E404,
                     412: E412, 503: E503},
          response_headers={200: {"ETag": "New version."}}),
    Route("POST", f"{P}/entities:batch", save_entities, "saveEntities",
          "Create or replace several entities of the namespace in one request, each key "
          "once; at most one of `expected_version` and `create_only` per item. Every item "
          "is checked before any is written (a bad one is a 400 naming it, `item`). On the "
          "embedded backend the batch is all or nothing: an item in conflict (412, naming "
          "it) writes nothing; on Redis and MongoDB each item is atomic by itself, in item "
          "order, and a 412 lists the items written anyway (`written`) with their "
          "`versions`; a 503 that names an `item` (Redis refused its script, e.g. out of "
          "memory) lists them too (`written`). docs/architecture.md, \"Batch writes\".",
          "entities",
          params=(NS,), body=schemas.EntityBatchIn,
          role="write", grows_storage=True, adds_entity=True,
          responses={200: ("Saved, one record per item.", schemas.EntityBatchOut),
                     400: E400, 403: E403_QUOTA, 412: E412, 413: E413, 503: E503}),
    Route("PUT", f"{P}/entities/{{entity_type}}/{{entity_id}}", put_entity, "saveEntity",
          "Create or replace an entity; If-Match makes it conditional.", "entities",
          params=(NS, ETYPE, EID, IF_MATCH, IF_NONE_MATCH_PUT), body=schemas.EntityPut,
          role="write", grows_storage=True, adds_entity=True, hot=True,
          responses={200: ("Replaced.", EntityRecord), 201: ("Created.", EntityRecord),
                     400: E400, 412: E412, 413: E413, 503: E503},
          response_headers={200: {"ETag": "New version."}, 201: {"ETag": "New version."}}),
    Route("DELETE", f"{P}/entities/{{entity_type}}/{{entity_id}}", delete_entity,
          "deleteEntity", "Delete an entity; If-Match makes it conditional.", "entities",
          params=(NS, ETYPE, EID, IF_MATCH),
          role="write", shrinks_storage=True,
          responses={204: ("Deleted.", None), 400: E400, 404: E404, 412: E412, 503: E503}),
    Route("PUT", f"{P}/entities/{{entity_type}}/{{entity_id}}/pin", pin_entity, "pinEntity",
          "Pin an entity: retention never removes it (a TTL still expires it). Kept across "
          "saves; the version does not change.", "retention",
          params=(NS, ETYPE, EID), role="write",
          responses={200: ("The pinned entity.", EntityRecord), 400: E400, 404: E404,
                     503: E503}),
    Route("DELETE", f"{P}/entities/{{entity_type}}/{{entity_id}}/pin", pin_entity,
          "unpinEntity", "Unpin an entity: retention's rules apply to it again.", "retention",
          params=(NS, ETYPE, EID), role="write",
          responses={200: ("The unpinned entity.", EntityRecord), 400: E400, 404: E404,
                     503: E503}),
    Route("GET", f"{P}/retention/policy", retention_policy, "getRetentionPolicy",
          "The namespace's retention policy: the default with the namespace's override "
          "(null: kept forever).", "retention",
          params=(NS,), role="read",
          responses={200: ("The policy.", RetentionPolicy), 400: E400}),
    Route("GET", f"{P}/retention/dry-run", retention_dry_run, "retentionDryRun",
          "What the policy would remove at `at` (default: now): per kind the first `limit` "
          "items in their order (entities by type and id, conversations by id, tool uses "
          "and feedback by time and id), with counts and whether more are due. Removes "
          "nothing; an enforcement at the same instant removes exactly these.", "retention",
          params=(NS, Param("at", "query", TIME_SCHEMA,
                            "The instant to judge at (POSIX seconds; later ages the data)."),
                  LIMIT),
          role="read",
          responses={200: ("What would go.", schemas.RetentionReportOut), 400: E400,
                     503: E503}),
    Route("POST", f"{P}/retention:enforce", enforce_retention, "enforceRetention",
          "Remove now what the policy selects (one batch: the first `limit` of each kind; "
          "`complete` false when more are due). The background pruning does the same on "
          "its own.", "retention",
          params=(NS, LIMIT), role="admin", shrinks_storage=True,
          responses={200: ("What was removed.", schemas.RetentionReportOut), 400: E400,
                     503: E503}),
    Route("POST", f"{P}/search", search_entities, "searchEntities",
          "Search the namespace's entities: filter on fields, rank by words (BM25), by "
          "meaning (embeddings) or both; one page of hits, best first. A read: changes "
          "nothing in the namespace, and sees every write acknowledged before it started.",
          "search",
          params=(NS,), body=schemas.EntitySearch,
          role="read",
          responses={200: ("A page of hits.", schemas.EntitySearchPage),
                     400: E400_SEARCH, 413: E413, 503: E503}),
    Route("GET", f"{P}/conversations", list_conversations, "listConversations",
          "Conversations ordered by id, one page.", "conversations",
          params=(NS, *PAGE),
          role="read",
          responses={200: ("A page.", schemas.ConversationPage), 400: E400_PAGE, 503: E503}),
    Route("GET", f"{P}/conversations/{{conversation_id}}/messages", get_messages,
          "loadMessages", "The last `limit` messages before `before`, in order.",
          "conversations",
          params=(NS, CID, LIMIT,
                  Param("before", "query", BEFORE_SCHEMA,
                        "Only messages with seq below this (from `next_before`).")),
          role="read", hot=True,
          responses={200: ("Messages.", schemas.MessagesOut), 400: E400,
                     404: ("No such conversation (no messages), whatever `before` is.",
                           schemas.ErrorOut),
                     503: E503}),
    Route("POST", f"{P}/conversations/{{conversation_id}}/messages", append_messages,
          "appendMessages", "Append messages atomically.", "conversations",
          params=(NS, CID), body=schemas.MessagesIn,
          role="write", grows_storage=True, hot=True,
          responses={201: ("Appended.", schemas.MessagesOut), 400: E400, 413: E413, 503: E503}),
    Route("POST", f"{P}/conversations:batch", append_messages_batch, "appendMessagesBatch",
          "Append messages to several conversations of the namespace in one request, each "
          "conversation once. Every item is checked before any is written (a bad one is a "
          "400 naming it, `item`); all or nothing on the embedded backend, each "
          "conversation atomic by itself elsewhere (a 503 that names an `item` lists the "
          "items appended anyway, `written`).", "conversations",
          params=(NS,), body=schemas.MessagesBatchIn,
          role="write", grows_storage=True,
          responses={201: ("Appended, one result per item.", schemas.MessagesBatchOut),
                     400: E400, 403: E403_QUOTA, 413: E413, 503: E503}),
    Route("PUT", f"{P}/conversations/{{conversation_id}}/messages", replace_messages,
          "saveConversationHistory",
          "Replace the whole history. What it replaces is kept as a revision, also when "
          "replaced by no messages (the conversation then stays, with none).",
          "conversations",
          params=(NS, CID), body=schemas.MessagesReplace,
          role="write", grows_storage=True, shrinks_storage=True,
          responses={200: ("Replaced.", schemas.MessagesOut), 400: E400, 413: E413, 503: E503}),
    Route("POST", f"{P}/conversations/{{conversation_id}}/messages:pop", pop_message,
          "popMessage",
          "Remove and return the last message, atomically (concurrent pops each get a "
          "different one). The next append reuses its `seq`; popping the only message "
          "deletes the conversation. Not idempotent: a retry pops another message.",
          "conversations",
          params=(NS, CID), role="write", shrinks_storage=True,
          responses={200: ("The popped message.", MessageRecord), 400: E400,
                     404: ("No such conversation (no messages): nothing popped.",
                           schemas.ErrorOut),
                     503: E503}),
    Route("DELETE", f"{P}/conversations/{{conversation_id}}", delete_conversation,
          "deleteConversation", "Delete a conversation and its messages.", "conversations",
          params=(NS, CID), role="write", shrinks_storage=True,
          responses={204: ("Deleted.", None), 400: E400, 404: E404, 503: E503}),
    Route("GET", f"{P}/conversations/{{conversation_id}}/revisions",
          list_conversation_revisions, "listConversationRevisions",
          "What replacing the conversation's history replaced, newest first, one page.",
          "history",
          params=(NS, CID, *PAGE), role="read",
          responses={200: ("A page.", schemas.ConversationRevisionPage), 400: E400_PAGE,
                     503: E503}),
    Route("GET", f"{P}/conversations/{{conversation_id}}/revisions/{{revision}}",
          get_conversation_revision, "getConversationRevision",
          "One revision with its messages, as they were.", "history",
          params=(NS, CID, REVISION), role="read",
          responses={200: ("The revision.", schemas.ConversationRevisionOut), 400: E400,
                     404: E404, 503: E503}),
    Route("POST", f"{P}/conversations/{{conversation_id}}/revisions/{{revision}}/restore",
          restore_conversation_revision, "restoreConversationRevision",
          "Replace the conversation's history with the revision's messages; the history "
          "replaced now is kept as a new revision.", "history",
          params=(NS, CID, REVISION), role="write", grows_storage=True,
          responses={200: ("The history now.", schemas.MessagesOut), 400: E400, 404: E404,
                     503: E503}),
    Route("POST", f"{P}/snapshots", create_snapshot, "createSnapshot",
          "Mark this instant of the namespace under a new name (a marker: the version "
          "history holds the states).", "history",
          params=(NS,), body=schemas.SnapshotIn, role="write",
          responses={201: ("Created.", Snapshot), 400: E400,
                     409: ("The name is taken (`already_exists`).", schemas.ErrorOut),
                     503: E503}),
    Route("GET", f"{P}/snapshots", list_snapshots, "listSnapshots",
          "The namespace's snapshots by name.", "history",
          params=(NS,), role="read",
          responses={200: ("Snapshots.", schemas.SnapshotList), 400: E400, 503: E503}),
    Route("GET", f"{P}/snapshots/{{snapshot}}", get_snapshot, "getSnapshot",
          "One snapshot.", "history",
          params=(NS, SNAPSHOT), role="read",
          responses={200: ("The snapshot.", Snapshot), 400: E400, 404: E404, 503: E503}),
    Route("DELETE", f"{P}/snapshots/{{snapshot}}", delete_snapshot, "deleteSnapshot",
          "Forget a snapshot (the history it named stays). Admin, as the revert to it: "
          "a writer must not take the way back from the namespace's admins.", "history",
          params=(NS, SNAPSHOT), role="admin",
          responses={204: ("Deleted.", None), 400: E400, 404: E404, 503: E503}),
    Route("POST", f"{P}/snapshots/{{snapshot}}/revert", revert_to_snapshot,
          "revertToSnapshot",
          "Give every entity of the namespace its state at the snapshot: saved back as a "
          "new version, or deleted when it did not exist then (conversations, tool uses "
          "and feedback are not reverted). A key written meanwhile by someone else is "
          "left to that write and named in `conflicts`. Every key is read before the "
          "first write: one whose state then or now is sealed with a crypto-shredded "
          "data key refuses the whole revert (410 `data_shredded`), nothing written.",
          "history",
          params=(NS, SNAPSHOT), role="admin",
          grows_storage=True, adds_entity=True, shrinks_storage=True,
          responses={200: ("What was done.", SnapshotRevert), 400: E400, 404: E404,
                     410: ("A key's state cannot be read (`data_shredded`): nothing was "
                           "written.", schemas.ErrorOut),
                     503: E503}),
    Route("POST", f"{P}/history:purge", purge_history, "purgeHistory",
          "Erase the namespace's version history (older versions, conversation "
          "revisions); deleted entities keep their tombstone, which holds no data and "
          "keeps their version numbers from being reused.", "history",
          params=(NS,), role="admin",
          responses={200: ("Removed.", schemas.HistoryPurgedOut), 400: E400, 503: E503}),
    Route("POST", f"{P}/conversations:search", search_messages, "searchMessages",
          "Search the messages of the namespace's conversations (or of one) by their text "
          "content; one page of hits, best first. A read: changes nothing in the namespace.",
          "search",
          params=(NS,), body=schemas.MessageSearch,
          role="read",
          responses={200: ("A page of hits.", schemas.MessageSearchPage),
                     400: E400_SEARCH, 413: E413, 503: E503}),
    Route("POST", f"{P}/tool-usage", record_tool_usage, "saveToolUsage",
          "Record one tool use.", "tool-usage", params=(NS,), body=schemas.ToolUsageIn,
          role="write", grows_storage=True, hot=True,
          responses={201: ("Recorded.", ToolUsageRecord), 400: E400, 413: E413, 503: E503}),
    Route("GET", f"{P}/tool-usage", query_tool_usage, "queryToolUsage",
          "Tool uses ordered by time; filter by tool and [start, end).", "tool-usage",
          params=(NS, Param("tool_name", "query", _pattern(TOOL_RE), "Only this tool."),
                  Param("start", "query", TIME_SCHEMA, "From (POSIX seconds, inclusive)."),
                  Param("end", "query", TIME_SCHEMA, "To (POSIX seconds, exclusive)."),
                  *PAGE),
          role="read",
          responses={200: ("A page.", schemas.ToolUsagePage), 400: E400_PAGE, 503: E503}),
    Route("POST", f"{P}/tool-usage/search", search_tool_usage, "searchToolUsage",
          "Search tool uses by tool name, input and output; one page of hits, best first. "
          "A read: changes nothing in the namespace.", "search",
          params=(NS,), body=schemas.ToolUsageSearch,
          role="read",
          responses={200: ("A page of hits.", schemas.ToolUsageSearchPage),
                     400: E400_SEARCH, 413: E413, 503: E503}),
    Route("GET", f"{P}/tools", get_tool_names, "getToolNames",
          "Tools with at least one recorded use.", "tool-usage", params=(NS,),
          role="read",
          responses={200: ("Tool names.", schemas.ToolNamesOut), 400: E400, 503: E503}),
    Route("POST", f"{P}/feedback", save_feedback, "saveLearningFeedback",
          "Record learning feedback for an agent.", "feedback", params=(NS,),
          body=schemas.FeedbackIn,
          role="write", grows_storage=True,
          responses={201: ("Recorded.", FeedbackRecord), 400: E400, 413: E413, 503: E503}),
    Route("GET", f"{P}/changes", get_changes, "getChanges", CHANGES_DESCRIPTION, "changes",
          params=(NS,
                  Param("after", "query", {"type": "integer", **json_schema(CHANGE_POSITION)},
                        "Only changes after this position (from `next_after` or an event's "
                        "`id`); 0 or absent: from the oldest retained."),
                  Param("kind", "query", {"type": "string", "pattern": KINDS_PATTERN},
                        "Only these kinds (comma-separated): " + ", ".join(CHANGE_KINDS) + "."),
                  Param("type", "query", _pattern(TYPE_RE), "Only entity changes of this type."),
                  Param("conversation", "query", _pattern(ID_RE),
                        "Only this conversation's changes (and tool uses recorded in it)."),
                  LIMIT,
                  Param("wait", "query", {"type": "number", "minimum": 0},
                        "JSON form: with nothing new, wait up to this many seconds for a "
                        "change (long-poll); default 0."),
                  Param("Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "Event stream: resume after this position (wins over `after`).")),
          role="read", streaming=True,
          responses={200: ("Changes.", schemas.ChangesPageOut), 400: E400, 410: E410,
                     503: E503},
          text_alternatives={200: (EVENT_STREAM,)}),
    Route("GET", f"{P}/feedback", query_feedback, "getLearningFeedback",
          "Learning feedback ordered by time, filtered by agent and type.", "feedback",
          params=(NS, Param("agent_name", "query", _pattern(TOOL_RE)),
                  Param("feedback_type", "query", _pattern(TYPE_RE)), *PAGE),
          role="read",
          responses={200: ("A page.", schemas.FeedbackPage), 400: E400_PAGE, 503: E503}),
    Route("GET", f"{P}/webhooks", list_webhooks, "listWebhooks",
          "The namespace's webhooks (secrets redacted).", "webhooks", params=(NS,),
          role="admin",
          responses={200: ("Webhooks.", schemas.WebhookPage), 400: E400, 503: E503}),
    Route("GET", f"{P}/webhooks/{{webhook_name}}", get_webhook, "getWebhook",
          "One webhook (secret redacted).", "webhooks", params=(NS, WEBHOOK),
          role="admin",
          responses={200: ("The webhook.", schemas.WebhookOut), 400: E400, 404: E404,
                     503: E503}),
    Route("PUT", f"{P}/webhooks/{{webhook_name}}", put_webhook, "saveWebhook",
          "Create or replace a webhook: the namespace's change events are POSTed to `url`,"
          " signed (Standard Webhooks), at least once, in order. A generated secret is"
          " shown in this answer only.", "webhooks",
          params=(NS, WEBHOOK), body=schemas.WebhookPut,
          role="admin",
          responses={200: ("Replaced.", schemas.WebhookOut), 201: ("Created.", schemas.WebhookOut),
                     400: E400, 503: E503}),
    Route("DELETE", f"{P}/webhooks/{{webhook_name}}", delete_webhook, "deleteWebhook",
          "Delete a webhook; delivery stops.", "webhooks", params=(NS, WEBHOOK),
          role="admin",
          responses={204: ("Deleted.", None), 400: E400, 404: E404, 503: E503}),
    Route("DELETE", f"{P}/key", shred_data_key, "shredDataKey",
          "Crypto-shredding: delete the namespace's data key. Everything encrypted with it"
          " becomes unreadable on every replica and in every copy of the backend (reads"
          " answer 410 `data_shredded`); the next write makes a new key.", "keys",
          params=(NS,),
          role="admin", shrinks_storage=True,
          responses={200: ("Shredded.", schemas.DataKeyShreddedOut), 400: E400, 404: E404,
                     503: E503}),
    Route("GET", f"{P}/audit", export_audit, "exportAudit",
          "The audit trail: the namespace's change log as JSON lines (one change event per "
          "line, oldest first: who wrote what, when, from which address; never payloads), "
          "up to the newest event when the export started.", "audit",
          params=(NS,
                  Param("after", "query", {"type": "integer", **json_schema(CHANGE_POSITION)},
                        "Only events after this position (absent: from the oldest "
                        "retained one)."),
                  Param("since", "query", TIME_SCHEMA,
                        "Only events at or after this time (POSIX seconds)."),
                  Param("until", "query", TIME_SCHEMA,
                        "Only events before this time (POSIX seconds).")),
          role="admin", streaming=True,
          responses={200: ("Change events, one JSON object per line.", NDJSON), 400: E400,
                     410: ("Retention removed events right after `after`: the details "
                           "give `first_position`, the oldest retained one.",
                           schemas.ErrorOut),
                     503: E503}),
    Route("GET", f"{P}/export", export_namespace, "exportNamespace",
          "The namespace's dump: JSON lines, a manifest, every entity, conversation with its "
          "messages, tool use and feedback record in a fixed order, and a trailer with "
          "counts and a sha256 (docs/architecture.md, \"Export and import\"). Streamed "
          "while it is read; an error after the first line ends it with a line "
          "`{\"error\": ...}` and no trailer. With encryption at rest the payloads are "
          "sealed with the namespace's data key: the dump opens only in a store holding it, "
          "and not after `keys shred`, unless exported `with_key`.", "export",
          params=(NS, Param("with_key", "query", {"type": "string", "enum": ["true", "false"]},
                            "Encryption at rest: the dump carries its data key, wrapped by "
                            "the key-encryption key, so any store holding that KEK imports "
                            "it, even after the key was shredded.")),
          role="admin", streaming=True,
          responses={200: ("The dump, one JSON object per line.", NDJSON), 400: E400,
                     409: E409_IMPORTING, 503: E503}),
    Route("POST", f"{P}/import", import_namespace, "importNamespace",
          "Import a dump (the body, `application/x-ndjson`, streamed) into this namespace "
          "(the URL's, whatever the dump's manifest names). A sealed dump of another "
          "namespace, without its key (`with_key`), opens with this store's key of that "
          "namespace only for a token covering it too: else 403 `forbidden`, nothing "
          "written. The whole dump is verified "
          "first (structure, counts, sha256): a bad one is a 400 `invalid_dump` and nothing "
          "is written. While the import runs every replica answers the namespace with 409 "
          "`namespace_importing`. A namespace holding data is refused (409 "
          "`namespace_not_empty`) unless `replace=true`, which deletes its entities and "
          "conversations first.", "export",
          params=(NS, Param("replace", "query", {"type": "string", "enum": ["true", "false"]},
                            "Replace the namespace's entities and conversations.")),
          raw_body=NDJSON, role="admin", streaming=True, shrinks_storage=True,
          responses={200: ("Imported.", schemas.ImportResultOut), 400: E400,
                     409: ("The namespace holds data (`namespace_not_empty`) or another "
                           "import is running (`namespace_importing`).", schemas.ErrorOut),
                     503: E503}),
    # -- analytics (memstore.core.analytics: buckets, percentiles, bins) --
    Route("GET", f"{P}/analytics/overview", analytics_overview, "getAnalyticsOverview",
          "Live items per kind: count, stored bytes (compact JSON of the payloads), oldest "
          "and newest creation time; entities also per type, tool uses per tool; the "
          "namespace's stored and logical bytes (as written, before compression and "
          "encryption at rest: what the bytes quota counts).", "analytics",
          params=(NS,), role="read",
          responses={200: ("Overview.", AnalyticsOverview), 400: E400, 503: E503}),
    Route("GET", f"{P}/analytics/growth", analytics_growth, "getAnalyticsGrowth",
          "Items created per time bucket: live entities and stored messages by creation "
          "time, tool uses and feedback by timestamp. Every bucket of the window is listed, "
          "empty ones with 0.", "analytics",
          params=(NS, Param("kind", "query", {"type": "string", "enum": list(GROWTH_KINDS)},
                            "What to count.", True),
                  *WINDOW),
          role="read",
          responses={200: ("One point per bucket.", GrowthSeries), 400: E400, 503: E503}),
    Route("GET", f"{P}/analytics/tools", analytics_tools, "getAnalyticsTools",
          "Tool usage per tool in the window: calls, successes, failures, success rate, "
          "nearest-rank duration percentiles (p50, p90, p99: the ceil(p*n/100)-th smallest), "
          "a histogram with fixed bounds (`le`, milliseconds, the last `null`), calls and "
          "successes per bucket, the slowest and the most recent failed calls.", "analytics",
          params=(NS, *WINDOW,
                  Param("tool_name", "query", _pattern(TOOL_RE), "Only this tool."),
                  Param("limit", "query",
                        {"type": "integer", "minimum": 0, "maximum": MAX_LISTED_CALLS},
                        f"Slowest and failed calls listed per tool (default "
                        f"{DEFAULT_LISTED_CALLS}).")),
          role="read",
          responses={200: ("Per tool, by name.", ToolAnalytics), 400: E400, 503: E503}),
    Route("GET", f"{P}/analytics/feedback", analytics_feedback, "getAnalyticsFeedback",
          "Learning feedback per bucket: records, and the count and mean of the numeric "
          "`data.rating` values (a JSON number; booleans do not count).", "analytics",
          params=(NS, *WINDOW), role="read",
          responses={200: ("One point per bucket.", FeedbackAnalytics), 400: E400, 503: E503}),
)  # fmt: skip


#: Path parameters that are numbers, not names.
_NUMBERS = frozenset({"version", "revision"})


def _checking_path(handler: View) -> View:
    """Check the path's names before the handler looks at headers or body, so a request
    with a bad name is a 400 naming the field whatever else it carries."""

    async def checked(request: web.Request) -> web.StreamResponse:
        for kind, value in request.match_info.items():
            if kind in _NUMBERS:
                path_number(kind, value)
            else:
                check_name(kind, value)
        return await handler(request)

    return checked


def add_routes(app: web.Application) -> None:
    # aiohttp tries the resources under one path prefix (all of /v1/namespaces/...) in the
    # order they were added; the paths never overlap, so the order only decides how many
    # patterns the hottest requests are matched against. The document keeps ROUTES' order.
    for route in sorted(ROUTES, key=lambda r: not r.hot):
        # aiohttp's default segment pattern refuses "{" and "}"; accept any segment so the
        # check above answers with a 400 naming the field instead of a bare 404.
        path = re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", route.path)
        handler = _checking_path(route.handler) if "{" in route.path else route.handler
        resource = app.router.add_resource(path, name=route.operation_id)
        # The route object carries its row, so the middlewares read the policy from it.
        resource.register_route(TableRoute(route, handler, resource))

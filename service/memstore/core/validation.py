"""Input rules shared by the manager (in-process callers) and the HTTP API.

Names are restricted to a charset that is safe in URLs, Redis keys (no ``{``/``}``, so a
caller can never inject a cluster hash tag), Mongo ids and SQLite, and bounded in length so
a key can never grow without limit. Rejections raise ``InvalidInputError`` naming the field.
Numeric bounds (TTL, timestamps, durations, page sizes) are in ``memstore.core.bounds``.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from memstore.core.bounds import (
    CHANGE_POSITION,
    DURATION_MS,
    TIMESTAMP_SECONDS,
    TTL_SECONDS,
    check_in,
    contains,
)
from memstore.core.changes import CHANGE_KINDS, ChangeFilter
from memstore.core.errors import InvalidInputError, PayloadTooLargeError

#: The conversation of the calls that name none (the seed's single history).
DEFAULT_CONVERSATION = "default"


@dataclass(frozen=True)
class NameRule:
    """A name's charset and length, from which both its regex (for the code and the
    OpenAPI document) and its description in words (for error messages: a regex tells a
    user little) are made, so the two cannot disagree.

    ASCII only: a name is a URL path segment, a Redis key part, a Mongo id and a SQLite
    key alike, and ASCII keeps every one of them exact (no normalisation forms, no
    percent-encoding surprises). Text in another script goes in the data, or in the id
    encoded (a hash, base32, ...)."""

    first: str  # punctuation allowed as the first character, besides letters and digits
    rest: str  # punctuation allowed after it ("-" last: it is literal there in a class)
    max_length: int

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(
            f"^[A-Za-z0-9{self.first}][A-Za-z0-9{self.rest}]{{0,{self.max_length - 1}}}$"
        )

    def describe(self) -> str:
        first = (
            "a letter or digit" if not self.first else "a letter, digit or " + " ".join(self.first)
        )
        return (
            f"use 1 to {self.max_length} ASCII letters, digits and {' '.join(self.rest)}, "
            f"starting with {first} (no spaces, no other characters)"
        )


NAMESPACE_RULE = NameRule(first="", rest="_.-", max_length=64)
TYPE_RULE = NAMESPACE_RULE
ID_RULE = NameRule(first="_", rest="_.:@=+-", max_length=256)
TOOL_RULE = NameRule(first="_", rest="_.:/-", max_length=128)
WEBHOOK_RULE = NAMESPACE_RULE
SNAPSHOT_RULE = NAMESPACE_RULE

NAMESPACE_RE = NAMESPACE_RULE.pattern
TYPE_RE = TYPE_RULE.pattern
ID_RE = ID_RULE.pattern
TOOL_RE = TOOL_RULE.pattern
WEBHOOK_RE = WEBHOOK_RULE.pattern
SNAPSHOT_RE = SNAPSHOT_RULE.pattern

NAME_RULES: dict[str, NameRule] = {
    "namespace": NAMESPACE_RULE,
    "entity_type": TYPE_RULE,
    "entity_id": ID_RULE,
    "conversation_id": ID_RULE,
    "tool_name": TOOL_RULE,
    "agent_name": TOOL_RULE,
    "feedback_type": TYPE_RULE,
    "webhook_name": WEBHOOK_RULE,
    "snapshot": SNAPSHOT_RULE,
}

NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    kind: rule.pattern for kind, rule in NAME_RULES.items()
}


_NAME_MATCH = {kind: rx.fullmatch for kind, rx in NAME_PATTERNS.items()}


def check_name(kind: str, value: object) -> str:
    # On every request path (several times): bound fullmatch, exact type test.
    if type(value) is str and _NAME_MATCH[kind](value) is not None:
        return value
    if isinstance(value, str) and NAME_PATTERNS[kind].fullmatch(value):
        return value  # a str subclass
    raise InvalidInputError(name_problem(kind, value), field=kind)


def name_problem(kind: str, value: object) -> str:
    """What is wrong with ``value`` as a ``kind`` name, in words."""
    if not isinstance(value, str):
        return f"{kind} must be a string"
    # The value is shown (shortened) so the user sees what arrived, e.g. after a shell
    # split or a URL encoding; names are not payloads.
    shown = value if len(value) <= 40 else value[:40] + "…"
    return f"{shown!r} is not a valid {kind}: {NAME_RULES[kind].describe()}"


def check_object(kind: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{kind} must be a JSON object", field=kind)
    return value


def _has_non_finite(value: object) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return True
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return False


def encode_json(kind: str, value: object) -> bytes:
    """Compact JSON; ``InvalidInputError`` for values JSON cannot carry (NaN, non-string
    keys, ...)."""
    try:
        raw = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidInputError(f"{kind} is not valid JSON: {exc}", field=kind) from exc
    # orjson writes NaN and infinities as null: stored, they would silently differ from
    # what the caller holds (and an HTTP body cannot carry them at all). Only a payload
    # with a null in it can hold one, so the walk is skipped for most.
    if b"null" in raw and _has_non_finite(value):
        raise InvalidInputError(
            f"{kind} is not valid JSON: NaN and infinities have no JSON form", field=kind
        )
    return raw


def check_size(kind: str, size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise PayloadTooLargeError(
            f"{kind} is {size} bytes; the limit is {max_bytes}", field=kind, limit=max_bytes
        )


def json_array_size(items: list[bytes]) -> int:
    """Bytes of the compact JSON array of these already-encoded items."""
    return sum(map(len, items)) + max(len(items) - 1, 0) + 2


def check_json_size(kind: str, value: object, max_bytes: int) -> bytes:
    """Serialise once (the caller passes the bytes on) and enforce the size limit."""
    raw = encode_json(kind, value)
    check_size(kind, len(raw), max_bytes)
    return raw


def check_json_items_size(kind: str, values: list[Any], max_bytes: int) -> list[bytes]:
    """Serialise each item once (backends store them one by one) and enforce the size
    limit on them as one JSON array, exactly as ``check_json_size(kind, values, ...)``."""
    raws = [encode_json(kind, v) for v in values]
    check_size(kind, json_array_size(raws), max_bytes)
    return raws


def check_ttl(ttl: float | None) -> float | None:
    return None if ttl is None else check_in("ttl", ttl, TTL_SECONDS)


def limit_error(max_limit: int) -> InvalidInputError:
    return InvalidInputError(f"limit must be an integer in [1, {max_limit}]", field="limit")


def check_limit(limit: int | None, max_limit: int, *, default: int) -> int:
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or limit > max_limit:
        raise limit_error(max_limit)
    return limit


def check_version(version: int | None) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidInputError("expected_version must be an integer >= 0", field="version")
    return version


def check_version_number(value: object, field: str = "version") -> int:
    """A version of an entity or a revision of a conversation: an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise InvalidInputError(f"{field} must be an integer >= 1", field=field)
    return value


def check_as_of(version: object, at: object) -> tuple[int | None, float | None]:
    """An entity read "as of": exactly one of a version (>= 1) and an instant (POSIX
    seconds)."""
    if (version is None) == (at is None):
        raise InvalidInputError("give exactly one of as_of_version and as_of", field="as_of")
    if version is not None:
        return check_version_number(version, "as_of_version"), None
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise InvalidInputError("as_of must be POSIX seconds", field="as_of")
    return None, check_in("as_of", float(at), TIMESTAMP_SECONDS)


#: The HTTP request header that carries ``min_version`` on entity reads (the server reads
#: it, ``MemoryClient`` sends it).
MIN_VERSION_HEADER = "Memstore-Min-Version"


def check_min_version(version: object) -> int | None:
    """A read's lowest acceptable version (read-your-writes), or ``None``."""
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise InvalidInputError("min_version must be an integer >= 1", field="min_version")
    return version


# -- opaque cursors ---------------------------------------------------------------------
# A cursor is the sort key of the last item returned, as base64url(JSON list). Backends
# decide what goes in it; callers only pass it back. Decoding validates the shape so a
# forged cursor is a 400, never a 500.


#: What an issued cursor looks like (unpadded base64url); the OpenAPI document says so.
CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")


def encode_cursor(*key: str | int | float) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> list[Any]:
    # The base64 decoder skips characters outside its alphabet: check them first, so a
    # cursor is read exactly as it was issued.
    if not isinstance(cursor, str) or CURSOR_RE.fullmatch(cursor) is None:
        raise InvalidInputError("cursor is not valid", field="cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidInputError("cursor is not valid", field="cursor") from exc
    if not isinstance(key, list) or len(key) != len(types):
        raise InvalidInputError("cursor is not valid", field="cursor")
    for value, expected in zip(key, types, strict=True):
        ok = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise InvalidInputError("cursor is not valid", field="cursor")
    return key


# -- the arguments of MemoryAPI operations ----------------------------------------------
# One check per operation, run by the manager (in process) and by the client before it
# sends anything, so swapping one for the other changes no outcome: the same exception,
# message and details for the same mistake. ``max_bytes`` is the manager's payload limit;
# the client passes ``None`` (it does not know the server's; the server's manager checks
# it with the same function).


def check_payload(kind: str, value: object, max_bytes: int | None) -> bytes:
    """The payload's compact JSON, within ``max_bytes`` when given."""
    raw = encode_json(kind, value)
    if max_bytes is not None:
        check_size(kind, len(raw), max_bytes)
    return raw


def check_payload_items(kind: str, values: list[Any], max_bytes: int | None) -> list[bytes]:
    raws = [encode_json(kind, v) for v in values]
    if max_bytes is not None:
        check_size(kind, json_array_size(raws), max_bytes)
    return raws


def check_entity_key(entity_type: object, entity_id: object) -> None:
    check_name("entity_type", entity_type)
    check_name("entity_id", entity_id)


def check_entity_write(
    entity_type: object,
    entity_id: object,
    data: object,
    ttl: float | None,
    expected_version: int | None,
    max_bytes: int | None,
) -> tuple[bytes, float | None, int | None]:
    """``save_entity``: the data's JSON, the TTL and the expected version."""
    check_entity_key(entity_type, entity_id)
    check_object("data", data)
    data_json = check_payload("data", data, max_bytes)
    return data_json, check_ttl(ttl), check_version(expected_version)


def check_conversation_id(conversation_id: str | None) -> str:
    return check_name("conversation_id", conversation_id or DEFAULT_CONVERSATION)


def check_messages(
    messages: object, *, max_count: int | None, max_bytes: int | None, allow_empty: bool
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """A list of JSON objects (non-empty for an append; a replace may clear the history)."""
    if not isinstance(messages, list):
        raise InvalidInputError("messages must be a JSON array of objects", field="messages")
    if max_count is not None and len(messages) > max_count:
        raise InvalidInputError(
            f"at most {max_count} messages per request", field="messages", limit=max_count
        )
    for m in messages:
        check_object("message", m)
    raws = check_payload_items("messages", messages, max_bytes)
    if not messages and not allow_empty:
        raise InvalidInputError("messages must not be empty", field="messages")
    return messages, raws


def check_before(before_seq: object) -> int | None:
    if before_seq is not None and (
        isinstance(before_seq, bool) or not isinstance(before_seq, int) or before_seq < 1
    ):
        raise InvalidInputError("before must be an integer >= 1", field="before")
    return before_seq


def check_change_position(after: object) -> int:
    """A change-log position to read after: 0 (from the start) or a position seen."""
    if (
        isinstance(after, bool)
        or not isinstance(after, int)
        or not contains(CHANGE_POSITION, after)
    ):
        raise InvalidInputError("after must be an integer >= 0", field="after")
    return after


def check_change_filter(
    kinds: object, entity_type: object, conversation_id: object, *, kinds_field: str = "kinds"
) -> ChangeFilter:
    """A change-feed filter: ``kinds`` one kind or several (a list, tuple or set) from
    ``CHANGE_KINDS`` (``None``: every kind), and optional names. ``kinds_field`` is what
    the caller calls the kinds (``kind`` in a query string)."""
    wanted: frozenset[str] | None = None
    if kinds is not None:
        items: list[object] = (
            list(kinds) if isinstance(kinds, list | tuple | set | frozenset) else [kinds]
        )
        unknown = [k for k in items if not isinstance(k, str) or k not in CHANGE_KINDS]
        if unknown or not items:
            raise InvalidInputError(
                f"{kinds_field} must be one or more of {', '.join(CHANGE_KINDS)}"
                + (f", not {', '.join(repr(k) for k in unknown)}" if unknown else ""),
                field=kinds_field,
            )
        wanted = frozenset(k for k in items if isinstance(k, str))
    check_optional_name("entity_type", entity_type)
    check_optional_name("conversation_id", conversation_id)
    return ChangeFilter(
        wanted,
        entity_type if isinstance(entity_type, str) else None,
        conversation_id if isinstance(conversation_id, str) else None,
    )


def check_tool_usage(
    tool_name: object,
    args: object,
    result: object,
    *,
    duration_ms: object,
    conversation_id: object,
    timestamp: object,
    usage_id: object,
    max_bytes: int | None,
) -> tuple[float, float | None, bytes, bytes]:
    """``save_tool_usage``: duration, timestamp, and the input's and output's JSON."""
    check_name("tool_name", tool_name)
    if conversation_id is not None:
        check_name("conversation_id", conversation_id)
    if usage_id is not None:
        check_name("entity_id", usage_id)
    duration = check_in("duration_ms", duration_ms, DURATION_MS)
    ts = None if timestamp is None else check_in("timestamp", timestamp, TIMESTAMP_SECONDS)
    input_json, output_json = check_payload_items("tool usage", [args, result], max_bytes)
    return duration, ts, input_json, output_json


def check_time_range(start: object, end: object) -> tuple[float | None, float | None]:
    return (
        None if start is None else check_in("start", start, TIMESTAMP_SECONDS),
        None if end is None else check_in("end", end, TIMESTAMP_SECONDS),
    )


def check_optional_name(kind: str, value: object) -> None:
    if value is not None:
        check_name(kind, value)


def check_feedback(
    agent_name: object, feedback_type: object, data: object, max_bytes: int | None
) -> bytes:
    check_name("agent_name", agent_name)
    check_name("feedback_type", feedback_type)
    return check_payload("feedback", data, max_bytes)

"""Input rules shared by the manager (in-process callers) and the HTTP API.

Names are restricted to a charset that is safe in URLs, Redis keys (no ``{``/``}``, so a
caller can never inject a cluster hash tag), Mongo ids and SQLite, and bounded in length so
a key can never grow without limit. Rejections raise ``InvalidInputError`` naming the field.
Numeric bounds (TTL, timestamps, durations, page sizes) are in ``memstore.core.bounds``.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from memstore.core.bounds import TTL_SECONDS, check_in
from memstore.core.errors import InvalidInputError, PayloadTooLargeError

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@=+-]{0,255}$")
TOOL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")

NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    "namespace": NAMESPACE_RE,
    "entity_type": TYPE_RE,
    "entity_id": ID_RE,
    "conversation_id": ID_RE,
    "tool_name": TOOL_RE,
    "agent_name": TOOL_RE,
    "feedback_type": TYPE_RE,
}


_NAME_MATCH = {kind: rx.fullmatch for kind, rx in NAME_PATTERNS.items()}


def check_name(kind: str, value: object) -> str:
    # On every request path (several times): bound fullmatch, exact type test.
    if type(value) is str and _NAME_MATCH[kind](value) is not None:
        return value
    if isinstance(value, str) and NAME_PATTERNS[kind].fullmatch(value):
        return value  # a str subclass
    raise InvalidInputError(f"{kind} must match {NAME_PATTERNS[kind].pattern}", field=kind)


def check_object(kind: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{kind} must be a JSON object", field=kind)
    return value


def encode_json(kind: str, value: object) -> bytes:
    """Compact JSON; ``InvalidInputError`` for values JSON cannot carry (NaN, non-string
    keys, ...)."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidInputError(f"{kind} is not valid JSON: {exc}", field=kind) from exc


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


def check_limit(limit: int | None, max_limit: int, *, default: int) -> int:
    if limit is None:
        return default
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or limit > max_limit:
        raise InvalidInputError(f"limit must be an integer in [1, {max_limit}]", field="limit")
    return limit


def check_version(version: int | None) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidInputError("expected_version must be an integer >= 0", field="version")
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

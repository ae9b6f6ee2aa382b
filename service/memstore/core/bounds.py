"""Every numeric bound a caller or an operator meets, in one table.

Each bound is an ``annotated_types.Interval``: pydantic reads it as a constraint (request
models, settings) and as JSON schema (``/openapi.json``), and :func:`check_in` applies the
same interval to what in-process callers and query strings pass, so the manager, the HTTP
API, its document and the settings can never disagree on a limit.

==========================  ===================  =======================================
name                        interval             where it applies
==========================  ===================  =======================================
``TTL_SECONDS``             (0, 315360000]       entity ``ttl`` / ``ttl_seconds`` (10 y)
``TIMESTAMP_SECONDS``       [0, 1e11)            tool-use ``timestamp``, ``start``/``end``
``DURATION_MS``             [0, 1e12)            tool-use ``duration_ms``
``SEQUENCE``                [1, 10^18 - 1]       ``before`` (message seq), ETag versions
``CHANGE_POSITION``         [0, 10^18 - 1]       change-log ``after`` (0: from the start)
``PAGE_SIZE``               [1, 10000]           max/default page size settings
``CACHE_TTL_SECONDS``       [0, 3600]            ``MEMSTORE_CACHE_TTL_SECONDS``
``POLL_SECONDS``            (0, 300]             ``MEMSTORE_CHANGES_POLL_SECONDS``
``KEEPALIVE_SECONDS``       (0, 30]              ``MEMSTORE_CHANGES_KEEPALIVE_SECONDS``
``LONG_POLL_SECONDS``       [0, 300]             ``MEMSTORE_CHANGES_MAX_WAIT_SECONDS``
``BODY_BYTES``              [1024, ...)          ``MEMSTORE_MAX_BODY_BYTES``
``MESSAGES_PER_REQUEST``    [1, ...)             ``MEMSTORE_MAX_MESSAGES_PER_REQUEST``
``BATCH_ITEMS``             [1, 500]             items of one batch write (``:batch``)
``JSON_INTEGER``            [-2^63, 2^64 - 1]    every integer inside a JSON payload
==========================  ===================  =======================================

Timestamps are POSIX seconds; 1e11 is the year 5138, so anything beyond is a mistake.
Integers in query strings and ETags have at most :data:`INTEGER_DIGITS` digits, which is
what bounds ``SEQUENCE``.
"""

from __future__ import annotations

import math
from typing import Any

from annotated_types import Interval

from memstore.core.errors import InvalidInputError

INTEGER_DIGITS = 18

TTL_SECONDS = Interval(gt=0, le=10 * 365 * 24 * 3600)
TIMESTAMP_SECONDS = Interval(ge=0, lt=1e11)
DURATION_MS = Interval(ge=0, lt=1e12)
SEQUENCE = Interval(ge=1, le=10**INTEGER_DIGITS - 1)
CHANGE_POSITION = Interval(ge=0, le=10**INTEGER_DIGITS - 1)
PAGE_SIZE = Interval(ge=1, le=10_000)
CACHE_TTL_SECONDS = Interval(ge=0, le=3600)
# Change feed: how often a waiting reader polls / a quiet stream sends a keep-alive, and
# the longest long-poll wait a deployment may allow.
POLL_SECONDS = Interval(gt=0, le=300)
#: At most half the client's stream idle timeout (60 s), so a quiet stream is never taken
#: for a dead one.
KEEPALIVE_SECONDS = Interval(gt=0, le=30)
LONG_POLL_SECONDS = Interval(ge=0, le=300)
BODY_BYTES = Interval(ge=1024)
MESSAGES_PER_REQUEST = Interval(ge=1)
#: Items of one batch write (entities or conversations). A batch is one transaction on
#: the embedded backend and one pipeline on Redis: the bound keeps either short enough
#: not to hold the writer (or a connection) for long.
MAX_BATCH_ITEMS = 500
BATCH_ITEMS = Interval(ge=1, le=MAX_BATCH_ITEMS)
#: What JSON payloads may hold as integers: 64 bits, signed or unsigned (what the JSON
#: codec, orjson, encodes exactly; a wider one would come back as a rounded float).
JSON_INTEGER = Interval(ge=-(2**63), le=2**64 - 1)

#: Room for the JSON envelope around a payload of ``MEMSTORE_MAX_BODY_BYTES`` (the
#: server's body cap is the two added).
ENVELOPE_BYTES = 64 * 1024


def contains(bound: Interval, value: float) -> bool:
    # The bounds are plain numbers; annotated_types types them as "supports comparison".
    b: Any = bound
    return (
        (b.gt is None or value > b.gt)
        and (b.ge is None or value >= b.ge)
        and (b.lt is None or value < b.lt)
        and (b.le is None or value <= b.le)
    )


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def describe(bound: Interval) -> str:
    """``(0, 315360000]``-style text for error messages."""
    b: Any = bound
    if b.gt is not None:
        low = f"({_number(b.gt)}"
    else:
        low = "(-inf" if b.ge is None else f"[{_number(b.ge)}"
    if b.lt is not None:
        high = f"{_number(b.lt)})"
    else:
        high = "inf)" if b.le is None else f"{_number(b.le)}]"
    return f"{low}, {high}"


def json_schema(bound: Interval) -> dict[str, Any]:
    """The bound as JSON Schema keywords (for parameters that are not pydantic fields)."""
    b: Any = bound
    keywords = {
        "exclusiveMinimum": b.gt,
        "minimum": b.ge,
        "exclusiveMaximum": b.lt,
        "maximum": b.le,
    }
    return {k: v for k, v in keywords.items() if v is not None}


def check_in(kind: str, value: object, bound: Interval) -> float:
    """``value`` as a float when it is a finite number within ``bound``; else an
    ``InvalidInputError`` naming ``kind`` and the interval."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not contains(bound, value)
    ):
        raise InvalidInputError(f"{kind} must be a number in {describe(bound)}", field=kind)
    return float(value)

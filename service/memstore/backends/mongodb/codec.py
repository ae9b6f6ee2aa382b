"""Exact, reversible mapping between arbitrary JSON values and storable BSON values.

Payloads stay native BSON documents (inspectable and indexable in MongoDB tools), so
what JSON allows but MongoDB does not must be escaped:

* Keys. MongoDB rejects ``$``-prefixed and dotted field names in many places (FerretDB in
  all of them) and BSON cannot hold a NUL inside a key. Every key is escaped with ``\\``
  as the escape character: ``\\`` -> ``\\\\``, ``$`` -> ``\\d``, ``.`` -> ``\\p``, NUL ->
  ``\\0``, and the empty key becomes ``\\e``. The mapping is injective (each escape is two
  characters starting with ``\\``, and ``\\e`` only ever stands alone), so decoding is exact.
  Keys with none of those characters, the common case, are stored unchanged.
* Arrays directly inside arrays become ``{"\\a": [...]}``: FerretDB v1 rejects nested
  arrays ("nested arrays are not supported"). MongoDB stores them, but one stored format
  for every server keeps data portable between them and is the one the tests exercise.
* Integers outside int64 (JSON has no limit; orjson reads up to 2**64-1) become
  ``{"\\i": "<decimal>"}``, and ``-0.0`` (FerretDB's SQLite storage drops the sign)
  becomes ``{"\\f": "-0.0"}``. No encoded key is ever ``\\i``, ``\\f`` or ``\\a``, so
  these one-key documents cannot be confused with user data.

Everything else (str, int64, float, bool, None, list, dict, key order) is BSON-native.
"""

from __future__ import annotations

import math
import re
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

EMPTY_KEY = "\\e"
BIGINT_KEY = "\\i"
FLOAT_KEY = "\\f"
ARRAY_KEY = "\\a"

_ESCAPES = {"\\": "\\\\", "$": "\\d", ".": "\\p", "\x00": "\\0"}
_UNESCAPES = {"\\": "\\", "d": "$", "p": ".", "0": "\x00"}
_NEEDS_ESCAPE = re.compile(r"[\\$.\x00]")
_ESCAPED = re.compile(r"\\([\\dp0])")


def _escape(match: re.Match[str]) -> str:
    return _ESCAPES[match.group()]


def _unescape(match: re.Match[str]) -> str:
    return _UNESCAPES[match.group(1)]


def encode_key(key: str) -> str:
    if not key:
        return EMPTY_KEY
    if _NEEDS_ESCAPE.search(key) is None:
        return key
    return _NEEDS_ESCAPE.sub(_escape, key)


def decode_key(key: str) -> str:
    if "\\" not in key:
        return key
    if key == EMPTY_KEY:
        return ""
    return _ESCAPED.sub(_unescape, key)


def encode_value(value: Any) -> Any:
    """JSON value -> BSON-storable value (a new object; the input is not modified)."""
    kind = type(value)
    if kind is dict:
        return {encode_key(k): encode_value(v) for k, v in value.items()}
    if kind is list:
        return [_encode_item(v) for v in value]
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        return {BIGINT_KEY: str(value)}
    if kind is float:
        if value == 0.0 and math.copysign(1.0, value) < 0:
            return {FLOAT_KEY: "-0.0"}
        return value
    if isinstance(value, dict):  # dict subclasses (rare): same as dict
        return {encode_key(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode_item(v) for v in value]
    return value


def _encode_item(value: Any) -> Any:
    """An array element: like any value, except that an array is wrapped."""
    if isinstance(value, list | tuple):
        return {ARRAY_KEY: [_encode_item(v) for v in value]}
    return encode_value(value)


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value` on what the driver returns."""
    if isinstance(value, dict):
        if len(value) == 1:
            if BIGINT_KEY in value:
                return int(value[BIGINT_KEY])
            if FLOAT_KEY in value:
                return float(value[FLOAT_KEY])
            if ARRAY_KEY in value:
                return decode_value(value[ARRAY_KEY])
        return {decode_key(k): decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value

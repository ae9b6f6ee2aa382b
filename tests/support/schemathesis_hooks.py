"""A schemathesis check and a deserializer loaded into its CLI (``SCHEMATHESIS_HOOKS``) by
tests/support/fuzz.py.

The operations that take a cursor or a JSON body may answer a schema-valid request with
400 for reasons the document states in words only: a cursor string the server did not
issue, an integer literal wider than 64 bits, an analytics window with ``since`` after
``until`` or of too many buckets, an entity read with both ``as_of`` and
``as_of_version``, and a batch write naming one key (or conversation) twice.
``positive_data_acceptance`` is told to accept 400 there; this check keeps every other
400 to a valid request a failure.

JSON lines (``application/x-ndjson``: the audit export, the namespace export) have no
built-in deserializer: the one here requires every line to be a JSON object (a change
event, or a line of a dump), so a broken line fails the response checks instead of being
skipped. An import body that is not an intact dump is a 400 ``invalid_dump``, which the
import route's description states."""

from __future__ import annotations

import json
from typing import Any

import schemathesis

from memstore.core import dump

#: The kinds of the lines of a namespace export (memstore.core.dump).
DUMP_KINDS = {dump.MANIFEST, *dump.RECORD_KINDS, dump.TRAILER}


def _explained(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    details = body.get("details") or {}
    if body.get("code") == "invalid_dump":
        return True  # an import body that is not a whole, intact dump (the route says so)
    if body.get("code") != "invalid_input" or not isinstance(details, dict):
        return False
    if details.get("field") == "cursor":
        return True
    message = str(body.get("message", ""))
    if details.get("field") == "since" and (
        "buckets; at most" in message or "must not be after until" in message
    ):
        return True  # an analytics window the parameters' descriptions rule out
    if details.get("field") == "as_of" and "exactly one of" in message:
        return True  # an entity read as of a version and an instant at once (described)
    if details.get("field") == "items" and "each key once" in message:
        return True  # a batch naming one key twice (the batch routes' descriptions)
    return "64 bits" in message


@schemathesis.check
def valid_request_refused_only_for_a_stated_reason(ctx: Any, response: Any, case: Any) -> None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not _explained(body):
        raise AssertionError(
            f"A schema-valid request was refused with 400 for no reason the document "
            f"states: {response.content[:300]!r}"
        )


# The import's body: a string the document allows (any text), sent as is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


@schemathesis.deserializer("application/x-ndjson")
def json_lines(ctx: Any, response: Any) -> list[Any]:
    lines = [json.loads(line) for line in response.content.splitlines() if line.strip()]
    for line in lines:
        if not isinstance(line, dict) or "kind" not in line:
            raise ValueError(f"not a change event or a dump line: {line!r:.200}")
        if "position" not in line and line["kind"] not in DUMP_KINDS:
            raise ValueError(f"not a change event or a dump line: {line!r:.200}")
    return lines

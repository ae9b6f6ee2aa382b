"""The error tree and the one code -> class table, both directions."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request

from memstore.core import errors
from memstore.core.errors import (
    CLOSEST_BY_STATUS,
    ERROR_TYPES,
    BackendUnavailableError,
    ConflictError,
    InvalidInputError,
    MemoryStoreError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    error_from_wire,
)
from memstore.server.errors import error_response

EXAMPLES: dict[type[MemoryStoreError], MemoryStoreError] = {
    MemoryStoreError: MemoryStoreError("boom"),
    InvalidInputError: InvalidInputError("bad id", field="entity_id"),
    PayloadTooLargeError: PayloadTooLargeError("too big", field="data", limit=1024),
    NotFoundError: NotFoundError("no such entity"),
    errors.ChangesPrunedError: errors.ChangesPrunedError("gone", after=3, first_position=9),
    errors.DataShreddedError: errors.DataShreddedError("shredded", namespace="a", key_id="k"),
    errors.PayloadUnreadableError: errors.PayloadUnreadableError("altered"),
    ConflictError: ConflictError("stale", expected_version=2, current_version=3),
    BackendUnavailableError: BackendUnavailableError("down", acks=0),
    errors.ServiceUnreachableError: errors.ServiceUnreachableError("no answer"),
    errors.ConfigurationError: errors.ConfigurationError("driver missing"),
    errors.AuthenticationError: errors.AuthenticationError("no token"),
    errors.PermissionDeniedError: errors.PermissionDeniedError("no role", role="write"),
    errors.QuotaExceededError: errors.QuotaExceededError("full", quota="entities", limit=1, used=1),
    RateLimitedError: RateLimitedError("slow down", retry_after=7),
    errors.RequestTimeoutError: errors.RequestTimeoutError("too slow"),
    errors.NamespaceImportingError: errors.NamespaceImportingError("importing"),
    errors.NamespaceNotEmptyError: errors.NamespaceNotEmptyError("not empty"),
    errors.AlreadyExistsError: errors.AlreadyExistsError("taken", snapshot="s1"),
    errors.DumpInvalidError: errors.DumpInvalidError("bad dump"),
}


def _all_subclasses(cls: type[MemoryStoreError]) -> set[type[MemoryStoreError]]:
    found = {cls}
    for sub in cls.__subclasses__():
        found |= _all_subclasses(sub)
    return found


def test_every_error_type_is_in_the_table_once() -> None:
    assert set(ERROR_TYPES) == _all_subclasses(MemoryStoreError) == set(EXAMPLES)
    codes = [cls.code for cls in ERROR_TYPES]
    assert len(codes) == len(set(codes))
    for cls in ERROR_TYPES:
        assert errors.error_type(cls.code) is cls


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    doc = errors.__doc__ or ""
    drawn: dict[str, tuple[str, int]] = {}
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.fullmatch(r" *((?:[│ ] {3})*)(?:[├└]── )?(\w+Error) +(\w+) +(\d{3})", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4 + (1 if "── " in line else 0)
        name = match.group(2)
        drawn[name] = (match.group(3), int(match.group(4)))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    assert set(drawn) == {cls.__name__ for cls in ERROR_TYPES}
    for cls in ERROR_TYPES:
        assert drawn[cls.__name__] == (cls.code, cls.http_status), cls
        if cls is not MemoryStoreError:
            assert parents[cls.__name__] == cls.__mro__[1].__name__, cls


@pytest.mark.parametrize("cls", ERROR_TYPES, ids=lambda c: c.__name__)
def test_the_server_answer_rebuilds_the_same_error(cls: type[MemoryStoreError]) -> None:
    original = EXAMPLES[cls]
    request = make_mocked_request("GET", "/x")
    response = error_response(request, original)
    assert response is not None and response.body is not None
    assert response.status == cls.http_status
    body = orjson.loads(bytes(response.body))  # type: ignore[arg-type]
    assert body["code"] == cls.code
    again = error_from_wire(response.status, body, retry_after=response.headers.get("Retry-After"))
    assert type(again) is cls
    assert again.code == original.code
    assert again.message == original.message
    assert again.details == original.details
    if isinstance(original, ConflictError):
        assert isinstance(again, ConflictError)
        assert (again.expected_version, again.current_version) == (2, 3)
    if isinstance(original, RateLimitedError):
        assert isinstance(again, RateLimitedError) and again.retry_after == 7


def test_the_code_decides_not_the_status() -> None:
    # A proxy rewriting the status does not change what the service said.
    assert type(error_from_wire(500, {"code": "not_found", "message": "m"})) is NotFoundError
    assert type(error_from_wire(503, {"code": "timeout"})) is errors.RequestTimeoutError


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, {"code": "gone_elsewhere"}, NotFoundError),
        (405, {"code": "method_not_allowed"}, InvalidInputError),
        (418, {}, InvalidInputError),
        (412, {"code": "precondition_failed"}, ConflictError),
        (502, {}, BackendUnavailableError),
        (504, {}, BackendUnavailableError),
        (500, {"code": "new_server_error"}, MemoryStoreError),
        (302, {}, MemoryStoreError),
    ],
)
def test_an_unknown_code_becomes_the_closest_class(
    status: int, body: dict[str, Any], expected: type[MemoryStoreError]
) -> None:
    error = error_from_wire(status, body)
    assert type(error) is expected
    assert CLOSEST_BY_STATUS.get(status, expected) is expected
    # The code it came with is kept, so a caller can still tell it apart.
    assert error.code == body.get("code", expected.code)


def test_a_429_without_a_body_reads_retry_after() -> None:
    error = error_from_wire(429, {}, retry_after="12")
    assert isinstance(error, RateLimitedError) and error.retry_after == 12
    assert isinstance(error_from_wire(429, {}, retry_after="soon"), RateLimitedError)

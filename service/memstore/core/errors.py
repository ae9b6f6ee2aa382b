"""The project's own error types, their wire ``code`` and their HTTP status.

Backends, the manager and the HTTP client raise only these (drivers' exceptions are
wrapped with ``raise ... from exc``), so in-process and remote callers handle the same
exceptions. The tree (class, ``code``, HTTP status)::

    MemoryStoreError                  internal_error        500
    ├── InvalidInputError             invalid_input         400
    │   ├── PayloadTooLargeError      payload_too_large     413
    │   └── DumpInvalidError          invalid_dump          400
    ├── NotFoundError                 not_found             404
    ├── ChangesPrunedError            changes_pruned        410
    ├── DataShreddedError             data_shredded         410
    ├── PayloadUnreadableError        payload_unreadable    500
    ├── ConflictError                 version_conflict      412
    ├── BackendUnavailableError       backend_unavailable   503
    │   └── ServiceUnreachableError   service_unreachable   503
    ├── ConfigurationError            configuration_error   503
    ├── AuthenticationError           unauthorized          401
    ├── PermissionDeniedError         forbidden             403
    ├── QuotaExceededError            quota_exceeded        403
    ├── RateLimitedError              rate_limited          429
    ├── RequestTimeoutError           timeout               504
    ├── NamespaceImportingError       namespace_importing   409
    ├── NamespaceNotEmptyError        namespace_not_empty   409
    └── AlreadyExistsError            already_exists        409

Each class carries its ``code`` and ``http_status``; :data:`ERROR_TYPES` lists them and
:func:`error_type` maps a code back to its class. The server answers an error with its
class's status and the JSON body ``{"code", "message", "details"?}``
(``memstore.server.errors``); the client rebuilds the exception from that body's ``code``
(:func:`error_from_wire`), not from the status. A code this version does not know (a newer
server, or an HTTP-level answer such as 405 ``method_not_allowed``) becomes the class that
owns the status (:data:`CLOSEST_BY_STATUS`; any other 4xx is ``InvalidInputError``, any
other status ``MemoryStoreError``) and keeps the code it came with.

Messages must never contain secrets or entity payloads: they reach logs and clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, ClassVar


class MemoryStoreError(Exception):
    """Base class. ``code`` is stable and machine-readable; the message is for humans."""

    code: str = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any]) -> MemoryStoreError:
        """Rebuild an error from the message and ``details`` of its JSON body. Classes
        whose constructor takes named arguments read them from ``details``."""
        return cls(message, **details)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInputError(MemoryStoreError):
    """The caller sent something malformed: a bad id, a wrong JSON type, a bad cursor."""

    code = "invalid_input"
    http_status = 400


class PayloadTooLargeError(InvalidInputError):
    code = "payload_too_large"
    http_status = 413


class NotFoundError(MemoryStoreError):
    code = "not_found"
    http_status = 404


class ChangesPrunedError(MemoryStoreError):
    """A change-feed reader asked to resume after a position whose successors retention
    already removed: it would miss events, so it is told instead of being served a gap.
    ``first_position`` is the oldest position still retained (resume from a fresh state)."""

    code = "changes_pruned"
    http_status = 410

    def __init__(self, message: str, *, after: int, first_position: int) -> None:
        super().__init__(message, after=after, first_position=first_position)
        self.after = after
        self.first_position = first_position

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any]) -> MemoryStoreError:
        return cls(
            message,
            after=int(details.get("after", 0)),
            first_position=int(details.get("first_position", 0)),
        )


class DataShreddedError(MemoryStoreError):
    """The namespace's data key was deleted (crypto-shredding): what was encrypted with it
    can never be read again, on any replica or from any backup of the backend."""

    code = "data_shredded"
    http_status = 410

    def __init__(self, message: str, *, namespace: str, key_id: str) -> None:
        super().__init__(message, namespace=namespace, key_id=key_id)
        self.namespace = namespace
        self.key_id = key_id

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any]) -> MemoryStoreError:
        return cls(
            message,
            namespace=str(details.get("namespace", "")),
            key_id=str(details.get("key_id", "")),
        )


class PayloadUnreadableError(MemoryStoreError):
    """A stored payload does not open: altered, moved from another record, or written in
    a format this version does not know."""

    code = "payload_unreadable"
    http_status = 500


class ConflictError(MemoryStoreError):
    """Optimistic concurrency failed: the stored version is not the expected one."""

    code = "version_conflict"
    http_status = 412

    def __init__(
        self,
        message: str,
        *,
        expected_version: int | None,
        current_version: int | None,
        **batch: Any,
    ) -> None:
        # ``batch``: in a batch write, ``item`` (the index of the first item in conflict),
        # ``items`` (every one in conflict), ``written`` (the indexes stored anyway, on a
        # backend whose batches are not all-or-nothing) and ``versions`` (the version
        # each of those got, in the order of ``written``)
        super().__init__(
            message, expected_version=expected_version, current_version=current_version, **batch
        )
        self.expected_version = expected_version
        self.current_version = current_version

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any]) -> MemoryStoreError:
        batch = {k: details[k] for k in ("item", "items", "written", "versions") if k in details}
        return cls(
            message,
            expected_version=details.get("expected_version"),
            current_version=details.get("current_version"),
            **batch,
        )


class BackendUnavailableError(MemoryStoreError):
    """The backend cannot be reached or cannot give the durability asked for. Retry later."""

    code = "backend_unavailable"
    http_status = 503


class ServiceUnreachableError(BackendUnavailableError):
    """``MemoryClient`` could not get an answer from the service at all (connection
    refused, host name not found, no answer in time): the service, not its backend, is
    out of reach. Raised by the client only; a subclass so that code catching
    ``BackendUnavailableError`` (retry later) keeps working. A request that timed out may
    still have been applied."""

    code = "service_unreachable"


class ConfigurationError(MemoryStoreError):
    """Settings are invalid or name a backend/driver that is not installed."""

    code = "configuration_error"
    http_status = 503


class AuthenticationError(MemoryStoreError):
    """No bearer token, or one that matches no configured token (HTTP 401)."""

    code = "unauthorized"
    http_status = 401

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any]) -> MemoryStoreError:
        # Whether the token was wrong travels in WWW-Authenticate, not in the body.
        return cls(message)


class PermissionDeniedError(MemoryStoreError):
    """The token is valid but lacks the role or the namespace the request needs (403).

    Answered before any data is read, with the same body whether or not the namespace
    holds anything, so it is never an oracle for another tenant's data."""

    code = "forbidden"
    http_status = 403


class QuotaExceededError(MemoryStoreError):
    """The namespace's quota (entities or bytes) would be exceeded by this write (403)."""

    code = "quota_exceeded"
    http_status = 403


class RateLimitedError(MemoryStoreError):
    """Too many requests for this token; retry after ``retry_after`` seconds (429)."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after

    @classmethod
    def from_details(cls, message: str, details: Mapping[str, Any]) -> MemoryStoreError:
        retry_after = details.get("retry_after", 1)
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | float):
            retry_after = 1
        return cls(message, retry_after=float(retry_after))


class RequestTimeoutError(MemoryStoreError):
    """The request took longer than the server's handler timeout (504). A timed-out write
    may or may not have been applied; writes are safe to retry (ids, If-Match)."""

    code = "timeout"
    http_status = 504


class NamespaceImportingError(MemoryStoreError):
    """An import into the namespace has begun and not finished: until it commits, every
    replica answers this instead of a half-imported namespace (409). Running the same
    import again finishes it (imports are idempotent)."""

    code = "namespace_importing"
    http_status = 409


class NamespaceNotEmptyError(MemoryStoreError):
    """An import into a namespace that already holds data, without ``replace`` (409)."""

    code = "namespace_not_empty"
    http_status = 409


class AlreadyExistsError(MemoryStoreError):
    """A name that must be new is taken (a namespace's snapshot of that name exists): 409."""

    code = "already_exists"
    http_status = 409


class DumpInvalidError(InvalidInputError):
    """An export dump that is malformed, truncated, or fails its checksum or counts: it
    is refused and nothing of it is visible (400)."""

    code = "invalid_dump"


#: Every error type, each with its own ``code``: the one code -> class table.
ERROR_TYPES: tuple[type[MemoryStoreError], ...] = (
    MemoryStoreError,
    InvalidInputError,
    PayloadTooLargeError,
    NotFoundError,
    ChangesPrunedError,
    DataShreddedError,
    PayloadUnreadableError,
    ConflictError,
    BackendUnavailableError,
    ServiceUnreachableError,
    ConfigurationError,
    AuthenticationError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
    NamespaceImportingError,
    NamespaceNotEmptyError,
    AlreadyExistsError,
    DumpInvalidError,
)

_BY_CODE: dict[str, type[MemoryStoreError]] = {cls.code: cls for cls in ERROR_TYPES}

#: For a code this version does not know: the class that owns the HTTP status. A 502/504
#: without a known code comes from something between client and service (a proxy or a
#: load balancer) and says the service could not be reached.
CLOSEST_BY_STATUS: dict[int, type[MemoryStoreError]] = {
    400: InvalidInputError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: NamespaceImportingError,
    410: ChangesPrunedError,
    412: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    502: BackendUnavailableError,
    503: BackendUnavailableError,
    504: BackendUnavailableError,
}


def error_type(code: str) -> type[MemoryStoreError] | None:
    """The class whose ``code`` this is, or ``None``."""
    return _BY_CODE.get(code)


def error_from_wire(
    status: int, body: Mapping[str, Any], *, retry_after: str | None = None
) -> MemoryStoreError:
    """The exception for an HTTP error answer: by the body's ``code`` when it is one of
    ours, else the closest class for ``status`` (see the module docstring).
    ``retry_after``: the ``Retry-After`` header, for a 429 whose body does not say."""
    code = body.get("code")
    message = str(body.get("message") or f"HTTP {status}")
    raw_details = body.get("details")
    details = dict(raw_details) if isinstance(raw_details, Mapping) else {}
    if status == 429 and "retry_after" not in details and retry_after is not None:
        with contextlib.suppress(ValueError):  # not a number of seconds: the default
            details["retry_after"] = float(retry_after)
    cls = error_type(code) if isinstance(code, str) else None
    if cls is not None:
        return cls.from_details(message, details)
    closest = CLOSEST_BY_STATUS.get(status)
    if closest is None:
        closest = InvalidInputError if 400 <= status < 500 else MemoryStoreError
    error = closest.from_details(message, details)
    if isinstance(code, str) and code:
        error.code = code  # kept, so a caller can still tell it apart
    return error

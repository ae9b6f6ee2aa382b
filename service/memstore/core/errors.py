"""The project's own error types.

Backends, the manager and the HTTP client raise only these (drivers' exceptions are
wrapped with ``raise ... from exc``). The HTTP layer maps them to status codes in exactly
one place (``memstore.server.errors``); the client maps status codes back to these types, so
in-process and remote callers handle the same exceptions.

Messages must never contain secrets or entity payloads: they reach logs and clients.
"""

from __future__ import annotations

from typing import Any


class MemoryStoreError(Exception):
    """Base class. ``code`` is stable and machine-readable; the message is for humans."""

    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInputError(MemoryStoreError):
    """The caller sent something malformed: a bad id, a wrong JSON type, a bad cursor."""

    code = "invalid_input"


class PayloadTooLargeError(InvalidInputError):
    code = "payload_too_large"


class NotFoundError(MemoryStoreError):
    code = "not_found"


class ConflictError(MemoryStoreError):
    """Optimistic concurrency failed: the stored version is not the expected one."""

    code = "version_conflict"

    def __init__(
        self, message: str, *, expected_version: int | None, current_version: int | None
    ) -> None:
        super().__init__(
            message, expected_version=expected_version, current_version=current_version
        )
        self.expected_version = expected_version
        self.current_version = current_version


class BackendUnavailableError(MemoryStoreError):
    """The backend cannot be reached or cannot give the durability asked for. Retry later."""

    code = "backend_unavailable"


class ConfigurationError(MemoryStoreError):
    """Settings are invalid or name a backend/driver that is not installed."""

    code = "configuration_error"


class AuthenticationError(MemoryStoreError):
    """No bearer token, or one that matches no configured token (HTTP 401)."""

    code = "unauthorized"

    def __init__(self, message: str, *, invalid_token: bool = False) -> None:
        super().__init__(message)
        self.invalid_token = invalid_token


class PermissionDeniedError(MemoryStoreError):
    """The token is valid but lacks the role or the namespace the request needs (403).

    Answered before any data is read, with the same body whether or not the namespace
    holds anything, so it is never an oracle for another tenant's data."""

    code = "forbidden"


class QuotaExceededError(MemoryStoreError):
    """The namespace's quota (entities or bytes) would be exceeded by this write (403)."""

    code = "quota_exceeded"


class RateLimitedError(MemoryStoreError):
    """Too many requests for this token; retry after ``retry_after`` seconds (429)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


class RequestTimeoutError(MemoryStoreError):
    """The request took longer than the server's handler timeout (504). A timed-out write
    may or may not have been applied; writes are safe to retry (ids, If-Match)."""

    code = "timeout"

"""The project's own error types.

Backends, the manager and the HTTP client raise only these (drivers' exceptions are
wrapped with ``raise ... from exc``). The HTTP layer maps them to status codes in exactly
one place (``memstore.api.errors``); the client maps status codes back to these types, so
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

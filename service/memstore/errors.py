"""The error types users catch; defined in ``memstore.core.errors`` (this name is public)."""

from memstore.core.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MemoryStoreError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
    ServiceUnreachableError,
)

__all__ = [
    "AuthenticationError",
    "BackendUnavailableError",
    "ConfigurationError",
    "ConflictError",
    "InvalidInputError",
    "MemoryStoreError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServiceUnreachableError",
]

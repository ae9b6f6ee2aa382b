"""memstore: distributed memory for AI agents.

The public names are the seed's vocabulary: ``DistributedMemoryManager``,
``DistributedMemoryBackend``, ``DistributedMemoryFactory``, ``MemoryClient`` for the HTTP
service, ``Settings``, the error types both raise, and the items of batch writes
(``EntityWrite``, ``MessagesWrite``). Importing this package opens no
connection and imports no driver.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

__version__ = version("memstore")

__all__ = [
    "AuthenticationError",
    "BackendUnavailableError",
    "ConfigurationError",
    "ConflictError",
    "DistributedMemoryBackend",
    "DistributedMemoryFactory",
    "DistributedMemoryManager",
    "EntityWrite",
    "InvalidInputError",
    "MemoryClient",
    "MemoryStoreError",
    "MessagesWrite",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServiceUnreachableError",
    "Settings",
]

if TYPE_CHECKING:
    from memstore.backends.base import DistributedMemoryBackend
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.client import MemoryClient
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
    from memstore.core.records import EntityWrite, MessagesWrite
    from memstore.core.settings import Settings
    from memstore.memory.manager import DistributedMemoryManager

_LAZY = {
    "MemoryStoreError": "memstore.core.errors",
    "InvalidInputError": "memstore.core.errors",
    "PayloadTooLargeError": "memstore.core.errors",
    "NotFoundError": "memstore.core.errors",
    "ConflictError": "memstore.core.errors",
    "BackendUnavailableError": "memstore.core.errors",
    "ConfigurationError": "memstore.core.errors",
    "AuthenticationError": "memstore.core.errors",
    "PermissionDeniedError": "memstore.core.errors",
    "QuotaExceededError": "memstore.core.errors",
    "RateLimitedError": "memstore.core.errors",
    "RequestTimeoutError": "memstore.core.errors",
    "ServiceUnreachableError": "memstore.core.errors",
    "DistributedMemoryBackend": "memstore.backends.base",
    "DistributedMemoryFactory": "memstore.backends.factory",
    "DistributedMemoryManager": "memstore.memory.manager",
    "MemoryClient": "memstore.client",
    "Settings": "memstore.core.settings",
    "EntityWrite": "memstore.core.records",
    "MessagesWrite": "memstore.core.records",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import memstore` stays cheap (the CLI imports it on every call).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)

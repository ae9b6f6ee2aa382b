"""memstore: distributed memory for AI agents.

The public names are the seed's vocabulary: ``DistributedMemoryManager``,
``DistributedMemoryBackend``, ``DistributedMemoryFactory``, and ``MemoryClient`` for the
HTTP service. Importing this package opens no connection and imports no driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DistributedMemoryBackend",
    "DistributedMemoryFactory",
    "DistributedMemoryManager",
    "MemoryClient",
    "Settings",
]

if TYPE_CHECKING:
    from memstore.backends.base import DistributedMemoryBackend
    from memstore.backends.factory import DistributedMemoryFactory
    from memstore.client import MemoryClient
    from memstore.config import Settings
    from memstore.manager import DistributedMemoryManager

_LAZY = {
    "DistributedMemoryBackend": "memstore.backends.base",
    "DistributedMemoryFactory": "memstore.backends.factory",
    "DistributedMemoryManager": "memstore.manager",
    "MemoryClient": "memstore.client",
    "Settings": "memstore.config",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `import memstore` stays cheap (the CLI imports it on every call).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)

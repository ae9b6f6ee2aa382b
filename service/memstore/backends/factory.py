"""``DistributedMemoryFactory``: picks a backend by name, importing its driver lazily.

The embedded default must work with neither redis-py nor PyMongo installed, so backend
modules are imported here only when selected.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from memstore.core.errors import ConfigurationError

if TYPE_CHECKING:
    from memstore.backends.base import DistributedMemoryBackend
    from memstore.core.settings import Settings

# name -> (module, class). "redis-cluster" is accepted as a synonym for the Redis backend
# pointed at a cluster; the backend itself decides from its settings.
_BACKENDS: dict[str, tuple[str, str, str]] = {
    "embedded": ("memstore.backends.embedded", "EmbeddedMemoryBackend", ""),
    "redis": ("memstore.backends.redis", "RedisMemoryBackend", "redis"),
    "mongodb": ("memstore.backends.mongodb", "MongoDBMemoryBackend", "mongodb"),
}


class DistributedMemoryFactory:
    @staticmethod
    def available() -> list[str]:
        return sorted(_BACKENDS)

    @staticmethod
    def create_memory_backend(settings: Settings) -> DistributedMemoryBackend:
        """Build (not connect) the backend named by ``settings.memory_type``; with
        ``MEMSTORE_SECONDARY_BACKEND`` set, that one replicated to the secondary.

        Compression and encryption at rest, when configured, wrap the outermost backend
        once: a replicated store seals above the replication, so the replicator copies
        ciphertext and the wrapped data keys (namespace ``_keys``) as they are stored, and
        shredding a key deletes it on the primary, whence the deletion replicates."""
        from memstore.backends.sealed import build_sealed

        primary = DistributedMemoryFactory.create_single_backend(settings)
        if settings.secondary_backend is None:
            return build_sealed(primary, settings)
        from memstore.backends.replicated import ReplicatedMemoryBackend

        secondary = DistributedMemoryFactory.create_single_backend(settings.secondary_settings())
        return build_sealed(ReplicatedMemoryBackend(settings, primary, secondary), settings)

    @staticmethod
    def create_single_backend(settings: Settings) -> DistributedMemoryBackend:
        """Build the backend named by ``settings.memory_type`` alone, unsealed."""
        try:
            module_name, class_name, extra = _BACKENDS[settings.memory_type]
        except KeyError:
            raise ConfigurationError(
                f"unknown MEMORY_TYPE {settings.memory_type!r}; "
                f"choose one of {', '.join(sorted(_BACKENDS))}"
            ) from None
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f" (pip install 'memstore[{extra}]')" if extra else ""
            raise ConfigurationError(
                f"backend {settings.memory_type!r} is not available: {exc}{hint}"
            ) from exc
        backend_cls: type[DistributedMemoryBackend] = getattr(module, class_name)
        return backend_cls(settings)

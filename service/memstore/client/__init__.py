"""The HTTP client: ``MemoryClient`` speaks to a memstore service under the manager's names."""

from memstore.client.memory_client import MemoryClient
from memstore.client.versions import VersionTracker

__all__ = ["MemoryClient", "VersionTracker"]

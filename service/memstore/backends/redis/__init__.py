"""Redis backend (standalone and Redis Cluster). The factory imports this package lazily;
redis-py is imported only here and below."""

from memstore.backends.redis.backend import RedisMemoryBackend

__all__ = ["RedisMemoryBackend"]

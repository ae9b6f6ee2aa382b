"""MongoDB backend on PyMongo's native async API (``pymongo.AsyncMongoClient``).

Motor is deprecated in favour of this API (same maintainers), so it is not used.
``codec`` and ``schema`` are pure (no driver import); ``backend`` holds the driver.
"""

from memstore.backends.mongodb.backend import MongoDBMemoryBackend

__all__ = ["MongoDBMemoryBackend"]

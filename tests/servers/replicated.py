"""A replicated backend for the contract suite: Redis (the shared server) as the primary,
FerretDB as the secondary. The contract holds through it exactly as on its primary."""

from __future__ import annotations

import uuid

import pytest

from memstore.core.settings import Settings
from tests.servers.mongodb import FerretDB
from tests.servers.redis import LocalRedis, unique_prefix


@pytest.fixture
def redis_to_mongodb_settings(redis_server: LocalRedis, ferretdb: FerretDB) -> Settings:
    return Settings(
        memory_type="redis",
        redis_host="127.0.0.1",
        redis_port=redis_server.port,
        redis_prefix=unique_prefix(),
        secondary_backend="mongodb",
        mongodb_uri=ferretdb.uri,
        mongodb_db=f"t{uuid.uuid4().hex[:16]}",
    )

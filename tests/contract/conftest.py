"""The contract suite runs every test against every backend named here.

A backend joins by providing a ``<name>_settings`` fixture (in ``tests/servers/``) that
returns ``Settings`` pointing at a real server with a key space no other test uses, and
by adding its name to ``CONTRACT_BACKENDS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from memstore.backends.base import DistributedMemoryBackend
from memstore.backends.factory import DistributedMemoryFactory
from memstore.core.settings import Settings

CONTRACT_BACKENDS = [
    "embedded",
    "mongodb",
    "redis",
    "redis_cluster",
    # over mutual TLS as an ACL user limited to the test prefixes' keys and channels
    "redis_mtls",
    "redis_tls_cluster",
    # the replicated backend (primary Redis, secondary FerretDB) through its primary
    "redis_to_mongodb",
]


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend_settings(request: pytest.FixtureRequest) -> Settings:
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    return settings


@pytest.fixture
async def backend(backend_settings: Settings) -> AsyncIterator[DistributedMemoryBackend]:
    instance = DistributedMemoryFactory.create_memory_backend(backend_settings)
    await instance.connect()
    try:
        yield instance
    finally:
        await instance.close()

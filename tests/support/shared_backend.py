"""The environment that points a real ``memstore serve`` at a test's shared backend, so
several processes (replicas) use one store."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Backends several service processes can share in tests.
SHARED_BACKENDS = ("embedded", "redis", "redis_cluster", "mongodb")


def backend_env(request: pytest.FixtureRequest, backend: str, shared_dir: Path) -> dict[str, str]:
    """``MEMORY_TYPE`` and the connection settings of ``backend`` (one of
    :data:`SHARED_BACKENDS`; embedded: a file in ``shared_dir`` opened in shared mode)."""
    if backend == "embedded":
        return {
            "MEMORY_TYPE": "embedded",
            "MEMSTORE_DATA_PATH": str(shared_dir / "shared.db"),
            "MEMSTORE_EMBEDDED_SHARED": "true",
        }
    if backend == "mongodb":
        settings = request.getfixturevalue("mongodb_settings")
        return {
            "MEMORY_TYPE": "mongodb",
            "MONGODB_URI": settings.mongodb_uri.get_secret_value(),
            "MONGODB_DB": settings.mongodb_db,
        }
    settings = request.getfixturevalue(f"{backend}_settings")
    env = {"MEMORY_TYPE": "redis", "REDIS_PREFIX": str(settings.redis_prefix)}
    if settings.redis_cluster_nodes:
        env["MEMSTORE_REDIS_CLUSTER_NODES"] = settings.redis_cluster_nodes
    else:
        env["REDIS_HOST"], env["REDIS_PORT"] = settings.redis_host, str(settings.redis_port)
    return env

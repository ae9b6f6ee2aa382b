"""The secondary backend's settings: the primary's, each backend variable overridable
under ``MEMSTORE_SECONDARY_``."""

from __future__ import annotations

import pytest

from memstore.core.errors import ConfigurationError
from memstore.core.settings import Settings


def test_backend_variables_are_overridden_under_the_prefix() -> None:
    primary = Settings(
        memory_type="redis",
        redis_host="a.example",
        redis_cluster_nodes="",
        secondary_backend="redis",
        failure_mode="lenient",
    )
    secondary = primary.secondary_settings(
        {
            "MEMSTORE_SECONDARY_REDIS_CLUSTER_NODES": "b:1,c:2",
            "MEMSTORE_SECONDARY_REDIS_PASSWORD": "pw",
            "MEMSTORE_SECONDARY_REDIS_PREFIX": "copy:",
            "MEMSTORE_SECONDARY_MAX_BODY_BYTES": "1",  # not a backend setting: shared
        }
    )
    assert secondary.memory_type == "redis"
    assert secondary.redis_cluster_nodes == "b:1,c:2"
    assert secondary.redis_password is not None
    assert secondary.redis_password.get_secret_value() == "pw"
    assert secondary.effective_redis_prefix == "copy:"
    assert secondary.redis_host == "a.example"  # not overridden: the primary's
    assert secondary.max_body_bytes == primary.max_body_bytes
    assert secondary.secondary_backend is None
    assert "pw" not in repr(secondary)


def test_a_secondary_that_is_the_primary_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="the secondary backend is the primary itself"):
        Settings(memory_type="redis", secondary_backend="redis").secondary_settings({})
    with pytest.raises(ConfigurationError, match="MEMSTORE_SECONDARY_BACKEND is not set"):
        Settings().secondary_settings({})


def test_an_unknown_secondary_or_mode_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="secondary_backend"):
        Settings(secondary_backend="cassandra")
    with pytest.raises(ValueError, match="failure_mode"):
        Settings(failure_mode="sometimes")

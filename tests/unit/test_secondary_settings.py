"""The secondary backend's settings: the primary's, each backend variable overridable
under ``MEMSTORE_SECONDARY_``."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize(
    ("primary", "secondary_env"),
    [
        # only how the store is used differs, not which store it is
        ({"memory_type": "redis"}, {"MEMSTORE_SECONDARY_REDIS_SOCKET_TIMEOUT_SECONDS": "9"}),
        ({"memory_type": "embedded"}, {"MEMSTORE_SECONDARY_EMBEDDED_PAGE_SIZE": "16384"}),
        ({"memory_type": "embedded"}, {"MEMSTORE_SECONDARY_EMBEDDED_SYNCHRONOUS": "full"}),
        # the same URI given again under the prefix
        (
            {"memory_type": "mongodb", "mongodb_uri": "mongodb://m.example:27017/"},
            {"MEMSTORE_SECONDARY_MONGODB_URI": "mongodb://m.example:27017/"},
        ),
        # a cluster ignores host and db; its nodes in another order are the same cluster
        (
            {"memory_type": "redis", "redis_cluster_nodes": "a:1,b:2"},
            {"MEMSTORE_SECONDARY_REDIS_HOST": "other", "MEMSTORE_SECONDARY_REDIS_DB": "1"},
        ),
        (
            {"memory_type": "redis", "redis_cluster_nodes": "a:1,b:2"},
            {"MEMSTORE_SECONDARY_REDIS_CLUSTER_NODES": "b:2, a:1"},
        ),
        # the same file under another spelling
        (
            {"memory_type": "embedded", "data_path": "memstore-data/memstore.db"},
            {"MEMSTORE_SECONDARY_DATA_PATH": "memstore-data/../memstore-data/memstore.db"},
        ),
    ],
)
def test_a_secondary_naming_the_primary_store_is_refused_whatever_else_differs(
    primary: dict[str, str], secondary_env: dict[str, str]
) -> None:
    settings = Settings(secondary_backend=primary["memory_type"], **primary)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="the secondary backend is the primary itself"):
        settings.secondary_settings(secondary_env)


@pytest.mark.parametrize(
    ("primary", "secondary_env"),
    [
        ({"memory_type": "redis"}, {"MEMSTORE_SECONDARY_REDIS_PORT": "6380"}),
        ({"memory_type": "redis"}, {"MEMSTORE_SECONDARY_REDIS_PREFIX": "copy:"}),
        ({"memory_type": "embedded"}, {"MEMSTORE_SECONDARY_DATA_PATH": "/tmp/other.db"}),
        ({"memory_type": "mongodb"}, {"MEMSTORE_SECONDARY_MONGODB_DB": "copy"}),
        (
            {"memory_type": "redis", "redis_cluster_nodes": "a:1,b:2"},
            {"MEMSTORE_SECONDARY_REDIS_CLUSTER_NODES": "c:3,d:4"},
        ),
    ],
)
def test_a_secondary_naming_another_store_is_taken(
    primary: dict[str, str], secondary_env: dict[str, str]
) -> None:
    settings = Settings(secondary_backend=primary["memory_type"], **primary)  # type: ignore[arg-type]
    assert settings.secondary_settings(secondary_env).memory_type == primary["memory_type"]


def test_a_primary_with_a_retention_file_has_a_secondary_with_its_policies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "retention.yaml"
    path.write_text("namespaces:\n  team-a:\n    conversation_max_messages: 500\n")
    primary = Settings(memory_type="redis", secondary_backend="mongodb", retention_file=path)
    secondary = primary.secondary_settings({})
    assert secondary.memory_type == "mongodb"
    assert secondary.retention == primary.retention
    assert secondary.retention.policy_for("team-a").conversation_max_messages == 500


def test_an_unknown_secondary_or_mode_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="secondary_backend"):
        Settings(secondary_backend="cassandra")
    with pytest.raises(ValueError, match="failure_mode"):
        Settings(failure_mode="sometimes")

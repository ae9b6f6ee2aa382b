"""All settings, in one place, built once at start-up and passed down explicitly.

The seed's environment variables keep their names and defaults (``MEMORY_TYPE``,
``REDIS_*``, ``MONGODB_*``, ``MEMORY_NAMESPACE``); settings the seed did not have are
named ``MEMSTORE_*``. Nothing here opens a connection. Secrets are ``SecretStr`` so they
never show in a repr or a log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BackendName = Literal["embedded", "redis", "mongodb"]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Service settings. Field names are the Python names; aliases are the env names."""

    model_config = SettingsConfigDict(
        env_file=None, populate_by_name=True, extra="ignore", frozen=True
    )

    # -- seed variables -----------------------------------------------------------------
    memory_type: BackendName = Field("embedded", validation_alias=_env("MEMORY_TYPE"))
    memory_namespace: str = Field("agent", validation_alias=_env("MEMORY_NAMESPACE"))
    redis_host: str = Field("localhost", validation_alias=_env("REDIS_HOST"))
    redis_port: int = Field(6379, ge=1, le=65535, validation_alias=_env("REDIS_PORT"))
    redis_db: int = Field(0, ge=0, validation_alias=_env("REDIS_DB"))
    redis_password: SecretStr | None = Field(None, validation_alias=_env("REDIS_PASSWORD"))
    # None means "<namespace>:" as in the seed's implementation.
    redis_prefix: str | None = Field(None, validation_alias=_env("REDIS_PREFIX"))
    mongodb_uri: SecretStr = Field(
        SecretStr("mongodb://localhost:27017/"), validation_alias=_env("MONGODB_URI")
    )
    mongodb_db: str = Field("agent_memory", validation_alias=_env("MONGODB_DB"))

    # -- service ------------------------------------------------------------------------
    host: str = Field("127.0.0.1", validation_alias=_env("MEMSTORE_HOST"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("MEMSTORE_PORT"))
    data_path: Path = Field(
        Path("memstore-data/memstore.db"), validation_alias=_env("MEMSTORE_DATA_PATH")
    )
    # "normal" survives a process crash (WAL); "full" also survives power loss.
    embedded_synchronous: Literal["normal", "full"] = Field(
        "normal", validation_alias=_env("MEMSTORE_EMBEDDED_SYNCHRONOUS")
    )
    cache_ttl_seconds: float = Field(
        30.0, ge=0, le=3600, validation_alias=_env("MEMSTORE_CACHE_TTL_SECONDS")
    )
    cache_max_entries: int = Field(
        10_000, ge=0, validation_alias=_env("MEMSTORE_CACHE_MAX_ENTRIES")
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, validation_alias=_env("MEMSTORE_MAX_BODY_BYTES")
    )
    max_page_size: int = Field(
        500, ge=1, le=10_000, validation_alias=_env("MEMSTORE_MAX_PAGE_SIZE")
    )
    default_page_size: int = Field(
        50, ge=1, le=10_000, validation_alias=_env("MEMSTORE_DEFAULT_PAGE_SIZE")
    )
    max_messages_per_request: int = Field(
        1000, ge=1, validation_alias=_env("MEMSTORE_MAX_MESSAGES_PER_REQUEST")
    )
    shutdown_timeout_seconds: float = Field(
        15.0, ge=0, validation_alias=_env("MEMSTORE_SHUTDOWN_TIMEOUT_SECONDS")
    )
    log_level: str = Field("INFO", validation_alias=_env("MEMSTORE_LOG_LEVEL"))

    @field_validator("memory_type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if value is None or value == "":
            return "embedded"
        return str(value).strip().lower()

    @property
    def effective_redis_prefix(self) -> str:
        return self.redis_prefix if self.redis_prefix is not None else f"{self.memory_namespace}:"

    @classmethod
    def from_seed_config(
        cls, memory_type: str | None, config: dict[str, Any] | None, namespace: str | None
    ) -> Settings:
        """Build settings from the seed's ``DistributedMemoryManager`` arguments.

        Environment variables fill in what ``config`` leaves out. The seed's config keys
        (``host``, ``port``, ``db``, ``password``, ``prefix``; for MongoDB
        ``connection_string``/``database_name`` or ``uri``/``db``) are accepted.
        """
        config = dict(config or {})
        overrides: dict[str, Any] = {}
        if memory_type is not None:
            overrides["memory_type"] = memory_type
        if namespace is not None:
            overrides["memory_namespace"] = namespace
        kind = str(memory_type or "").lower()
        keymap: dict[str, str]
        if kind == "mongodb":
            keymap = {
                "connection_string": "mongodb_uri",
                "uri": "mongodb_uri",
                "database_name": "mongodb_db",
                "db": "mongodb_db",
                "database": "mongodb_db",
            }
        elif kind == "redis":
            keymap = {
                "host": "redis_host",
                "port": "redis_port",
                "db": "redis_db",
                "password": "redis_password",
                "prefix": "redis_prefix",
            }
        else:
            keymap = {"path": "data_path", "data_path": "data_path"}
        for key, value in config.items():
            field = keymap.get(key, key)
            if field not in cls.model_fields:
                from memstore.errors import ConfigurationError

                raise ConfigurationError(f"unknown config key {key!r} for {kind or 'embedded'}")
            overrides[field] = value
        return cls(**overrides)

    # -- mongodb (issue 4) --------------------------------------------------------------
    # Shard the collections (MONGODB_URI must point at mongos); see docs/architecture.md.
    mongodb_sharding: bool = Field(False, validation_alias=_env("MEMSTORE_MONGODB_SHARDING"))
    # "majority" or a number of members (>= 1: unacknowledged writes could not report
    # conflicts or duplicates); retryable writes make a driver retry exactly-once.
    mongodb_write_concern: str = Field(
        "majority",
        pattern=r"^(majority|[1-9][0-9]*)$",
        validation_alias=_env("MEMSTORE_MONGODB_WRITE_CONCERN"),
    )
    mongodb_journal: bool = Field(True, validation_alias=_env("MEMSTORE_MONGODB_JOURNAL"))
    mongodb_retry_writes: bool = Field(True, validation_alias=_env("MEMSTORE_MONGODB_RETRY_WRITES"))
    # Multi-document transactions for append/replace/delete of conversations. "auto": on
    # for a replica set or mongos, off for a standalone server (which cannot run them).
    mongodb_transactions: Literal["auto", "on", "off"] = Field(
        "auto", validation_alias=_env("MEMSTORE_MONGODB_TRANSACTIONS")
    )
    mongodb_max_pool_size: int = Field(
        100, ge=1, validation_alias=_env("MEMSTORE_MONGODB_MAX_POOL_SIZE")
    )
    # Client-side operation timeout (PyMongo timeoutMS: covers selection, retries, I/O).
    mongodb_timeout_ms: int = Field(
        10_000, ge=1, validation_alias=_env("MEMSTORE_MONGODB_TIMEOUT_MS")
    )
    mongodb_server_selection_timeout_ms: int = Field(
        5_000, ge=1, validation_alias=_env("MEMSTORE_MONGODB_SERVER_SELECTION_TIMEOUT_MS")
    )

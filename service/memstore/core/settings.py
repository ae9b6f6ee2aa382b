"""All settings, in one place, built once at start-up and passed down explicitly.

One slice per component (``ServerSettings``, ``RedisSettings``, ...), each a
pydantic-settings class with the env names below; ``Settings`` composes them.

The seed's environment variables keep their names and defaults (``MEMORY_TYPE``,
``REDIS_*``, ``MONGODB_*``, ``MEMORY_NAMESPACE``); settings the seed did not have are
named ``MEMSTORE_*``. Nothing here opens a connection. Secrets are ``SecretStr`` so they
never show in a repr or a log line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    DirectoryPath,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from memstore.core import bounds
from memstore.core.retention import RetentionConfig

BackendName = Literal["embedded", "redis", "mongodb"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class _Slice(BaseSettings):
    """One component's settings. Field names are the Python names; aliases are the env names."""

    # Errors never quote the input: it is the whole environment, passwords and keys included.
    model_config = SettingsConfigDict(
        env_file=None, populate_by_name=True, extra="ignore", frozen=True, hide_input_in_errors=True
    )


class StoreSettings(_Slice):
    """Which backend holds the memory, the default namespace (the seed's names), and the
    largest payload it stores."""

    memory_type: BackendName = Field("embedded", validation_alias=_env("MEMORY_TYPE"))
    memory_namespace: str = Field("agent", validation_alias=_env("MEMORY_NAMESPACE"))
    # The largest request body, and so the largest JSON payload a backend is asked to store.
    max_body_bytes: Annotated[int, bounds.BODY_BYTES] = Field(
        1_048_576, validation_alias=_env("MEMSTORE_MAX_BODY_BYTES")
    )
    # Change-log retention per namespace: events older than this many seconds, and all
    # but the newest ``changes_max_events``, are removed when the log is trimmed.
    changes_retention_seconds: Annotated[float, bounds.TTL_SECONDS] = Field(
        7 * 24 * 3600.0, validation_alias=_env("MEMSTORE_CHANGES_RETENTION_SECONDS")
    )
    changes_max_events: int = Field(
        100_000, ge=1, validation_alias=_env("MEMSTORE_CHANGES_MAX_EVENTS")
    )
    # A change-feed reader waiting for news reads the log again after this long even when
    # nothing woke it: the bound on its latency for changes this process does not hear of
    # (writes through other replicas without an invalidation bus, e.g. on MongoDB; tool
    # uses and feedback anywhere).
    changes_poll_seconds: Annotated[float, bounds.POLL_SECONDS] = Field(
        0.5, validation_alias=_env("MEMSTORE_CHANGES_POLL_SECONDS")
    )

    # At rest (memstore.backends.sealed): payloads whose compact JSON has at least this
    # many bytes are stored zstd-compressed; 0 = compression off (the default: a release
    # before this one cannot read compressed values, so turning it on is a deliberate step).
    compression_min_bytes: int = Field(
        0, ge=0, validation_alias=_env("MEMSTORE_COMPRESSION_MIN_BYTES")
    )
    # A file of key-encryption keys (a mounted Kubernetes Secret): set, every payload is
    # encrypted with its namespace's data key. Only the path is a setting; the keys are read
    # by the backend at start-up and never held here.
    encryption_key_file: FilePath | None = Field(
        None, validation_alias=_env("MEMSTORE_ENCRYPTION_KEY_FILE")
    )
    # How long a replica keeps an unwrapped data key: the bound on how long another
    # replica without an invalidation bus (MongoDB) still reads a just-shredded namespace.
    data_key_cache_seconds: float = Field(
        10.0, ge=0, le=3600, validation_alias=_env("MEMSTORE_DATA_KEY_CACHE_SECONDS")
    )

    @field_validator("memory_type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if value is None or value == "":
            return "embedded"
        return str(value).strip().lower()


class EmbeddedSettings(StoreSettings):
    """The embedded (SQLite) backend."""

    data_path: Path = Field(
        Path("memstore-data/memstore.db"), validation_alias=_env("MEMSTORE_DATA_PATH")
    )
    # "normal" survives a process crash (WAL); "full" also survives power loss.
    embedded_synchronous: Literal["normal", "full"] = Field(
        "normal", validation_alias=_env("MEMSTORE_EMBEDDED_SYNCHRONOUS")
    )
    # One process owns the file (a second one is refused): each process's read cache
    # only hears of its own writes. True lets several processes open it, each of them
    # serving the others' writes up to the cache TTL late.
    embedded_shared: bool = Field(False, validation_alias=_env("MEMSTORE_EMBEDDED_SHARED"))
    # SQLite's page size for a file this process creates (an existing file keeps its own).
    # 8 KiB keeps a row of up to ~2 KB (a 1 KB entity and its key) on its B-tree leaf; with
    # SQLite's 4 KiB default such a row spills to an overflow page of its own, so a 1 KB
    # entity takes ~4.7 KB of file and a read one more page (bench/README.md, "Growth").
    embedded_page_size: int = Field(8192, validation_alias=_env("MEMSTORE_EMBEDDED_PAGE_SIZE"))
    # Bytes of the file each connection reads through a memory map instead of read(2)
    # calls (SQLite's mmap_size; 0 turns it off; SQLite caps it at its build's maximum).
    embedded_mmap_size: int = Field(
        1 << 31, ge=0, validation_alias=_env("MEMSTORE_EMBEDDED_MMAP_SIZE")
    )

    @field_validator("embedded_page_size")
    @classmethod
    def _sqlite_page_size(cls, value: int) -> int:
        if not 512 <= value <= 65536 or value & (value - 1):
            raise ValueError("a power of two from 512 to 65536 (SQLite's page sizes)")
        return value

    def embedded_store_key(self) -> tuple[object, ...]:
        """What names the store (the other settings tune how it is used): the file."""
        return (self.data_path.expanduser().resolve(),)


class RedisSettings(StoreSettings):
    """The Redis backend (standalone or Cluster)."""

    redis_host: str = Field("localhost", validation_alias=_env("REDIS_HOST"))
    redis_port: int = Field(6379, ge=1, le=65535, validation_alias=_env("REDIS_PORT"))
    redis_db: int = Field(0, ge=0, validation_alias=_env("REDIS_DB"))
    redis_password: SecretStr | None = Field(None, validation_alias=_env("REDIS_PASSWORD"))
    # ACL user (Redis 6+); None authenticates as "default" (with REDIS_PASSWORD if set).
    redis_username: str | None = Field(
        None, min_length=1, validation_alias=_env("MEMSTORE_REDIS_USERNAME", "REDIS_USERNAME")
    )
    # TLS on every connection (commands, cluster topology, invalidation subscriber). Also
    # on when MEMSTORE_REDIS_CLUSTER_NODES uses the rediss:// scheme.
    redis_tls: bool = Field(False, validation_alias=_env("MEMSTORE_REDIS_TLS"))
    # PEM CA bundle the server certificate must chain to; None = the system's CAs.
    redis_tls_ca_file: FilePath | None = Field(
        None, validation_alias=_env("MEMSTORE_REDIS_TLS_CA_FILE")
    )
    # Client certificate and key (PEM) for servers that require them (tls-auth-clients).
    redis_tls_cert_file: FilePath | None = Field(
        None, validation_alias=_env("MEMSTORE_REDIS_TLS_CERT_FILE")
    )
    redis_tls_key_file: FilePath | None = Field(
        None, validation_alias=_env("MEMSTORE_REDIS_TLS_KEY_FILE")
    )
    # The certificate is always verified against the CA; this also requires it to name the
    # host connected to. Off only for clusters whose nodes announce addresses their
    # certificates do not list.
    redis_tls_verify_hostname: bool = Field(
        True, validation_alias=_env("MEMSTORE_REDIS_TLS_VERIFY_HOSTNAME")
    )
    # None means "<namespace>:" as in the seed's implementation.
    redis_prefix: str | None = Field(None, validation_alias=_env("REDIS_PREFIX"))
    # Seed list "host:port,host:port"; when set the Redis backend runs in cluster mode.
    redis_cluster_nodes: str = Field("", validation_alias=_env("MEMSTORE_REDIS_CLUSTER_NODES"))
    # Durable writes: WAIT for this many replicas (0 = off); 503 when they do not ack in time.
    redis_wait_replicas: int = Field(
        0,
        ge=0,
        le=16,
        validation_alias=_env("MEMSTORE_REDIS_WAIT_REPLICAS", "MEMSTORE_REDIS_MIN_REPLICAS_ACK"),
    )
    redis_wait_timeout_ms: int = Field(
        1000, ge=1, le=60_000, validation_alias=_env("MEMSTORE_REDIS_WAIT_TIMEOUT_MS")
    )
    redis_socket_timeout_seconds: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("MEMSTORE_REDIS_SOCKET_TIMEOUT_SECONDS")
    )
    redis_connect_timeout_seconds: float = Field(
        2.0, gt=0, le=60, validation_alias=_env("MEMSTORE_REDIS_CONNECT_TIMEOUT_SECONDS")
    )
    # Attempts after the first on connection loss / failover, with jittered exponential backoff.
    redis_retries: int = Field(3, ge=0, le=20, validation_alias=_env("MEMSTORE_REDIS_RETRIES"))
    redis_retry_backoff_base_seconds: float = Field(
        0.05, gt=0, le=10, validation_alias=_env("MEMSTORE_REDIS_RETRY_BACKOFF_BASE_SECONDS")
    )
    redis_retry_backoff_cap_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("MEMSTORE_REDIS_RETRY_BACKOFF_CAP_SECONDS")
    )
    # Connections per Redis node (standalone: the whole pool; cluster: per node).
    redis_pool_size: int = Field(
        64, ge=1, le=10_000, validation_alias=_env("MEMSTORE_REDIS_POOL_SIZE")
    )
    # Index shards per (namespace, kind). Fixed for the life of the data: every replica must
    # use the same value, and changing it orphans existing keys.
    redis_index_shards: int = Field(
        16, ge=1, le=1024, validation_alias=_env("MEMSTORE_REDIS_INDEX_SHARDS")
    )
    # Tool-usage records older than this (by their timestamp) are dropped; 0 keeps them forever.
    redis_tool_usage_retention_seconds: float = Field(
        0.0, ge=0, validation_alias=_env("MEMSTORE_REDIS_TOOL_USAGE_RETENTION_SECONDS")
    )
    # PING interval on the invalidation subscription; a missed PONG counts as a drop.
    redis_pubsub_health_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("MEMSTORE_REDIS_PUBSUB_HEALTH_SECONDS")
    )

    @model_validator(mode="after")
    def _check_redis_tls(self) -> RedisSettings:
        # A TLS file without TLS would silently send the password in clear text.
        if not self.redis_tls_enabled:
            for name, value in (
                ("MEMSTORE_REDIS_TLS_CA_FILE", self.redis_tls_ca_file),
                ("MEMSTORE_REDIS_TLS_CERT_FILE", self.redis_tls_cert_file),
                ("MEMSTORE_REDIS_TLS_KEY_FILE", self.redis_tls_key_file),
            ):
                if value is not None:
                    raise ValueError(f"{name} is set but MEMSTORE_REDIS_TLS is off")
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            raise ValueError(
                "MEMSTORE_REDIS_TLS_CERT_FILE and MEMSTORE_REDIS_TLS_KEY_FILE go together"
            )
        return self

    @property
    def redis_tls_enabled(self) -> bool:
        """TLS is on: ``MEMSTORE_REDIS_TLS`` or a ``rediss://`` cluster node list."""
        return self.redis_tls or self.redis_cluster_nodes.strip().lower().startswith("rediss")

    @property
    def effective_redis_prefix(self) -> str:
        return self.redis_prefix if self.redis_prefix is not None else f"{self.memory_namespace}:"

    def redis_store_key(self) -> tuple[object, ...]:
        """What names the store: the cluster's nodes (host, port and db are not used on a
        cluster) or the server and database, and the key prefix."""
        nodes = frozenset(n.strip() for n in self.redis_cluster_nodes.split(",") if n.strip())
        if nodes:
            return ("cluster", nodes, self.effective_redis_prefix)
        return (self.redis_host, self.redis_port, self.redis_db, self.effective_redis_prefix)


class MongoDBSettings(StoreSettings):
    """The MongoDB backend."""

    mongodb_uri: SecretStr = Field(
        SecretStr("mongodb://localhost:27017/"), validation_alias=_env("MONGODB_URI")
    )
    mongodb_db: str = Field("agent_memory", validation_alias=_env("MONGODB_DB"))
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
    # 0 = not set. When set it also replaces the server selection timeout (driver rule), so
    # keep it below MEMSTORE_REQUEST_TIMEOUT_SECONDS for "backend down" to answer 503.
    mongodb_timeout_ms: int = Field(0, ge=0, validation_alias=_env("MEMSTORE_MONGODB_TIMEOUT_MS"))
    mongodb_server_selection_timeout_ms: int = Field(
        5_000, ge=1, validation_alias=_env("MEMSTORE_MONGODB_SERVER_SELECTION_TIMEOUT_MS")
    )

    def mongodb_store_key(self) -> tuple[object, ...]:
        """What names the store: the URI and the database."""
        return (self.mongodb_uri, self.mongodb_db)


class CacheSettings(_Slice):
    """The memory layer's local read cache."""

    cache_ttl_seconds: Annotated[float, bounds.CACHE_TTL_SECONDS] = Field(
        30.0, validation_alias=_env("MEMSTORE_CACHE_TTL_SECONDS")
    )
    cache_max_entries: int = Field(
        10_000, ge=0, validation_alias=_env("MEMSTORE_CACHE_MAX_ENTRIES")
    )


class L2CacheSettings(_Slice):
    """The shared second-level cache (Memcached) between the local cache and the backend:
    off unless ``MEMSTORE_L2_CACHE_URL`` names a server (docs/architecture.md, "Second-level
    cache (Memcached)")."""

    # memcached://host[:port] (default port 11211). Memcached's text protocol has no
    # authentication: the URL carries no secret.
    l2_cache_url: str | None = Field(None, validation_alias=_env("MEMSTORE_L2_CACHE_URL"))
    # How long a cached entity lives in Memcached (an entity expiring sooner, sooner).
    # Memcached reads an expiry above 30 days as a Unix time: the bound stays below.
    l2_cache_ttl_seconds: int = Field(
        300, ge=1, le=30 * 24 * 3600, validation_alias=_env("MEMSTORE_L2_CACHE_TTL_SECONDS")
    )
    # Starts every key: stores sharing one Memcached need different prefixes.
    l2_cache_prefix: str = Field(
        "memstore",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        validation_alias=_env("MEMSTORE_L2_CACHE_PREFIX"),
    )
    # One Memcached call longer than this counts as Memcached being down.
    l2_cache_timeout_seconds: float = Field(
        0.25, gt=0, le=10, validation_alias=_env("MEMSTORE_L2_CACHE_TIMEOUT_SECONDS")
    )
    l2_cache_pool_size: int = Field(
        8, ge=1, le=256, validation_alias=_env("MEMSTORE_L2_CACHE_POOL_SIZE")
    )

    @field_validator("l2_cache_url")
    @classmethod
    def _memcached_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        memcached_address(value)
        return value


def memcached_address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a ``memcached://host[:port]`` URL; ``ValueError`` naming the
    problem otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "memcached" or not parts.hostname:
        raise ValueError("MEMSTORE_L2_CACHE_URL must look like memcached://host[:port]")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ValueError("MEMSTORE_L2_CACHE_URL takes only a host and a port")
    try:
        port = parts.port or 11211
    except ValueError:
        raise ValueError("MEMSTORE_L2_CACHE_URL has an invalid port") from None
    return parts.hostname, port


class ServerSettings(_Slice):
    """The HTTP service: address, page sizes, messages per request, shutdown, logs, metrics."""

    host: str = Field("127.0.0.1", validation_alias=_env("MEMSTORE_HOST"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=_env("MEMSTORE_PORT"))
    # `memstore serve` processes sharing the port (docs/architecture.md, "Workers"); 1
    # serves in the one process, with no supervisor.
    workers: int = Field(1, ge=1, le=64, validation_alias=_env("MEMSTORE_WORKERS"))
    # Prometheus metrics (/metrics and the HTTP/backend series). Tracing is configured by the
    # standard OTEL_* variables instead (see memstore.observability.tracing).
    metrics_enabled: bool = Field(True, validation_alias=_env("MEMSTORE_METRICS_ENABLED"))
    max_page_size: Annotated[int, bounds.PAGE_SIZE] = Field(
        500, validation_alias=_env("MEMSTORE_MAX_PAGE_SIZE")
    )
    default_page_size: Annotated[int, bounds.PAGE_SIZE] = Field(
        50, validation_alias=_env("MEMSTORE_DEFAULT_PAGE_SIZE")
    )
    max_messages_per_request: Annotated[int, bounds.MESSAGES_PER_REQUEST] = Field(
        1000, validation_alias=_env("MEMSTORE_MAX_MESSAGES_PER_REQUEST")
    )
    shutdown_timeout_seconds: float = Field(
        15.0, ge=0, validation_alias=_env("MEMSTORE_SHUTDOWN_TIMEOUT_SECONDS")
    )
    # The change feed (GET .../changes): a comment line on a quiet event stream this often
    # (proxies close idle connections; the client notices a dead one), and the longest
    # `wait` a long-poll may ask for.
    changes_keepalive_seconds: Annotated[float, bounds.KEEPALIVE_SECONDS] = Field(
        15.0, validation_alias=_env("MEMSTORE_CHANGES_KEEPALIVE_SECONDS")
    )
    changes_max_wait_seconds: Annotated[float, bounds.LONG_POLL_SECONDS] = Field(
        30.0, validation_alias=_env("MEMSTORE_CHANGES_MAX_WAIT_SECONDS")
    )
    # Checked here, so an unknown level is a one-line settings error rather than a
    # traceback from the logging module later.
    log_level: LogLevel = Field("INFO", validation_alias=_env("MEMSTORE_LOG_LEVEL"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        # Any case, as the logging module takes it; an unknown level is refused at start.
        return value.strip().upper() if isinstance(value, str) else value


class SecuritySettings(_Slice):
    """Request policies (see docs/architecture.md, "Security"): auth, rate limits,
    in-flight caps, quotas, the request deadline, the audit of reads."""

    # Off is the developer default (`make run`); then only a loopback bind is allowed.
    auth_enabled: bool = Field(False, validation_alias=_env("MEMSTORE_AUTH_ENABLED"))
    # JSON {"tokens": [{"name", "sha256", "namespaces", "roles"}]}, mounted from a Secret.
    auth_tokens_file: Path | None = Field(None, validation_alias=_env("MEMSTORE_AUTH_TOKENS_FILE"))
    # Serve without auth on a non-loopback address anyway (e.g. behind an authenticating
    # proxy). Logged as a warning at start.
    allow_insecure_bind: bool = Field(False, validation_alias=_env("MEMSTORE_ALLOW_INSECURE_BIND"))
    # Per token (per client address when auth is off), per replica; 0 turns it off.
    rate_limit_rps: float = Field(0.0, ge=0, validation_alias=_env("MEMSTORE_RATE_LIMIT_RPS"))
    # Bucket size; 0 means twice the rate (at least 1).
    rate_limit_burst: int = Field(0, ge=0, validation_alias=_env("MEMSTORE_RATE_LIMIT_BURST"))
    # Requests one token (client address with auth off) may have in flight on a replica;
    # more get 429 at once, so a caller with many slow requests cannot hold every slot.
    max_inflight_per_caller: int = Field(
        0, ge=0, validation_alias=_env("MEMSTORE_MAX_INFLIGHT_PER_CALLER")
    )
    # Per namespace; 0 turns a quota off.
    quota_max_entities: int = Field(0, ge=0, validation_alias=_env("MEMSTORE_QUOTA_MAX_ENTITIES"))
    quota_max_bytes: int = Field(0, ge=0, validation_alias=_env("MEMSTORE_QUOTA_MAX_BYTES"))
    # How long a namespace's exact usage (read from the backend) is trusted before it is
    # read again; writes in between are added locally.
    quota_refresh_seconds: float = Field(
        10.0, ge=0, validation_alias=_env("MEMSTORE_QUOTA_REFRESH_SECONDS")
    )
    # Whole-request budget (body read + handler); 0 turns it off.
    request_timeout_seconds: float = Field(
        30.0, ge=0, validation_alias=_env("MEMSTORE_REQUEST_TIMEOUT_SECONDS")
    )
    # One JSON log line (logger memstore.audit) per read of a namespace: who, from where,
    # which operation and keys, never payloads. Logs, not the change log: a read must not
    # cost a write.
    audit_reads: bool = Field(False, validation_alias=_env("MEMSTORE_AUDIT_READS"))


class InspectorSettings(_Slice):
    """The web inspector (``/ui``; see docs/architecture.md, "Inspector")."""

    # Unset: served when auth is off (a developer's loopback service), not when it is on
    # (an operator turns it on deliberately). The page holds no data of its own: it shows
    # what the API answers for the token pasted into it.
    ui_enabled: bool | None = Field(None, validation_alias=_env("MEMSTORE_UI_ENABLED"))


class McpSettings(_Slice):
    """The MCP endpoint of the HTTP service (``/mcp``; see docs/architecture.md, "MCP")."""

    # Served when the `mcp` extra (the MCP SDK) is installed; false turns /mcp off.
    mcp_enabled: bool = Field(True, validation_alias=_env("MEMSTORE_MCP_ENABLED"))
    # Host header values /mcp answers (DNS-rebinding protection), comma-separated;
    # "name:*" allows any port. Set: these and the loopback names, others are refused;
    # unset: loopback names only when listening on loopback, no check otherwise (the MCP
    # SDK's default); "*": no check (e.g. a proxy in front checks the host).
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("MEMSTORE_MCP_ALLOWED_HOSTS")
    )
    # Origin header values allowed (browsers send one); loopback origins always are.
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_env("MEMSTORE_MCP_ALLOWED_ORIGINS")
    )

    @field_validator("mcp_allowed_hosts", "mcp_allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class WebhookSettings(_Slice):
    """Delivery of change events to webhooks (see docs/architecture.md, "Webhooks")."""

    # Run the deliverer in this process (webhooks configured through the API are still
    # stored and listed when it is off; another replica delivers them).
    webhooks_enabled: bool = Field(True, validation_alias=_env("MEMSTORE_WEBHOOKS_ENABLED"))
    # JSON {"webhooks": [{"name", "namespace", "url", "secret", "kinds"?, "entity_types"?}]},
    # read at start (the operator mounts it from the MemoryStore spec's Secrets).
    webhooks_file: Path | None = Field(None, validation_alias=_env("MEMSTORE_WEBHOOKS_FILE"))
    # One delivery attempt: connect, send, and read the answer's status.
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=300, validation_alias=_env("MEMSTORE_WEBHOOK_TIMEOUT_SECONDS")
    )
    # Attempts per event (the first included); then the event is dead-lettered.
    webhook_max_attempts: int = Field(
        8, ge=1, le=100, validation_alias=_env("MEMSTORE_WEBHOOK_MAX_ATTEMPTS")
    )
    # Wait before attempt n+1: min(cap, base * 2^(n-1)), its second half drawn at random.
    webhook_backoff_base_seconds: float = Field(
        1.0, gt=0, le=3600, validation_alias=_env("MEMSTORE_WEBHOOK_BACKOFF_BASE_SECONDS")
    )
    webhook_backoff_cap_seconds: float = Field(
        300.0, gt=0, le=86_400, validation_alias=_env("MEMSTORE_WEBHOOK_BACKOFF_CAP_SECONDS")
    )
    # How long a replica's claim on a webhook lasts without renewal; at least twice the
    # attempt timeout, so an attempt always ends inside a claim renewed before it.
    webhook_lease_seconds: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("MEMSTORE_WEBHOOK_LEASE_SECONDS")
    )
    # How often an idle deliverer reads the change log, a replica without the claim tries
    # to take it, and the list of webhooks is read again.
    webhook_poll_seconds: float = Field(
        1.0, gt=0, le=600, validation_alias=_env("MEMSTORE_WEBHOOK_POLL_SECONDS")
    )

    @model_validator(mode="after")
    def _check_lease(self) -> WebhookSettings:
        if self.webhook_lease_seconds < 2 * self.webhook_timeout_seconds:
            raise ValueError(
                "MEMSTORE_WEBHOOK_LEASE_SECONDS must be at least twice"
                " MEMSTORE_WEBHOOK_TIMEOUT_SECONDS"
            )
        return self


FailureMode = Literal["strict", "lenient"]

#: The prefix of the secondary backend's own connection settings: each of the primary's
#: backend variables, its ``MEMSTORE_`` taken off, behind this (``MONGODB_URI`` ->
#: ``MEMSTORE_SECONDARY_MONGODB_URI``, ``MEMSTORE_REDIS_CLUSTER_NODES`` ->
#: ``MEMSTORE_SECONDARY_REDIS_CLUSTER_NODES``).
SECONDARY_PREFIX = "MEMSTORE_SECONDARY_"


class ReplicationSettings(_Slice):
    """A secondary backend the primary's data is replicated to, and failover to it (see
    docs/architecture.md, "Replication and failover")."""

    # The secondary's MEMORY_TYPE; unset: one backend, no replication.
    secondary_backend: BackendName | None = Field(
        None, validation_alias=_env("MEMSTORE_SECONDARY_BACKEND")
    )
    # With the primary down: "strict" refuses writes (503) until it is back; "lenient"
    # writes to the secondary and copies those writes to the primary when it returns.
    failure_mode: FailureMode = Field("strict", validation_alias=_env("MEMSTORE_FAILURE_MODE"))
    # How often the primary is probed; a probe slower than this counts as failed.
    health_check_interval_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias=_env("MEMSTORE_HEALTH_CHECK_INTERVAL_SECONDS")
    )
    # Consecutive failed probes (or failed reads) before the secondary serves, and
    # consecutive good probes before the primary serves again.
    failover_after_failures: int = Field(
        2, ge=1, le=100, validation_alias=_env("MEMSTORE_FAILOVER_AFTER_FAILURES")
    )
    failback_after_successes: int = Field(
        3, ge=1, le=1000, validation_alias=_env("MEMSTORE_FAILBACK_AFTER_SUCCESSES")
    )
    # The replicator reads this many change events per namespace per round, and reads
    # the log again after this long when it found nothing to do.
    replication_batch: int = Field(
        500, ge=1, le=10_000, validation_alias=_env("MEMSTORE_REPLICATION_BATCH")
    )
    replication_poll_seconds: float = Field(
        0.2, gt=0, le=60, validation_alias=_env("MEMSTORE_REPLICATION_POLL_SECONDS")
    )
    # One replica replicates at a time: it holds a claim on the secondary this long
    # without renewing it.
    replication_lease_seconds: float = Field(
        15.0, gt=0, le=3600, validation_alias=_env("MEMSTORE_REPLICATION_LEASE_SECONDS")
    )
    # Lag (seconds since the oldest event not yet copied) above which the store reports
    # itself degraded.
    replication_max_lag_seconds: float = Field(
        30.0, gt=0, validation_alias=_env("MEMSTORE_REPLICATION_MAX_LAG_SECONDS")
    )

    @field_validator("secondary_backend", mode="before")
    @classmethod
    def _normalise_secondary(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return str(value).strip().lower()


EmbedderName = Literal["wordllama", "local", "openai", "none"]


class SearchSettings(_Slice):
    """Search (recall) and the embedder behind semantic search (``memstore.embeddings``)."""

    # wordllama: a model whose weights ship inside its PyPI package (no download, CPU);
    # local: a model loaded from MEMSTORE_EMBEDDER_MODEL_PATH; openai: any OpenAI-compatible
    # /v1/embeddings endpoint at MEMSTORE_EMBEDDER_URL; none: keyword and filter only.
    embedder: EmbedderName = Field("wordllama", validation_alias=_env("MEMSTORE_EMBEDDER"))
    # The model's name for the embedder (wordllama: a bundled config; openai: the model
    # the endpoint serves); empty: the embedder's default.
    embedder_model: str = Field("", validation_alias=_env("MEMSTORE_EMBEDDER_MODEL"))
    embedder_model_path: DirectoryPath | None = Field(
        None, validation_alias=_env("MEMSTORE_EMBEDDER_MODEL_PATH")
    )
    embedder_url: str | None = Field(None, validation_alias=_env("MEMSTORE_EMBEDDER_URL"))
    embedder_api_key: SecretStr | None = Field(
        None, validation_alias=_env("MEMSTORE_EMBEDDER_API_KEY")
    )
    # Which fields of each entity type are indexed (keywords) and embedded (semantic), as
    # JSON {"<type>": ["field", "nested.field"], "*": [...]}; a type not listed (and no
    # "*") indexes every string value of its JSON.
    search_fields: dict[str, list[str]] = Field(
        default_factory=dict, validation_alias=_env("MEMSTORE_SEARCH_FIELDS")
    )
    # A replica keeps the search indexes of this many namespaces in memory, the least
    # recently searched dropped first (built again from the store when searched again).
    search_max_namespaces: int = Field(
        64, ge=1, validation_alias=_env("MEMSTORE_SEARCH_MAX_NAMESPACES")
    )

    @model_validator(mode="after")
    def _check_embedder(self) -> SearchSettings:
        # What each embedder cannot start without; whether the model exists is checked when
        # the embedder is built (memstore.embeddings.build_embedder).
        if self.embedder == "local" and self.embedder_model_path is None:
            raise ValueError("MEMSTORE_EMBEDDER=local needs MEMSTORE_EMBEDDER_MODEL_PATH")
        if self.embedder == "openai":
            missing = [
                name
                for name, value in (
                    ("MEMSTORE_EMBEDDER_URL", self.embedder_url),
                    ("MEMSTORE_EMBEDDER_MODEL", self.embedder_model),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"MEMSTORE_EMBEDDER=openai needs {' and '.join(missing)}")
            if not str(self.embedder_url).lower().startswith(("http://", "https://")):
                raise ValueError("MEMSTORE_EMBEDDER_URL must be an http:// or https:// URL")
        return self


class RetentionSettings(_Slice):
    """Retention policies (``memstore.core.retention``): a default for every namespace and
    per-namespace overrides, as JSON in ``MEMSTORE_RETENTION`` or in the JSON/YAML file
    ``MEMSTORE_RETENTION_FILE`` (one of the two), and how the background pruning runs."""

    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, validation_alias=_env("MEMSTORE_RETENTION")
    )
    retention_file: FilePath | None = Field(None, validation_alias=_env("MEMSTORE_RETENTION_FILE"))
    # False: policies are declared (and dry runs answer) but nothing is removed.
    retention_enforce: bool = Field(True, validation_alias=_env("MEMSTORE_RETENTION_ENFORCE"))
    # Seconds between background pruning rounds (each walks every namespace).
    retention_interval_seconds: float = Field(
        60.0, gt=0, le=86400, validation_alias=_env("MEMSTORE_RETENTION_INTERVAL_SECONDS")
    )
    # Items per kind removed by one backend call (one transaction or script run).
    retention_batch: int = Field(
        50, ge=1, le=10_000, validation_alias=_env("MEMSTORE_RETENTION_BATCH")
    )
    # At most this share of the time goes to pruning: after a batch that took t seconds
    # the next waits t * (1 - share) / share, so a backlog never crowds out requests.
    retention_max_share: float = Field(
        0.05, gt=0, le=1, validation_alias=_env("MEMSTORE_RETENTION_MAX_SHARE")
    )
    # Pause between two batches, so pruning a large backlog leaves room for requests.
    retention_pause_seconds: float = Field(
        0.02, ge=0, le=60, validation_alias=_env("MEMSTORE_RETENTION_PAUSE_SECONDS")
    )

    @model_validator(mode="after")
    def _load_retention_file(self) -> RetentionSettings:
        if self.retention_file is None:
            return self
        # Only policies given as such conflict with the file: ``model_validate`` runs this
        # validator again on the instance whose ``retention`` it already loaded.
        if "retention" in self.model_fields_set and not self.retention.empty:
            raise ValueError("set MEMSTORE_RETENTION or MEMSTORE_RETENTION_FILE, not both")
        import yaml  # JSON is YAML: one parser reads both

        try:
            raw = yaml.safe_load(self.retention_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"MEMSTORE_RETENTION_FILE: cannot read it: {exc}") from exc
        try:
            config = RetentionConfig.model_validate(raw or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"MEMSTORE_RETENTION_FILE: {problems}") from None
        object.__setattr__(self, "retention", config)
        return self


class Settings(
    ServerSettings,
    SecuritySettings,
    InspectorSettings,
    McpSettings,
    WebhookSettings,
    SearchSettings,
    ReplicationSettings,
    CacheSettings,
    L2CacheSettings,
    EmbeddedSettings,
    RedisSettings,
    MongoDBSettings,
    RetentionSettings,
):
    """The service's settings: every slice, read from the environment once at start-up.
    Components take the slice they read (a backend its ``RedisSettings``, ...)."""

    @property
    def ui_served(self) -> bool:
        """Whether ``/ui`` is served: ``MEMSTORE_UI_ENABLED``, else only without auth."""
        return self.ui_enabled if self.ui_enabled is not None else not self.auth_enabled

    def store_key(self) -> tuple[object, ...]:
        """What names the store this backend type writes to; two settings with equal keys
        share their data."""
        if self.memory_type == "redis":
            return ("redis", *self.redis_store_key())
        if self.memory_type == "mongodb":
            return ("mongodb", *self.mongodb_store_key())
        return ("embedded", *self.embedded_store_key())

    def secondary_settings(self, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the secondary backend is built from: these, with
        ``MEMORY_TYPE`` = ``MEMSTORE_SECONDARY_BACKEND`` and each backend setting taken
        from its ``MEMSTORE_SECONDARY_*`` variable when set (:data:`SECONDARY_PREFIX`).
        Only the backend slices' own fields are overridable; the rest is shared."""
        if self.secondary_backend is None:
            from memstore.core.errors import ConfigurationError

            raise ConfigurationError("MEMSTORE_SECONDARY_BACKEND is not set")
        env = os.environ if environ is None else environ
        shared = set(StoreSettings.model_fields)
        values: dict[str, Any] = dict(self)
        if self.retention_file is not None:
            # ``retention`` holds the file's policies, which validation loads again
            del values["retention"]
        values["memory_type"] = self.secondary_backend
        values["secondary_backend"] = None
        for slice_cls in (EmbeddedSettings, RedisSettings, MongoDBSettings):
            for name, field in slice_cls.model_fields.items():
                if name in shared or not isinstance(field.validation_alias, AliasChoices):
                    continue
                for alias in field.validation_alias.choices:
                    key = SECONDARY_PREFIX + str(alias).removeprefix("MEMSTORE_")
                    if key in env:
                        values[name] = env[key]
                        break
        secondary = type(self).model_validate(values)
        # Compared as validated settings (a URI from the environment is a SecretStr like
        # the primary's), and only what names the store: a secondary differing from the
        # primary in a timeout or a page size alone is the same store.
        if secondary.store_key() == self.store_key():
            from memstore.core.errors import ConfigurationError

            raise ConfigurationError(
                "the secondary backend is the primary itself: set its MEMSTORE_SECONDARY_* "
                "connection settings (e.g. MEMSTORE_SECONDARY_MONGODB_URI)"
            )
        return secondary

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
                "username": "redis_username",
                "prefix": "redis_prefix",
                "cluster_nodes": "redis_cluster_nodes",
            }
        else:
            keymap = {"path": "data_path", "data_path": "data_path"}
        for key, value in config.items():
            field = keymap.get(key, key)
            if field not in cls.model_fields:
                from memstore.core.errors import ConfigurationError

                raise ConfigurationError(f"unknown config key {key!r} for {kind or 'embedded'}")
            overrides[field] = value
        return cls(**overrides)

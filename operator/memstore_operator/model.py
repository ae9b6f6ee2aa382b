"""The MemoryStore spec as typed, immutable values.

The API server applies the CRD's defaults and validation; this module applies the same
defaults again (so the builders also work on a bare dict in unit tests) and rejects what
the schema cannot express, with :class:`InvalidSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from memstore_operator import constants as c

BackendType = Literal["embedded", "redis", "redisCluster", "mongodb"]
BACKEND_TYPES: tuple[str, ...] = ("embedded", "redis", "redisCluster", "mongodb")


class InvalidSpec(ValueError):
    """The spec cannot be reconciled; retrying will not help until it is changed."""


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class Probe:
    initial_delay_seconds: int = 5
    period_seconds: int = 10
    timeout_seconds: int = 2
    failure_threshold: int = 3


@dataclass(frozen=True)
class Backend:
    type: BackendType
    # embedded
    storage: Literal["persistentVolumeClaim", "emptyDir"] = "persistentVolumeClaim"
    storage_size: str = "1Gi"
    storage_class_name: str | None = None
    synchronous: str = "normal"
    # redis / redisCluster
    redis_host: str | None = None
    redis_port: int = 6379
    redis_db: int = 0
    redis_prefix: str | None = None
    cluster_nodes: tuple[str, ...] = ()
    password_ref: SecretKeyRef | None = None
    # mongodb
    mongodb_uri_ref: SecretKeyRef | None = None
    mongodb_database: str = "agent_memory"


@dataclass(frozen=True)
class StoreSpec:
    name: str
    namespace: str
    backend: Backend
    replicas: int = 1
    image: str = c.DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    memory_namespace: str = "agent"
    cache_ttl_seconds: float = 30.0
    cache_max_entries: int = 10_000
    auth_enabled: bool = True
    # The Secret/key holding tokens.json: the user's, or the generated ``<name>-auth``.
    auth_tokens_ref: SecretKeyRef | None = None
    auth_generated: bool = False
    otlp_endpoint: str | None = None
    otel_service_name: str | None = None
    sampling_ratio: float = 0.1
    service_monitor: bool = False
    service_monitor_interval: str = "30s"
    service_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    priority_class_name: str | None = None
    liveness: Probe = Probe()
    readiness: Probe = Probe()
    pdb_enabled: bool = True
    pdb_min_available: int | None = None
    pdb_max_unavailable: int | None = None
    service_type: str = "ClusterIP"
    service_port: int = 8080

    @property
    def secret_refs(self) -> tuple[SecretKeyRef, ...]:
        """Every Secret key the pods read (the generated auth Secret included)."""
        refs = (self.backend.password_ref, self.backend.mongodb_uri_ref, self.auth_tokens_ref)
        return tuple(r for r in refs if r is not None)


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{path} must be an object")
    return value


def _ref(value: Any, path: str) -> SecretKeyRef | None:
    if value is None:
        return None
    obj = _obj(value, path)
    name, key = obj.get("name"), obj.get("key")
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise InvalidSpec(f"{path} needs both name and key")
    return SecretKeyRef(name=name, key=key)


def _probe(value: Any, path: str) -> Probe:
    obj = _obj(value, path)
    return Probe(
        initial_delay_seconds=int(obj.get("initialDelaySeconds", 5)),
        period_seconds=int(obj.get("periodSeconds", 10)),
        timeout_seconds=int(obj.get("timeoutSeconds", 2)),
        failure_threshold=int(obj.get("failureThreshold", 3)),
    )


def _backend(raw: Mapping[str, Any]) -> Backend:
    kind = raw.get("type")
    if kind not in BACKEND_TYPES:
        raise InvalidSpec(f"backend.type must be one of {', '.join(BACKEND_TYPES)}")
    for section in BACKEND_TYPES:
        if section != kind and raw.get(section) is not None:
            raise InvalidSpec(f"backend.{section} is set but backend.type is {kind}")
    if kind == "embedded":
        e = _obj(raw.get("embedded"), "backend.embedded")
        storage = e.get("storage", "persistentVolumeClaim")
        if storage not in ("persistentVolumeClaim", "emptyDir"):
            raise InvalidSpec("backend.embedded.storage must be persistentVolumeClaim or emptyDir")
        return Backend(
            type="embedded",
            storage=storage,
            storage_size=str(e.get("size", "1Gi")),
            storage_class_name=e.get("storageClassName"),
            synchronous=str(e.get("synchronous", "normal")),
        )
    if kind == "redis":
        r = _obj(raw.get("redis"), "backend.redis")
        host = r.get("host")
        if not isinstance(host, str) or not host:
            raise InvalidSpec("backend.redis.host is required")
        return Backend(
            type="redis",
            redis_host=host,
            redis_port=int(r.get("port", 6379)),
            redis_db=int(r.get("db", 0)),
            redis_prefix=r.get("prefix"),
            password_ref=_ref(r.get("passwordSecretRef"), "backend.redis.passwordSecretRef"),
        )
    if kind == "redisCluster":
        rc = _obj(raw.get("redisCluster"), "backend.redisCluster")
        nodes = rc.get("nodes") or []
        if not nodes or not all(isinstance(n, str) and ":" in n for n in nodes):
            raise InvalidSpec("backend.redisCluster.nodes needs at least one host:port")
        return Backend(
            type="redisCluster",
            cluster_nodes=tuple(nodes),
            redis_prefix=rc.get("prefix"),
            password_ref=_ref(
                rc.get("passwordSecretRef"), "backend.redisCluster.passwordSecretRef"
            ),
        )
    m = _obj(raw.get("mongodb"), "backend.mongodb")
    uri_ref = _ref(m.get("uriSecretRef"), "backend.mongodb.uriSecretRef")
    if uri_ref is None:
        raise InvalidSpec("backend.mongodb.uriSecretRef is required")
    return Backend(
        type="mongodb",
        mongodb_uri_ref=uri_ref,
        mongodb_database=str(m.get("database", "agent_memory")),
    )


def parse_spec(name: str, namespace: str, spec: Mapping[str, Any]) -> StoreSpec:
    """Turn a MemoryStore ``spec`` into a :class:`StoreSpec` or raise :class:`InvalidSpec`."""
    backend = _backend(_obj(spec.get("backend"), "backend"))
    replicas = int(spec.get("replicas", 1))
    if replicas < 0:
        raise InvalidSpec("replicas must not be negative")
    if backend.type == "embedded" and replicas > 1:
        raise InvalidSpec("the embedded backend allows at most 1 replica")
    cache = _obj(spec.get("cache"), "cache")
    auth = _obj(spec.get("auth"), "auth")
    tel = _obj(spec.get("telemetry"), "telemetry")
    sm = _obj(tel.get("serviceMonitor"), "telemetry.serviceMonitor")
    sched = _obj(spec.get("scheduling"), "scheduling")
    probes = _obj(spec.get("probes"), "probes")
    pdb = _obj(spec.get("disruptionBudget"), "disruptionBudget")
    svc = _obj(spec.get("service"), "service")
    if pdb.get("minAvailable") is not None and pdb.get("maxUnavailable") is not None:
        raise InvalidSpec("set at most one of disruptionBudget.minAvailable and maxUnavailable")
    auth_enabled = bool(auth.get("enabled", True))
    auth_ref: SecretKeyRef | None = None
    auth_generated = False
    if auth_enabled:
        user_ref = _obj(auth.get("secretRef"), "auth.secretRef")
        if user_ref:
            auth_ref = _ref(
                {"name": user_ref.get("name"), "key": user_ref.get("key", c.AUTH_TOKENS_KEY)},
                "auth.secretRef",
            )
        else:
            auth_ref = SecretKeyRef(name=f"{name}{c.AUTH_SECRET_SUFFIX}", key=c.AUTH_TOKENS_KEY)
            auth_generated = True
    elif auth.get("secretRef") is not None:
        raise InvalidSpec("auth.secretRef is only used when auth.enabled is true")
    resources = spec.get("resources")
    if resources is None:
        resources = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    return StoreSpec(
        name=name,
        namespace=namespace,
        backend=backend,
        replicas=replicas,
        image=str(spec.get("image") or c.DEFAULT_IMAGE),
        image_pull_policy=str(spec.get("imagePullPolicy", "IfNotPresent")),
        image_pull_secrets=tuple(s["name"] for s in spec.get("imagePullSecrets") or []),
        memory_namespace=str(spec.get("memoryNamespace", "agent")),
        cache_ttl_seconds=float(cache.get("ttlSeconds", 30)),
        cache_max_entries=int(cache.get("maxEntries", 10_000)),
        auth_enabled=auth_enabled,
        auth_tokens_ref=auth_ref,
        auth_generated=auth_generated,
        otlp_endpoint=tel.get("otlpEndpoint"),
        otel_service_name=tel.get("serviceName"),
        sampling_ratio=float(tel.get("samplingRatio", 0.1)),
        service_monitor=bool(sm.get("enabled", False)),
        service_monitor_interval=str(sm.get("interval", "30s")),
        service_monitor_labels=dict(sm.get("labels") or {}),
        resources=dict(resources),
        node_selector=dict(sched.get("nodeSelector") or {}),
        tolerations=tuple(sched.get("tolerations") or ()),
        affinity=sched.get("affinity"),
        priority_class_name=sched.get("priorityClassName"),
        liveness=_probe(probes.get("liveness"), "probes.liveness"),
        readiness=_probe(probes.get("readiness"), "probes.readiness"),
        pdb_enabled=bool(pdb.get("enabled", True)),
        pdb_min_available=pdb.get("minAvailable"),
        pdb_max_unavailable=pdb.get("maxUnavailable"),
        service_type=str(svc.get("type", "ClusterIP")),
        service_port=int(svc.get("port", 8080)),
    )

"""The MemoryStore spec as pydantic models, with the CRD as the one home of its defaults.

The models mirror the CRD's ``spec`` (camelCase names through aliases) and declare no
value the CRD defaults: such fields are required, and :func:`parse_spec` fills them the
way the API server does, from the CRD file shipped in this package (a link to
``charts/memstore/crds/memorystores.memory.datamcp.io.yaml``). A body from the API server
already carries them; a bare dict (a unit test, a dry run) gets the same values. The one
default the API server cannot apply is the section of the chosen backend when it is left
out (``backend: {type: embedded}``): it is read as an empty section and then defaulted.
Fields the CRD leaves without a default are optional here (absent = None or empty).

Ranges, patterns and enums are the API server's job (the CRD's schema); the models check
types and the cross-field rules the builders rely on, and turn a failure into
:class:`InvalidSpec` with the field's path.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from memstore_operator import constants as c

BackendType = Literal["embedded", "redis", "redisCluster", "mongodb"]
BACKEND_TYPES: tuple[str, ...] = ("embedded", "redis", "redisCluster", "mongodb")
CRD_FILE = "memorystores.memory.datamcp.io.yaml"


class InvalidSpec(ValueError):
    """The spec cannot be reconciled; retrying will not help until it is changed."""


class SpecModel(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class SecretKeyRef(SpecModel):
    name: str
    key: str


class Probe(SpecModel):
    initial_delay_seconds: int
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int


class Probes(SpecModel):
    liveness: Probe
    readiness: Probe


class Embedded(SpecModel):
    storage: Literal["persistentVolumeClaim", "emptyDir"]
    size: str
    storage_class_name: str | None = None
    synchronous: Literal["normal", "full"]

    @field_validator("size", mode="before")
    @classmethod
    def _quantity(cls, value: Any) -> Any:
        # int-or-string in the CRD: 1073741824 and "1Gi" are both quantities.
        return str(value) if isinstance(value, int) else value


class SecretName(SpecModel):
    name: str


class RedisTls(SpecModel):
    enabled: bool
    verify_hostname: bool
    ca_secret_ref: SecretKeyRef | None = None
    client_certificate_secret_ref: SecretName | None = None

    @model_validator(mode="after")
    def _files_need_tls(self) -> RedisTls:
        if not self.enabled and (
            self.ca_secret_ref is not None or self.client_certificate_secret_ref is not None
        ):
            raise ValueError("tls.caSecretRef and tls.clientCertificateSecretRef need tls.enabled")
        return self

    @property
    def secret_refs(self) -> tuple[SecretKeyRef, ...]:
        """The Secret keys mounted as files (CA; client certificate and key)."""
        if not self.enabled:
            return ()
        refs: list[SecretKeyRef] = []
        if self.ca_secret_ref is not None:
            refs.append(self.ca_secret_ref)
        client = self.client_certificate_secret_ref
        if client is not None:
            refs.append(SecretKeyRef(name=client.name, key=c.TLS_CERT_KEY))
            refs.append(SecretKeyRef(name=client.name, key=c.TLS_KEY_KEY))
        return tuple(refs)


class RedisAccess(SpecModel):
    """What both Redis sections share: key prefix, credentials, TLS."""

    prefix: str | None = None
    password_secret_ref: SecretKeyRef | None = None
    username: str | None = None
    username_secret_ref: SecretKeyRef | None = None
    tls: RedisTls | None = None

    @model_validator(mode="after")
    def _one_username(self) -> RedisAccess:
        if self.username is not None and self.username_secret_ref is not None:
            raise ValueError("set at most one of username and usernameSecretRef")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls is not None and self.tls.enabled


class Redis(RedisAccess):
    host: str = Field(min_length=1)
    port: int
    db: int


class RedisCluster(RedisAccess):
    nodes: tuple[str, ...]

    @field_validator("nodes")
    @classmethod
    def _host_ports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not all(":" in n for n in value):
            raise ValueError("needs at least one host:port")
        return value


class MongoDB(SpecModel):
    uri_secret_ref: SecretKeyRef
    database: str


class Backend(SpecModel):
    type: BackendType
    embedded: Embedded | None = None
    redis: Redis | None = None
    redis_cluster: RedisCluster | None = None
    mongodb: MongoDB | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_section(cls, raw: Any) -> Any:
        if isinstance(raw, Mapping) and raw.get("type") in BACKEND_TYPES:
            for section in BACKEND_TYPES:
                if section != raw["type"] and raw.get(section) is not None:
                    raise ValueError(f"backend.{section} is set but backend.type is {raw['type']}")
        return raw

    @property
    def redis_access(self) -> RedisAccess | None:
        """The Redis section (standalone or cluster), if the backend is Redis."""
        return self.redis or self.redis_cluster

    @property
    def password_ref(self) -> SecretKeyRef | None:
        section = self.redis_access
        return section.password_secret_ref if section is not None else None

    @property
    def username_ref(self) -> SecretKeyRef | None:
        section = self.redis_access
        return section.username_secret_ref if section is not None else None

    @property
    def redis_tls_refs(self) -> tuple[SecretKeyRef, ...]:
        section = self.redis_access
        if section is None or section.tls is None:
            return ()
        return section.tls.secret_refs

    @property
    def mongodb_uri_ref(self) -> SecretKeyRef | None:
        return self.mongodb.uri_secret_ref if self.mongodb is not None else None


class Memcached(SpecModel):
    url: str
    ttl_seconds: int


class Cache(SpecModel):
    ttl_seconds: float
    max_entries: int
    memcached: Memcached | None = None


class Auth(SpecModel):
    enabled: bool
    secret_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _ref_needs_auth(self) -> Auth:
        if self.secret_ref is not None and not self.enabled:
            raise ValueError("auth.secretRef is only used when auth.enabled is true")
        return self


class Encryption(SpecModel):
    secret_ref: SecretKeyRef


class AtRest(SpecModel):
    """Compression and encryption of stored payloads; the key file is mounted from a Secret."""

    compression_min_bytes: int
    encryption: Encryption | None = None


class ServiceMonitor(SpecModel):
    enabled: bool
    interval: str
    labels: dict[str, str] = Field(default_factory=dict)


class Telemetry(SpecModel):
    otlp_endpoint: str | None = None
    service_name: str | None = None
    sampling_ratio: float
    service_monitor: ServiceMonitor


class Scheduling(SpecModel):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None


class DisruptionBudget(SpecModel):
    enabled: bool
    min_available: int | None = None
    max_unavailable: int | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> DisruptionBudget:
        if self.min_available is not None and self.max_unavailable is not None:
            raise ValueError("set at most one of disruptionBudget.minAvailable and maxUnavailable")
        return self


class ServicePort(SpecModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    port: int


class ImagePullSecret(SpecModel):
    name: str


class Webhook(SpecModel):
    """One signed webhook of a memory namespace; its secret comes from ``secret_ref``."""

    name: str
    namespace: str
    url: str
    secret_ref: SecretKeyRef
    kinds: tuple[str, ...] = ()
    entity_types: tuple[str, ...] = ()


class RetentionPolicy(SpecModel):
    """One retention policy (absent: that kind is kept forever; 0: off, except
    ``versions_keep``). The service's ``MEMSTORE_RETENTION`` names the same fields in
    snake case."""

    entity_max_age_seconds: float = 0
    entity_idle_seconds: float = 0
    conversation_max_messages: int = 0
    conversation_idle_seconds: float = 0
    tool_usage_max_age_seconds: float = 0
    feedback_max_age_seconds: float = 0
    # A count, not a bound: 0 keeps no old version, as in the service (a zero age or a
    # zero message count would remove everything, so there 0 can only mean off).
    versions_keep: int | None = None
    versions_max_age_seconds: float = 0

    def rendered(self, *, override: bool) -> dict[str, float | int | None]:
        """As the service reads it: 0 is ``null`` (off) but for ``versions_keep``, which is
        passed as is; a default leaves its unset fields out, an override names the fields
        it sets (``null`` switching a default off)."""
        fields = self.model_fields_set if override else set(type(self).model_fields)
        out: dict[str, float | int | None] = {}
        for name in sorted(fields):
            value = getattr(self, name)
            if name == "versions_keep":
                if value is not None or override:
                    out[name] = value
            elif value or override:
                out[name] = value or None
        return out


class Retention(SpecModel):
    enforce: bool
    interval_seconds: float
    batch: int
    max_share: float
    default: RetentionPolicy = Field(default_factory=RetentionPolicy)
    namespaces: dict[str, RetentionPolicy] = Field(default_factory=dict)

    def config_json(self) -> str:
        """``MEMSTORE_RETENTION``: the default and the overrides (compact JSON)."""
        body = {
            "default": self.default.rendered(override=False),
            "namespaces": {
                ns: policy.rendered(override=True) for ns, policy in sorted(self.namespaces.items())
            },
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True)


class MemoryStoreSpec(SpecModel):
    """``spec`` of a MemoryStore, after the CRD's defaults."""

    replicas: int = Field(ge=0)
    workers: int = Field(ge=1, le=16)
    image: str
    image_pull_policy: str
    image_pull_secrets: tuple[ImagePullSecret, ...] = ()
    memory_namespace: str
    backend: Backend
    secondary_backend: Backend | None = None
    failure_mode: Literal["strict", "lenient"]
    cache: Cache
    auth: Auth
    telemetry: Telemetry
    resources: dict[str, Any]
    scheduling: Scheduling = Field(default_factory=Scheduling)
    probes: Probes
    disruption_budget: DisruptionBudget
    service: ServicePort
    webhooks: tuple[Webhook, ...] = ()
    at_rest: AtRest
    retention: Retention

    @model_validator(mode="after")
    def _embedded_is_single(self) -> MemoryStoreSpec:
        if self.backend.type == "embedded" and self.replicas > 1:
            raise ValueError("the embedded backend allows at most 1 replica")
        if self.backend.type == "embedded" and self.workers > 1:
            raise ValueError("the embedded backend has one owner process: workers must be 1")
        return self

    @model_validator(mode="after")
    def _secondary(self) -> MemoryStoreSpec:
        # The CRD's rules, for specs that reach the operator without the API server's check.
        second = self.secondary_backend
        if second is None:
            if self.failure_mode == "lenient":
                raise ValueError("failureMode lenient needs a secondaryBackend")
            return self
        if second.type == "embedded":
            raise ValueError("secondaryBackend.type must be redis, redisCluster or mongodb")
        access = second.redis_access
        if access is not None and access.tls is not None and access.tls.enabled:
            raise ValueError("secondaryBackend does not support Redis TLS yet")
        return self


class StoreSpec(MemoryStoreSpec):
    """A MemoryStore's spec with the object's name and namespace, as the builders use it."""

    name: str
    namespace: str

    @property
    def auth_generated(self) -> bool:
        """Auth is on and no Secret was given: the operator makes ``<name>-auth``."""
        return self.auth.enabled and self.auth.secret_ref is None

    @property
    def auth_tokens_ref(self) -> SecretKeyRef | None:
        """The Secret/key holding tokens.json: the user's, or the generated one."""
        if not self.auth.enabled:
            return None
        if self.auth.secret_ref is not None:
            return self.auth.secret_ref
        return SecretKeyRef(name=f"{self.name}{c.AUTH_SECRET_SUFFIX}", key=c.AUTH_TOKENS_KEY)

    @property
    def secret_refs(self) -> tuple[SecretKeyRef, ...]:
        """Every Secret key the pods read (the generated auth Secret included)."""
        b = self.backend
        refs: tuple[SecretKeyRef | None, ...] = (
            b.password_ref,
            b.username_ref,
            b.mongodb_uri_ref,
            self.auth_tokens_ref,
        )
        second = self.secondary_backend
        if second is not None:
            refs += (second.password_ref, second.username_ref, second.mongodb_uri_ref)
        webhook_refs = tuple(w.secret_ref for w in self.webhooks)
        encryption = self.at_rest.encryption
        key_refs = (encryption.secret_ref,) if encryption is not None else ()
        return tuple(r for r in refs if r is not None) + b.redis_tls_refs + webhook_refs + key_refs


@functools.cache
def crd() -> dict[str, Any]:
    """The MemoryStore CRD (the file the chart installs), parsed once."""
    text = resources.files("memstore_operator").joinpath(CRD_FILE).read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def spec_schema() -> dict[str, Any]:
    """The OpenAPI schema of ``spec`` in the CRD's storage version."""
    (version,) = (v for v in crd()["spec"]["versions"] if v["name"] == c.VERSION)
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Structural-schema defaulting as the API server does it: a missing property with a
    ``default`` gets a copy of it, then every object is defaulted in turn (so the
    properties of a defaulted ``{}`` get theirs). Changes ``value`` in place."""
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                apply_defaults(sub, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_defaults(schema["items"], item)
    return value


def with_defaults(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` with the CRD's defaults, as the API server would store it, and
    the chosen backend's section read as ``{}`` when left out."""
    out = copy.deepcopy(dict(spec))
    for field in ("backend", "secondaryBackend"):
        backend = out.get(field)
        if isinstance(backend, dict) and backend.get("type") in BACKEND_TYPES:
            backend.setdefault(backend["type"], {})
    return dict(apply_defaults(spec_schema(), out))


def _problem(error: Mapping[str, Any]) -> str:
    path = ".".join(str(p) for p in error["loc"])
    if error["type"] == "missing":
        return f"{path} is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}" if path else message


def parse_spec(name: str, namespace: str, spec: Mapping[str, Any]) -> StoreSpec:
    """Turn a MemoryStore ``spec`` into a :class:`StoreSpec` or raise :class:`InvalidSpec`."""
    if not isinstance(spec, Mapping):
        raise InvalidSpec("spec must be an object")
    try:
        return StoreSpec.model_validate(
            {**with_defaults(spec), "name": name, "namespace": namespace}
        )
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise InvalidSpec("; ".join(_problem(e) for e in errors)) from None

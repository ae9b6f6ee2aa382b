"""Pure functions: MemoryStore spec -> the Kubernetes objects that run it.

No I/O here. Every object carries the same labels and a controller ownerReference to the
MemoryStore, so deleting the MemoryStore lets the garbage collector delete them.
Secrets never appear in the ConfigMap: the Deployment reads them with ``secretKeyRef``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from memstore_operator import constants as c
from memstore_operator.model import Backend, Probe, StoreSpec

Obj = dict[str, Any]


def selector_labels(spec: StoreSpec) -> dict[str, str]:
    return {
        c.LABEL_NAME: "memstore",
        c.LABEL_INSTANCE: spec.name,
        c.LABEL_COMPONENT: "server",
    }


def labels(spec: StoreSpec) -> dict[str, str]:
    return {**selector_labels(spec), c.LABEL_MANAGED_BY: c.MANAGED_BY}


def selector_string(spec: StoreSpec) -> str:
    """The label selector as a string, for the scale subresource (``status.selector``)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(spec).items()))


def owner_reference(owner: Mapping[str, Any]) -> Obj:
    meta = owner["metadata"]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(spec: StoreSpec, name: str, owner: Mapping[str, Any] | None) -> Obj:
    meta: Obj = {"name": name, "namespace": spec.namespace, "labels": labels(spec)}
    if owner is not None:
        meta["ownerReferences"] = [owner_reference(owner)]
    return meta


def configmap_name(spec: StoreSpec) -> str:
    return f"{spec.name}-config"


def pvc_name(spec: StoreSpec) -> str:
    return f"{spec.name}-data"


def _fmt_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def secondary_name(name: str) -> str:
    """The service's variable for the secondary backend's copy of setting ``name``
    (``MONGODB_URI`` -> ``MEMSTORE_SECONDARY_MONGODB_URI``; the service's rule)."""
    if name == "MEMORY_TYPE":
        return "MEMSTORE_SECONDARY_BACKEND"
    return c.SECONDARY_PREFIX + name.removeprefix("MEMSTORE_")


def config_data(spec: StoreSpec) -> dict[str, str]:
    """Non-secret settings, as the service's environment variables."""
    data: dict[str, str] = {
        "MEMSTORE_HOST": "0.0.0.0",  # noqa: S104 - the pod must listen on its pod IP
        "MEMSTORE_PORT": str(c.CONTAINER_PORT),
        "MEMORY_NAMESPACE": spec.memory_namespace,
        "MEMSTORE_CACHE_TTL_SECONDS": _fmt_number(spec.cache.ttl_seconds),
        "MEMSTORE_CACHE_MAX_ENTRIES": str(spec.cache.max_entries),
        **backend_config(spec.backend),
    }
    if spec.secondary_backend is not None:
        for name, value in backend_config(spec.secondary_backend).items():
            data[secondary_name(name)] = value
        data["MEMSTORE_FAILURE_MODE"] = spec.failure_mode
    memcached = spec.cache.memcached
    if memcached is not None:
        data["MEMSTORE_L2_CACHE_URL"] = memcached.url
        data["MEMSTORE_L2_CACHE_TTL_SECONDS"] = str(memcached.ttl_seconds)
        # One store's keys never meet another's in a shared Memcached.
        data["MEMSTORE_L2_CACHE_PREFIX"] = f"{spec.namespace}.{spec.name}"
    if spec.workers > 1:
        # Only then: a store with one worker keeps the configuration (and hash) it had.
        data["MEMSTORE_WORKERS"] = str(spec.workers)
    data.update(_service_config(spec))
    return data


def backend_config(b: Backend) -> dict[str, str]:
    """One backend's non-secret settings, under the primary's variable names."""
    data: dict[str, str] = {}
    if b.embedded is not None:
        data["MEMORY_TYPE"] = "embedded"
        data["MEMSTORE_DATA_PATH"] = c.DATA_PATH
        data["MEMSTORE_EMBEDDED_SYNCHRONOUS"] = b.embedded.synchronous
    elif b.redis is not None:
        data["MEMORY_TYPE"] = "redis"
        data["REDIS_HOST"] = b.redis.host
        data["REDIS_PORT"] = str(b.redis.port)
        data["REDIS_DB"] = str(b.redis.db)
    elif b.redis_cluster is not None:
        data["MEMORY_TYPE"] = "redis"
        data["MEMSTORE_REDIS_CLUSTER_NODES"] = ",".join(b.redis_cluster.nodes)
    elif b.mongodb is not None:
        data["MEMORY_TYPE"] = "mongodb"
        data["MONGODB_DB"] = b.mongodb.database
    redis = b.redis_access
    if redis is not None and redis.prefix is not None:
        data["REDIS_PREFIX"] = redis.prefix
    if redis is not None and redis.username is not None:
        data["REDIS_USERNAME"] = redis.username  # a name, not a secret
    if redis is not None and redis.tls is not None and redis.tls.enabled:
        tls = redis.tls
        data["MEMSTORE_REDIS_TLS"] = "true"
        data["MEMSTORE_REDIS_TLS_VERIFY_HOSTNAME"] = "true" if tls.verify_hostname else "false"
        if tls.ca_secret_ref is not None:
            data["MEMSTORE_REDIS_TLS_CA_FILE"] = f"{c.REDIS_TLS_DIR}/{c.TLS_CA_KEY}"
        if tls.client_certificate_secret_ref is not None:
            data["MEMSTORE_REDIS_TLS_CERT_FILE"] = f"{c.REDIS_TLS_DIR}/{c.TLS_CERT_KEY}"
            data["MEMSTORE_REDIS_TLS_KEY_FILE"] = f"{c.REDIS_TLS_DIR}/{c.TLS_KEY_KEY}"
    return data


def _service_config(spec: StoreSpec) -> dict[str, str]:
    data: dict[str, str] = {}
    data["MEMSTORE_AUTH_ENABLED"] = "true" if spec.auth.enabled else "false"
    if not spec.auth.enabled:
        # The user chose an open store; the service refuses a non-loopback bind without
        # auth unless told so explicitly, and a pod must listen on its pod IP.
        data["MEMSTORE_ALLOW_INSECURE_BIND"] = "true"
    if spec.auth_tokens_ref is not None:
        data["MEMSTORE_AUTH_TOKENS_FILE"] = c.AUTH_TOKENS_FILE
    if spec.webhooks:
        data["MEMSTORE_WEBHOOKS_FILE"] = c.WEBHOOKS_FILE  # a path: the secrets stay in Secrets
    if spec.at_rest.compression_min_bytes:
        data["MEMSTORE_COMPRESSION_MIN_BYTES"] = str(spec.at_rest.compression_min_bytes)
    if spec.at_rest.encryption is not None:
        data["MEMSTORE_ENCRYPTION_KEY_FILE"] = c.ENCRYPTION_KEY_FILE  # a path, never a key
    retention = spec.retention
    data["MEMSTORE_RETENTION"] = retention.config_json()
    data["MEMSTORE_RETENTION_ENFORCE"] = "true" if retention.enforce else "false"
    data["MEMSTORE_RETENTION_INTERVAL_SECONDS"] = _fmt_number(retention.interval_seconds)
    data["MEMSTORE_RETENTION_BATCH"] = str(retention.batch)
    data["MEMSTORE_RETENTION_MAX_SHARE"] = _fmt_number(retention.max_share)
    tel = spec.telemetry
    if tel.otlp_endpoint:
        data["OTEL_EXPORTER_OTLP_ENDPOINT"] = tel.otlp_endpoint
        data["OTEL_SERVICE_NAME"] = tel.service_name or spec.name
        data["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        data["OTEL_TRACES_SAMPLER_ARG"] = _fmt_number(tel.sampling_ratio)
    return data


def config_hash(spec: StoreSpec, secret_versions: Mapping[str, str] | None = None) -> str:
    """Checksum of everything the pods read at start-up: the ConfigMap's data and the
    resourceVersions of the referenced Secrets. Put on the pod template, so a change rolls
    the pods."""
    payload = {
        "config": config_data(spec),
        "secrets": dict(sorted((secret_versions or {}).items())),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def configmap(spec: StoreSpec, owner: Mapping[str, Any] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, configmap_name(spec), owner),
        "data": config_data(spec),
    }


def _secret_env(name: str, ref_name: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref_name, "key": key}}}


def _probe(path: str, probe: Probe) -> Obj:
    return {
        "httpGet": {"path": path, "port": c.SERVICE_PORT_NAME, "scheme": "HTTP"},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def redis_tls_volume(spec: StoreSpec) -> Obj | None:
    """The Redis CA and client certificate as one read-only volume (a projection of the
    Secrets, each key at its fixed file name), or None without TLS files."""
    redis = spec.backend.redis_access
    tls = redis.tls if redis is not None else None
    if tls is None or not tls.enabled:
        return None
    sources: list[Obj] = []
    if tls.ca_secret_ref is not None:
        ref = tls.ca_secret_ref
        sources.append(
            {"secret": {"name": ref.name, "items": [{"key": ref.key, "path": c.TLS_CA_KEY}]}}
        )
    if tls.client_certificate_secret_ref is not None:
        items = [{"key": k, "path": k} for k in (c.TLS_CERT_KEY, c.TLS_KEY_KEY)]
        sources.append({"secret": {"name": tls.client_certificate_secret_ref.name, "items": items}})
    if not sources:
        return None
    # group-readable only: fsGroup makes the pod's user a member
    return {"name": "redis-tls", "projected": {"sources": sources, "defaultMode": 0o440}}


def webhook_secret_file(index: int) -> str:
    """Where the ``index``-th webhook's secret is mounted, relative to the list's folder."""
    return f"secrets/{index}"


def webhooks_list(spec: StoreSpec) -> str:
    """The service's webhooks file without secrets: each entry names its secret's file
    (``secret_file``), mounted beside it from the referenced Secret."""
    entries = []
    for i, hook in enumerate(spec.webhooks):
        entry: Obj = {
            "name": hook.name,
            "namespace": hook.namespace,
            "url": hook.url,
            "secret_file": webhook_secret_file(i),
        }
        if hook.kinds:
            entry["kinds"] = list(hook.kinds)
        if hook.entity_types:
            entry["entity_types"] = list(hook.entity_types)
        entries.append(entry)
    return json.dumps({"webhooks": entries}, sort_keys=True)


def webhooks_volume(spec: StoreSpec) -> Obj | None:
    """The list (from the pod's own annotation, through the downward API) and each
    webhook's secret (from its Secret) as one read-only volume, or None without webhooks."""
    if not spec.webhooks:
        return None
    annotation = f"metadata.annotations['{c.WEBHOOKS_ANNOTATION}']"
    sources: list[Obj] = [
        {
            "downwardAPI": {
                "items": [{"path": c.WEBHOOKS_LIST, "fieldRef": {"fieldPath": annotation}}]
            }
        }
    ]
    for i, hook in enumerate(spec.webhooks):
        ref = hook.secret_ref
        item = {"key": ref.key, "path": webhook_secret_file(i)}
        sources.append({"secret": {"name": ref.name, "items": [item]}})
    return {"name": "webhooks", "projected": {"sources": sources, "defaultMode": 0o440}}


def container_resources(spec: StoreSpec) -> Obj:
    """``spec.resources`` as given; left out (``{}``, the CRD's default), the per-worker
    defaults times ``spec.workers`` (one worker: what the CRD's default was before it had
    workers). A partial spec is not completed: adding a memory limit next to a larger
    request the user set would make the pod invalid."""
    if spec.resources:
        return {key: dict(value) for key, value in spec.resources.items()}
    out: Obj = {}
    for section, name, amount, unit in c.PER_WORKER_RESOURCES:
        out.setdefault(section, {})[name] = f"{amount * spec.workers}{unit}"
    return out


def deployment(spec: StoreSpec, cfg_hash: str, owner: Mapping[str, Any] | None = None) -> Obj:
    b = spec.backend
    env: list[Obj] = []
    if b.password_ref is not None:
        env.append(_secret_env("REDIS_PASSWORD", b.password_ref.name, b.password_ref.key))
    if b.username_ref is not None:
        env.append(_secret_env("REDIS_USERNAME", b.username_ref.name, b.username_ref.key))
    if b.mongodb_uri_ref is not None:
        env.append(_secret_env("MONGODB_URI", b.mongodb_uri_ref.name, b.mongodb_uri_ref.key))
    second = spec.secondary_backend
    if second is not None:
        for name, ref in (
            ("REDIS_PASSWORD", second.password_ref),
            ("REDIS_USERNAME", second.username_ref),
            ("MONGODB_URI", second.mongodb_uri_ref),
        ):
            if ref is not None:
                env.append(_secret_env(secondary_name(name), ref.name, ref.key))
    volumes: list[Obj] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    mounts: list[Obj] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    if b.embedded is not None:
        if b.embedded.storage == "persistentVolumeClaim":
            volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": pvc_name(spec)}})
        else:
            volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": c.DATA_DIR})
    if spec.auth_tokens_ref is not None:
        volumes.append(
            {
                "name": "auth",
                "secret": {
                    "secretName": spec.auth_tokens_ref.name,
                    "items": [{"key": spec.auth_tokens_ref.key, "path": c.AUTH_TOKENS_KEY}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": "auth", "mountPath": c.AUTH_DIR, "readOnly": True})
    if spec.at_rest.encryption is not None:
        ref = spec.at_rest.encryption.secret_ref
        volumes.append(
            {
                "name": "encryption-keys",
                "secret": {
                    "secretName": ref.name,
                    "items": [{"key": ref.key, "path": c.ENCRYPTION_KEYS}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append({"name": "encryption-keys", "mountPath": c.ENCRYPTION_DIR, "readOnly": True})
    tls_volume = redis_tls_volume(spec)
    if tls_volume is not None:
        volumes.append(tls_volume)
        mounts.append({"name": tls_volume["name"], "mountPath": c.REDIS_TLS_DIR, "readOnly": True})
    hooks_volume = webhooks_volume(spec)
    annotations = {c.CONFIG_HASH_ANNOTATION: cfg_hash}
    if hooks_volume is not None:
        volumes.append(hooks_volume)
        mounts.append({"name": hooks_volume["name"], "mountPath": c.WEBHOOKS_DIR, "readOnly": True})
        annotations[c.WEBHOOKS_ANNOTATION] = webhooks_list(spec)
    container: Obj = {
        "name": "memstore",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "args": ["serve"],
        "ports": [
            {"name": c.SERVICE_PORT_NAME, "containerPort": c.CONTAINER_PORT, "protocol": "TCP"}
        ],
        "envFrom": [{"configMapRef": {"name": configmap_name(spec)}}],
        "livenessProbe": _probe("/livez", spec.probes.liveness),
        "readinessProbe": _probe("/readyz", spec.probes.readiness),
        # On deletion the endpoint leaves the Service while the pod is told to stop; kube-proxy
        # on every node needs a moment to stop sending it new connections, so the service
        # keeps serving that long before SIGTERM closes its listener.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(c.PRE_STOP_SECONDS)]}}},
        "resources": container_resources(spec),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": c.RUN_AS_USER,
            "runAsGroup": c.RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if env:  # an empty list would not be stored, so a no-op check would never match
        container["env"] = env
    pod_spec: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": c.RUN_AS_USER,
            "runAsGroup": c.RUN_AS_USER,
            "fsGroup": c.RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in spec.image_pull_secrets]
    sched = spec.scheduling
    if sched.node_selector:
        pod_spec["nodeSelector"] = dict(sched.node_selector)
    if sched.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in sched.tolerations]
    if sched.affinity:
        pod_spec["affinity"] = dict(sched.affinity)
    if sched.priority_class_name:
        pod_spec["priorityClassName"] = sched.priority_class_name
    # One SQLite writer on a ReadWriteOnce volume: never two pods at once.
    strategy: Obj = (
        {"type": "Recreate"}
        if b.type == "embedded"
        else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, spec.name, owner),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(spec)},
            "strategy": strategy,
            "template": {
                "metadata": {
                    "labels": labels(spec),
                    "annotations": annotations,
                },
                "spec": pod_spec,
            },
        },
    }


def service(spec: StoreSpec, owner: Mapping[str, Any] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, spec.name, owner),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(spec),
            "ports": [
                {
                    "name": c.SERVICE_PORT_NAME,
                    "port": spec.service.port,
                    "targetPort": c.SERVICE_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def endpoint(spec: StoreSpec) -> str:
    return f"http://{spec.name}.{spec.namespace}.svc:{spec.service.port}"


def pdb(spec: StoreSpec, owner: Mapping[str, Any] | None = None) -> Obj | None:
    budget = spec.disruption_budget
    if not budget.enabled:
        return None
    body: Obj = {"selector": {"matchLabels": selector_labels(spec)}}
    if budget.min_available is not None:
        body["minAvailable"] = budget.min_available
    else:
        # One pod at a time unless the user said otherwise.
        body["maxUnavailable"] = budget.max_unavailable if budget.max_unavailable is not None else 1
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, spec.name, owner),
        "spec": body,
    }


def pvc(spec: StoreSpec, owner: Mapping[str, Any] | None = None) -> Obj | None:
    embedded = spec.backend.embedded
    if embedded is None or embedded.storage != "persistentVolumeClaim":
        return None
    body: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": embedded.size}},
    }
    if embedded.storage_class_name:
        body["storageClassName"] = embedded.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(spec, pvc_name(spec), owner),
        "spec": body,
    }


def service_monitor(spec: StoreSpec, owner: Mapping[str, Any] | None = None) -> Obj | None:
    monitor = spec.telemetry.service_monitor
    if not monitor.enabled:
        return None
    meta = _meta(spec, spec.name, owner)
    meta["labels"] = {**meta["labels"], **monitor.labels}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta,
        "spec": {
            "selector": {"matchLabels": selector_labels(spec)},
            "namespaceSelector": {"matchNames": [spec.namespace]},
            "endpoints": [
                {
                    "port": c.SERVICE_PORT_NAME,
                    "path": "/metrics",
                    "interval": monitor.interval,
                }
            ],
        },
    }


def auth_secret_name(spec: StoreSpec) -> str:
    return f"{spec.name}{c.AUTH_SECRET_SUFFIX}"


def tokens_file(token: str) -> str:
    """The service's tokens file for one admin token: only its sha256 is stored."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    entry = {
        "name": "admin",
        "sha256": digest,
        "namespaces": ["*"],
        "roles": ["read", "write", "admin"],
    }
    return json.dumps({"tokens": [entry]}, sort_keys=True)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def auth_secret(spec: StoreSpec, token: str, owner: Mapping[str, Any] | None = None) -> Obj:
    """The generated auth Secret: ``token`` for clients, ``tokens.json`` for the pods.
    Created once (never re-applied), so the token stays stable across reconciles."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, auth_secret_name(spec), owner),
        "type": "Opaque",
        "data": {c.AUTH_TOKEN_KEY: b64(token), c.AUTH_TOKENS_KEY: b64(tokens_file(token))},
    }

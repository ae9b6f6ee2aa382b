"""Names shared by the operator's modules (and mirrored in the CRD file)."""

from __future__ import annotations

from typing import Final

GROUP: Final = "memory.datamcp.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "memorystores"
KIND: Final = "MemoryStore"
API_VERSION: Final = f"{GROUP}/{VERSION}"

FIELD_MANAGER: Final = "memstore-operator"
# kopf keeps its progress and last-handled state in annotations under this prefix.
ANNOTATION_PREFIX: Final = GROUP
CONFIG_HASH_ANNOTATION: Final = f"{GROUP}/config-hash"

SERVICE_PORT_NAME: Final = "http"
CONTAINER_PORT: Final = 8080
#: The resources a pod gets per server process (spec.workers) when spec.resources is left
#: out: (section, resource, amount, unit).
PER_WORKER_RESOURCES: Final = (
    ("requests", "cpu", 100, "m"),
    ("requests", "memory", 128, "Mi"),
    ("limits", "memory", 512, "Mi"),
)
DATA_DIR: Final = "/data"
DATA_PATH: Final = "/data/memstore.db"
# Auth contract with the service (MEMSTORE_AUTH_ENABLED / MEMSTORE_AUTH_TOKENS_FILE).
AUTH_DIR: Final = "/etc/memstore/auth"
AUTH_TOKENS_KEY: Final = "tokens.json"
AUTH_TOKENS_FILE: Final = f"{AUTH_DIR}/{AUTH_TOKENS_KEY}"
AUTH_TOKEN_KEY: Final = "token"  # noqa: S105 - a key name: the plaintext token lives there
AUTH_SECRET_SUFFIX: Final = "-auth"  # noqa: S105 - a name suffix
RUN_AS_USER: Final = 10001
# Redis TLS files (MEMSTORE_REDIS_TLS_*_FILE), mounted from Secrets; the names follow the
# kubernetes.io/tls Secret convention.
REDIS_TLS_DIR: Final = "/etc/memstore/redis-tls"
TLS_CA_KEY: Final = "ca.crt"
TLS_CERT_KEY: Final = "tls.crt"
TLS_KEY_KEY: Final = "tls.key"
# Webhooks (MEMSTORE_WEBHOOKS_FILE): the list, without secrets, from a pod template
# annotation (downward API), and each webhook's secret from its Secret, in one read-only
# volume; the list names each secret's file.
WEBHOOKS_DIR: Final = "/etc/memstore/webhooks"
WEBHOOKS_LIST: Final = "webhooks.json"
WEBHOOKS_FILE: Final = f"{WEBHOOKS_DIR}/{WEBHOOKS_LIST}"
WEBHOOKS_ANNOTATION: Final = f"{GROUP}/webhooks"

# Encryption at rest (MEMSTORE_ENCRYPTION_KEY_FILE): the key-encryption keys, mounted
# read-only from their Secret; only the path goes into the ConfigMap.
ENCRYPTION_DIR: Final = "/etc/memstore/encryption"
ENCRYPTION_KEYS: Final = "keys"
ENCRYPTION_KEY_FILE: Final = f"{ENCRYPTION_DIR}/{ENCRYPTION_KEYS}"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "memstore-operator"

#: Seconds a store pod keeps serving after its deletion starts (preStop), before SIGTERM:
#: longer than kube-proxy takes to drop its endpoint, well within the grace period.
PRE_STOP_SECONDS = 5

# The service reads the secondary backend's settings under this prefix (memstore's
# core/settings.py, SECONDARY_PREFIX; the two packages share variable names only).
SECONDARY_PREFIX = "MEMSTORE_SECONDARY_"

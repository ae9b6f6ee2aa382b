"""Names shared by the operator's modules (and mirrored in the CRD file)."""

from __future__ import annotations

from typing import Final

GROUP: Final = "memory.datamcp.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "memorystores"
KIND: Final = "MemoryStore"
API_VERSION: Final = f"{GROUP}/{VERSION}"

DEFAULT_IMAGE: Final = "ghcr.io/memstore/memstore:0.1.0"
FIELD_MANAGER: Final = "memstore-operator"
# kopf keeps its progress and last-handled state in annotations under this prefix.
ANNOTATION_PREFIX: Final = GROUP
CONFIG_HASH_ANNOTATION: Final = f"{GROUP}/config-hash"

SERVICE_PORT_NAME: Final = "http"
CONTAINER_PORT: Final = 8080
DATA_DIR: Final = "/data"
DATA_PATH: Final = "/data/memstore.db"
AUTH_DIR: Final = "/var/run/memstore/auth"
AUTH_TOKENS_FILE: Final = f"{AUTH_DIR}/tokens"
RUN_AS_USER: Final = 10001

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "memstore-operator"

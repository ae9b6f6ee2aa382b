"""``memstore operator`` / ``memstore-operator``: run the MemoryStore operator standalone
(no peering: run one replica).

Environment: ``MEMSTORE_OPERATOR_NAMESPACES`` (comma list; empty = all namespaces),
``MEMSTORE_OPERATOR_RESYNC_SECONDS`` (default 30), ``MEMSTORE_OPERATOR_RETRY_SECONDS``
(default 10), ``MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS`` (default 3),
``MEMSTORE_OPERATOR_WATCH_TIMEOUT`` (default 300), ``MEMSTORE_OPERATOR_LIVENESS``
(default ``http://0.0.0.0:8081/healthz``), ``MEMSTORE_OPERATOR_METRICS_PORT`` /
``MEMSTORE_OPERATOR_METRICS_ADDR`` (default 8082 on 0.0.0.0; 0 = off),
``MEMSTORE_OPERATOR_LOG_LEVEL``; tracing through the standard ``OTEL_*`` variables (off
without ``OTEL_EXPORTER_OTLP_ENDPOINT``). Kubernetes credentials: in-cluster, else
``KUBECONFIG``. See docs/architecture.md, section "Operator".
"""

from __future__ import annotations

import asyncio
import logging
import os

import kopf

from memstore_operator import handlers

LIVENESS_DEFAULT = "http://0.0.0.0:8081/healthz"


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("MEMSTORE_OPERATOR_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    namespaces = handlers.namespaces_from_env()
    liveness = os.environ.get("MEMSTORE_OPERATOR_LIVENESS", LIVENESS_DEFAULT)
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness or None,
        )
    )


if __name__ == "__main__":
    main()

"""``memstore-operator`` (also ``memstore operator`` and ``python -m memstore_operator``):
run the MemoryStore operator standalone (no peering: run one replica).

Options (``--namespace``, repeatable; ``--liveness``; ``--metrics-port``;
``--log-level``) override the environment, which is read and validated once at start-up
(:class:`memstore_operator.settings.OperatorSettings`):

``MEMSTORE_OPERATOR_NAMESPACES`` (comma list; empty = all namespaces),
``MEMSTORE_OPERATOR_RESYNC_SECONDS`` (default 30), ``MEMSTORE_OPERATOR_RETRY_SECONDS``
(default 10), ``MEMSTORE_OPERATOR_BACKEND_TIMEOUT_SECONDS`` (default 3),
``MEMSTORE_OPERATOR_WATCH_TIMEOUT`` (default 300), ``MEMSTORE_OPERATOR_LIVENESS``
(default ``http://0.0.0.0:8081/healthz``; empty = off), ``MEMSTORE_OPERATOR_METRICS_PORT``
/ ``MEMSTORE_OPERATOR_METRICS_ADDR`` (default 8082 on 0.0.0.0; 0 = off),
``MEMSTORE_OPERATOR_LOG_LEVEL`` (default INFO); tracing through the standard ``OTEL_*``
variables (off without ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``OTEL_SERVICE_NAME`` default
``memstore-operator``). A bad value stops the start with a message naming the variable.
Kubernetes credentials: in-cluster, else ``KUBECONFIG``. See docs/architecture.md,
section "Operator".
"""

from __future__ import annotations

from memstore_operator.cli import main
from memstore_operator.settings import LIVENESS_DEFAULT

__all__ = ["LIVENESS_DEFAULT", "main"]

if __name__ == "__main__":
    main(prog_name="memstore-operator")

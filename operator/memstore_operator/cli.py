"""``memstore-operator``: the operator's command line. Options override the
``MEMSTORE_OPERATOR_*`` environment (see :mod:`memstore_operator.__main__`); the
settings are validated once here and handed to the kopf handlers in the memo."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import click

from memstore_operator.settings import LIVENESS_DEFAULT, SettingsError, load_settings


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Watch only this Kubernetes namespace (repeatable; default: all namespaces; "
    "env MEMSTORE_OPERATOR_NAMESPACES, a comma list).",
)
@click.option(
    "--liveness",
    default=None,
    help=f"Liveness endpoint URL [{LIVENESS_DEFAULT}]; empty to disable "
    "(env MEMSTORE_OPERATOR_LIVENESS).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Prometheus /metrics port [8082]; 0 to disable (env MEMSTORE_OPERATOR_METRICS_PORT).",
)
@click.option(
    "--log-level",
    default=None,
    help="DEBUG, INFO, WARNING, ERROR or CRITICAL [INFO] (env MEMSTORE_OPERATOR_LOG_LEVEL).",
)
def main(
    namespaces: tuple[str, ...],
    liveness: str | None,
    metrics_port: int | None,
    log_level: str | None,
) -> None:
    """Run the Kubernetes operator for MemoryStore resources (standalone: run one replica).

    Kubernetes credentials: in-cluster, else KUBECONFIG.
    """
    given: dict[str, Any] = {
        "namespaces": namespaces or None,
        "liveness": liveness,
        "metrics_port": metrics_port,
        "log_level": log_level,
    }
    overrides = {key: value for key, value in given.items() if value is not None}
    options = {key: "--" + key.replace("_", "-") for key in overrides}
    options["namespaces"] = "--namespace"
    try:
        settings = load_settings(overrides, options)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        import kopf

        from memstore_operator.handlers import OperatorMemo
    except ImportError as exc:
        raise click.ClickException(
            f"the operator's dependencies are not installed ({exc.name}): "
            "pip install 'memstore[operator]'"
        ) from None
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=settings.liveness or None,
            memo=OperatorMemo(settings),
        )
    )

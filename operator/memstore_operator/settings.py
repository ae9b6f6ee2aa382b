"""The operator's settings: one validated object, built once at start-up (by
:mod:`memstore_operator.cli`) and handed to the kopf handlers through the operator's memo.

Environment names are ``MEMSTORE_OPERATOR_*`` (the list is in the docstring of
:mod:`memstore_operator.__main__`); the tracing switch and service name are the standard
``OTEL_*`` variables, whose other settings the OpenTelemetry SDK reads itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LIVENESS_DEFAULT = "http://0.0.0.0:8081/healthz"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class OperatorSettings(BaseSettings):
    """Field ``x`` is read from ``MEMSTORE_OPERATOR_X`` unless an alias says otherwise."""

    model_config = SettingsConfigDict(
        env_prefix="MEMSTORE_OPERATOR_", env_file=None, extra="ignore", frozen=True
    )

    # Empty: every namespace (cluster-wide watch).
    namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    # Empty: no liveness endpoint.
    liveness: str = LIVENESS_DEFAULT
    # 0 (or empty): no /metrics server.
    metrics_port: int = Field(8082, ge=0, le=65535)
    metrics_addr: str = "0.0.0.0"  # noqa: S104 - scraped from other pods
    resync_seconds: float = Field(30.0, gt=0)
    retry_seconds: float = Field(10.0, gt=0)
    backend_timeout_seconds: float = Field(3.0, gt=0)
    # Server-side watch timeout; the client gives up 30 s later, so a silent watch restarts.
    watch_timeout: int = Field(300, gt=0)
    log_level: LogLevel = "INFO"
    # Tracing is on when an OTLP endpoint is configured; the SDK reads the other OTEL_*.
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    service_name: str = Field(
        "memstore-operator", min_length=1, validation_alias=AliasChoices("OTEL_SERVICE_NAME")
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(n.strip() for n in value.split(",") if n.strip())
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: Any) -> Any:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _empty_endpoint_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


class SettingsError(ValueError):
    """Invalid operator settings, with one line naming every bad variable."""


def load_settings(
    overrides: Mapping[str, Any] | None = None, names: Mapping[str, str] | None = None
) -> OperatorSettings:
    """The environment, with ``overrides`` (command-line options) taking precedence;
    ``names`` says how to call an overridden field in an error (e.g. ``--metrics-port``)."""
    try:
        return OperatorSettings(**(overrides or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{_source(e['loc'], names or {})}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise SettingsError(f"invalid operator settings: {problems}") from None


def _source(loc: tuple[int | str, ...], names: Mapping[str, str]) -> str:
    field = str(loc[0]) if loc else "?"
    if field in names:
        return names[field]
    info = OperatorSettings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices):
        return " / ".join(str(choice) for choice in alias.choices)
    return f"MEMSTORE_OPERATOR_{field.upper()}"

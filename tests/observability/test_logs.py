"""JSON logs: trace and span ids while a span is current; secrets and payloads redacted."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider
from pydantic import SecretStr

from memstore.observability.logs import REDACTED, JsonFormatter


def _format(msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("memstore.test", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return json.loads(JsonFormatter().format(record))  # type: ignore[no-any-return]


def test_trace_and_span_ids_inside_a_span() -> None:
    assert "trace_id" not in _format("outside")
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("work") as span:
        line = _format("inside")
    ctx = span.get_span_context()
    assert line["trace_id"] == f"{ctx.trace_id:032x}"
    assert line["span_id"] == f"{ctx.span_id:016x}"
    provider.shutdown()


def test_secrets_and_payloads_never_logged() -> None:
    line = _format(
        "connecting with %s",
        SecretStr("hunter2"),
        password="hunter2",
        redis_password="hunter2",
        mongodb_uri="mongodb://u:hunter2@db/",
        authorization="Bearer hunter2",
        api_key="hunter2",
        data={"ssn": "123"},
        messages=[{"content": "private"}],
        backend="embedded",
        operation="save_entity",
    )
    text = json.dumps(line)
    assert "hunter2" not in text and "123" not in text and "private" not in text
    for key in ("password", "redis_password", "mongodb_uri", "authorization", "api_key"):
        assert line[key] == REDACTED
    assert line["data"] == line["messages"] == REDACTED
    assert line["backend"] == "embedded"
    assert line["operation"] == "save_entity"

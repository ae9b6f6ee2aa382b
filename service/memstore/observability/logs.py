"""Structured (JSON) logs on stderr, one object per line.

Every record logged while a span is current carries ``trace_id`` and ``span_id`` (hex, as
trace back-ends show them), so a log line leads to its trace and back.

Records carry only what callers pass: never payloads, and secrets are ``SecretStr``
everywhere so a stray ``%s`` prints ``**********``. As a second line of defence, extra
fields whose names say "secret" (password, token, authorization, uri, ...) or "payload"
(data, body, messages, input, output, ...) are replaced by ``"[redacted]"``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson
from opentelemetry import trace

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

REDACTED = "[redacted]"
# Field names whose values must never reach a log line.
_SECRET_NAME = re.compile(
    r"pass(word|wd)?|secret|token|authori[sz]ation|api[_-]?key|credential|cookie|"
    r"(^|_)uri$|(^|_)dsn$|connection_string",
    re.IGNORECASE,
)
_PAYLOAD_NAMES = frozenset(
    {"data", "body", "payload", "messages", "message_body", "input", "output", "args", "result"}
)


def _redact(key: str, value: Any) -> Any:
    if key.lower() in _PAYLOAD_NAMES or _SECRET_NAME.search(key):
        return REDACTED
    return value


class JsonFormatter(logging.Formatter):
    """``worker``: the process's number under ``memstore serve --workers``, on every line."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.worker is not None:
            body["worker"] = self.worker
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            body["trace_id"] = f"{ctx.trace_id:032x}"
            body["span_id"] = f"{ctx.span_id:016x}"
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                body[key] = _redact(key, value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


#: Libraries whose DEBUG lines hold the parameters of every statement (PyMongo: each
#: command and reply, up to 1,000 characters; so payloads and the webhooks' secrets): kept
#: at INFO.
PARAMETER_LOGGERS = ("pymongo",)


def configure_logging(level: str = "INFO", *, worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(worker))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))

"""The one place that maps errors to HTTP.

Every failure leaves as JSON ``{"code", "message", "details"?}`` with a stable ``code``;
no traceback ever reaches a client (unexpected errors are logged here and answered with a
generic 500 body).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from memstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MemoryStoreError,
    NotFoundError,
    PayloadTooLargeError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Order matters: subclasses before their bases.
STATUS_BY_ERROR: list[tuple[type[MemoryStoreError], int]] = [
    (PayloadTooLargeError, 413),
    (InvalidInputError, 400),
    (NotFoundError, 404),
    # Version conflicts only arise from If-Match / If-None-Match preconditions.
    (ConflictError, 412),
    (BackendUnavailableError, 503),
    (ConfigurationError, 503),
]

_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def status_for(exc: MemoryStoreError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def json_error(
    status: int, code: str, message: str, details: dict[str, object] | None = None
) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body["details"] = details
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MemoryStoreError as exc:
        return json_error(status_for(exc), exc.code, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        if exc.status == 413:
            message = "request body is too large"
        elif exc.status == 405:
            message = f"method {request.method} is not allowed here"
        elif exc.status == 404:
            message = "no such route"
        else:
            message = exc.reason
        return json_error(exc.status, code, message)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.rel_url.path)
        return json_error(500, "internal_error", "internal error; see the server log")

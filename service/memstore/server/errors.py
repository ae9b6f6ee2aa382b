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

from memstore.core.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MemoryStoreError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    RequestTimeoutError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Order matters: subclasses before their bases.
STATUS_BY_ERROR: list[tuple[type[MemoryStoreError], int]] = [
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (QuotaExceededError, 403),
    (RateLimitedError, 429),
    (RequestTimeoutError, 504),
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


def headers_for(exc: MemoryStoreError) -> dict[str, str] | None:
    if isinstance(exc, AuthenticationError):
        # RFC 6750: a request without credentials gets no error code.
        detail = ', error="invalid_token"' if exc.invalid_token else ""
        return {"WWW-Authenticate": f'Bearer realm="memstore"{detail}'}
    if isinstance(exc, RateLimitedError):
        return {"Retry-After": str(int(exc.retry_after))}
    return None


def json_error(
    status: int,
    code: str,
    message: str,
    details: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if details:
        body["details"] = details
    if status == 503 and headers is None:
        headers = {"Retry-After": "1"}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def error_response(request: web.Request, exc: Exception) -> web.Response | None:
    """The JSON answer for an exception a handler raised, or ``None`` when it must
    propagate (an HTTP redirect: aiohttp answers those itself)."""
    if isinstance(exc, MemoryStoreError):
        return json_error(
            status_for(exc), exc.code, exc.message, exc.details, headers=headers_for(exc)
        )
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
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
    log.error("unhandled error on %s %s", request.method, request.rel_url.path, exc_info=exc)
    return json_error(500, "internal_error", "internal error; see the server log")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as JSON when observability is off (``observability_middleware`` maps them
    itself otherwise, through ``error_response`` too: one middleware layer, not two)."""
    try:
        return await handler(request)
    except Exception as exc:
        response = error_response(request, exc)
        if response is None:
            raise
        return response

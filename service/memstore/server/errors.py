"""The one place that turns errors into HTTP answers.

Every failure leaves as JSON ``{"code", "message", "details"?}`` with a stable ``code``;
no traceback ever reaches a client (unexpected errors are logged here and answered with a
generic 500 body). The status and code of our own errors are their class's
(``memstore.core.errors``, where the tree is drawn); the client reads them back there too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from memstore.core.errors import (
    CLOSEST_BY_STATUS,
    AuthenticationError,
    MemoryStoreError,
    RateLimitedError,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Codes for the answers aiohttp gives by itself that no error type of ours stands for;
#: the other 4xx take the code of the error type that owns the status (core.errors).
HTTP_ONLY_CODES = {
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    412: "precondition_failed",
    415: "unsupported_media_type",
}


def http_code(status: int) -> str:
    """The ``code`` of an HTTP-level error answer (no route, wrong method, body too big)."""
    code = HTTP_ONLY_CODES.get(status)
    if code is not None:
        return code
    closest = CLOSEST_BY_STATUS.get(status) if 400 <= status < 500 else None
    return "http_error" if closest is None else closest.code


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
        response = json_error(
            exc.http_status, exc.code, exc.message, exc.details, headers=headers_for(exc)
        )
        if isinstance(exc.__cause__, web.RequestPayloadError):
            # The request's body stream broke (it did not decode): nothing more can be
            # read from this connection, so the answer says it closes.
            response.force_close()
        return response
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        code = http_code(exc.status)
        headers = None
        if exc.status == 413:
            message = "request body is too large"
        elif isinstance(exc, web.HTTPMethodNotAllowed):
            message = f"method {request.method} is not allowed here"
            # RFC 9110 15.5.6: a 405 names the methods the resource supports (aiohttp's
            # router collected them from the routes whose path matched).
            headers = {"Allow": ", ".join(sorted(exc.allowed_methods))}
        elif exc.status == 404:
            message = "no such route"
        elif isinstance(exc, web.HTTPUnsupportedMediaType):
            # Raised by our own code with the message and the codings it accepts.
            message = exc.text or "unsupported media type"
            headers = {"Accept-Encoding": exc.headers.get("Accept-Encoding", "identity")}
        else:
            message = exc.reason
        return json_error(exc.status, code, message, headers=headers)
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

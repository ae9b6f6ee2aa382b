"""The HTTP connection handler of ``memstore serve``: aiohttp's, with two changes for
requests aiohttp rejects before any middleware sees them (a malformed request line or
header, a body coding it cannot decode):

* the answer is the JSON error body of every other error (``server.errors``), not
  aiohttp's ``text/plain`` page echoing what the client sent;
* the log gets one line per such request, at a bounded rate, instead of a traceback each:
  any client can send malformed HTTP, and it must not be able to fill the log.

aiohttp has no hook for these answers (aio-libs/aiohttp#3287): they come from
``RequestHandler.handle_error``, so this subclasses the handler, and the server and runner
that make it. Exceptions that are not the client's fault keep their traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError

from memstore.core.errors import MemoryStoreError, RequestTimeoutError
from memstore.server.errors import http_code, json_error
from memstore.server.routing import ACCEPT_ENCODING, BODY_CODINGS, UNSUPPORTED_CODING

log = logging.getLogger("memstore.server.protocol")


class BoundedLog:
    """Token bucket for log lines: at most ``burst`` at once, then ``per_second``; the
    lines dropped meanwhile are counted in the next line written."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 10,
        per_second: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()
        self.dropped = 0

    def warning(self, msg: str, *args: object) -> bool:
        """Log ``msg`` as one line if the budget allows; ``True`` when written."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens < 1:
            self.dropped += 1
            return False
        self.tokens -= 1
        if self.dropped:
            msg += " (%d more like it not logged)"
            args = (*args, self.dropped)
            self.dropped = 0
        self.logger.warning(msg, *args)
        return True


def _client_fault(exc: BaseException | None) -> bool:
    """A malformed request or a request body that does not decode: the client's doing."""
    return isinstance(exc, HttpProcessingError | web.RequestPayloadError)


def _unsupported_coding(exc: BaseException | None) -> bool:
    """The parser refused a coding it has no decoder for (br, zstd: their libraries are
    not installed; the API accepts only BODY_CODINGS anyway). The same exception type
    says that a gzip or deflate body does not decode, a 400; its message names the
    coding either way."""
    return isinstance(exc, ContentEncodingError) and not any(
        coding in str(exc.message) for coding in BODY_CODINGS if coding != "identity"
    )


#: What a malformed request is told, by parser error; never the offending bytes (they may
#: hold a token).
_MESSAGES = {
    "BadHttpMethod": "malformed HTTP request: invalid method",
    "BadStatusLine": "malformed HTTP request line",
    "InvalidURLError": "malformed HTTP request: invalid URL",
    "LineTooLong": "HTTP request line or header too long",
    "InvalidHeader": "malformed HTTP header",
    "TransferEncodingError": "malformed HTTP request: invalid chunked body",
    "ContentLengthError": "malformed HTTP request: body shorter than Content-Length",
    "ContentEncodingError": "request body does not decode under its Content-Encoding",
}


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection handler answering its own errors in the JSON contract."""

    def __init__(self, *args: Any, bounded_log: BoundedLog, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bounded_log = bounded_log

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if _client_fault(exc if isinstance(exc, BaseException) else None):
            # Also reached after a body that did not decode was answered: aiohttp then
            # reads the rest of the broken stream and logs what it raises.
            self.bounded_log.warning("bad HTTP request: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # A response is already on the wire; aiohttp's handler says so and closes.
            return super().handle_error(request, status, exc, message)
        headers = None
        if _unsupported_coding(exc):
            status, code = 415, http_code(415)
            text = UNSUPPORTED_CODING
            headers = {"Accept-Encoding": ACCEPT_ENCODING}
        elif _client_fault(exc):
            status, code = 400, http_code(400)
            text = _MESSAGES.get(type(exc).__name__, "malformed HTTP request")
        elif status == 504:
            code, text = RequestTimeoutError.code, "the request timed out"
        else:
            status, code = 500, MemoryStoreError.code
            text = "internal error; see the server log"
        if _client_fault(exc):
            self.bounded_log.warning("bad HTTP request answered %d: %s", status, type(exc).__name__)
        elif status == 500:
            # Not the client's doing: a bug, with its traceback.
            self.logger.error("error answered 500 by the connection handler", exc_info=exc)
        response = json_error(status, code, text, headers=headers)
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    """aiohttp's low-level server, making :class:`JsonErrorRequestHandler` connections."""

    def __init__(self, base: web.Server, bounded_log: BoundedLog) -> None:
        # The app's server as aiohttp built it (handler, request factory, settings).
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.bounded_log = bounded_log

    def __call__(self) -> web.RequestHandler:
        return JsonErrorRequestHandler(
            self, loop=self._loop, bounded_log=self.bounded_log, **self._kwargs
        )


class JsonErrorAppRunner(web.AppRunner):
    """``web.AppRunner`` whose server answers malformed requests in JSON."""

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        return JsonErrorServer(base, BoundedLog(log))


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    reuse_port: bool = False,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then stop gracefully: the listener closes,
    in-flight requests finish (up to ``shutdown_timeout``), then the app's cleanup runs.
    (``web.run_app`` cannot take another runner; this is its sequence for one TCP site.)
    ``reuse_port``: SO_REUSEPORT, so the workers of ``memstore serve --workers`` each
    listen on the same port and the kernel spreads connections over them;
    ``on_listening`` is called once the site accepts connections."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # keepalive_timeout: web.run_app's default, which memstore served with before.
    runner = JsonErrorAppRunner(
        app, access_log=None, keepalive_timeout=75.0, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        log.info("memstore listening on %s", site.name)
        if on_listening is not None:
            on_listening()
        await stop.wait()
    finally:
        await runner.cleanup()

"""Application assembly: settings -> manager -> aiohttp app, and serving with graceful stop.

The manager (and so the backend connection) has one owner: ``cleanup_ctx`` connects it
before the first request and closes it after the last one. On SIGTERM aiohttp stops
accepting connections, lets in-flight requests finish (up to the shutdown timeout), then
runs the cleanup; every write is committed before its response is sent, so an
acknowledged write is never lost by a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from memstore.core.bounds import ENVELOPE_BYTES
from memstore.core.errors import BackendUnavailableError
from memstore.core.settings import Settings
from memstore.memory.manager import DistributedMemoryManager
from memstore.observability.metrics import PrometheusMetrics
from memstore.observability.tracing import Tracing
from memstore.server.errors import error_middleware
from memstore.server.feed import add_feed
from memstore.server.inspector import add_inspector
from memstore.server.limits import QuotaTracker
from memstore.server.openapi import build_openapi
from memstore.server.protocol import serve_app
from memstore.server.routes import ROUTES, add_routes
from memstore.server.security import Security, check_bind, security_middleware
from memstore.server.state import MANAGER, METRICS, OPENAPI, SETTINGS, WEBHOOKS, WORKER
from memstore.server.telemetry import observability_middleware
from memstore.server.webhooks.config import WebhookStore, load_webhooks_file
from memstore.server.webhooks.deliverer import WebhookDeliverer

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    manager: DistributedMemoryManager | None = None,
    metrics: PrometheusMetrics | None = None,
    tracing: Tracing | None = None,
    worker: int | None = None,
) -> web.Application:
    """``tracing``: default from the OTEL_* environment (see observability.tracing).
    ``worker``: this process's number under ``memstore serve --workers`` (server/workers.py),
    sent back in the ``Memstore-Worker`` header of every response."""
    settings = settings or Settings()
    metrics = metrics or PrometheusMetrics()
    # Identifies the target even with recording switched off.
    metrics.set_build_info(settings.memory_type)
    if tracing is None:
        tracing = Tracing.from_env()
    # Observability switched off records nothing (the /metrics registry keeps only the build
    # and process figures).
    recording = metrics if settings.metrics_enabled else None
    if manager is None:
        manager = DistributedMemoryManager(settings=settings, prometheus=recording, tracing=tracing)
    # The observability middleware maps errors itself (see its module doc).
    outer = (
        observability_middleware(recording, tracing)
        if recording is not None or tracing is not None
        else error_middleware
    )
    security = Security(settings, manager)
    middlewares: list[Middleware] = [outer, security_middleware(security)]
    app = web.Application(
        middlewares=middlewares,
        client_max_size=settings.max_body_bytes + ENVELOPE_BYTES,
    )
    app[SETTINGS] = settings
    app[MANAGER] = manager
    app[METRICS] = metrics
    app[OPENAPI] = build_openapi(ROUTES, settings)
    # A webhooks file that cannot be used stops the start (fail closed), like the tokens.
    app[WEBHOOKS] = webhooks = WebhookStore(manager, load_webhooks_file(settings.webhooks_file))
    if worker is not None:
        app[WORKER] = worker
        app.on_response_prepare.append(_worker_header(worker))
    add_routes(app)
    add_feed(app)
    if settings.ui_served:
        add_inspector(app)

    async def manager_lifecycle(app: web.Application) -> AsyncIterator[None]:
        try:
            await app[MANAGER].start()
        except BackendUnavailableError as exc:
            # Serve anyway: /readyz says unready and requests get 503 until the backend
            # answers (the manager connects on first use); no restart needed. The reason
            # (refused credentials, certificate, unreachable) is what an operator needs.
            log.warning(
                "memory backend unavailable at start; serving unready until it answers: %s",
                exc.message,
            )
        yield
        await app[MANAGER].close()
        if tracing is not None:
            # Flushes the batch processors: blocking export calls, kept off the event loop.
            await asyncio.to_thread(tracing.shutdown)

    app.cleanup_ctx.append(manager_lifecycle)
    if metrics.multiprocess:
        app.cleanup_ctx.append(_publish_metrics(metrics))
    if settings.webhooks_enabled:
        deliverer = WebhookDeliverer(manager, webhooks, settings, recording)

        async def deliverer_lifecycle(app: web.Application) -> AsyncIterator[None]:
            # After the manager's: stopped (its claims given up) before the manager closes.
            # Its tasks copy this context: marked unsampled, their backend reads (a poll
            # every second per webhook) make no traces of their own.
            token = tracing.unsampled() if tracing is not None else None
            try:
                await deliverer.start()
            finally:
                if tracing is not None and token is not None:
                    tracing.sampled_again(token)
            yield
            await deliverer.stop()

        app.cleanup_ctx.append(deliverer_lifecycle)
    if settings.mcp_enabled:
        # After the manager's lifecycle: /mcp's streams end before the manager closes.
        _add_mcp(app, settings, manager, security.quotas)
    return app


def _add_mcp(
    app: web.Application,
    settings: Settings,
    manager: DistributedMemoryManager,
    quotas: QuotaTracker,
) -> None:
    """``/mcp`` when the MCP SDK (the ``mcp`` extra) is installed."""
    try:
        from memstore.server.mcp.http import add_mcp
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in ("mcp", "mcp_types"):
            raise
        log.warning(
            "/mcp is not served: the MCP SDK is not installed (pip install 'memstore[mcp]'); "
            "MEMSTORE_MCP_ENABLED=false silences this"
        )
        return
    add_mcp(app, settings, manager, quotas)


def _worker_header(worker: int) -> Callable[[web.Request, web.StreamResponse], Any]:
    value = str(worker)

    async def add_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Memstore-Worker"] = value

    return add_header


#: How often a worker copies its plain-int figures into the multiprocess series.
PUBLISH_SECONDS = 1.0


def _publish_metrics(
    metrics: PrometheusMetrics,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Multiprocess mode: ``metrics.publish()`` every second while the app runs, so another
    worker's scrape sees this worker's cache and in-flight figures at most that late."""

    async def publish_every() -> None:
        while True:
            metrics.publish()
            await asyncio.sleep(PUBLISH_SECONDS)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(publish_every())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.publish()

    return lifecycle


def serve(
    settings: Settings,
    *,
    worker: int | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (``protocol.serve_app``). ``worker``:
    one of the processes of ``memstore serve --workers`` (``server/workers.py``): it listens
    with SO_REUSEPORT and calls ``on_listening`` once it accepts connections."""
    check_bind(settings)
    app = create_app(settings, worker=worker)
    app.on_startup.append(_freeze_startup_objects)  # after the manager started
    asyncio.run(
        serve_app(
            app,
            settings.host,
            settings.port,
            shutdown_timeout=settings.shutdown_timeout_seconds,
            reuse_port=worker is not None,
            on_listening=on_listening,
        )
    )


async def _freeze_startup_objects(app: web.Application) -> None:
    """Move everything start-up made (modules, settings, the app, its connections) out of
    the garbage collector's generations: it lives as long as the process, and a full
    collection no longer walks it. Measured with tracing at 10% (cache-hit GETs): full
    collections took ~25 ms each and came twice as often as untraced, because spans
    waiting for export survive into the oldest generation. Only for ``memstore serve``:
    a test process that builds many apps must still collect them."""
    gc.collect()
    gc.freeze()

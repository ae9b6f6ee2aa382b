"""Application assembly: settings -> manager -> aiohttp app, and serving with graceful stop.

The manager (and so the backend connection) has one owner: ``cleanup_ctx`` connects it
before the first request and closes it after the last one. On SIGTERM aiohttp stops
accepting connections, lets in-flight requests finish (up to the shutdown timeout), then
runs the cleanup; every write is committed before its response is sent, so an
acknowledged write is never lost by a stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from memstore.api.errors import Handler, error_middleware
from memstore.api.openapi import build_openapi
from memstore.api.routes import ROUTES, add_routes
from memstore.api.state import MANAGER, METRICS, OPENAPI, SETTINGS
from memstore.config import Settings
from memstore.manager import DistributedMemoryManager
from memstore.metrics import PrometheusMetrics

log = logging.getLogger(__name__)

# Room for the JSON envelope around a payload of max_body_bytes.
ENVELOPE_BYTES = 64 * 1024


def _metrics_middleware(metrics: PrometheusMetrics) -> Middleware:
    in_flight = metrics.http_in_flight

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        # The route template keeps label cardinality bounded; unknown paths share one label.
        route = resource.canonical if resource is not None else "unmatched"
        began = time.perf_counter()
        in_flight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            in_flight.dec()
            metrics.http_requests.labels(request.method, route, f"{status // 100}xx").inc()
            metrics.http_duration.labels(request.method, route).observe(time.perf_counter() - began)

    return middleware


def create_app(
    settings: Settings | None = None,
    *,
    manager: DistributedMemoryManager | None = None,
    metrics: PrometheusMetrics | None = None,
) -> web.Application:
    settings = settings or Settings()
    metrics = metrics or PrometheusMetrics()
    if manager is None:
        manager = DistributedMemoryManager(settings=settings, prometheus=metrics)
    app = web.Application(
        middlewares=[_metrics_middleware(metrics), error_middleware],
        client_max_size=settings.max_body_bytes + ENVELOPE_BYTES,
    )
    app[SETTINGS] = settings
    app[MANAGER] = manager
    app[METRICS] = metrics
    app[OPENAPI] = build_openapi(ROUTES, settings)
    add_routes(app)

    async def manager_lifecycle(app: web.Application) -> AsyncIterator[None]:
        await app[MANAGER].start()
        yield
        await app[MANAGER].close()

    app.cleanup_ctx.append(manager_lifecycle)
    return app


def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully."""
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.info("listening on a non-loopback address %s", settings.host)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        access_log=None,
        print=lambda msg: log.info("%s", msg),
    )

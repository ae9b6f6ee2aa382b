"""The observability middleware: request metrics and the server span, in one layer.

It is the outermost middleware, so it sees the status the error middleware chose and times
everything (auth, validation, errors). Labels and span names use the route template (never
the raw path), so cardinality is bounded. With metrics and tracing both off it is not
installed at all.

Tracing: the incoming W3C ``traceparent`` (and baggage) is the parent of the server span;
the response to a sampled request carries ``traceresponse`` (W3C Trace Context level 2) so
a caller can find the server's span. Server spans are errors only for 5xx, as the HTTP
conventions say. Probe and scrape routes (``UNTRACED_ROUTES``) are counted in metrics but
not traced: a kubelet and a Prometheus polling every few seconds would otherwise fill the
trace store with noise.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from memstore.api.errors import Handler
from memstore.metrics import UNMATCHED_ROUTE, PrometheusMetrics, method_label
from memstore.tracing import Tracing, traceresponse

UNTRACED_ROUTES = frozenset({"/livez", "/readyz", "/metrics"})


def observability_middleware(
    metrics: PrometheusMetrics | None, tracing: Tracing | None
) -> Middleware:
    observe = metrics.observe_http if metrics is not None else None
    perf_counter = time.perf_counter

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else UNMATCHED_ROUTE
        method = method_label(request.method)
        span: Any = None
        token: Any = None
        unsampled: Any = None
        if tracing is not None and route not in UNTRACED_ROUTES:
            sampled = tracing.sample_request(request.headers)
            if sampled is not None:
                span = tracing.tracer.new_span(
                    f"{method} {route}" if resource is not None else method,
                    tracing.SERVER,
                    *sampled,
                    _request_attributes(request, method, route, resource is not None),
                )
                token = tracing.attach(tracing.set_span_in_context(span))
            else:
                unsampled = tracing.unsampled()
        if metrics is not None:
            metrics.in_flight += 1
        began = perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if span is not None and not response.prepared and span.is_recording():
                response.headers["traceresponse"] = traceresponse(span)
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except BaseException as exc:
            if span is not None and tracing is not None:
                tracing.record_error(span, exc, type(exc).__qualname__)
            raise
        finally:
            if observe is not None and metrics is not None:
                metrics.in_flight -= 1
                observe(method, route, status, perf_counter() - began)
            if unsampled is not None and tracing is not None:
                tracing.sampled_again(unsampled)
            if span is not None and tracing is not None:
                tracing.detach(token)
                if span.is_recording():
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_attribute("error.type", str(status))
                        span.set_status(tracing.error_status)
                span.end()

    return middleware


def _request_attributes(
    request: web.Request, method: str, route: str, matched: bool
) -> dict[str, Any]:
    """HTTP server span attributes known at the start (semantic conventions), in one dict
    for ``start_span``: cheaper than a ``set_attribute`` call each."""
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": request.path,
        "url.scheme": request.scheme,
    }
    if matched:
        attributes["http.route"] = route
    host = request.host
    address, sep, port = host.rpartition(":")
    if sep and port.isdigit() and (address.endswith("]") or not address.startswith("[")):
        attributes["server.address"] = address.strip("[]")
        attributes["server.port"] = int(port)
    else:
        attributes["server.address"] = host.strip("[]")
    version = request.version
    attributes["network.protocol.version"] = f"{version.major}.{version.minor}"
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent[:256]
    if request.remote:
        attributes["client.address"] = request.remote
    return attributes

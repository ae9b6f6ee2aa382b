"""The observability middleware: request metrics and the server span, in one layer.

It is the outermost middleware and times everything (auth, validation, errors). It also
maps errors to their JSON answers, through ``errors.error_response`` (still the one place
that does): a separate error middleware inside it would cost every request one more
coroutine layer, about 2 µs here. Labels and span names use the route template (never
the raw path), so cardinality is bounded. With metrics and tracing both off it is not
installed at all (``errors.error_middleware`` is, instead).

Tracing: the configured propagators (``OTEL_PROPAGATORS``: W3C ``traceparent``, B3, ...)
give the parent of the server span; the sampler decides before any span exists
(``Tracing.request_span``), so an unsampled request costs a few header look-ups and one
sampler call. The response to a sampled request carries ``traceresponse`` (W3C Trace
Context level 2) so a caller can find the server's span. Server spans are errors only for
5xx, as the HTTP conventions say. Probe and scrape routes (``traced=False`` in the route
table) are counted in metrics but not traced: a kubelet and a Prometheus polling every few
seconds would otherwise fill the trace store with noise.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from aiohttp.web_urldispatcher import AbstractRoute

from memstore.observability.metrics import UNMATCHED_ROUTE, PrometheusMetrics, method_label
from memstore.observability.tracing import Tracing, traceresponse
from memstore.server.errors import Handler, error_response
from memstore.server.routing import route_row

if TYPE_CHECKING:
    from opentelemetry.trace import Span


def observability_middleware(
    metrics: PrometheusMetrics | None, tracing: Tracing | None
) -> Middleware:
    observe = metrics.observe_http if metrics is not None else None
    perf_counter = time.perf_counter
    # Each table route's span name (``None``: not traced), worked out on its first request.
    span_names: dict[AbstractRoute, str | None] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        span: Span | None = None
        token: Any = None
        unsampled: Any = None
        if tracing is not None:
            name = span_names.get(request.match_info.route, _UNKNOWN)
            if name == _UNKNOWN:
                name = _span_name(request, span_names)
            if name is not None:
                parent = tracing.request_parent(request.headers)
                span = tracing.request_span(parent, name, lambda: _request_attributes(request))
            if span is None:
                # Not traced: nor are its children (backend spans).
                unsampled = tracing.unsampled()
                if metrics is None:
                    # Tracing only (90% of requests at 10%): nothing to record, so skip
                    # the bookkeeping below. The error handling is
                    # errors.error_middleware's, inlined: awaiting it would put back the
                    # coroutine layer this middleware exists to save.
                    try:
                        return await handler(request)
                    except Exception as exc:
                        mapped = error_response(request, exc)
                        if mapped is None:
                            raise
                        return mapped
                    finally:
                        tracing.sampled_again(unsampled)
            else:
                # In the caller's context, so its baggage stays current too.
                token = tracing.attach(tracing.set_span_in_context(span, parent))
        method = route = ""
        if metrics is not None:
            method, route = _labels(request)
            metrics.in_flight += 1
        began = perf_counter()
        status = 500
        recorded = False  # an error already on the span, with its type
        try:
            try:
                response = await handler(request)
            except Exception as exc:
                mapped = error_response(request, exc)
                if mapped is None:
                    raise
                if span is not None and tracing is not None and mapped.status >= 500:
                    code = getattr(exc, "code", None)
                    tracing.record_error(span, exc, code or type(exc).__qualname__)
                    recorded = True
                response = mapped
            status = response.status
            if span is not None and not response.prepared:
                response.headers["traceresponse"] = traceresponse(span)
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except BaseException as exc:
            if span is not None and tracing is not None:
                tracing.record_error(span, exc, type(exc).__qualname__)
                recorded = True
            raise
        finally:
            if observe is not None and metrics is not None:
                metrics.in_flight -= 1
                observe(method, route, status, perf_counter() - began)
            if unsampled is not None and tracing is not None:
                tracing.sampled_again(unsampled)
            if span is not None and tracing is not None:
                tracing.detach(token)
                span.set_attribute("http.response.status_code", status)
                if status >= 500 and not recorded:
                    span.set_attribute("error.type", str(status))
                    span.set_status(tracing.error_status)
                span.end()

    return middleware


def _labels(request: web.Request) -> tuple[str, str]:
    """The request's method and route labels (the route template, or ``unmatched``)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED_ROUTE
    return method_label(request.method), route


_UNKNOWN = ""  # not in ``span_names`` yet (a span name is never empty)


def _span_name(request: web.Request, span_names: dict[AbstractRoute, str | None]) -> str | None:
    """The request's span name, ``None`` for a route the table does not trace (probes,
    scrapes); kept in ``span_names`` for the table's routes (a bounded set: an unmatched
    request's route is new each time)."""
    method, route = _labels(request)
    row = route_row(request)
    name = None if row is not None and not row.traced else method
    if name is not None and route != UNMATCHED_ROUTE:
        name = f"{method} {route}"
    if row is not None:
        span_names[request.match_info.route] = name
    return name


def _request_attributes(request: web.Request) -> dict[str, Any]:
    """HTTP server span attributes (semantic conventions), from the parsed request and
    its connection."""
    method, route = _labels(request)
    matched = route != UNMATCHED_ROUTE
    transport = request.transport
    headers = request.headers
    version = request.version
    ssl = transport.get_extra_info("sslcontext") if transport is not None else None
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": request.rel_url.path,
        "url.scheme": "https" if ssl else "http",
    }
    if matched:
        attributes["http.route"] = route
    host = headers.get("Host", "")
    address, sep, port = host.rpartition(":")
    if sep and port.isdigit() and (address.endswith("]") or not address.startswith("[")):
        attributes["server.address"] = address.strip("[]")
        attributes["server.port"] = int(port)
    elif host:
        attributes["server.address"] = host.strip("[]")
    attributes["network.protocol.version"] = f"{version.major}.{version.minor}"
    agent = headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent[:256]
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, (list, tuple)) and peer:
        attributes["client.address"] = str(peer[0])
    return attributes

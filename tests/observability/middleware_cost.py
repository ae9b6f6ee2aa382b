"""Per-request cost of the server-span middleware alone: memstore's thin middleware vs
opentelemetry-instrumentation-aiohttp-server (on the SDK's tracer provider), same sampler.

Not a test. The handler is trivial, so the figure is exactly what the middleware adds; each
figure is the *minimum* over many interleaved batches, which filters out the noise of a
shared machine. Spans go through each variant's real exporter (memstore's, the SDK's)
to a real collector (mk/otelcol.mk). Needs the contrib package importable (it is not a memstore
dependency), e.g. in a scratch venv:

    python -m tests.observability.middleware_cost
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from memstore.observability.metrics import PrometheusMetrics
from memstore.observability.tracing import Tracing
from memstore.server.telemetry import observability_middleware
from tests.servers.otelcol import Collector

PATH = "/v1/namespaces/bench/entities/user/u1"
ROUTE = "/v1/namespaces/{namespace}/entities/{entity_type}/{entity_id}"
BATCH = 500
BATCHES = 40


def provider(endpoint: str, ratio: float) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    p = TracerProvider(
        resource=Resource({"service.name": "middleware-cost"}),
        sampler=ParentBased(TraceIdRatioBased(ratio)),
    )
    p.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    return p


async def handler(request: web.Request) -> web.StreamResponse:
    return web.Response(text="{}", content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_get(ROUTE, handler)
    app.freeze()
    collector = Collector(Path(mkdtemp(prefix="middleware-cost-"))).start()
    try:
        base = make_mocked_request("GET", PATH, app=app)
        match_info = await app.router.resolve(base)

        def request() -> web.Request:
            req = make_mocked_request(
                "GET", PATH, app=app, headers={"Host": "127.0.0.1:8080", "User-Agent": "b"}
            )
            req._match_info = match_info
            return req

        variants: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        metrics = PrometheusMetrics()

        async def bare(req: web.Request) -> web.StreamResponse:
            return await handler(req)

        variants["none"] = bare
        mw = observability_middleware(metrics, None)
        variants["metrics"] = lambda r, mw=mw: mw(r, handler)  # type: ignore[misc]
        import opentelemetry.instrumentation.aiohttp_server as contrib

        providers = []
        tracings: list[Tracing] = []
        for ratio in (1.0, 0.1):
            prov = provider(collector.endpoint, ratio)
            providers.append(prov)
            thin_tracing = Tracing.from_env(
                {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                    "OTEL_SERVICE_NAME": "middleware-cost",
                    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                    "OTEL_TRACES_SAMPLER_ARG": str(ratio),
                }
            )
            assert thin_tracing is not None
            await thin_tracing.start()
            tracings.append(thin_tracing)
            thin = observability_middleware(None, thin_tracing)
            contrib.AioHttpServerInstrumentor().instrument(tracer_provider=prov)
            cmw = contrib.create_aiohttp_middleware(tracer_provider=prov)
            contrib.AioHttpServerInstrumentor().uninstrument()
            tag = f"{int(ratio * 100)}"
            variants[f"thin-{tag}"] = lambda r, m=thin: m(r, handler)  # type: ignore[misc]
            variants[f"contrib-{tag}"] = lambda r, m=cmw: m(r, handler)  # type: ignore[misc]

        # One request object, reused: building mocked requests costs far more than a call.
        req = request()
        best = {name: float("inf") for name in variants}
        for _ in range(BATCHES):
            for name, call in variants.items():
                began = time.perf_counter()
                for _ in range(BATCH):
                    await call(req)
                best[name] = min(best[name], (time.perf_counter() - began) / BATCH)
        print(f"{'variant':<12} {'us/request':>10} {'added us':>9}")
        for name, seconds in best.items():
            print(f"{name:<12} {1e6 * seconds:10.1f} {1e6 * (seconds - best['none']):9.1f}")
        for prov in providers:
            prov.shutdown()
        for tracing in tracings:
            await tracing.stop()
    finally:
        collector.stop()


if __name__ == "__main__":
    asyncio.run(main())

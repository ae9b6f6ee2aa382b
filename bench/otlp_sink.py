"""A do-nothing OTLP/HTTP receiver for the tracing-cost scenarios: accepts every export
(``POST /v1/traces``), counts requests and bytes (``GET /stats``), keeps nothing. It runs
in its own process so its work is not charged to the service's CPU figure."""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web

STATS = web.AppKey("stats", dict)


async def export(request: web.Request) -> web.Response:
    body = await request.read()
    stats = request.app[STATS]
    stats["exports"] += 1
    stats["bytes"] += len(body)
    # An empty ExportTraceServiceResponse is a zero-length protobuf message.
    return web.Response(body=b"", content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[STATS]), content_type="application/json")


async def livez(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATS] = {"exports": 0, "bytes": 0}
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/stats", stats)
    app.router.add_get("/livez", livez)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

"""The baseline server: a minimal aiohttp app on the service's own URLs, doing only the raw
backend operation (``bench.raw``). Same request bytes, same response shape, so the same
wrk script drives it and the service; the ratio between the two is what the service's
layers (routing table, validation, manager, cache, metrics, error mapping) cost.

Run: ``python -m bench.baseline --port P --backend dict|sqlite|redis|redis-cluster|mongodb``
with ``--opt key=value`` for the backend (``path``, ``port``, ``nodes``, ``uri``).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from bench.raw import Conflict, RawOps, make_ops, tool_record

OPS: web.AppKey[RawOps] = web.AppKey("ops", RawOps)
JSON = "application/json"
P = "/v1/namespaces/{ns}"


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON, headers=headers)


async def get_entity(request: web.Request) -> web.Response:
    mi = request.match_info
    body = await request.app[OPS].get_entity(mi["ns"], mi["etype"], mi["eid"])
    if body is None:
        return _json(b'{"code":"not_found"}', 404)
    return _json(body)


async def put_entity(request: web.Request) -> web.Response:
    mi = request.match_info
    expected = None
    if (im := request.headers.get("If-Match")) is not None:
        expected = int(im.strip('W/"'))
    elif request.headers.get("If-None-Match") == "*":
        expected = 0
    data = orjson.loads(await request.read())["data"]
    try:
        version, body = await request.app[OPS].put_entity(
            mi["ns"], mi["etype"], mi["eid"], orjson.dumps(data), expected
        )
    except Conflict:
        return _json(b'{"code":"conflict"}', 412)
    return _json(body, 201 if version == 1 else 200, {"ETag": f'"{version}"'})


async def append(request: web.Request) -> web.Response:
    msgs = orjson.loads(await request.read())["messages"]
    body = await request.app[OPS].append(
        request.match_info["ns"], request.match_info["cid"], [orjson.dumps(m) for m in msgs]
    )
    return _json(body, 201)


async def load(request: web.Request) -> web.Response:
    limit = int(request.query.get("limit", "50"))
    body = await request.app[OPS].load_last(
        request.match_info["ns"], request.match_info["cid"], limit
    )
    return _json(body)


async def tool(request: web.Request) -> web.Response:
    ns = request.match_info["ns"]
    record = tool_record(ns, orjson.loads(await request.read()))
    return _json(await request.app[OPS].record_tool(ns, record), 201)


async def livez(request: web.Request) -> web.Response:
    return _json(b'{"status":"alive"}')


def create_app(ops: RawOps) -> web.Application:
    app = web.Application()
    app[OPS] = ops

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await ops.start()
        yield
        await ops.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/livez", livez)
    app.router.add_get(P + "/entities/{etype}/{eid}", get_entity)
    app.router.add_put(P + "/entities/{etype}/{eid}", put_entity)
    app.router.add_post(P + "/conversations/{cid}/messages", append)
    app.router.add_get(P + "/conversations/{cid}/messages", load)
    app.router.add_post(P + "/tool-usage", tool)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--opt", action="append", default=[])
    args = parser.parse_args()
    opts = dict(o.split("=", 1) for o in args.opt)
    web.run_app(
        create_app(make_ops(args.backend, **opts)),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()

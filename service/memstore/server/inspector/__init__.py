"""The web inspector: a static page at ``/ui`` that reads the namespace API.

The page, its script and style, and the charting library (uPlot, vendored with its
licence in ``static/vendor``) are package data, read once when the app is built and
served from memory: no CDN, no build step, nothing fetched at run time. The page holds
no data and no access of its own: it calls the same ``/v1`` routes with the token the
user pastes into it (``Authorization`` header, kept in the tab's ``sessionStorage``), so
it shows exactly what the API answers for that token.

The routes are open (``role=None``: a browser cannot send a bearer token when it loads a
page) and serve only these fixed files. Not in ``routes.ROUTES`` (and so not in
``/openapi.json``): they are not part of the API, and they exist only when the
inspector is served (``Settings.ui_served``).
"""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web

from memstore.core.errors import NotFoundError
from memstore.server.routing import Route, TableRoute

UI_PATH = "/ui"

#: Scripts and styles only from this origin and never inline, data only from this
#: origin's API, no frames, forms or plugins.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

_UPLOT = "vendor/uplot-1.6.32"
#: URL name -> (file under static/, media type). The only files served.
ASSETS: dict[str, tuple[str, str]] = {
    "inspector.js": ("inspector.js", "text/javascript"),
    "inspector.css": ("inspector.css", "text/css"),
    "uPlot.js": (f"{_UPLOT}/uPlot.iife.min.js", "text/javascript"),
    "uPlot.css": (f"{_UPLOT}/uPlot.min.css", "text/css"),
    "uPlot-LICENSE.txt": (f"{_UPLOT}/LICENSE", "text/plain"),
}


def _headers(media_type: str) -> dict[str, str]:
    return {
        "Content-Type": f"{media_type}; charset=utf-8",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Revalidated each load: a new version of memstore serves its own page at once.
        "Cache-Control": "no-cache",
    }


class Inspector:
    """The inspector's files, read from the package once."""

    def __init__(self) -> None:
        static = files(__name__).joinpath("static")
        self.page = static.joinpath("index.html").read_bytes()
        self.assets = {
            name: (static.joinpath(path).read_bytes(), media_type)
            for name, (path, media_type) in ASSETS.items()
        }

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, headers=_headers("text/html"))

    async def asset(self, request: web.Request) -> web.Response:
        found = self.assets.get(request.match_info["asset"])
        if found is None:
            raise NotFoundError("no such inspector file")
        body, media_type = found
        return web.Response(body=body, headers=_headers(media_type))


def inspector_routes(inspector: Inspector) -> tuple[Route, ...]:
    return (
        Route("GET", UI_PATH, inspector.index, "inspectorPage",
              "The web inspector's page.", "inspector", role=None, traced=False),
        Route("GET", f"{UI_PATH}/{{asset}}", inspector.asset, "inspectorAsset",
              "One of the inspector's fixed files (script, style, chart library).",
              "inspector", role=None, traced=False),
    )  # fmt: skip


def add_inspector(app: web.Application) -> None:
    """Serve ``/ui`` and its files in ``app``."""
    for row in inspector_routes(Inspector()):
        path = row.path.replace("{asset}", "{asset:[^/]+}")
        resource = app.router.add_resource(path, name=row.operation_id)
        resource.register_route(TableRoute(row, row.handler, resource))

"""The dashboard as an ASGI app (Starlette): HTML pages rendered with Jinja2, a JSON twin of each page under
/api/, SVG plots drawn on the server, /health for readiness. Read-only: only GET routes exist. Every request
must name the dashboard in its Host header (auth.HostMiddleware); beyond loopback, carry its token."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from controller.dashboard.auth import HostMiddleware, TokenMiddleware
from controller.dashboard.pages import Pages
from controller.measure.store import ResultsStore

HERE = Path(__file__).resolve().parent


@dataclass
class DashboardOptions:
    """What the dashboard shows and how: the store (a path, or an open ResultsStore), the inventory
    (None: ./inventory.yaml when present, else just `local`), the token (None: no token asked), how long a
    device may take to answer, how often the optimize page polls, how many runs a page lists, and the names
    besides loopback's that requests may give in their Host header (serve() adds --host's; more in
    $EDGEFARM_DASHBOARD_HOSTS)."""

    store: ResultsStore | Path | str = "edgefarm-results.db"
    inventory: Path | None = None
    token: str | None = None
    device_timeout_s: float = 2.0
    poll_seconds: float = 1.0
    page_size: int = 200
    hosts: tuple[str, ...] = ()


def create_app(options: DashboardOptions | None = None) -> Starlette:
    """The dashboard's ASGI app on one open store (opened here when given by path; closed on shutdown)."""
    opts = options or DashboardOptions()
    store = opts.store if isinstance(opts.store, ResultsStore) else ResultsStore(opts.store)
    pages = Pages(store, opts, HERE / "templates")

    def health(request):
        return JSONResponse({"status": "ok", "schema_version": store.schema_version()})

    routes = [
        Route("/health", health),
        Route("/", lambda request: RedirectResponse("/devices", status_code=307)),
        Route("/devices", pages.devices), Route("/api/devices", pages.devices_json),
        Route("/runs", pages.runs), Route("/api/runs", pages.runs_json),
        Route("/runs/{run_id}", pages.run), Route("/api/runs/{run_id}", pages.run_json),   # ids: params.run_id
        Route("/runs/{run_id}/latency.svg", pages.latency_svg), Route("/runs/{run_id}/layers.svg", pages.layers_svg),
        Route("/optimize", pages.optimize_list), Route("/api/optimize", pages.optimize_list_json),
        Route("/optimize/{key}", pages.optimize), Route("/api/optimize/{key}", pages.optimize_json),
        Route("/optimize/{key}/{device:path}/plot.svg", pages.tradeoff_svg),   # a device may be 'lab/rpi4-a'
        Route("/compare", pages.compare), Route("/api/compare", pages.compare_json),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(HostMiddleware, names=opts.hosts)]
    middleware += [Middleware(TokenMiddleware, token=opts.token)] if opts.token else []
    owned = store is not opts.store

    @asynccontextmanager
    async def lifespan(app):
        yield
        if owned:
            store.close()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)

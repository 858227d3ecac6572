"""`farmctl dashboard`: a read-only web app on the results store and the inventory (devices, runs, optimize
runs live, compare), served by uvicorn. Needs the `dashboard` extra (starlette, uvicorn, jinja2)."""

from controller.dashboard.app import DashboardOptions, create_app
from controller.dashboard.server import serve

__all__ = ["DashboardOptions", "create_app", "serve"]

"""Serving the dashboard with uvicorn on a socket bound here first, so `--port 0` works and the address
printed is the one listening (a client can connect as soon as it is printed)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import uvicorn

from controller.dashboard.app import DashboardOptions, create_app
from controller.dashboard.auth import bound_names, check_binding
from controller.errors import FarmError
from controller.fleet.inventory import load_inventory
from controller.measure.store import ResultsStore


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or one sentence saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise FarmError(f"the dashboard cannot listen on {host}:{port} ({exc.strerror or exc}); pick another "
                        "--port (0: any free one) or --host") from None
    return sock


def check_store(store: ResultsStore | Path | str) -> None:
    """A store given by path must exist: the dashboard reads, it never makes an empty store."""
    if isinstance(store, ResultsStore) or "://" in str(store):
        return
    if not Path(store).is_file():
        raise FarmError(f"no results store at '{store}'; point --store at the file farmctl bench, profile or "
                        "optimize wrote (default ./edgefarm-results.db)")


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(options: DashboardOptions | None = None, host: str = "127.0.0.1", port: int = 8050,
          announce: Callable[[str], None] | None = None) -> None:
    """Serve the dashboard until interrupted (Ctrl-C, SIGTERM). Beyond loopback a token is required
    (options.token); `announce` gets one line with the address once it listens (default: printed)."""
    opts = options or DashboardOptions()
    check_binding(host, opts.token)
    check_store(opts.store)
    load_inventory(opts.inventory)   # a wrong inventory.yaml fails here, not on the devices page
    app = create_app(replace(opts, hosts=(*opts.hosts, *bound_names(host))))   # Host: --host's name is one
    sock = listen(host, port)
    line = f"dashboard: {url_of(sock)} (store {ResultsStore.masked(opts.store)}" + \
        (", token required: open it once with ?token=YOUR_TOKEN)" if opts.token else ")")
    (announce or (lambda text: print(text, flush=True)))(line)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()

"""`farmctl dashboard`: serve the read-only web dashboard on the results store and the inventory."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.errors import FarmError, UsageError


def add_parser(sub) -> None:
    """Register `farmctl dashboard`."""
    p = sub.add_parser("dashboard", help="serve a web dashboard of the devices, runs and optimize runs (read-only)",
                       description="A web app on the results store (--store) and the inventory (--inventory): "
                                   "devices with their health and telemetry, runs with latency and layers, optimize "
                                   "runs as they are written, comparisons. Beyond 127.0.0.1 it needs a token: "
                                   "$EDGEFARM_DASHBOARD_TOKEN or --token-file.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but loopback needs a token (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port, 0 for any free one (default 8050)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="a file whose first line is the token browsers and scripts must give (or set "
                        "$EDGEFARM_DASHBOARD_TOKEN; never on the command line, where `ps` shows it)")
    p.add_argument("--device-timeout", type=float, default=2.0,
                   help="seconds each device's agent may take to answer the devices page (default 2)")
    p.add_argument("--poll-seconds", type=float, default=1.0,
                   help="how often an open optimize page asks for new rows (default 1)")
    p.set_defaults(func=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:   # the optional `dashboard` extra
        from controller.dashboard import DashboardOptions, serve
        from controller.dashboard.auth import read_token
    except ImportError as exc:
        raise FarmError(f"farmctl dashboard needs the dashboard extra ({exc.name} is missing): "
                        "pip install 'edgefarm[dashboard]'") from None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port; give 0 to 65535 (0: any free one)")
    for flag, value in (("--device-timeout", args.device_timeout), ("--poll-seconds", args.poll_seconds)):
        if not value > 0:
            raise UsageError(f"{flag} {value:g} must be more than 0 seconds")
    options = DashboardOptions(store=args.store, inventory=args.inventory, token=read_token(args.token_file),
                               device_timeout_s=args.device_timeout, poll_seconds=args.poll_seconds)
    serve(options, host=args.host, port=args.port)
    return 0

"""farmctl's fleet commands: `ca init` / `ca issue` (mutual TLS), `deploy`, `logs`, `undeploy` (SSH)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_ca_init(args: argparse.Namespace) -> int:
    from controller.fleet.ca import default_ca_dir, init_ca

    cert = init_ca(args.dir or default_ca_dir())
    print(f"farm CA created: {cert} (its key {cert.with_name('ca.key')} stays on this machine, mode 0600)")
    print("next: `farmctl ca issue farmctl` for this controller, and `farmctl ca issue NAME --host ADDRESS` "
          "per agent")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from controller.fleet.ca import default_ca_dir, issue

    got = issue(args.name, args.host or None, ca_dir=args.dir or default_ca_dir(), days=args.days,
                out_dir=args.out, role=args.role)
    print(f"issued '{got.name}' for {', '.join(got.hosts)}: {got.cert} and {got.key}")
    print(f"an agent uses it as:  farm-agent serve --host 0.0.0.0 --tls-ca {got.ca} --tls-cert {got.cert} "
          f"--tls-key {got.key}")
    print(f"farmctl uses it in inventory.yaml:  tls: {{ca: {got.ca}, cert: {got.cert}, key: {got.key}}}")
    return 0


def _entry(args: argparse.Namespace):
    from controller.errors import DeviceError
    from controller.fleet.inventory import load_inventory

    inv = load_inventory(args.inventory)
    if args.name not in inv:
        raise DeviceError(f"no device '{args.name}' in the inventory ({', '.join(inv)}); deploy, logs and undeploy "
                          "take a device name with `address:` and `ssh:` settings")
    return inv[args.name]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_deploy(args: argparse.Namespace) -> int:
    from controller.fleet.deploy import deploy

    target = deploy(_entry(args), accept_new_host_key=args.accept_new_host_key, progress=_say,
                    ready_timeout=args.timeout, pip_args=args.pip_arg)
    print(f"{args.name}: farm-agent running ({target.arch}, "
          f"{'systemd ' + target.systemd if target.systemd else 'background process'})")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from controller.fleet.deploy import logs

    print(logs(_entry(args), args.lines), end="")
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    from controller.fleet.deploy import undeploy

    undeploy(_entry(args), progress=_say)
    return 0


def add_parsers(sub) -> None:
    """Register the fleet subcommands."""
    p = sub.add_parser("ca", help="the farm certificate authority for mutual TLS between farmctl and agents")
    ca_sub = p.add_subparsers(dest="ca_command", required=True)
    q = ca_sub.add_parser("init", help="create the farm CA (default folder ~/.cache/edgefarm/ca or $EDGEFARM_CA_DIR)")
    q.add_argument("--dir", type=Path, default=None, help="folder for ca.pem and ca.key")
    q.set_defaults(func=cmd_ca_init)
    q = ca_sub.add_parser("issue", help="issue a certificate for an agent or a controller")
    q.add_argument("name", help="certificate name (names the files NAME.pem and NAME.key)")
    q.add_argument("--host", action="append", default=[],
                   help="a name or IP address the agent is reached at (repeatable; goes into subjectAltName)")
    q.add_argument("--days", type=int, default=825, help="validity (default 825 days)")
    q.add_argument("--role", choices=["agent", "client"], default=None,
                   help="agent (TLS server) or client (farmctl); default: agent when --host is given, else client. "
                        "Each end checks the other's role")
    q.add_argument("--dir", type=Path, default=None, help="the CA's folder")
    q.add_argument("--out", type=Path, default=None, help="where to write NAME.pem/.key (default: the CA's folder)")
    q.set_defaults(func=cmd_ca_issue)

    p = sub.add_parser("deploy", help="install and start a farm-agent on an inventory device over SSH")
    p.add_argument("name", help="inventory device name (needs address and ssh settings)")
    p.add_argument("--accept-new-host-key", action="store_true",
                   help="trust the device's SSH host key on first contact (a changed key is always refused)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the agent's health check")
    p.add_argument("--pip-arg", action="append", default=[],
                   help="extra argument for pip on the device, e.g. --pip-arg=--index-url=URL (repeatable)")
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("logs", help="the last lines of a deployed agent's log")
    p.add_argument("name")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("undeploy", help="stop a deployed agent and remove it from the device")
    p.add_argument("name")
    p.set_defaults(func=cmd_undeploy)

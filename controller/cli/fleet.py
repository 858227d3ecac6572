"""farmctl's fleet commands: `ca init` / `ca issue` / `ca list` (mutual TLS), `deploy`, `logs`, `undeploy`
(SSH)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_ca_init(args: argparse.Namespace) -> int:
    from controller.fleet.ca import default_ca_dir, init_ca

    cert = init_ca(args.dir or default_ca_dir(), days=args.days)
    print(f"farm CA created: {cert} (its key {cert.with_name('ca.key')} stays on this machine, mode 0600)")
    print("next: `farmctl ca issue farmctl` for this controller, and `farmctl ca issue NAME --host ADDRESS` "
          "per agent")
    _warn_expiring(cert.parent)
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from controller.fleet.ca import default_ca_dir, issue

    got = issue(args.name, args.host or None, ca_dir=args.dir or default_ca_dir(), days=args.days,
                out_dir=args.out, role=args.role)
    print(f"issued '{got.name}' for {', '.join(got.hosts)}: {got.cert} and {got.key}")
    print(f"an agent uses it as:  farm-agent serve --host 0.0.0.0 --tls-ca {got.ca} --tls-cert {got.cert} "
          f"--tls-key {got.key}")
    print(f"farmctl uses it in inventory.yaml:  tls: {{ca: {got.ca}, cert: {got.cert}, key: {got.key}}}")
    _warn_expiring(got.ca.parent)
    return 0


def _warn_expiring(ca_dir: Path) -> None:
    from controller.fleet.ca import expiry_warnings

    for line in expiry_warnings([ca_dir]):
        print(f"farmctl: warning: {line}", file=sys.stderr)


def cmd_ca_list(args: argparse.Namespace) -> int:
    from controller.errors import FarmError
    from controller.fleet.ca import CA_CERT, ca_certificates, default_ca_dir

    ca_dir = Path(args.dir or default_ca_dir())
    if not (ca_dir / CA_CERT).is_file():
        raise FarmError(f"no farm CA in {ca_dir}; create one with `farmctl ca init` (or pass --dir)")
    certs = ca_certificates(ca_dir)
    if args.json:
        print(json.dumps([{"name": c.name, "role": c.role, "hosts": c.hosts, "path": str(c.path),
                           "not_after": c.not_after.isoformat(), "days_left": round(c.days_left, 1),
                           "warning": c.warning()} for c in certs], indent=2))
        return 0
    print(f"{'name':<20} {'role':<7} {'expires':<10}  {'left':>10}  {'state':<10} hosts")
    for c in certs:
        state = "EXPIRED" if c.days_left < 0 else "renew soon" if c.warning() else "ok"
        print(f"{c.name:<20} {c.role:<7} {c.not_after:%Y-%m-%d}  {int(c.days_left):>5} days  {state:<10} "
              f"{', '.join(c.hosts)}".rstrip())
    _warn_expiring(ca_dir)
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

    report = deploy(_entry(args), accept_new_host_key=args.accept_new_host_key, progress=_say,
                    ready_timeout=args.timeout, pip_args=args.pip_arg)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    print(f"{args.name}: farm-agent running ({report.target.arch}, {report.target.service})")
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
    q = ca_sub.add_parser("init", help="create the farm CA (default folder: `ca` in the user data folder, "
                                       "~/.local/share/edgefarm/ca on Linux, or $EDGEFARM_CA_DIR)")
    q.add_argument("--dir", type=Path, default=None, help="folder for ca.pem and ca.key")
    q.add_argument("--days", type=int, default=3650, help="validity (default 3650 days)")
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
    q = ca_sub.add_parser("list", help="the CA's certificates with their expiry (a warning 30 days before)")
    q.add_argument("--dir", type=Path, default=None, help="the CA's folder")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_ca_list)

    p = sub.add_parser("deploy", help="install and start a farm-agent on an inventory device over SSH")
    p.add_argument("name", help="inventory device name (needs address and ssh settings)")
    p.add_argument("--accept-new-host-key", action="store_true",
                   help="trust the device's SSH host key on first contact (a changed key is always refused)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the agent's health check")
    p.add_argument("--pip-arg", action="append", default=[],
                   help="extra argument for pip on the device, e.g. --pip-arg=--index-url=URL (repeatable)")
    p.add_argument("--json", action="store_true",
                   help="print what deploy did: the service, the unit it wrote and every command it ran")
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("logs", help="the last lines of a deployed agent's log")
    p.add_argument("name")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("undeploy", help="stop a deployed agent and remove it from the device")
    p.add_argument("name")
    p.set_defaults(func=cmd_undeploy)

"""farmctl's fleet commands: `ca init` / `ca issue` (mutual TLS), `deploy`, `logs`, `undeploy` (SSH)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_ca_init(args: argparse.Namespace) -> int:
    from controller.ca import default_ca_dir, init_ca

    cert = init_ca(args.dir or default_ca_dir())
    print(f"farm CA created: {cert} (its key {cert.with_name('ca.key')} stays on this machine, mode 0600)")
    print("next: `farmctl ca issue farmctl` for this controller, and `farmctl ca issue NAME --host ADDRESS` "
          "per agent")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from controller.ca import default_ca_dir, issue

    got = issue(args.name, args.host or None, ca_dir=args.dir or default_ca_dir(), days=args.days,
                out_dir=args.out)
    print(f"issued '{got.name}' for {', '.join(got.hosts)}: {got.cert} and {got.key}")
    print(f"an agent uses it as:  farm-agent serve --host 0.0.0.0 --tls-ca {got.ca} --tls-cert {got.cert} "
          f"--tls-key {got.key}")
    print(f"farmctl uses it in inventory.yaml:  tls: {{ca: {got.ca}, cert: {got.cert}, key: {got.key}}}")
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
    q.add_argument("--dir", type=Path, default=None, help="the CA's folder")
    q.add_argument("--out", type=Path, default=None, help="where to write NAME.pem/.key (default: the CA's folder)")
    q.set_defaults(func=cmd_ca_issue)

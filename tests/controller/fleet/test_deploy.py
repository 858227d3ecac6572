"""`farmctl deploy / logs / undeploy` against a real sshd the test starts on 127.0.0.1: as root (here without
systemd: a background process), and as a non-root user on a device whose systemd is emulated by recording
stand-ins for systemctl, loginctl, journalctl and sudo (this machine has no systemd), so the unit deploy
writes, the lingering it enables and every command it runs are checked over real SSH, with a real agent
started from the unit's ExecStart."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.errors import DeviceError
from controller.fleet.deploy import Target, deploy, logs, start_commands, undeploy, unit_text
from controller.fleet.inventory import parse_inventory
from tests.controller.fleet.sshd import SSHServer, farmctl, free_port, inventory, keygen, running_sshd

pytestmark = pytest.mark.slow   # deploys over a real sshd


@pytest.mark.timeout(900)       # two full installs (a venv with ONNX Runtime, gRPC, numpy) on a shared machine
def test_deploy_logs_undeploy_over_real_ssh(sshd, tmp_path, conv_onnx):
    agent_port = free_port()
    inv = inventory(tmp_path, sshd, agent_port)
    out = farmctl(inv, "deploy", "box", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "farm-agent is up" in out.stderr
    report = json.loads(out.stdout)
    assert report["service"] == "background process (no systemd)" and report["unit_text"] == ""
    assert report["wheel_source"].startswith("checkout ")
    pip = [c for c in report["commands"] if "-m pip install" in c]
    assert len(pip) == 2 and " -c " in pip[0] and pip[0].endswith(".whl")    # runtimes pinned
    assert "--no-deps --force-reinstall" in pip[1]          # the shipped code even when the version is the same
    assert not any("--upgrade" in c for c in report["commands"])
    home = tmp_path / "device-home" / "edgefarm"
    assert (home / "venv" / "bin" / "farm-agent").exists() and list((home / "wheels").glob("edgefarm-*.whl"))
    rows = {r["name"]: r for r in json.loads(farmctl(inv, "devices", "--json").stdout)}
    assert rows["box"]["status"] == "ok" and rows["box"]["info"]["name"] == "box"
    bench = farmctl(inv, "bench", str(conv_onnx), "--device", "x86", "--min-iterations", "10",
                     "--min-seconds", "0.02", "--json")
    assert bench.returncode == 0, bench.stderr
    assert json.loads(bench.stdout)["device"] == "box"
    tail = farmctl(inv, "logs", "box", "-n", "20")
    assert tail.returncode == 0 and "farm-agent listening on 127.0.0.1" in tail.stdout
    # deploying again replaces the running agent
    again = farmctl(inv, "deploy", "box")
    assert again.returncode == 0, again.stderr[-2000:]
    gone = farmctl(inv, "undeploy", "box")
    assert gone.returncode == 0, gone.stderr
    assert not home.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", agent_port)) != 0     # nothing listens any more


def test_a_changed_host_key_is_refused_with_the_fix(sshd, tmp_path):
    other = tmp_path / "other_host"
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {keygen(other)}\n")
    out = farmctl(inventory(tmp_path, sshd, free_port(), known_hosts=wrong), "deploy", "box", timeout=120)
    assert out.returncode == 1
    assert "device 'box': the SSH host key of 127.0.0.1 CHANGED" in out.stderr and "ssh-keygen" in out.stderr


def test_an_unknown_host_key_and_a_refused_login_are_clear(sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    out = farmctl(inventory(tmp_path, sshd, free_port(), known_hosts=empty), "deploy", "box", timeout=120)
    assert out.returncode == 1 and "is not in" in out.stderr and "--accept-new-host-key" in out.stderr
    stranger = tmp_path / "stranger"
    keygen(stranger)
    out = farmctl(inventory(tmp_path, sshd, free_port(), key=stranger), "logs", "box", timeout=120)
    assert out.returncode == 1 and "device 'box': SSH refused" in out.stderr and "authorized_keys" in out.stderr


def test_unreachable_ssh_and_missing_tls_are_clear(tmp_path):
    devices = parse_inventory(f"devices:\n  pi:\n    address: 10.1.2.3:50551\n    ssh: {{user: pi}}\n"
                              f"  near:\n    address: 127.0.0.1:{free_port()}\n"
                              f"    ssh: {{host: 127.0.0.1, port: {free_port()}, known_hosts: {tmp_path / 'k'}}}\n",
                              tmp_path / "inventory.yaml")
    with pytest.raises(DeviceError, match="device 'pi' has no `tls:`.*farmctl ca init"):
        deploy(devices["pi"])
    with pytest.raises(DeviceError, match="device 'near': cannot open SSH to .*is the device on and sshd running"):
        deploy(devices["near"])



# --- a non-root user on a device with systemd (emulated) ---------------------------------------------------

USER = "edgefarm-deploy-test"
MARK = "edgefarm deploy test, removed after it"       # the throwaway user's comment: ours to remove
DEVICE_PYTHON = "/usr/bin/python3"      # the system Python: the non-root user cannot reach a pyenv under /root
STANDINS = {
    # systemctl: says systemd runs; `enable --now` / `start` run the unit's ExecStart in the background as
    # this (non-root) user, as a user manager would; `stop` / `disable --now` end it
    "systemctl": """
[ "$1" = --user ] && shift
unit_file="$HOME/.config/systemd/user/$3.service"
case "$1" in
  is-system-running) echo running ;;
  enable|start|restart)
    name=${3:-$2}; f="$HOME/.config/systemd/user/$name.service"
    if [ "$2" = --now ] || [ "$1" != enable ]; then
      cd "$(sed -n 's/^WorkingDirectory=//p' "$f")" || exit 1
      eval "setsid nohup $(sed -n 's/^ExecStart=//p' "$f") > $STATE/$name.log 2>&1 < /dev/null &"
      echo $! > "$STATE/$name.pid"
    fi ;;
  stop|disable)
    name=${3:-$2}
    if [ "$1" = stop ] || [ "$2" = --now ]; then
      [ -f "$STATE/$name.pid" ] && kill "$(cat "$STATE/$name.pid")" 2>/dev/null && rm -f "$STATE/$name.pid"
    fi ;;
esac
exit 0""",
    # loginctl: lingering as a flag file; refused when $STATE/deny-linger exists (polkit saying no)
    "loginctl": """
case "$1" in
  show-user) [ -f "$STATE/linger-$2" ] && echo yes || echo no ;;
  enable-linger) [ -f "$STATE/deny-linger" ] && { echo "Access denied" >&2; exit 1; }; touch "$STATE/linger-$2" ;;
esac""",
    "journalctl": """cat "$STATE/edgefarm-agent.log" """,
    "sudo": """echo "sudo: a password is required" >&2; exit 1""",    # no passwordless sudo
}


@dataclass
class SystemdDevice:
    server: SSHServer
    base: Path            # /tmp/...: the device's HOME, the stand-ins and their state, readable by the user
    home: Path
    state: Path
    calls: Path           # every stand-in call, one line each

    def inventory(self, agent_port: int):
        return parse_inventory(
            f"devices:\n  box:\n    address: 127.0.0.1:{agent_port}\n    class: x86\n"
            f"    ssh: {{host: 127.0.0.1, port: {self.server.port}, user: {USER}, key: {self.server.client_key}, "
            f"known_hosts: {self.server.known_hosts}, python: {DEVICE_PYTHON}, install_dir: ~/edgefarm}}\n",
            self.base / "inventory.yaml")["box"]


@pytest.fixture(scope="module")
def systemd_device(tmp_path_factory) -> Iterator[SystemdDevice]:
    """An sshd whose sessions run as a throwaway non-root user with a temporary HOME and the stand-ins first
    on PATH (sshd's SetEnv)."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not Path(DEVICE_PYTHON).exists():
        pytest.skip(f"needs root (to add a user) and {DEVICE_PYTHON}")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/bash", "-p", "*", "-c", MARK, USER],
                       check=True)
        user = pwd.getpwnam(USER)
    if user.pw_gecos != MARK:
        pytest.skip(f"a user {USER} exists that this test did not make")
    base = Path(tempfile.mkdtemp(prefix="edgefarm-device-", dir="/tmp"))
    base.chmod(0o755)
    home, state, bin_dir = base / "home", base / "state", base / "bin"
    for d in (home, state, bin_dir):
        d.mkdir()
    for name, body in STANDINS.items():
        (bin_dir / name).write_text(f'#!/bin/bash\nSTATE={state}\necho "{name} $*" >> $STATE/calls.log\n{body}\n')
        (bin_dir / name).chmod(0o755)
    pip_conf = Path("~/.config/pip/pip.conf").expanduser()     # this machine's package indexes, for the user's pip
    if pip_conf.exists():
        (home / ".config" / "pip").mkdir(parents=True)
        shutil.copy(pip_conf, home / ".config" / "pip" / "pip.conf")
    (state / "calls.log").touch()
    for path in [home, state, *home.rglob("*"), state / "calls.log"]:
        os.chown(path, user.pw_uid, user.pw_gid)
    extra = f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin HOME={home}\n"
    try:
        with running_sshd(tmp_path_factory.mktemp("sshd-user"), base / "authorized_keys", extra) as server:
            yield SystemdDevice(server, base, home, state, state / "calls.log")
    finally:
        pid = state / "edgefarm-agent.pid"
        if pid.exists():                        # a failed test's agent
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["userdel", "-f", USER], check=False)   # -f: sshd may still be closing its session


def test_a_non_root_user_without_lingering_is_refused_before_anything_is_installed(systemd_device):
    dev = systemd_device
    (dev.state / "deny-linger").touch()
    try:
        with pytest.raises(DeviceError, match=rf"{USER} has no passwordless sudo and cannot enable lingering "
                                              rf".*would stop when the SSH session ends.*sudo loginctl enable-linger"):
            deploy(dev.inventory(free_port()))
    finally:
        (dev.state / "deny-linger").unlink()
    calls = dev.calls.read_text().splitlines()
    assert "sudo -n true" in calls and f"loginctl enable-linger {USER}" in calls
    assert not (dev.home / "edgefarm").exists()          # nothing installed for an agent that would not last


@pytest.mark.timeout(900)
def test_a_non_root_user_gets_a_user_unit_with_lingering_over_real_ssh(systemd_device):
    import psutil

    dev, port = systemd_device, free_port()
    entry = dev.inventory(port)
    report = deploy(entry, ready_timeout=180)
    t = report.target
    assert (t.user, t.systemd, t.sudo, t.home) == (USER, "user", False, str(dev.home))
    unit = dev.home / ".config" / "systemd" / "user" / "edgefarm-agent.service"
    assert report.unit_path == str(unit) and unit.read_text() == report.unit_text
    lines = report.unit_text.splitlines()
    for want in ("Wants=network-online.target", "After=network-online.target", "Restart=on-failure",
                 "RestartSec=5", f"WorkingDirectory={dev.home}/edgefarm", "WantedBy=default.target"):
        assert want in lines, want
    assert not any(line.startswith("User=") for line in lines)       # a user unit runs as its user anyway
    calls = dev.calls.read_text().splitlines()
    assert f"loginctl enable-linger {USER}" in calls                 # survives the SSH session and starts at boot
    assert "systemctl --user enable --now edgefarm-agent" in calls
    cmds = report.commands
    assert cmds.index(f"loginctl enable-linger {USER}") < next(i for i, c in enumerate(cmds) if "pip install" in c)
    assert not any("--upgrade" in c for c in cmds)
    assert (dev.home / "edgefarm" / "wheels" / "agent-constraints.txt").exists()
    agent_pid = int((dev.state / "edgefarm-agent.pid").read_text())
    assert psutil.Process(agent_pid).username() == USER                 # the agent the unit started
    print("\n".join(["UNIT:", report.unit_text, "COMMANDS:", *cmds]))     # for docs/fleet.md (pytest -s)
    assert "farm-agent listening on 127.0.0.1" in logs(entry)           # journalctl --user -u edgefarm-agent
    undeploy(entry)
    assert "systemctl --user disable edgefarm-agent" in dev.calls.read_text().splitlines()
    assert not unit.exists() and not (dev.home / "edgefarm").exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_with_passwordless_sudo_the_agent_is_a_system_unit_run_as_the_user():
    target = Target("aarch64", "/usr/bin/python3", (3, 11), "system", "/home/pi", "pi", sudo=True)
    path, text, commands = start_commands(target, "/home/pi/edgefarm", ["/home/pi/edgefarm/venv/bin/farm-agent"])
    assert path == "/etc/systemd/system/edgefarm-agent.service"
    assert "User=pi" in text.splitlines() and "WantedBy=multi-user.target" in text.splitlines()
    assert commands[0].startswith("sudo -n tee /etc/systemd/system/edgefarm-agent.service")
    assert commands[1] == "sudo -n systemctl daemon-reload && sudo -n systemctl enable --now edgefarm-agent"
    root = unit_text(["farm-agent"], "/root/edgefarm", "root", "system")
    assert "User=" not in root and "Wants=network-online.target" in root

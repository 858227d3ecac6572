"""`farmctl deploy / logs / undeploy`: install a farm-agent on a device over SSH (controller/fleet/ssh.py).
The agent is the wheel of the edgefarm this farmctl runs (controller/fleet/wheel.py), installed into a venv
on the device with the base install plus the device's backend, the runtimes pinned by
agent-constraints.txt; it runs as a systemd service that starts at boot and restarts on failure (a system
unit as root, or with `User=` through passwordless sudo; else a `systemctl --user` unit with lingering
enabled), or, where there is no systemd, as a background process with a pid file. Then its health check
is awaited. docs/fleet.md says what runs on the board."""

from __future__ import annotations

import logging
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.backends.trtexec import TRTEXEC_PLACES
from controller.errors import DeviceError
from controller.fleet import ca
from controller.fleet.connect import check_version
from controller.fleet.inventory import DeviceEntry
from controller.fleet.ssh import Remote
from controller.fleet.wheel import build_wheel

log = logging.getLogger(__name__)

UNIT = "edgefarm-agent"
MIN_PYTHON = (3, 10)
RESTART_SEC = 5
CONSTRAINTS = Path(__file__).with_name("agent-constraints.txt")
q = shlex.quote


@dataclass
class Target:
    """What deploy found on the device."""

    arch: str
    python: str
    python_version: tuple[int, int]
    systemd: str          # "system" (a system unit) | "user" (systemctl --user + linger) | "" (background process)
    home: str
    user: str = "root"
    sudo: bool = False    # a non-root user with passwordless sudo: the system unit goes through `sudo -n`

    @property
    def service(self) -> str:
        """How the agent runs, in words."""
        if self.systemd == "system":
            return f"systemd system unit (User={self.user}, via sudo)" if self.sudo else "systemd system unit"
        if self.systemd == "user":
            return f"systemd user unit, lingering enabled for {self.user}"
        return "background process (no systemd)"


@dataclass
class DeployReport:
    """What deploy did: the device, the wheel, the unit it wrote and every command it ran there."""

    device: str
    target: Target
    wheel: str
    wheel_source: str
    unit_path: str = ""
    unit_text: str = ""
    commands: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self) | {"service": self.target.service}


def detect(remote: Remote) -> Target:
    """Architecture, Python, user, init system and passwordless sudo of the device."""
    py = remote.ssh.python
    _, arch, _ = remote.run("uname -m")
    rc, out, _ = remote.run(f"{q(py)} -c 'import sys; print(sys.version_info[0], sys.version_info[1]); "
                            f"print(sys.executable)'", check=False)
    if rc != 0:
        raise DeviceError(f"device '{remote.entry.name}' has no Python at '{py}'; install python3 (and python3-venv) "
                          "there or set `ssh.python` in the inventory")
    major, minor = (int(x) for x in out.split()[:2])
    if (major, minor) < MIN_PYTHON:
        raise DeviceError(f"device '{remote.entry.name}' has Python {major}.{minor}; farm-agent needs "
                          f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+: install a newer python3 and set `ssh.python`")
    _, ids, _ = remote.run("id -u; id -un; printf %s \"$HOME\"")
    uid, user, home = (ids.split("\n") + ["", "", ""])[:3]
    # systemd is the init system when it says it runs ("offline" where it is installed but not PID 1)
    _, state, _ = remote.run("systemctl is-system-running 2>/dev/null", check=False)
    systemd = state.strip() not in ("", "offline", "unknown")
    sudo = systemd and uid.strip() != "0" and remote.run("sudo -n true", check=False)[0] == 0
    mode = ("system" if uid.strip() == "0" or sudo else "user") if systemd else ""
    return Target(arch.strip(), out.split()[2], (major, minor), mode, home.strip(), user.strip(), sudo)


def _install_dir(remote: Remote, target: Target) -> str:
    d = remote.ssh.install_dir
    return target.home + d[1:] if d.startswith("~") else d


def _agent_command(entry: DeviceEntry, home: str, tls_remote: dict | None) -> list[str]:
    port = entry.ssh.agent_port
    cmd = [f"{home}/venv/bin/farm-agent", "serve", "--port", str(port), "--name", entry.name,
           "--cache-dir", f"{home}/cache"]
    if entry.device_class:
        cmd += ["--device-class", entry.device_class]
    if tls_remote:
        cmd += ["--host", "0.0.0.0", "--tls-ca", tls_remote["ca"], "--tls-cert", tls_remote["cert"],
                "--tls-key", tls_remote["key"]]
    else:
        cmd += ["--host", "127.0.0.1"]
    return cmd


def _check_deployable(entry: DeviceEntry) -> bool:
    """Whether the device's agent is on loopback; a network agent without TLS is refused."""
    if entry.embedded or not entry.address:
        raise DeviceError(f"device '{entry.name}' is the embedded local agent; deploy targets devices with an "
                          "address and `ssh:` settings")
    loopback = entry.address.rpartition(":")[0] in ("127.0.0.1", "localhost", "::1")
    if not loopback and entry.tls is None:
        raise DeviceError(f"device '{entry.name}' has no `tls:` in the inventory, and an agent reachable from the "
                          "network must use mutual TLS: run `farmctl ca init`, `farmctl ca issue farmctl`, add "
                          "`tls:` (ca, cert, key) to the inventory, and deploy again")
    return loopback


def deploy(entry: DeviceEntry, accept_new_host_key: bool = False, progress: Callable[[str], None] | None = None,
           ready_timeout: float = 120.0, pip_args: list[str] | None = None) -> DeployReport:
    """Install and start the agent on the device, then wait for its health check."""
    say = progress or log.info
    loopback = _check_deployable(entry)
    with Remote(entry, accept_new_host_key) as remote:
        target = detect(remote)
        say(f"{entry.name}: {target.arch}, Python {target.python_version[0]}.{target.python_version[1]}, "
            f"user {target.user}: the agent will run as a {target.service}")
        if target.systemd == "user":
            enable_linger(remote, target)      # before anything is installed: without it, nothing would last
        home = _install_dir(remote, target)
        remote.run(f"mkdir -p {q(home)}/wheels {q(home)}/tls {q(home)}/cache")
        with tempfile.TemporaryDirectory() as tmp:
            wheel = build_wheel(Path(tmp))
            say(f"{entry.name}: shipping {wheel.path.name} (from the {wheel.source})")
            remote.put(wheel.path, f"{home}/wheels/{wheel.path.name}")
        report = DeployReport(entry.name, target, wheel.path.name, wheel.source)
        tls_remote = None
        if entry.tls and not loopback:
            tls_remote = _copy_agent_certificate(remote, entry, home, say)
        install(remote, entry, target, home, InstallSpec(wheel.path.name, pip_args or [], say))
        stop(remote, target, home)
        report.unit_path, report.unit_text = start(remote, target, home, _agent_command(entry, home, tls_remote))
        say(f"{entry.name}: waiting for the agent's health check at {entry.address}")
        with entry.client() as client:
            try:
                client.wait_ready(timeout=ready_timeout, wait_for_port=True)
            except DeviceError as exc:
                _, logs, _ = remote.run(_logs_command(target, home, 20), check=False)
                raise DeviceError(f"device '{entry.name}': the agent was installed but does not answer ({exc}); "
                                  f"its log ends:\n{logs.strip()}") from None
            check_version(client)
        say(f"{entry.name}: farm-agent is up")
        report.commands = list(remote.commands)
        return report


@dataclass
class InstallSpec:
    """What install() puts into the device's venv."""

    wheel: str                          # the wheel's file name in {home}/wheels
    pip_args: list[str]
    say: Callable[[str], None]


def install(remote: Remote, entry: DeviceEntry, target: Target, home: str, spec: InstallSpec) -> None:
    """The venv, the shipped wheel with the device's backend, its runtimes pinned by agent-constraints.txt
    (never an unpinned upgrade), and the shipped agent code itself even when the version is unchanged."""
    extras = ",".join(b for b in entry.backends if b == "tflite")
    wheel = f"{home}/wheels/{spec.wheel}"
    constraints = f"{home}/wheels/{CONSTRAINTS.name}"
    remote.put(CONSTRAINTS, constraints)
    system_site = " --system-site-packages" if "tensorrt" in entry.backends else ""  # JetPack's TensorRT
    spec.say(f"{entry.name}: installing into {home}/venv (base install{' + ' + extras if extras else ''}, "
             f"runtimes pinned by {CONSTRAINTS.name})")
    remote.run(f"{q(target.python)} -m venv{system_site} {q(home)}/venv")
    pip = f"{q(home)}/venv/bin/python -m pip install --quiet {' '.join(map(q, spec.pip_args))}".rstrip()
    remote.run(f"{pip} -c {q(constraints)} {q(wheel + (f'[{extras}]' if extras else ''))}", timeout=1800)
    remote.run(f"{pip} --no-deps --force-reinstall {q(wheel)}", timeout=600)
    if "tensorrt" in entry.backends:
        spec.say(f"{entry.name}: {tensorrt_path(remote, home)}")


TRTEXEC = TRTEXEC_PLACES[0]     # where JetPack (and NVIDIA's Debian packages) put trtexec: the agent looks there


def tensorrt_path(remote: Remote, home: str) -> str:
    """Which TensorRT path the agent will take on the device, in one sentence: the Python bindings where they
    import into the agent's venv (JetPack 6's, through --system-site-packages), else trtexec (JetPack 5's
    bindings are for Python 3.8 only). The CUDA runtime is reached through ctypes: nothing to install."""
    rc, out, err = remote.run(f"{q(home)}/venv/bin/python -c 'import tensorrt; print(tensorrt.__version__)'",
                              check=False)
    if rc == 0:
        return f"TensorRT {out.strip()} runs through its Python bindings"
    why = (err.strip().splitlines() or ["no tensorrt module"])[-1]
    rc, out, _ = remote.run(f"command -v trtexec || ls {TRTEXEC}", check=False)
    if rc == 0:
        return f"TensorRT runs through {out.strip().splitlines()[0]} (its Python bindings do not import: {why})"
    return (f"warning: no TensorRT here (Python bindings: {why}; no trtexec on PATH or in {TRTEXEC}); install "
            "JetPack's TensorRT, or drop tensorrt from the device's backends")


def _copy_agent_certificate(remote: Remote, entry: DeviceEntry, home: str, say: Callable[[str], None]) -> dict:
    """Issue (once) a certificate for the device from the farm CA that signed the controller's, and copy it
    with the CA certificate to the device; certificates that expire within 30 days are named."""
    ca_dir = Path(entry.tls.ca).parent
    cert, key = ca_dir / f"{entry.name}.pem", ca_dir / f"{entry.name}.key"
    if not cert.exists():
        ca.issue(entry.name, [entry.address.rpartition(":")[0], remote.endpoint.host], ca_dir=ca_dir)
    for warning in ca.expiry_warnings([Path(entry.tls.ca), Path(entry.tls.cert), cert]):
        say(f"{entry.name}: warning: {warning}")
    remote.put(Path(entry.tls.ca), f"{home}/tls/ca.pem")
    remote.put(cert, f"{home}/tls/agent.pem")
    remote.put(key, f"{home}/tls/agent.key")
    remote.run(f"chmod 600 {q(home)}/tls/agent.key")
    return {"ca": f"{home}/tls/ca.pem", "cert": f"{home}/tls/agent.pem", "key": f"{home}/tls/agent.key"}


def unit_text(command: list[str], home: str, user: str | None = None, scope: str = "system") -> str:
    """The systemd unit: after the network is up, restarted when it fails, started at boot (a system unit's
    `User=` runs it as that user)."""
    run_as = f"User={user}\n" if user and user != "root" and scope == "system" else ""
    wanted_by = "multi-user.target" if scope == "system" else "default.target"
    return (f"[Unit]\nDescription=edgefarm farm-agent\nWants=network-online.target\nAfter=network-online.target\n"
            f"\n[Service]\n{run_as}ExecStart={' '.join(q(c) for c in command)}\nWorkingDirectory={home}\n"
            f"Restart=on-failure\nRestartSec={RESTART_SEC}\nEnvironment=PYTHONUNBUFFERED=1\n\n"
            f"[Install]\nWantedBy={wanted_by}\n")


def _sudo(target: Target) -> str:
    return "sudo -n " if target.sudo else ""


def _systemctl(target: Target) -> str:
    return f"{_sudo(target)}systemctl" if target.systemd == "system" else "systemctl --user"


def _unit_path(target: Target) -> str:
    return (f"/etc/systemd/system/{UNIT}.service" if target.systemd == "system"
            else f"{target.home}/.config/systemd/user/{UNIT}.service")


def enable_linger(remote: Remote, target: Target) -> None:
    """Keep the user's systemd manager (and so the agent) running without a login session and start it at
    boot: `loginctl enable-linger`, which polkit lets a user do for themself on most distributions."""
    user = q(target.user)
    _, linger, _ = remote.run(f"loginctl show-user {user} --property=Linger --value", check=False)
    if linger.strip() == "yes":
        return
    rc, out, err = remote.run(f"loginctl enable-linger {user}", check=False)
    if rc != 0:
        raise DeviceError(
            f"device '{remote.entry.name}': {target.user} has no passwordless sudo and cannot enable lingering "
            f"({(err or out).strip()[-200:]}), so a `systemctl --user` agent would stop when the SSH session ends; "
            f"run `sudo loginctl enable-linger {target.user}` once on the device (or give {target.user} "
            "passwordless sudo for a system unit), then deploy again")


def start_commands(target: Target, home: str, command: list[str]) -> tuple[str, str, list[str]]:
    """What starting the agent runs on the device: the systemd unit's path and text and the commands that
    write and enable it, or ("", "", [the background process's command line])."""
    if target.systemd:
        path, scope = _unit_path(target), target.systemd
        text = unit_text(command, home, target.user, scope)
        write = (f"mkdir -p {q(str(Path(path).parent))} && cat > {q(path)} <<'EOF'\n{text}EOF" if scope == "user"
                 else f"{_sudo(target)}tee {q(path)} > /dev/null <<'EOF'\n{text}EOF")
        sc = _systemctl(target)
        return path, text, [write, f"{sc} daemon-reload && {sc} enable --now {UNIT}"]
    # a plain command in the background (no subshell holding the SSH channel open), in its own session
    return "", "", [f"cd {q(home)} || exit 1; setsid nohup {' '.join(q(c) for c in command)} > {q(home)}/agent.log "
                    f"2>&1 < /dev/null & echo $! > {q(home)}/agent.pid"]


def start(remote: Remote, target: Target, home: str, command: list[str]) -> tuple[str, str]:
    """Install and start the systemd unit, or start a background process with a pid file; returns the
    unit's path and text ("" without systemd)."""
    path, text, commands = start_commands(target, home, command)
    for line in commands:
        remote.run(line)
    return path, text


def stop(remote: Remote, target: Target, home: str) -> None:
    """Stop a running agent (any way it was started before, a user unit a system unit replaces included);
    nothing running is fine."""
    if target.systemd:
        remote.run(f"{_systemctl(target)} stop {UNIT}", check=False)
    if target.systemd == "system" and target.sudo:
        old = q(f"{target.home}/.config/systemd/user/{UNIT}.service")
        remote.run(f"if [ -f {old} ]; then systemctl --user disable --now {UNIT}; rm -f {old}; fi", check=False)
    pid_file = q(f"{home}/agent.pid")
    remote.run(f"if [ -f {pid_file} ]; then kill $(cat {pid_file}) 2>/dev/null; "
               f"for i in $(seq 50); do kill -0 $(cat {pid_file}) 2>/dev/null || break; sleep 0.1; done; "
               f"rm -f {pid_file}; fi", check=False)


def _logs_command(target: Target, home: str, lines: int) -> str:
    if target.systemd:
        scope = f"{_sudo(target)}journalctl " if target.systemd == "system" else "journalctl --user "
        return f"{scope}-u {UNIT} -n {int(lines)} --no-pager"
    return f"tail -n {int(lines)} {q(home + '/agent.log')}"


def logs(entry: DeviceEntry, lines: int = 50) -> str:
    """The agent's last log lines on the device."""
    with Remote(entry) as remote:
        target = detect(remote)
        _, out, err = remote.run(_logs_command(target, _install_dir(remote, target), lines), check=False)
        return out or err


def undeploy(entry: DeviceEntry, progress: Callable[[str], None] | None = None) -> None:
    """Stop the agent, remove its unit and its install folder (models cache included). Lingering, which other
    services of the user may need, stays as it is."""
    say = progress or log.info
    with Remote(entry) as remote:
        target = detect(remote)
        home = _install_dir(remote, target)
        stop(remote, target, home)
        if target.systemd:
            sc = _systemctl(target)
            remote.run(f"{sc} disable {UNIT}; {_sudo(target)}rm -f {q(_unit_path(target))}; {sc} daemon-reload",
                       check=False)
        if home.rstrip("/") in ("", target.home.rstrip("/"), "/"):
            raise DeviceError(f"device '{entry.name}': refusing to delete '{home}'; set `ssh.install_dir` to a "
                              "folder of its own")
        remote.run(f"rm -rf {q(home)}")
        say(f"{entry.name}: farm-agent stopped and {home} removed")

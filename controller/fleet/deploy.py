"""`farmctl deploy / logs / undeploy`: install a farm-agent on a device over SSH (paramiko). The agent is
a wheel built from this checkout, installed into a venv on the device with the base install plus the
device's backend, run by a systemd unit (system-wide as root, `systemctl --user` otherwise) or, where
there is no systemd, as a background process with a pid file; then its health check is awaited."""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet.inventory import DeviceEntry, check_version

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]   # the source checkout (controller/fleet/deploy.py)
UNIT = "edgefarm-agent"
MIN_PYTHON = (3, 10)


@dataclass
class Target:
    """What deploy found on the device."""

    arch: str
    python: str
    python_version: tuple[int, int]
    systemd: str          # "system" | "user" | "" (background process)
    home: str


class Remote:
    """An SSH session to one inventory device, with errors that name the device and the fix."""

    def __init__(self, entry: DeviceEntry, accept_new_host_key: bool = False, timeout: float = 15.0) -> None:
        import paramiko

        if entry.ssh is None:
            raise DeviceError(f"device '{entry.name}' has no `ssh:` settings in the inventory; add e.g. "
                              "`ssh: {user: pi, key: ~/.ssh/id_ed25519}` under it")
        self.entry, self.ssh = entry, entry.ssh
        self.client = paramiko.SSHClient()
        known = Path(self.ssh.known_hosts or "~/.ssh/known_hosts").expanduser()
        if known.exists():
            self.client.load_host_keys(str(known))
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if accept_new_host_key
                                                else paramiko.RejectPolicy())
        where = f"{self.ssh.user}@{self.ssh.host}:{self.ssh.port}"
        password = None
        if self.ssh.password_env:
            import os

            password = os.environ.get(self.ssh.password_env)
        try:
            self.client.connect(self.ssh.host, port=self.ssh.port, username=self.ssh.user,
                                key_filename=str(Path(self.ssh.key).expanduser()) if self.ssh.key else None,
                                password=password, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                                look_for_keys=self.ssh.key is None and password is None, allow_agent=True)
        except paramiko.BadHostKeyException as exc:
            raise DeviceError(
                f"device '{entry.name}': the SSH host key of {self.ssh.host} CHANGED (got {exc.key.get_name()} "
                f"{exc.key.get_base64()[:16]}..., {known} has another); if the device was reinstalled, remove the "
                f"old key with `ssh-keygen -f {known} -R '[{self.ssh.host}]:{self.ssh.port}'` and deploy again, "
                "otherwise someone may be impersonating it") from None
        except paramiko.SSHException as exc:
            text = str(exc)
            if "not found in known_hosts" in text:
                raise DeviceError(
                    f"device '{entry.name}': {self.ssh.host} is not in {known}; check its fingerprint and add it "
                    f"(`ssh-keyscan -p {self.ssh.port} {self.ssh.host} >> {known}`) or pass --accept-new-host-key"
                ) from None
            if isinstance(exc, paramiko.AuthenticationException) or "authentication" in text.lower():
                raise DeviceError(
                    f"device '{entry.name}': SSH refused {where} ({text}); check `ssh.user` and `ssh.key` in the "
                    "inventory and that the key is in the device's ~/.ssh/authorized_keys") from None
            raise DeviceError(f"device '{entry.name}': SSH to {where} failed ({text})") from None
        except OSError as exc:
            raise DeviceError(f"device '{entry.name}': cannot open SSH to {where} ({exc.strerror or exc}); is "
                              "the device on and sshd running? check `ssh.host` / `ssh.port`") from None
        self.sftp = None

    def run(self, command: str, check: bool = True, timeout: float = 600.0) -> tuple[int, str, str]:
        """Run a shell command on the device; with check, a non-zero exit is a DeviceError with its output."""
        _, stdout, stderr = self.client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
        rc = stdout.channel.recv_exit_status()
        if check and rc != 0:
            raise DeviceError(f"device '{self.entry.name}': `{command[:120]}` failed ({rc}): "
                              f"{(err or out).strip()[-600:]}")
        return rc, out, err

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to the device (SFTP)."""
        if self.sftp is None:
            self.sftp = self.client.open_sftp()
        self.sftp.put(str(local), remote)

    def close(self) -> None:
        if self.sftp is not None:
            self.sftp.close()
        self.client.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_wheel(out_dir: Path) -> Path:
    """The edgefarm wheel of this checkout (`pip wheel --no-deps`)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir),
                           str(ROOT)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeviceError(f"could not build the agent wheel from {ROOT}: {proc.stderr.strip()[-400:]}")
    return next(Path(out_dir).glob("edgefarm-*.whl"))


def detect(remote: Remote) -> Target:
    """Architecture, Python and init system of the device."""
    py = remote.ssh.python
    _, arch, _ = remote.run("uname -m")
    rc, out, _ = remote.run(f"{shlex.quote(py)} -c 'import sys; print(sys.version_info[0], sys.version_info[1]); "
                            f"print(sys.executable)'", check=False)
    if rc != 0:
        raise DeviceError(f"device '{remote.entry.name}' has no Python at '{py}'; install python3 (and python3-venv) "
                          "there or set `ssh.python` in the inventory")
    major, minor = (int(x) for x in out.split()[:2])
    if (major, minor) < MIN_PYTHON:
        raise DeviceError(f"device '{remote.entry.name}' has Python {major}.{minor}; farm-agent needs "
                          f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]}+: install a newer python3 and set `ssh.python`")
    _, uid, _ = remote.run("id -u")
    _, home, _ = remote.run("printf %s \"$HOME\"")
    rc, _, _ = remote.run("test -d /run/systemd/system && command -v systemctl", check=False)
    systemd = ("system" if uid.strip() == "0" else "user") if rc == 0 else ""
    return Target(arch.strip(), out.split()[2], (major, minor), systemd, home.strip())


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


def deploy(entry: DeviceEntry, accept_new_host_key: bool = False, progress: Callable[[str], None] | None = None,
           ready_timeout: float = 120.0, pip_args: list[str] | None = None) -> Target:
    """Install and start the agent on the device, then wait for its health check."""
    say = progress or log.info
    if entry.embedded or not entry.address:
        raise DeviceError(f"device '{entry.name}' is the embedded local agent; deploy targets devices with an "
                          "address and `ssh:` settings")
    loopback = entry.address.rpartition(":")[0] in ("127.0.0.1", "localhost", "::1")
    if not loopback and entry.tls is None:
        raise DeviceError(f"device '{entry.name}' has no `tls:` in the inventory, and an agent reachable from the "
                          "network must use mutual TLS: run `farmctl ca init`, `farmctl ca issue farmctl`, add "
                          "`tls:` (ca, cert, key) to the inventory, and deploy again")
    with Remote(entry, accept_new_host_key) as remote:
        target = detect(remote)
        say(f"{entry.name}: {target.arch}, Python {target.python_version[0]}.{target.python_version[1]}, "
            f"{'systemd (' + target.systemd + ')' if target.systemd else 'no systemd: a background process'}")
        home = _install_dir(remote, target)
        remote.run(f"mkdir -p {shlex.quote(home)}/wheels {shlex.quote(home)}/tls {shlex.quote(home)}/cache")
        with tempfile.TemporaryDirectory() as tmp:
            say(f"{entry.name}: building the agent wheel from {ROOT}")
            wheel = build_wheel(Path(tmp))
            remote.put(wheel, f"{home}/wheels/{wheel.name}")
        tls_remote = None
        if entry.tls and not loopback:
            tls_remote = _copy_agent_certificate(remote, entry, home)
        extras = ",".join(b for b in entry.backends if b == "tflite")
        spec = f"{home}/wheels/{wheel.name}" + (f"[{extras}]" if extras else "")
        system_site = " --system-site-packages" if "tensorrt" in entry.backends else ""  # JetPack's TensorRT
        say(f"{entry.name}: installing into {home}/venv (base install{' + ' + extras if extras else ''})")
        remote.run(f"{shlex.quote(target.python)} -m venv{system_site} {shlex.quote(home)}/venv")
        remote.run(f"{shlex.quote(home)}/venv/bin/python -m pip install --quiet --upgrade "
                   f"{' '.join(map(shlex.quote, pip_args or []))} {shlex.quote(spec)}", timeout=1800)
        stop(remote, target, home)
        start(remote, target, home, _agent_command(entry, home, tls_remote))
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
        return target


def _copy_agent_certificate(remote: Remote, entry: DeviceEntry, home: str) -> dict:
    """Issue (once) a certificate for the device from the farm CA that signed the controller's, and copy it
    with the CA certificate to the device."""
    from controller.fleet import ca

    ca_dir = Path(entry.tls.ca).parent
    cert, key = ca_dir / f"{entry.name}.pem", ca_dir / f"{entry.name}.key"
    if not cert.exists():
        ca.issue(entry.name, [entry.address.rpartition(":")[0], entry.ssh.host], ca_dir=ca_dir)
    remote.put(Path(entry.tls.ca), f"{home}/tls/ca.pem")
    remote.put(cert, f"{home}/tls/agent.pem")
    remote.put(key, f"{home}/tls/agent.key")
    remote.run(f"chmod 600 {shlex.quote(home)}/tls/agent.key")
    return {"ca": f"{home}/tls/ca.pem", "cert": f"{home}/tls/agent.pem", "key": f"{home}/tls/agent.key"}


def unit_text(command: list[str], home: str) -> str:
    """The systemd unit that runs the agent and restarts it if it dies."""
    return (f"[Unit]\nDescription=edgefarm farm-agent\nAfter=network-online.target\n\n[Service]\n"
            f"ExecStart={' '.join(shlex.quote(c) for c in command)}\nWorkingDirectory={home}\nRestart=on-failure\n"
            f"RestartSec=3\nEnvironment=PYTHONUNBUFFERED=1\n\n[Install]\nWantedBy=default.target\n")


def _systemctl(target: Target) -> str:
    return "systemctl" if target.systemd == "system" else "systemctl --user"


def _unit_path(target: Target) -> str:
    return (f"/etc/systemd/system/{UNIT}.service" if target.systemd == "system"
            else f"{target.home}/.config/systemd/user/{UNIT}.service")


def start(remote: Remote, target: Target, home: str, command: list[str]) -> None:
    """Install and start the systemd unit, or start a background process with a pid file."""
    if target.systemd:
        path = _unit_path(target)
        remote.run(f"mkdir -p $(dirname {shlex.quote(path)}) && cat > {shlex.quote(path)} <<'EOF'\n"
                   f"{unit_text(command, home)}EOF")
        sc = _systemctl(target)
        remote.run(f"{sc} daemon-reload && {sc} enable --now {UNIT}")
        return
    q = shlex.quote
    # a plain command in the background (no subshell holding the SSH channel open), in its own session
    remote.run(f"cd {q(home)} || exit 1; setsid nohup {' '.join(q(c) for c in command)} > {q(home)}/agent.log "
               f"2>&1 < /dev/null & echo $! > {q(home)}/agent.pid")


def stop(remote: Remote, target: Target, home: str) -> None:
    """Stop a running agent (either way it was started); nothing running is fine."""
    if target.systemd:
        remote.run(f"{_systemctl(target)} stop {UNIT}", check=False)
    pid_file = shlex.quote(f"{home}/agent.pid")
    remote.run(f"if [ -f {pid_file} ]; then kill $(cat {pid_file}) 2>/dev/null; "
               f"for i in $(seq 50); do kill -0 $(cat {pid_file}) 2>/dev/null || break; sleep 0.1; done; "
               f"rm -f {pid_file}; fi", check=False)


def _logs_command(target: Target, home: str, lines: int) -> str:
    if target.systemd:
        scope = "" if target.systemd == "system" else "--user "
        return f"journalctl {scope}-u {UNIT} -n {int(lines)} --no-pager"
    return f"tail -n {int(lines)} {shlex.quote(home + '/agent.log')}"


def logs(entry: DeviceEntry, lines: int = 50) -> str:
    """The agent's last log lines on the device."""
    with Remote(entry) as remote:
        target = detect(remote)
        _, out, err = remote.run(_logs_command(target, _install_dir(remote, target), lines), check=False)
        return out or err


def undeploy(entry: DeviceEntry, progress: Callable[[str], None] | None = None) -> None:
    """Stop the agent, remove its unit and its install folder (models cache included)."""
    say = progress or log.info
    with Remote(entry) as remote:
        target = detect(remote)
        home = _install_dir(remote, target)
        stop(remote, target, home)
        if target.systemd:
            sc = _systemctl(target)
            remote.run(f"{sc} disable {UNIT}; rm -f {shlex.quote(_unit_path(target))}; {sc} daemon-reload",
                       check=False)
        if home.rstrip("/") in ("", target.home.rstrip("/"), "/"):
            raise DeviceError(f"device '{entry.name}': refusing to delete '{home}'; set `ssh.install_dir` to a "
                              "folder of its own")
        remote.run(f"rm -rf {shlex.quote(home)}")
        say(f"{entry.name}: farm-agent stopped and {home} removed")

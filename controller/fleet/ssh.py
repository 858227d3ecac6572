"""SSH to an inventory device (paramiko), for deploy, logs and undeploy. `~/.ssh/config` is honoured the way
`ssh` reads it: a Host alias gives HostName, User, Port, IdentityFile, UserKnownHostsFile, ProxyJump and
ProxyCommand, and what the inventory's `ssh:` says explicitly wins. Host keys are checked; every command run
is kept in `Remote.commands` (what deploy did, for its report)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet.inventory import DeviceEntry, SSHSettings

SSH_CONFIG_ENV = "EDGEFARM_SSH_CONFIG"   # another ssh config file than ~/.ssh/config ("none": read none)
DEFAULT_USER = "root"


@dataclass
class Endpoint:
    """One SSH hop, resolved: where it connects, as whom, with which keys, through which jumps."""

    alias: str                        # the name the inventory (or a ProxyJump) gave
    host: str
    port: int = 22
    user: str = DEFAULT_USER
    keys: list[str] = field(default_factory=list)
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    proxy_jump: list[str] = field(default_factory=list)
    proxy_command: str | None = None

    @property
    def where(self) -> str:
        via = f" via {','.join(self.proxy_jump)}" if self.proxy_jump else ""
        alias = f" (ssh config Host {self.alias})" if self.alias != self.host else ""
        return f"{self.user}@{self.host}:{self.port}{alias}{via}"


def ssh_config_path() -> Path | None:
    """$EDGEFARM_SSH_CONFIG, else ~/.ssh/config; None when it is 'none' or the file does not exist."""
    env = os.environ.get(SSH_CONFIG_ENV)
    if env and env.lower() == "none":
        return None
    path = Path(env or "~/.ssh/config").expanduser()
    return path if path.is_file() else None


def load_ssh_config(path: Path | None = None):
    """The parsed ssh config (paramiko.SSHConfig), or None without one."""
    import paramiko

    path = path or ssh_config_path()
    if path is None:
        return None
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (OSError, ValueError) as exc:
        raise DeviceError(f"cannot read the ssh config {path} ({exc}); fix it, or set {SSH_CONFIG_ENV}=none to "
                          "ignore it") from None


def _none(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() == "none" else value


def resolve(settings: SSHSettings, config=None) -> Endpoint:
    """The device's endpoint: the inventory's explicit values, then the ssh config's for its host, then the
    defaults (port 22, user root, ~/.ssh/known_hosts)."""
    found = config.lookup(settings.host) if config is not None else {}
    jump = _none(found.get("proxyjump"))
    known = settings.known_hosts or (found.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0]
    return Endpoint(alias=settings.host, host=found.get("hostname", settings.host),
                    port=settings.port or int(found.get("port", 22)),
                    user=settings.user or found.get("user") or DEFAULT_USER,
                    keys=[settings.key] if settings.key else list(found.get("identityfile", [])),
                    known_hosts=Path(known).expanduser(),
                    proxy_jump=[h.strip() for h in jump.split(",") if h.strip()] if jump else [],
                    proxy_command=_none(found.get("proxycommand")))


def jump_endpoint(spec: str, config, target: Endpoint) -> Endpoint:
    """A ProxyJump hop, `[user@]host[:port]` or a Host alias of the ssh config; its keys default to the
    target's."""
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":") if rest.count(":") == 1 else (rest, "", "")
    hop = resolve(SSHSettings(host=host, port=int(port) if port else None, user=user or None), config)
    hop.keys = hop.keys or target.keys
    hop.known_hosts, hop.proxy_jump, hop.proxy_command = target.known_hosts, [], None
    return hop


class Remote:
    """An SSH session to one inventory device, with errors that name the device and the fix."""

    def __init__(self, entry: DeviceEntry, accept_new_host_key: bool = False, timeout: float = 15.0,
                 config_path: Path | None = None) -> None:
        if entry.ssh is None:
            raise DeviceError(f"device '{entry.name}' has no `ssh:` settings in the inventory; add e.g. "
                              "`ssh: {user: pi, key: ~/.ssh/id_ed25519}` under it")
        self.entry, self.ssh = entry, entry.ssh
        if self.ssh.key and not Path(self.ssh.key).expanduser().is_file():
            raise DeviceError(f"device '{entry.name}': the SSH key file '{self.ssh.key}' (`ssh.key` in the "
                              "inventory) does not exist; fix the path or remove `key:` to use ~/.ssh/config "
                              "and the SSH agent")
        config = load_ssh_config(config_path)
        self.endpoint = resolve(entry.ssh, config)
        self.commands: list[str] = []        # every command run here, in order (what deploy did)
        self.sftp = None
        self._hops: list = []                # the jump hosts' clients, closed with this one
        self.timeout, self.accept_new = timeout, accept_new_host_key
        password = os.environ.get(self.ssh.password_env) if self.ssh.password_env else None
        try:
            sock = self._proxy(config)
            self.client = self._connect(self.endpoint, sock, password)
        except BaseException:
            self.close()
            raise

    def _proxy(self, config):
        """The socket to reach the device through: a ProxyCommand, a chain of ProxyJump hosts, or None."""
        import paramiko

        ep = self.endpoint
        if ep.proxy_command and not ep.proxy_jump:
            return paramiko.ProxyCommand(ep.proxy_command)
        hops = [jump_endpoint(spec, config, ep) for spec in ep.proxy_jump]
        sock = None
        for hop, nxt in zip(hops, hops[1:] + [ep]):
            client = self._connect(hop, sock, None)
            self._hops.append(client)
            try:
                sock = client.get_transport().open_channel("direct-tcpip", (nxt.host, nxt.port), ("127.0.0.1", 0),
                                                           timeout=self.timeout)
            except (paramiko.SSHException, OSError) as exc:
                raise DeviceError(f"device '{self.entry.name}': the jump host {hop.where} cannot reach "
                                  f"{nxt.host}:{nxt.port} ({exc}); check ProxyJump in the ssh config") from None
        return sock

    def _connect(self, ep: Endpoint, sock, password: str | None):
        import paramiko

        client = paramiko.SSHClient()
        if ep.known_hosts.exists():
            client.load_host_keys(str(ep.known_hosts))
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if self.accept_new else paramiko.RejectPolicy())
        keys = [str(Path(k).expanduser()) for k in ep.keys if Path(k).expanduser().exists()] or None
        try:
            client.connect(ep.host, port=ep.port, username=ep.user, key_filename=keys, password=password,
                           timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout, sock=sock,
                           look_for_keys=keys is None and password is None, allow_agent=True)
        except BaseException as exc:
            client.close()
            raise self._error(exc, ep) from None
        return client

    def _error(self, exc: BaseException, ep: Endpoint) -> BaseException:
        import paramiko

        name, known = self.entry.name, ep.known_hosts
        if isinstance(exc, paramiko.BadHostKeyException):
            return DeviceError(
                f"device '{name}': the SSH host key of {ep.host} CHANGED (got {exc.key.get_name()} "
                f"{exc.key.get_base64()[:16]}..., {known} has another); if the device was reinstalled, remove the "
                f"old key with `ssh-keygen -f {known} -R '[{ep.host}]:{ep.port}'` and deploy again, "
                "otherwise someone may be impersonating it")
        if isinstance(exc, paramiko.SSHException):
            text = str(exc)
            if "not found in known_hosts" in text:
                return DeviceError(
                    f"device '{name}': {ep.host} is not in {known}; check its fingerprint and add it "
                    f"(`ssh-keyscan -p {ep.port} {ep.host} >> {known}`) or pass --accept-new-host-key")
            if isinstance(exc, paramiko.AuthenticationException) or "authentication" in text.lower():
                return DeviceError(
                    f"device '{name}': SSH refused {ep.where} ({text}); check `ssh.user` and `ssh.key` in the "
                    "inventory (or User/IdentityFile in ~/.ssh/config) and that the key is in the device's "
                    "~/.ssh/authorized_keys")
            return DeviceError(f"device '{name}': SSH to {ep.where} failed ({text})")
        if isinstance(exc, OSError):
            return DeviceError(f"device '{name}': cannot open SSH to {ep.where} ({exc.strerror or exc}); is "
                               "the device on and sshd running? check `ssh.host` / `ssh.port` (or ~/.ssh/config)")
        return exc

    def run(self, command: str, check: bool = True, timeout: float = 600.0) -> tuple[int, str, str]:
        """Run a shell command on the device; with check, a non-zero exit is a DeviceError with its output."""
        self.commands.append(command)
        _, stdout, stderr = self.client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
        rc = stdout.channel.recv_exit_status()
        if check and rc != 0:
            raise DeviceError(f"device '{self.entry.name}': `{command[:120]}` failed ({rc}): "
                              f"{(err or out).strip()[-600:]}")
        return rc, out, err

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to the device (SFTP)."""
        self.commands.append(f"sftp put {Path(local).name} {remote}")
        if self.sftp is None:
            self.sftp = self.client.open_sftp()
        self.sftp.put(str(local), remote)

    def close(self) -> None:
        if self.sftp is not None:
            self.sftp.close()
        if getattr(self, "client", None) is not None:
            self.client.close()
        for hop in reversed(self._hops):
            hop.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

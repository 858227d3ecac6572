"""~/.ssh/config honoured by deploy/logs/undeploy: a Host alias (HostName, Port, User, IdentityFile,
UserKnownHostsFile) reaches the real sshd on 127.0.0.1, the inventory's explicit values win over the
config's, and ProxyJump goes through a jump host (here the same sshd, forwarding to itself)."""

from __future__ import annotations

import paramiko
import pytest

from controller.errors import DeviceError
from controller.fleet.inventory import parse_inventory
from controller.fleet.ssh import Remote
from tests.controller.fleet.sshd import farmctl, free_port


def _config(tmp_path, monkeypatch, text: str):
    path = tmp_path / "ssh_config"
    path.write_text(text)
    monkeypatch.setenv("EDGEFARM_SSH_CONFIG", str(path))     # never the real ~/.ssh/config
    return path


def _host(sshd, alias: str, port: int | None = None, user: str = "root", extra: str = "") -> str:
    return (f"Host {alias}\n  HostName 127.0.0.1\n  Port {port or sshd.port}\n  User {user}\n"
            f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {sshd.known_hosts}\n{extra}")


def _entry(tmp_path, ssh: str):
    return parse_inventory(f"devices:\n  box:\n    address: 127.0.0.1:{free_port()}\n    ssh: {ssh}\n",
                           tmp_path / "inventory.yaml")["box"]


def test_a_host_alias_of_the_ssh_config_reaches_the_device(sshd, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, _host(sshd, "farmbox"))
    with Remote(_entry(tmp_path, "{host: farmbox}")) as remote:
        ep = remote.endpoint
        assert (ep.alias, ep.host, ep.port, ep.user) == ("farmbox", "127.0.0.1", sshd.port, "root")
        assert ep.keys == [str(sshd.client_key)] and ep.known_hosts == sshd.known_hosts
        assert remote.run("id -un")[1].strip() == "root"
    assert remote.commands == ["id -un"]


def test_the_inventory_wins_over_the_ssh_config(sshd, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, _host(sshd, "farmbox", port=1, user="nobody-here"))
    with pytest.raises(DeviceError, match=r"cannot open SSH to nobody-here@127.0.0.1:1 \(ssh config Host farmbox\)"):
        Remote(_entry(tmp_path, "{host: farmbox}"))
    with Remote(_entry(tmp_path, f"{{host: farmbox, port: {sshd.port}, user: root}}")) as remote:
        assert (remote.endpoint.port, remote.endpoint.user) == (sshd.port, "root")
        assert remote.run("echo ok")[1] == "ok\n"


def test_proxyjump_goes_through_the_jump_host(sshd, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, _host(sshd, "jump") + "\n" + _host(sshd, "behind", extra="  ProxyJump jump\n"))
    with Remote(_entry(tmp_path, "{host: behind}")) as remote:
        assert remote.endpoint.proxy_jump == ["jump"]
        assert isinstance(remote.client.get_transport().sock, paramiko.Channel)   # a direct-tcpip channel
        assert len(remote._hops) == 1 and remote._hops[0].get_transport().is_active()
        assert remote.run("id -un")[1].strip() == "root"
    assert not remote._hops[0].get_transport()          # closed with the session


def test_farmctl_logs_follows_the_alias(sshd, tmp_path, monkeypatch):
    _config(tmp_path, monkeypatch, _host(sshd, "farmbox"))
    inv = tmp_path / "inventory.yaml"
    inv.write_text(f"devices:\n  box:\n    address: 127.0.0.1:{free_port()}\n"
                   f"    ssh: {{host: farmbox, install_dir: {tmp_path / 'none'}}}\n")
    out = farmctl(inv, "logs", "box", "-n", "5", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "No such file" in out.stdout or "cannot open" in out.stdout     # the log of an agent never deployed

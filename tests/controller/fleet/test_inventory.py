"""The inventory: devices, classes, labels, SSH and TLS read from YAML; errors that name the line and the
fix; a remote entry reached with its token; an agent of another version named with the fix."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import pytest

from controller.errors import DeviceError
from controller.fleet.connect import check_version, connect
from controller.fleet.inventory import (
    InventoryError,
    load_inventory,
    parse_inventory,
    resolve_device,
    resolve_devices,
)
from controller.fleet.ssh import resolve as resolve_ssh

FLEET = """\
tls:
  ca: ca/ca.pem
  cert: ca/farmctl.pem
  key: ca/farmctl.key
devices:
  local:
    embedded: true
  pi-a:
    address: 10.0.0.5:50551
    class: rpi4
    labels: {room: lab, camera: "yes"}
    backends: [onnxruntime, tflite]
    ssh: {user: pi, key: ~/.ssh/id_ed25519}
  pi-b:
    address: 10.0.0.6:50551
    class: rpi4
  orin:
    address: 10.0.0.7:50551
    class: jetson-orin
    backends: [tensorrt]
    token_env: ORIN_TOKEN
"""


def test_inventory_reads_classes_labels_ssh_and_tls(tmp_path):
    devices = parse_inventory(FLEET, tmp_path / "inventory.yaml")
    assert set(devices) == {"local", "pi-a", "pi-b", "orin"}
    pi = devices["pi-a"]
    assert (pi.device_class, pi.labels, pi.backends, pi.line) == ("rpi4", {"room": "lab", "camera": "yes"},
                                                                  ["onnxruntime", "tflite"], 8)
    assert (pi.ssh.host, pi.ssh.user, pi.ssh.port, pi.ssh.agent_port) == ("10.0.0.5", "pi", None, 50551)
    ep = resolve_ssh(pi.ssh, None)                  # no ssh config: port 22, the inventory's user
    assert (ep.host, ep.user, ep.port, ep.proxy_jump) == ("10.0.0.5", "pi", 22, [])
    assert pi.tls.ca == str(tmp_path / "ca" / "ca.pem")           # relative to the inventory file
    assert devices["local"].embedded and devices["local"].tls is None
    assert [e.name for e in resolve_devices("rpi4", devices)] == ["pi-a", "pi-b"]
    assert [e.name for e in resolve_devices("orin", devices)] == ["orin"]
    with pytest.raises(DeviceError, match=r"unknown device 'rpi' \(did you mean 'rpi4'\?\).*classes: "
                                          r"jetson-orin, rpi4"):
        resolve_devices("rpi", devices)


@pytest.mark.parametrize("text, error", [
    ("devices:\n  pi:\n    adress: 1.2.3.4:1\n",
     r"inventory.yaml:3: unknown field 'adress' in device 'pi' \(did you mean 'address'\?\)"),
    ("devices:\n  pi:\n    class: rpi4\n", r"inventory.yaml:2: device 'pi' needs an address"),
    ("devices:\n  pi:\n    address: nowhere\n", r"inventory.yaml:3: device 'pi': address 'nowhere' must be HOST:PORT"),
    ("devices:\n  pi:\n    address: a:1\n    backends: [onnxruntime, tensort]\n",
     r"inventory.yaml:4: device 'pi': unknown backend 'tensort' \(did you mean 'tensorrt'\?\)"),
    ("devices:\n  pi:\n    address: a:1\n    backends: tflite\n", r"inventory.yaml:4: .*backends must be a list"),
    ("devices:\n  pi:\n    address: a:1\n    ssh:\n      port: ssh\n",
     r"inventory.yaml:5: device 'pi': ssh: port must be a port number"),
    ("devices:\n  pi:\n    address: a:1\n    ssh: {usr: pi}\n", r"inventory.yaml:4: unknown field 'usr'.*'user'"),
    ("devices:\n  pi:\n    address: a:1\n    tls: {ca: x}\n", r"inventory.yaml:4: device 'pi': tls needs cert, key"),
    ("devices:\n  pi:\n    address: a:1\n  pi:\n    address: b:2\n", r"inventory.yaml:4: 'pi' appears twice"),
    ("devices:\n  x86:\n    address: a:1\n  box:\n    address: b:2\n    class: x86\n",
     r"inventory.yaml:2: device name 'x86' is also a class"),
    ("devices:\n  pi: [1, 2]\n", r"inventory.yaml:2: device 'pi' must be a mapping"),
    ("devices:\n  pi:\n    address: a:1\n   class: x\n", r"inventory.yaml:4: not valid YAML"),
    ("device:\n  pi: {}\n", r"inventory.yaml:1: unknown field 'device' in the inventory \(did you mean 'devices'"),
])
def test_inventory_errors_name_the_line_and_the_fix(text, error):
    with pytest.raises(InventoryError, match=error):
        parse_inventory(text, "inventory.yaml")


def test_missing_inventory_file_is_a_clear_error(tmp_path):
    with pytest.raises(InventoryError, match="does not exist; pass --inventory FILE"):
        load_inventory(tmp_path / "nope.yaml")


def test_inventory(tmp_path, monkeypatch):
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local: {}\n  pi: {address: '10.0.0.5:50551', class: rpi4, token_env: PI_TOKEN}\n")
    devices = load_inventory(inv)
    assert devices["local"].embedded and devices["pi"].address == "10.0.0.5:50551"
    monkeypatch.setenv("PI_TOKEN", "t0k")
    assert devices["pi"].token() == "t0k"
    assert resolve_device("127.0.0.1:1234", devices).address == "127.0.0.1:1234"
    with pytest.raises(DeviceError, match="unknown device 'nope'; the inventory has devices: local, pi; classes: rpi4"):
        resolve_device("nope", devices)
    inv.write_text("devices:\n  pi: {class: rpi4}\n")
    with pytest.raises(DeviceError, match="needs an address"):
        load_inventory(inv)
    inv.write_text("devices: [\n")
    with pytest.raises(DeviceError, match="not valid YAML"):
        load_inventory(inv)


def test_connect_to_a_remote_entry_uses_its_token(start_agent, monkeypatch, tmp_path):
    (tmp_path / "token").write_text("abc\n")
    _, agent = start_agent("--token-file", str(tmp_path / "token"))
    devices = {"pi": resolve_device(f"127.0.0.1:{agent.port}", {})}
    devices["pi"].token_env = "MY_TOKEN"
    monkeypatch.setenv("MY_TOKEN", "abc")
    with connect(devices["pi"]) as client:
        assert client.info().name == "test-agent"


def test_an_agent_of_another_version_is_named_with_the_fix():
    client = SimpleNamespace(name="pi-a", address="10.0.0.5:50551")
    with pytest.raises(DeviceError, match=r"farm-agent 'pi-a' at 10.0.0.5:50551 runs edgefarm 0.0.3 but farmctl is "
                                          r".*farmctl deploy pi-a"):
        check_version(client, SimpleNamespace(agent_version="0.0.3"))
    import agent

    check_version(client, SimpleNamespace(agent_version=agent.__version__))


def test_farmctl_devices_probes_every_device_at_once_in_inventory_order(tmp_path):
    """Two addresses that accept TCP but never answer gRPC cost the whole timeout each; probed in parallel,
    the listing (with the embedded agent started meanwhile) takes about one timeout, not two."""
    from controller.fleet.devices import device_rows

    holes = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)                     # the kernel completes the handshake; nobody ever speaks
        holes.append(s)
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n" + "".join(f"  hole-{i}: {{address: '127.0.0.1:{s.getsockname()[1]}'}}\n"
                                          for i, s in enumerate(holes)))
    timeout = 8.0
    started = time.monotonic()
    try:
        rows = device_rows(inv, timeout=timeout)
    finally:
        for s in holes:
            s.close()
    took = time.monotonic() - started
    assert [r.name for r in rows] == ["local", "hole-0", "hole-1"]
    assert rows[0].status == "ok"
    assert all(r.status == "unreachable" and "did not answer" in r.error for r in rows[1:])
    assert timeout * 0.9 <= took < timeout * 1.6, took        # one at a time: 2 x 8 s and the agent's start


def test_the_dashboard_probe_leaves_the_embedded_agent_and_rows_print_as_devices_json(tmp_path):
    """One probe serves `farmctl devices` and the dashboard: with start_embedded=False the embedded agent is
    not started (status "embedded", no info); the JSON keeps `farmctl devices --json`'s keys."""
    from controller.fleet.devices import EMBEDDED_ADDRESS, probe_all

    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local: {embedded: true}\n  ghost: {address: '127.0.0.1:9', class: rpi4}\n")
    local, ghost = probe_all(list(load_inventory(inv).values()), timeout=2.0, start_embedded=False)
    assert (local.status, local.info, local.address) == ("embedded", None, EMBEDDED_ADDRESS)
    assert ghost.status == "unreachable" and "cannot reach farm-agent 'ghost'" in ghost.error
    assert ghost.to_json() == {"name": "ghost", "class": "rpi4", "source": "inventory", "address": "127.0.0.1:9",
                               "labels": {}, "status": "unreachable", "error": ghost.error}

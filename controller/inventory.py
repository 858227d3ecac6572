"""The fleet: inventory.yaml devices, and opening a client to one of them (or the embedded local agent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from controller.client import AgentClient
from controller.errors import DeviceError
from controller.local import LocalAgent

LOCAL = "local"


@dataclass
class DeviceEntry:
    """One device of the inventory."""

    name: str
    address: str | None = None        # host:port; None for the embedded local agent
    device_class: str | None = None
    token_env: str | None = None

    @property
    def embedded(self) -> bool:
        """True for the agent farmctl starts itself."""
        return self.address is None

    def token(self) -> str | None:
        """The bearer token from the named environment variable (or EDGEFARM_TOKEN)."""
        return os.environ.get(self.token_env or "EDGEFARM_TOKEN") or None


def load_inventory(path: Path | None = None) -> dict[str, DeviceEntry]:
    """Devices from path, ./inventory.yaml if present, else just the embedded local agent."""
    if path is None and Path("inventory.yaml").is_file():
        path = Path("inventory.yaml")
    devices = {LOCAL: DeviceEntry(LOCAL)}
    if path is None:
        return devices
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise DeviceError(f"inventory file '{path}' does not exist") from None
    except yaml.YAMLError as exc:
        raise DeviceError(f"inventory file '{path}' is not valid YAML: {exc}") from None
    entries = data.get("devices") or {}
    if not isinstance(entries, dict):
        raise DeviceError(f"inventory '{path}': 'devices' must map names to settings")
    for name, cfg in entries.items():
        cfg = cfg or {}
        if cfg.get("embedded") or (name == LOCAL and "address" not in cfg):
            devices[name] = DeviceEntry(name, None, cfg.get("class"))
            continue
        if "address" not in cfg:
            raise DeviceError(f"inventory '{path}': device '{name}' needs an address (host:port) "
                              "or `embedded: true`")
        devices[name] = DeviceEntry(name, str(cfg["address"]), cfg.get("class"), cfg.get("token_env"))
    return devices


def resolve_device(name: str, inventory: dict[str, DeviceEntry]) -> DeviceEntry:
    """An inventory name, or a literal host:port."""
    if name in inventory:
        return inventory[name]
    if ":" in name:
        return DeviceEntry(name, name)
    raise DeviceError(f"unknown device '{name}'; the inventory has: {', '.join(inventory)} "
                      "(or give HOST:PORT of a running farm-agent)")


@contextmanager
def connect(entry: DeviceEntry, ready_timeout: float = 10.0) -> Iterator[AgentClient]:
    """A ready client for the device; the embedded agent is started here and stopped on exit."""
    if entry.embedded:
        with LocalAgent(name=entry.name) as client:
            yield client
        return
    client = AgentClient(entry.address, token=entry.token(), name=entry.name)
    try:
        client.wait_ready(timeout=ready_timeout, wait_for_port=False)
        yield client
    finally:
        client.close()

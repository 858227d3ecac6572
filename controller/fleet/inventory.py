"""The fleet: inventory.yaml devices (name, class, address, SSH, TLS, backends, labels), validated with
line numbers, and --device names resolved to them. Connecting is connect.py; `farmctl devices` is devices.py."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet.client import AgentClient, TLSFiles, tls_from_env

LOCAL = "local"
KNOWN_CLASSES = ("rpi3", "rpi4", "rpi5", "rpi", "jetson-nano", "jetson-orin", "jetson", "x86", "arm64")
KNOWN_BACKENDS = ("onnxruntime", "tflite", "tensorrt")
DEVICE_KEYS = ("address", "class", "labels", "backends", "ssh", "tls", "token_env", "embedded")
SSH_KEYS = ("host", "port", "user", "key", "password_env", "known_hosts", "python", "agent_port", "install_dir")
TLS_KEYS = ("ca", "cert", "key")
TOP_KEYS = ("devices", "tls")


class InventoryError(DeviceError):
    """inventory.yaml is wrong; the message names the file, the line and the fix."""


@dataclass
class SSHSettings:
    """How `farmctl deploy` reaches a device."""

    host: str                         # a name, an address, or a Host alias of ~/.ssh/config
    port: int | None = None           # None: ~/.ssh/config's Port, else 22
    user: str | None = None           # None: ~/.ssh/config's User, else root
    key: str | None = None            # private key; None: ~/.ssh/config IdentityFile, the SSH agent, default keys
    password_env: str | None = None   # environment variable holding a password (never the password itself)
    known_hosts: str | None = None    # None: ~/.ssh/config's UserKnownHostsFile, else ~/.ssh/known_hosts
    python: str = "python3"
    agent_port: int = 50551
    install_dir: str = "~/.local/share/edgefarm"


@dataclass
class TLSSettings:
    """Mutual TLS files: the farm CA and this side's certificate and key (`farmctl ca`)."""

    ca: str
    cert: str
    key: str

    def files(self) -> TLSFiles:
        """The three files read, with a clear error when one is missing."""
        return TLSFiles.read(self.ca, self.cert, self.key)


@dataclass
class DeviceEntry:
    """One device of the inventory."""

    name: str
    address: str | None = None        # host:port; None for the embedded local agent
    device_class: str | None = None
    token_env: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    backends: list[str] = field(default_factory=list)
    ssh: SSHSettings | None = None
    tls: TLSSettings | None = None
    line: int = 0                     # where it is defined in inventory.yaml (0: not from a file)
    discovered: bool = False          # found by zeroconf, not listed in the inventory

    @property
    def embedded(self) -> bool:
        """True for the agent farmctl starts itself."""
        return self.address is None

    def token(self) -> str | None:
        """The bearer token from the named environment variable (or EDGEFARM_TOKEN)."""
        return os.environ.get(self.token_env or "EDGEFARM_TOKEN") or None

    def client(self) -> AgentClient:
        """A client (not yet checked) for a device with an address."""
        return AgentClient(self.address, token=self.token(), name=self.name,
                           tls=self.tls.files() if self.tls else tls_from_env())


def _loc(path: Path, node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _mapping(path: Path, node, what: str) -> dict:
    """A YAML mapping node as {key: (key_node, value_node)}, or an InventoryError at its line."""
    import yaml

    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise InventoryError(f"{_loc(path, node)}: {what} must be a mapping of keys to values")
    out = {}
    for k, v in node.value:
        if k.value in out:
            raise InventoryError(f"{_loc(path, k)}: '{k.value}' appears twice in {what}")
        out[k.value] = (k, v)
    return out


def _check_keys(path: Path, items: dict, allowed, what: str) -> None:
    for key, (knode, _) in items.items():
        if key not in allowed:
            raise InventoryError(f"{_loc(path, knode)}: unknown field '{key}' in {what}{_suggest(key, allowed)}; "
                                 f"the fields are: {', '.join(allowed)}")


def _scalar(path: Path, node, what: str, kind=str):
    import yaml

    if not isinstance(node, yaml.ScalarNode):
        raise InventoryError(f"{_loc(path, node)}: {what} must be a single value")
    value = yaml.safe_load(node.value) if kind is not str else node.value
    if kind is int and (not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536):
        raise InventoryError(f"{_loc(path, node)}: {what} must be a port number (1-65535), got '{node.value}'")
    if kind is bool and not isinstance(value, bool):
        raise InventoryError(f"{_loc(path, node)}: {what} must be true or false, got '{node.value}'")
    return value


def _address(path: Path, node, name: str) -> str:
    value = _scalar(path, node, f"device '{name}': address")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InventoryError(f"{_loc(path, node)}: device '{name}': address '{value}' must be HOST:PORT "
                             "(e.g. 192.168.1.50:50551)")
    return value


def _tls(path: Path, node, what: str) -> TLSSettings:
    items = _mapping(path, node, what)
    _check_keys(path, items, TLS_KEYS, what)
    missing = [k for k in TLS_KEYS if k not in items]
    if missing:
        raise InventoryError(f"{_loc(path, node)}: {what} needs {', '.join(missing)} (files made by "
                             "`farmctl ca init` and `farmctl ca issue`)")
    base = path.parent
    return TLSSettings(**{k: str((base / os.path.expanduser(_scalar(path, items[k][1], f"{what}: {k}")))
                                 .resolve()) for k in TLS_KEYS})


def _ssh(path: Path, node, name: str, address: str | None) -> SSHSettings:
    what = f"device '{name}': ssh"
    items = _mapping(path, node, what)
    _check_keys(path, items, SSH_KEYS, what)
    values = {}
    for key, (_, vnode) in items.items():
        kind = int if key in ("port", "agent_port") else str
        values[key] = _scalar(path, vnode, f"{what}: {key}", kind)
    if "host" not in values:
        if not address:
            raise InventoryError(f"{_loc(path, node)}: {what} needs a host (or give the device an address)")
        values["host"] = address.rpartition(":")[0]
    if "agent_port" not in values and address:
        values["agent_port"] = int(address.rpartition(":")[2])
    return SSHSettings(**values)


def _device(path: Path, name: str, knode, vnode, farm_tls) -> DeviceEntry:
    """One device's entry from its YAML node; any mistake is an InventoryError naming the file and line."""
    import yaml

    items = _mapping(path, vnode, f"device '{name}'")
    _check_keys(path, items, DEVICE_KEYS, f"device '{name}'")
    line = knode.start_mark.line + 1
    embedded = _scalar(path, items["embedded"][1], f"device '{name}': embedded", bool) \
        if "embedded" in items else (name == LOCAL and "address" not in items)
    if embedded and "address" in items:
        raise InventoryError(f"{path}:{line}: device '{name}' has both `embedded: true` and an address; "
                             "keep one")
    address = None
    if not embedded:
        if "address" not in items:
            raise InventoryError(f"{path}:{line}: device '{name}' needs an address (HOST:PORT of its "
                                 "farm-agent) or `embedded: true`")
        address = _address(path, items["address"][1], name)
    entry = DeviceEntry(name, address, line=line)
    if "class" in items:
        cls = _scalar(path, items["class"][1], f"device '{name}': class")
        if cls not in KNOWN_CLASSES and not cls.replace("-", "").isalnum():
            raise InventoryError(f"{_loc(path, items['class'][1])}: device '{name}': class '{cls}' must be "
                                 f"a word like {', '.join(KNOWN_CLASSES[:6])}")
        entry.device_class = cls
    if "labels" in items:
        entry.labels = {k: str(_scalar(path, v, f"device '{name}': label '{k}'"))
                        for k, (_, v) in _mapping(path, items["labels"][1], f"device '{name}': labels").items()}
    if "backends" in items:
        bnode = items["backends"][1]
        if not isinstance(bnode, yaml.SequenceNode):
            raise InventoryError(f"{_loc(path, bnode)}: device '{name}': backends must be a list, e.g. "
                                 "[onnxruntime, tflite]")
        for b in bnode.value:
            value = _scalar(path, b, f"device '{name}': backend")
            if value not in KNOWN_BACKENDS:
                raise InventoryError(f"{_loc(path, b)}: device '{name}': unknown backend '{value}'"
                                     f"{_suggest(value, KNOWN_BACKENDS)}; known: {', '.join(KNOWN_BACKENDS)}")
            entry.backends.append(value)
    if "token_env" in items:
        entry.token_env = _scalar(path, items["token_env"][1], f"device '{name}': token_env")
    if "ssh" in items:
        entry.ssh = _ssh(path, items["ssh"][1], name, address)
    entry.tls = _tls(path, items["tls"][1], f"device '{name}': tls") if "tls" in items else \
        (farm_tls if not embedded else None)
    return entry


def parse_inventory(text: str, path: Path | str = "inventory.yaml") -> dict[str, DeviceEntry]:
    """Devices from inventory YAML text; any mistake is an InventoryError naming the file and line."""
    import yaml

    path = Path(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InventoryError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax "
                             "(indentation, a missing colon)") from None
    devices = {LOCAL: DeviceEntry(LOCAL)}
    if root is None:
        return devices
    top = _mapping(path, root, "the inventory")
    _check_keys(path, top, TOP_KEYS, "the inventory")
    farm_tls = _tls(path, top["tls"][1], "tls") if "tls" in top else None
    if "devices" not in top:
        return devices
    for name, (knode, vnode) in _mapping(path, top["devices"][1], "devices").items():
        devices[name] = _device(path, name, knode, vnode, farm_tls)
    classes = {e.device_class for e in devices.values() if e.device_class}
    for name in devices:
        if name in classes:
            raise InventoryError(f"{path}:{devices[name].line}: device name '{name}' is also a class; "
                                 "rename the device so --device means one thing")
    return devices


def load_inventory(path: Path | None = None) -> dict[str, DeviceEntry]:
    """Devices from path, ./inventory.yaml if present, else just the embedded local agent."""
    if path is None and Path("inventory.yaml").is_file():
        path = Path("inventory.yaml")
    if path is None:
        return {LOCAL: DeviceEntry(LOCAL)}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise InventoryError(f"inventory file '{path}' does not exist; pass --inventory FILE or create "
                             "inventory.yaml (see docs/fleet.md)") from None
    return parse_inventory(text, path)


def resolve_devices(spec: str, inventory: dict[str, DeviceEntry]) -> list[DeviceEntry]:
    """A device name (one entry), a class (every device of that class), or a literal HOST:PORT."""
    if spec in inventory:
        return [inventory[spec]]
    members = [e for e in inventory.values() if e.device_class == spec]
    if members:
        return members
    if ":" in spec:
        return [DeviceEntry(spec, spec)]
    classes = sorted({e.device_class for e in inventory.values() if e.device_class})
    raise DeviceError(f"unknown device '{spec}'{_suggest(spec, list(inventory) + classes)}; the inventory has "
                      f"devices: {', '.join(inventory)}" + (f"; classes: {', '.join(classes)}" if classes else "")
                      + " (or give HOST:PORT of a running farm-agent)")


def resolve_device(name: str, inventory: dict[str, DeviceEntry]) -> DeviceEntry:
    """One device: an inventory name, a literal host:port, or a class (its first healthy member)."""
    entries = resolve_devices(name, inventory)
    if len(entries) == 1:
        return entries[0]
    for entry in entries:
        if entry.embedded:
            return entry
        with entry.client() as client:
            if client.health(timeout=3.0):
                return entry
    raise DeviceError(f"no device of class '{name}' answers its health check ({', '.join(e.name for e in entries)}); "
                      "start their agents (`farmctl deploy NAME`) or check `farmctl devices`")

"""The fleet: inventory.yaml devices (name, class, address, SSH, TLS, backends, labels), validated with
line numbers, and opening a client to one of them (or the embedded local agent)."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet import ca, fingerprint
from controller.fleet.client import AgentClient, TLSFiles, tls_from_env
from controller.fleet.local import LocalAgent
from protos.codec import to_dict

log = logging.getLogger(__name__)

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


def check_version(client: AgentClient, info=None) -> None:
    """An agent of another edgefarm version (major.minor) speaks a different contract: a DeviceError
    naming the device and the fix."""
    import agent

    info = info or client.info()
    theirs, ours = info.agent_version, agent.__version__
    if theirs.split(".")[:2] != ours.split(".")[:2]:
        raise DeviceError(f"farm-agent '{client.name}' at {client.address} runs edgefarm {theirs or '?'} but farmctl "
                          f"is {ours}; update the agent (`farmctl deploy {client.name}` installs this version)")


@contextmanager
def connect(entry: DeviceEntry, ready_timeout: float = 10.0) -> Iterator[AgentClient]:
    """A ready client for the device (health checked, same edgefarm version); the embedded agent is
    started here and stopped on exit."""
    if entry.embedded:
        with LocalAgent(name=entry.name) as client:
            yield client
        return
    if entry.tls:
        ca.warn_expiring([Path(entry.tls.ca), Path(entry.tls.cert)])
    client = entry.client()
    try:
        client.wait_ready(timeout=ready_timeout, wait_for_port=False)
        check_version(client)
        yield client
    finally:
        client.close()


def connect_pool(spec: str, inventory: dict[str, DeviceEntry], stack, ready_timeout: float = 10.0,
                 progress=None) -> dict[str, AgentClient]:
    """Ready clients for a --device value: one device, or every healthy agent of a class (the unreachable
    ones are named and left out; none reachable is a DeviceError). `stack` (an ExitStack) closes them."""
    entries = resolve_devices(spec, inventory)
    if len(entries) == 1:
        return {entries[0].name: stack.enter_context(connect(entries[0], ready_timeout))}
    pool, errors = {}, []
    for entry in entries:
        try:
            pool[entry.name] = stack.enter_context(connect(entry, ready_timeout))
        except DeviceError as exc:
            errors.append(f"{entry.name}: {exc}")
            if progress:
                progress(f"{spec}: leaving out {entry.name}, which does not answer ({exc})")
    if not pool:
        raise DeviceError(f"no agent of class '{spec}' answers: " + " | ".join(errors))
    return pool


def _sources(inventory: Path | None, discover: bool, interfaces: list[str] | None,
             discover_seconds: float) -> tuple[list[DeviceEntry], dict[str, str]]:
    """Every inventory device and (with discover) every agent found on zeroconf, merged by address, with
    where each came from."""
    entries = list(load_inventory(inventory).values())
    found = []
    if discover:
        from controller.fleet.discovery import discover as browse

        found = browse(discover_seconds, interfaces)
    by_address = {e.address: e for e in entries if e.address}
    sources = {e.name: "inventory" for e in entries}
    for agent_found in found:
        known = by_address.get(agent_found.address)
        if known:
            sources[known.name] = "both"
            continue
        name = agent_found.name if agent_found.name not in sources else f"{agent_found.name}@{agent_found.address}"
        entries.append(DeviceEntry(name, agent_found.address, agent_found.device_class or None,
                                   backends=agent_found.backends, discovered=True))
        sources[name] = "discovered"
    return entries, sources


def probe(entry: DeviceEntry, source: str, timeout: float) -> dict:
    """One `farmctl devices` row: the entry, its health and what its agent reports."""
    row = {"name": entry.name, "class": entry.device_class, "source": source,
           "address": entry.address or "embedded (127.0.0.1, started by farmctl)", "labels": entry.labels}
    try:
        with connect(entry, ready_timeout=timeout) as client:
            info = to_dict(client.info())
        row.update(status="ok", info=info)
        row["class"] = row["class"] or info.get("device_class")
    except DeviceError as exc:
        row.update(status="unhealthy" if "not serving" in str(exc) else "unreachable", error=str(exc))
    return row


def mixed_classes(rows: list[dict], classes: list[str | None]) -> list[str]:
    """A warning for each class (as the inventory gives it, which --device CLASS means) whose answering
    agents report different fingerprints, also added to its rows' "warnings"."""
    by_class: dict[str, list[dict]] = {}
    for r, cls in zip(rows, classes):
        if r["status"] == "ok" and cls:
            by_class.setdefault(cls, []).append(r)
    out = []
    for cls, members in by_class.items():
        if len({r["info"].get("fingerprint") for r in members}) > 1:
            text = fingerprint.mixed_warning(cls, {r["name"]: r["info"] for r in members})
            out.append(text)
            for r in members:
                r.setdefault("warnings", []).append(text)
    return out


def device_rows(inventory: Path | None = None, timeout: float = 5.0, discover: bool = False,
                interfaces: list[str] | None = None, discover_seconds: float = 2.0) -> list[dict]:
    """`farmctl devices`: every inventory device and (with discover) every agent found on zeroconf, each
    with its health and what it reports, probed all at once (N unreachable devices cost one timeout), in
    the inventory's order. Classes of mixed fingerprints and certificates near expiry are warned about."""
    entries, sources = _sources(inventory, discover, interfaces, discover_seconds)
    with ThreadPoolExecutor(max_workers=min(32, len(entries)), thread_name_prefix="probe") as pool:
        rows = list(pool.map(lambda e: probe(e, sources[e.name], timeout), entries))
    for text in mixed_classes(rows, [e.device_class for e in entries]):
        log.warning("%s", text)
    certs = [Path(p) for e in entries if e.tls for p in (e.tls.ca, e.tls.cert, Path(e.tls.ca).parent)]
    default = ca.default_ca_dir()
    ca.warn_expiring(certs + ([default] if default.is_dir() else []))
    return rows

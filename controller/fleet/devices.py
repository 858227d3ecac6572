"""`farmctl devices`: every inventory device and every agent zeroconf finds, probed at once, with the
warnings a fleet needs (agents of one class with different fingerprints, certificates near expiry). The
dashboard's devices page probes with the same code, without starting the embedded agent."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet import ca, fingerprint
from controller.fleet.connect import check_version, connect
from controller.fleet.inventory import DeviceEntry, load_inventory
from protos.codec import to_dict

log = logging.getLogger(__name__)


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
        name = (agent_found.name if agent_found.name not in sources
                else f"{agent_found.name}@{agent_found.address}")
        entries.append(DeviceEntry(name, agent_found.address, agent_found.device_class or None,
                                   backends=agent_found.backends, discovered=True))
        sources[name] = "discovered"
    return entries, sources


EMBEDDED_ADDRESS = "embedded (127.0.0.1, started by farmctl)"


@dataclass
class DeviceStatus:
    """One device as `farmctl devices` and the dashboard's devices page see it."""

    name: str
    device_class: str | None        # the inventory's class, else what the agent reports
    address: str                    # EMBEDDED_ADDRESS for the embedded agent
    labels: dict[str, str]
    source: str = "inventory"       # inventory | discovered | both
    status: str = ""                # ok | unhealthy | unreachable | embedded (not started)
    error: str = ""                 # why it is not ok
    info: dict | None = None        # the agent's GetInfo, as JSON
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The object `farmctl devices --json` prints for the device."""
        out = {"name": self.name, "class": self.device_class, "source": self.source, "address": self.address,
               "labels": self.labels, "status": self.status}
        out.update({k: v for k, v in (("info", self.info), ("error", self.error), ("warnings", self.warnings))
                    if v})
        return out


def probe(entry: DeviceEntry, timeout: float, source: str = "inventory",
          start_embedded: bool = True) -> DeviceStatus:
    """Ask one device's agent for its health, then its info, waiting up to `timeout` for each; unreachable
    or unhealthy with the reason. The embedded agent is started for it only with start_embedded (the
    dashboard leaves it alone)."""
    row = DeviceStatus(entry.name, entry.device_class, entry.address or EMBEDDED_ADDRESS, dict(entry.labels),
                       source)
    if entry.embedded and not start_embedded:
        row.status = "embedded"
        return row
    try:
        if entry.embedded:
            with connect(entry, ready_timeout=timeout) as client:
                info = client.info()
        else:   # no certificate warning here: device_rows warns once for every device
            with entry.client() as client:
                client.wait_ready(timeout=timeout, wait_for_port=False)
                info = client.info(timeout=timeout)
                check_version(client, info)
    except DeviceError as exc:
        row.status = "unhealthy" if "not serving" in str(exc) else "unreachable"
        row.error = str(exc)
        return row
    row.status, row.info = "ok", to_dict(info)
    row.device_class = row.device_class or row.info.get("device_class") or None
    return row


def probe_all(entries: list[DeviceEntry], timeout: float, sources: dict[str, str] | None = None,
              start_embedded: bool = True) -> list[DeviceStatus]:
    """Every entry probed at once (N unreachable devices cost one timeout), in the entries' order."""
    if not entries:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(entries)), thread_name_prefix="probe") as pool:
        return list(pool.map(lambda e: probe(e, timeout, (sources or {}).get(e.name, "inventory"),
                                             start_embedded), entries))


def mixed_classes(rows: list[DeviceStatus], classes: list[str | None]) -> list[str]:
    """A warning for each class (as the inventory gives it, which --device CLASS means) whose answering
    agents report different fingerprints, also added to its rows' warnings."""
    by_class: dict[str, list[DeviceStatus]] = {}
    for r, cls in zip(rows, classes):
        if r.status == "ok" and cls:
            by_class.setdefault(cls, []).append(r)
    out = []
    for cls, members in by_class.items():
        if len({r.info.get("fingerprint") for r in members}) > 1:
            text = fingerprint.mixed_warning(cls, {r.name: r.info for r in members})
            out.append(text)
            for r in members:
                r.warnings.append(text)
    return out


def device_rows(inventory: Path | None = None, timeout: float = 5.0, discover: bool = False,
                interfaces: list[str] | None = None, discover_seconds: float = 2.0) -> list[DeviceStatus]:
    """`farmctl devices`: every inventory device and (with discover) every agent found on zeroconf, each
    with its health and what it reports, probed all at once, in the inventory's order. Classes of mixed
    fingerprints and certificates near expiry are warned about."""
    entries, sources = _sources(inventory, discover, interfaces, discover_seconds)
    rows = probe_all(entries, timeout, sources)
    for text in mixed_classes(rows, [e.device_class for e in entries]):
        log.warning("%s", text)
    certs = [Path(p) for e in entries if e.tls for p in (e.tls.ca, e.tls.cert, Path(e.tls.ca).parent)]
    default = ca.default_ca_dir()
    ca.warn_expiring(certs + ([default] if default.is_dir() else []))
    return rows

"""`farmctl devices`: every inventory device and every agent zeroconf finds, probed at once, with the
warnings a fleet needs (agents of one class with different fingerprints, certificates near expiry)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet import ca, fingerprint
from controller.fleet.connect import connect
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

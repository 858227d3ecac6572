"""The devices page's rows: every inventory device asked for its health and GetInfo (in parallel, each with a
short deadline), with the last telemetry the store holds for it. The embedded `local` agent is not started
by the dashboard: farmctl starts it for one command at a time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.errors import DeviceError
from controller.fleet.connect import check_version
from controller.fleet.inventory import DeviceEntry, load_inventory
from protos.codec import to_dict

EMBEDDED_NOTE = "embedded: farmctl starts it on 127.0.0.1 for one command at a time (not running between commands)"


@dataclass
class DeviceRow:
    """One device as the devices page shows it."""

    name: str
    address: str
    device_class: str | None
    labels: dict[str, str]
    status: str                     # healthy | unreachable | unhealthy | embedded
    error: str = ""                 # why it is not healthy
    note: str = ""
    fingerprint: str = ""
    agent_version: str = ""
    backends: list[dict] = field(default_factory=list)   # name, version, providers
    queue_length: int | None = None
    cache_bytes: int | None = None
    cache_max_bytes: int | None = None
    cpu: str = ""
    cores: int | None = None
    memory_bytes: int | None = None
    os: str = ""
    telemetry: dict | None = None   # the last stored run's telemetry (data.last_telemetry)

    def to_json(self) -> dict:
        return asdict(self)


def probe(entry: DeviceEntry, timeout: float) -> DeviceRow:
    """Ask one device's agent for its health and info; unreachable or unhealthy with the reason."""
    row = DeviceRow(entry.name, entry.address or "embedded", entry.device_class, dict(entry.labels), "embedded",
                    note=EMBEDDED_NOTE if entry.embedded else "")
    if entry.embedded:
        return row
    try:
        with entry.client() as client:
            client.wait_ready(timeout=timeout, wait_for_port=False)
            info = client.info(timeout=timeout)
            check_version(client, info)
    except DeviceError as exc:
        row.status = "unhealthy" if "not serving" in str(exc) else "unreachable"
        row.error = str(exc)
        return row
    d = to_dict(info)
    row.status = "healthy"
    row.device_class = row.device_class or d.get("device_class") or None
    row.fingerprint, row.agent_version = d.get("fingerprint", ""), d.get("agent_version", "")
    row.backends = list(d.get("backends", []))
    row.queue_length = int(d.get("queue_length", 0))
    row.cache_bytes, row.cache_max_bytes = int(d.get("cache_bytes", 0)), int(d.get("cache_max_bytes", 0))
    row.cpu, row.cores, row.os = d.get("cpu_model", ""), int(d.get("cores", 0)), d.get("os", "")
    row.memory_bytes = int(d.get("memory_bytes", 0))
    return row


def device_rows(inventory: Path | None, timeout: float = 2.0) -> list[DeviceRow]:
    """Every inventory device (./inventory.yaml when none is given, else just `local`), probed at once."""
    entries = list(load_inventory(inventory).values())
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(entries)))) as pool:
        return list(pool.map(lambda e: probe(e, timeout), entries))

"""The devices page's rows: every inventory device asked for its health and GetInfo by `farmctl devices`'
probe (controller.fleet.devices: in parallel, each with a short deadline), with the last telemetry the
store holds for it. The embedded `local` agent is not started by the dashboard: farmctl starts it for one
command at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.fleet.devices import DeviceStatus, probe_all
from controller.fleet.inventory import load_inventory

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


def _row(s: DeviceStatus) -> DeviceRow:
    """The page's row for one probed device."""
    info = s.info or {}
    embedded = s.status == "embedded"
    row = DeviceRow(s.name, "embedded" if embedded else s.address, s.device_class, s.labels,
                    {"ok": "healthy"}.get(s.status, s.status), s.error,
                    note=EMBEDDED_NOTE if embedded else "")
    if s.status != "ok":
        return row
    row.fingerprint, row.agent_version = info.get("fingerprint", ""), info.get("agent_version", "")
    row.backends = list(info.get("backends", []))
    row.queue_length = int(info.get("queue_length", 0))
    row.cache_bytes = int(info.get("cache_bytes", 0))
    row.cache_max_bytes = int(info.get("cache_max_bytes", 0))
    row.cpu, row.cores, row.os = info.get("cpu_model", ""), int(info.get("cores", 0)), info.get("os", "")
    row.memory_bytes = int(info.get("memory_bytes", 0))
    return row


def device_rows(inventory: Path | None, timeout: float = 2.0) -> list[DeviceRow]:
    """Every inventory device (./inventory.yaml when none is given, else just `local`), probed at once by
    `farmctl devices`' code, the embedded agent left alone and no certificate warning on each refresh."""
    entries = list(load_inventory(inventory).values())
    return [_row(s) for s in probe_all(entries, timeout, start_embedded=False)]

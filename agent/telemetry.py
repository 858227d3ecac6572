"""Thermal, clock and throttle readings around each job, and the flags derived from them."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SYS_THERMAL = Path("/sys/class/thermal")
SYS_CPU = Path("/sys/devices/system/cpu")
NOISY_CV = 0.10          # a run whose coefficient of variation exceeds this is flagged noisy
HOT_MARGIN_C = 5.0       # within this many degrees of a passive trip point counts as throttling
# vcgencmd get_throttled bits that mean "happening now": under-voltage, capped, throttled, soft temp limit
RPI_THROTTLED_NOW = 0x1 | 0x2 | 0x4 | 0x8


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def thermal_zones(root: Path = SYS_THERMAL) -> list[dict]:
    """Every readable thermal zone with its temperature and passive trip point in degrees C."""
    zones = []
    for zone in sorted(root.glob("thermal_zone*")):
        milli = _read_int(zone / "temp")
        if milli is None:
            continue
        passive = 0.0
        for trip_type in zone.glob("trip_point_*_type"):
            if _read(trip_type) == "passive":
                t = _read_int(trip_type.with_name(trip_type.name.replace("_type", "_temp")))
                if t:
                    passive = t / 1000.0
                    break
        zones.append({"name": _read(zone / "type") or zone.name, "temp_c": milli / 1000.0,
                      "passive_c": passive})
    return zones


def cpu_frequencies(root: Path = SYS_CPU) -> list[dict]:
    """Current, scaling-max and hardware-max frequency of each CPU that exposes cpufreq."""
    freqs = []
    for cpu in sorted(root.glob("cpu[0-9]*"), key=lambda p: int(p.name[3:])):
        cur = _read_int(cpu / "cpufreq" / "scaling_cur_freq")
        if cur is None:
            continue
        freqs.append({"cpu": int(cpu.name[3:]), "cur_khz": cur,
                      "max_khz": _read_int(cpu / "cpufreq" / "scaling_max_freq") or 0,
                      "hw_max_khz": _read_int(cpu / "cpufreq" / "cpuinfo_max_freq") or 0})
    return freqs


def rpi_throttled() -> str:
    """`vcgencmd get_throttled` output (e.g. 'throttled=0x0') on a Raspberry Pi, else ''."""
    if not shutil.which("vcgencmd"):
        return ""
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def read_telemetry() -> dict:
    """A snapshot of temperatures, clocks, throttle state and load."""
    return {"thermal": thermal_zones(), "cpufreq": cpu_frequencies(), "throttled_raw": rpi_throttled(),
            "timestamp": time.time(), "load_1m": os.getloadavg()[0]}


def is_throttled(snapshot: dict) -> bool:
    """True if the snapshot shows throttling: RPi throttle bits, a zone near its passive trip, or a capped clock."""
    raw = snapshot.get("throttled_raw") or ""
    if "=" in raw:
        try:
            if int(raw.split("=", 1)[1], 16) & RPI_THROTTLED_NOW:
                return True
        except ValueError:
            pass
    for zone in snapshot.get("thermal", []):
        if zone.get("passive_c") and zone["temp_c"] >= zone["passive_c"] - HOT_MARGIN_C:
            return True
    for f in snapshot.get("cpufreq", []):
        if f.get("hw_max_khz") and f.get("max_khz") and f["max_khz"] < f["hw_max_khz"] * 0.95:
            return True
    return False


def result_flags(before: dict, after: dict, cv: float | None, noisy_cv: float = NOISY_CV) -> list[str]:
    """Flags stored with a result so a doubtful number is never silently taken as good."""
    flags = []
    if is_throttled(before) or is_throttled(after):
        flags.append("throttled")
    if cv is not None and cv > noisy_cv:
        flags.append("noisy")
    return flags

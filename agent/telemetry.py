"""Thermal, clock and throttle readings around each job, and the flags derived from them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from agent.jetson import gpu_devfreq, mode_cpu_cap, parse_tegrastats, power_mode
from agent.sysfs import read_int, read_text

SYS_THERMAL = Path("/sys/class/thermal")
SYS_CPU = Path("/sys/devices/system/cpu")
SYS_RAPL = Path("/sys/class/powercap")
NOISY_CV = 0.10          # a run whose coefficient of variation exceeds this is flagged noisy
HOT_MARGIN_C = 5.0       # within this many degrees of a passive trip point counts as throttling
# vcgencmd get_throttled bits that mean "happening now": under-voltage, capped, throttled, soft temp limit
RPI_THROTTLED_NOW = 0x1 | 0x2 | 0x4 | 0x8


def thermal_zones(root: Path = SYS_THERMAL) -> list[dict]:
    """Every readable thermal zone with its temperature and passive trip point in degrees C."""
    zones = []
    for zone in sorted(root.glob("thermal_zone*")):
        milli = read_int(zone / "temp")
        if milli is None:
            continue
        passive = 0.0
        for trip_type in zone.glob("trip_point_*_type"):
            if read_text(trip_type) == "passive":
                t = read_int(trip_type.with_name(trip_type.name.replace("_type", "_temp")))
                if t:
                    passive = t / 1000.0
                    break
        zones.append({"name": read_text(zone / "type") or zone.name, "temp_c": milli / 1000.0,
                      "passive_c": passive})
    return zones


def cpu_frequencies(root: Path = SYS_CPU) -> list[dict]:
    """Current, scaling-max and hardware-max frequency of each CPU that exposes cpufreq."""
    freqs = []
    for cpu in sorted(root.glob("cpu[0-9]*"), key=lambda p: int(p.name[3:])):
        cur = read_int(cpu / "cpufreq" / "scaling_cur_freq")
        if cur is None:
            continue
        freqs.append({"cpu": int(cpu.name[3:]), "cur_khz": cur,
                      "max_khz": read_int(cpu / "cpufreq" / "scaling_max_freq") or 0,
                      "hw_max_khz": read_int(cpu / "cpufreq" / "cpuinfo_max_freq") or 0})
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


# ---- Raspberry Pi: vcgencmd ---------------------------------------------------------------------
THROTTLE_BITS = {0: "under-voltage now", 1: "arm frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage occurred", 17: "arm frequency capping occurred",
                 18: "throttling occurred", 19: "soft temperature limit occurred"}


def parse_throttled(text: str) -> dict:
    """`vcgencmd get_throttled` ('throttled=0x50005') -> the bits and their meanings."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text or "")
    if not m:
        return {}
    value = int(m.group(1), 0)
    return {"value": value, "now": bool(value & RPI_THROTTLED_NOW),
            "reasons": [why for bit, why in THROTTLE_BITS.items() if value & (1 << bit)]}


def parse_vcgencmd_temp(text: str) -> float | None:
    """`vcgencmd measure_temp` ("temp=47.2'C") -> 47.2."""
    m = re.search(r"temp=([\d.]+)", text or "")
    return float(m.group(1)) if m else None


def parse_vcgencmd_clock(text: str) -> int | None:
    """`vcgencmd measure_clock arm` ('frequency(48)=1500398464') -> Hz."""
    m = re.search(r"frequency\(\d+\)=(\d+)", text or "")
    return int(m.group(1)) if m else None


def _vcgencmd(*args: str) -> str:
    try:
        return subprocess.run(["vcgencmd", *args], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def rpi_readings() -> dict:
    """Temperature, ARM clock and throttle state from vcgencmd on a Raspberry Pi, else {}."""
    if not shutil.which("vcgencmd"):
        return {}
    return {"temp_c": parse_vcgencmd_temp(_vcgencmd("measure_temp")),
            "arm_hz": parse_vcgencmd_clock(_vcgencmd("measure_clock", "arm")),
            "throttled": parse_throttled(_vcgencmd("get_throttled"))}


# ---- x86: RAPL energy counters --------------------------------------------------------------------
def rapl_energy_uj(root: Path = SYS_RAPL) -> dict[str, tuple[int, int]]:
    """Readable RAPL package counters: {zone: (energy_uj, max_energy_range_uj)} (root-only on many kernels)."""
    zones = {}
    for zone in sorted(root.glob("intel-rapl:*")):
        if zone.name.count(":") != 1:   # packages only; sub-zones (core, dram) are inside them
            continue
        energy = read_int(zone / "energy_uj")
        if energy is not None:
            zones[read_text(zone / "name") or zone.name] = (energy, read_int(zone / "max_energy_range_uj") or 0)
    return zones


def rapl_delta_j(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float | None:
    """Joules between two rapl_energy_uj() readings, across every package, with counter wrap-around."""
    if not before or not after:
        return None
    total = 0
    for zone, (e0, wrap) in before.items():
        if zone not in after:
            continue
        e1 = after[zone][0]
        total += e1 - e0 if e1 >= e0 else e1 + wrap - e0
    return total / 1e6


class PowerMeter:
    """Energy over a measured loop, from the best source here: RAPL package counters (x86), the input
    rail of `tegrastats` (Jetson); none elsewhere. stop() returns {"source", "energy_j", "avg_power_w"}
    or {} when the device exposes no energy reading."""

    def __init__(self, tegrastats_interval_ms: int = 100) -> None:
        self.interval_ms = tegrastats_interval_ms
        self._rapl0: dict = {}
        self._proc: subprocess.Popen | None = None
        self._samples: list[int] = []
        self._rails: list[str] = []
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._rapl0 = rapl_energy_uj()
        if not self._rapl0 and shutil.which("tegrastats"):
            try:
                self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)],
                                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                threading.Thread(target=self._read, daemon=True).start()
            except OSError:
                self._proc = None

    def _read(self) -> None:
        for line in self._proc.stdout:
            parsed = parse_tegrastats(line)
            if parsed["input_mw"] is not None:
                self._samples.append(parsed["input_mw"])
                self._rails = parsed["input_rails"]

    def stop(self) -> dict:
        seconds = time.perf_counter() - self._t0
        if self._rapl0:
            joules = rapl_delta_j(self._rapl0, rapl_energy_uj())
            if joules is not None and seconds > 0:
                return {"source": "rapl", "energy_j": joules, "avg_power_w": joules / seconds}
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            if self._samples:
                watts = sum(self._samples) / len(self._samples) / 1000.0
                return {"source": f"tegrastats {'+'.join(self._rails)}", "energy_j": watts * seconds,
                        "avg_power_w": watts}
        return {}


def read_telemetry() -> dict:
    """A snapshot of temperatures, clocks, throttle state and load (and vcgencmd's on a Raspberry Pi)."""
    snapshot = {"thermal": thermal_zones(), "cpufreq": cpu_frequencies(), "throttled_raw": rpi_throttled(),
                "timestamp": time.time(), "load_1m": os.getloadavg()[0], "gpu_devfreq": gpu_devfreq()}
    rpi = rpi_readings()
    if rpi:
        snapshot["rpi"] = rpi
    mode = power_mode()
    if mode:
        snapshot["power_mode"] = mode
    return snapshot


def is_throttled(snapshot: dict) -> bool:
    """True if the snapshot shows throttling: RPi throttle bits, a zone near its passive trip, or a clock
    capped below what the hardware (and, on a Jetson, the nvpmodel power mode in force) allows. A Jetson in a
    power mode whose caps cannot be read is not judged by its clock caps: they may be the mode's."""
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
    mode = snapshot.get("power_mode") or {}
    if mode and not mode.get("caps_known"):
        return False
    if any(_capped(f.get("max_khz"), f.get("hw_max_khz"), mode_cpu_cap(mode, f["cpu"]))
           for f in snapshot.get("cpufreq", [])):
        return True
    return any(_capped(g.get("max_hz"), g.get("hw_max_hz"), mode.get("gpu_max_hz"))
               for g in snapshot.get("gpu_devfreq", []))


def _capped(policy_max: int | None, hw_max: int | None, mode_cap: int | None) -> bool:
    """A clock whose policy maximum is below what the hardware and the power mode allow (5 % slack)."""
    allowed = min((c for c in (hw_max, mode_cap) if c), default=0)
    return bool(allowed and policy_max and policy_max < allowed * 0.95)


def result_flags(before: dict, after: dict, cv: float | None, noisy_cv: float = NOISY_CV) -> list[str]:
    """Flags stored with a result so a doubtful number is never silently taken as good."""
    flags = []
    if is_throttled(before) or is_throttled(after):
        flags.append("throttled")
    if cv is not None and cv > noisy_cv:
        flags.append("noisy")
    return flags

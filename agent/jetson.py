"""Jetson telemetry: `tegrastats` lines of every JetPack's style, the GPU clock from devfreq, and the
nvpmodel power mode whose clock caps are a setting, not throttling.

tegrastats differs by release (samples in tests/agent/data, each with its source):
- temperatures: `CPU@47.187C` (JetPack 4 and 5) or `cpu@52.968C` (JetPack 6), `CV0@-256C` for a sensor
  that is off, `cpu@52.968C/52.968C` on JetPack 7; keys are lower-cased here, off sensors dropped;
- rails: `VDD_IN 7421mW/6012mW` (JetPack 5 and later; a third `/max` on JetPack 7) or `VDD_IN 14025/14416`
  (JetPack 4, where AGX Xavier's rails are plain `GPU`, `CPU`, `SOC`, ...);
- the board's power: `VDD_IN` (Orin NX/Nano, Xavier NX, TX2), `POM_5V_IN` (Nano). AGX Orin has no input
  rail: its module power is VDD_GPU_SOC + VDD_CPU_CV + VIN_SYS_5V0, as NVIDIA's power GUI and the jetson
  energy library sum it (VIN_SYS_5V0 alone is the carrier's 5 V I/O rail: rbonghi/jetson_stats#344);
  AGX Xavier's is GPU + CPU + SOC + CV + VDDRQ + SYS5V."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from agent.sysfs import read_int

SYS_DEVFREQ = Path("/sys/class/devfreq")
NVPMODEL_CONF = Path("/etc/nvpmodel.conf")
GPU_DEVFREQ_NAMES = ("gpu", "ga10b", "gv11b", "gp10b", "gm20b")   # Orin (JP6, JP5), Xavier, TX2, Nano
NO_CAP = 2147483647               # nvpmodel's "no limit" (also -1 in /etc/nvpmodel.conf)

_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_CPU = re.compile(r"CPU \[([^\]]*)\]")
_TEMP = re.compile(r"\b([A-Za-z][\w-]*)@(-?[\d.]+)C\b")
_RAIL_MW = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)mW/(\d+)mW")
_RAIL_OLD = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)/(\d+)\b(?![/%])")
_GPU = re.compile(r"GR3D_FREQ (\d+)%(?:@\[?(\d+))?")
_EMC = re.compile(r"EMC_FREQ (\d+)%(?:@(\d+))?")
# the rails that make up the board's (or module's) power, first match wins
INPUT_RAILS = (("VDD_IN",), ("POM_5V_IN",), ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"),
               ("GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"))
SENSOR_OFF_C = -200.0             # tegrastats prints -256C for a sensor that is powered off


def parse_tegrastats(line: str) -> dict:
    """One `tegrastats` line -> RAM, per-CPU load and clock, GPU and EMC load, temperatures (lower-case
    keys), power rails (instant and average mW), and `input_mw`: the board's power, with `input_rails`
    naming the rails summed."""
    out: dict = {"temps_c": {}, "rails_mw": {}, "cpus": []}
    if m := _RAM.search(line):
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _CPU.search(line):
        for part in m.group(1).split(","):
            cm = re.match(r"(\d+)%@(\d+)", part.strip())
            out["cpus"].append({"load_pct": int(cm.group(1)), "mhz": int(cm.group(2))} if cm else None)
    if m := _GPU.search(line):
        out["gpu_load_pct"] = int(m.group(1))
        if m.group(2):
            out["gpu_mhz"] = int(m.group(2))
    if m := _EMC.search(line):
        out["emc_load_pct"] = int(m.group(1))
    for name, temp in _TEMP.findall(line):
        if float(temp) > SENSOR_OFF_C:
            out["temps_c"][name.lower()] = float(temp)
    for pattern in (_RAIL_MW, _RAIL_OLD):
        for name, now, avg in pattern.findall(line):
            out["rails_mw"].setdefault(name, {"now": int(now), "avg": int(avg)})
    rails = next((r for r in INPUT_RAILS if all(n in out["rails_mw"] for n in r)), ())
    out["input_rails"] = list(rails)
    out["input_mw"] = sum(out["rails_mw"][n]["now"] for n in rails) if rails else None
    return out


def gpu_devfreq(root: Path = SYS_DEVFREQ) -> list[dict]:
    """The integrated GPU's clock from devfreq: current, policy max (nvpmodel and thermal caps lower it)
    and the hardware's highest available frequency, in Hz."""
    found = []
    for dev in sorted(root.glob("*")):
        if not any(tag in dev.name.lower() for tag in GPU_DEVFREQ_NAMES):
            continue
        cur = read_int(dev / "cur_freq")
        if cur is None:
            continue
        try:
            table = [int(f) for f in (dev / "available_frequencies").read_text().split()]
        except (OSError, ValueError):
            table = []
        found.append({"name": dev.name, "cur_hz": cur, "max_hz": read_int(dev / "max_freq") or 0,
                      "hw_max_hz": max(table, default=0)})
    return found


def parse_nvpmodel_query(text: str) -> dict:
    """`nvpmodel -q` ('NV Power Mode: MODE_15W\\n2') -> {'name', 'id'}; {} when it says nothing."""
    m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", text or "")
    return {"name": m.group(1), "id": int(m.group(2))} if m else {}


def parse_nvpmodel_modes(text: str) -> dict[int, dict]:
    """/etc/nvpmodel.conf, or `nvpmodel -q --verbose` (the same lines after 'NVPM VERB: '), -> per mode id:
    {'name', 'cpu_max_khz': {first cpu of a cluster: cap}, 'gpu_max_hz': cap or None}; no-limit caps
    (-1, 2147483647) are left out."""
    params: dict[str, int] = {}          # CPU clock parameter -> the cpu whose scaling_max_freq it sets
    modes: dict[int, dict] = {}
    param = mode = None
    for raw in (text or "").splitlines():
        line = raw.split("NVPM VERB:", 1)[-1].strip().strip("<>").strip()
        if m := re.match(r"PARAM TYPE=\w+ NAME=(\S+)", line):
            param, mode = m.group(1), None
        elif m := re.match(r"POWER_MODEL:?\s+ID=(\d+) NAME=(\S+)", line):
            mode, param = int(m.group(1)), None
            modes[mode] = {"name": m.group(2), "cpu_max_khz": {}, "gpu_max_hz": None}
        elif param and (m := re.match(r"MAX_FREQ .*/cpu(\d+)/cpufreq/scaling_max_freq", line)):
            params[param] = int(m.group(1))
        elif mode is not None and (m := re.match(r"(\S+) MAX_FREQ (-?\d+)$", line)):
            value = int(m.group(2))
            if value <= 0 or value >= NO_CAP:
                continue
            if m.group(1) in params:
                modes[mode]["cpu_max_khz"][params[m.group(1)]] = value
            elif m.group(1) == "GPU":
                modes[mode]["gpu_max_hz"] = value
    return modes


def power_mode(conf: Path = NVPMODEL_CONF) -> dict:
    """The nvpmodel mode in force with its clock caps, on a Jetson; {} elsewhere."""
    if not shutil.which("nvpmodel"):
        return {}
    try:
        query = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    mode = parse_nvpmodel_query(query)
    try:
        caps = parse_nvpmodel_modes(conf.read_text()).get(mode.get("id", -1), {})
    except OSError:
        caps = {}
    return {**mode, "cpu_max_khz": caps.get("cpu_max_khz", {}), "gpu_max_hz": caps.get("gpu_max_hz"),
            "caps_known": bool(caps)} if mode else {}


def mode_cpu_cap(mode: dict, cpu: int) -> int | None:
    """The power mode's cap for `cpu`: its cluster's (the nearest listed cpu at or below it)."""
    listed = sorted(c for c in mode.get("cpu_max_khz", {}) if int(c) <= cpu)
    return mode["cpu_max_khz"][listed[-1]] if listed else None

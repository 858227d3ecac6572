"""What this device is: the answer to GetInfo, and the fingerprint stored with every result."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import socket
from pathlib import Path

import psutil

import agent

# (implementer, part) -> core name, from the Arm/NVIDIA part numbers Linux prints in /proc/cpuinfo;
# arm64 kernels print no "model name", and the "Hardware" line of a Pi says BCM2835 whatever the board
ARM_CORES = {
    ("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd04"): "Cortex-A35", ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57", ("0x41", "0xd08"): "Cortex-A72", ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75", ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd0d"): "Cortex-A77", ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd42"): "Cortex-A78AE", ("0x41", "0xd44"): "Cortex-X1", ("0x41", "0xd46"): "Cortex-A510",
    ("0x41", "0xd47"): "Cortex-A710", ("0x41", "0xd48"): "Cortex-X2", ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4b"): "Cortex-A78C", ("0x41", "0xd80"): "Cortex-A520", ("0x41", "0xd81"): "Cortex-A720",
    ("0x41", "0xc07"): "Cortex-A7", ("0x41", "0xc09"): "Cortex-A9", ("0x41", "0xc0f"): "Cortex-A15",
    ("0x41", "0xb76"): "ARM1176",
    ("0x4e", "0x003"): "NVIDIA Denver 2", ("0x4e", "0x004"): "NVIDIA Carmel",
}


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name: x86's "model name"; on arm the cores named by their implementer and part numbers, each
    kind once (big.LITTLE: "Cortex-A53 + Cortex-A73"), with the board after them ("Model" without its
    revision, so boards that differ only in revision share a fingerprint, else a "Hardware" line other than
    the Pi's BCM2835); else "Model", "cpu model" or "Hardware"; platform's guess when /proc/cpuinfo says
    nothing (or cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    cores: list[str] = []
    implementer = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not value:
            continue
        fields.setdefault(key, value)
        if key == "CPU implementer":
            implementer = value.lower()
        elif key == "CPU part":
            core = ARM_CORES.get((implementer, value.lower()))
            if core and core not in cores:
                cores.append(core)
    if fields.get("model name") and not fields["model name"].startswith("ARMv"):
        return fields["model name"]
    board = re.sub(r"\s+Rev\s+\S+$", "", fields.get("Model", ""))
    if not board and not fields.get("Hardware", "BCM").startswith("BCM"):
        board = fields["Hardware"]
    if cores:
        return " + ".join(cores) + (f" ({board})" if board else "")
    for key in ("model name", "Model", "cpu model", "Hardware"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def board_model() -> str:
    """The board model from the device tree (Raspberry Pi, Jetson), or ''."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            return Path(path).read_text().strip("\x00\n ")
        except OSError:
            continue
    return ""


def device_class() -> str:
    """rpi4 / rpi5 / jetson / x86 / arm64 ... guessed from the board and architecture."""
    board = board_model().lower()
    if "raspberry pi 5" in board:
        return "rpi5"
    if "raspberry pi 4" in board:
        return "rpi4"
    if "raspberry pi" in board:
        return "rpi"
    if "jetson" in board or Path("/etc/nv_tegra_release").exists():
        return "jetson-orin" if "orin" in board else "jetson"
    arch = platform.machine().lower()
    if arch in ("x86_64", "amd64", "i686"):
        return "x86"
    if arch in ("aarch64", "arm64"):
        return "arm64"
    return arch


def os_name() -> str:
    """A readable OS name such as 'Debian GNU/Linux 12 (bookworm), kernel 6.1'."""
    pretty = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{pretty or platform.system()}, kernel {platform.release()}"


def device_info(name: str | None, backends: list[dict], cls: str | None = None) -> dict:
    """Everything GetInfo reports, with a fingerprint over the parts that affect measurements."""
    info = {
        "name": name or socket.gethostname(),
        "device_class": cls or device_class(),
        "arch": platform.machine(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "physical_cores": psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "os": os_name(),
        "backends": backends,
        "accelerators": accelerators(),
        "agent_version": agent.__version__,
        "host_id": host_id(),
        "cpus": sorted(os.sched_getaffinity(0)),
    }
    ident = "|".join(str(info[k]) for k in ("device_class", "arch", "cpu_model", "cores", "memory_bytes", "os"))
    ident += "|" + ",".join(f"{b['name']}={b['version']}" for b in backends)
    info["fingerprint"] = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return info


def host_id() -> str:
    """This machine, as the running kernel knows it: a hash of its boot id (the same for every container on
    the machine, which share its CPUs), else of the hostname."""
    try:
        ident = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        ident = socket.gethostname()
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def accelerators() -> list[str]:
    """Accelerators visible to this device (NVIDIA GPUs via /proc/driver/nvidia, Jetson GPU)."""
    found = []
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        for gpu in sorted(gpus.iterdir()):
            info = gpu / "information"
            try:
                model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                              if line.startswith("Model")), "NVIDIA GPU")
            except OSError:
                model = "NVIDIA GPU"
            found.append(model)
    if Path("/etc/nv_tegra_release").exists() and not found:
        found.append("NVIDIA Tegra GPU")
    return found

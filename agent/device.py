"""What this device is: the answer to GetInfo, and the fingerprint stored with every result."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from pathlib import Path

import psutil

import agent


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform as a fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
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
    }
    ident = "|".join(str(info[k]) for k in ("device_class", "arch", "cpu_model", "cores", "memory_bytes", "os"))
    ident += "|" + ",".join(f"{b['name']}={b['version']}" for b in backends)
    info["fingerprint"] = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return info


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

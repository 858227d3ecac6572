"""Agents of one class that report different fingerprints (another ONNX Runtime or LiteRT, another OS,
other hardware: agent/device.py hashes them) do not measure the same thing. `farmctl devices` warns, and
the scheduler keeps such agents from sharing a class's jobs unless told to (--allow-mixed)."""

from __future__ import annotations

IDENTITY = ("device_class", "arch", "cpu_model", "cores", "memory_bytes", "os")   # what the fingerprint hashes,
                                                                                  # besides the backends


def identity(info: dict) -> dict[str, str]:
    """The GetInfo fields behind the fingerprint, backends as `name: version`."""
    out = {k: str(info.get(k, "")) for k in IDENTITY}
    out.update({str(b.get("name")): str(b.get("version", "")) for b in info.get("backends", [])})
    return out


def differences(infos: dict[str, dict]) -> str:
    """What differs between agents, e.g. "onnxruntime: pi-a 1.32.0, pi-b 1.31.0; tflite: pi-a 2.3.0, pi-b
    absent"."""
    ids = {name: identity(info) for name, info in infos.items()}
    keys = [k for k in IDENTITY if any(k in i for i in ids.values())]
    keys += sorted({k for i in ids.values() for k in i} - set(IDENTITY))
    parts = []
    for key in keys:
        values = {name: i.get(key, "absent") for name, i in ids.items()}
        if len(set(values.values())) > 1:
            parts.append(f"{key}: " + ", ".join(f"{name} {v}" for name, v in values.items()))
    return "; ".join(parts) or "the fingerprints differ"


def groups(fingerprints: dict[str, str]) -> list[list[str]]:
    """Agent names grouped by fingerprint, the largest group first (on a tie, the one listed first)."""
    by: dict[str, list[str]] = {}
    for name, fp in fingerprints.items():
        by.setdefault(fp, []).append(name)
    return sorted(by.values(), key=len, reverse=True)


def mixed_warning(target: str, infos: dict[str, dict], allow_mixed: bool = False) -> str:
    """The sentence farmctl prints for a class whose agents' fingerprints differ."""
    then = ("sharing its jobs anyway (--allow-mixed): each result is stored with its own agent's fingerprint"
            if allow_mixed else
            "their timings are not comparable, so the scheduler does not share the class's jobs between them "
            "unless given --allow-mixed; deploy them alike (`farmctl deploy NAME` installs the same pinned runtimes)")
    return f"agents of class '{target}' report different fingerprints ({differences(infos)}); {then}"

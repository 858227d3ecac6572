"""Put TensorRT's real Python bindings for the versions the agent supports into
<venv>/share/edgefarm-trt/<version>/: the tensorrt-bindings wheels from PyPI (about 1 MB each, CPython 3.11,
x86-64), unpacked, not installed. tests/agent/test_tensorrt_api.py drives the TensorRT backend's engine code
against each of them (tests/agent/trt_surface.py) with stand-ins for TensorRT's libraries, which PyPI does
not carry. JetPack's own aarch64 bindings are not on PyPI; 8.6 stands for JetPack 5.1's 8.5 (the same
name-based I/O API, NvInfer.h). Run by `make setup`; a machine without the package index gets a warning and
the test is skipped with that reason."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# version -> pip requirement; 8.6 (JetPack 6.0), 10.3 (JetPack 6.1/6.2), 11.4 (the newest: strongly typed only)
BINDINGS = {"8.6.1": "tensorrt-bindings==8.6.1", "10.3.0": "tensorrt-cu12-bindings==10.3.0",
            "11.4.0.106": "tensorrt-cu12-bindings==11.4.0.106"}
OPTIONS = ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
           "--platform", "manylinux_2_17_x86_64"]


def bindings_dir() -> Path:
    return Path(sys.prefix) / "share" / "edgefarm-trt"


def main() -> int:
    out = bindings_dir()
    for version, requirement in BINDINGS.items():
        target = out / version
        if (target / "tensorrt_bindings" / "__init__.py").exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *OPTIONS,
                                   requirement, "-d", tmp], check=False, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                print(f"warning: could not download {requirement} ({proc.stderr.strip()[-200:]}); "
                      "tests/agent/test_tensorrt_api.py will skip TensorRT " + version)
                continue
            with zipfile.ZipFile(wheels[0]) as z:
                z.extractall(target, [m for m in z.namelist() if m.startswith("tensorrt_bindings/")])
        print(f"unpacked {requirement} into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

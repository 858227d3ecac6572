"""The edgefarm wheel that deploy ships to a device. From a source checkout (pyproject.toml beside the
packages): `pip wheel` of the checkout. From an installed edgefarm (pip install edgefarm, a wheel): a wheel
rebuilt from the installed files themselves, the ones its RECORD lists, byte for byte, with their
dist-info (METADATA, entry points), so a device gets exactly the code this farmctl runs."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from controller.errors import DeviceError

DIST = "edgefarm"
PACKAGES = ("agent", "controller", "core", "optimizers", "protos")
NEEDED = ("agent", "core", "protos")              # what a farm-agent imports
NOT_SHIPPED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}   # written by the installer, not the wheel
ZIP_TIME = (1980, 1, 1, 0, 0, 0)                  # fixed timestamps: the same files make the same wheel


@dataclass
class Wheel:
    """A built wheel and where its files came from."""

    path: Path
    source: str                                   # "checkout DIR" or "installed DIR"


def package_root() -> Path:
    """The folder holding the edgefarm packages this process runs: a checkout, or site-packages."""
    return Path(__file__).resolve().parents[2]


def is_checkout(root: Path) -> bool:
    """Whether root is an edgefarm source checkout (its pyproject.toml beside the packages)."""
    project = root / "pyproject.toml"
    return (project.is_file() and (root / "agent" / "__init__.py").is_file()
            and re.search(r'(?m)^name\s*=\s*"edgefarm"', project.read_text(errors="replace")) is not None)


def build_wheel(out_dir: Path, root: Path | None = None) -> Wheel:
    """The wheel of the edgefarm this process runs (a checkout's, or the installed one's), in out_dir."""
    root = Path(root or package_root())
    if is_checkout(root):
        return pip_wheel(root, out_dir)
    return wheel_from_installed(root, out_dir)


def pip_wheel(root: Path, out_dir: Path) -> Wheel:
    """`pip wheel --no-deps` of a source checkout."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out_dir),
                           str(root)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DeviceError(f"could not build the agent wheel from {root}: {proc.stderr.strip()[-400:]}")
    return Wheel(next(Path(out_dir).glob(f"{DIST}-*.whl")), f"checkout {root}")


def installed_distribution(root: Path) -> importlib.metadata.Distribution:
    """edgefarm's installed distribution in root (its .dist-info), or a DeviceError with the fix."""
    for dist in importlib.metadata.distributions(path=[str(root)]):
        if re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower() == DIST:
            return dist
    raise DeviceError(f"edgefarm's packages in {root} have no installed metadata ({DIST}-*.dist-info), so deploy "
                      "cannot tell which files to ship; install edgefarm with pip (`pip install edgefarm`), or "
                      "run farmctl from a source checkout")


def _where(dist: importlib.metadata.Distribution) -> str:
    return str(getattr(dist, "_path", dist.metadata["Name"]))


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def shipped_files(dist: importlib.metadata.Distribution) -> list[str]:
    """The installed files that belong in the wheel: the packages and the dist-info, no bytecode, nothing
    the installer wrote (console-script wrappers, RECORD, INSTALLER)."""
    if not dist.files:
        raise DeviceError(f"the installed edgefarm ({_where(dist)}) has no RECORD, the list of its files, so "
                          "deploy cannot rebuild its wheel; reinstall it (`pip install --force-reinstall edgefarm`)")
    keep = []
    for f in dist.files:
        parts = f.parts
        if parts[0] == ".." or "__pycache__" in parts or f.suffix == ".pyc":
            continue
        if parts[0].endswith(".dist-info") and (len(parts) == 2 and parts[1] in NOT_SHIPPED):
            continue
        if parts[0] in PACKAGES or parts[0].endswith(".dist-info"):
            keep.append(f.as_posix())
    missing = [p for p in NEEDED if not any(k.startswith(p + "/") for k in keep)]
    if missing:
        raise DeviceError(f"the installed edgefarm ({_where(dist)}) lacks {', '.join(missing)}; reinstall "
                          "it (`pip install --force-reinstall edgefarm`)")
    return sorted(keep)


def wheel_from_installed(root: Path, out_dir: Path) -> Wheel:
    """A wheel made of the installed edgefarm's own files (the RECORD's), with a fresh RECORD."""
    dist = installed_distribution(root)
    files = shipped_files(dist)
    info_dir = next(f.split("/")[0] for f in files if f.split("/")[0].endswith(".dist-info"))
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    name = re.sub(r"[^\w.]+", "_", dist.metadata["Name"])
    path = Path(out_dir) / f"{name}-{dist.version}-{tags[0] if tags else 'py3-none-any'}.whl"
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname in files:
            try:
                data = (root / arcname).read_bytes()
            except OSError as exc:
                raise DeviceError(f"the installed edgefarm lost {root / arcname} ({exc.strerror}); reinstall it "
                                  "(`pip install --force-reinstall edgefarm`)") from None
            _write(zf, arcname, data)
            record.append(f"{arcname},{_record_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        _write(zf, f"{info_dir}/RECORD", ("\n".join(record) + "\n").encode())
    return Wheel(path, f"installed {root}")


def _write(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, ZIP_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)

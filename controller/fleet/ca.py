"""`farmctl ca`: a farm certificate authority and the certificates it issues, for mutual TLS between
farmctl and every farm-agent (each side proves itself with a certificate the farm CA signed)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from controller.errors import FarmError
from core.paths import cache_root

log = logging.getLogger(__name__)

CA_CERT, CA_KEY = "ca.pem", "ca.key"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
EXPIRY_WARNING_DAYS = 30


def data_ca_dir() -> Path:
    """The CA's folder in the user data folder (platformdirs: ~/.local/share/edgefarm/ca on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("edgefarm")) / "ca"


def legacy_ca_dir() -> Path:
    """Where edgefarm 0.1 kept the CA: beside its cache (~/.cache/edgefarm/ca), which cleaners may empty."""
    return cache_root() / "ca"


def default_ca_dir() -> Path:
    """$EDGEFARM_CA_DIR, else `ca` in the user data folder. A CA still in the old cache folder (and none in the
    new one) is moved there, with a link left behind so inventory paths that name the old folder still work."""
    env = os.environ.get("EDGEFARM_CA_DIR")
    if env:
        return Path(env)
    new, old = data_ca_dir(), legacy_ca_dir()
    if (old / CA_CERT).is_file() and not old.is_symlink() and not new.exists():
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(old), str(new))
        try:
            old.symlink_to(new, target_is_directory=True)
        except OSError:
            pass
        log.warning("moved the farm CA from %s to %s: a cache folder may be cleaned, the CA key must not be; "
                    "inventory paths naming the old folder work through a link left there, but point them at the "
                    "new one", old, new)
    return new


@dataclass
class Issued:
    """The files of one issued certificate."""

    name: str
    cert: Path
    key: Path
    ca: Path
    hosts: list[str]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def init_ca(ca_dir: Path | None = None, name: str = "edgefarm farm CA", days: int = 3650) -> Path:
    """Create the farm CA (an EC P-256 key and a self-signed certificate); refuses to overwrite one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_dir = Path(ca_dir or default_ca_dir())
    if (ca_dir / CA_CERT).exists() or (ca_dir / CA_KEY).exists():
        raise FarmError(f"a farm CA already exists in {ca_dir}; issue certificates with `farmctl ca issue`, "
                        "or pass --dir for a new one (replacing it would invalidate every certificate)")
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(ca_dir / CA_KEY, _key_pem(key))
    (ca_dir / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_dir / CA_CERT


ROLES = ("agent", "client")


def issue(name: str, hosts: list[str] | None = None, ca_dir: Path | None = None, days: int = 825,
          out_dir: Path | None = None, role: str | None = None) -> Issued:
    """A certificate for an agent or a controller, signed by the farm CA. `hosts` (names or IP addresses)
    go into subjectAltName: a client checks the agent's address against them. `role` ("agent": TLS server
    only; "client": TLS client only; default: agent when hosts are given) is the certificate's extended key
    usage, which both ends check: an agent's certificate cannot act as a client of another agent."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    role = role or ("agent" if hosts else "client")
    if role not in ROLES:
        raise FarmError(f"certificate role '{role}' is not one of {', '.join(ROLES)}")
    if not NAME_RE.match(name):
        raise FarmError(f"certificate name '{name}' must be letters, digits, '.', '_' or '-' (it names the files)")
    ca_dir = Path(ca_dir or default_ca_dir())
    if not (ca_dir / CA_KEY).exists():
        raise FarmError(f"no farm CA in {ca_dir}; create one with `farmctl ca init` (or pass --dir)")
    out_dir = Path(out_dir or ca_dir)
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    if cert_path.exists() or key_path.exists():
        raise FarmError(f"{cert_path} already exists; pick another name or delete the old pair first")
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())
    hosts = list(dict.fromkeys(hosts or [name]))
    sans = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if role == "agent"
                                                  else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(name, cert_path, key_path, ca_dir / CA_CERT, hosts)


@dataclass
class CertificateStatus:
    """One certificate file: whose it is, what it is for, when it expires."""

    path: Path
    name: str                 # the subject's common name
    role: str                 # "CA", "agent", "client"
    hosts: list[str]
    not_after: dt.datetime
    days_left: float

    def warning(self, days: int = EXPIRY_WARNING_DAYS) -> str | None:
        """A sentence with the fix when the certificate expires within `days` (or has expired), else None."""
        if self.days_left >= days:
            return None
        when = self.not_after.strftime("%Y-%m-%d")
        if self.role == "CA":
            fix = ("make a new CA (`farmctl ca init --dir NEW`), issue every certificate again from it and "
                   "redeploy the agents")
        else:
            fix = (f"delete {self.path.name} and its key, issue it again (`farmctl ca issue {self.name}"
                   f"{' --host ' + ' --host '.join(self.hosts) if self.role == 'agent' else ''}`)"
                   + (f" and redeploy (`farmctl deploy {self.name}`)" if self.role == "agent" else ""))
        state = (f"EXPIRED on {when}: TLS with it fails" if self.days_left < 0
                 else f"expires in {int(self.days_left)} days ({when})")
        return f"{self.role} certificate '{self.name}' ({self.path}) {state}; {fix}"


def certificate_status(path: Path, now: dt.datetime | None = None) -> CertificateStatus | None:
    """What a PEM certificate file says, or None when it is not one (a key, a missing file)."""
    try:
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:           # an install without the farm extra: nothing to check with
        return None
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ext = {e.oid: e.value for e in cert.extensions}
    is_ca = getattr(ext.get(x509.OID_BASIC_CONSTRAINTS), "ca", False)
    usage = list(ext.get(x509.OID_EXTENDED_KEY_USAGE, []))
    role = "CA" if is_ca else "agent" if ExtendedKeyUsageOID.SERVER_AUTH in usage else "client"
    sans = ext.get(x509.OID_SUBJECT_ALTERNATIVE_NAME)
    hosts = [str(v) for v in sans.get_values_for_type(x509.IPAddress)] + \
        sans.get_values_for_type(x509.DNSName) if sans is not None else []
    not_after = cert.not_valid_after_utc
    left = (not_after - (now or dt.datetime.now(dt.timezone.utc))).total_seconds() / 86400
    return CertificateStatus(Path(path), str(names[0].value) if names else Path(path).stem, role, hosts, not_after,
                             left)


def ca_certificates(ca_dir: Path) -> list[CertificateStatus]:
    """Every certificate in a CA folder (the CA's first), with its expiry."""
    found = [certificate_status(p) for p in sorted(Path(ca_dir).glob("*.pem"),
                                                   key=lambda p: (p.name != CA_CERT, p.name))]
    return [c for c in found if c is not None]


def expiry_warnings(paths: Iterable[Path], days: int = EXPIRY_WARNING_DAYS) -> list[str]:
    """A warning for each certificate among paths (files, or CA folders: every certificate in them) that
    expires within `days`; files that are not certificates are skipped."""
    statuses: list[CertificateStatus] = []
    for p in dict.fromkeys(Path(p).resolve() for p in paths):
        statuses += ca_certificates(p) if p.is_dir() else [c for c in [certificate_status(p)] if c]
    return list(dict.fromkeys(w for w in (s.warning(days) for s in statuses) if w))


_warned: set[str] = set()
_warned_lock = threading.Lock()          # farmctl devices connects to its devices from several threads


def warn_expiring(paths: Iterable[Path], days: int = EXPIRY_WARNING_DAYS) -> list[str]:
    """expiry_warnings, each logged as a warning once per process (farmctl prints them on stderr)."""
    found = expiry_warnings(paths, days)
    with _warned_lock:
        new = [w for w in found if w not in _warned]
        _warned.update(new)
    for w in new:
        log.warning("%s", w)
    return new

"""`farmctl ca`: a farm certificate authority and the certificates it issues, for mutual TLS between
farmctl and every farm-agent (each side proves itself with a certificate the farm CA signed)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from controller.errors import FarmError
from core.paths import cache_root

CA_CERT, CA_KEY = "ca.pem", "ca.key"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def default_ca_dir() -> Path:
    """$EDGEFARM_CA_DIR, else a `ca` folder beside edgefarm's cache (~/.cache/edgefarm/ca)."""
    env = os.environ.get("EDGEFARM_CA_DIR")
    return Path(env) if env else cache_root() / "ca"


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

"""A self-signed certificate for the machine's LAN address, so a phone's browser opens the camera page over HTTPS.

Why: browsers grant getUserMedia only in a secure context; http://localhost is one, http://192.168.x.y is not.
The certificate (EC P-256, 30 days, SAN = the LAN IP, 127.0.0.1 and localhost) is cached under
~/.cache/edge-sdk/serve/ per address, so the phone's one-time "accept this certificate" survives restarts.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
from pathlib import Path

from edge_sdk.bundle import atomic_write
from edge_sdk.errors import EdgeError

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-sdk" / "serve"
VALID_DAYS = 30


def lan_address() -> str:
    """The address other devices on the network reach this machine at (the default route's source address).

    A UDP connect() sends nothing; it only makes the kernel pick the outgoing interface.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _valid(cert_file: Path) -> bool:
    from cryptography import x509
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError):
        return False
    return cert.not_valid_after_utc - dt.timedelta(days=1) > dt.datetime.now(dt.timezone.utc)


def certificate(host_ip: str, cache: Path = CACHE) -> tuple[Path, Path, str]:
    """(cert.pem, key.pem, SHA-256 fingerprint) for `host_ip`, made once and reused while valid."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    try:
        ip = ipaddress.ip_address(host_ip)
    except ValueError:
        raise EdgeError(f"cannot make a certificate for {host_ip!r}: not an IP address") from None
    cert_file, key_file = cache / f"{ip}.crt.pem", cache / f"{ip}.key.pem"
    if not (key_file.is_file() and _valid(cert_file)):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edge-sdk serve {ip}")])
        sans = {ipaddress.ip_address("127.0.0.1"), ip}
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            *(x509.IPAddress(a) for a in sorted(sans, key=str))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        os.chmod(key_file, 0o600)
        atomic_write(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(serialization.Encoding.DER)
    fp = hashlib.sha256(der).hexdigest().upper()
    return cert_file, key_file, ":".join(fp[i:i + 2] for i in range(0, len(fp), 2))

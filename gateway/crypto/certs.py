"""RSA keys and self-signed X.509 certificates for CMS signing, partner encryption and TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import KeyStoreError

Usage = Literal["signing", "encryption", "tls"]

# Every TLS cert also answers on loopback so the embedded default works before DNS is set up.
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1", "::1")


def new_rsa_key(bits: int = 3072) -> rsa.RSAPrivateKey:
    """Generate a fresh RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _key_usage(usage: Usage) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=usage in ("signing", "tls"),
        content_commitment=usage == "signing",
        key_encipherment=usage in ("encryption", "tls"),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _extended_key_usage(usage: Usage) -> x509.ExtendedKeyUsage:
    if usage == "tls":
        return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    # openssl cms checks the S/MIME purpose, which an EKU without emailProtection would fail.
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])


def _san(common_name: str, dns_names: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for name in (common_name, *dns_names, *_LOOPBACK_NAMES):
        entry = x509.DNSName(name)
        if entry not in names:
            names.append(entry)
    names.extend(x509.IPAddress(ipaddress.ip_address(ip)) for ip in _LOOPBACK_IPS)
    return x509.SubjectAlternativeName(names)


def self_signed_cert(
    key: rsa.RSAPrivateKey,
    common_name: str,
    *,
    days: int = 825,
    usage: Usage,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """Build a self-signed certificate whose extensions fit the given usage."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    # Backdate a little so a peer with a slightly slow clock does not reject a fresh cert.
    now = dt.datetime.now(dt.timezone.utc)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(usage), critical=True)
        .add_extension(_extended_key_usage(usage), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
    )
    if usage == "tls":
        builder = builder.add_extension(_san(common_name, dns_names), critical=False)
    elif dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False
        )
    return builder.sign(key, hashes.SHA256())


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 from the start, so the key is never briefly world-readable.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private_key(path: str | os.PathLike[str], key: rsa.RSAPrivateKey) -> None:
    """Write the key as unencrypted PKCS#8 PEM, mode 0600, atomically."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(Path(path), pem, 0o600)


def write_cert(path: str | os.PathLike[str], cert: x509.Certificate) -> None:
    """Write the certificate as PEM, atomically."""
    _write_atomic(Path(path), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"{path}: {what} file does not exist") from None
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read {what} file: {exc.strerror or exc}") from exc


def load_private_key(path: str | os.PathLike[str]) -> rsa.RSAPrivateKey:
    """Load an unencrypted PEM RSA private key."""
    p = Path(path)
    data = _read(p, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyStoreError(f"{p}: private key is password-protected; expected an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyStoreError(f"{p}: not a PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyStoreError(f"{p}: expected an RSA private key, found {type(key).__name__}")
    return key


def load_cert(path: str | os.PathLike[str]) -> x509.Certificate:
    """Load a PEM (or DER) X.509 certificate."""
    p = Path(path)
    data = _read(p, "certificate")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise KeyStoreError(f"{p}: not a PEM or DER X.509 certificate ({exc})") from None

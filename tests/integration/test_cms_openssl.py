"""A partner with nothing but stock OpenSSL can open, verify and validate our batches."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.crypto import certs, cms
from gateway.domain.model import Address, BankAccount, Claim, Debtor, Fee, FeeKind
from gateway.errors import KeyStoreError
from gateway.services.render import BatchMeta, render_batch, validate_batch

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")


class Party(NamedTuple):
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key_path: Path
    cert_path: Path


def make_party(directory: Path, name: str, usage: certs.Usage) -> Party:
    key = certs.new_rsa_key()
    cert = certs.self_signed_cert(key, name, usage=usage)
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    certs.write_private_key(key_path, key)
    certs.write_cert(cert_path, cert)
    return Party(certs.load_private_key(key_path), certs.load_cert(cert_path), key_path, cert_path)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Party]:
    # 3072-bit keys take a moment each; generate once for the module.
    d = tmp_path_factory.mktemp("keys") / "nested"
    return {"gateway": make_party(d, "gateway", "signing"),
            "partner": make_party(d, "partner", "encryption"),
            "stranger": make_party(d, "stranger", "encryption")}


def openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, check=check, timeout=60)


def rendered_batch() -> bytes:
    claims = [Claim(client_id="fitx", creditor_reference=f"R-{i}", principal_amount=Decimal("1E+2"),
                    fees=[Fee(kind=FeeKind.DUNNING, amount=Decimal("2.5"))],
                    debtor=Debtor(first_name="Jürgen", last_name="Weiß",
                                  addresses=[Address(street="Straße", house_number="1", postal_code="10115",
                                                     city="Berlin")],
                                  bank_accounts=[BankAccount(iban="DE89370400440532013000")]))
              for i in range(3)]
    meta = BatchMeta(batch_id="B-7", created_at=dt.datetime(2025, 1, 2, tzinfo=dt.timezone.utc),
                     sender="gw", client_id="fitx", partner_id="partner", claim_count=3,
                     total_amount=Decimal("307.50"))
    out = io.BytesIO()
    render_batch(out, meta, enumerate(claims))
    # CRLF and a trailing blank line prove no line-ending canonicalisation touches the content.
    return out.getvalue() + b"\r\n\n"


def test_partner_opens_and_verifies_with_openssl(keys: dict[str, Party], tmp_path: Path) -> None:
    gw, partner = keys["gateway"], keys["partner"]
    content = rendered_batch()
    envelope = tmp_path / "batch.p7m"
    envelope.write_bytes(cms.sign_and_encrypt(content, signer_cert=gw.cert, signer_key=gw.key,
                                              recipients=[partner.cert]))
    signed, plain = tmp_path / "signed.der", tmp_path / "plain.xml"
    openssl("cms", "-decrypt", "-inform", "DER", "-in", envelope, "-recip", partner.cert_path,
            "-inkey", partner.key_path, "-out", signed)
    result = openssl("cms", "-verify", "-inform", "DER", "-in", signed, "-CAfile", gw.cert_path,
                     "-out", plain)
    assert b"Verification successful" in result.stderr
    assert plain.read_bytes() == content
    assert validate_batch(plain) == []
    # The simulator's own decrypt yields the same SignedData the partner saw.
    assert cms.decrypt(envelope.read_bytes(), partner.cert, partner.key) == signed.read_bytes()


def test_envelope_uses_aes256_and_signature_sha256(keys: dict[str, Party], tmp_path: Path) -> None:
    gw, partner = keys["gateway"], keys["partner"]
    envelope = tmp_path / "batch.p7m"
    envelope.write_bytes(cms.sign_and_encrypt(b"<x/>", signer_cert=gw.cert, signer_key=gw.key,
                                              recipients=[partner.cert]))
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", envelope).stdout.decode()
    assert "envelopedData" in printed and "aes-256-cbc" in printed
    signed = cms.decrypt(envelope.read_bytes(), partner.cert, partner.key)
    (tmp_path / "signed.der").write_bytes(signed)
    inner = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "signed.der").stdout
    assert b"signedData" in inner and b"sha256" in inner and b"CN=gateway" in inner


def test_every_recipient_can_open(keys: dict[str, Party], tmp_path: Path) -> None:
    gw = keys["gateway"]
    envelope = cms.sign_and_encrypt(b"payload", signer_cert=gw.cert, signer_key=gw.key,
                                    recipients=[keys["partner"].cert, keys["stranger"].cert])
    for name in ("partner", "stranger"):
        p = keys[name]
        assert cms.decrypt(envelope, p.cert, p.key)


def test_wrong_key_cannot_decrypt(keys: dict[str, Party], tmp_path: Path) -> None:
    gw, partner, stranger = keys["gateway"], keys["partner"], keys["stranger"]
    envelope = tmp_path / "batch.p7m"
    envelope.write_bytes(cms.sign_and_encrypt(b"secret", signer_cert=gw.cert, signer_key=gw.key,
                                              recipients=[partner.cert]))
    out = tmp_path / "out.der"
    result = openssl("cms", "-decrypt", "-inform", "DER", "-in", envelope, "-recip", stranger.cert_path,
                     "-inkey", stranger.key_path, "-out", out, check=False)
    assert result.returncode != 0
    assert not out.exists() or b"secret" not in out.read_bytes()
    with pytest.raises(KeyStoreError):
        cms.decrypt(envelope.read_bytes(), stranger.cert, stranger.key)


def test_signature_from_another_key_does_not_verify(keys: dict[str, Party], tmp_path: Path) -> None:
    gw, partner = keys["gateway"], keys["partner"]
    signed = tmp_path / "signed.der"
    signed.write_bytes(cms.decrypt(cms.sign_and_encrypt(b"x", signer_cert=gw.cert, signer_key=gw.key,
                                                        recipients=[partner.cert]),
                                   partner.cert, partner.key))
    # Trusting only the partner's own cert, the gateway's signature must be rejected.
    result = openssl("cms", "-verify", "-inform", "DER", "-in", signed, "-CAfile", partner.cert_path,
                     "-out", tmp_path / "plain", check=False)
    assert result.returncode != 0


def test_key_files_are_private_and_load_errors_name_the_path(keys: dict[str, Party], tmp_path: Path) -> None:
    assert keys["partner"].key_path.stat().st_mode & 0o777 == 0o600
    missing = tmp_path / "nope.key"
    with pytest.raises(KeyStoreError, match="nope.key: private key file does not exist"):
        certs.load_private_key(missing)
    garbage = tmp_path / "garbage.crt"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyStoreError, match="garbage.crt: not a PEM or DER X.509 certificate"):
        certs.load_cert(garbage)
    with pytest.raises(KeyStoreError, match="partner.crt: not a PEM private key"):
        certs.load_private_key(keys["partner"].cert_path)


def test_tls_cert_answers_on_loopback(tmp_path: Path) -> None:
    key = certs.new_rsa_key(2048)
    path = tmp_path / "tls.crt"
    certs.write_cert(path, certs.self_signed_cert(key, "gw.example", usage="tls", dns_names=["alt.example"]))
    for flag, value in (("-checkhost", "localhost"), ("-checkhost", "alt.example"),
                        ("-checkip", "127.0.0.1"), ("-checkip", "::1")):
        out = openssl("x509", "-noout", "-in", path, flag, value).stdout
        assert b"does match" in out, (flag, value)

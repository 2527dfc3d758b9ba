"""The e-mail partner's server certificate at STARTTLS is verified, its name included, against the system's CA
store or the partner's own CA (option ``ca_file``). smtplib's ``starttls()`` without a context checks nothing:
anyone between the gateway and the agency's mail server could show any certificate and read every case file's
envelope and the agency's address, and the gateway mailed on.

A real SMTP server (aiosmtpd) on loopback with a self-signed certificate, STARTTLS required.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.mail import EmailAdapter
from adapters.simulators.email_sim import EmailAgencySimulator, _free_port
from gateway.errors import ConfigError, DeliveryError
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import deliver_demo_once, EmailHarness, gateway_for, keys_template  # noqa: F401
from tests.integration.test_partner_hostile_mail import batch


def _server_tls(tmp_path: Path, san: x509.GeneralName) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for ``san``, and that certificate's file (the CA to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency mail")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "mx.crt", tmp_path / "mx.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, cert_file


LOOPBACK = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))


class Box:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.got.append(getattr(envelope, "content"))
        return "250 2.0.0 queued"


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[tuple[Box, int, Path]]:
    tls, cert_file = _server_tls(tmp_path, LOOPBACK)
    box, port = Box(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True)
    controller.start()
    yield box, port, cert_file
    controller.stop()


def _adapter(port: int, **options: Any) -> EmailAdapter:
    return EmailAdapter("p", {"host": "127.0.0.1", "port": port, "from": "gw@example.org", "to": "akten@agency.example",
                              "starttls": True, "timeout": 10.0, **options})


def test_a_certificate_no_trusted_ca_signed_is_refused_for_good(mailbox: tuple[Box, int, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    box, port, _ = mailbox
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(DeliveryError) as refused:
        _adapter(port).deliver(batch())
    assert not refused.value.retryable  # the same at every attempt: a dead letter for the operator, no storm
    assert "certificate" in str(refused.value) and "ca_file" in str(refused.value)
    assert box.got == []  # nothing went to a server the gateway could not identify


def test_the_partners_own_ca_is_trusted_with_ca_file(mailbox: tuple[Box, int, Path]) -> None:
    box, port, cert_file = mailbox
    receipt = _adapter(port, ca_file=str(cert_file)).deliver(batch())
    assert receipt.batch_id == batch().batch_id and len(box.got) == 1


def test_the_system_store_is_the_default(mailbox: tuple[Box, int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``ca_file`` the system's store decides (OpenSSL's default paths: SSL_CERT_FILE points it elsewhere)."""
    box, port, cert_file = mailbox
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    _adapter(port).deliver(batch())
    assert len(box.got) == 1


def test_a_certificate_for_another_name_is_refused_even_from_the_trusted_ca(tmp_path: Path) -> None:
    tls, cert_file = _server_tls(tmp_path, x509.DNSName("mx.other-agency.example"))
    box, port = Box(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True)
    controller.start()
    try:
        with pytest.raises(DeliveryError) as refused:
            _adapter(port, ca_file=str(cert_file)).deliver(batch())
    finally:
        controller.stop()
    assert not refused.value.retryable and "certificate" in str(refused.value)
    assert box.got == []


def test_a_ca_file_not_there_yet_is_retried_naming_it(mailbox: tuple[Box, int, Path], tmp_path: Path) -> None:
    """The gateway's own file missing (a volume not mounted) is not the partner's certificate being wrong."""
    box, port, _ = mailbox
    with pytest.raises(DeliveryError) as failed:
        _adapter(port, ca_file=str(tmp_path / "not-yet" / "agency-ca.pem")).deliver(batch())
    assert failed.value.retryable and "agency-ca.pem" in str(failed.value)
    assert box.got == []


def test_ca_file_without_starttls_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="starttls"):
        EmailAdapter("p", {"host": "127.0.0.1", "from": "gw@example.org", "to": "a@agency.example",
                           "ca_file": "/etc/agency-ca.pem"})


class _TlsEmailHarness(EmailHarness):
    """The email partner simulator requiring STARTTLS with a self-signed certificate."""

    def __init__(self, base: Path, tls: ssl.SSLContext, ca_file: str | None) -> None:
        self.tls, self.ca_file = tls, ca_file
        super().__init__(base)
        self.sim.stop()
        self.sim = EmailAgencySimulator(self.agency, self.sim.partner_id, tls=tls).start()

    def options(self) -> dict[str, Any]:
        return {**super().options(), "starttls": True, "timeout": 10.0,
                **({"ca_file": self.ca_file} if self.ca_file else {})}


@pytest.mark.parametrize("trusted", [False, True], ids=["no-ca_file", "ca_file"])
def test_the_refusal_is_recorded_on_the_outbox_row(trusted: bool, tmp_path: Path, db_url: str,
                                                   keys_template: Path,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the dispatcher: refused, the row is dead at once with the reason (no retries, no backoff), and its
    claims failed; with ``ca_file`` the batch is delivered."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls, cert_file = _server_tls(tmp_path, LOOPBACK)
    harness = _TlsEmailHarness(tmp_path, tls, str(cert_file) if trusted else None)
    try:
        with gateway_for(harness, tmp_path, db_url, keys_template) as app:
            deliver_demo_once(app)
            with read_tx(app.engine) as conn:
                (row,) = [dict(r) for r in outbox_store.listing(conn)]
    finally:
        harness.stop()
    if trusted:
        assert row["status"] == "done" and len(harness.sim.messages) == 1
    else:
        assert row["status"] == "dead" and row["attempts"] == 1, row
        assert "TLS certificate was not accepted" in row["last_error"] and "ca_file" in row["last_error"]
        assert harness.sim.messages == []

"""The e-mail partner over implicit TLS (SMTPS, RFC 8314, port 465): option ``smtps``.

A mail server that takes submissions on 465 speaks TLS from the first byte; before, the adapter only knew STARTTLS
and spoke plain SMTP to it (both sides waited for the other until the timeout, every attempt, then dead letters).
The server's certificate is verified as at STARTTLS: the partner's ``ca_file`` or the system's store, its name
included. Against the real e-mail partner simulator (aiosmtpd) on loopback with implicit TLS.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509

from adapters.mail import EmailAdapter
from adapters.simulators.email_sim import EmailAgencySimulator, _free_port
from gateway.errors import ConfigError, DeliveryError
from gateway.services.partner_check import _probe
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import deliver_demo_once, EmailHarness, gateway_for, keys_template  # noqa: F401
from tests.integration.test_mail_tls_verify import LOOPBACK, Box, _server_tls
from tests.integration.test_partner_hostile_mail import batch


@pytest.fixture
def no_system_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


class Smtps:
    """A real SMTP server (aiosmtpd) on loopback speaking implicit TLS, keeping what it was given."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.box, self.port = Box(), _free_port()
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port, ssl_context=tls)
        self.controller.start()

    @property
    def messages(self) -> list[bytes]:
        return self.box.got

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtps_server(tmp_path: Path) -> Iterator[tuple[Smtps, Path]]:
    tls, cert_file = _server_tls(tmp_path, LOOPBACK)
    server = Smtps(tls)
    try:
        yield server, cert_file
    finally:
        server.stop()


def _adapter(port: int, **options: Any) -> EmailAdapter:
    return EmailAdapter("p", {"host": "127.0.0.1", "port": port, "from": "gw@example.org",
                              "to": "akten@agency.example", "smtps": True, "timeout": 3.0, **options})


def test_a_batch_is_mailed_over_implicit_tls_to_a_server_the_partners_ca_signed(
        smtps_server: tuple[Smtps, Path], no_system_trust: None) -> None:
    sim, cert_file = smtps_server
    receipt = _adapter(sim.port, ca_file=str(cert_file)).deliver(batch())
    assert receipt.batch_id == batch().batch_id
    [msg] = sim.messages
    assert f"X-Idempotency-Key: {batch().batch_id}".encode() in msg


def test_a_certificate_no_trusted_ca_signed_is_refused_for_good(smtps_server: tuple[Smtps, Path],
                                                                no_system_trust: None) -> None:
    sim, _ = smtps_server
    with pytest.raises(DeliveryError) as refused:
        _adapter(sim.port).deliver(batch())
    assert not refused.value.retryable and "TLS certificate was not accepted" in str(refused.value)
    assert "ca_file" in str(refused.value)
    assert sim.messages == []  # nothing went to a server the gateway could not identify


def test_the_system_store_is_the_default(smtps_server: tuple[Smtps, Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sim, cert_file = smtps_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    _adapter(sim.port).deliver(batch())
    assert len(sim.messages) == 1


def test_a_certificate_for_another_name_is_refused_even_from_the_trusted_ca(tmp_path: Path) -> None:
    tls, cert_file = _server_tls(tmp_path, x509.DNSName("mx.other-agency.example"))
    sim = Smtps(tls)
    try:
        with pytest.raises(DeliveryError) as refused:
            _adapter(sim.port, ca_file=str(cert_file)).deliver(batch())
    finally:
        sim.stop()
    assert not refused.value.retryable and "certificate" in str(refused.value)
    assert sim.messages == []


def test_the_connectivity_check_speaks_smtps_and_verifies_its_certificate(
        smtps_server: tuple[Smtps, Path], no_system_trust: None) -> None:
    """``gateway partners test``: connected as a delivery connects, not in plain to a TLS port."""
    sim, cert_file = smtps_server
    assert _probe(_adapter(sim.port, ca_file=str(cert_file)), {}).endswith("its certificate verified (SMTPS)")
    with pytest.raises(DeliveryError) as refused:
        _probe(_adapter(sim.port), {})
    assert not refused.value.retryable and "TLS certificate was not accepted" in str(refused.value)


def test_the_options_say_what_they_mean() -> None:
    base = {"host": "mx.agency.example", "from": "gw@example.org", "to": "akten@agency.example"}
    assert EmailAdapter("p", {**base, "smtps": True}).port == 465  # the submission port of implicit TLS
    assert EmailAdapter("p", {**base, "smtps": True, "port": 4650}).port == 4650
    assert EmailAdapter("p", {**base, "smtps": True, "ca_file": "/etc/agency-ca.pem"}).tls == "smtps"
    with pytest.raises(ConfigError, match="exclude each other"):
        EmailAdapter("p", {**base, "smtps": True, "starttls": True})
    with pytest.raises(ConfigError, match="smtps"):  # ca_file without any TLS says how to get it
        EmailAdapter("p", {**base, "ca_file": "/etc/agency-ca.pem"})
    with pytest.raises(ConfigError, match="true or false"):  # a quoted "false" is no switch (bool() reads it true)
        EmailAdapter("p", {**base, "smtps": "false"})


class _SmtpsEmailHarness(EmailHarness):
    """The e-mail partner simulator on implicit TLS, its CA given as the partner's ``ca_file``."""

    def __init__(self, base: Path, tls: ssl.SSLContext, ca_file: str) -> None:
        self.tls, self.ca_file = tls, ca_file
        super().__init__(base)
        self.sim.stop()
        self.sim = EmailAgencySimulator(self.agency, self.sim.partner_id, tls=tls, implicit=True).start()

    def options(self) -> dict[str, Any]:
        return {**super().options(), "smtps": True, "ca_file": self.ca_file, "timeout": 3.0}


def test_the_dispatcher_delivers_over_smtps(tmp_path: Path, db_url: str, keys_template: Path,  # noqa: F811
                                            no_system_trust: None) -> None:
    tls, cert_file = _server_tls(tmp_path, LOOPBACK)
    harness = _SmtpsEmailHarness(tmp_path, tls, str(cert_file))
    try:
        with gateway_for(harness, tmp_path, db_url, keys_template) as app:
            deliver_demo_once(app)
            with read_tx(app.engine) as conn:
                (row,) = [dict(r) for r in outbox_store.listing(conn)]
    finally:
        harness.stop()
    assert row["status"] == "done", row
    assert len(harness.sim.messages) == 1

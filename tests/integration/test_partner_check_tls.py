"""`gateway partners test` checks a partner's TLS as its deliveries do: against the partner's ``ca_file`` (its
private CA) or the adapter's default store. Before, the check built its own connections with the default store
alone, so a partner whose deliveries worked through ``ca_file`` was reported broken ("certificate verify failed"),
and an e-mail partner's STARTTLS certificate was not looked at at all.

Real HTTPS (SOAP WSDL) and SMTP (aiosmtpd, STARTTLS required) servers on loopback with self-signed certificates."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.mail import EmailAdapter
from adapters.soap import SoapAdapter
from gateway.errors import DeliveryError
from gateway.services.partner_check import _probe
from tests.integration.hostile_http import HostileServer
from tests.integration.test_mail_tls_verify import Box, mailbox  # noqa: F401 - the SMTP server fixture
from tests.integration.test_partner_tls_ca import no_ca_environment, soap_partner  # noqa: F401 - fixtures


def _soap(server: HostileServer, **options: object) -> SoapAdapter:
    return SoapAdapter("p", {"wsdl": f"{server.url}/wsdl", "timeout": 10.0, **options})


def test_the_check_trusts_the_soap_partners_ca_file(soap_partner: tuple[HostileServer, Path]) -> None:
    server, trusted = soap_partner
    adapter = _soap(server, ca_file=str(trusted))
    try:
        assert _probe(adapter, {}).endswith("HTTP 200")
    finally:
        adapter.close()


def test_the_check_names_a_certificate_it_cannot_verify(soap_partner: tuple[HostileServer, Path]) -> None:
    server, _ = soap_partner
    adapter = _soap(server)
    try:
        with pytest.raises(DeliveryError) as refused:
            _probe(adapter, {})
    finally:
        adapter.close()
    assert not refused.value.retryable
    assert "TLS certificate was not accepted" in str(refused.value) and "ca_file" in str(refused.value)


def _mail(port: int, **options: object) -> EmailAdapter:
    return EmailAdapter("p", {"host": "127.0.0.1", "port": port, "from": "gw@example.org",
                              "to": "akten@agency.example", "starttls": True, "timeout": 10.0, **options})


def test_the_check_verifies_the_mail_servers_starttls_certificate(mailbox: tuple[Box, int, Path],
                                                                  no_ca_environment: None) -> None:
    _, port, cert_file = mailbox
    assert _probe(_mail(port, ca_file=str(cert_file)), {}).endswith("its STARTTLS certificate verified")
    with pytest.raises(DeliveryError) as refused:
        _probe(_mail(port), {})
    assert not refused.value.retryable and "TLS certificate was not accepted" in str(refused.value)


def test_the_checks_messages_name_a_url_without_its_credentials() -> None:
    """A partner's URL may carry a user and password or a token in its query; the check's lines name the host and
    path only (they end up in a terminal's scrollback or a job's log)."""
    import socket

    from adapters.rest import HttpAdapter

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the check fails and says where
    adapter = HttpAdapter("p", {"url": f"http://gw:s3cr3t-pw@127.0.0.1:{port}/api", "timeout": 5.0,
                                "health_url": f"http://gw:s3cr3t-pw@127.0.0.1:{port}/health?token=t0k3n"})
    try:
        with pytest.raises(DeliveryError) as failed:
            _probe(adapter, {"health_url": f"http://gw:s3cr3t-pw@127.0.0.1:{port}/health?token=t0k3n"})
    finally:
        adapter.close()
    text = str(failed.value)
    assert f"http://127.0.0.1:{port}/health?..." in text
    assert "s3cr3t-pw" not in text and "t0k3n" not in text

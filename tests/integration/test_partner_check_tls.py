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

"""Which CA the ``soap`` and ``http`` adapters trust for a partner's HTTPS server: the partner's option ``ca_file``
(as for ``email``), else, for ``soap``, REQUESTS_CA_BUNDLE as when zeep's transport was requests (the bounded
exchange over httpx dropped it: a partner with a private CA configured that way failed every call), else httpx's
default store. A certificate that does not verify fails for good, naming the option, not retried.

Real HTTPS servers on loopback with a self-signed certificate (``hostile_http``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.rest import HttpAdapter
from adapters.soap import SoapAdapter
from adapters.soap_wsdl import wsdl
from gateway.errors import DeliveryError
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_partner_hostile_soap import CREATED, _tls_for_loopback, batch

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def no_ca_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def soap_partner(tmp_path: Path, no_ca_environment: None) -> Iterator[tuple[HostileServer, Path]]:
    tls, trusted = _tls_for_loopback(tmp_path)

    def behave(req: Request, conn: Conn) -> None:
        if req.method == "GET":
            conn.answer(200, wsdl(f"{server.url}/soap").encode(), content_type="text/xml")
        else:
            conn.answer(200, CREATED, content_type="text/xml")
    server = HostileServer(behave, tls=tls)
    with server:
        yield server, trusted


def _soap(server: HostileServer, **options: object) -> SoapAdapter:
    return SoapAdapter("p", {"wsdl": f"{server.url}/wsdl", "timeout": 10.0, "deadline": 20.0, **options})


def test_soap_refuses_a_certificate_it_cannot_verify_for_good(soap_partner: tuple[HostileServer, Path]) -> None:
    server, _ = soap_partner
    with pytest.raises(DeliveryError) as refused:
        _soap(server).deliver(batch())
    assert not refused.value.retryable
    assert "TLS certificate was not accepted" in str(refused.value) and "ca_file" in str(refused.value)
    assert server.requests == []  # not even the WSDL was asked for over a connection not verified


def test_soap_trusts_the_partners_ca_with_ca_file(soap_partner: tuple[HostileServer, Path]) -> None:
    server, trusted = soap_partner
    assert _soap(server, ca_file=str(trusted)).deliver(batch()).references == {1: "AZ-1"}


def test_soap_honours_requests_ca_bundle_again(soap_partner: tuple[HostileServer, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    server, trusted = soap_partner
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(trusted))
    assert _soap(server).deliver(batch()).references == {1: "AZ-1"}


def test_ca_file_wins_over_requests_ca_bundle(soap_partner: tuple[HostileServer, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The partner's own setting is the one that counts: another CA in the environment does not let it through."""
    server, trusted = soap_partner
    (tmp_path / "other").mkdir()
    _, other = _tls_for_loopback(tmp_path / "other")  # a CA that did not sign the partner's certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(trusted))
    with pytest.raises(DeliveryError) as refused:
        _soap(server, ca_file=str(other)).deliver(batch())
    assert not refused.value.retryable and "certificate" in str(refused.value)


def test_http_takes_ca_file_too(tmp_path: Path, no_ca_environment: None) -> None:
    tls, trusted = _tls_for_loopback(tmp_path)

    def behave(req: Request, conn: Conn) -> None:
        conn.answer(200, b'{"claims": [{"external_id": 1, "file_number": "AZ-1"}]}')
    with HostileServer(behave, tls=tls) as server:
        with pytest.raises(DeliveryError) as refused:
            HttpAdapter("p", {"url": server.url, "timeout": 10.0, "deadline": 20.0}).deliver(batch())
        assert not refused.value.retryable and "ca_file" in str(refused.value)
        assert server.requests == []
        receipt = HttpAdapter("p", {"url": server.url, "timeout": 10.0, "deadline": 20.0,
                                    "ca_file": str(trusted)}).deliver(batch())
    assert receipt.references == {1: "AZ-1"}

"""The soap adapter (zeep) against a partner's SOAP server that misbehaves: answers dripped a byte at a time,
answers of gigabytes, broken XML, a proxy's page, another namespace, a DTD, faults that repeat a debtor's data,
redirects.

The partner's WSDL (``adapters.soap_wsdl``) and its answers are served by a raw server on 127.0.0.1
(``hostile_http``); the real adapter loads the WSDL and calls through zeep.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import traceback
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.base import Batch
from adapters.soap import SoapAdapter
from adapters.soap_wsdl import NS, wsdl
from gateway.errors import DeliveryError
from tests.integration.hostile_http import Conn, HostileServer, Request

PLANTED = "Zacharias Quuxbaum-Planted"
ENVELOPE = ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
            'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{}</soap:Body></soap:Envelope>')
CREATED = ENVELOPE.format(f'<tns:CreateClaimsResponse xmlns:tns="{NS}"><tns:result><tns:externalId>1</tns:externalId>'
                          f'<tns:fileNumber>AZ-1</tns:fileNumber></tns:result></tns:CreateClaimsResponse>').encode()

Post = Callable[[Request, Conn], None]


def batch() -> Batch:
    return Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"\x30\x80cms", claim_ids=[1])


def partner(post: Post) -> HostileServer:
    """A server that gives out its WSDL on GET and answers every POST with ``post``."""
    def behave(req: Request, conn: Conn) -> None:
        if req.method == "GET":
            conn.answer(200, wsdl(f"{server.url}/soap").encode(), content_type="text/xml")
        else:
            post(req, conn)
    server = HostileServer(behave)
    return server


def adapter(server: HostileServer, **options: object) -> SoapAdapter:
    return SoapAdapter("p", {"wsdl": f"{server.url}/wsdl", "timeout": 2.0, "deadline": 1.5, **options})


def test_the_partner_answering_well_is_read() -> None:
    with partner(lambda req, conn: conn.answer(200, CREATED, content_type="text/xml")) as server:
        a = adapter(server)
        assert a.deliver(batch()).references == {1: "AZ-1"}
        a.close()


def test_an_answer_dripped_a_byte_at_a_time_ends_at_the_deadline() -> None:
    cut: list[int] = []

    def post(req: Request, conn: Conn) -> None:
        data = (f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {len(CREATED)}\r\n\r\n".encode()
                + CREATED)
        for i in range(len(data)):
            if not conn.send(data[i:i + 1]) or not conn.wait(0.02):
                cut.append(i)
                return

    with partner(post) as server:
        a = adapter(server)
        with pytest.raises(DeliveryError, match="deadline of 1.5 s") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable


def test_a_wsdl_dripped_a_byte_at_a_time_ends_at_the_deadline() -> None:
    def behave(req: Request, conn: Conn) -> None:
        doc = wsdl("http://127.0.0.1:1/soap").encode()
        conn.send(f"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {len(doc)}\r\n\r\n".encode())
        for i in range(len(doc)):
            if not conn.send(doc[i:i + 1]) or not conn.wait(0.02):
                return

    with HostileServer(behave) as server:
        a = adapter(server)
        with pytest.raises(DeliveryError, match="deadline") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable


def test_an_endless_answer_is_cut_at_the_limit() -> None:
    sent: list[int] = []

    def post(req: Request, conn: Conn) -> None:
        if not conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 10737418240\r\n\r\n"):
            return
        n = 0
        while n < 10 * 1024 ** 3 and conn.send(b"<a>" * 21845):
            n += 65535
        sent.append(n)

    with partner(post) as server:
        a = adapter(server, max_answer_bytes=1024 * 1024, deadline=60)
        tracemalloc.start()
        try:
            with pytest.raises(DeliveryError, match="larger than 1048576 bytes") as err:
                a.deliver(batch())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        a.close()
    assert err.value.retryable and peak < 32 * 1024 * 1024, peak


@pytest.mark.parametrize("answer", [
    b"<soap:Envelope><unclosed>",
    b"<html><body>Wartungsarbeiten</body></html>",
    b"",
    ENVELOPE.format('<x:CreateClaimsResponse xmlns:x="urn:other:claims:2"><x:result><x:externalId>1</x:externalId>'
                    '</x:result></x:CreateClaimsResponse>').encode(),
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "' + PLANTED.encode() + b'">]><soap:Envelope '
    b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&a;</soap:Body></soap:Envelope>',
], ids=["broken-xml", "html", "empty", "wrong-namespace", "dtd-entity"])
def test_a_200_that_is_not_an_answer_of_the_wsdl_is_retried_not_dead_at_once(answer: bytes) -> None:
    """A proxy's page, broken XML, an answer in another namespace (a partner half-way through a new version),
    a DTD: the answer says nothing about the claims, so the attempt is retried like a malformed HTTP answer.
    Before, each was dead at once (zeep's errors were all taken as final). The error does not quote it."""
    with partner(lambda req, conn: conn.answer(200, answer, content_type="text/xml")) as server:
        a = adapter(server)
        with pytest.raises(DeliveryError, match="answer not understood") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable
    assert PLANTED not in str(err.value)


@pytest.mark.parametrize(("code", "retryable"), [("soap:Server", True), ("soap:Client", False)])
def test_a_fault_with_debtor_data_keeps_it_out_of_the_error_its_cause_and_the_log(
        code: str, retryable: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The faultstring and detail repeat a debtor's name. The error keeps the fault code only, and it is not
    chained to zeep's Fault: a traceback printed with it (a log.exception anywhere up the stack) showed the text."""
    caplog.set_level(logging.DEBUG)
    fault = ENVELOPE.format(f"<soap:Fault><faultcode>{code}</faultcode><faultstring>Schuldner {PLANTED} "
                            f"unbekannt verzogen</faultstring><detail><name>{PLANTED}</name></detail></soap:Fault>")

    with partner(lambda req, conn: conn.answer(500, fault.encode(), content_type="text/xml")) as server:
        a = adapter(server)
        with pytest.raises(DeliveryError, match=f"fault {code}") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable is retryable
    printed = "".join(traceback.format_exception(err.value))
    assert PLANTED not in printed and PLANTED not in caplog.text


@pytest.mark.parametrize(("status", "retryable"), [(301, False), (302, True)])
def test_a_redirect_is_never_followed(status: int, retryable: bool) -> None:
    def post(req: Request, conn: Conn) -> None:
        conn.answer(status, b"", {"Location": "http://elsewhere.example/soap"})

    with partner(post) as server:
        a = adapter(server)
        with pytest.raises(DeliveryError, match=f"HTTP {status} redirect, not followed") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable is retryable
    assert [r.method for r in server.requests] == ["GET", "POST"]


def test_a_429_with_retry_after_carries_the_wait() -> None:
    """zeep's TransportError has no headers; the transport keeps the last answer's Retry-After for the error,
    so the dispatcher waits it out as for an HTTP partner."""
    with partner(lambda req, conn: conn.answer(429, b"", {"Retry-After": "90"})) as server:
        a = adapter(server)
        with pytest.raises(DeliveryError, match=r"HTTP 429 \(Retry-After 90 s\)") as err:
            a.deliver(batch())
        a.close()
    assert err.value.retryable and err.value.retry_after == 90.0


def _tls_for_loopback(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for 127.0.0.1, and the certificate's file to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "partner.crt", tmp_path / "partner.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, cert_file


@pytest.mark.parametrize("address", ["http://127.0.0.1:{port}/soap", "https://127.0.0.1:{port}/soap"],
                         ids=["plain-http", "https"])
def test_a_wsdl_over_https_naming_a_plain_http_address_is_still_called_over_https(
        address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The partner's WSDL, fetched over HTTPS, names its service at an http:// address (a misconfigured partner,
    or someone in between rewriting it). Calls must not go in clear (message texts, payment amounts): zeep
    forces the address to HTTPS (its force_https setting, on by default), and the server here speaks only TLS,
    so the call's success shows it went encrypted."""
    tls, trusted = _tls_for_loopback(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))

    def behave(req: Request, conn: Conn) -> None:
        if req.method == "GET":
            conn.answer(200, wsdl(address.format(port=server.port)).encode(), content_type="text/xml")
        else:
            conn.answer(200, CREATED, content_type="text/xml")
    server = HostileServer(behave, tls=tls)
    with server:
        a = adapter(server, deadline=30)
        assert a.deliver(batch()).references == {1: "AZ-1"}
        a.close()
    assert [r.method for r in server.requests] == ["GET", "POST"]

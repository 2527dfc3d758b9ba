"""A renewed TLS certificate is taken by the SOAP and console listeners while they serve (tls_follow.py): real
listeners on loopback, real certificate files, the certificate read off a real TLS handshake."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from gateway.bootstrap import App, build_app
from gateway.crypto.certs import new_rsa_key, self_signed_cert, write_cert, write_private_key
from gateway.entrypoints.soap.server import SoapServer
from gateway.entrypoints.tls_follow import CertificateFollower
from gateway.entrypoints.web.server import WebServer
from tests.integration.web.conftest import console_config


def served_serial(port: int) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # only the certificate's identity is looked at
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def renew(keys: Path, *, key_too: bool = True) -> int:
    """A new certificate (and key) written as an ACME client writes them; the new certificate's serial."""
    key = new_rsa_key(2048)
    if key_too:
        write_private_key(keys / "tls.key", key)
    cert = self_signed_cert(key, "localhost", days=90, usage="tls")
    write_cert(keys / "tls.crt", cert)
    return cert.serial_number


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


def check_follows(port: int, follower: CertificateFollower[object], keys: Path,
                  caplog: pytest.LogCaptureFixture) -> None:
    first = served_serial(port)
    assert not follower.step()  # nothing changed
    assert served_serial(port) == first and not lines(caplog, "tls.")

    half = renew(keys, key_too=False)  # the certificate copied before its key: does not match
    follower.step()
    assert served_serial(port) == first
    [failed] = lines(caplog, "tls.reload_failed")
    assert "listener=" in failed and "KEY_VALUES_MISMATCH" in failed
    follower.step()
    assert len(lines(caplog, "tls.reload_failed")) == 1  # said once, not at every look

    fresh = renew(keys)
    assert fresh != half
    follower.step()
    assert served_serial(port) == fresh
    assert len(lines(caplog, "tls.reloaded")) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_soap_takes_a_renewed_certificate_without_a_restart(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.serve")
    server = SoapServer(app, host="127.0.0.1", port=0)
    server.start()
    try:
        check_follows(server.port, server.certificate_follower(), app.config.keys_dir, caplog)
    finally:
        server.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_console_takes_a_renewed_certificate_without_a_restart(tmp_path: Path, db_url: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.serve")
    app = build_app(console_config(tmp_path, db_url), migrate=True)

    async def run() -> None:
        server = await asyncio.to_thread(WebServer, app, port=0)
        await server.start()
        try:
            await asyncio.to_thread(check_follows, server.port, server.certificate_follower(), app.config.keys_dir,
                                    caplog)
        finally:
            await server.stop()
    try:
        asyncio.run(run())
    finally:
        app.close()

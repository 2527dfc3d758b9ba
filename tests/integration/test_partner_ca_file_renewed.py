"""A partner's ``ca_file`` changed on disk is trusted from the next call of the running adapter.

A certificate not accepted makes the row dead with the remedy "trust its CA with option ca_file, then `gateway outbox
retry --dead`", and ``gateway partners test`` (a process of its own) reads the file anew. The running adapter made
its TLS context once: after the operator put the partner's new CA into the same file, the retried rows were dead
again until ``serve`` was restarted. Real TLS servers on loopback (aiosmtpd with STARTTLS, an HTTPS server), each
with a self-signed certificate; the same adapter object before and after the file is rewritten."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from adapters.mail import EmailAdapter
from adapters.rest import HttpAdapter
from adapters.simulators.email_sim import _free_port
from gateway.errors import DeliveryError
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_mail_tls_verify import LOOPBACK, Box, _server_tls
from tests.integration.test_partner_hostile_mail import batch
from tests.integration.test_partner_hostile_soap import _tls_for_loopback

CREATED = b'{"claims": [{"external_id": 1, "file_number": "AZ-1"}]}'


def _renew(ca_file: Path, new_ca: Path) -> None:
    """The new CA put in place as a deployment tool does (a new file renamed over the old one): a change the adapter
    sees whatever the file system's time stamps' resolution."""
    staged = ca_file.with_name(ca_file.name + ".new")
    staged.write_bytes(new_ca.read_bytes())
    os.replace(staged, ca_file)


def test_the_mail_partners_renewed_ca_is_trusted_without_a_restart(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    _, old_ca = _server_tls(tmp_path / "old", LOOPBACK)  # the CA the file held before the partner's renewal
    tls, new_ca = _server_tls(tmp_path, LOOPBACK)
    ca_file = tmp_path / "agency-ca.pem"
    shutil.copy(old_ca, ca_file)
    box, port = Box(), _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True)
    controller.start()
    try:
        adapter = EmailAdapter("p", {"host": "127.0.0.1", "port": port, "from": "gw@example.org",
                                     "to": "akten@agency.example", "starttls": True, "timeout": 10.0,
                                     "ca_file": str(ca_file)})
        with pytest.raises(DeliveryError) as refused:
            adapter.deliver(batch())
        assert not refused.value.retryable and "ca_file" in str(refused.value)
        _renew(ca_file, new_ca)  # the operator mends the file, as the dead letter says
        assert adapter.deliver(batch()).batch_id == batch().batch_id
    finally:
        controller.stop()
    assert len(box.got) == 1


def test_the_http_partners_renewed_ca_is_trusted_without_a_restart(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "old").mkdir()
    _, old_ca = _tls_for_loopback(tmp_path / "old")
    tls, new_ca = _tls_for_loopback(tmp_path)
    ca_file = tmp_path / "agency-ca.pem"
    shutil.copy(old_ca, ca_file)

    def behave(req: Request, conn: Conn) -> None:
        conn.answer(200, CREATED if req.path == "/v1/claims" else b"{}")
    with HostileServer(behave, tls=tls) as server:
        adapter = HttpAdapter("p", {"url": server.url, "timeout": 10.0, "ca_file": str(ca_file)})
        with pytest.raises(DeliveryError) as refused:
            adapter.deliver(batch())
        assert not refused.value.retryable and "ca_file" in str(refused.value)
        assert server.requests == []
        _renew(ca_file, new_ca)
        assert adapter.deliver(batch()).references == {1: "AZ-1"}
        adapter.close()

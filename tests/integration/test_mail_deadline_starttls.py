"""The e-mail adapter's deadline while STARTTLS is being negotiated: a mail server that drips the bytes of its
TLS handshake (and then its replies) a byte at a time. The deadline's cut shuts the conversation's socket down;
fired in the middle of the handshake, smtplib's ``sock`` was still the plain socket just handed over to TLS
(detached: its shutdown fails), so the cut missed and the rest of the conversation ran on without a deadline:
a reply dripped for ever held the partner's lane for ever. Now the cut tries again until it lands."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.mail import EmailAdapter
from gateway.errors import DeliveryError
from tests.integration.test_partner_hostile_mail import batch
from tests.integration.test_partner_hostile_soap import _tls_for_loopback

BEAT = 0.006  # seconds between two handshake bytes: the server's flight (~700 bytes) outlasts the deadline


class DrippingTlsMailbox:
    """Greets, offers STARTTLS, and drips its TLS handshake and then an endless EHLO reply."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.tls, self.stop = tls, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.dripped = self.handshake_bytes = 0
        self.trusted: Path | None = None  # the certificate file the client trusts (option ca_file)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            try:
                self._talk(conn)
            except OSError:
                pass  # the client cut the conversation: what the test waits for

    def _drip(self, conn: socket.socket, data: bytes, beat: float) -> None:
        self.dripped += len(data)
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            if self.stop.wait(beat):
                raise OSError("stopping")

    def _talk(self, conn: socket.socket) -> None:
        conn.sendall(b"220 mx ESMTP\r\n")
        reader = conn.makefile("rb")
        reader.readline()  # EHLO
        conn.sendall(b"250-mx\r\n250 STARTTLS\r\n")
        reader.readline()  # STARTTLS
        conn.sendall(b"220 go ahead\r\n")
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.tls.wrap_bio(incoming, outgoing, server_side=True)
        conn.settimeout(0.05)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._drip(conn, outgoing.read(), BEAT)
                self.handshake_bytes = self.dripped  # all of it went out: the client was still listening
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                incoming.write(data)
        self._drip(conn, outgoing.read(), BEAT)
        while True:  # an EHLO reply that never ends, one byte at a time
            tls.write(b"250-mx\r\n")
            self._drip(conn, outgoing.read(), 0.05)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=10)


@pytest.fixture
def mailbox(tmp_path: Path) -> Iterator[DrippingTlsMailbox]:
    tls, trusted = _tls_for_loopback(tmp_path)
    box = DrippingTlsMailbox(tls)
    box.trusted = trusted
    yield box
    box.close()


def test_the_deadline_ends_a_conversation_dripped_through_starttls(mailbox: DrippingTlsMailbox) -> None:
    a = EmailAdapter("p", {"host": "127.0.0.1", "port": mailbox.port, "from": "gw@example.org",
                           "to": "akten@agency.example", "starttls": True, "timeout": 5.0, "deadline": 1.5,
                           "ca_file": str(mailbox.trusted)})
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            a.deliver(batch())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    worker.join(timeout=60)  # the handshake takes a few seconds; without the cut the reply never ends
    assert not worker.is_alive(), "the conversation ran on past its deadline"
    # the deadline fired during the handshake, as meant: the server's whole handshake flight (dripped for longer
    # than the deadline) reached a client still in the handshake (the greeting and EHLO take milliseconds)
    assert mailbox.handshake_bytes * BEAT > 1.5, (mailbox.handshake_bytes, outcome)
    assert len(outcome) == 1 and isinstance(outcome[0], DeliveryError) and outcome[0].retryable
    assert "deadline of 1.5 s" in str(outcome[0])


def test_a_batch_goes_out_over_starttls(tmp_path: Path) -> None:
    """STARTTLS at all: the server's name for the TLS handshake is the configured host. The adapter built its
    SMTP object without a host and connected later, which left that name empty: ssl refused it (ValueError), and
    every batch to a partner with ``starttls: true`` was dead at once."""
    from aiosmtpd.controller import Controller

    from adapters.simulators.email_sim import _free_port

    tls, trusted = _tls_for_loopback(tmp_path)
    got: list[bytes] = []

    class Box:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            got.append(getattr(envelope, "content"))
            return "250 2.0.0 queued"

    port = _free_port()  # aiosmtpd checks its own readiness at the port it was given
    controller = Controller(Box(), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True)
    controller.start()
    try:
        a = EmailAdapter("p", {"host": "127.0.0.1", "port": port, "from": "gw@example.org",
                               "to": "akten@agency.example", "starttls": True, "timeout": 10.0,
                               "ca_file": str(trusted)})
        receipt = a.deliver(batch())
    finally:
        controller.stop()
    assert receipt.batch_id == batch().batch_id and len(got) == 1

"""The email adapter against a partner's mail server that drips its replies a byte at a time, never greets,
or answers the QUIT badly after taking the message.

A scripted SMTP server on raw sockets (127.0.0.1, port 0): it speaks just enough SMTP for smtplib, and
``drip`` says which replies come one byte per beat.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.base import Batch
from adapters.mail import EmailAdapter
from gateway.errors import DeliveryError


def batch() -> Batch:
    return Batch(batch_id="B-1", partner_id="p", filename="B-1.xml.p7m", payload=b"\x30\x80cms", claim_ids=[1])


class Mailbox:
    def __init__(self, drip: set[str], quit_reply: bytes = b"221 bye\r\n", greet: bool = True,
                 tls: ssl.SSLContext | None = None) -> None:
        self.drip, self.quit_reply, self.greet, self.tls = drip, quit_reply, greet, tls
        self.encrypted = False
        self.wrapped: list[socket.socket] = []  # TLS sockets made by STARTTLS, closed at the end
        self.messages = 0
        self.stopping = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []

    def _send(self, conn: socket.socket, what: str, data: bytes) -> bool:
        try:
            if what not in self.drip:
                conn.sendall(data)
                return True
            for i in range(len(data)):
                conn.sendall(data[i:i + 1])
                if self.stopping.wait(0.3):
                    return False
            return True
        except OSError:
            return False

    def _one(self, conn: socket.socket) -> None:
        with conn:
            if not self.greet:
                self.stopping.wait(3600)
                return
            f = conn.makefile("rb")
            if not self._send(conn, "greeting", b"220 agency ESMTP\r\n"):
                return
            while True:
                try:
                    line = f.readline()
                except OSError:
                    return
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    ok = self._send(conn, "ehlo", b"250-agency\r\n250 STARTTLS\r\n" if self.tls and not
                                    self.encrypted else b"250 agency\r\n")
                elif verb == b"STAR" and self.tls is not None:
                    ok = self._send(conn, "starttls", b"220 go ahead\r\n")
                    conn = self.tls.wrap_socket(conn, server_side=True)
                    self.wrapped.append(conn)
                    f, self.encrypted = conn.makefile("rb"), True
                elif verb == b"DATA":
                    ok = self._send(conn, "data", b"354 go on\r\n")
                    while ok and (piece := f.readline()) not in (b".\r\n", b""):
                        pass
                    self.messages += 1
                    ok = ok and self._send(conn, "accepted", b"250 queued\r\n")
                elif verb == b"QUIT":
                    self._send(conn, "quit", self.quit_reply)
                    return
                else:
                    ok = self._send(conn, verb.decode().strip().lower(), b"250 ok\r\n")
                if not ok:
                    return

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()


@contextmanager
def mailbox(drip: set[str], **kw: object) -> Iterator[Mailbox]:
    box = Mailbox(drip, **kw)  # type: ignore[arg-type]
    accept = threading.Thread(target=box._serve, daemon=True)
    accept.start()
    try:
        yield box
    finally:
        box.stopping.set()
        box.sock.close()
        for t in box.threads:
            t.join(timeout=10)
        for w in box.wrapped:
            w.close()


def adapter(port: int) -> EmailAdapter:
    return EmailAdapter("p", {"host": "127.0.0.1", "port": port, "from": "gw@gw.example", "to": "akten@agency.example",
                              "timeout": 2.0, "deadline": 1.5})


@pytest.mark.parametrize("where", ["greeting", "ehlo"])
def test_replies_dripped_a_byte_at_a_time_end_at_the_deadline(where: str) -> None:
    """Each byte well within the per-read timeout: only the deadline ends the conversation, retryably.
    (A reply to the message's data whose ``250`` came before the cut counts as taken: smtplib reads the code.)"""
    with mailbox({where}) as box:
        with pytest.raises(DeliveryError, match="deadline of 1.5 s") as err:
            adapter(box.port).deliver(batch())
    assert err.value.retryable


def test_a_server_that_never_greets_is_a_retryable_timeout() -> None:
    with mailbox(set(), greet=False) as box:
        a = EmailAdapter("p", {"host": "127.0.0.1", "port": box.port, "from": "gw@gw.example",
                               "to": "akten@agency.example", "timeout": 0.5, "deadline": 60})
        with pytest.raises(DeliveryError) as err:
            a.deliver(batch())
    assert err.value.retryable


@pytest.mark.parametrize("quit_reply", [b"421 shutting down\r\n", b"221 bye\r\n"], ids=["bad-quit", "dripped-quit"])
def test_a_message_taken_is_delivered_whatever_the_quit_says(quit_reply: bytes) -> None:
    """The server takes the message (250 after its data), then answers QUIT with an error or drips it past the
    deadline. The batch is delivered: reported failed, it would be mailed again (before, a QUIT answered
    421 did exactly that)."""
    drip = {"quit"} if quit_reply.startswith(b"221") else set()
    with mailbox(drip, quit_reply=quit_reply) as box:
        receipt = adapter(box.port).deliver(batch())
    assert receipt.detail == "mailed to akten@agency.example"
    assert box.messages == 1


def test_starttls_is_used_when_asked_for(tmp_path: Path) -> None:
    """STARTTLS with the deadline's timer in place: the TLS handshake gets the partner's host name (connecting
    outside smtplib's constructor leaves it empty, and ssl refuses an empty server_hostname)."""
    from tests.integration.test_partner_hostile_soap import _tls_for_loopback

    tls, trusted = _tls_for_loopback(tmp_path)
    with mailbox(set(), tls=tls) as box:
        a = EmailAdapter("p", {"host": "127.0.0.1", "port": box.port, "from": "gw@gw.example",
                               "to": "akten@agency.example", "timeout": 5.0, "starttls": True,
                               "ca_file": str(trusted)})
        a.deliver(batch())
    assert box.encrypted and box.messages == 1

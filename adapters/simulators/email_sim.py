"""The ``email`` partner simulator: an aiosmtpd mailbox on loopback that opens S/MIME batches.

Messages are folded by their idempotency key, so a re-sent batch (after a lost answer) is kept once.
Faults apply per message: 4xx answers, a hang, a dropped connection, or the message taken but the
answer lost. ``refuse()`` stops the listener until ``accept()``.
"""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.mail import IDEMPOTENCY_HEADER
from adapters.simulators.agency import Agency, Fault
from adapters.simulators.files import claim_ids_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Mailbox:
    def __init__(self, sim: EmailAgencySimulator) -> None:
        self.sim = sim

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        agency = self.sim.agency
        fault = agency.faults.take()
        if fault in (Fault.ERROR_500, Fault.ERROR_503, Fault.RATE_LIMITED):
            return "451 4.3.0 simulated temporary failure"
        if fault is Fault.TIMEOUT:
            await asyncio.sleep(agency.faults.hang_seconds)
            return "451 4.4.2 too slow"
        if fault in (Fault.DROP, Fault.REFUSE):
            server.transport.abort()
            return "421 4.4.2 gone"
        msg = email.message_from_bytes(envelope.content)
        self.sim.messages.append(msg)
        self.take(msg)
        if fault is Fault.LOSE_ANSWER:
            server.transport.abort()  # kept at the agency, but the sender never hears 250
        return "250 2.0.0 queued"

    def take(self, msg: Message) -> None:
        batch_id = str(msg[IDEMPOTENCY_HEADER])
        part = msg.get_payload(decode=True)
        assert isinstance(part, bytes) and self.sim.keys is not None
        ids = claim_ids_of(part, *self.sim.keys)
        self.sim.agency.receive_batch(batch_id, [(c, f"{c}:{self.sim.partner_id}:deliver") for c in ids])


class EmailAgencySimulator:
    """An SMTP server for the agency's mailbox; ``keys`` (cert, key) open the batches."""

    def __init__(self, agency: Agency, partner_id: str, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None, implicit: bool = False) -> None:
        self.agency, self.partner_id, self.host = agency, partner_id, host
        # a server context: STARTTLS offered and required before any mail; with ``implicit``, TLS from the first
        # byte instead (SMTPS, as on port 465)
        self.tls, self.implicit = tls, implicit
        self.port = port or _free_port()
        self.keys: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None
        self.messages: list[Message] = []
        self._controller: Controller | None = None

    def start(self) -> EmailAgencySimulator:
        self.accept()
        return self

    def accept(self) -> None:
        if self._controller is None:
            if self.implicit:
                self._controller = Controller(_Mailbox(self), hostname=self.host, port=self.port,
                                              ssl_context=self.tls)
            else:
                self._controller = Controller(_Mailbox(self), hostname=self.host, port=self.port,
                                              tls_context=self.tls, require_starttls=self.tls is not None)
            self._controller.start()

    def refuse(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    stop = refuse

"""``email``: the encrypted batch as an S/MIME message to the partner's mailbox over SMTP.

For agencies that take cases by mail. The message body is the CMS EnvelopedData itself
(``application/pkcs7-mime; smime-type=enveloped-data``, base64), so any S/MIME client or
``openssl cms -decrypt`` opens it. The subject, the attachment's name (``<batch id>.xml.p7m``; the
``.p7m`` extension is what RFC 8551 asks of the name), the Message-ID and ``X-Idempotency-Key`` carry
the batch id. Mail cannot be made exactly-once by the sender: after a lost answer (the 250 never came)
the message is sent again, and the partner's mailbox must keep one per batch id. Per-claim operations are not
supported by mail (refused before they are queued); the agency's status reports come back as status files in ``status_path`` (where the mail system files
the agency's report attachments), read like the directory adapter's.

TLS: ``starttls`` (the conversation starts in plain and turns to TLS before anything is sent; ports 587 and 25) or
``smtps`` (implicit TLS, RFC 8314: TLS from the first byte; port 465, the default then). Either way the server's
certificate is verified (system CA store, or the partner's CA in ``ca_file``; host name checked); one that does not
verify fails the delivery for good, not retried (``adapters.tls``).
"""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
import threading
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, ClassVar

from adapters.base import Batch, OperationsMixin, Receipt, UpdatePage, bool_option
from adapters.statusfiles import read_local
from adapters.tls import PartnerTls, ca_file_option, certificate_failure, certificate_text
from gateway.errors import ConfigError, DeliveryError

IDEMPOTENCY_HEADER = "X-Idempotency-Key"


def smime_message(batch: Batch, sender: str, recipient: str) -> EmailMessage:
    """An RFC 8551 enveloped-data message carrying the batch."""
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, recipient
    msg["Subject"] = f"Inkasso-Übergabe {batch.batch_id} ({len(batch.claim_ids)} Forderungen)"
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = f"<{batch.batch_id}@{sender.rpartition('@')[2] or 'gateway'}>"
    msg[IDEMPOTENCY_HEADER] = batch.batch_id
    msg.set_content(batch.payload, maintype="application", subtype="pkcs7-mime",
                    params={"smime-type": "enveloped-data", "name": batch.filename},
                    disposition="attachment", filename=batch.filename)
    return msg


class EmailAdapter(OperationsMixin):
    """SMTP submission, optionally over TLS: STARTTLS or implicit (SMTPS), the server's certificate verified."""

    name = "email"
    retryable: tuple[type[BaseException], ...] = (OSError, smtplib.SMTPServerDisconnected)
    # Mail cannot be sent exactly once, so no instructions go by mail; status comes back from ``status_path``.
    capabilities: ClassVar[frozenset[str]] = frozenset({"deliver", "status_pull", "documents"})

    def __init__(self, partner_id: str, options: Mapping[str, Any]) -> None:
        self.partner_id = partner_id
        key = f"partners.{partner_id}.options"
        for required in ("host", "to", "from"):
            if not options.get(required):
                raise ConfigError(f"the email adapter needs option '{required}'", key=f"{key}.{required}")
        self.starttls = bool_option(options, "starttls", key)
        self.smtps = bool_option(options, "smtps", key)
        if self.starttls and self.smtps:
            raise ConfigError("options 'starttls' and 'smtps' exclude each other: smtps is TLS from the first byte "
                              "(port 465), starttls turns a plain conversation to TLS (ports 587, 25)",
                              key=f"{key}.smtps")
        self.host, self.port = str(options["host"]), int(options.get("port", 465 if self.smtps else 25))
        self.to, self.sender = str(options["to"]), str(options["from"])
        # The server's certificate is verified at STARTTLS or at the SMTPS connect, its name included: against
        # ``ca_file`` (a partner's private CA) or the system's CA store. smtplib's own default context for
        # starttls() and SMTP_SSL checks nothing at all.
        self.ca_file = ca_file_option(partner_id, options)
        if self.ca_file and not (self.starttls or self.smtps):
            raise ConfigError("option 'ca_file' is for the server's TLS certificate: set starttls: true (or smtps: "
                              "true for implicit TLS on port 465)", key=f"{key}.ca_file")
        # made again when ca_file changes on disk (a CA renewed in place is trusted from the next delivery)
        self._tls = PartnerTls(f"partner {partner_id}: SMTP {self.host}:{self.port}", self.ca_file)
        self.timeout = float(options.get("timeout", 30.0))
        # ``timeout`` bounds each read and write; ``deadline`` the whole conversation (a server that drips its
        # replies a byte at a time stays within the first for ever).
        self.deadline = float(options.get("deadline", 4 * self.timeout))
        if self.timeout <= 0 or self.deadline <= 0:
            raise ConfigError("options 'timeout' and 'deadline' must be positive seconds", key=f"{key}.deadline")
        self.status_path = str(options["status_path"]) if options.get("status_path") else None

    def deliver(self, batch: Batch) -> Receipt:
        """Send one message per batch; SMTP 4xx and lost connections are retried, 5xx are not."""
        msg = smime_message(batch, self.sender, self.to)
        where = f"partner {self.partner_id}: SMTP {self.host}:{self.port}"
        smtp = self.client()  # connected below, once the deadline's timer runs
        cut = _Cut(smtp, self.deadline)
        accepted = False
        try:
            self.open(smtp)
            smtp.send_message(msg)
            accepted = True
            smtp.quit()
        except smtplib.SMTPResponseException as exc:
            if not accepted:
                raise DeliveryError(f"{where}: {exc.smtp_code} {str(exc.smtp_error)[:200]!r}",
                                    retryable=400 <= exc.smtp_code < 500) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"{where}: recipient refused {codes}",
                                retryable=all(400 <= c < 500 for c in codes)) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Once the message is taken (250 after its data), the QUIT's fate does not matter: sent again, the
            # partner would get it twice.
            if not accepted:
                if (failure := certificate_failure(exc)) is not None:  # the same at every attempt: the operator's
                    raise DeliveryError(f"{where}: {certificate_text(failure)}", retryable=False) from None
                if cut.fired:
                    raise DeliveryError(f"{where}: no whole answer within the deadline of {self.deadline:g} s",
                                        retryable=True) from exc
                raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
        finally:
            cut.cancel()
            smtp.close()
        return Receipt(batch_id=batch.batch_id, partner_reference=str(msg["Message-ID"]),
                       delivered_at=dt.datetime.now(dt.timezone.utc), detail=f"mailed to {self.to}")

    def client(self) -> smtplib.SMTP:
        """An SMTP client for the partner, not connected yet: with ``smtps`` one that speaks TLS from the first byte
        (its context made here: a ``ca_file`` that cannot be loaded raises ``DeliveryError``, retryable)."""
        smtp = (smtplib.SMTP_SSL(timeout=self.timeout, context=self._tls.context()) if self.smtps
                else smtplib.SMTP(timeout=self.timeout))
        # TLS names the server it expects by the host given to the constructor, which connect() leaves as it was
        # (empty here): ssl refuses an empty server_hostname, and every TLS delivery raised ValueError
        smtp._host = self.host  # type: ignore[attr-defined]
        return smtp

    def open(self, smtp: smtplib.SMTP) -> None:
        """Connect ``smtp`` (from ``client``) and, with ``starttls``, turn the conversation to TLS; the server's
        certificate is verified either way (SMTPS at the connect)."""
        smtp.connect(self.host, self.port)
        if self.starttls:
            smtp.starttls(context=self._tls.context())

    @property
    def tls(self) -> str | None:
        """How the conversation is protected: "starttls", "smtps" or None (plain)."""
        return "starttls" if self.starttls else "smtps" if self.smtps else None

    def fetch_updates(self, cursor: str | None) -> UpdatePage:
        """The agency's status report files (JSON arrays of updates) in ``status_path`` after the cursor."""
        if self.status_path is None:
            return super().fetch_updates(cursor)
        try:
            updates, new_cursor = read_local(Path(self.status_path), cursor, f"partner {self.partner_id}")
        except OSError as exc:
            raise DeliveryError(f"partner {self.partner_id}: cannot read {self.status_path}: {exc}",
                                retryable=True) from exc
        return UpdatePage(updates=updates, cursor=new_cursor)

    def close(self) -> None:
        """Nothing held between calls."""


class _Cut:
    """Shuts the SMTP connection's socket down at the deadline, which ends a read blocked on a dripping server.

    The socket may not be there to shut yet (still connecting, or in the SMTPS handshake, which smtplib makes before
    it keeps the socket) or may be one just handed over to TLS (smtplib's ``sock`` during the STARTTLS handshake is
    the plain socket, detached: its shutdown fails): then the cut is tried again a moment later, until it lands or
    the conversation ends (``cancel``). A handshake is a few kilobytes: bounded by ``timeout`` per read, it ends."""

    _AGAIN = 0.05  # seconds

    def __init__(self, smtp: smtplib.SMTP, deadline: float) -> None:
        self.smtp, self.fired = smtp, False
        self._lock = threading.Lock()
        self._ended = False
        self._timer = self._arm(deadline)

    def _arm(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self._fire)
        timer.daemon = True
        timer.start()
        return timer

    def _fire(self) -> None:
        self.fired = True
        sock = self.smtp.sock
        try:
            if sock is None:
                raise OSError("not connected yet")
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            with self._lock:
                if not self._ended:  # connecting, or in the STARTTLS handshake: again in a moment
                    self._timer = self._arm(self._AGAIN)

    def cancel(self) -> None:
        with self._lock:
            self._ended = True
            self._timer.cancel()

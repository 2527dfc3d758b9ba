"""Dispatcher: lease outbox rows, render the partner batch, sign and encrypt it, hand it to the adapter.

Each claim moves queued -> delivering when its batch is leased and delivering -> handed_over with
the partner's receipt, or -> failed when the row goes to dead letter. A worker that dies mid-batch
loses its lease; the next worker re-sends the same batch id, and adapters treat a batch id they
already have as delivered, so a partner never gets a case twice. Per-claim operations (cancel,
report_payment, ...) go through ``operations.run_operation``. Each adapter call is retried a few
times inside the attempt (tenacity, on the adapter's declared retryable errors); across attempts the
outbox row backs off with jitter and goes to dead letter after ``max_attempts``.

A row whose claims do not share one client and currency is split before anything moves
(``batching.split_mixed``). Claims are rendered one by one: a claim that cannot be rendered fails
alone (delivering -> failed, with the reason) and waits in a dead-lettered row of its own for
``gateway outbox retry``, while the rest of the batch is delivered.

Sandbox claims (docs/sandbox.md) are handed to sandbox partners only, and production claims never to
one: routing decides so, and every leased row is checked here again against the claims' stored mark,
whatever put it in the outbox (a release, a retry, ``outbox retry --force``, a hand-edited row).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from adapters import load_adapter
from adapters.base import Batch, NotSupported, PartnerAdapter, Receipt
from gateway import metrics
from gateway.bootstrap import App
from gateway.crypto.certs import load_cert, load_private_key
from gateway.crypto.cms import sign_and_encrypt
from gateway.domain.lifecycle import Actor, State
from gateway.domain.model import Claim
from gateway.domain.limitation import STATUTORY, limitation_date
from gateway.domain.sandbox import is_sandbox_client
from gateway.errors import DeliveryError, GatewayError, KeyStoreError, NotFound
from gateway.file_stamp import file_stamp
from gateway.services import batching
from gateway.services.node import LeaseLost
from gateway.services.operations import capabilities, run_operation
from gateway.services.render import BatchMeta, render_each, write_batch
from gateway.store import claims as claim_store
from gateway.store import delivery_rows
from gateway.store import documents as documents_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from gateway.faults import database_broken, describe, is_transient
from gateway.store.outbox import OutboxItem

log = logging.getLogger(__name__)
_SENDABLE = (State.QUEUED.value, State.DELIVERING.value)
# states in which a claim of a batch the partner has just acknowledged has not been moved on by the partner
_NOT_RECEIVED = frozenset({State.QUEUED.value, State.DELIVERING.value, State.FAILED.value})
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Dispatcher:
    """Delivers outbox work; one instance per worker thread or process."""

    app: App
    owner: str
    _adapters: dict[str, PartnerAdapter] = field(default_factory=dict)
    # Loaded once and kept while their files stay the same (``file_stamp``): a partner's new certificate or the gateway's
    # renewed signing key, put in place of the old file, is used from the next batch on, not after a restart.
    _certs: dict[str, tuple[Any, x509.Certificate]] = field(default_factory=dict)
    _signer: tuple[Any, tuple[x509.Certificate, rsa.RSAPrivateKey]] | None = None

    def run_once(self) -> bool:
        """Lease and handle one outbox row; False when nothing was available."""
        item = self.lease()
        if item is None:
            return False
        self.handle(item)
        return True

    def lease(self, busy: Collection[str] = ()) -> OutboxItem | None:
        """The oldest available row of a partner not in ``busy``, leased to this worker."""
        cfg = self.app.config.dispatcher
        with write_tx(self.app.engine) as conn:
            return outbox_store.lease(conn, self.owner, cfg.lease_seconds, now=self.app.now(), busy=tuple(busy),
                                      lease_now=self.app.lease_now(conn))

    def handle(self, item: OutboxItem) -> None:
        """Work on a leased row until it is settled: delivered, backed off or dead (never raises for the
        partner's failures; only for the gateway's own while recording one)."""
        cfg = self.app.config.dispatcher
        metrics.DELIVERY_ATTEMPTS.labels(item.partner_id, item.operation).inc()
        with _Heartbeat(self.app, item, cfg.lease_seconds):
            try:
                if item.operation == "deliver_batch":
                    self._deliver(item)  # checks the sandbox marks it reads with the claims' states
                else:
                    self._check_sandbox(item)
                    run_operation(self, item)
            except LeaseLost:
                # This node stood still past its lease (a frozen VM, a long pause) and another worker has the row
                # now: it records the outcome; nothing more was sent from here once that was seen.
                log.warning("dispatch.lease_lost outbox=%d partner=%s attempt=%d: taken over by another worker; "
                            "not sent from here", item.id, item.partner_id, item.attempts)
            except Exception as exc:  # every failure is recorded on the row, never lost in a log line only
                self._failed(item, exc)

    def drain(self, limit: int = 1_000_000) -> int:
        """Handle rows until none is available; returns how many were handled."""
        n = 0
        while n < limit and self.run_once():
            n += 1
        return n

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()

    def _check_sandbox(self, item: OutboxItem) -> None:
        """Refuse a row that would hand a sandbox claim to a real partner, or a production claim to a sandbox."""
        ids = [int(c) for c in item.payload.get("claim_ids", [])]
        if "claim_id" in item.payload:
            ids.append(int(item.payload["claim_id"]))
        with read_tx(self.app.engine) as conn:
            marks = claim_store.sandbox_marks(conn, ids)
        self._refuse_wrong_sandbox(item, marks)

    def _refuse_wrong_sandbox(self, item: OutboxItem, marks: dict[int, bool]) -> None:
        partner = self.app.config.partners.get(item.partner_id)
        sandbox_partner = bool(partner is not None and partner.sandbox)
        wrong = sorted(c for c, mark in marks.items() if mark != sandbox_partner)
        if wrong or is_sandbox_client(item.client_id) != sandbox_partner:
            what = "production claims to the sandbox" if sandbox_partner else "sandbox claims to the real"
            log.error("dispatch.sandbox_refused outbox=%d partner=%s claims=%d", item.id, item.partner_id,
                      len(wrong))
            raise DeliveryError(f"refused: this row would hand {what} partner {item.partner_id} "
                                f"({len(wrong) or 'all'} claims, first {wrong[0] if wrong else '-'}); "
                                "see docs/sandbox.md", retryable=False)

    # -- one batch -------------------------------------------------------------------------
    def _deliver(self, item: OutboxItem) -> None:
        claim_ids: list[int] = list(item.payload["claim_ids"])
        with write_tx(self.app.engine) as conn:
            # a row taken over while this worker stood still between leasing it and here is not touched
            self._fence(conn, item)
            # one locked read of what every decision below needs; the transition writes from it
            locked = delivery_rows.lock(conn, claim_ids)
            if "claim_id" in item.payload:  # not a batch's field, but a hand-edited row may have it
                self._check_sandbox(item)
            self._refuse_wrong_sandbox(item, {c: f.sandbox for c, f in locked.items()})
            send = [c for c in claim_ids if c in locked and locked[c].state in _SENDABLE]
            shared = {c: (f.claim_client_id, f.currency) for c, f in locked.items()}
            if batching.split_mixed(conn, item, send, now=self.app.now(), shared=shared):
                return
            queued = [c for c in send if locked[c].state == State.QUEUED.value]
            delivery_rows.advance(conn, queued, locked, State.DELIVERING, Actor.SYSTEM, kind="delivery_started",
                                  data={"outbox": item.id, "partner": item.partner_id}, now=self.app.now())
        if not send:  # every claim was cancelled or moved on meanwhile
            with write_tx(self.app.engine) as conn:
                outbox_store.complete(conn, item, {"skipped": "no claim left to deliver"})
            return
        # only claims whose account shows direct payments can have reported ones the batch must carry
        batch, unrendered = self._build(item, send, {c: locked[c].currency for c in send if locked[c].paid_direct})
        receipt = None
        if batch is not None:
            adapter = self._adapter(item.partner_id)
            receipt = self.call(item.partner_id, adapter.deliver, batch, item=item)
        self._record(item, send, receipt, unrendered)

    def call(self, partner_id: str, fn: Callable[[T], R], arg: T, *, item: OutboxItem | None = None) -> R:
        """Call the adapter with quick in-attempt retries (tenacity) on what it declares retryable.

        ``item``: the leased row the call is for; before every try the lease is renewed, or ``LeaseLost`` is
        raised and nothing is sent (see ``_fence``)."""
        policy = self.app.config.partners[partner_id].retry
        retrying = Retrying(stop=stop_after_attempt(max(1, policy.in_call_attempts)),
                            wait=wait_random_exponential(multiplier=policy.in_call_wait_seconds,
                                                         max=policy.in_call_wait_max_seconds),
                            retry=retry_if_exception(lambda e: self._is_retryable(partner_id, e)
                                                     and _asked_to_wait(e) is None), reraise=True)

        def attempt(value: T) -> R:
            if item is not None:
                with write_tx(self.app.engine) as conn:
                    self._fence(conn, item)
            return fn(value)

        return retrying(attempt, arg)

    def _fence(self, conn: Connection, item: OutboxItem) -> None:
        """Renew the row's lease in ``conn``, or raise ``LeaseLost`` when another worker has taken it over.

        A node frozen past its lease (SIGSTOP, a VM freeze, a long pause) wakes in the middle of its work with the
        row leased again to another worker, which sends the same batch and records its outcome. Checked before
        every partner call (an in-call retry included), the stale node sends nothing more; what it had sent
        before it stood still is folded by the partner by the batch id (docs/partners.md), and its late receipt
        settles the row only if no outcome is recorded yet (``outbox.settle_late``). A lease that merely ran out
        while nobody took it (one node) is renewed, and the work goes on."""
        if not outbox_store.renew(conn, item, self.app.config.dispatcher.lease_seconds, self.app.lease_now(conn)):
            raise LeaseLost(f"outbox row {item.id} was taken over by another worker")

    def _build(self, item: OutboxItem, claim_ids: list[int],
               paid_direct: dict[int, str] | None = None) -> tuple[Batch | None, dict[int, str]]:
        """The signed, encrypted batch of the claims that render (None if none does), and why the others did not.

        ``paid_direct``: the claims whose account shows direct payments, with their currency. The payments the
        client reported before the partner had the claim go in the batch with those the claim came with: told
        of none of them, the partner would demand what the debtor has already paid.
        """
        with read_tx(self.app.engine) as conn:
            rows = delivery_rows.fetch_claims(conn, claim_ids)
            direct = delivery_rows.direct_payments(conn, paid_direct) if paid_direct else {}
            # A partner that takes no documents gets their names and hashes, not their bytes.
            with_docs = (delivery_rows.with_documents(conn, claim_ids)
                         if "documents" in capabilities(self.app, item.partner_id) else [])
            docs = documents_store.for_claims(conn, self.app.cipher, with_docs) if with_docs else {}
        unrendered: dict[int, str] = {}

        def claims() -> Iterator[tuple[int, Claim]]:  # decoded as rendered: one claim alive at a time
            for r in delivery_rows.decode_each(self.app.cipher, rows):
                if r.claim is None:  # its stored value does not open or decode: it fails alone
                    unrendered[r.id] = str(r.error)
                else:
                    yield r.id, r.claim

        contents = {cid: {d["sha256"]: d["data"] for d in ds} for cid, ds in docs.items()}
        # split_mixed made the row one client and one currency; a claim that still differs fails alone.
        currency = delivery_rows.currency_of(rows[0]) if rows else "EUR"
        client = self.app.config.clients.get(item.client_id)
        policy = client.limitation if client is not None else STATUTORY
        elements, failed = render_each(claims(), contents, client_id=item.client_id, currency=currency,
                                       limitation=lambda c: limitation_date(c, policy), direct=direct)
        unrendered.update(failed)
        for cid, reason in sorted(unrendered.items()):
            log.warning("dispatch.claim_unrendered outbox=%d claim=%d reason=%s", item.id, cid, reason)
        if not elements:
            return None, unrendered
        batch_id = item.idempotency_key.replace(":", "-")
        meta = BatchMeta(batch_id=batch_id, created_at=self.app.now(), sender=self.app.config.gateway_id,
                         client_id=item.client_id, partner_id=item.partner_id, claim_count=len(elements),
                         total_amount=sum((amount for _, _, amount in elements), Decimal(0)), currency=currency)
        buf = io.BytesIO()
        write_batch(buf, meta, ((element, amount) for _, element, amount in elements))
        cert, key = self._signing()
        payload = sign_and_encrypt(buf.getvalue(), signer_cert=cert, signer_key=key,
                                   recipients=[self._partner_cert(item.partner_id)])
        return Batch(batch_id=batch_id, partner_id=item.partner_id, filename=f"{batch_id}.xml.p7m",
                     payload=payload, claim_ids=[cid for cid, _, _ in elements],
                     content_type="application/pkcs7-mime"), unrendered

    def seal(self, partner_id: str, document: bytes) -> bytes:
        """Sign a document as the gateway and encrypt it to the partner (CMS), like every batch."""
        cert, key = self._signing()
        return sign_and_encrypt(document, signer_cert=cert, signer_key=key,
                                recipients=[self._partner_cert(partner_id)])

    def _record(self, item: OutboxItem, claim_ids: list[int], receipt: Receipt | None,
                unrendered: dict[int, str]) -> None:
        now = self.app.now()
        with write_tx(self.app.engine) as conn:
            if receipt is None:  # nothing rendered: the row itself is the dead letter of its claims
                if outbox_store.fail(conn, item, _summary(unrendered), retry_in=None, now=now):
                    metrics.DEAD_LETTERS.labels(item.partner_id, item.operation).inc()
                    self._fail_alone(conn, item.id, item, unrendered)
                return
            late = False
            if not outbox_store.complete(conn, item, _receipt_doc(receipt), now=now):
                # The lease ran out while the partner answered. Its receipt still stands: unless another worker
                # has recorded one already, it settles the row and the claims (whatever became of them since).
                if not outbox_store.settle_late(conn, item, _receipt_doc(receipt), now=now):
                    log.warning("dispatch.lease_lost outbox=%d: another worker recorded it", item.id)
                    return
                log.warning("dispatch.lease_lost outbox=%d: the partner's late receipt settles it", item.id)
                late = True
            if item.attempts > 1:  # the partner is back after failures: let its backlog go now
                outbox_store.release_waiting(conn, item.partner_id, now=now)
            # it took work: a wait it asked for is over (for the rows queued meanwhile too)
            outbox_store.end_hold(conn, item.partner_id, now=now)
            if unrendered:
                self._park(conn, item, unrendered)
            locked = delivery_rows.lock(conn, claim_ids)
            delivering = [c for c in claim_ids if c in locked and locked[c].state == State.DELIVERING.value
                          and c not in unrendered]
            per_claim = {c: {"partner_reference": receipt.references[c]} for c in delivering
                         if c in receipt.references}
            data = {"partner": item.partner_id, "partner_reference": receipt.partner_reference,
                    "batch": receipt.batch_id, "outbox": item.id}
            # The batch's reference is not a claim's file number (a file partner names only the batch file):
            # a claim gets a file number from its own reference in the receipt, or later from a status.
            delivery_rows.advance(conn, delivering, locked, State.HANDED_OVER, Actor.SYSTEM, kind="receipt",
                                  data=_batch_only(data), per_claim=per_claim, now=now)
            if late:  # given up (failed) or queued again meanwhile: the partner's receipt says it has them
                missed = [c for c in claim_ids if c in locked and c not in unrendered
                          and locked[c].state in (State.FAILED.value, State.QUEUED.value)]
                claim_store.transition(conn, missed, State.HANDED_OVER, Actor.PARTNER, kind="receipt",
                                       data=_batch_only(data),
                                       per_claim={c: {"partner_reference": receipt.references[c]} for c in missed
                                                  if c in receipt.references}, now=now)
            # A partner may push a claim's first status before its answer to the upload is recorded here;
            # the status moved the claim on, but the receipt (the partner's file number) is still news.
            overtaken = [c for c in claim_ids if c in locked and c not in unrendered
                         and locked[c].state not in _NOT_RECEIVED]
            for cid in overtaken:
                ref = receipt.references.get(cid)
                # Without a file number of the claim's own (a file partner names the batch only), the batch's
                # reference must not become the file number: the status already recorded carries the real one.
                claim_store.annotate(conn, cid, Actor.SYSTEM, "receipt",
                                     {**data, "partner_reference": ref} if ref else _batch_only(data), now=now)
        log.info("dispatch.delivered outbox=%d partner=%s claims=%d ref=%s", item.id, item.partner_id,
                 len(delivering), receipt.partner_reference)

    def _park(self, conn: Connection, item: OutboxItem, unrendered: dict[int, str]) -> None:
        """The claims that could not be rendered go to a dead-lettered row of their own: retry re-queues them."""
        # One suffix, never stacked: a parked row retried and parked again gets its own row id in the key.
        key = f"{item.idempotency_key.split(':unrendered:')[0]}:unrendered:{item.id}"
        base = {k: v for k, v in item.payload.items() if k not in ("claim_ids", "split_from", "unrendered_from")}
        payload = {**base, "claim_ids": sorted(unrendered), "unrendered_from": item.id}
        parked = outbox_store.enqueue_dead(conn, key=key, client_id=item.client_id, partner_id=item.partner_id,
                                           operation=batching.DELIVER, payload=payload, error=_summary(unrendered),
                                           now=self.app.now())
        metrics.DEAD_LETTERS.labels(item.partner_id, batching.DELIVER).inc()
        self._fail_alone(conn, parked, item, unrendered)

    def _fail_alone(self, conn: Connection, parked: int, item: OutboxItem, unrendered: dict[int, str]) -> None:
        locked = delivery_rows.lock(conn, list(unrendered))
        ids = [c for c in sorted(unrendered) if c in locked and locked[c].state == State.DELIVERING.value]
        delivery_rows.advance(conn, ids, locked, State.FAILED, Actor.SYSTEM, kind="delivery_failed",
                              data={"outbox": parked, "batch_outbox": item.id, "attempts": item.attempts},
                              per_claim={c: {"error": unrendered[c][:500]} for c in ids}, now=self.app.now())

    def _failed(self, item: OutboxItem, exc: Exception) -> None:
        cfg = self.app.config.dispatcher
        partner = self.app.config.partners.get(item.partner_id)
        max_attempts = (partner.max_attempts if partner and partner.max_attempts else None) or cfg.max_attempts
        # The gateway's own database trouble (a write lock held too long, a connection lost, every pooled connection
        # busy past the pool's timeout; a damaged database file, which ends the gateway) says nothing about the partner:
        # the row is tried again, never dead-lettered for it, its claims are not failed, and the attempt does not count
        # against the partner's max_attempts.
        ours = isinstance(exc, (DBAPIError, PoolTimeout)) and (is_transient(exc) or database_broken(exc))
        retryable = ours or self._is_retryable(item.partner_id, exc)
        retry_for = partner.retry.retry_for_seconds if partner and partner.retry.retry_for_seconds is not None \
            else cfg.retry_for_seconds
        # The window runs from the first failure of this run of failures (recorded by ``fail`` below): a row that
        # waited before its first try (behind its claim's batch, in a busy lane) still has all of it.
        first = item.failing_since if item.failing_since is not None else self.app.now()
        age = (self.app.now() - first).total_seconds() if item.created_at is not None else retry_for
        dead = not retryable or (item.attempts >= max_attempts and age >= retry_for and not ours)
        # The gateway's own errors say what happened in words it composed; any other exception (a library's, a
        # bug's) may carry a value from the claim or the partner's answer in its text: its type and where it
        # was raised are what is kept.
        error = f"{type(exc).__name__}: {exc}" if isinstance(exc, GatewayError) and not ours else describe(exc)
        base = (partner.retry.backoff_base_seconds if partner else None) or cfg.backoff_base_seconds
        cap = (partner.retry.backoff_max_seconds if partner else None) or cfg.backoff_max_seconds
        retry_in = None if dead else outbox_store.backoff(item.attempts, base, cap)
        asked = _asked_to_wait(exc)
        if retry_in is not None and asked is not None:
            retry_in = max(retry_in, asked)  # the partner said when (429/503 Retry-After): no sooner
        now = self.app.now()
        with write_tx(self.app.engine) as conn:
            if not outbox_store.fail(conn, item, error, retry_in=retry_in, now=now, counted=not ours):
                return
            if asked is not None:
                # ... and it said so to the gateway, not to this row: nothing goes to the partner until then, rows
                # queued meanwhile included. The hold is the partner's, in the database (every node and a restarted
                # one wait too); its next success, or the operator's ``outbox retry``, ends it.
                until = now + timedelta(seconds=asked)
                held = outbox_store.hold_partner(
                    conn, item.partner_id, until, f"{outbox_store.held_why(item.partner_id, until)} "
                    f"(HTTP Retry-After {asked:g} s, outbox row {item.id})", now=now)
                log.warning("dispatch.partner_hold partner=%s outbox=%d seconds=%g rows=%d", item.partner_id,
                            item.id, asked, held)
            metrics.DELIVERY_FAILURES.labels(item.partner_id, item.operation).inc()
            if dead:
                metrics.DEAD_LETTERS.labels(item.partner_id, item.operation).inc()
            if dead:
                ids = list(item.payload.get("claim_ids", []))
                locked = delivery_rows.lock(conn, ids)
                delivery_rows.advance(conn, [c for c in ids if c in locked
                                             and locked[c].state == State.DELIVERING.value], locked, State.FAILED,
                                      Actor.SYSTEM, kind="delivery_failed",
                                      data={"outbox": item.id, "error": error[:500], "attempts": item.attempts})
                if "claim_id" in item.payload:  # a per-claim operation: the claim's history says it failed
                    claim_store.annotate(conn, int(item.payload["claim_id"]), Actor.SYSTEM, "partner_op_failed",
                                         {"operation": item.operation, "outbox": item.id, "error": error[:500]})
        log.warning("dispatch.failed outbox=%d partner=%s attempt=%d dead=%s error=%s", item.id, item.partner_id,
                    item.attempts, dead, error)

    def _is_retryable(self, partner_id: str, exc: BaseException) -> bool:
        if isinstance(exc, NotSupported):
            return False
        if isinstance(exc, DeliveryError):
            return exc.retryable
        adapter = self._adapters.get(partner_id)
        return adapter is not None and isinstance(exc, adapter.retryable)

    # -- parts, loaded once per worker -------------------------------------------------------
    def _adapter(self, partner_id: str) -> PartnerAdapter:
        if partner_id not in self._adapters:
            self._adapters[partner_id] = open_adapter(self.app, partner_id)
        return self._adapters[partner_id]

    # The gateway's own key material missing or unreadable (a certificate not yet copied in, a volume not mounted)
    # is the operator's to mend, not the partner's refusal: the row is tried again with backoff (and dead only
    # after max_attempts and retry_for_seconds), and goes out by itself once the file is there.
    def _partner_cert(self, partner_id: str) -> x509.Certificate:
        path = self.app.config.path(self.app.config.partners[partner_id].certificate)
        stamp = file_stamp(path)
        cached = self._certs.get(partner_id)
        if cached is not None and stamp is not None and cached[0] == stamp:
            return cached[1]
        try:
            cert = load_cert(path)
        except KeyStoreError as exc:
            raise DeliveryError(f"partner {partner_id}: its certificate: {exc}", retryable=True) from None
        self._certs[partner_id] = (stamp, cert)
        return cert

    def _signing(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        stamp = (file_stamp(self.app.signing_key_path), file_stamp(self.app.signing_cert_path))
        if self._signer is not None and None not in stamp and self._signer[0] == stamp:
            return self._signer[1]
        try:
            key = load_private_key(self.app.signing_key_path)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise KeyStoreError(f"{self.app.signing_key_path}: the signing key must be RSA")
            cert = load_cert(self.app.signing_cert_path)
            # Replaced in place, the key and its certificate are two files, renewed one after the other: a batch
            # signed in between would carry a certificate its signature does not verify against (the CMS builder
            # signs with any pair), and the agency could not check it. It waits until both are in place.
            if _spki(cert.public_key()) != _spki(key.public_key()):
                raise KeyStoreError(f"{self.app.signing_cert_path} is not the certificate of "
                                    f"{self.app.signing_key_path} (one of them replaced, the other not yet?)")
            signer = (cert, key)
        except KeyStoreError as exc:
            raise DeliveryError(f"the gateway's signing key: {exc}", retryable=True) from None
        self._signer = (stamp, signer)
        return signer


def _spki(public_key: Any) -> bytes:
    """A public key as DER (SubjectPublicKeyInfo), to tell whether a certificate is a private key's."""
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


class Lanes:
    """Partners side by side: one row at a time per partner, up to ``width`` partners at once.

    With one delivery at a time for all partners, a partner that hangs until its timeouts (a minute and more
    per attempt, with the in-call retries) held up every other partner's deliveries and instructions on the
    node. ``step`` leases the oldest row of a partner that has nothing in flight and hands it to a thread of
    its own; it returns at once, so the supervised task stays live however slow a partner is. A row's
    failure is recorded on the row (``Dispatcher.handle``); an exception that escapes that (the gateway's own
    database while recording it) is raised by the next ``step``, for the supervisor to count and back off.
    """

    def __init__(self, dispatcher: Dispatcher, width: int, slow_seconds: float = 300.0) -> None:
        self.dispatcher, self.width, self.slow_seconds = dispatcher, max(1, width), slow_seconds
        self._pool = ThreadPoolExecutor(self.width, thread_name_prefix="dispatch")
        self._busy: dict[str, tuple[Future[None], OutboxItem, float]] = {}  # partner -> its row in flight
        self._named: set[int] = set()

    def step(self, wait_seconds: float = 0.0) -> bool:
        """Collect finished rows and start the next one; True when one was started. With nothing to start
        while rows are in flight, waits up to ``wait_seconds`` for one of them to finish, so that a partner's
        next row follows its last at once rather than a poll interval later."""
        self._collect()
        if self._start_next():
            return True
        if not self._busy or wait_seconds <= 0:
            return False
        wait([future for future, _, _ in self._busy.values()], timeout=wait_seconds, return_when=FIRST_COMPLETED)
        self._collect()
        return self._start_next()

    def _start_next(self) -> bool:
        # Stopping: the step that was running when the signal came must not hand a partner new work (the rows in
        # flight get the stop grace; one started now would only be abandoned, its partner called for nothing).
        if len(self._busy) >= self.width or self.dispatcher.app.stopping.is_set():
            return False
        item = self.dispatcher.lease(busy=self._busy)
        if item is None:
            return False
        self._busy[item.partner_id] = (self._pool.submit(self.dispatcher.handle, item), item, time.monotonic())
        return True

    def in_flight(self) -> int:
        return len(self._busy)

    def ages(self) -> dict[str, float]:
        """Partner -> seconds its row in flight has been worked on (health and metrics)."""
        now = time.monotonic()
        return {partner: now - started for partner, (_, _, started) in list(self._busy.items())}

    def _collect(self) -> None:
        failure: BaseException | None = None
        for partner, (future, item, started) in list(self._busy.items()):
            if not future.done():
                if time.monotonic() - started > self.slow_seconds and item.id not in self._named:
                    self._named.add(item.id)
                    log.warning("dispatch.slow outbox=%d partner=%s seconds=%.0f: still working on it", item.id,
                                partner, time.monotonic() - started)
                continue
            del self._busy[partner]
            self._named.discard(item.id)
            exc = future.exception()
            if exc is not None and failure is None:
                failure = exc
            elif exc is not None:  # one is raised for the supervisor; the others would be lost with their threads
                log.error("dispatch.row_failed outbox=%d partner=%s error=%s", item.id, partner, describe(exc))
        if failure is not None:
            raise failure

    def wait(self, timeout: float) -> bool:
        """Wait for the rows in flight (stopping); False if some are still being worked on after ``timeout``."""
        pending = [future for future, _, _ in self._busy.values()]
        _, not_done = wait(pending, timeout=timeout)
        return not not_done

    def close(self) -> None:
        # What escaped a row's handling after the last step has no next step to raise it: it is logged here.
        for partner, (future, item, _) in list(self._busy.items()):
            exc = future.exception() if future.done() and not future.cancelled() else None
            if exc is not None:
                log.error("dispatch.row_failed outbox=%d partner=%s error=%s", item.id, partner, describe(exc))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.dispatcher.close()


class _Heartbeat:
    """Renews a leased row every third of its lease while it is worked on, so a lease can stay short.

    A node that dies stops renewing, and its row is free again within one lease (60 s by default)
    instead of waiting out a lease long enough for the slowest delivery.
    """

    def __init__(self, app: App, item: OutboxItem, lease_seconds: float) -> None:
        self.app, self.item, self.seconds = app, item, lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"outbox-heartbeat-{item.id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                with write_tx(self.app.engine) as conn:
                    if not outbox_store.renew(conn, self.item, self.seconds, self.app.lease_now(conn)):
                        return  # taken over (an operator's --force, or it ran out): the settle will say so
            except Exception as exc:  # noqa: BLE001 - a missed beat only shortens the lease
                log.warning("dispatch.heartbeat_failed outbox=%d error=%s", self.item.id, describe(exc))

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def open_adapter(app: App, partner_id: str) -> PartnerAdapter:
    """The configured adapter of a partner, with path options made absolute against base_dir."""
    pcfg = app.config.partners.get(partner_id)
    if pcfg is None:
        raise DeliveryError(f"partner '{partner_id}' is not configured", retryable=False)
    options = dict(pcfg.options)
    for key in ("path", "status_path", "known_hosts", "client_key", "ca_file"):
        if key in options:
            options[key] = str(app.config.path(str(options[key])))
    return load_adapter(pcfg.adapter, partner_id, options)


def _asked_to_wait(exc: BaseException) -> float | None:
    """Seconds a partner asked the gateway to wait before the next try (no quick in-call retry then)."""
    return exc.retry_after if isinstance(exc, DeliveryError) else None


def _summary(unrendered: dict[int, str]) -> str:
    first = min(unrendered)
    more = f" (and {len(unrendered) - 1} more claims)" if len(unrendered) > 1 else ""
    return f"could not render {len(unrendered)} claims: {unrendered[first]}{more}"


def _batch_only(data: dict[str, Any]) -> dict[str, Any]:
    """A receipt's event data with the batch's reference kept as ``batch_reference``: the projection takes
    every ``partner_reference`` as the claim's file number."""
    out = {k: v for k, v in data.items() if k != "partner_reference"}
    if data.get("partner_reference"):
        out["batch_reference"] = data["partner_reference"]
    return out


def _receipt_doc(receipt: Receipt) -> dict[str, Any]:
    delivered: datetime = receipt.delivered_at
    return {"batch_id": receipt.batch_id, "partner_reference": receipt.partner_reference,
            "delivered_at": delivered.isoformat(), "detail": receipt.detail, "claims": len(receipt.references)}


def retry_all_dead(app: App, partner_id: str | None = None) -> tuple[int, int]:
    """Operator: every dead-lettered row (of ``partner_id`` only, if given) delivered again, each as
    ``retry_dead`` does it, in its own transaction. Returns the rows and the failed claims queued again."""
    with read_tx(app.engine) as conn:
        ids = outbox_store.dead_ids(conn, partner_id)
    claims = 0
    for outbox_id in ids:
        try:
            claims += retry_dead(app, outbox_id)
        except NotFound:  # retried or settled meanwhile (another operator, a late receipt)
            continue
    return len(ids), claims


def release_waiting_rows(app: App, partner_id: str) -> int:
    """Operator: every row of the partner waiting for a later try (its backoff, or the partner's ``Retry-After`` hold,
    which ends) becomes due now, for when the partner is known to be back before the wait is over. Returns how many."""
    with write_tx(app.engine) as conn:
        return outbox_store.due_now(conn, partner_id, now=app.now())


def retry_dead(app: App, outbox_id: int) -> int:
    """Operator: deliver a dead-lettered row again; its failed claims go back to queued. Returns their count."""
    with write_tx(app.engine) as conn:
        row = outbox_store.get(conn, outbox_id)
        outbox_store.retry(conn, outbox_id, now=app.now())
        ids = list(outbox_store.loads(row["payload"]).get("claim_ids", []))
        states = claim_store.current_states(conn, ids, lock=True)
        failed = [c for c in ids if states.get(c) is State.FAILED]
        claim_store.transition(conn, failed, State.QUEUED, Actor.OPERATOR, kind="retry",
                               data={"outbox": outbox_id}, now=app.now())
    return len(failed)

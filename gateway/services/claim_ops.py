"""Client operations on stored claims: release (a collection run), cancel, report a direct payment,
message the partner, refresh, set labels, request long-term monitoring.

Each is recorded at once as a claim event (a transition or an annotation) and, when the partner
already has the claim, as an outbox row in the same transaction; the delivery layer forwards it. A direct
payment reported before the partner has the claim travels in the claim's batch instead, and one that leaves
nothing open closes the claim as paid there and then (``paid_before_handover``): it is never handed over.
A message to a claim queued for its partner is queued too and waits for the claim's receipt
(``operations``); if the claim ends before the partner gets it, the request is settled as not forwarded.
Outbox operations and payloads (agreed with the delivery layer):
``cancel {claim_id, reason}``, ``report_payment {claim_id, amount, currency, date}``,
``send_message {claim_id, message_id}`` (the text is read from ``messages`` when sent), ``request_monitoring {claim_id}``,
``refresh {claim_id}``, ``set_labels {claim_id, labels}``, and ``deliver_batch {run, claim_ids}``.
A client only ever sees its own claims: another client's claim id is "no claim", like an unknown one.
An operation the claim's partner does not accept (``operations.require``) is refused with ``Unsupported``
before anything is written; ``forwarded`` is true only for a row queued for a partner that accepts it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from gateway.bootstrap import App
from gateway.domain.account import Entry, OverpaymentRefused, book
from gateway.domain.lifecycle import TERMINAL, Actor, State
from gateway.domain.model import minor_digits
from gateway.domain.rules import MAX_AMOUNT
from gateway.errors import GatewayError, IllegalTransition, NotFound
from gateway.store import claims as claim_store
from gateway.store import event_notes
from gateway.store import labels as label_store
from gateway.store import messages as message_store
from gateway.store import outbox as outbox_store
from gateway.store import submissions as sub_store
from gateway.services import operations
from gateway.services.batching import enqueue_deliveries
from gateway.services.limitation_release import MAX_REASON, NEEDS_REASON, TIME_BARRED, time_barred
from gateway.services.submit import serial_write_tx
from gateway.store.db import read_tx
from gateway.store.projection import account_of
from gateway.store.schema import claim_events, claims

log = logging.getLogger(__name__)
# States in which the partner has (or is being sent) the claim, so a request is forwarded to it.
AT_PARTNER = frozenset({State.DELIVERING, State.HANDED_OVER, State.IN_PROGRESS, State.PAUSED, State.DISPUTED,
                        State.INSTALMENT_PLAN, State.FAILED})
# A message also follows a claim queued for its partner: it waits in the outbox for the claim's receipt.
MESSAGE_REACH = AT_PARTNER | {State.QUEUED}
MAX_LABELS, MAX_LABEL_LEN, MAX_MESSAGE_LEN = 50, 64, 10_000


class InvalidRequest(GatewayError):
    """A client request whose values cannot be accepted (``field`` names which)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


@dataclass
class OpResult:
    claim_id: int
    state: str
    event_id: int | None
    forwarded: bool  # an outbox row for the partner was written
    message_id: int | None = None


@dataclass
class ReleaseResult:
    run: str
    released: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (claim id, why)


def owned_row(conn: Connection, client_id: str, claim_id: int) -> RowMapping:
    """The claim row if it belongs to ``client_id``; NotFound otherwise (same answer as an unknown id)."""
    row = conn.execute(select(claims.c.id, claims.c.client_id, claims.c.partner_id, claims.c.currency,
                              claims.c.submission_id).where(claims.c.id == claim_id)).mappings().first()
    if row is None or row["client_id"] != client_id:
        raise NotFound(f"no claim {claim_id}")
    return row


def _state(conn: Connection, claim_id: int) -> State:
    return claim_store.current_states(conn, [claim_id], lock=True)[claim_id]


def _forward(app: App, conn: Connection, row: RowMapping, state: State, operation: str, event_id: int,
             payload: dict[str, Any], reach: frozenset[State] = AT_PARTNER) -> bool:
    if not row["partner_id"] or state not in reach:
        return False  # the partner never had the claim: the event is the whole record
    if not operations.accepts(app, row["partner_id"], operation):
        # Labels are the client's own flags, and a failed claim is (as far as we know) not at the partner:
        # kept here, not passed on. Anything else the partner must hear is refused, and the transaction
        # (the client's event with it) rolls back: nothing is recorded as forwarded that cannot be.
        if operation == "set_labels" or state is State.FAILED:
            return False
        operations.require(app, row["partner_id"], operation)
    outbox_store.enqueue(conn, key=f"{operation}:{row['id']}:{event_id}", client_id=row["client_id"],
                         partner_id=row["partner_id"], operation=operation,
                         payload={"claim_id": row["id"], **payload}, now=app.now())
    return True


def _annotate(app: App, client_id: str, claim_id: int, kind: str, operation: str, data: dict[str, Any],
              payload: dict[str, Any], *, allow_final: bool = False,
              also: Callable[[Connection], None] | None = None) -> OpResult:
    with serial_write_tx(app) as conn:
        row = owned_row(conn, client_id, claim_id)
        state = _state(conn, claim_id)
        if state in TERMINAL and not allow_final:
            raise IllegalTransition(state.value, state.value, Actor.CLIENT.value, f"{state.value} is final",
                                    claim_id=claim_id)
        if also is not None:
            also(conn)
        event_id = claim_store.annotate(conn, claim_id, Actor.CLIENT, kind, data, now=app.now())
        forwarded = _forward(app, conn, row, state, operation, event_id, payload)
    log.info("claim_ops.%s client=%s claim=%d forwarded=%s", kind, client_id, claim_id, forwarded)
    return OpResult(claim_id, state.value, event_id, forwarded)


def cancel(app: App, client_id: str, claim_id: int, reason: str | None) -> OpResult:
    """Cancel: at once if the partner never had the claim, else requested from the partner."""
    reason = (reason or "").strip()[:1000]
    with serial_write_tx(app) as conn:
        row = owned_row(conn, client_id, claim_id)
        state = _state(conn, claim_id)
        # Sealed under the claim's key, in the history and in the partner's request alike: free text may name
        # the debtor, and an erasure must take it with the claim's personal data (store/event_notes.py).
        sealed = event_notes.seal_reason(conn, app.cipher, claim_id, reason)
        if state in (State.HELD, State.QUEUED, State.FAILED):
            claim_store.transition(conn, [claim_id], State.CANCELLED_BY_CLIENT, Actor.CLIENT, kind="cancelled",
                                   data=sealed or None, now=app.now())
            event_id = int(conn.execute(select(claim_events.c.id).where(claim_events.c.claim_id == claim_id)
                                        .order_by(claim_events.c.id.desc()).limit(1)).scalar_one())
            new_state = State.CANCELLED_BY_CLIENT
        elif state in TERMINAL or state is State.RECEIVED:
            raise IllegalTransition(state.value, State.CANCELLED_BY_CLIENT.value, Actor.CLIENT.value,
                                    f"{state.value} is final" if state in TERMINAL else "not yet stored",
                                    claim_id=claim_id)
        else:  # the partner works it: only the partner can close it; we ask
            event_id = claim_store.annotate(conn, claim_id, Actor.CLIENT, "cancel_requested", sealed or None,
                                            now=app.now())
            new_state = state
        forwarded = _forward(app, conn, row, _as_the_partner_may_have_it(conn, claim_id, state), "cancel", event_id,
                             sealed)
    log.info("claim_ops.cancel client=%s claim=%d from=%s forwarded=%s", client_id, claim_id, state.value, forwarded)
    return OpResult(claim_id, new_state.value, event_id, forwarded)


def _as_the_partner_may_have_it(conn: Connection, claim_id: int, state: State) -> State:
    """``state``, except a claim queued again after a delivery that was given up (or held again by the operator
    after that) counts as failed: the partner may have it from the batch whose answer never came, so a request
    must reach it."""
    if state not in (State.QUEUED, State.HELD):
        return state
    q = select(claim_events.c.id).where(claim_events.c.claim_id == claim_id, claim_events.c.kind == "delivery_failed")
    return State.FAILED if conn.execute(q.limit(1)).first() is not None else state


def report_payment(app: App, client_id: str, claim_id: int, amount: Decimal, on: date,
                   currency: str | None = None, overpayment: bool = False) -> OpResult:
    """The debtor paid the client directly: record it and tell the partner.

    A partner that has the claim (or may have it: a delivery failed, or queued again after one) gets a
    request (``forwarded``). A claim it does not have yet (held, queued) carries the payment in its batch
    when it is handed over, with the payments it came with (``dispatch``, ``delivery_rows.direct_payments``);
    ``forwarded`` is false then. Such a claim that the payment leaves with nothing open (an overpayment
    included) is not handed over at all: it is closed as paid in the same transaction (``closed_paid``,
    event ``paid_before_handover``) and the answer's state says so. More than the open amount is refused
    unless ``overpayment`` says the client means it.
    """
    with read_tx(app.engine) as conn:
        claim_currency = owned_row(conn, client_id, claim_id)["currency"]
    currency = (currency or claim_currency).upper()
    if currency != claim_currency:
        raise InvalidRequest(f"the claim is in {claim_currency}, the payment in {currency}", "currency")
    if not amount.is_finite() or amount <= 0:
        raise InvalidRequest(f"amount must be greater than 0, got {amount}", "amount")
    if amount > MAX_AMOUNT:  # as a claim's amounts: beyond, the minor units overflow the database's integer
        raise InvalidRequest(f"{amount} is a billion or more: not a payment the gateway takes", "amount")
    if -amount.as_tuple().exponent > minor_digits(currency):  # type: ignore[operator]
        raise InvalidRequest(f"{amount} has more decimal places than {currency} allows", "amount")
    if on > app.today():
        raise InvalidRequest(f"payment date {on} is in the future", "date")
    doc: dict[str, Any] = {"amount": str(amount), "currency": currency, "date": on.isoformat()}
    if overpayment:
        doc["overpayment"] = True
    with serial_write_tx(app) as conn:
        row = owned_row(conn, client_id, claim_id)
        state = _state(conn, claim_id)  # the claim's lock: a batch cannot take it between this and the commit
        if state in TERMINAL:
            raise IllegalTransition(state.value, state.value, Actor.CLIENT.value, f"{state.value} is final",
                                    claim_id=claim_id)
        try:  # checked under the claim's lock, in the booking's transaction
            book(account_of(claim_store.current(conn, claim_id, lock=True)), Entry.PAYMENT_DIRECT, amount,
                 allow_overpayment=overpayment)
        except OverpaymentRefused as exc:
            raise InvalidRequest(str(exc), "amount") from None
        event_id = claim_store.annotate(conn, claim_id, Actor.CLIENT, "payment_reported", doc, now=app.now())
        # Queued again after a failed delivery: the partner may have the claim from that batch, and the batch
        # sent again under its id would be taken as the one it has; a request (waiting for the receipt) reaches it.
        told = _as_the_partner_may_have_it(conn, claim_id, state)
        new_state, forwarded = state, False
        if told in (State.HELD, State.QUEUED) and claim_store.current(conn, claim_id)["open_minor"] == 0:
            # Handed over with 0 open, the agency would still open a case and dun a debtor who has paid (and
            # charge collection costs nobody owes). The partner never had it: there is nobody to tell.
            claim_store.transition(conn, [claim_id], State.CLOSED_PAID, Actor.CLIENT, kind="paid_before_handover",
                                   data={"payment_event": event_id}, now=app.now())
            new_state = State.CLOSED_PAID
        else:
            forwarded = _forward(app, conn, row, told, "report_payment", event_id, doc)
    log.info("claim_ops.payment_reported client=%s claim=%d from=%s to=%s forwarded=%s", client_id, claim_id,
             state.value, new_state.value, forwarded)
    return OpResult(claim_id, new_state.value, event_id, forwarded)


def send_message(app: App, client_id: str, claim_id: int, text: str) -> OpResult:
    """A message to the partner about the claim; stored encrypted, forwarded.

    A claim queued for its partner is about to be handed over: the message is queued like a request to a
    claim the partner has, and waits in the outbox for the claim's receipt (``operations``), so the partner
    hears it once it knows the claim (settled as not forwarded if the claim ends before that). A held claim
    may never go (a staged run, a minor, the operator's hold): its message is the gateway's record only
    (``forwarded`` false), unless an earlier delivery was given up and the partner may have it.
    """
    text = text.strip()
    if not text:
        raise InvalidRequest("the message is empty", "text")
    if len(text) > MAX_MESSAGE_LEN:
        raise InvalidRequest(f"the message has {len(text)} characters, at most {MAX_MESSAGE_LEN} allowed", "text")
    with serial_write_tx(app) as conn:
        row = owned_row(conn, client_id, claim_id)
        state = _state(conn, claim_id)
        if state in TERMINAL:
            raise IllegalTransition(state.value, state.value, Actor.CLIENT.value, f"{state.value} is final",
                                    claim_id=claim_id)
        mid = message_store.add(conn, app.cipher, claim_id=claim_id, client_id=client_id, direction="to_partner",
                                text=text, now=app.now())
        assert mid is not None  # outbound messages carry no partner id, so they never collide
        event_id = claim_store.annotate(conn, claim_id, Actor.CLIENT, "message_sent", {"message_id": mid},
                                        now=app.now())
        forwarded = _forward(app, conn, row, _as_the_partner_may_have_it(conn, claim_id, state), "send_message",
                             event_id, {"message_id": mid}, reach=MESSAGE_REACH)  # the text stays encrypted
    log.info("claim_ops.message_sent client=%s claim=%d state=%s forwarded=%s", client_id, claim_id, state.value,
             forwarded)
    return OpResult(claim_id, state.value, event_id, forwarded, message_id=mid)


def messages(app: App, client_id: str, claim_id: int, after_id: int = 0) -> list[dict[str, Any]]:
    """The claim's messages both ways after ``after_id``, oldest first."""
    with read_tx(app.engine) as conn:
        owned_row(conn, client_id, claim_id)
        return message_store.for_claim(conn, app.cipher, claim_id, after_id=after_id)


def _partner_has_it(conn: Connection, claim_id: int) -> None:
    # A request only the partner can answer is refused while the partner does not have the claim (held,
    # queued, failed): recorded without being forwarded, it would be dropped without anyone knowing.
    state = _state(conn, claim_id)
    if state not in AT_PARTNER or state is State.FAILED:
        raise IllegalTransition(state.value, state.value, Actor.CLIENT.value,
                                f"the agency does not have the claim ({state.value})", claim_id=claim_id)


def refresh(app: App, client_id: str, claim_id: int) -> OpResult:
    """Ask the partner for the claim's current status."""
    return _annotate(app, client_id, claim_id, "refresh_requested", "refresh", {}, {},
                     also=lambda conn: _partner_has_it(conn, claim_id))


def request_monitoring(app: App, client_id: str, claim_id: int) -> OpResult:
    """Ask the partner to move the claim into long-term monitoring."""
    return _annotate(app, client_id, claim_id, "monitoring_requested", "request_monitoring", {}, {},
                     also=lambda conn: _partner_has_it(conn, claim_id))


def clean_labels(labels: list[str]) -> list[str]:
    """Labels trimmed, deduplicated and sorted; InvalidRequest for too many or too long."""
    clean = sorted({label.strip() for label in labels if label and label.strip()})
    if len(clean) > MAX_LABELS:
        raise InvalidRequest(f"{len(clean)} labels, at most {MAX_LABELS} allowed", "labels")
    for label in clean:
        if len(label) > MAX_LABEL_LEN:
            raise InvalidRequest(f"label '{label[:20]}...' is longer than {MAX_LABEL_LEN} characters", "labels")
    return clean


def set_labels(app: App, client_id: str, claim_id: int, labels: list[str]) -> OpResult:
    """Replace the claim's labels (client-defined flags); allowed on closed claims too."""
    clean = clean_labels(labels)
    return _annotate(app, client_id, claim_id, "labels_set", "set_labels", {"labels": clean}, {"labels": clean},
                     allow_final=True, also=lambda conn: label_store.replace(conn, claim_id, clean))


def _relabel(app: App, conn: Connection, row: RowMapping, labels: list[str]) -> OpResult:
    claim_id = int(row["id"])
    state = _state(conn, claim_id)
    label_store.replace(conn, claim_id, labels)
    event_id = claim_store.annotate(conn, claim_id, Actor.CLIENT, "labels_set", {"labels": labels}, now=app.now())
    forwarded = _forward(app, conn, row, state, "set_labels", event_id, {"labels": labels})
    return OpResult(claim_id, state.value, event_id, forwarded)


def edit_labels(app: App, client_id: str, claim_id: int, *, add: Sequence[str] = (),
                remove: Sequence[str] = ()) -> OpResult:
    """Attach and detach labels on a claim, read and written under the claim's lock (two edits at once both
    count); the result is recorded and forwarded like ``set_labels``."""
    with serial_write_tx(app) as conn:
        row = owned_row(conn, client_id, claim_id)
        _state(conn, claim_id)  # the lock, before the labels are read
        now = label_store.for_claims(conn, [claim_id]).get(claim_id, [])
        gone = {label.strip() for label in remove}
        result = _relabel(app, conn, row, clean_labels([*(label for label in now if label not in gone), *add]))
    log.info("claim_ops.labels_set client=%s claim=%d forwarded=%s", client_id, claim_id, result.forwarded)
    return result


LABEL_BATCH = 500  # claims relabelled per transaction when a label is renamed or deleted


def _relabel_all(app: App, client_id: str, label: str, change: Callable[[list[str]], list[str]],
                 first: Callable[[Connection], None]) -> int:
    """``first`` (the catalogue change), then ``change`` applied to the labels of every claim of the client
    that carries ``label``: LABEL_BATCH claims per transaction, each batch whole, so a label on 100k claims
    does not hold the database in one long transaction. Each batch locks its claims (in id order) before it
    reads their labels: a label attached meanwhile by ``edit_labels`` is kept. The number of claims changed."""
    changed, start = 0, True
    while True:
        with serial_write_tx(app) as conn:
            if start:
                first(conn)
                start = False
            ids = label_store.claims_with(conn, client_id, label, limit=LABEL_BATCH)
            if not ids:
                return changed
            claim_store.current_states(conn, ids, lock=True)
            now = label_store.for_claims(conn, ids)
            for cid in ids:
                if label in now.get(cid, []):  # else another writer took it off while we waited for the lock
                    _relabel(app, conn, owned_row(conn, client_id, cid), change(now[cid]))
                    changed += 1


def rename_label(app: App, client_id: str, old: str, new: str) -> int:
    """Rename a label of the client's catalogue and on every claim of the client that carries it (each such
    claim gets its ``labels_set`` event, forwarded like any label change); the number of claims changed.
    InvalidRequest if ``new`` is taken or ``old`` unknown. The claims move in batches (``_relabel_all``): if
    the process stops halfway, the rest still carry ``old`` (out of the catalogue), and renaming ``old`` again
    (allowed for a name that is on claims but not defined) finishes the move."""
    old, new = old.strip(), (clean_labels([new]) or [""])[0]
    if not new:
        raise InvalidRequest("the new name is empty", "name")

    def catalogue(conn: Connection) -> None:
        defined = label_store.catalogue(conn, client_id)
        if old in defined:
            if new != old and (new in defined or label_store.claims_with(conn, client_id, new, limit=1)):
                raise InvalidRequest(f"a label named '{new}' exists already", "name")
            label_store.rename_defined(conn, client_id, old, new)
        elif not label_store.claims_with(conn, client_id, old, limit=1):
            raise InvalidRequest("no such label", "label")
    if new == old:
        with serial_write_tx(app) as conn:
            catalogue(conn)
        return 0
    changed = _relabel_all(app, client_id, old,
                           lambda now: clean_labels([new if label == old else label for label in now]), catalogue)
    log.info("claim_ops.label_renamed client=%s claims=%d", client_id, changed)
    return changed


def delete_label(app: App, client_id: str, name: str) -> int:
    """Take a label out of the client's catalogue and off every claim of the client that carries it (each
    such claim gets its ``labels_set`` event, in batches: ``_relabel_all``); the number of claims changed."""
    name = name.strip()
    changed = _relabel_all(app, client_id, name, lambda now: [label for label in now if label != name],
                           lambda conn: label_store.remove_defined(conn, client_id, name))
    log.info("claim_ops.label_deleted client=%s claims=%d", client_id, changed)
    return changed


def release(app: App, client_id: str, *, claim_ids: list[int] | None = None,
            submission: str | None = None, reason: str | None = None) -> ReleaseResult:
    """Start the handover of held claims (a collection run): held -> queued, one outbox row per partner.

    A time-barred claim is released only with a ``reason`` (recorded in its ``released`` event); without
    one it is skipped, saying so.
    """
    if not claim_ids and not submission:
        raise InvalidRequest("name the claims or the submission to release", "claim_ids")
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidRequest(f"the reason has {len(reason)} characters, at most {MAX_REASON} allowed", "reason")
    now = app.now()
    run = f"R{now:%Y%m%d}-{secrets.token_hex(4).upper()}"
    result = ReleaseResult(run=run)
    with serial_write_tx(app) as conn:
        ids = list(dict.fromkeys(claim_ids or []))
        for cid in ids:
            owned_row(conn, client_id, cid)
        if submission:
            sub = sub_store.get_owned(conn, submission, client_id)
            in_sub = [r[0] for r in conn.execute(select(claims.c.id).where(claims.c.submission_id == sub["id"])
                                                 .order_by(claims.c.id))]
            states = claim_store.current_states(conn, in_sub)
            ids += [c for c in in_sub if states.get(c) is State.HELD and c not in ids]
        rows = claim_store.rows_by_ids(conn, ids)
        shared = {r["id"]: (r["partner_id"], r["currency"]) for r in rows}
        partners = {c: partner for c, (partner, _) in shared.items()}
        go = [c for c in ids if partners.get(c)]
        result.skipped = [(c, "no partner is configured for this claim: the operator must route it")
                          for c in ids if not partners.get(c)]
        barred = time_barred((r for r in rows if partners.get(r["id"])),
                             app.config.client(client_id).limitation, app.today())
        if barred and reason is None:
            result.skipped += [(c, NEEDS_REASON) for c in go if c in barred]
            go = [c for c in go if c not in barred]
        sealed = event_notes.seal_reasons(conn, app.cipher, go, reason)
        per_claim = {c: {**sealed[c], **({"codes": [TIME_BARRED]} if c in barred else {})} for c in go}
        claim_store.transition(conn, go, State.QUEUED, Actor.CLIENT, kind="released", data={"run": run},
                               per_claim=per_claim, now=now)
        enqueue_deliveries(conn, prefix=f"release:{run}", client_id=client_id, size=app.config.dispatcher.batch_size,
                           members=[(c, *shared[c]) for c in go], payload={"run": run}, now=now)
        result.released = go
    log.info("claim_ops.release client=%s run=%s released=%d skipped=%d", client_id, run, len(result.released),
             len(result.skipped))
    return result

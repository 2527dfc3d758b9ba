"""Status back from partners: apply updates (pulled, pushed or refreshed) as claim events.

Each partner code maps onto the lifecycle through ``PartnerConfig.status_map`` ("in_progress" or
"in_progress:court_dunning"); an unknown code is kept verbatim as a ``partner_status_unknown`` event,
never dropped. Every update is applied once per partner update id, so a webhook push and a later pull
of the same update change nothing twice; a status older (by its ``occurred_at``) than one already applied
to the claim is kept as ``partner_status_stale`` and does not set the claim back.

Amounts (agency payments, payouts to the creditor, costs, interest, fees, write-offs) are booked into the
claim's case account as events of their own; the projection folds them (``domain/account.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapters.base import INSTRUCTION_RECEIVED, PartnerUpdate, safe_code
from gateway.bootstrap import App
from gateway.domain.lifecycle import TERMINAL, Actor, Stage, State
from gateway.domain.model import to_minor
from gateway.errors import ConfigError, IllegalTransition, Interrupted
from gateway.store import claims as claim_store
from gateway.store import messages as message_store
from gateway.store.schema import (claim_current, claim_events, claims, outbox, partner_sync, partner_updates,
                                  submissions)
from gateway.store.sql import loads, utcnow

log = logging.getLogger(__name__)
# Update kinds that carry an amount for the case account, and the event kind each is booked as
# (store/projection.py BOOKINGS). A status code may map to one too: ``status_map: {AUSZ: account:payout}``.
BOOKING_KINDS = {"payment": "partner_payment", "payout": "partner_payout", "costs": "partner_costs",
                 "interest": "partner_interest", "fee": "partner_fee", "write_off": "partner_write_off"}

# States of a claim whose receipt the gateway has not recorded; a partner that speaks about it has it.
_UNCONFIRMED = frozenset({State.QUEUED, State.DELIVERING, State.FAILED})
_AFTER_HANDOVER = frozenset({State.HANDED_OVER, State.IN_PROGRESS, State.PAUSED, State.DISPUTED,
                             State.INSTALMENT_PLAN}) | TERMINAL


@dataclass
class ApplyResult:
    """What a page of updates did, by outcome (applied, duplicate, unknown_code, unknown_claim, not_sent, illegal,
    stale, recorded, invalid_amount, invalid_update, unknown_instruction)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def status_target(app: App, partner_id: str, code: str) -> tuple[State, Stage | None] | None:
    """The canonical state (and stage) a partner code maps to; None for an unknown code."""
    spec = app.config.partners[partner_id].status_map.get(code)
    if spec is None:
        return None
    state, _, stage = spec.partition(":")
    try:
        return State(state), Stage(stage) if stage else None
    except ValueError:
        raise ConfigError(f"status code {code!r} maps to {spec!r}, which is not a state[:stage]",
                          file=app.config.source, key=f"partners.{partner_id}.status_map") from None


def apply_updates(app: App, partner_id: str, updates: Sequence[PartnerUpdate], *,
                  conn: Connection | None = None) -> ApplyResult:
    """Record every update once as claim events, in the caller's transaction if given."""
    if conn is None:
        from gateway.store.db import write_tx
        with write_tx(app.engine) as c:
            return apply_updates(app, partner_id, updates, conn=c)
    result = ApplyResult()
    now = app.now()
    owners = _claims_of_partner(conn, partner_id, {u.claim_id for u in updates if _unstorable(u) is None})
    unsent = _never_sent(conn, owners)
    for u in updates:
        if app.stopping.is_set():  # the page's transaction rolls back; its cursor is not moved
            raise Interrupted("stopping: partner updates are applied at the next start")
        problem = _unstorable(u)
        if problem is not None:
            # Kept out rather than failing the page: one such update would stop every later update of the partner
            # for good, the page being read again and again. The partner's values are not logged, only what is wrong.
            log.warning("partner_updates.invalid_update partner=%s claim_id_digits=%d problem=%s", partner_id,
                        len(str(abs(u.claim_id))), problem)
            result.add("invalid_update")
            continue
        if not _first_time(conn, partner_id, u, now):
            result.add("duplicate")
            continue
        if u.claim_id not in owners:
            outcome = "unknown_claim"
            log.warning("partner_updates.unknown_claim partner=%s claim=%s update=%s", partner_id, u.claim_id,
                        _shown(u.update_id))
        elif u.claim_id in unsent:
            # Routed to this partner but never on its way there: the partner cannot have it (a wrong claim id, a
            # file meant for another creditor). Taken as its receipt, the claim would be reported handed over
            # and never be sent; a payment booked on it would lower what the creditor is owed.
            outcome = "not_sent"
            log.warning("partner_updates.not_sent partner=%s claim=%d update=%s", partner_id, u.claim_id,
                        _shown(u.update_id))
        else:
            outcome = _apply_one(app, conn, partner_id, owners[u.claim_id], u, now)
        conn.execute(update(partner_updates).where(partner_updates.c.partner_id == partner_id,
                                                   partner_updates.c.update_id == u.update_id)
                     .values(outcome=outcome))
        result.add(outcome)
    return result


def _shown(value: str) -> str:
    """A partner's code or update id as a log may show it: a plain token verbatim; free text (a partner writing a
    debtor's name where its code belongs, a text of megabytes) only by its length."""
    return safe_code(value) or f"<{len(value)} characters, not a plain token>"


def _claims_of_partner(conn: Connection, partner_id: str, ids: set[int]) -> dict[int, str]:
    # A partner may only speak about claims that were routed to it.
    out: dict[int, str] = {}
    part = sorted(ids)
    for i in range(0, len(part), 500):
        q = select(claims.c.id, claims.c.client_id).where(claims.c.id.in_(part[i:i + 500]),
                                                          claims.c.partner_id == partner_id)
        out.update({cid: client for cid, client in conn.execute(q)})
    return out


_MAX_ID = 2 ** 63 - 1  # claim ids are BIGINT
_UPDATE_ID_LENGTH = 160  # partner_updates.update_id
_MESSAGE_ID_LENGTH = 128  # messages.partner_message_id
# Far above any claim (10^13 in a currency's main unit), far below what a BIGINT account column can add up.
_MAX_MINOR = 10 ** 15


def _unstorable(u: PartnerUpdate) -> str | None:
    """Why the update cannot be recorded once (its dedupe key or claim id do not fit), or None."""
    if not 0 < u.claim_id <= _MAX_ID:
        return "claim id out of range"
    if not u.update_id or len(u.update_id) > _UPDATE_ID_LENGTH:
        return f"update id empty or over {_UPDATE_ID_LENGTH} characters"
    return None


def _instruction_sent(conn: Connection, partner_id: str, u: PartnerUpdate) -> bool:
    """True if ``u.instruction_id`` names an instruction the gateway queued for this partner about this claim
    (an instruction's id is its outbox key written with '-' for ':')."""
    key = str(u.instruction_id or "").replace("-", ":")
    payload = conn.execute(select(outbox.c.payload).where(outbox.c.partner_id == partner_id,
                                                          outbox.c.idempotency_key == key)).scalar()
    return payload is not None and str((loads(payload) or {}).get("claim_id")) == str(u.claim_id)


def _message_key(message_id: str) -> str:
    """The partner's message id as the dedupe key; one too long for its column by its digest (still unique)."""
    if len(message_id) <= _MESSAGE_ID_LENGTH:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


_BEFORE_DELIVERY = frozenset({State.RECEIVED.value, State.HELD.value, State.QUEUED.value})


def _never_sent(conn: Connection, owners: dict[int, str]) -> set[int]:
    """The claims among ``owners`` that no delivery has ever taken (none was ever ``delivering``)."""
    waiting = set()
    part = sorted(owners)
    for i in range(0, len(part), 500):
        waiting |= {int(cid) for cid, state in conn.execute(
            select(claim_current.c.claim_id, claim_current.c.state).where(
                claim_current.c.claim_id.in_(part[i:i + 500]))) if state in _BEFORE_DELIVERY}
    if not waiting:
        return set()
    sent: set[int] = set()
    ids = sorted(waiting)
    for i in range(0, len(ids), 500):
        sent |= {int(cid) for cid in conn.execute(
            select(claim_events.c.claim_id).where(claim_events.c.claim_id.in_(ids[i:i + 500]),
                                                  claim_events.c.state == State.DELIVERING.value).distinct()).scalars()}
    return waiting - sent


def _first_time(conn: Connection, partner_id: str, u: PartnerUpdate, now: datetime) -> bool:
    try:
        with conn.begin_nested():
            conn.execute(insert(partner_updates).values(partner_id=partner_id, update_id=u.update_id,
                                                        claim_id=u.claim_id, kind=u.kind[:16], code=u.code[:64] or None,
                                                        outcome="pending", received_at=now))
        return True
    except IntegrityError:
        return False


def _book(conn: Connection, u: PartnerUpdate, kind: str, base: dict[str, Any], now: datetime) -> str:
    """An amount for the case account; one that cannot be booked is kept as an event without it."""
    currency = claim_store.current(conn, u.claim_id)["currency"]
    try:
        amount = Decimal(str(u.amount))
        ok = amount.is_finite() and amount > 0 and (u.currency or currency).upper() == currency
        # the magnitude first: 1e99999999 overflows the scaling (decimal.Overflow), 1e999990 would become an
        # integer of a million digits (half a minute of CPU with the apply transaction open), and 1e-99999999
        # underflows to a booking of 0
        ok = ok and -18 < amount.adjusted() < 18 and to_minor(amount, currency) < _MAX_MINOR
    except (ArithmeticError, ValueError):  # InvalidOperation and Overflow among them
        ok = False
    if not ok:
        claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_amount_invalid",
                             {**base, "booking": kind, "code": u.code}, now=now)
        log.warning("partner_updates.invalid_amount claim=%d update=%s booking=%s", u.claim_id, _shown(u.update_id),
                    kind)
        return "invalid_amount"
    data = {**base, "amount": str(amount), "currency": currency, "date": u.date, **({"code": u.code} if u.code else {})}
    claim_store.annotate(conn, u.claim_id, Actor.PARTNER, kind, data, now=now)
    return "recorded"


def _apply_one(app: App, conn: Connection, partner_id: str, client_id: str, u: PartnerUpdate,
               now: datetime) -> str:
    base: dict[str, Any] = {"partner": partner_id, "update": u.update_id}
    if u.partner_reference:
        base["partner_reference"] = u.partner_reference
    spec = app.config.partners[partner_id].status_map.get(u.code, "") if u.kind == "status" else ""
    booking = BOOKING_KINDS.get(u.kind) or BOOKING_KINDS.get(spec.removeprefix("account:") if spec else "")
    if booking is not None:
        return _book(conn, u, booking, base, now)
    if u.kind == "message":
        message_store.add(conn, app.cipher, claim_id=u.claim_id, client_id=client_id, direction="from_partner",
                          text=u.text or "", partner_message_id=_message_key(u.message_id or u.update_id), now=now)
        claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_message",
                             {**base, "message_id": u.message_id}, now=now)
        return "recorded"
    if u.kind == "instruction":  # a file partner's receipt for an instruction document: no state change
        if not _instruction_sent(conn, partner_id, u):
            # An id this gateway never sent this partner for this claim (a typo, another claim's instruction):
            # recorded as the partner's ack it would say a request arrived that nothing shows arrived.
            log.warning("partner_updates.unknown_instruction partner=%s claim=%d update=%s", partner_id, u.claim_id,
                        _shown(u.update_id))
            return "unknown_instruction"
        received = u.code == INSTRUCTION_RECEIVED
        claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_ack" if received else "partner_op_failed",
                             {**base, "instruction": u.instruction_id, "code": u.code}, now=now)
        return "recorded"
    target = status_target(app, partner_id, u.code)
    if target is None:
        claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_status_unknown", {**base, "code": u.code},
                             now=now)
        log.warning("partner_updates.unknown_code partner=%s code=%s claim=%d", partner_id, _shown(u.code), u.claim_id)
        return "unknown_code"
    state, stage = target
    data = {**base, "code": u.code, **({"stage": stage.value} if stage else {}),
            **({"occurred_at": u.occurred_at} if u.occurred_at else {})}
    current = claim_store.current_states(conn, [u.claim_id], lock=True)[u.claim_id]
    if _older_than_applied(conn, u):
        # A push and a pull (or two pushes) overtook each other: the partner has moved on since this status.
        claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_status_stale", _not_applied(data), now=now)
        log.info("partner_updates.stale partner=%s claim=%d update=%s", partner_id, u.claim_id, _shown(u.update_id))
        return "stale"
    try:
        if current in _UNCONFIRMED and state not in (State.HANDED_OVER, State.REJECTED):
            # The partner is already working the claim: its status is the receipt we have not recorded yet
            # (the upload's answer is still awaited, or was lost and the delivery given up or queued again).
            claim_store.transition(conn, [u.claim_id], State.HANDED_OVER, Actor.PARTNER, kind="receipt", data=base,
                                   now=now)
            current = State.HANDED_OVER
        if state is current and state is not State.IN_PROGRESS:
            claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_status", data, now=now)
        else:
            claim_store.transition(conn, [u.claim_id], state, Actor.PARTNER, kind="partner_status", data=data,
                                   now=now)
    except IllegalTransition as exc:
        claim_store.annotate(conn, u.claim_id, Actor.PARTNER, "partner_status_illegal",
                             {**_not_applied(data), "from": exc.src, "to": exc.dst}, now=now)
        return "illegal"
    return "applied"


def _not_applied(data: dict[str, Any]) -> dict[str, Any]:
    """A status kept but not applied: its stage and file number under names the projection does not fold
    (it takes any event's ``stage`` and ``partner_reference``), so a refused or outdated status moves neither."""
    out = {k: v for k, v in data.items() if k not in ("stage", "partner_reference")}
    for key, kept in (("stage", "reported_stage"), ("partner_reference", "reported_reference")):
        if data.get(key):
            out[kept] = data[key]
    return out


def _when(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _older_than_applied(conn: Connection, u: PartnerUpdate) -> bool:
    """True if the claim's latest applied status from the partner happened after ``u`` (both saying when)."""
    mine = _when(u.occurred_at)
    if mine is None:
        return False
    latest = conn.execute(select(claim_events.c.data).where(claim_events.c.claim_id == u.claim_id,
                                                            claim_events.c.actor == Actor.PARTNER.value,
                                                            claim_events.c.kind == "partner_status")
                          .order_by(claim_events.c.id.desc()).limit(1)).scalar()
    theirs = _when((loads(latest) or {}).get("occurred_at")) if latest else None
    if theirs is None or (mine.tzinfo is None) != (theirs.tzinfo is None):
        return False
    return mine < theirs


# -- cursors -------------------------------------------------------------------------------------
def get_cursor(conn: Connection, partner_id: str) -> str | None:
    return conn.execute(select(partner_sync.c.cursor).where(partner_sync.c.partner_id == partner_id)).scalar()


def save_cursor(conn: Connection, partner_id: str, cursor: str | None, n: int, *, error: str | None = None,
                now: datetime | None = None) -> None:
    """Store where the next pull starts (with the updates of this page, in the same transaction)."""
    now = now or utcnow()
    res = conn.execute(update(partner_sync).where(partner_sync.c.partner_id == partner_id).values(
        cursor=cursor, last_sync_at=now, last_error=error, updates=partner_sync.c.updates + n))
    if res.rowcount == 0:
        conn.execute(insert(partner_sync).values(partner_id=partner_id, cursor=cursor, last_sync_at=now,
                                                 last_error=error, updates=n))


def last_sync(conn: Connection, partner_id: str) -> datetime | None:
    return conn.execute(select(partner_sync.c.last_sync_at).where(partner_sync.c.partner_id == partner_id)).scalar()


_WAITING = (State.RECEIVED, State.QUEUED, State.DELIVERING, State.FAILED)


def collection_run_status(conn: Connection, submission_id: int) -> str:
    """A collection run is ``processing`` until the partner confirmed every claim sent, then ``handed_over``."""
    return collection_run_statuses(conn, [submission_id])[submission_id]


def collection_run_statuses(conn: Connection, submission_ids: Sequence[int]) -> dict[int, str]:
    """``collection_run_status`` of several runs in one query: two index probes per run
    (``ix_current_submission_state``), not a read of every claim of a 100k-claim run.

    A claim is sent unless held, rejected or cancelled by the client before the handover; the run is
    ``handed_over`` once some claim has reached the partner and none is still on its way (received, queued,
    delivering, failed), every state being one of those three kinds."""
    cc = claim_current
    sid = submissions.c.id

    def any_in(states: Sequence[State]) -> Any:
        return exists().where(cc.c.submission_id == sid, cc.c.state.in_([s.value for s in states]))
    q = (select(sid, any_in(_WAITING).label("waiting"), any_in(sorted(_AFTER_HANDOVER - {State.REJECTED,
                                                                                       State.CANCELLED_BY_CLIENT}))
                .label("confirmed"))
         .where(sid.in_(list(submission_ids))))
    out = {int(i): "processing" for i in submission_ids}
    for row in conn.execute(q):
        if row.confirmed and not row.waiting:
            out[int(row.id)] = "handed_over"
    return out

"""The current-state projection ``claim_current``: each claim's state and case account, folded from events.

One fold (``apply``) serves both the live path (``store/claims.py`` writes the projection in the same
transaction as every event) and ``rebuild`` (the whole log folded again), so the two cannot drift apart.
Which event kinds book money, and what a closing does, is decided here and in ``domain/account.py``.
The one column not derived from events is ``seen_event_id``: the client's read mark, kept by a rebuild.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from sqlalchemy import Connection, delete, select, update

from gateway.domain.account import Account, Entry, book, close_paid
from gateway.domain.lifecycle import TERMINAL, State
from gateway.domain.model import Claim, from_minor, to_minor
from gateway.store.schema import claim_current, claim_events, claims
from gateway.store.sql import loads

# Event kinds that book an amount (``data.amount``, a decimal string in the claim's currency).
BOOKINGS = {
    "payment_reported": Entry.PAYMENT_DIRECT,  # the client reports the debtor paid it directly
    "partner_payment": Entry.PAYMENT_AGENCY,
    "partner_payout": Entry.PAYOUT,
    "partner_costs": Entry.AGENCY_COSTS,
    "partner_interest": Entry.INTEREST,
    "partner_fee": Entry.FEE,
    "partner_write_off": Entry.WRITE_OFF,
}
MONEY = ("principal", "fees", "interest", "agency_costs", "paid_direct", "paid_agency", "payouts", "written_off")
COLUMNS = tuple(c.name for c in claim_current.columns)
_TERMINAL = frozenset(s.value for s in TERMINAL)
_body_decoder = msgspec.json.Decoder(Claim)

Row = dict[str, Any]


@dataclass(frozen=True)
class EventFacts:
    """What the fold needs of one event."""

    id: int
    state: str
    from_state: str | None
    actor: str
    kind: str
    data: dict[str, Any] | None
    created_at: Any  # datetime, or the driver value on the bulk path


def account_of(row: Row) -> Account:
    cur = row["currency"]
    return Account(currency=cur, **{m: from_minor(row[f"{m}_minor"], cur) for m in MONEY})


def _put_account(row: Row, account: Account) -> None:
    cur = account.currency
    for m in MONEY:
        row[f"{m}_minor"] = to_minor(getattr(account, m), cur)
    row["open_minor"] = to_minor(account.open, cur)
    row["overpaid_minor"] = to_minor(account.overpaid, cur)


def opening_row(claim_id: int, client_id: str, reference: str, submission_id: int, partner_id: str | None,
                currency: str, principal_minor: int, fees_minor: int, paid_minor: int, event: EventFacts) -> Row:
    """The projection row of a claim as its first event leaves it."""
    row: Row = {"claim_id": claim_id, "client_id": client_id, "creditor_reference": reference,
                "submission_id": submission_id, "partner_id": partner_id, "state": event.state, "stage": None,
                "partner_file_number": None, "closing_reason": None, "currency": currency,
                "principal_minor": principal_minor, "fees_minor": fees_minor, "paid_direct_minor": paid_minor,
                "received_at": event.created_at, "updated_at": event.created_at, "last_event_id": event.id,
                "changed_event_id": 0, "seen_event_id": 0}
    for m in ("interest", "agency_costs", "paid_agency", "payouts", "written_off"):
        row[f"{m}_minor"] = 0
    balance = principal_minor + fees_minor - paid_minor
    row["open_minor"], row["overpaid_minor"] = max(balance, 0), max(-balance, 0)
    return row


def booked_amount(data: dict[str, Any], currency: str) -> Decimal | None:
    """The amount an event's data books in a claim of ``currency``, or None when the fold would book none."""
    try:
        amount = Decimal(str(data.get("amount")))
        to_minor(amount, currency)
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount <= 0 or (data.get("currency") or currency) != currency:
        return None
    return amount


def apply(row: Row, ev: EventFacts) -> Row:
    """The projection row after one more event (a new dict; ``row`` is left alone)."""
    out = dict(row)
    out["state"], out["updated_at"], out["last_event_id"] = ev.state, ev.created_at, ev.id
    if ev.kind != "intake" and ev.actor != "client":  # the client's own actions are not news to it
        out["changed_event_id"] = ev.id
    data = ev.data or {}
    if data.get("partner_reference"):
        out["partner_file_number"] = str(data["partner_reference"])[:128]
    if data.get("stage"):
        out["stage"] = str(data["stage"])[:32]
    entry = BOOKINGS.get(ev.kind)
    amount = booked_amount(data, out["currency"]) if entry else None
    closing = ev.state in _TERMINAL and ev.from_state != ev.state
    if entry is not None and amount is not None or closing:
        account = account_of(out)
        if entry is not None and amount is not None:  # refusals happen before the event is written
            account = book(account, entry, amount, allow_overpayment=True)
        if closing:
            out["closing_reason"] = str(data.get("code") or ev.kind)[:64]
            if ev.state == State.CLOSED_PAID.value:
                account = close_paid(account)
        _put_account(out, account)
    return out


# -- reading and writing rows --------------------------------------------------------------------
def load(conn: Connection, claim_ids: Sequence[int], *, lock: bool = False) -> dict[int, Row]:
    """Projection rows by claim id; ``lock`` takes them FOR UPDATE (PostgreSQL), in id order."""
    out: dict[int, Row] = {}
    ids = sorted(set(claim_ids))
    for i in range(0, len(ids), 500):
        q = select(claim_current).where(claim_current.c.claim_id.in_(ids[i:i + 500])).order_by(
            claim_current.c.claim_id)
        if lock and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        result = conn.execute(q)
        keys = tuple(result.keys())
        at = keys.index("claim_id")
        # plain tuples zipped into dicts: a RowMapping per row costs several times more (delivery reads
        # every claim of a batch twice)
        out.update({r[at]: dict(zip(keys, r)) for r in result})
    return out


_SAVED = tuple(c for c in COLUMNS if c not in ("claim_id", "seen_event_id"))
_save_plans: dict[str, tuple[str, tuple[tuple[str, Any], ...]]] = {}


def _save_plan(conn: Connection) -> tuple[str, tuple[tuple[str, Any], ...]]:
    dialect = conn.dialect
    plan = _save_plans.get(dialect.name)
    if plan is None:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        sql = (f"UPDATE claim_current SET {', '.join(f'{c} = {mark}' for c in _SAVED)} "
               f"WHERE claim_id = {mark}")
        # each column's own bind conversion (UTCDateTime on SQLite: naive UTC text), so the stored values
        # are exactly what a Core UPDATE would store
        procs = tuple((c, claim_current.c[c].type.dialect_impl(dialect).bind_processor(dialect)) for c in _SAVED)
        plan = _save_plans[dialect.name] = (sql, procs)
    return plan


def save(conn: Connection, rows: Sequence[Row]) -> None:
    """Write changed rows back (one executemany on the driver); the read mark is left as it is."""
    if not rows:
        return
    sql, procs = _save_plan(conn)
    memo: dict[Any, Any] = {}  # a batch's rows mostly share their times: convert each value once

    def convert(proc: Any, value: Any) -> Any:
        if value is None:
            return None
        key = (proc, value)
        if key not in memo:
            memo[key] = proc(value)
        return memo[key]

    params = [tuple(r[c] if p is None else convert(p, r[c]) for c, p in procs) + (r["claim_id"],) for r in rows]
    conn.exec_driver_sql(sql, params)


def insert(conn: Connection, rows: Sequence[Row]) -> None:
    if rows:
        conn.execute(claim_current.insert(), list(rows))


def mark_seen(conn: Connection, client_id: str, claim_ids: Sequence[int] | None) -> int:
    """Mark the client's claims (all if ``claim_ids`` is None) as seen up to their latest event."""
    q = update(claim_current).where(claim_current.c.client_id == client_id,
                                    claim_current.c.seen_event_id < claim_current.c.changed_event_id)
    if claim_ids is None:
        return int(conn.execute(q.values(seen_event_id=claim_current.c.last_event_id)).rowcount or 0)
    n, ids = 0, sorted(set(claim_ids))
    for i in range(0, len(ids), 500):
        res = conn.execute(q.where(claim_current.c.claim_id.in_(ids[i:i + 500]))
                           .values(seen_event_id=claim_current.c.last_event_id))
        n += int(res.rowcount or 0)
    return n


# -- rebuild -------------------------------------------------------------------------------------
@dataclass
class RebuildCounts:
    claims: int = 0
    events: int = 0
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0  # rows that named no claim (the table has no foreign key: migration 0014)


def fold_claim(claim: Any, events: Sequence[Any]) -> Row:
    """A claim's projection row from its stored row and its events (oldest first)."""
    body = _body_decoder.decode(claim["body"])
    cur = claim["currency"]
    facts = [EventFacts(e["id"], e["state"], e["from_state"], e["actor"], e["kind"], loads(e["data"]),
                        e["created_at"]) for e in events]
    row = opening_row(claim["id"], claim["client_id"], claim["creditor_reference"], claim["submission_id"],
                      claim["partner_id"], cur, claim["principal_minor"], to_minor(body.fees_total, cur),
                      to_minor(body.payments_total, cur), facts[0])
    for ev in facts[1:]:
        row = apply(row, ev)
    return row


def _same(a: Row, b: Row) -> bool:
    return all(a[c] == b[c] for c in COLUMNS if c != "seen_event_id")


def rebuild(conn: Connection, *, batch: int = 2000) -> RebuildCounts:
    """Fold every claim's events again and write the rows that differ (idempotent; read marks kept); remove
    rows that name no claim."""
    counts = RebuildCounts()
    after = -1
    cols = (claims.c.id, claims.c.client_id, claims.c.creditor_reference, claims.c.submission_id,
            claims.c.partner_id, claims.c.currency, claims.c.principal_minor, claims.c.body)
    while True:
        page = list(conn.execute(select(*cols).where(claims.c.id > after).order_by(claims.c.id).limit(batch))
                    .mappings())
        if not page:
            orphans = select(claims.c.id).where(claims.c.id == claim_current.c.claim_id).exists()
            counts.removed = conn.execute(delete(claim_current).where(~orphans)).rowcount or 0
            return counts
        after = page[-1]["id"]
        ids = [c["id"] for c in page]
        events: dict[int, list[Any]] = {}
        q = (select(claim_events).where(claim_events.c.claim_id.between(ids[0], ids[-1]))
             .order_by(claim_events.c.claim_id, claim_events.c.id))
        for e in conn.execute(q).mappings():
            events.setdefault(e["claim_id"], []).append(e)
        old = load(conn, ids)
        fresh, stale = [], []
        for c in page:
            evs = events.get(c["id"])
            if not evs:  # a claim is always stored with its first event; nothing to fold without one
                continue
            counts.claims += 1
            counts.events += len(evs)
            row = fold_claim(c, evs)
            prev = old.get(c["id"])
            if prev is None:
                fresh.append(row)
            elif _same(prev, row):
                counts.unchanged += 1
            else:
                row["seen_event_id"] = min(prev["seen_event_id"], row["last_event_id"])
                stale.append(row)
        if stale:
            conn.execute(delete(claim_current).where(claim_current.c.claim_id.in_([r["claim_id"] for r in stale])))
        insert(conn, fresh + stale)
        counts.added += len(fresh)
        counts.changed += len(stale)


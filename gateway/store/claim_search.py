"""Read queries for a client's claims: filtered, sorted, paged lists and the change feed.

Debtor names are encrypted, so text search finds a debtor only by the exact (case- and
space-insensitive) display name through the keyed blind index ``claim_keys.name_index``; references
and invoice numbers are matched as substrings.

Lists read the projection ``claim_current`` (state, last change, open amount, read marks) and join
``claims`` by key for the rest. The default list (a state filter, newest change first) walks the index
``(client_id, state, updated_at, claim_id)`` and stops after the page; sorting by a column of
``claims`` (reference, invoice, due date) sorts the matching claims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, exists, func, or_, select

from gateway.store import keys_store
from gateway.store.schema import claim_current, claim_events, claim_labels, claims

# The total of a list is counted exactly up to this many claims past the page, then given as "at least": a
# count walks every match (400k index entries for one state of a 1M-claim book took ~200 ms on SQLite),
# the page itself only its 50 rows.
COUNT_AHEAD = 10_000
SORTABLE = ("last_change", "claim_id", "reference", "invoice_number", "invoice_date", "due_date", "amount",
            "principal", "state", "received", "partner")
DATE_FIELDS = ("received", "last_change", "invoice_date", "due_date")


@dataclass
class ClaimFilter:
    states: list[str] = field(default_factory=list)
    label: str | None = None
    partner: str | None = None  # the partner the claim is routed to
    submission_id: int | None = None  # the claims of one run (collection run, file, SOAP call)
    date_field: str = "received"
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    text: str | None = None
    unread: bool = False  # only claims with changes the client has not marked seen
    debtor_tokens: list[str] | None = None  # blind indexes of ``text`` as a debtor name (its Unicode forms)
    sort: str = "last_change"
    descending: bool = True
    limit: int = 50
    offset: int = 0


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def search(conn: Connection, client_id: str, f: ClaimFilter) -> tuple[list[RowMapping], int, bool]:
    """One page of the client's claims with their current state and last change, the total, and whether the
    total is exact (False: at least that many; counting stopped ``COUNT_AHEAD`` claims past the page)."""
    cc = claim_current
    cols = {"last_change": cc.c.updated_at, "claim_id": cc.c.claim_id, "reference": cc.c.creditor_reference,
            "invoice_number": claims.c.invoice_number, "invoice_date": claims.c.invoice_date,
            "due_date": claims.c.due_date, "amount": cc.c.open_minor, "principal": cc.c.principal_minor,
            "state": cc.c.state, "received": cc.c.received_at, "partner": cc.c.partner_id}
    conds: list[Any] = [cc.c.client_id == client_id]
    needs_claims = f.sort in ("invoice_number", "invoice_date", "due_date") or bool(f.text)
    if f.states:
        conds.append(cc.c.state == f.states[0] if len(f.states) == 1 else cc.c.state.in_(f.states))
    if f.unread:
        conds.append(cc.c.changed_event_id > cc.c.seen_event_id)
    if f.partner:
        conds.append(cc.c.partner_id == f.partner)
    if f.submission_id is not None:
        conds.append(cc.c.submission_id == f.submission_id)
    if f.label:
        conds.append(exists().where(claim_labels.c.claim_id == cc.c.claim_id, claim_labels.c.label == f.label))
    col = cols[f.date_field]
    is_time = f.date_field in ("received", "last_change")
    needs_claims = needs_claims or bool(not is_time and (f.date_from or f.date_to))
    if f.date_from:
        conds.append(col >= (_day(f.date_from) if is_time else f.date_from))
    if f.date_to:
        conds.append(col < _day(f.date_to + timedelta(days=1)) if is_time else col <= f.date_to)
    if f.text:
        text: list[Any] = [claims.c.creditor_reference.ilike(_like(f.text), escape="\\"),
                           claims.c.invoice_number.ilike(_like(f.text), escape="\\")]
        if f.debtor_tokens:
            text.append(keys_store.name_matches(f.debtor_tokens))
        conds.append(or_(*text))
    cap = f.offset + f.limit + COUNT_AHEAD
    matching = select(cc.c.claim_id).where(and_(*conds)).limit(cap + 1)
    if needs_claims:
        matching = matching.join(claims, claims.c.id == cc.c.claim_id)
    order = cols[f.sort]
    order_by = [order.desc(), cc.c.claim_id.desc()] if f.descending else [order.asc(), cc.c.claim_id.asc()]
    page = (select(cc.c.claim_id, cc.c.creditor_reference, claims.c.invoice_number, claims.c.invoice_date,
                   claims.c.due_date, cc.c.currency, cc.c.principal_minor, cc.c.open_minor, cc.c.overpaid_minor,
                   cc.c.partner_id, cc.c.submission_id, cc.c.received_at, cc.c.state, cc.c.stage,
                   cc.c.partner_file_number, cc.c.updated_at.label("last_change"),
                   (cc.c.changed_event_id > cc.c.seen_event_id).label("unread"))
            .join(claims, claims.c.id == cc.c.claim_id).where(and_(*conds))
            .order_by(*order_by).limit(f.limit).offset(f.offset))
    rows = list(conn.execute(page).mappings())
    if len(rows) < f.limit and (rows or f.offset == 0):
        # The last page: the total is known without counting (a search or a narrow filter that matches
        # few claims walks its scope once, not twice).
        return rows, f.offset + len(rows), True
    counted = int(conn.execute(select(func.count()).select_from(matching.subquery())).scalar_one())
    return rows, min(counted, cap), counted <= cap


def changes(conn: Connection, client_id: str, cursor: int, limit: int,
            settled_before: datetime | None = None) -> list[RowMapping]:
    """The client's events after ``cursor`` (an event id), oldest first, with each claim's reference."""
    cc = claim_current
    q = (select(claim_events.c.id, claim_events.c.claim_id, claim_events.c.state, claim_events.c.from_state,
                claim_events.c.actor, claim_events.c.kind, claim_events.c.data, claim_events.c.created_at,
                cc.c.creditor_reference, (cc.c.changed_event_id > cc.c.seen_event_id).label("unread"))
         .join(cc, cc.c.claim_id == claim_events.c.claim_id)
         .where(claim_events.c.client_id == client_id, claim_events.c.id > cursor)
         .order_by(claim_events.c.id).limit(limit))
    if settled_before is not None:
        q = q.where(claim_events.c.created_at < settled_before)
    return list(conn.execute(q).mappings())

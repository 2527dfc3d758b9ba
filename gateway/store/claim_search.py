"""Read queries for a client's claims: filtered, sorted, paged lists and the change feed.

Debtor names are encrypted, so text search finds a debtor only by the exact (case- and
space-insensitive) display name through the keyed blind index ``claims.debtor_index``; references
and invoice numbers are matched as substrings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, exists, func, or_, select

from gateway.store.schema import claim_events, claim_labels, claims

SORTABLE = ("last_change", "claim_id", "reference", "invoice_number", "invoice_date", "due_date", "amount",
            "principal", "state", "received", "partner")
DATE_FIELDS = ("received", "last_change", "invoice_date", "due_date")


@dataclass
class ClaimFilter:
    states: list[str] = field(default_factory=list)
    label: str | None = None
    date_field: str = "received"
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    text: str | None = None
    debtor_token: str | None = None  # blind index of ``text`` as a debtor name
    sort: str = "last_change"
    descending: bool = True
    limit: int = 50
    offset: int = 0


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _day(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def search(conn: Connection, client_id: str, f: ClaimFilter) -> tuple[list[RowMapping], int]:
    """One page of the client's claims with their current state and last change, and the total count."""
    latest = (select(claim_events.c.claim_id, func.max(claim_events.c.id).label("event_id"))
              .where(claim_events.c.client_id == client_id).group_by(claim_events.c.claim_id).subquery())
    ev = claim_events.alias("ev")
    cols = {"last_change": ev.c.created_at, "claim_id": claims.c.id, "reference": claims.c.creditor_reference,
            "invoice_number": claims.c.invoice_number, "invoice_date": claims.c.invoice_date,
            "due_date": claims.c.due_date, "amount": claims.c.open_minor, "principal": claims.c.principal_minor,
            "state": ev.c.state, "received": claims.c.created_at, "partner": claims.c.partner_id}
    conds: list[Any] = [claims.c.client_id == client_id]
    if f.states:
        conds.append(ev.c.state.in_(f.states))
    if f.label:
        conds.append(exists().where(claim_labels.c.claim_id == claims.c.id, claim_labels.c.label == f.label))
    col = cols[f.date_field]
    is_time = f.date_field in ("received", "last_change")
    if f.date_from:
        conds.append(col >= (_day(f.date_from) if is_time else f.date_from))
    if f.date_to:
        conds.append(col < _day(f.date_to + timedelta(days=1)) if is_time else col <= f.date_to)
    if f.text:
        text: list[Any] = [claims.c.creditor_reference.ilike(_like(f.text), escape="\\"),
                claims.c.invoice_number.ilike(_like(f.text), escape="\\")]
        if f.debtor_token:
            text.append(claims.c.debtor_index == f.debtor_token)
        conds.append(or_(*text))
    base = (select(claims.c.id.label("claim_id"), claims.c.creditor_reference, claims.c.invoice_number,
                   claims.c.invoice_date, claims.c.due_date, claims.c.currency, claims.c.principal_minor,
                   claims.c.open_minor, claims.c.partner_id, claims.c.submission_id,
                   claims.c.created_at.label("received_at"), ev.c.state, ev.c.created_at.label("last_change"))
            .join(latest, latest.c.claim_id == claims.c.id).join(ev, ev.c.id == latest.c.event_id)
            .where(and_(*conds)))
    total = int(conn.execute(select(func.count()).select_from(base.subquery())).scalar_one())
    order = cols[f.sort]
    order_by = [order.desc(), claims.c.id.desc()] if f.descending else [order.asc(), claims.c.id.asc()]
    rows = list(conn.execute(base.order_by(*order_by).limit(f.limit).offset(f.offset)).mappings())
    return rows, total


def changes(conn: Connection, client_id: str, cursor: int, limit: int,
            settled_before: datetime | None = None) -> list[RowMapping]:
    """The client's events after ``cursor`` (an event id), oldest first, with each claim's reference."""
    q = (select(claim_events.c.id, claim_events.c.claim_id, claim_events.c.state, claim_events.c.from_state,
                claim_events.c.actor, claim_events.c.kind, claim_events.c.data, claim_events.c.created_at,
                claims.c.creditor_reference)
         .join(claims, claims.c.id == claim_events.c.claim_id)
         .where(claim_events.c.client_id == client_id, claim_events.c.id > cursor)
         .order_by(claim_events.c.id).limit(limit))
    if settled_before is not None:
        q = q.where(claim_events.c.created_at < settled_before)
    return list(conn.execute(q).mappings())

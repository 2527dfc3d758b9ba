"""Pages of claims, submissions and outbox rows with the total they were cut from (CLI lists).

A list that stops at ``limit`` says so: the total is counted only when the page is full, so a short
list costs one query. The claim count joins the latest event only when a state filter needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, or_, select

from gateway.store import claims as claim_store
from gateway.store import submissions as sub_store
from gateway.store.schema import claim_events, claims, outbox, submissions


@dataclass
class Page:
    rows: list[RowMapping]
    offset: int
    total: int  # all rows matching the filter

    @property
    def cut(self) -> bool:
        return self.offset > 0 or len(self.rows) < self.total

    def note(self) -> str:
        """``showing 100 of N, use --limit/--offset`` when the page is not everything."""
        first = self.offset + 1 if self.rows else self.offset
        span = f"{first}-{self.offset + len(self.rows)}" if self.offset else str(len(self.rows))
        return f"showing {span} of {self.total}, use --limit/--offset for more"


def _total(page: list[RowMapping], limit: int, offset: int, count: Any) -> int:
    if len(page) < limit and (page or offset == 0):
        return offset + len(page)
    return int(count())


def claims_page(conn: Connection, *, client_id: str | None, state: str | None, submission_id: int | None,
                since: datetime | None, until: datetime | None, limit: int, offset: int) -> Page:
    rows = claim_store.listing(conn, client_id=client_id, state=state, submission_id=submission_id, since=since,
                               until=until, limit=limit, offset=offset)

    def count() -> int:
        conds = []
        if client_id:
            conds.append(claims.c.client_id == client_id)
        if submission_id is not None:
            conds.append(claims.c.submission_id == submission_id)
        if since:
            conds.append(claims.c.created_at >= since)
        if until:
            conds.append(claims.c.created_at < until)
        q = select(func.count()).select_from(claims)
        if state:
            latest = select(func.max(claim_events.c.id).label("id")).group_by(claim_events.c.claim_id).subquery()
            q = (q.join(claim_events, claim_events.c.claim_id == claims.c.id)
                 .join(latest, latest.c.id == claim_events.c.id))
            conds.append(or_(*(claim_events.c.state == s for s in state.split(","))))
        return int(conn.execute(q.where(and_(*conds)) if conds else q).scalar_one())
    return Page(rows, offset, _total(rows, limit, offset, count))


def submissions_page(conn: Connection, *, client_id: str | None, status: str | None, since: datetime | None,
                     until: datetime | None, limit: int, offset: int) -> Page:
    rows = sub_store.listing(conn, client_id=client_id, status=status, since=since, until=until, limit=limit,
                             offset=offset)

    def count() -> int:
        q = select(func.count()).select_from(submissions)
        if client_id:
            q = q.where(submissions.c.client_id == client_id)
        if status:
            q = q.where(submissions.c.status == status)
        if since:
            q = q.where(submissions.c.received_at >= since)
        if until:
            q = q.where(submissions.c.received_at < until)
        return int(conn.execute(q).scalar_one())
    return Page(rows, offset, _total(rows, limit, offset, count))


def outbox_page(conn: Connection, *, status: str | None, partner_id: str | None, limit: int, offset: int) -> Page:
    conds = ([outbox.c.status == status] if status else []) + ([outbox.c.partner_id == partner_id] if partner_id else [])
    q = select(outbox).order_by(outbox.c.id.desc())
    rows = list(conn.execute((q.where(*conds) if conds else q).limit(limit).offset(offset)).mappings())

    def count() -> int:
        c = select(func.count()).select_from(outbox)
        return int(conn.execute(c.where(*conds) if conds else c).scalar_one())
    return Page(rows, offset, _total(rows, limit, offset, count))

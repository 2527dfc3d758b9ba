"""Pages of claims, submissions and outbox rows with the total they were cut from (CLI lists).

A list that stops at ``limit`` says so: the total is counted only when the page is full, so a short
list costs one query. The claim count joins the latest event only when a state filter needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select

from gateway.store import claims as claim_store
from gateway.store import submissions as sub_store
from gateway.store.schema import outbox


@dataclass
class Page:
    rows: list[RowMapping]
    offset: int
    total: int  # all rows matching the filter
    # runs only, where asked for (the console): submission id -> processing | handed_over
    # (``partner_updates.collection_run_statuses``)
    handover: dict[int, str] = field(default_factory=dict)

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
                since: datetime | None, until: datetime | None, limit: int, offset: int,
                sandbox: bool = False) -> Page:
    """``sandbox``: without a client, every client's sandbox instead of production (docs/sandbox.md)."""
    rows = claim_store.listing(conn, client_id=client_id, state=state, submission_id=submission_id, since=since,
                               until=until, limit=limit, offset=offset, sandbox=sandbox)

    def count() -> int:
        return claim_store.count_listing(conn, client_id=client_id, state=state, submission_id=submission_id,
                                         since=since, until=until, sandbox=sandbox)
    return Page(rows, offset, _total(rows, limit, offset, count))


def submissions_page(conn: Connection, *, client_id: str | None, status: str | None, since: datetime | None,
                     until: datetime | None, limit: int, offset: int, sandbox: bool = False) -> Page:
    rows = sub_store.listing(conn, client_id=client_id, status=status, since=since, until=until, limit=limit,
                             offset=offset, sandbox=sandbox)

    def count() -> int:
        return sub_store.count_listing(conn, client_id=client_id, status=status, since=since, until=until,
                                       sandbox=sandbox)
    return Page(rows, offset, _total(rows, limit, offset, count))


def outbox_page(conn: Connection, *, status: str | None, partner_id: str | None, limit: int, offset: int) -> Page:
    conds = ([outbox.c.status == status] if status else []) + ([outbox.c.partner_id == partner_id] if partner_id else [])
    q = select(outbox).order_by(outbox.c.id.desc())
    rows = list(conn.execute((q.where(*conds) if conds else q).limit(limit).offset(offset)).mappings())

    def count() -> int:
        c = select(func.count()).select_from(outbox)
        return int(conn.execute(c.where(*conds) if conds else c).scalar_one())
    return Page(rows, offset, _total(rows, limit, offset, count))

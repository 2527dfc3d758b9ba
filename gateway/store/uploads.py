"""SFTP upload bookkeeping and status-file cursors (issue 4)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, delete, func, insert, select, update

from gateway.store.schema import claim_events, claims, status_cursors, status_files, sftp_uploads
from gateway.store.sql import utcnow


def set_state(conn: Connection, client_id: str, name: str, state: str, *, node_id: str | None = None) -> None:
    """Record (or replace) the state of an upload, and which node's SFTP front has it."""
    where = (sftp_uploads.c.client_id == client_id, sftp_uploads.c.name == name)
    conn.execute(delete(sftp_uploads).where(*where))
    conn.execute(insert(sftp_uploads).values(client_id=client_id, name=name, state=state, updated_at=utcnow(),
                                             node_id=node_id))


def get(conn: Connection, client_id: str, name: str) -> RowMapping | None:
    return conn.execute(select(sftp_uploads).where(sftp_uploads.c.client_id == client_id,
                                                   sftp_uploads.c.name == name)).mappings().first()


def rename(conn: Connection, client_id: str, old: str, new: str) -> None:
    conn.execute(delete(sftp_uploads).where(sftp_uploads.c.client_id == client_id, sftp_uploads.c.name == new))
    conn.execute(update(sftp_uploads).where(sftp_uploads.c.client_id == client_id, sftp_uploads.c.name == old)
                 .values(name=new, updated_at=utcnow()))


def forget(conn: Connection, client_id: str, name: str) -> None:
    conn.execute(delete(sftp_uploads).where(sftp_uploads.c.client_id == client_id, sftp_uploads.c.name == name))


def all_uploads(conn: Connection) -> list[RowMapping]:
    return list(conn.execute(select(sftp_uploads).order_by(sftp_uploads.c.updated_at)).mappings())


# -- status files ---------------------------------------------------------------------------------

def cursor(conn: Connection, client_id: str) -> RowMapping | None:
    return conn.execute(select(status_cursors).where(status_cursors.c.client_id == client_id)).mappings().first()


def max_event_id(conn: Connection, client_id: str) -> int:
    q = select(func.max(claim_events.c.id)).where(claim_events.c.client_id == client_id)
    return int(conn.execute(q).scalar_one() or 0)


def plan_status_file(conn: Connection, client_id: str, *, after: int, upto: int, filename: str, fmt: str,
                     now: datetime) -> None:
    """Advance the cursor and record the planned file, in the caller's transaction."""
    conn.execute(delete(status_cursors).where(status_cursors.c.client_id == client_id))
    conn.execute(insert(status_cursors).values(client_id=client_id, last_event_id=upto, last_run_at=now))
    if upto > after:
        conn.execute(insert(status_files).values(client_id=client_id, filename=filename, first_event_id=after + 1,
                                                 last_event_id=upto, format=fmt, created_at=now))


def planned_files(conn: Connection, client_id: str) -> list[RowMapping]:
    return list(conn.execute(select(status_files).where(status_files.c.client_id == client_id)
                             .order_by(status_files.c.id)).mappings())


def events_between(conn: Connection, client_id: str, first: int, last: int) -> list[RowMapping]:
    """The client's claim events with ``first <= id <= last``, with the claim's reference."""
    q = (select(claim_events.c.id, claim_events.c.claim_id, claims.c.creditor_reference, claim_events.c.from_state,
                claim_events.c.state, claim_events.c.kind, claim_events.c.actor, claim_events.c.data,
                claim_events.c.created_at)
         .join(claims, claims.c.id == claim_events.c.claim_id)
         .where(claim_events.c.client_id == client_id, claim_events.c.id >= first, claim_events.c.id <= last)
         .order_by(claim_events.c.id))
    return list(conn.execute(q).mappings())

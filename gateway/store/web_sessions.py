"""The web console's server-side sessions: one row per logged-in browser, by the SHA-256 of its token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from gateway.store.schema import web_sessions


def add(conn: Connection, token_hash: str, login: str, now: datetime, expires_at: datetime) -> None:
    conn.execute(web_sessions.insert().values(token_hash=token_hash, login=login, created_at=now,
                                              expires_at=expires_at))


def get(conn: Connection, token_hash: str) -> tuple[str, datetime] | None:
    """(login, expires_at) of the session, or None."""
    row = conn.execute(select(web_sessions.c.login, web_sessions.c.expires_at)
                       .where(web_sessions.c.token_hash == token_hash)).first()
    return (str(row[0]), row[1]) if row else None


def extend(conn: Connection, token_hash: str, expires_at: datetime) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.token_hash == token_hash).values(expires_at=expires_at))


def remove(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == token_hash))


def remove_expired(conn: Connection, now: datetime) -> int:
    return int(conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now)).rowcount)

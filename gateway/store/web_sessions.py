"""The web console's server-side sessions: one row per logged-in browser, by the SHA-256 of its token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select, update

from gateway.store.schema import web_sessions


def add(conn: Connection, token_hash: str, login: str, credential: str, now: datetime,
        expires_at: datetime) -> None:
    conn.execute(web_sessions.insert().values(token_hash=token_hash, login=login, credential=credential,
                                              created_at=now, expires_at=expires_at))


def get(conn: Connection, token_hash: str) -> tuple[str, str, datetime, datetime] | None:
    """(login, credential, expires_at, created_at) of the session, or None."""
    row = conn.execute(select(web_sessions.c.login, web_sessions.c.credential, web_sessions.c.expires_at,
                              web_sessions.c.created_at)
                       .where(web_sessions.c.token_hash == token_hash)).first()
    return (str(row[0]), str(row[1]), row[2], row[3]) if row else None


def search(conn: Connection, token_hash: str) -> str | None:
    """The session's search texts (sealed JSON, ``services.web_sessions``), or None."""
    value = conn.execute(select(web_sessions.c.search).where(web_sessions.c.token_hash == token_hash)).scalar()
    return str(value) if value is not None else None


def set_search(conn: Connection, token_hash: str, value: str | None) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.token_hash == token_hash).values(search=value))


def clear_searches_not_starting(conn: Connection, prefix: str) -> int:
    """Forget every kept search whose text does not start with ``prefix``; how many."""
    return int(conn.execute(update(web_sessions).where(web_sessions.c.search.is_not(None),
                                                       web_sessions.c.search.not_like(f"{prefix}%"))
                            .values(search=None)).rowcount)


def remove_login(conn: Connection, login: str) -> int:
    """End every session of ``login``."""
    return int(conn.execute(delete(web_sessions).where(web_sessions.c.login == login)).rowcount)


def extend(conn: Connection, token_hash: str, expires_at: datetime) -> None:
    conn.execute(update(web_sessions).where(web_sessions.c.token_hash == token_hash).values(expires_at=expires_at))


def remove(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == token_hash))


def remove_expired(conn: Connection, now: datetime) -> int:
    return int(conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now)).rowcount)


def keep_newest(conn: Connection, login: str, keep: int) -> int:
    """End all but the ``keep`` newest sessions of ``login``: how many were ended."""
    newest = (select(web_sessions.c.token_hash).where(web_sessions.c.login == login)
              .order_by(web_sessions.c.created_at.desc(), web_sessions.c.token_hash).limit(keep))
    return int(conn.execute(delete(web_sessions).where(web_sessions.c.login == login,
                                                       web_sessions.c.token_hash.not_in(newest))).rowcount)

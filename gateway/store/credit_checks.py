"""Credit checks (migration 0011): one row per request, which is also the client's audit log.

Plain columns hold what the audit needs and no subject data: who asked, when, through which channel,
for which stated interest, the outcome (``pending`` while the bureaus are asked, ``queried``, ``cached``,
``refused``, ``failed`` when the check broke off after its pending row), the colour, and per bureau its status (``bureaus``, JSON). The subject and the bureaus'
answers are in ``personal``, sealed under the row's own data key (``wrapped_dek``, wrapped by the client's
key, ``keys_store``). ``subject_index`` is the blind index of the subject's name exactly as a claim's
debtor name is indexed (``claim_keys.name_index``), which links a check to a later claim of the same client.
Every query is scoped by ``client_id``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, Boolean, Column, Connection, Index, Integer, LargeBinary, RowMapping, String,
                        Table, Text, and_, exists, func, insert, or_, select, update)

from gateway.store.keys_store import client_keys
from gateway.store.schema import UTCDateTime, metadata

PENDING, QUERIED, CACHED, REFUSED, FAILED = "pending", "queried", "cached", "refused", "failed"

credit_checks = Table(
    "credit_checks", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("requested_by", String(128), nullable=False),  # the user (web login, SOAP username, CLI --user)
    Column("channel", String(16), nullable=False),  # cli | soap | web
    Column("interest", String(32), nullable=False),  # the stated legitimate interest
    Column("outcome", String(16), nullable=False),
    Column("source_check_id", BigInteger, nullable=True),  # cached: the check whose answer was given again
    Column("subject_index", String(32), nullable=True),
    Column("subject_key", String(32), nullable=False),  # blind index of the subject's identity: the cache key
    Column("colour", String(8), nullable=True),
    Column("incomplete", Boolean, nullable=True),
    Column("bureaus", Text, nullable=True),  # JSON [{bureau, status, error, elapsed_ms}]: no subject data
    Column("key_id", String(16), nullable=True),
    Column("wrapped_dek", LargeBinary, nullable=True),
    Column("personal", LargeBinary, nullable=True),
    Column("answered_at", UTCDateTime, nullable=True),
    Index("ix_credit_checks_client_time", "client_id", "created_at"),
    Index("ix_credit_checks_client_subject", "client_id", "subject_key", "created_at"),
    Index("ix_credit_checks_client_index", "client_id", "subject_index"),
)
c = credit_checks.c
kc = client_keys.c


def add(conn: Connection, **values: Any) -> int:
    """Insert one row; its id."""
    return int(conn.execute(insert(credit_checks).values(**values).returning(c.id)).scalar_one())


def settle(conn: Connection, check_id: int, **values: Any) -> None:
    """Fill in a pending row's answer."""
    conn.execute(update(credit_checks).where(c.id == check_id).values(**values))


def counted_since(conn: Connection, client_id: str, since: datetime) -> int:
    """Checks of the client since ``since`` that count against its rate limit (refused ones do not)."""
    return int(conn.execute(select(func.count()).select_from(credit_checks).where(
        c.client_id == client_id, c.created_at >= since, c.outcome != REFUSED)).scalar_one())


def reusable(conn: Connection, client_id: str, subject_key: str, complete_since: datetime,
             incomplete_since: datetime) -> RowMapping | None:
    """The newest answered check of this subject young enough to be given again, if any."""
    fresh = or_(and_(c.incomplete.is_(False), c.created_at >= complete_since),
                and_(c.incomplete.is_(True), c.created_at >= incomplete_since))
    return conn.execute(select(credit_checks).where(
        c.client_id == client_id, c.subject_key == subject_key, c.outcome == QUERIED, c.personal.is_not(None),
        c.wrapped_dek.is_not(None), c.key_id.is_not(None), fresh,
        # its client key still there: an answer that no longer opens is never given again
        exists().where(kc.client_id == c.client_id, kc.key_id == c.key_id, kc.wrapped_kek.is_not(None))).order_by(c.created_at.desc(), c.id.desc()).limit(1)).mappings().first()


def get(conn: Connection, client_id: str, check_id: int) -> RowMapping | None:
    """One of the client's checks (None for another client's)."""
    return conn.execute(select(credit_checks).where(c.client_id == client_id, c.id == check_id)).mappings().first()


def by_subject_index(conn: Connection, client_id: str, token: str, limit: int = 20) -> list[RowMapping]:
    """The client's answered checks of a subject with this name index, newest first."""
    return list(conn.execute(select(credit_checks).where(
        c.client_id == client_id, c.subject_index == token, c.outcome.in_((QUERIED, CACHED)))
        .order_by(c.created_at.desc(), c.id.desc()).limit(limit)).mappings())


def audit(conn: Connection, client_id: str, since: datetime | None = None,
          until: datetime | None = None) -> list[RowMapping]:
    """The client's checks, oldest first (every request: asked, cached, refused, pending)."""
    q = select(credit_checks).where(c.client_id == client_id)
    if since is not None:
        q = q.where(c.created_at >= since)
    if until is not None:
        q = q.where(c.created_at < until)
    return list(conn.execute(q.order_by(c.created_at, c.id)).mappings())


ERASED_KEY = "erased"  # subject_key of an erased check: never equal to a blind index (hex)


def erase(conn: Connection, client_id: str, *, check_id: int | None = None, subject_index: str | None = None,
          before: datetime | None = None) -> int:
    """Drop the sealed subject and answers, their key and the blind indexes of the client's checks chosen by
    id (a cached row: its source), by the subject's name index, or by age (``before``); the audit columns
    stay. The cached rows repeating an erased check lose their blind indexes too (they hold no sealed data of
    their own but would link the subject to later claims and answers). Rows that held data."""
    chosen = c.client_id == client_id
    if check_id is not None:
        source = conn.execute(select(c.source_check_id).where(c.client_id == client_id, c.id == check_id)).scalar()
        chosen = and_(chosen, c.id == (source if source is not None else check_id))
    if subject_index is not None:
        chosen = and_(chosen, c.subject_index == subject_index)
    if before is not None:
        chosen = and_(chosen, c.created_at < before)
    ids = [i for (i,) in conn.execute(select(c.id).where(chosen, c.personal.is_not(None)))]
    blind = {"subject_index": None, "subject_key": ERASED_KEY}
    for part in range(0, len(ids), 500):
        conn.execute(update(credit_checks).where(c.id.in_(ids[part:part + 500]))
                     .values(personal=None, wrapped_dek=None, key_id=None, **blind))
        conn.execute(update(credit_checks).where(c.client_id == client_id,
                                                 c.source_check_id.in_(ids[part:part + 500])).values(**blind))
    # rows chosen that hold no data (cached ones, pending or refused ones) lose their indexes as well
    conn.execute(update(credit_checks).where(chosen, c.personal.is_(None), c.subject_key != ERASED_KEY)
                 .values(**blind))
    return len(ids)


def erase_all(conn: Connection, client_id: str) -> int:
    """Every check of the client (its keys are being destroyed): data, key and blind indexes; rows that held
    data."""
    n = int(conn.execute(update(credit_checks).where(c.client_id == client_id, c.personal.is_not(None))
                         .values(personal=None, wrapped_dek=None, key_id=None)).rowcount)
    conn.execute(update(credit_checks).where(c.client_id == client_id, c.subject_key != ERASED_KEY)
                 .values(subject_index=None, subject_key=ERASED_KEY))
    return n


def lock_client(conn: Connection, client_id: str) -> None:
    """Serialise the rate-limit count and insert of one client (PostgreSQL; SQLite's write lock does it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"credit:{client_id}"))))

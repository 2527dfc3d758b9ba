"""The durable outbox: work for partners, written with the claims it delivers, leased by workers.

A row is ``pending`` until a worker leases it (``leased`` with an owner and a deadline); a lease
that runs out makes the row available again, so a crashed worker's work is picked up by another.
PostgreSQL leases with ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers anyway.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Connection, RowMapping, and_, bindparam, func, insert, literal, or_, select, update

from gateway.errors import NotFound
from gateway.store.schema import outbox
from gateway.store.sql import dumps, loads, utcnow

__all__ = ["OutboxItem", "backoff", "complete", "dead_ids", "defer", "due_now", "enqueue", "enqueue_dead", "fail",
           "get", "hold_partner", "lease", "listing", "loads", "open_count", "release_waiting", "replace_payload",
           "retry", "settle_late"]


class OutboxItem(msgspec.Struct, kw_only=True):
    id: int
    idempotency_key: str
    client_id: str
    partner_id: str
    operation: str
    payload: dict[str, Any]
    attempts: int
    lease_owner: str
    created_at: datetime | None = None  # when the row was queued (None: built by hand)
    failing_since: datetime | None = None  # the first of the failed attempts in a row (None: none yet)


_ENQUEUE = insert(outbox)


def enqueue(conn: Connection, *, key: str, client_id: str, partner_id: str, operation: str,
            payload: dict[str, Any], now: datetime | None = None) -> None:
    """Add work in the caller's transaction (the one that writes the claims it concerns)."""
    now = now or utcnow()
    # one statement object run with parameters: compiled once, not rebuilt for literal values per call
    conn.execute(_ENQUEUE, dict(idempotency_key=key, client_id=client_id, partner_id=partner_id, operation=operation,
                                payload=dumps(payload), status="pending", attempts=0, available_at=now,
                                created_at=now))


def enqueue_dead(conn: Connection, *, key: str, client_id: str, partner_id: str, operation: str,
                 payload: dict[str, Any], error: str, now: datetime | None = None) -> int:
    """Add work that is already dead-lettered (the operator retries it); returns the row id."""
    now = now or utcnow()
    res = conn.execute(insert(outbox).values(idempotency_key=key, client_id=client_id, partner_id=partner_id,
                                             operation=operation, payload=dumps(payload), status="dead", attempts=0,
                                             last_error=error[:4000], available_at=now, created_at=now, done_at=now))
    pk = res.inserted_primary_key
    assert pk is not None  # a plain single-row INSERT always reports its key
    return int(pk[0])


# Statements run once per batch, built once: building the expressions again cost ~0.3 ms of CPU per
# lease (SQLAlchemy's coercions), a third of a small batch's bookkeeping. Run with parameters, their cache
# key and compiled form are reused.
_NOW = bindparam("b_now", type_=outbox.c.available_at.type)
_AVAILABLE = select(outbox).where(or_(and_(outbox.c.status == "pending", outbox.c.available_at <= _NOW),
                                      and_(outbox.c.status == "leased", outbox.c.lease_until < _NOW))
                                  ).order_by(outbox.c.available_at, outbox.c.id).limit(1)
_AVAILABLE_FOR = _AVAILABLE.where(outbox.c.partner_id.in_(bindparam("b_partners", expanding=True)))
_AVAILABLE_EXCEPT = _AVAILABLE.where(outbox.c.partner_id.not_in(bindparam("b_busy", expanding=True)))
_TAKE = update(outbox).where(outbox.c.id == bindparam("b_id")).values(
    status="leased", lease_owner=bindparam("b_owner"), lease_until=bindparam("b_until"),
    attempts=bindparam("b_attempts"))
_COMPLETE = update(outbox).where(
    outbox.c.id == bindparam("b_id"), outbox.c.lease_owner == bindparam("b_owner"), outbox.c.status == "leased",
    outbox.c.attempts == bindparam("b_attempts")).values(
    status="done", receipt=bindparam("b_receipt"), done_at=bindparam("b_done"), lease_until=None, last_error=None)


def lease(conn: Connection, owner: str, lease_seconds: float, now: datetime | None = None,
          partners: Sequence[str] | None = None, busy: Sequence[str] = ()) -> OutboxItem | None:
    """Take the oldest available row for ``lease_seconds``; None when there is nothing to do.

    ``partners``: only rows of these partners; ``busy``: no row of these (one already being worked on)."""
    now = now or utcnow()
    params: dict[str, Any] = {"b_now": now}
    if partners is not None:
        q = _AVAILABLE_FOR
        params["b_partners"] = [p for p in partners if p not in busy]
    elif busy:
        q = _AVAILABLE_EXCEPT
        params["b_busy"] = list(busy)
    else:
        q = _AVAILABLE
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    row = conn.execute(q, params).mappings().first()
    if row is None:
        return None
    attempts = row["attempts"] + 1
    conn.execute(_TAKE, {"b_id": row["id"], "b_owner": owner, "b_until": now + timedelta(seconds=lease_seconds),
                         "b_attempts": attempts})
    return OutboxItem(id=row["id"], idempotency_key=row["idempotency_key"], client_id=row["client_id"],
                      partner_id=row["partner_id"], operation=row["operation"], payload=loads(row["payload"]),
                      attempts=attempts, lease_owner=owner, created_at=row["created_at"],
                      failing_since=row["failing_since"])


def _owned(item: OutboxItem) -> Any:
    # Only the current lease holder may settle a row: a worker whose lease ran out must not.
    return and_(outbox.c.id == item.id, outbox.c.lease_owner == item.lease_owner, outbox.c.status == "leased",
                outbox.c.attempts == item.attempts)


def complete(conn: Connection, item: OutboxItem, receipt: dict[str, Any], now: datetime | None = None) -> bool:
    """Mark done with the partner's receipt; False if the lease was lost meanwhile."""
    res = conn.execute(_COMPLETE, {"b_id": item.id, "b_owner": item.lease_owner, "b_attempts": item.attempts,
                                   "b_receipt": dumps(receipt), "b_done": now or utcnow()})
    return res.rowcount == 1


def settle_late(conn: Connection, item: OutboxItem, receipt: dict[str, Any], now: datetime | None = None) -> bool:
    """Mark done with a partner's receipt that came back after the lease was lost; False if already done.

    The receipt is the partner's word that the work arrived, whoever holds the row now: a holder still
    sending gets the same answer folded by the idempotency key (and finds the row done), one that failed
    sent nothing the partner had not already taken.
    """
    res = conn.execute(update(outbox).where(outbox.c.id == item.id,
                                            outbox.c.status.in_(("pending", "leased", "dead")))
                       .values(status="done", receipt=dumps(receipt), done_at=now or utcnow(),
                               lease_owner=item.lease_owner, lease_until=None, last_error=None))
    return res.rowcount == 1


def replace_payload(conn: Connection, item: OutboxItem, payload: dict[str, Any]) -> bool:
    """The leased row's payload rewritten by its holder; False if the lease was lost meanwhile."""
    return conn.execute(update(outbox).where(_owned(item)).values(payload=dumps(payload))).rowcount == 1


def backoff(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: spreads retries of many rows after an outage."""
    return random.uniform(0, min(cap, base * 2 ** (attempts - 1)))


def fail(conn: Connection, item: OutboxItem, error: str, *, retry_in: float | None,
         now: datetime | None = None, counted: bool = True) -> bool:
    """Record a failed attempt: back to pending after ``retry_in`` seconds, or dead when None.

    ``counted=False``: the failure was the gateway's own (its database), not the partner's: the attempt is given
    back, so that it does not use up the partner's ``max_attempts``."""
    now = now or utcnow()
    values: dict[str, Any] = dict(last_error=error[:4000], lease_until=None)
    if not counted:
        values["attempts"] = max(item.attempts - 1, 0)
    else:  # the retry window runs from the first failure of this run, not from when the row was queued
        values["failing_since"] = func.coalesce(outbox.c.failing_since, literal(now, outbox.c.failing_since.type))
    if retry_in is None:
        values.update(status="dead", done_at=now)
    else:
        values.update(status="pending", available_at=now + timedelta(seconds=retry_in))
    return conn.execute(update(outbox).where(_owned(item)).values(**values)).rowcount == 1


def defer(conn: Connection, item: OutboxItem, why: str, *, retry_in: float, now: datetime | None = None) -> bool:
    """Put a leased row back to wait ``retry_in`` seconds without counting the attempt: it was not tried.

    For work that must not go out yet (a request about a claim the partner has not received); the reason
    stays readable in ``last_error``. False if the lease was lost meanwhile.
    """
    now = now or utcnow()
    res = conn.execute(update(outbox).where(_owned(item)).values(
        status="pending", available_at=now + timedelta(seconds=retry_in), attempts=max(item.attempts - 1, 0),
        lease_owner=None, lease_until=None, last_error=why[:4000]))
    return res.rowcount == 1


def release_waiting(conn: Connection, partner_id: str, now: datetime | None = None) -> int:
    """A partner answered again after failures: its rows waiting out a backoff become due now.

    Without this, a backlog after an outage would trickle out over the last backoff windows (minutes
    with a 5 s base after a few attempts) instead of draining as soon as the partner is back.
    """
    now = now or utcnow()
    res = conn.execute(update(outbox).where(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                            outbox.c.attempts > 0, outbox.c.available_at > now)
                       .values(available_at=now))
    return int(res.rowcount or 0)


def hold_partner(conn: Connection, partner_id: str, until: datetime, why: str) -> int:
    """A partner asked the gateway to wait (429/503 ``Retry-After``): its pending rows due sooner wait until ``until``.

    Kept in the rows' ``available_at``, the hold is shared by every node and survives a restart, and an operator's
    ``retry`` of a row (available now) lifts it for that row alone. ``why`` goes to ``last_error`` of the rows that
    have no error of their own, so ``outbox list`` says why they wait. Returns the rows held.

    On PostgreSQL a row another transaction has locked is left as it is (``SKIP LOCKED``): it is being leased or
    settled right now, and two nodes told to wait at once, each holding its own failed row, would otherwise wait
    for each other's (a deadlock, which would lose both failures' records)."""
    due_sooner = select(outbox.c.id).where(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                           outbox.c.available_at < until)
    if conn.dialect.name == "postgresql":
        due_sooner = due_sooner.with_for_update(skip_locked=True)
    res = conn.execute(update(outbox).where(outbox.c.id.in_(due_sooner))
                       .values(available_at=until, last_error=func.coalesce(outbox.c.last_error, why[:4000])))
    return int(res.rowcount or 0)


def due_now(conn: Connection, partner_id: str, now: datetime | None = None) -> int:
    """Operator: every pending row of the partner that waits for a later try is due now: a backoff, the partner's
    ``Retry-After`` hold, a request waiting for its claim's receipt (which, not received yet, waits again). Attempts
    and the retry window go on as they were. Returns the rows made due."""
    now = now or utcnow()
    res = conn.execute(update(outbox).where(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                            outbox.c.available_at > now).values(available_at=now))
    return int(res.rowcount or 0)


def retry(conn: Connection, ident: int, now: datetime | None = None) -> None:
    """Operator: make a dead or waiting row available now, attempts and the retry window counted afresh.

    The dispatcher's ``retry_for_seconds`` runs from the row's first failure (``failing_since``): cleared here, a
    row dead after a day of failures gets the whole window again at the next outage instead of dying after
    ``max_attempts`` quick tries; ``created_at`` keeps saying when the work was queued."""
    now = now or utcnow()
    res = conn.execute(update(outbox).where(outbox.c.id == ident, outbox.c.status.in_(("dead", "pending")))
                       .values(status="pending", available_at=now, failing_since=None, attempts=0, done_at=None))
    if res.rowcount != 1:
        raise NotFound(f"no dead or pending outbox row {ident}")


def get(conn: Connection, ident: int) -> RowMapping:
    row = conn.execute(select(outbox).where(outbox.c.id == ident)).mappings().first()
    if row is None:
        raise NotFound(f"no outbox row {ident}")
    return row


def listing(conn: Connection, *, status: str | None = None, partner_id: str | None = None,
            limit: int = 100) -> list[RowMapping]:
    q = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if status:
        q = q.where(outbox.c.status == status)
    if partner_id:
        q = q.where(outbox.c.partner_id == partner_id)
    return list(conn.execute(q).mappings())


def dead_ids(conn: Connection, partner_id: str | None = None) -> list[int]:
    """Ids of the dead-lettered rows (of ``partner_id`` only, if given), oldest first."""
    q = select(outbox.c.id).where(outbox.c.status == "dead").order_by(outbox.c.id)
    if partner_id is not None:
        q = q.where(outbox.c.partner_id == partner_id)
    return [int(i) for i in conn.execute(q).scalars()]


def open_count(conn: Connection) -> int:
    """Rows not yet done or dead."""
    from sqlalchemy import func
    return int(conn.execute(select(func.count()).select_from(outbox)
                            .where(outbox.c.status.in_(("pending", "leased")))).scalar_one())


def release_owner(conn: Connection, owner: str, now: datetime) -> int:
    """Rows leased by ``owner`` become available now (its process is gone: a restart of the same node)."""
    res = conn.execute(update(outbox).where(outbox.c.status == "leased", outbox.c.lease_owner == owner)
                       .values(lease_until=now - timedelta(seconds=1)))
    return int(res.rowcount or 0)


def break_lease(conn: Connection, ident: int, now: datetime) -> bool:
    """Operator: a leased row becomes available now, whoever holds it (its settle then fails: lease lost)."""
    res = conn.execute(update(outbox).where(outbox.c.id == ident, outbox.c.status == "leased")
                       .values(status="pending", lease_owner=None, lease_until=None, available_at=now))
    return res.rowcount == 1


def renew(conn: Connection, item: OutboxItem, lease_seconds: float, now: datetime) -> bool:
    """The holder extends its lease while it works (a heartbeat); False when the lease is no longer its own."""
    res = conn.execute(update(outbox).where(_owned(item)).values(lease_until=now + timedelta(seconds=lease_seconds)))
    return res.rowcount == 1

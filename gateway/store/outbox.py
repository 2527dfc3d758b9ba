"""The durable outbox: work for partners, written with the claims it delivers, leased by workers.

A row is ``pending`` until a worker leases it (``leased`` with an owner and a deadline); a lease
that runs out makes the row available again, so a crashed worker's work is picked up by another.
PostgreSQL leases with ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers anyway.

Two clocks: a row's ``lease_until`` is written and judged by the lease clock (``App.lease_now``: the database
server's on PostgreSQL, see ``store.leases``), so that nodes whose own clocks disagree never take a row another
still works on, nor wait long past a dead node's lease; ``available_at`` (a backoff, a hold) and the other times
are the node's own clock's.

A partner that asks the gateway to wait (429/503 ``Retry-After``) is *held*: a row of the named leases table,
``partner_hold:<partner>`` (owner ``partner:<partner>``, ``expires_at`` the end of the wait), in the database every
node shares, so it outlives the node that was told. While it lasts no row of the partner is leased: rows queued
during the hold are queued to wait for its end, and a row that became due by another path (another node's backoff,
a split, a race with the hold's own transaction) is put back to wait when a lease finds it. The first success with
the partner ends the hold for everything waiting (``end_hold``); so does the operator's ``retry``.

Lock order on PostgreSQL: a transaction takes its own leased row, then the hold row, and every other row of the
partner with ``SKIP LOCKED`` only, so two nodes (one told to wait, one told "delivered") never wait for each other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import (Connection, RowMapping, and_, bindparam, case, delete, func, insert, literal, or_, select,
                        update)

from gateway.errors import NotFound
from gateway.store.schema import leases, outbox
from gateway.store.sql import dumps, loads, utcnow

__all__ = ["HOLD_PREFIX", "OutboxItem", "backoff", "complete", "dead_ids", "defer", "due_now", "end_hold", "enqueue",
           "enqueue_dead", "fail", "get", "hold_of", "hold_partner", "holds", "lease", "listing", "loads", "open_count",
           "release_waiting", "replace_payload", "retry", "settle_late"]


HOLD_PREFIX = "partner_hold:"  # the name of a partner's hold in the leases table, before its id


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
    """Add work in the caller's transaction (the one that writes the claims it concerns).

    Work for a partner that asked the gateway to wait is queued to wait until then, saying so in ``last_error``."""
    now = now or utcnow()
    until = hold_of(conn, partner_id, now)
    # one statement object run with parameters: compiled once, not rebuilt for literal values per call
    conn.execute(_ENQUEUE, dict(idempotency_key=key, client_id=client_id, partner_id=partner_id, operation=operation,
                                payload=dumps(payload), status="pending", attempts=0, available_at=until or now,
                                created_at=now, last_error=None if until is None else held_why(partner_id, until)))


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
_LEASE_NOW = bindparam("b_lease_now", type_=outbox.c.lease_until.type)
_AVAILABLE = select(outbox).where(or_(and_(outbox.c.status == "pending", outbox.c.available_at <= _NOW),
                                      and_(outbox.c.status == "leased", outbox.c.lease_until < _LEASE_NOW))
                                  ).order_by(outbox.c.available_at, outbox.c.id).limit(1)
_AVAILABLE_FOR = _AVAILABLE.where(outbox.c.partner_id.in_(bindparam("b_partners", expanding=True)))
_AVAILABLE_EXCEPT = _AVAILABLE.where(outbox.c.partner_id.not_in(bindparam("b_busy", expanding=True)))
_HELD_LOOKS = 16  # partners found held (and their rows moved) in one lease before it gives up for this call
_TAKE = update(outbox).where(outbox.c.id == bindparam("b_id")).values(
    status="leased", lease_owner=bindparam("b_owner"), lease_until=bindparam("b_until"),
    attempts=bindparam("b_attempts"))
_COMPLETE = update(outbox).where(
    outbox.c.id == bindparam("b_id"), outbox.c.lease_owner == bindparam("b_owner"), outbox.c.status == "leased",
    outbox.c.attempts == bindparam("b_attempts")).values(
    status="done", receipt=bindparam("b_receipt"), done_at=bindparam("b_done"), lease_until=None, last_error=None)


def lease(conn: Connection, owner: str, lease_seconds: float, now: datetime | None = None,
          partners: Sequence[str] | None = None, busy: Sequence[str] = (),
          lease_now: datetime | None = None) -> OutboxItem | None:
    """Take the oldest available row for ``lease_seconds``; None when there is nothing to do.

    ``partners``: only rows of these partners; ``busy``: no row of these (one already being worked on).
    ``now`` judges ``available_at``; ``lease_now`` (the lease clock's time, by default ``now``) judges the leases of
    other workers and dates this one."""
    now = now or utcnow()
    lease_now = lease_now or now
    skip = list(busy)
    for _ in range(_HELD_LOOKS):
        params: dict[str, Any] = {"b_now": now, "b_lease_now": lease_now}
        if partners is not None:
            q = _AVAILABLE_FOR
            params["b_partners"] = [p for p in partners if p not in skip]
        elif skip:
            q = _AVAILABLE_EXCEPT
            params["b_busy"] = skip
        else:
            q = _AVAILABLE
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        row = conn.execute(q, params).mappings().first()
        if row is None:
            return None
        # the partner's hold looked up for the row found (one primary-key read; joined into the query above, it
        # was read for every due row before the sort, doubling the lease's cost under a backlog)
        held = hold_of(conn, row["partner_id"], now)
        if held is None:
            break
        # Due by a path that did not know of the hold (queued as it was being recorded, another node's shorter
        # backoff, a split): the partner's due rows go back to wait for its end, and the next partner is looked at.
        _wait_for_hold(conn, row["partner_id"], held, held_why(row["partner_id"], held), found=row["id"])
        skip.append(row["partner_id"])
    else:
        return None  # held partners all along: the next call finds their rows moved out of the way
    attempts = row["attempts"] + 1
    conn.execute(_TAKE, {"b_id": row["id"], "b_owner": owner, "b_until": lease_now + timedelta(seconds=lease_seconds),
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
    return _make_due(conn, and_(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                outbox.c.attempts > 0, outbox.c.available_at > now), now)


def _make_due(conn: Connection, where: Any, now: datetime, held_by: str | None = None) -> int:
    # Rows another transaction has locked (PostgreSQL) are left: it is leasing or settling them right now, and
    # waiting for them while holding the partner's hold row could deadlock with a node recording a new hold.
    rows = select(outbox.c.id).where(where)
    if conn.dialect.name == "postgresql":
        rows = rows.with_for_update(skip_locked=True)
    values: dict[str, Any] = {"available_at": now}
    if held_by is not None:  # the hold is over: a row's "waiting: partner P asked ..." is no longer true
        values["last_error"] = case((outbox.c.last_error.startswith(_held_prefix(held_by), autoescape=True), None),
                                    else_=outbox.c.last_error)
    res = conn.execute(update(outbox).where(outbox.c.id.in_(rows)).values(**values))
    return int(res.rowcount or 0)


def hold_name(partner_id: str) -> str:
    """The hold's name in the leases table."""
    return HOLD_PREFIX + partner_id


def held_why(partner_id: str, until: datetime) -> str:
    """What a row waiting for the partner's hold says in ``last_error``."""
    return f"{_held_prefix(partner_id)} until {until:%Y-%m-%d %H:%M:%S} UTC"


def _held_prefix(partner_id: str) -> str:
    return f"waiting: partner {partner_id} asked the gateway to wait"


_HOLD_UNTIL = select(leases.c.expires_at).where(leases.c.name == bindparam("b_name"))


def hold_of(conn: Connection, partner_id: str, now: datetime | None = None) -> datetime | None:
    """Until when the partner asked the gateway to wait; None when it does not hold the gateway off (any more)."""
    until: datetime | None = conn.execute(_HOLD_UNTIL, {"b_name": hold_name(partner_id)}).scalar()
    return until if until is not None and until > (now or utcnow()) else None


def holds(conn: Connection, now: datetime | None = None) -> dict[str, datetime]:
    """Partner -> end of its hold, for every partner holding the gateway off now."""
    now = now or utcnow()
    return {str(name)[len(HOLD_PREFIX):]: until for name, until in conn.execute(
        select(leases.c.name, leases.c.expires_at).where(leases.c.name.startswith(HOLD_PREFIX, autoescape=True),
                                                         leases.c.expires_at > now))}


def hold_partner(conn: Connection, partner_id: str, until: datetime, why: str, now: datetime | None = None) -> int:
    """A partner asked the gateway to wait (429/503 ``Retry-After``): nothing goes to it until ``until``.

    The hold is the partner's (``partner_hold:<partner>``; a later end than one already recorded wins, an earlier
    does not shorten it): rows queued meanwhile wait for it too. Its pending rows due sooner wait until then now,
    ``why`` in ``last_error`` of those that have no error of their own, so ``outbox list`` says why they wait.
    Returns the rows held.

    On PostgreSQL a row another transaction has locked is left as it is (``SKIP LOCKED``): it is being leased or
    settled right now (a lease finds the hold), and two nodes told to wait at once, each holding its own failed
    row, would otherwise wait for each other's (a deadlock, which would lose both failures' records)."""
    now = now or utcnow()
    name, owner = hold_name(partner_id), f"partner:{partner_id}"[:200]
    longer = update(leases).where(leases.c.name == name, leases.c.expires_at < until).values(
        owner=owner, expires_at=until, acquired_at=now)
    if conn.execute(longer).rowcount == 0:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as upsert
        else:
            from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
        conn.execute(upsert(leases).values(name=name, owner=owner, expires_at=until, acquired_at=now)
                     .on_conflict_do_nothing(index_elements=["name"]))
        conn.execute(longer)  # another node's hold recorded just now, ending sooner than this one
    return _wait_for_hold(conn, partner_id, until, why)


def _wait_for_hold(conn: Connection, partner_id: str, until: datetime, why: str, found: int | None = None) -> int:
    due_sooner = select(outbox.c.id).where(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                           outbox.c.available_at < until)
    if conn.dialect.name == "postgresql":
        due_sooner = due_sooner.with_for_update(skip_locked=True)
    res = conn.execute(update(outbox).where(outbox.c.id.in_(due_sooner))
                       .values(available_at=until, last_error=func.coalesce(outbox.c.last_error, why[:4000])))
    held = int(res.rowcount or 0)
    if found is not None:  # a lease that ran out (its node gone) found by ``lease``: it waits like the rest
        res = conn.execute(update(outbox).where(outbox.c.id == found, outbox.c.status == "leased").values(
            status="pending", available_at=until, lease_owner=None, lease_until=None,
            last_error=func.coalesce(outbox.c.last_error, why[:4000])))
        held += int(res.rowcount or 0)
    return held


def end_hold(conn: Connection, partner_id: str, now: datetime | None = None) -> int:
    """The partner took work (or the operator says it is back): its hold ends, and the rows that waited for it are
    due now. Returns those rows (0 when it held nothing)."""
    now = now or utcnow()
    ended = conn.execute(delete(leases).where(leases.c.name == hold_name(partner_id))
                         .returning(leases.c.expires_at)).first()
    if ended is None or ended[0] <= now:
        return 0
    return _make_due(conn, and_(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                outbox.c.available_at > now, outbox.c.available_at <= ended[0]), now, partner_id)


def due_now(conn: Connection, partner_id: str, now: datetime | None = None) -> int:
    """Operator: every pending row of the partner that waits for a later try is due now: a backoff, the partner's
    ``Retry-After`` hold (which ends), a request waiting for its claim's receipt (which, not received yet, waits
    again). Attempts and the retry window go on as they were. Returns the rows made due."""
    now = now or utcnow()
    conn.execute(delete(leases).where(leases.c.name == hold_name(partner_id)))
    return _make_due(conn, and_(outbox.c.partner_id == partner_id, outbox.c.status == "pending",
                                outbox.c.available_at > now), now, partner_id)


def retry(conn: Connection, ident: int, now: datetime | None = None) -> None:
    """Operator: make a dead or waiting row available now, attempts and the retry window counted afresh.

    The dispatcher's ``retry_for_seconds`` runs from the row's first failure (``failing_since``): cleared here, a
    row dead after a day of failures gets the whole window again at the next outage instead of dying after
    ``max_attempts`` quick tries; ``created_at`` keeps saying when the work was queued."""
    now = now or utcnow()
    res = conn.execute(update(outbox).where(outbox.c.id == ident, outbox.c.status.in_(("dead", "pending")))
                       .values(status="pending", available_at=now, failing_since=None, attempts=0, done_at=None)
                       .returning(outbox.c.partner_id)).first()
    if res is None:
        raise NotFound(f"no dead or pending outbox row {ident}")
    # Tried at once, whatever the partner's hold: which ends (the partner's answer to this row holds it anew, or
    # ends the wait of the others). The rows already waiting keep their time until then.
    conn.execute(delete(leases).where(leases.c.name == hold_name(str(res[0]))))


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
    """Rows leased by ``owner`` become available now (its process is gone: a restart of the same node).

    ``now``: the lease clock's time (``App.lease_now``), by which every ``lease_until`` is judged."""
    res = conn.execute(update(outbox).where(outbox.c.status == "leased", outbox.c.lease_owner == owner)
                       .values(lease_until=now - timedelta(seconds=1)))
    return int(res.rowcount or 0)


def break_lease(conn: Connection, ident: int, now: datetime) -> bool:
    """Operator: a leased row becomes available now, whoever holds it (its settle then fails: lease lost)."""
    res = conn.execute(update(outbox).where(outbox.c.id == ident, outbox.c.status == "leased")
                       .values(status="pending", lease_owner=None, lease_until=None, available_at=now))
    return res.rowcount == 1


def renew(conn: Connection, item: OutboxItem, lease_seconds: float, now: datetime) -> bool:
    """The holder extends its lease while it works (a heartbeat); False when the lease is no longer its own.

    ``now``: the lease clock's time (``App.lease_now``)."""
    res = conn.execute(update(outbox).where(_owned(item)).values(lease_until=now + timedelta(seconds=lease_seconds)))
    return res.rowcount == 1

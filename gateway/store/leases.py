"""Named leases: a row per name with an owner and an expiry, the one way nodes take turns.

A lease is taken when free, expired, or already ours (a restarted node with the same node id takes
its own leases back at once; one process per node id is guaranteed by ``services.node``). It is
renewed inside the transactions that do the leased work, so work done after the lease was lost
(another node took it over) rolls back instead of landing twice: the lease is also a fence.

Whose clock: every ``now`` here is the lease clock's time, and on PostgreSQL that is the database server's
(``database_clock``, read once per lease round): nodes sharing one database judge each other's leases by one clock,
so a node whose own clock runs ahead does not take over work another still holds, and one whose clock lags does not
wait minutes past a dead node's lease. On SQLite there is one node, and its own clock is the lease clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, RowMapping, delete, func, select, update

from gateway.store.schema import UTCDateTime, leases

__all__ = ["acquire", "database_clock", "holder", "release", "renew"]


_CLOCK = select(func.clock_timestamp(type_=UTCDateTime()))  # built once: building it cost as much as running it


def database_clock(conn: Connection) -> datetime | None:
    """The database server's time now (PostgreSQL), the one clock all nodes sharing it read alike; None on SQLite.

    ``clock_timestamp()``, not ``now()``: the latter stands still at the transaction's start, and a chunk's
    transaction renews its lease at its end."""
    if conn.dialect.name != "postgresql":
        return None
    value: datetime = conn.execute(_CLOCK).scalar_one()
    return value


def acquire(conn: Connection, name: str, owner: str, seconds: float, now: datetime) -> bool:
    """Take ``name`` for ``seconds`` if it is free, expired or ours; False when another owner holds it.

    Never waits: on PostgreSQL a lease row locked by its holder's running transaction (it renews the
    lease in every chunk it commits) means busy, instead of blocking this node until that chunk commits.
    """
    until = now + timedelta(seconds=seconds)
    if conn.dialect.name == "postgresql":
        row = conn.execute(select(leases).where(leases.c.name == name)
                           .with_for_update(skip_locked=True)).mappings().first()
        if row is None and conn.execute(select(leases.c.name).where(leases.c.name == name)).first() is not None:
            return False  # locked by its holder right now: it is working
        if row is not None:
            if row["owner"] != owner and row["expires_at"] >= now:
                return False
            conn.execute(update(leases).where(leases.c.name == name)
                         .values(owner=owner, expires_at=until, acquired_at=now))
            return True
    else:
        res = conn.execute(update(leases).where(leases.c.name == name,
                                                (leases.c.owner == owner) | (leases.c.expires_at < now))
                           .values(owner=owner, expires_at=until, acquired_at=now))
        if res.rowcount == 1:
            return True
    # imported here: the PostgreSQL dialect is ~60 ms of import that a process which only renews leases
    # (an ingest worker) never needs
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    ins = insert(leases).values(name=name, owner=owner, expires_at=until, acquired_at=now)
    # RETURNING, not rowcount: drivers report -1 for an INSERT that returns the key implicitly
    inserted = conn.execute(ins.on_conflict_do_nothing(index_elements=["name"]).returning(leases.c.name))
    return inserted.first() is not None


def renew(conn: Connection, name: str, owner: str, seconds: float, now: datetime) -> bool:
    """Extend our lease; False when it is not ours any more (taken over after it ran out)."""
    res = conn.execute(update(leases).where(leases.c.name == name, leases.c.owner == owner)
                       .values(expires_at=now + timedelta(seconds=seconds)))
    return res.rowcount == 1


def release(conn: Connection, name: str, owner: str) -> None:
    conn.execute(delete(leases).where(leases.c.name == name, leases.c.owner == owner))


def holder(conn: Connection, name: str) -> RowMapping | None:
    return conn.execute(select(leases).where(leases.c.name == name)).mappings().first()

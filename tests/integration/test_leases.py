"""Named leases on the real database: one owner at a time, taken back by the same node at once, free after
expiry, and a fence: work whose lease was taken over does not commit."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.services.node import LeaseBusy, LeaseLost, fence, leased
from gateway.store import leases as lease_store
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import leases


def test_one_owner_at_a_time_and_the_same_node_takes_its_own_back(app: App) -> None:
    now = app.now()
    with write_tx(app.engine) as conn:
        assert lease_store.acquire(conn, "ingest:demo", "node-a", 60, now)
    with write_tx(app.engine) as conn:
        assert not lease_store.acquire(conn, "ingest:demo", "node-b", 60, now)
        assert lease_store.acquire(conn, "ingest:demo", "node-a", 60, now)  # node-a restarted: its own at once
        assert not lease_store.renew(conn, "ingest:demo", "node-b", 60, now)
    with write_tx(app.engine) as conn:  # node-a died: after the lease ran out node-b may take it
        assert lease_store.acquire(conn, "ingest:demo", "node-b", 60, now + timedelta(seconds=61))
        assert not lease_store.renew(conn, "ingest:demo", "node-a", 60, now)
        lease_store.release(conn, "ingest:demo", "node-a")  # not the holder: nothing happens
        assert lease_store.holder(conn, "ingest:demo")["owner"] == "node-b"  # type: ignore[index]
        lease_store.release(conn, "ingest:demo", "node-b")
        assert lease_store.holder(conn, "ingest:demo") is None


def test_leased_work_that_lost_its_lease_does_not_commit(app: App) -> None:
    app.lease_owner = "node-a"
    with leased(app, "status_files") as lease:
        assert lease is not None
        with write_tx(app.engine) as conn:  # another node takes it over (as after an expiry)
            conn.execute(leases.update().where(leases.c.name == "status_files").values(owner="node-b"))
        with pytest.raises(LeaseLost):
            with write_tx(app.engine) as conn:
                lease_store.acquire(conn, "probe", "node-a", 60, app.now())  # work in the same transaction
                fence(app, conn)
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(leases).where(leases.c.name == "probe")).scalar() == 0
        assert lease_store.holder(conn, "status_files")["owner"] == "node-b"  # type: ignore[index]


def test_a_second_thread_of_the_same_process_waits_or_is_told_busy(app: App) -> None:
    app.lease_owner = "node-a"
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with leased(app, "ingest:demo") as lease:
            assert lease is not None
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(10)
    with leased(app, "ingest:demo") as lease:  # same owner name, other thread: the in-process lock says no
        assert lease is None
    release.set()
    t.join(10)
    with leased(app, "ingest:demo", wait=5) as lease:
        assert lease is not None
    assert issubclass(LeaseBusy, Exception)


def test_a_lease_its_holder_is_renewing_right_now_is_busy_without_waiting(app: App) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time anyway)")
    now = app.now()
    with write_tx(app.engine) as conn:
        assert lease_store.acquire(conn, "ingest:demo", "node-a", 60, now)
    with app.engine.connect() as holder, holder.begin():
        assert lease_store.renew(holder, "ingest:demo", "node-a", 60, now)  # its chunk's transaction, still open
        with app.engine.connect() as other, other.begin():
            other.exec_driver_sql("SET LOCAL lock_timeout = '2s'")  # waiting would fail this test, not hang it
            assert not lease_store.acquire(other, "ingest:demo", "node-b", 60, now)


def test_an_operator_breaks_the_lease_of_a_node_that_is_gone(app: App) -> None:
    from gateway.services.node import break_outbox_lease
    from gateway.store import outbox as outbox_store

    now = app.now()
    with write_tx(app.engine) as conn:
        outbox_store.enqueue(conn, key="deliver:x", client_id="demo", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": []}, now=now)
        gone = outbox_store.lease(conn, "node-gone", 600, now=now)
    assert gone is not None
    with write_tx(app.engine) as conn:
        assert outbox_store.lease(conn, "node-b", 600, now=now) is None  # leased for ten minutes
    assert break_outbox_lease(app, gone.id)
    assert not break_outbox_lease(app, gone.id)  # not leased any more
    with write_tx(app.engine) as conn:
        taken = outbox_store.lease(conn, "node-b", 600, now=app.now())
        assert taken is not None and taken.id == gone.id
        assert not outbox_store.complete(conn, gone, {"late": True})  # the old holder cannot settle it now
        assert outbox_store.complete(conn, taken, {"ok": True})

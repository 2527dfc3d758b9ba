"""Named leases on the real database: one owner at a time, taken back by the same node at once, free after
expiry, and a fence: work whose lease was taken over does not commit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import App, build_app
from gateway.services.dispatch import Dispatcher
from gateway.services.node import Lease, LeaseBusy, LeaseLost, fence, leased, renew_lease
from gateway.store import leases as lease_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import leases
from tests.support import wait_for


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


# -- nodes whose clocks disagree, on one PostgreSQL database --------------------------------------------------------
SKEW = timedelta(minutes=10)  # far past every lease here, and past the clock watch's alert


@pytest.fixture
def skewed(app: App, config_path: Path) -> Iterator[App]:
    """A second node on ``app``'s database whose own clock is set by the test (``app`` keeps the true time)."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("nodes share leases on PostgreSQL only (SQLite is one node)")
    other = build_app(config_path)
    try:
        yield other
    finally:
        other.close()


def _clock(node: App, monkeypatch: pytest.MonkeyPatch, offset: timedelta) -> None:
    real = node.now
    monkeypatch.setattr(node, "now", lambda: real() + offset)


def test_a_node_whose_clock_runs_ahead_takes_no_lease_another_node_holds(
        app: App, skewed: App, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(skewed, monkeypatch, SKEW)
    skewed.lease_owner = "node-ahead"
    with write_tx(app.engine) as conn:  # node-a (its clock right) holds both for a minute, and works on
        outbox_store.enqueue(conn, key="deliver:x", client_id="demo", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": []}, now=app.now())
        held = outbox_store.lease(conn, "node-a", 60, now=app.now())
        assert held is not None
        assert lease_store.acquire(conn, "status_files", "node-a", 60, app.now())
    # by the ahead node's own clock both ran out minutes ago; by the database's they have a minute to go
    with leased(skewed, "status_files") as stolen:
        assert stolen is None
    assert Dispatcher(skewed, owner="node-ahead").lease() is None
    with write_tx(app.engine) as conn:  # the holder's work goes on and settles
        assert lease_store.holder(conn, "status_files")["owner"] == "node-a"  # type: ignore[index]
        assert lease_store.renew(conn, "status_files", "node-a", 60, app.now())
        assert outbox_store.complete(conn, held, {"ok": True})
        lease_store.release(conn, "status_files", "node-a")
    with leased(skewed, "status_files") as lease:  # released: free for any node
        assert lease is not None


def test_a_node_whose_clock_lags_takes_a_dead_nodes_lease_over_once_it_ran_out(
        app: App, skewed: App, monkeypatch: pytest.MonkeyPatch) -> None:
    _clock(skewed, monkeypatch, -SKEW)
    skewed.lease_owner = "node-behind"
    with write_tx(app.engine) as conn:  # node-a (its clock right) takes both for two seconds, and dies
        outbox_store.enqueue(conn, key="deliver:x", client_id="demo", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": []}, now=app.now())
        gone = outbox_store.lease(conn, "node-a", 2, now=app.now())
        assert gone is not None
        assert lease_store.acquire(conn, "status_files", "node-a", 2, app.now())
    # by its own clock both have ten minutes to go; by the database's they run out in two seconds
    taken = wait_for("the lagging node to take the dead node's row",
                     lambda: Dispatcher(skewed, owner="node-behind").lease(), timeout=30)
    assert taken.id == gone.id
    with leased(skewed, "status_files", wait=30) as lease:
        assert lease is not None
    with write_tx(app.engine) as conn:
        assert not outbox_store.complete(conn, gone, {"late": True})  # the dead node's lease is no more
        assert outbox_store.complete(conn, taken, {"ok": True})


def test_an_ingest_worker_renews_its_parents_lease_by_the_databases_clock(skewed: App) -> None:
    """A worker process has no App; the clock it passes (its machine's, here ten minutes behind) is not the one
    its parent's lease goes by on PostgreSQL."""
    with write_tx(skewed.engine) as conn:
        assert lease_store.acquire(conn, "ingest:demo", "node-a", 60, skewed.now())
        renew_lease(conn, Lease("ingest:demo", "node-a", 60), skewed.now() - SKEW)
    with read_tx(skewed.engine) as conn:
        until = lease_store.holder(conn, "ingest:demo")["expires_at"]  # type: ignore[index]
    assert until > skewed.now() + timedelta(seconds=30)  # not run out ten minutes ago for the other nodes


def test_gateway_status_on_a_node_whose_clock_runs_ahead_shows_live_leases_as_live(
        app: App, skewed: App, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.services.status_report import gateway_status

    _clock(skewed, monkeypatch, SKEW)
    with write_tx(app.engine) as conn:
        assert lease_store.acquire(conn, "status_files", "node-a", 60, app.now())
        outbox_store.enqueue(conn, key="deliver:x", client_id="demo", partner_id="demo-agency",
                             operation="deliver_batch", payload={"claim_ids": []}, now=app.now())
        held = outbox_store.lease(conn, "node-a", 60, now=app.now())
        assert held is not None
    shown = {lease["name"]: lease["expired"] for lease in gateway_status(skewed)["leases"]}
    assert shown == {"status_files": False, f"outbox:{held.id}": False}


def test_gateway_status_judges_a_partners_hold_by_the_nodes_clock_as_the_dispatcher_does(
        app: App, skewed: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A partner's Retry-After hold sits in the leases table but ends by each node's own clock (``outbox.hold_of``):
    on a node ten minutes ahead it is over, and ``gateway status`` there says so, beside ``held_until``."""
    from gateway.services.status_report import gateway_status

    _clock(skewed, monkeypatch, SKEW)
    with write_tx(app.engine) as conn:
        outbox_store.hold_partner(conn, "demo-agency", app.now() + timedelta(seconds=120), "waiting", now=app.now())
        assert outbox_store.hold_of(conn, "demo-agency", skewed.now()) is None  # the ahead node sends
    doc = gateway_status(skewed)
    assert [lease["expired"] for lease in doc["leases"]] == [True]
    assert [p["held_until"] for p in doc["partners"] if p["partner"] == "demo-agency"] == [None]

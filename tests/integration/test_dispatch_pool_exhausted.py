"""The gateway's own connection pool exhausted during a delivery (every connection held by other threads past
the pool's timeout: lanes, heartbeats, SOAP and console threads all waiting on SQLite's write lock or a slow
PostgreSQL) is the gateway's trouble, not the partner's: the row is tried again, never dead-lettered for it, and
the attempt is given back. Real parts: the app's own engine and pool, its connections held by the test."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gateway.bootstrap import App
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.conftest import ROOT
from tests.support import wait_for

DEMO = ROOT / "examples" / "demo.csv"


def test_a_delivery_that_finds_the_pool_exhausted_is_tried_again_not_dead(app: App) -> None:
    ingest_file(app, DEMO, "demo")
    dispatcher = Dispatcher(app, owner="node-1")
    item = dispatcher.lease()
    assert item is not None
    pool: Any = app.engine.pool
    pool._timeout = 0.3  # the pool's wait for a free connection (30 s by default): kept short for the test
    held: list[Connection] = []
    while True:  # every connection the pool may give out, held as by busy threads
        try:
            held.append(app.engine.connect())
        except Exception:  # noqa: BLE001 - sqlalchemy.exc.TimeoutError: the pool is exhausted
            break
    real_failed = dispatcher._failed

    def failed(row: Any, exc: Exception) -> None:
        for conn in held:  # the busy threads are done: the failure can be recorded
            conn.close()
        held.clear()
        real_failed(row, exc)

    setattr(dispatcher, "_failed", failed)
    try:
        dispatcher.handle(item)
    finally:
        for conn in held:
            conn.close()
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "pending" and row["attempts"] == 0, dict(row)
    assert "QueuePool" in row["last_error"] or "TimeoutError" in row["last_error"], row["last_error"]
    again = Dispatcher(app, owner="node-1")
    wait_for("the row delivered after its backoff (at most backoff_max_seconds)", again.run_once, timeout=30)
    with read_tx(app.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "done", dict(row)

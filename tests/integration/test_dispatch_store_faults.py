"""The gateway's own database trouble during a delivery is not the partner's failure: the row is tried again
(never dead-lettered for it), the claims stay on their way, and the retry hands the same batch over once.
A real fault: another connection holds SQLite's write lock while the partner's receipt is being recorded."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from adapters.base import Batch, Receipt
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.domain.lifecycle import State
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.conftest import ROOT, write_config
from tests.support import wait_for

P = "demo-agency"


@pytest.fixture
def locked_app(tmp_path: Path) -> Iterator[App]:
    db = tmp_path / "var" / "gateway.db"  # a held write lock is SQLite's fault; PostgreSQL's differ
    cfg = write_config(tmp_path, f"sqlite:///{db}", database={"url": f"sqlite:///{db}", "busy_timeout_seconds": 0.3})
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    yield app
    app.close()


def _rows(app: App) -> list[dict[str, object]]:
    with read_tx(app.engine) as conn:
        return [dict(r) for r in outbox_store.listing(conn)]


def test_a_locked_database_while_recording_the_receipt_is_retried_not_dead_lettered(locked_app: App,
                                                                                     tmp_path: Path) -> None:
    app = locked_app
    ingest_file(app, ROOT / "examples" / "demo.csv", "demo")
    holder = sqlite3.connect(tmp_path / "var" / "gateway.db", isolation_level=None, timeout=5)
    worker = Dispatcher(app, owner="w1")
    adapter = worker._adapter(P)
    deliver = adapter.deliver

    def deliver_then_lock(batch: Batch) -> Receipt:
        receipt = deliver(batch)
        holder.execute("BEGIN IMMEDIATE")  # held until the dispatcher has given up recording the receipt
        return receipt

    def release(context: Any) -> None:  # the first "locked" ends the fault: the failure itself can be recorded
        if holder.in_transaction:
            holder.execute("ROLLBACK")

    adapter.deliver = deliver_then_lock  # type: ignore[method-assign]
    event.listen(app.engine, "handle_error", release)
    try:
        assert worker.run_once()
    finally:
        event.remove(app.engine, "handle_error", release)
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        adapter.deliver = deliver  # type: ignore[method-assign]
    [row] = _rows(app)
    assert row["status"] == "pending", row  # not dead: the partner did nothing wrong
    assert row["attempts"] == 0, row  # and the attempt is given back: it does not use up max_attempts
    assert str(row["last_error"]).startswith("OperationalError: database is locked"), row["last_error"]
    assert "SQL" not in str(row["last_error"])  # the driver's line, not the statement
    with read_tx(app.engine) as conn:
        states = claim_store.current_states(conn, [r["id"] for r in claim_store.listing(conn, client_id="demo")])
    ids = [c for c, s in states.items() if s is not State.HELD]  # held claims wait for the client's release
    assert ids and {states[c] for c in ids} == {State.DELIVERING}

    def handed_over() -> bool:  # the row is due again after its backoff (10-50 ms in the test config)
        worker.drain()
        with read_tx(app.engine) as conn:
            return set(claim_store.current_states(conn, ids).values()) == {State.HANDED_OVER}

    wait_for("the retry to hand the claims over", handed_over, 10)
    worker.close()
    assert {r["status"] for r in _rows(app)} == {"done"}
    batches = list((tmp_path / "var" / "partners" / P).glob("*.p7m"))
    assert len(batches) == 1, batches  # the retry confirmed the batch the partner had; nothing sent twice

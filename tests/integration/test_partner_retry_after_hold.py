"""A partner's ``Retry-After`` hold is kept in the database (the partner's hold, and its rows' ``available_at``), not in
one node's memory (``test_partner_hold_shared`` for rows queued during the hold and the success that ends it).

Before, the hold lived in the ``Dispatcher`` that got the 429: another node, or the same node restarted, sent the
partner's next row at once; and ``gateway outbox retry`` of a row, run by an operator in another process, made the
row due, but the node holding the partner in memory would not lease it until the hold ran out, so the operator's
explicit retry was not tried. The rows now say how long they wait, visible in ``outbox list`` with the reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import gateway_for, keys_template  # noqa: F401
from tests.integration.hostile_http import Conn, HostileServer, Request
from tests.integration.test_partner_faults_2 import DEMO
from tests.integration.test_partner_hostile_http import _HostilePartner


def _rate_limited(req: Request, conn: Conn) -> None:
    conn.answer(429, b'{"code": "RATE_LIMITED"}', {"Retry-After": "120"})


def _two_batches(tmp_path: Path) -> Path:
    second = tmp_path / "second.csv"
    second.write_bytes(DEMO.read_bytes().replace(b"RE-2025-", b"RE-2026-"))
    return second


def test_the_hold_outlives_the_node_that_was_told_and_is_shown(tmp_path: Path, db_url: str,
                                                               keys_template: Path) -> None:  # noqa: F811
    with HostileServer(_rate_limited) as server:
        with gateway_for(_HostilePartner(tmp_path, server.url), tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            ingest_file(app, _two_batches(tmp_path), "demo")
            told = Dispatcher(app, owner="node-a")
            assert told.run_once()
            told.close()  # the node stops (a restart), or another node is asked
            other = Dispatcher(app, owner="node-b")
            assert not other.run_once()  # the other batch waits for the partner's 120 s on every node
            app.now.advance(119)  # type: ignore[attr-defined]
            assert not other.run_once()
            with read_tx(app.engine) as conn:
                waiting = [dict(r) for r in outbox_store.listing(conn) if r["attempts"] == 0]
            assert len(waiting) == 1 and waiting[0]["status"] == "pending"
            assert waiting[0]["available_at"] >= app.now() + timedelta(seconds=0.5)
            assert "asked the gateway to wait" in waiting[0]["last_error"]
            assert "Retry-After 120 s" in waiting[0]["last_error"]
            app.now.advance(2)  # type: ignore[attr-defined]
            assert other.run_once()  # the wait is over: the partner is asked again
            other.close()
    assert len(server.requests) == 2


def test_an_operators_retry_is_tried_at_once_despite_the_hold(tmp_path: Path, db_url: str,
                                                              keys_template: Path) -> None:  # noqa: F811
    with HostileServer(_rate_limited) as server:
        with gateway_for(_HostilePartner(tmp_path, server.url), tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            ingest_file(app, _two_batches(tmp_path), "demo")
            worker = Dispatcher(app, owner="serve")  # the running node, which got the 429
            assert worker.run_once()
            with read_tx(app.engine) as conn:
                rows = {r["attempts"]: dict(r) for r in outbox_store.listing(conn)}
            tried, held = rows[1], rows[0]
            retry_dead(app, tried["id"])  # `gateway outbox retry ID`, in the operator's own process
            assert worker.run_once()  # taken at the serve node's next step, not after the partner's 120 s
            with read_tx(app.engine) as conn:
                again = dict(outbox_store.get(conn, tried["id"]))
                still = dict(outbox_store.get(conn, held["id"]))
            assert again["attempts"] == 1 and len(server.requests) == 2
            assert still["attempts"] == 0 and still["status"] == "pending"  # the rest keeps the partner's wait
            assert not worker.run_once()
            worker.close()
    assert len(server.requests) == 2


def test_holding_skips_a_row_another_transaction_has_locked(tmp_path: Path, db_url: str,
                                                             keys_template: Path) -> None:  # noqa: F811
    """Two nodes told to wait at once each hold their own failed row locked while they hold the partner's others: a
    hold that waited for the locked rows would deadlock them (PostgreSQL would abort one, losing its record)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL only (SQLite writers take the whole database in turn)")
    with HostileServer(_rate_limited) as server:
        with gateway_for(_HostilePartner(tmp_path, server.url), tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            ingest_file(app, _two_batches(tmp_path), "demo")
            with read_tx(app.engine) as conn:
                first, second = sorted(r["id"] for r in outbox_store.listing(conn))
            until = app.now() + timedelta(seconds=120)
            with app.engine.connect() as other_node, other_node.begin():
                other_node.execute(text("SELECT id FROM outbox WHERE id = :i FOR UPDATE"), {"i": second})
                with app.engine.connect() as conn, conn.begin():
                    conn.execute(text("SET LOCAL lock_timeout = '10s'"))  # waiting at all would fail here
                    assert outbox_store.hold_partner(conn, "sim-agency", until, "waiting: test") == 1
                    held = {r["id"]: r["available_at"] for r in outbox_store.listing(conn)}
            assert held[first] == until and held[second] < until


def test_the_operator_lifts_a_partners_whole_hold_with_one_command(
        tmp_path: Path, db_url: str, keys_template: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    """The partner is back before the day it asked for is over: ``outbox retry --waiting --partner P`` makes every row
    it holds due now, rather than one ``outbox retry ID`` per row."""
    from gateway.entrypoints import cli

    def back_but_failing(req: Request, conn: Conn) -> None:  # after its 429, an error that asks for no wait
        if len(server.requests) == 1:
            _rate_limited(req, conn)
        else:
            conn.answer(500, b'{"code": "INTERNAL"}')
    server = HostileServer(back_but_failing)
    with server:
        with gateway_for(_HostilePartner(tmp_path, server.url), tmp_path, db_url, keys_template) as app:
            ingest_file(app, DEMO, "demo")
            ingest_file(app, _two_batches(tmp_path), "demo")
            worker = Dispatcher(app, owner="serve")
            assert worker.run_once() and not worker.run_once()
            config = str(app.config.source)
            assert cli.main(["--config", config, "outbox", "retry", "--waiting", "--partner", "sim-agency"]) == 0
            assert "2 waiting outbox row(s) of partner sim-agency are due now" in capsys.readouterr().out
            app.now.advance(30)  # type: ignore[attr-defined]  # the CLI's clock is the real one, a moment later
            assert worker.run_once() and worker.run_once()  # both rows, long before the partner's 120 s
            worker.close()
            with read_tx(app.engine) as conn:
                assert sorted(r["attempts"] for r in outbox_store.listing(conn)) == [1, 2]
            assert cli.main(["--config", config, "outbox", "retry", "--waiting"]) == 2
            assert "--waiting goes with --partner P alone" in capsys.readouterr().err

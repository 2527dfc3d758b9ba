"""A partner's ``Retry-After`` hold is the partner's, not its rows': every node, every row, until it ends.

Against the real HTTP simulator on loopback, on SQLite and on one PostgreSQL shared by two dispatchers (two nodes).
Before, the hold was written into the rows that were pending when the partner answered 429: a row queued during
the hold went out at once and hit the partner again, a row that became due by another path (another node's short
backoff) too, and a success with the partner did not end the wait of the rows held.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.simulators.agency import Fault
from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.services.dispatch import Dispatcher
from gateway.services.ingest import ingest_file
from gateway.services.status_report import gateway_status
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.contract.harness import (PARTNER, HttpHarness, claims_by_state, gateway_for,  # noqa: F401
                                    keys_template)
from tests.integration.test_partner_faults_2 import DEMO


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[HttpHarness]:
    sim = HttpHarness(tmp_path)
    sim.agency.faults.retry_after = "120"
    try:
        yield sim
    finally:
        sim.stop()


def _file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"run-{n}.csv"
    path.write_bytes(DEMO.read_bytes().replace(b"RE-2025-", f"RE-20{30 + n}-".encode()))
    return path


def _creates(sim: HttpHarness) -> int:
    return sum(sim.agency.create_requests.values())


def _partner_status(app: App) -> dict[str, object]:
    [doc] = [p for p in gateway_status(app)["partners"] if p["partner"] == PARTNER]
    return doc


def test_rows_queued_during_the_hold_wait_for_it_on_every_node(partner: HttpHarness, tmp_path: Path, db_url: str,
                                                               keys_template: Path) -> None:  # noqa: F811
    with gateway_for(partner, tmp_path, db_url, keys_template) as app:
        ingest_file(app, _file(tmp_path, 1), "demo")
        partner.agency.faults.fail_next(Fault.RATE_LIMITED)
        told, other = Dispatcher(app, owner="node-a"), Dispatcher(app, owner="node-b")
        assert told.run_once()  # 429, Retry-After 120
        until = app.now() + timedelta(seconds=120)
        ingest_file(app, _file(tmp_path, 2), "demo")  # queued while the partner holds the gateway off
        assert not other.run_once() and not told.run_once()
        assert _creates(partner) == 0
        with read_tx(app.engine) as conn:
            [new] = [dict(r) for r in outbox_store.listing(conn) if r["attempts"] == 0]
        # `outbox list` says it waits, until when and why
        assert new["status"] == "pending" and new["available_at"] == until
        assert "asked the gateway to wait" in new["last_error"]
        doc = _partner_status(app)  # `gateway status` and the partners page
        assert doc["held_until"] == until and doc["next_try_at"] == until
        assert any(lease["name"] == f"partner_hold:{PARTNER}" for lease in gateway_status(app)["leases"])
        app.now.advance(121)  # type: ignore[attr-defined]
        assert other.run_once() and told.run_once()
        told.close()
        other.close()
        assert _partner_status(app)["held_until"] is None
        assert set(claims_by_state(app)) - {State.HELD} == {State.HANDED_OVER}  # DEMO holds a minor


def test_a_row_due_by_its_own_short_backoff_still_waits_for_the_partners_hold(
        partner: HttpHarness, tmp_path: Path, db_url: str, keys_template: Path) -> None:  # noqa: F811
    """Two nodes each send a row at once: one is told to wait 120 s, the other gets a 500 and backs off a few
    seconds. Its backoff over, the row must not go to the partner before the 120 s are."""
    with gateway_for(partner, tmp_path, db_url, keys_template) as app:
        ingest_file(app, _file(tmp_path, 1), "demo")
        ingest_file(app, _file(tmp_path, 2), "demo")
        a, b = Dispatcher(app, owner="node-a"), Dispatcher(app, owner="node-b")
        first, second = a.lease(), b.lease()
        assert first is not None and second is not None
        partner.agency.faults.fail_next(Fault.RATE_LIMITED)
        partner.agency.faults.fail_next(Fault.ERROR_500, times=3)  # every in-call try of the other node's row
        a.handle(first)
        b.handle(second)
        with read_tx(app.engine) as conn:
            backed_off = dict(outbox_store.get(conn, second.id))
        assert backed_off["attempts"] == 1 and backed_off["available_at"] < app.now() + timedelta(seconds=10)
        app.now.advance(30)  # type: ignore[attr-defined]  # its backoff is over, the partner's wait is not
        assert not b.run_once() and not a.run_once()
        assert _creates(partner) == 0
        with read_tx(app.engine) as conn:
            waiting = dict(outbox_store.get(conn, second.id))
        assert waiting["status"] == "pending" and waiting["attempts"] == 1
        assert waiting["available_at"] == app.now() + timedelta(seconds=90)  # shown as waiting for the hold
        app.now.advance(91)  # type: ignore[attr-defined]
        assert b.run_once() and a.run_once()
        a.close()
        b.close()
        assert set(claims_by_state(app)) - {State.HELD} == {State.HANDED_OVER}  # DEMO holds a minor


def test_a_success_with_the_partner_ends_its_hold_for_everything_waiting(
        partner: HttpHarness, tmp_path: Path, db_url: str, keys_template: Path) -> None:  # noqa: F811
    """A row in flight on another node when the partner said "wait" is taken after all: the partner is back, and
    the rows that waited for it (the one told, one queued meanwhile) go now, not after the 120 s."""
    with gateway_for(partner, tmp_path, db_url, keys_template) as app:
        ingest_file(app, _file(tmp_path, 1), "demo")
        ingest_file(app, _file(tmp_path, 2), "demo")
        a, b = Dispatcher(app, owner="node-a"), Dispatcher(app, owner="node-b")
        told, in_flight = a.lease(), b.lease()
        assert told is not None and in_flight is not None
        partner.agency.faults.fail_next(Fault.RATE_LIMITED)
        a.handle(told)  # 429: the partner holds the gateway off
        ingest_file(app, _file(tmp_path, 3), "demo")
        assert _partner_status(app)["held_until"] is not None
        b.handle(in_flight)  # taken: the partner is back
        assert _partner_status(app)["held_until"] is None
        with read_tx(app.engine) as conn:
            waited = [dict(r) for r in outbox_store.listing(conn, status="pending")]
        assert len(waited) == 2 and all(r["available_at"] <= app.now() for r in waited)
        # no longer said to wait for the partner: the told row keeps its own error, the queued one has none
        assert sorted(str(r["last_error"])[:24] for r in waited) == ["DeliveryError: partner s", "None"]
        assert b.run_once() and a.run_once()  # the told row and the one queued meanwhile, at once
        assert not a.run_once()
        a.close()
        b.close()
        assert set(claims_by_state(app)) - {State.HELD} == {State.HANDED_OVER}  # DEMO holds a minor
        assert len(partner.agency.batches) == 3

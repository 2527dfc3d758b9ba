"""Ordering between the gateway's outbox and a partner: what a partner is told, and what it tells us,
whichever comes first.

Each test forces one interleaving deterministically (a wrapped adapter method, a clock the test moves)
and runs it against the partner simulators through their real transports.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.base import PartnerUpdate
from adapters.simulators.agency import CANCELLED
from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.errors import DeliveryError
from gateway.services import claim_ops
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.services.partner_sync import sync_partner
from gateway.services.partner_updates import apply_updates
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.conftest import ROOT
from tests.contract.harness import deliver_unanswered, Harness, PARTNER

DEMO = ROOT / "examples" / "demo.csv"


def _sent(app: App) -> list[int]:
    with read_tx(app.engine) as conn:
        return sorted(r["id"] for r in claim_store.listing(conn, client_id="demo") if r["state"] != "held")


def _kinds(app: App, cid: int) -> list[str]:
    with read_tx(app.engine) as conn:
        return [e["kind"] for e in claim_store.history(conn, cid)]


def _outbox(app: App) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return [dict(r) for r in outbox_store.listing(conn)]


def _settle(app: App, sim: Harness, worker: Dispatcher, rounds: int = 6) -> None:
    """Let time pass and the dispatcher work until nothing is left to do (the clock moves, nothing sleeps)."""
    for _ in range(rounds):
        app.now.advance(60)  # type: ignore[attr-defined]
        worker.drain()
        sim.pump()


def test_a_request_for_a_claim_still_on_its_way_waits_for_the_partner_to_have_it(
        sim: Harness, gw: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client cancels, reports a payment and writes while the claims' batch waits out a failed upload: the
    requests are queued (forwarded) and must reach the partner after the claims do, not before (a partner
    answers a request for a claim it does not know with 'unknown claim', and the request would be lost)."""
    monkeypatch.setattr(outbox_store, "backoff", lambda *a: 300.0)  # no jitter: the batch waits 5 minutes
    ingest_file(gw, DEMO, "demo")
    worker = Dispatcher(gw, owner="w")
    adapter = worker._adapter(PARTNER)
    real = adapter.deliver
    calls: list[str] = []
    down = [True]

    def upload(batch):  # type: ignore[no-untyped-def]
        calls.append(batch.batch_id)
        if down[0]:
            raise DeliveryError("partner busy", retryable=True)
        return real(batch)

    adapter.deliver = upload  # type: ignore[method-assign]
    assert worker.run_once()  # every quick retry inside the attempt fails too: the row backs off
    down[0] = False
    failed_calls = len(calls)
    cancel_id, paid_id, asked_id = _sent(gw)[:3]
    with read_tx(gw.engine) as conn:
        assert claim_store.current_states(conn, [cancel_id])[cancel_id] is State.DELIVERING

    day = date.today() - timedelta(days=1)
    answers = [claim_ops.cancel(gw, "demo", cancel_id, "paid at the counter"),
               claim_ops.report_payment(gw, "demo", paid_id, Decimal("50.00"), day),
               claim_ops.send_message(gw, "demo", asked_id, "Bitte Ratenzahlung anbieten.")]
    assert [(a.forwarded, a.state) for a in answers] == [(True, "delivering")] * 3

    gw.now.advance(10)  # type: ignore[attr-defined]
    worker.drain()  # the batch waits out its backoff; the requests are due now
    sim.pump()
    _settle(gw, sim, worker)
    worker.close()
    sync_partner(gw, PARTNER)

    assert len(calls) == failed_calls + 1
    assert {r["status"] for r in _outbox(gw)} == {"done"}
    case = sim.agency.cases[cancel_id]
    assert case.code == CANCELLED
    assert sim.agency.cases[paid_id].direct_payments == [{"amount": "50.00", "date": day.isoformat()}]
    assert sim.agency.cases[asked_id].client_messages == ["Bitte Ratenzahlung anbieten."]
    for cid in (cancel_id, paid_id, asked_id):
        kinds = _kinds(gw, cid)
        assert "partner_op_failed" not in kinds
        assert "partner_ack" in kinds
        # the request went out once the receipt was recorded
        assert kinds.index("receipt") < kinds.index("partner_ack")


@pytest.mark.parametrize("retried", [False, True], ids=["failed", "queued-again"])
@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_partner_working_a_claim_whose_delivery_was_given_up_moves_it_on(sim: Harness, gw: App,
                                                                          retried: bool) -> None:
    """The partner took the batch, but the gateway never heard (the answer failed in a way it does not retry)
    and dead-lettered it: the claims are ``failed`` (or ``queued`` again by the operator's retry). The
    partner's statuses are the receipt the gateway missed; they must move the claims on, not be set aside
    as illegal while the partner works them."""
    ingest_file(gw, DEMO, "demo")
    worker = deliver_unanswered(gw)
    worker.close()
    ids = _sent(gw)
    with read_tx(gw.engine) as conn:
        assert set(claim_store.current_states(conn, ids).values()) == {State.FAILED}
    assert sorted(sim.agency.cases) == ids
    [row] = _outbox(gw)
    if retried:
        assert retry_dead(gw, row["id"]) == len(ids)

    sim.agency.step_all()  # the partner starts working every case
    result = sync_partner(gw, PARTNER)
    assert "illegal" not in result.counts
    with read_tx(gw.engine) as conn:
        states = claim_store.current_states(conn, ids)
        for cid in ids:
            assert claim_store.current(conn, cid)["partner_file_number"] == sim.agency.cases[cid].file_number
    assert set(states.values()) == {State.IN_PROGRESS}
    if retried:  # the row queued again finds nothing left to send
        worker = Dispatcher(gw, owner="w2")
        assert worker.drain() == 1
        worker.close()
        assert [r["status"] for r in _outbox(gw)] == ["done"]
    else:  # the operator's retry of the dead row finds nothing to send again
        assert retry_dead(gw, row["id"]) == 0
    assert sim.agency.duplicates() == {}


@pytest.mark.parametrize("then", ["backs_off", "dead"])
@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_receipt_in_hand_after_the_lease_ran_out_is_recorded(sim: Harness, gw: App, then: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker A's upload is accepted, but its answer comes after A's lease ran out: worker B took the row and
    its own attempt met the partner's outage (the row backs off, or it was the last attempt: dead, the
    claims failed). A holds the partner's receipt: it must not be dropped because the lease moved on."""
    monkeypatch.setattr(outbox_store, "backoff", lambda *a: 300.0)
    gw.config.partners[PARTNER].max_attempts = 2 if then == "dead" else 5
    gw.config.partners[PARTNER].retry.retry_for_seconds = 0  # dead after max_attempts, however young the row
    ingest_file(gw, DEMO, "demo")
    a, b = Dispatcher(gw, owner="a"), Dispatcher(gw, owner="b")
    real = a._adapter(PARTNER).deliver
    receipts: list[Any] = []

    def slow_answer(batch):  # type: ignore[no-untyped-def]
        receipt = real(batch)
        receipts.append(receipt)
        gw.now.advance(gw.config.dispatcher.lease_seconds + 1)  # type: ignore[attr-defined]
        sim.agency.faults.start_outage()
        try:
            assert b.run_once()  # B takes the expired row; the partner is down for it
        finally:
            sim.agency.faults.heal()
        return receipt

    a._adapter(PARTNER).deliver = slow_answer  # type: ignore[method-assign]
    assert a.run_once()
    a.close()
    b.close()
    [receipt] = receipts
    ids = _sent(gw)
    [row] = _outbox(gw)
    assert row["status"] == "done"
    with read_tx(gw.engine) as conn:
        assert set(claim_store.current_states(conn, ids).values()) == {State.HANDED_OVER}
        for cid in ids:
            assert claim_store.current(conn, cid)["partner_file_number"] == receipt.references[cid]
    assert sim.agency.duplicates() == {}


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_partner_answer_to_a_request_after_the_lease_ran_out_is_recorded(sim: Harness, gw: App) -> None:
    """The same for a request: the partner cancelled the case, the answer came after worker A's lease ran out,
    and worker B's attempt (the last one) met the partner's outage. The claim must say the partner has it."""
    ingest_file(gw, DEMO, "demo")
    worker = Dispatcher(gw, owner="w")
    assert worker.drain() == 1
    worker.close()
    cid = _sent(gw)[0]
    assert claim_ops.cancel(gw, "demo", cid, "settled").forwarded
    gw.config.partners[PARTNER].max_attempts = 2
    gw.config.partners[PARTNER].retry.retry_for_seconds = 0  # dead after max_attempts, however young the row
    gw.now.advance(60)  # type: ignore[attr-defined]
    a, b = Dispatcher(gw, owner="a"), Dispatcher(gw, owner="b")
    real = a._adapter(PARTNER).operate

    def slow_answer(op):  # type: ignore[no-untyped-def]
        answer = real(op)
        gw.now.advance(gw.config.dispatcher.lease_seconds + 1)  # type: ignore[attr-defined]
        sim.agency.faults.start_outage()
        try:
            assert b.run_once()
        finally:
            sim.agency.faults.heal()
        return answer

    a._adapter(PARTNER).operate = slow_answer  # type: ignore[method-assign]
    assert a.run_once()
    a.close()
    b.close()
    assert sim.agency.cases[cid].code == CANCELLED
    [row] = [r for r in _outbox(gw) if r["operation"] == "cancel"]
    assert row["status"] == "done"
    kinds = _kinds(gw, cid)
    assert kinds[-1] == "partner_ack"  # after B's partner_op_failed: the partner did take it


def test_an_older_status_applied_after_a_newer_one_does_not_move_the_claim_back(app: App) -> None:
    """A pull fetches a page, a push of the partner's next status is applied before the page is: the page's
    older status must not set the claim back (a stage the partner has left, a pause it has lifted)."""
    partner = "demo-agency"
    app.config.partners[partner].status_map.update({"BEARB": "in_progress:pre_court", "MB": "in_progress:court_dunning",
                                                    "RUHT": "paused"})
    ingest_file(app, DEMO, "demo")
    worker = Dispatcher(app, owner="w")
    worker.drain()
    worker.close()
    first, second = _sent(app)[:2]
    t0 = app.now()

    def status(n: int, cid: int, code: str, minutes: int) -> PartnerUpdate:
        return PartnerUpdate(update_id=f"p-{n}", claim_id=cid, kind="status", code=code, partner_reference="AZ-9",
                             occurred_at=(t0 + timedelta(minutes=minutes)).isoformat())

    page = [status(1, first, "BEARB", 1), status(2, second, "RUHT", 1), status(3, first, "MB", 2),
            status(4, second, "BEARB", 2)]
    pushed = apply_updates(app, partner, [page[2], page[3]])  # the newer ones, pushed while the page travelled
    assert pushed.counts == {"applied": 2}
    pulled = apply_updates(app, partner, page)
    assert pulled.counts == {"stale": 2, "duplicate": 2}
    with read_tx(app.engine) as conn:
        now = {cid: claim_store.current(conn, cid) for cid in (first, second)}
        hist = claim_store.history(conn, first)
    assert (now[first]["state"], now[first]["stage"]) == ("in_progress", "court_dunning")
    assert now[second]["state"] == "in_progress"
    [stale] = [e for e in hist if e["kind"] == "partner_status_stale"]  # kept, not dropped
    assert stale["data"]["code"] == "BEARB"
    # a status without a time of its own is applied as it comes
    assert apply_updates(app, partner, [PartnerUpdate(update_id="p-5", claim_id=second, kind="status",
                                                      code="RUHT")]).counts == {"applied": 1}


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_cancelling_a_claim_queued_again_after_a_lost_answer_tells_the_partner(sim: Harness, gw: App) -> None:
    """The partner took the batch, the gateway never heard and gave up; the operator queued the claims again.
    A client who cancels one now cancels it at once here, and the partner, which may well have it, must hear."""
    ingest_file(gw, DEMO, "demo")
    worker = deliver_unanswered(gw)
    [row] = _outbox(gw)
    ids = _sent(gw)
    assert retry_dead(gw, row["id"]) == len(ids)
    cid = ids[0]
    answer = claim_ops.cancel(gw, "demo", cid, "paid at the counter")
    assert (answer.state, answer.forwarded) == ("cancelled_by_client", True)
    _settle(gw, sim, worker)
    worker.close()
    assert sim.agency.cases[cid].code == CANCELLED
    assert "partner_ack" in _kinds(gw, cid)
    assert sim.agency.duplicates() == {}

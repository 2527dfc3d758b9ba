"""A claim the debtor paid in full before the partner has it is closed as paid, never handed over.

Handed over with 0.00 open, the agency would open a case and dun a debtor who has paid (and the collection
costs it charges would not be owed). So a direct payment that leaves nothing open on a held claim, or on a
queued one that no batch has taken yet, closes it (``closed_paid``, event ``paid_before_handover``) in the
payment's own transaction; the dispatcher, which takes a batch's claims under the same lock and sends only
queued ones, then finds nothing to send. A claim the partner has or may have (on its way, a failed delivery,
queued again after one) keeps getting the payment as a request. Each test runs the real dispatcher against a
partner simulator and reads what the partner received.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from adapters.base import Batch
from gateway.bootstrap import App
from gateway.domain.lifecycle import Actor, State
from gateway.domain.model import from_minor
from gateway.errors import IllegalTransition
from gateway.services import claim_ops
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT
from tests.contract.harness import claims_by_state, deliver_unanswered, Harness, PARTNER

DEMO = ROOT / "examples" / "demo.csv"
PAID_ON = date(2025, 6, 2)


def _current(app: App, cid: int) -> dict[str, Any]:
    with read_tx(app.engine) as conn:
        return claim_store.current(conn, cid)


def _open(app: App, cid: int) -> Decimal:
    row = _current(app, cid)
    return from_minor(int(row["open_minor"]), str(row["currency"]))


def _history(app: App, cid: int) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return claim_store.history(conn, cid)


def _outbox(app: App) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return [dict(r) for r in outbox_store.listing(conn)]


class Sent:
    """The claim ids of every batch and every per-claim request the adapter was given."""

    def __init__(self, worker: Dispatcher) -> None:
        self.batches: list[list[int]] = []
        self.requests: list[tuple[str, int]] = []
        adapter: Any = worker._adapter(PARTNER)
        real_deliver = adapter.deliver

        def deliver(batch: Batch) -> Any:
            self.batches.append(list(batch.claim_ids))
            return real_deliver(batch)
        adapter.deliver = deliver
        for name in ("operate", "deliver_instruction"):
            real = getattr(adapter, name, None)
            if real is not None:
                setattr(adapter, name, self._spy(real))

    def _spy(self, real: Any) -> Any:
        def call(arg: Any) -> Any:
            op = getattr(arg, "operation", None) or arg.batch_id.split("-")[0]
            cid = getattr(arg, "claim_id", None) or arg.claim_ids[0]
            self.requests.append((str(op), int(cid)))
            return real(arg)
        return call

    def claims(self) -> set[int]:
        return {c for batch in self.batches for c in batch}


def _settle(app: App, sim: Harness, worker: Dispatcher, rounds: int = 6) -> None:
    for _ in range(rounds):
        app.now.advance(60)  # type: ignore[attr-defined]
        worker.drain()
        sim.pump()


def test_a_claim_paid_in_full_before_the_handover_is_closed_and_never_handed_over(sim: Harness, gw: App) -> None:
    """A queued claim paid in full, a queued one paid in two parts that add up, a queued one overpaid (declared),
    a held one paid in full: each is closed as paid by the report itself; the dispatcher that runs afterwards
    hands over the other claims of the same batches, and the partner never hears of the paid ones."""
    ingest_file(gw, DEMO, "demo")
    states = claims_by_state(gw)
    [held] = states[State.HELD]
    full, parts, over, partial = states[State.QUEUED][:4]
    [batch_row] = [r for r in _outbox(gw) if r["operation"] == "deliver_batch"]
    assert {full, parts, over, partial} <= set(outbox_store.loads(batch_row["payload"])["claim_ids"])

    whole, rest = _open(gw, full), _open(gw, parts) - Decimal("10.00")
    first = claim_ops.report_payment(gw, "demo", parts, Decimal("10.00"), PAID_ON)
    assert (first.state, first.forwarded) == ("queued", False)  # something still open: it goes with the batch
    answers = {full: claim_ops.report_payment(gw, "demo", full, whole, PAID_ON),
               parts: claim_ops.report_payment(gw, "demo", parts, rest, PAID_ON),
               over: claim_ops.report_payment(gw, "demo", over, _open(gw, over) + Decimal("5.00"), PAID_ON,
                                              overpayment=True),
               held: claim_ops.report_payment(gw, "demo", held, _open(gw, held), PAID_ON)}
    partial_answer = claim_ops.report_payment(gw, "demo", partial, Decimal("1.00"), PAID_ON)
    assert {cid: (a.state, a.forwarded) for cid, a in answers.items()} == {
        cid: ("closed_paid", False) for cid in answers}
    assert (partial_answer.state, partial_answer.forwarded) == ("queued", False)

    for cid, answer in answers.items():
        events = _history(gw, cid)
        payment, closing = events[-2:]
        assert (payment["kind"], payment["id"], payment["actor"]) == ("payment_reported", answer.event_id, "client")
        assert (closing["kind"], closing["state"], closing["actor"]) == ("paid_before_handover", "closed_paid",
                                                                          "client")
        assert closing["from_state"] == ("held" if cid == held else "queued")
        assert closing["data"] == {"payment_event": answer.event_id}
        row = _current(gw, cid)
        assert (row["state"], row["open_minor"], row["closing_reason"]) == ("closed_paid", 0, "paid_before_handover")
        assert row["written_off_minor"] == 0  # paid, not written off
    assert _current(gw, over)["overpaid_minor"] == 500
    # a closed claim takes no more payments, and cannot be released any more
    with pytest.raises(IllegalTransition):
        claim_ops.report_payment(gw, "demo", full, Decimal("1.00"), PAID_ON, overpayment=True)
    with pytest.raises(IllegalTransition):
        claim_ops.release(gw, "demo", claim_ids=[held])

    worker = Dispatcher(gw, owner="w")
    sent = Sent(worker)
    _settle(gw, sim, worker)
    worker.close()

    closed = set(answers)
    assert sent.claims() and not sent.claims() & closed  # the batch went, without the paid claims
    assert partial in sent.claims()
    assert not [r for r in sent.requests if r[1] in closed]
    assert not closed & set(sim.agency.cases)
    assert {r["status"] for r in _outbox(gw)} == {"done"}
    assert [r for r in _outbox(gw) if r["operation"] != "deliver_batch"] == []  # no request was ever queued
    for cid in closed:
        assert _current(gw, cid)["state"] == "closed_paid"
        assert [e["kind"] for e in _history(gw, cid)][-1] == "paid_before_handover"  # nothing after the closing
    with read_tx(gw.engine) as conn:
        assert claim_store.current_states(conn, [partial])[partial] is State.HANDED_OVER
    assert sim.agency.duplicates() == {}


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_batch_left_with_only_paid_claims_sends_nothing(sim: Harness, gw: App) -> None:
    """A held claim released on its own is the only claim of its batch row; paid in full before the dispatcher
    takes the row, the row is settled with nothing sent."""
    ingest_file(gw, DEMO, "demo")
    [held] = claims_by_state(gw)[State.HELD]
    run = claim_ops.release(gw, "demo", claim_ids=[held]).run
    answer = claim_ops.report_payment(gw, "demo", held, _open(gw, held), PAID_ON)
    assert (answer.state, answer.forwarded) == ("closed_paid", False)
    worker = Dispatcher(gw, owner="w")
    sent = Sent(worker)
    _settle(gw, sim, worker)
    worker.close()
    [row] = [r for r in _outbox(gw) if run in r["idempotency_key"]]
    assert row["status"] == "done"
    assert outbox_store.loads(row["receipt"]) == {"skipped": "no claim left to deliver"}
    assert held not in sent.claims() and held not in sim.agency.cases


@pytest.mark.parametrize("when", ["delivering", "failed", "queued-again"])
@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_payment_in_full_while_the_partner_has_or_may_have_the_claim_goes_as_a_request(
        sim: Harness, gw: App, when: str) -> None:
    """On its way (the batch is with the partner), given up (failed) or queued again after that: the partner has
    the claim or may have it. A payment of everything open is then a request to the partner, as before; the
    gateway does not close the claim itself (the partner closes it, and says so)."""
    ingest_file(gw, DEMO, "demo")
    answers: list[claim_ops.OpResult] = []
    if when == "delivering":
        worker = Dispatcher(gw, owner="w")
        adapter: Any = worker._adapter(PARTNER)
        real = adapter.deliver
        cid = claims_by_state(gw)[State.QUEUED][0]

        def pay_while_the_batch_travels(batch: Batch) -> Any:
            # the batch's transaction has committed the claims as delivering: the payment finds them so
            answers.append(claim_ops.report_payment(gw, "demo", cid, _open(gw, cid), PAID_ON))
            return real(batch)
        adapter.deliver = pay_while_the_batch_travels
        assert worker.run_once()
        adapter.deliver = real
    else:
        worker = deliver_unanswered(gw)
        cid = claims_by_state(gw)[State.FAILED][0]
        if when == "queued-again":
            [row] = _outbox(gw)
            retry_dead(gw, row["id"])
        answers.append(claim_ops.report_payment(gw, "demo", cid, _open(gw, cid), PAID_ON))
        if when == "failed":
            [row] = [r for r in _outbox(gw) if r["operation"] == "deliver_batch"]
            retry_dead(gw, row["id"])
    [answer] = answers
    assert (answer.state, answer.forwarded) == ({"failed": "failed", "queued-again": "queued"}.get(when, when),
                                                True)
    assert "paid_before_handover" not in [e["kind"] for e in _history(gw, cid)]
    _settle(gw, sim, worker)
    worker.close()
    assert sim.agency.cases[cid].direct_payments == [{"amount": f"{_reported(gw, cid)}",
                                                      "date": PAID_ON.isoformat()}]
    kinds = [e["kind"] for e in _history(gw, cid)]
    assert kinds.index("receipt") < kinds.index("partner_ack")
    assert _current(gw, cid)["state"] != "closed_paid"  # the partner closes it when it says so, not the gateway
    assert sim.agency.duplicates() == {}


def _reported(app: App, cid: int) -> Decimal:
    [payment] = [e for e in _history(app, cid) if e["kind"] == "payment_reported"]
    return Decimal(payment["data"]["amount"])


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_claim_held_again_after_a_lost_answer_is_not_closed_by_a_payment(sim: Harness, gw: App) -> None:
    """Queued again after a delivery was given up, then held by the operator: the partner may still have the
    claim from the batch whose answer never came, so a payment in full is a request (it waits while the claim
    is held), not a closing the partner would never hear of."""
    ingest_file(gw, DEMO, "demo")
    worker = deliver_unanswered(gw)
    worker.close()
    [row] = _outbox(gw)
    cid = claims_by_state(gw)[State.FAILED][0]
    retry_dead(gw, row["id"])
    with write_tx(gw.engine) as conn:
        claim_store.transition(conn, [cid], State.HELD, Actor.OPERATOR, kind="held_by_operator", now=gw.now())
    answer = claim_ops.report_payment(gw, "demo", cid, _open(gw, cid), PAID_ON)
    assert (answer.state, answer.forwarded) == ("held", True)
    assert _current(gw, cid)["state"] == "held"
    [request] = [r for r in _outbox(gw) if r["operation"] == "report_payment"]
    worker = Dispatcher(gw, owner="w2")
    sent = Sent(worker)
    gw.now.advance(60)  # type: ignore[attr-defined]
    worker.drain()
    worker.close()
    assert not [r for r in sent.requests if r[1] == cid]  # held: it waits for the claim to move on
    [request] = [r for r in _outbox(gw) if r["id"] == request["id"]]
    assert request["status"] == "pending" and f"claim {cid} is held" in str(request["last_error"])

"""A message to a claim queued for its partner reaches the partner once it has the claim.

The client writes while the claim waits for its batch (queued, or queued again after a delivery was given
up): the message is queued for the partner, waits in the outbox until the claim's receipt is recorded, and
then goes once. A claim that ends before any batch took it (cancelled, closed as paid) never reached the
partner: the waiting request is settled as not forwarded, the claim's history says so, and nothing goes to
the partner. A held claim's message is the gateway's record only. Real partner simulators throughout.
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from gateway.bootstrap import App
from gateway.domain.lifecycle import Actor, State
from gateway.errors import Unsupported
from gateway.services import claim_ops, console
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.services.partner_sync import sync_partner
from gateway.store import claims as claim_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT
from tests.contract.harness import claims_by_state, deliver_unanswered, Harness, PARTNER

DEMO = ROOT / "examples" / "demo.csv"
TEXT = "Schuldner bittet um Rückruf wegen Ratenzahlung."


def _history(app: App, cid: int) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return claim_store.history(conn, cid)


def _kinds(app: App, cid: int) -> list[str]:
    return [e["kind"] for e in _history(app, cid)]


def _state(app: App, cid: int) -> State:
    with read_tx(app.engine) as conn:
        return claim_store.current_states(conn, [cid])[cid]


def _requests(app: App) -> list[dict[str, Any]]:
    with read_tx(app.engine) as conn:
        return [dict(r) for r in outbox_store.listing(conn) if r["operation"] != "deliver_batch"]


def _settle(app: App, sim: Harness, worker: Dispatcher, rounds: int = 6) -> None:
    for _ in range(rounds):
        app.now.advance(60)  # type: ignore[attr-defined]
        worker.drain()
        sim.pump()


def _heard_of(sim: Harness, cid: int) -> bool:
    """Whether the partner knows anything of the claim: a case, or a request or instruction naming it."""
    return cid in sim.agency.cases or any(f"-{cid}-" in key or f":{cid}:" in key for key in sim.agency.operations)


def test_a_message_to_a_queued_claim_reaches_the_partner_after_the_handover(sim: Harness, gw: App) -> None:
    """Written before any batch was sent: queued for the partner (forwarded), held back until the receipt is
    recorded, then delivered once."""
    ingest_file(gw, DEMO, "demo")
    cid = claims_by_state(gw)[State.QUEUED][0]
    answer = claim_ops.send_message(gw, "demo", cid, TEXT)
    assert (answer.state, answer.forwarded) == ("queued", True)
    [row] = _requests(gw)
    assert (row["operation"], row["status"]) == ("send_message", "pending")
    assert TEXT not in str(row)  # the outbox row names the message; its text stays encrypted in messages

    # The batch held back a while (deferred, no attempt counted): the dispatcher meets the request first, while
    # the claim is still queued, and it must wait rather than reach a partner that does not know the claim.
    with write_tx(gw.engine) as conn:
        batch = outbox_store.lease(conn, "t", 60, now=gw.now())
        assert batch is not None and batch.operation == "deliver_batch"
        assert outbox_store.defer(conn, batch, "held back by the test", retry_in=300, now=gw.now())
    worker = Dispatcher(gw, owner="w")
    assert worker.drain() == 1
    [row] = _requests(gw)
    assert row["status"] == "pending" and row["last_error"].startswith(f"waiting: claim {cid} is queued")
    assert not _heard_of(sim, cid)

    _settle(gw, sim, worker)
    worker.close()
    sync_partner(gw, PARTNER)  # a file agency's receipt of the instruction comes with its statuses
    assert sim.agency.cases[cid].client_messages == [TEXT]
    kinds = _kinds(gw, cid)
    assert kinds.index("message_sent") < kinds.index("receipt") < kinds.index("partner_ack")
    assert [r["status"] for r in _requests(gw)] == ["done"]
    assert sim.agency.duplicates() == {}


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_message_to_a_claim_queued_again_after_a_lost_answer_reaches_the_partner_once(sim: Harness,
                                                                                      gw: App) -> None:
    ingest_file(gw, DEMO, "demo")
    worker = deliver_unanswered(gw)
    with read_tx(gw.engine) as conn:
        [batch] = outbox_store.listing(conn)
    cid = claims_by_state(gw)[State.FAILED][0]
    assert retry_dead(gw, batch["id"]) > 0
    answer = claim_ops.send_message(gw, "demo", cid, TEXT)
    assert (answer.state, answer.forwarded) == ("queued", True)
    _settle(gw, sim, worker)
    worker.close()
    assert sim.agency.cases[cid].client_messages == [TEXT]
    kinds = _kinds(gw, cid)
    assert kinds.index("receipt") < kinds.index("partner_ack")
    assert sim.agency.duplicates() == {}


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_held_claims_message_is_kept_here_only(sim: Harness, gw: App) -> None:
    """A held claim may never be handed over: its message is recorded, not queued (forwarded false), and a
    later release does not send it."""
    ingest_file(gw, DEMO, "demo")
    [held] = claims_by_state(gw)[State.HELD]
    answer = claim_ops.send_message(gw, "demo", held, TEXT)
    assert (answer.state, answer.forwarded) == ("held", False)
    assert _requests(gw) == []
    assert [m["text"] for m in claim_ops.messages(gw, "demo", held)] == [TEXT]
    claim_ops.release(gw, "demo", claim_ids=[held])
    worker = Dispatcher(gw, owner="w")
    _settle(gw, sim, worker)
    worker.close()
    assert _state(gw, held) is State.HANDED_OVER and sim.agency.cases[held].client_messages == []


@pytest.mark.parametrize("ending", ["cancelled", "paid", "rejected_while_held"])
def test_a_waiting_message_for_a_claim_that_ends_before_the_handover_is_settled_not_forwarded(
        sim: Harness, gw: App, ending: str, caplog: pytest.LogCaptureFixture) -> None:
    """The message waits for the claim's receipt; the claim ends first (the client cancels it, pays it in full,
    or the operator holds and rejects it). The request must not wait forever, nor reach a partner that never
    had the claim: it is settled as not forwarded, with a record on the claim, and no message text in a log."""
    caplog.set_level(logging.DEBUG)
    ingest_file(gw, DEMO, "demo")
    cid, other = claims_by_state(gw)[State.QUEUED][:2]
    assert claim_ops.send_message(gw, "demo", cid, TEXT).forwarded
    assert claim_ops.send_message(gw, "demo", other, TEXT).forwarded  # its claim goes: the message follows it
    if ending == "cancelled":
        assert claim_ops.cancel(gw, "demo", cid, "erledigt").forwarded is False
    elif ending == "paid":
        with read_tx(gw.engine) as conn:
            row = claim_store.current(conn, cid)
        answer = claim_ops.report_payment(gw, "demo", cid, Decimal(row["open_minor"]) / 100, date(2025, 6, 2))
        assert answer.state == "closed_paid"
    else:
        with write_tx(gw.engine) as conn:
            claim_store.transition(conn, [cid], State.HELD, Actor.OPERATOR, kind="held_by_operator", now=gw.now())
    worker = Dispatcher(gw, owner="w")
    _settle(gw, sim, worker, rounds=3)
    if ending == "rejected_while_held":  # held: the message waits (it may still go, once released)
        [mine] = [r for r in _requests(gw) if outbox_store.loads(r["payload"])["claim_id"] == cid]
        assert mine["status"] == "pending" and "is held" in str(mine["last_error"])
        with write_tx(gw.engine) as conn:
            claim_store.transition(conn, [cid], State.REJECTED, Actor.OPERATOR, kind="rejected_by_operator",
                                   now=gw.now())
    _settle(gw, sim, worker, rounds=3)
    worker.close()

    by_claim = {outbox_store.loads(r["payload"])["claim_id"]: r for r in _requests(gw)}
    mine = by_claim[cid]
    assert mine["status"] == "done" and mine["attempts"] <= 1
    receipt = outbox_store.loads(mine["receipt"])
    final = _state(gw, cid)
    assert receipt == {"operation": "send_message",
                       "not_forwarded": f"claim {cid} is {final.value} and never reached the partner: not forwarded"}
    [note] = [e for e in _history(gw, cid) if e["kind"] == "request_not_forwarded"]
    assert (note["actor"], note["data"]) == ("system", {"operation": "send_message", "outbox": mine["id"],
                                                        "state": final.value})
    assert not _heard_of(sim, cid)
    # the other claim was handed over and its message went after it
    assert by_claim[other]["status"] == "done" and sim.agency.cases[other].client_messages == [TEXT]
    assert "Rückruf" not in caplog.text and "Ratenzahlung" not in caplog.text
    assert f"dispatch.operation_not_forwarded outbox={mine['id']}" in caplog.text


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_queued_claims_partner_that_takes_no_messages_refuses_at_once(sim: Harness, gw: App) -> None:
    """The message would go to the partner, which does not take messages: refused before anything is written,
    as for a claim the partner has."""
    gw.config.partners[PARTNER].capabilities = ["deliver", "status_pull"]
    ingest_file(gw, DEMO, "demo")
    cid = claims_by_state(gw)[State.QUEUED][0]
    before = _kinds(gw, cid)
    with pytest.raises(Unsupported):
        claim_ops.send_message(gw, "demo", cid, TEXT)
    assert _kinds(gw, cid) == before and _requests(gw) == []
    [held] = claims_by_state(gw)[State.HELD]
    assert claim_ops.send_message(gw, "demo", held, TEXT).forwarded is False  # the gateway's record only
    # the console offers what the use case takes
    assert "send_message" not in console.claim_page(gw, "demo", cid, mark_seen=False).actions
    assert "send_message" in console.claim_page(gw, "demo", held, mark_seen=False).actions

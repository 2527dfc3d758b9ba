"""The one contract every partner adapter meets, run against each through its simulator.

Delivery exactly once (also after a lost answer and transport faults, and to an SFTP partner that moves
files away on arrival: no file reaches its folder twice), status back as claim events
(in_progress, paid, payments, messages, unknown codes kept), and per-claim operations as the adapter declares
them (calls to API partners, instruction documents to file partners).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters import ADAPTERS, PartnerAdapter
from adapters.simulators.agency import Fault
from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.services.dispatch import Dispatcher, open_adapter
from gateway.services.ingest import ingest_file
from gateway.services.operations import accepts
from gateway.services.partner_sync import sync_partner
from gateway.store import claims as claim_store
from gateway.store import messages as message_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx, write_tx
from tests.conftest import ROOT
from tests.contract.harness import HARNESSES, PARTNER, Harness, gateway_for, make_keys_template, running

DEMO = ROOT / "examples" / "demo.csv"
ACCEPTED = 7  # claims of the demo file that are sent (one more is held, the rest rejected)


@pytest.fixture(params=sorted(HARNESSES))
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    with running(request.param, tmp_path) as h:
        yield h


@pytest.fixture(scope="session")
def keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keys_template(tmp_path_factory.mktemp("keys-template"))


@pytest.fixture
def gw(sim: Harness, tmp_path: Path, db_url: str, keys_template: Path) -> Iterator[App]:
    with gateway_for(sim, tmp_path, db_url, keys_template) as app:
        yield app


def sent_claims(app: App) -> list[int]:
    with read_tx(app.engine) as conn:
        return sorted(r["id"] for r in claim_store.listing(conn, client_id="demo") if r["state"] != "held")


def states(app: App) -> dict[int, State]:
    with read_tx(app.engine) as conn:
        return claim_store.current_states(conn, sent_claims(app))


def deliver_all(app: App, sim: Harness) -> None:
    ingest_file(app, DEMO, "demo")
    worker = Dispatcher(app, owner="w1")
    try:
        assert worker.drain() == 1
    finally:
        worker.close()
    sim.pump()


def test_every_adapter_is_registered_and_implements_the_interface(sim: Harness, gw: App) -> None:
    assert sim.alias in ADAPTERS
    adapter = open_adapter(gw, PARTNER)
    try:
        assert isinstance(adapter, PartnerAdapter)
    finally:
        adapter.close()


def test_delivers_each_claim_exactly_once(sim: Harness, gw: App) -> None:
    deliver_all(gw, sim)
    ids = sent_claims(gw)
    assert len(ids) == ACCEPTED
    assert sorted(sim.agency.cases) == ids
    assert sim.agency.duplicates() == {} and sim.duplicate_arrivals() == {}
    assert set(states(gw).values()) == {State.HANDED_OVER}


def test_lost_answer_is_retried_without_a_second_case(sim: Harness, gw: App, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_file(gw, DEMO, "demo")
    crashed = Dispatcher(gw, owner="dies")
    monkeypatch.setattr(crashed, "_record", lambda *a: (_ for _ in ()).throw(SystemExit("killed after send")))
    with pytest.raises(SystemExit):
        crashed.run_once()
    crashed.close()
    sim.pump()
    gw.now.advance(gw.config.dispatcher.lease_seconds + 1)  # type: ignore[attr-defined]
    survivor = Dispatcher(gw, owner="survivor")
    assert survivor.drain() == 1
    survivor.close()
    sim.pump()
    assert sorted(sim.agency.cases) == sent_claims(gw)
    assert sim.agency.duplicates() == {} and sim.duplicate_arrivals() == {}
    assert set(states(gw).values()) == {State.HANDED_OVER}


@pytest.mark.parametrize("fault", list(Fault))
def test_transport_faults_are_retried_and_never_duplicate(sim: Harness, gw: App, fault: Fault) -> None:
    if fault not in sim.faults:
        pytest.skip(f"{sim.alias} has no {fault.value} fault (no network transport for it)")
    ingest_file(gw, DEMO, "demo")
    worker = Dispatcher(gw, owner="w")
    if fault is Fault.REFUSE:
        sim.sim.refuse()  # type: ignore[attr-defined]
        assert worker.run_once()
        with read_tx(gw.engine) as conn:
            [row] = outbox_store.listing(conn)
        assert row["status"] == "pending" and row["last_error"]
        sim.sim.accept()  # type: ignore[attr-defined]
        gw.now.advance(3600)  # type: ignore[attr-defined]
    else:
        sim.agency.faults.fail_next(fault, times=2)  # more than one in-call retry absorbs
    worker.drain()
    for _ in range(3):  # on a loaded machine one attempt more may time out (0.5 s): the outbox retries it later
        with read_tx(gw.engine) as conn:
            [row] = outbox_store.listing(conn)
        if row["status"] != "pending":
            break
        gw.now.advance(3600)  # type: ignore[attr-defined]
        worker.drain()
    worker.close()
    sim.pump()
    with read_tx(gw.engine) as conn:
        [row] = outbox_store.listing(conn)
    assert row["status"] == "done"
    assert sim.agency.duplicates() == {} and sim.duplicate_arrivals() == {}
    assert sorted(sim.agency.cases) == sent_claims(gw)
    assert set(states(gw).values()) == {State.HANDED_OVER}


def test_status_round_trip_to_in_progress_and_paid(sim: Harness, gw: App) -> None:
    deliver_all(gw, sim)
    sim.agency.step_all()  # IN_BEARBEITUNG
    sim.pump()
    result = sync_partner(gw, PARTNER)
    assert result.counts.get("applied", 0) >= ACCEPTED
    assert set(states(gw).values()) == {State.IN_PROGRESS}
    sim.agency.step_all()  # payment, message, BEZAHLT
    sim.pump()
    sync_partner(gw, PARTNER)
    assert set(states(gw).values()) == {State.CLOSED_PAID}
    assert sync_partner(gw, PARTNER).total == 0  # nothing new: the cursor moved on
    cid = sent_claims(gw)[0]
    with read_tx(gw.engine) as conn:
        events = claim_store.history(conn, cid)
        msgs = message_store.for_claim(conn, gw.cipher, cid)
    kinds = [e["kind"] for e in events]
    assert "partner_payment" in kinds and "partner_message" in kinds
    assert [e["state"] for e in events if e["kind"] == "partner_status"][-2:] == ["in_progress", "closed_paid"]
    assert [e["data"]["stage"] for e in events if e["kind"] == "partner_status" and e["state"] == "in_progress"] \
        == ["pre_court"]
    assert [m["direction"] for m in msgs] == ["from_partner"] and "bezahlt" in msgs[0]["text"]


def test_unknown_status_code_is_kept_and_flagged(sim: Harness, gw: App) -> None:
    deliver_all(gw, sim)
    sim.agency.step_all(code="XZ-99")
    sim.pump()
    result = sync_partner(gw, PARTNER)
    assert result.counts["unknown_code"] == ACCEPTED
    assert set(states(gw).values()) == {State.HANDED_OVER}
    with read_tx(gw.engine) as conn:
        events = claim_store.history(conn, sent_claims(gw)[0])
    [flag] = [e for e in events if e["kind"] == "partner_status_unknown"]
    assert flag["data"]["code"] == "XZ-99"


OPS = {"cancel": {"reason": "paid directly"},
       "report_payment": {"amount": "10.00", "currency": "EUR", "date": "2026-11-20"},
       "send_message": {"text": "Bitte Ratenzahlung anbieten"},  # stored as a message first, the row names it
       "request_monitoring": {}, "set_labels": {"labels": ["vip"]}, "refresh": {}}


def test_operations_reach_the_partner_once_or_fail_as_unsupported(sim: Harness, gw: App) -> None:
    """What the adapter declares reaches the agency once (a call or an instruction document); the rest is a
    dead row and a partner_op_failed event, never a done row (the use cases refuse it before queueing)."""
    deliver_all(gw, sim)
    cid = sent_claims(gw)[0]
    accepted = {op for op in OPS if accepts(gw, PARTNER, op)}
    with write_tx(gw.engine) as conn:
        for op, payload in OPS.items():
            if op == "send_message":  # as the use case queues it: the text kept encrypted, the row naming it
                mid = message_store.add(conn, gw.cipher, claim_id=cid, client_id="demo", direction="to_partner",
                                        text=payload["text"], now=gw.now())
                payload = {"message_id": mid}
            outbox_store.enqueue(conn, key=f"{op}:{cid}", client_id="demo", partner_id=PARTNER, operation=op,
                                 payload={"claim_id": cid, **payload}, now=gw.now())
    if sim.operations:
        sim.agency.faults.fail_next(Fault.LOSE_ANSWER)  # the first operation's answer is lost, then retried
    worker = Dispatcher(gw, owner="w")
    assert worker.drain() == len(OPS)
    worker.close()
    sim.pump()  # a file agency takes its instruction documents and writes its receipts
    sync_partner(gw, PARTNER)
    with read_tx(gw.engine) as conn:
        rows = {r["operation"]: r["status"] for r in outbox_store.listing(conn) if r["operation"] in OPS}
        history = claim_store.history(conn, cid)
    assert rows == {op: "done" if op in accepted else "dead" for op in OPS}
    if "send_message" in accepted:  # the text, read from messages when sent, reached the agency once
        assert sim.agency.cases[cid].client_messages == [OPS["send_message"]["text"]]
    failed = sorted(e["data"]["operation"] for e in history if e["kind"] == "partner_op_failed")
    assert failed == sorted(set(OPS) - accepted)
    agency_ops = sorted(o["operation"] for o in sim.agency.operations.values())
    if sim.operations:
        assert [e["kind"] for e in history].count("partner_ack") == len(accepted)
        assert agency_ops == sorted(accepted - {"refresh"})  # a refresh reads the history, it changes nothing
    else:
        delivered = [e["data"]["instruction"] for e in history if e["kind"] == "instruction_delivered"]
        receipts = [e["data"]["instruction"] for e in history if e["kind"] == "partner_ack"]
        assert sorted(delivered) == sorted(receipts) and len(delivered) == len(accepted)
        assert agency_ops == sorted(accepted)
    if "cancel" in accepted:
        assert states(gw)[cid] is State.CANCELLED_BY_CLIENT  # the partner's STORNIERT came back

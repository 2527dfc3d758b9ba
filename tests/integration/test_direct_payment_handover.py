"""A direct payment the client reports before the partner has the claim reaches the partner with the claim.

The debtor paid the creditor while the claim was held or queued: the payment is booked in the case account
(no request can go to a partner that does not know the claim), and the batch that hands the claim over must
carry it as a payment received, so the agency does not demand what was paid. A payment reported while the
partner may already have the claim (a failed delivery, queued again after one) goes as a request instead,
and never both ways. Each test reads the batch as the partner gets it: decrypted with the partner's key.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from adapters.base import Batch
from gateway.bootstrap import App
from gateway.crypto.certs import load_cert, load_private_key
from gateway.crypto.cms import decrypt
from gateway.domain.limitation import limitation_date
from gateway.domain.lifecycle import State
from gateway.domain.model import from_minor
from gateway.services import claim_ops
from gateway.services.dispatch import Dispatcher, retry_dead
from gateway.services.ingest import ingest_file
from gateway.services.render import render_claim, validate_batch
from gateway.store import claims as claim_store
from gateway.store import delivery_rows
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.conftest import ROOT
from tests.contract.harness import claims_by_state, deliver_unanswered, Harness, PARTNER

DEMO = ROOT / "examples" / "demo.csv"
NS = "{urn:inkasso-gateway:partner-batch:1}"


class Batches:
    """Every batch the adapter was given, as the partner opens it (decrypted, the XML out of the signature)."""

    def __init__(self, app: App, worker: Dispatcher) -> None:
        keys = app.config.keys_dir / "partners"
        self.cert, self.key = load_cert(keys / f"{PARTNER}.crt"), load_private_key(keys / f"{PARTNER}.key")
        self.xml: list[bytes] = []
        adapter = worker._adapter(PARTNER)
        self.real = adapter.deliver
        adapter.deliver = self._deliver  # type: ignore[method-assign]

    def _deliver(self, batch: Batch):  # type: ignore[no-untyped-def]
        signed = decrypt(batch.payload, self.cert, self.key)  # type: ignore[arg-type]
        xml = signed[signed.index(b"<?xml"):signed.index(b"</batch>") + len(b"</batch>")]
        if xml not in self.xml:  # an in-call retry (a slow answer under load) sends the same batch again
            self.xml.append(xml)
        return self.real(batch)

    def claims(self) -> dict[int, etree._Element]:
        """The claims of the latest batch that carried each (checked against the schema and its header)."""
        out: dict[int, etree._Element] = {}
        for xml in self.xml:
            assert validate_batch(xml) == []
            root = etree.fromstring(xml)
            found = root.findall(f"{NS}claim")
            opens = [Decimal(c.findtext(f"{NS}totalOpenAmount") or "") for c in found]
            assert Decimal(root.findtext(f"{NS}totalAmount") or "") == sum(opens, Decimal(0))
            out.update({int(c.findtext(f"{NS}claimId") or 0): c for c in found})
        return out


def _payments(element: etree._Element) -> list[tuple[str, str]]:
    return [(p.findtext(f"{NS}amount") or "", p.findtext(f"{NS}date") or "")
            for p in element.findall(f"{NS}payments/{NS}payment")]


def _open(app: App, cid: int) -> Decimal:
    with read_tx(app.engine) as conn:
        row = claim_store.current(conn, cid)
    return from_minor(int(row["open_minor"]), str(row["currency"]))


def _stored_element(app: App, cid: int) -> bytes:
    """The claim rendered from what was stored at intake, as every batch rendered it before."""
    with read_tx(app.engine) as conn:
        [decoded] = delivery_rows.decode_each(app.cipher, delivery_rows.fetch_claims(conn, [cid]))
    assert decoded.claim is not None
    return render_claim(cid, decoded.claim,
                        limitation_on=limitation_date(decoded.claim, app.config.clients["demo"].limitation))


def _settle(app: App, sim: Harness, worker: Dispatcher, rounds: int = 6) -> None:
    for _ in range(rounds):
        app.now.advance(60)  # type: ignore[attr-defined]
        worker.drain()
        sim.pump()


def test_payments_reported_before_the_handover_travel_in_the_batch(sim: Harness, gw: App) -> None:
    """Part payments on a queued claim, all but a cent paid on another, a part payment on a held claim released
    afterwards: the partner's batch lists each as a payment received (amount, currency, date) and its open
    amount is the account's; a claim without such payments is the same bytes as before. (A claim paid in full
    is not handed over at all: test_paid_before_handover.py.)"""
    ingest_file(gw, DEMO, "demo")
    states = claims_by_state(gw)
    [held] = states[State.HELD]
    partial, full, plain = states[State.QUEUED][:3]
    first, second = date(2025, 6, 2), date(2025, 6, 20)
    whole = _open(gw, full) - Decimal("0.01")
    answers = [claim_ops.report_payment(gw, "demo", partial, Decimal("100.00"), first),
               claim_ops.report_payment(gw, "demo", partial, Decimal("0.56"), second, currency="EUR"),
               claim_ops.report_payment(gw, "demo", full, whole, second),
               claim_ops.report_payment(gw, "demo", held, Decimal("10"), first)]
    # the partner does not have these claims: nothing is queued for it now, the batch will say it
    assert [(a.state, a.forwarded) for a in answers] == [("queued", False)] * 3 + [("held", False)]
    assert claim_ops.release(gw, "demo", claim_ids=[held]).released == [held]

    worker = Dispatcher(gw, owner="w")
    batches = Batches(gw, worker)
    _settle(gw, sim, worker)
    worker.close()

    claims = batches.claims()
    assert {partial, full, plain, held} <= set(claims)
    assert _payments(claims[partial]) == [("100.00", "2025-06-02"), ("0.56", "2025-06-20")]
    assert _payments(claims[full]) == [(f"{whole:.2f}", "2025-06-20")]
    assert _payments(claims[held]) == [("10.00", "2025-06-02")]
    for cid in (partial, full, held):
        amounts = claims[cid].findall(f"{NS}payments/{NS}payment/{NS}amount")
        assert amounts and {a.get("currency") for a in amounts} == {"EUR"}
        # what the partner collects is what the case account says is open
        assert Decimal(claims[cid].findtext(f"{NS}totalOpenAmount") or "") == _open(gw, cid)
    assert claims[full].findtext(f"{NS}totalOpenAmount") == "0.01"  # all but a cent paid before the handover
    # a claim without reported payments: byte for byte what the stored claim renders
    assert b"".join(batches.xml).count(_stored_element(gw, plain)) == 1
    assert claims[plain].find(f"{NS}payments") is None
    # nothing went twice: no request for the payments, one case per claim
    with read_tx(gw.engine) as conn:
        assert [r for r in outbox_store.listing(conn) if r["operation"] == "report_payment"] == []
    assert sim.agency.cases[partial].direct_payments == []
    assert sim.agency.duplicates() == {}
    if sim.alias == "directory":  # the folder agency learns each claim's open amount from the batch
        assert sim.agency.cases[partial].open_amount == _open(gw, partial)
        assert sim.agency.cases[full].open_amount == Decimal("0.01")


@pytest.mark.parametrize("when", ["failed", "queued-again"])
@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_payment_while_the_partner_may_have_the_claim_goes_once_as_a_request(sim: Harness, gw: App,
                                                                             when: str) -> None:
    """The partner took the batch, the gateway never heard and gave up (failed), and the operator may have
    queued the claims again. The batch sent again under the same id is the one the partner has, so a payment
    reported now must go as a request after the receipt, and not also in that batch."""
    ingest_file(gw, DEMO, "demo")
    worker = deliver_unanswered(gw)
    batches = Batches(gw, worker)
    with read_tx(gw.engine) as conn:
        [row] = outbox_store.listing(conn)
    cid = claims_by_state(gw)[State.FAILED][0]
    if when == "queued-again":
        retry_dead(gw, row["id"])
    answer = claim_ops.report_payment(gw, "demo", cid, Decimal("25.00"), date(2025, 6, 2))
    assert answer.forwarded
    if when == "failed":
        retry_dead(gw, row["id"])
    _settle(gw, sim, worker)
    worker.close()

    assert sim.agency.cases[cid].direct_payments == [{"amount": "25.00", "date": "2025-06-02"}]
    [again] = batches.xml  # the batch sent again carries the claim as it was: the request carries the payment
    assert _payments(batches.claims()[cid]) == []
    assert _stored_element(gw, cid) in again
    with read_tx(gw.engine) as conn:
        kinds = [e["kind"] for e in claim_store.history(conn, cid)]
    assert kinds.index("receipt") < kinds.index("partner_ack")
    assert sim.agency.duplicates() == {}

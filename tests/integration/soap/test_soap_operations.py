"""Every SOAP operation through zeep against the served WSDL, over HTTPS on loopback."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
import zeep

from gateway.services.dispatch import Dispatcher
from gateway.store import documents as doc_store
from gateway.store import outbox as outbox_store
from gateway.store.db import read_tx
from tests.integration.soap.conftest import Endpoint, claim, submit


def _items(value: object, name: str) -> list:  # zeep wraps arrays in their item element
    return list(getattr(value, name)) if value is not None else []


def _deliver(endpoint: Endpoint) -> None:
    worker = Dispatcher(endpoint.app, owner="test")
    try:
        worker.drain()
    finally:
        worker.close()


def _outbox(endpoint: Endpoint, operation: str) -> list[dict]:
    with read_tx(endpoint.app.engine) as conn:
        rows = outbox_store.listing(conn, limit=1000)
    return [{**r, "payload": json.loads(r["payload"])} for r in rows if r["operation"] == operation]


def test_submit_answers_per_claim_and_is_idempotent_by_reference(endpoint: Endpoint) -> None:
    c = endpoint.client()
    minor = claim("R-MINOR")
    minor["debtor"] = {**minor["debtor"], "birth_date": (date.today() - timedelta(days=365 * 10)).isoformat()}
    bad = claim("R-BAD", debtor={**claim()["debtor"], "bank_accounts": {"BankAccount": [{"iban": "DE00123"}]}})
    r = submit(c, claim("R-1"), minor, bad)
    assert (r.accepted, r.held, r.rejected, r.status) == (1, 1, 1, "completed_with_errors")
    ok, held, rejected = _items(r.results, "ClaimResult")
    assert (ok.outcome, ok.state, ok.existing) == ("accepted", "queued", False)
    assert held.outcome == "held" and [f.code for f in _items(held.findings, "Finding")] == ["debtor_minor"]
    assert rejected.claim_id is None
    assert [(f.code, f.field) for f in _items(rejected.findings, "Finding")] == [
        ("invalid_iban", "debtor.bank_accounts[0].iban")]
    assert r.total_amount == Decimal("241.00") and r.currency == "EUR"

    again = submit(c, claim("R-1"))  # the same data again (changed data: test_conflicting_resend.py)
    (same,) = _items(again.results, "ClaimResult")
    assert (same.claim_id, same.existing, same.outcome) == (ok.claim_id, True, "accepted")
    assert _items(same.findings, "Finding")[0].code == "duplicate_reference"
    assert c.service.GetClaim(ok.claim_id).claim.principal_amount == Decimal("120.50")
    assert c.service.ListClaims({"text": "R-1"}).total == 1  # never a second claim


def test_submit_with_documents_stores_them_encrypted(endpoint: Endpoint) -> None:
    c = endpoint.client()
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 10
    doc = {"name": "invoice.pdf", "media_type": "application/pdf", "kind": "invoice", "content": pdf}
    big = {"name": "huge.png", "media_type": "image/png", "content": b"x" * (64 * 1024 + 1)}
    r = submit(c, claim("R-DOC", documents={"DocumentUpload": [doc]}),
               claim("R-BIG", documents={"DocumentUpload": [big]}))
    ok, too_big = _items(r.results, "ClaimResult")
    assert ok.outcome == "accepted"
    assert [f.code for f in _items(too_big.findings, "Finding")] == ["document_too_large"]
    info = c.service.GetClaim(ok.claim_id)
    (meta,) = _items(info.claim.documents, "DocumentInfo")
    assert (meta.name, meta.kind, meta.size) == ("invoice.pdf", "invoice", len(pdf))
    with read_tx(endpoint.app.engine) as conn:
        stored = doc_store.for_claims(conn, endpoint.app.cipher, [ok.claim_id])[ok.claim_id]
        raw = conn.exec_driver_sql("SELECT data FROM documents").scalar_one()
    assert stored[0]["data"] == pdf
    assert base64.b64encode(pdf[:32]) not in bytes(raw) and pdf[:64] not in bytes(raw)


def test_release_held_claims_is_a_collection_run(endpoint: Endpoint) -> None:
    c = endpoint.client()
    r = submit(c, claim("R-A"), claim("R-B"), release=False)
    assert r.held == 2
    ids = [x.claim_id for x in _items(r.results, "ClaimResult")]
    explained = c.service.ExplainClaim(ids[0])
    assert explained.state == "held"
    assert [x.code for x in _items(explained.reasons, "Reason")] == ["awaiting_release"]
    assert "ReleaseClaims" in _items(explained.reasons, "Reason")[0].fix
    run = c.service.ReleaseClaims(submission=r.submission)
    assert sorted(_items(run.released, "long")) == sorted(ids)
    assert c.service.GetClaim(ids[0]).state == "queued"
    (row,) = [o for o in _outbox(endpoint, "deliver_batch") if o["idempotency_key"].startswith("release:")]
    assert row["idempotency_key"] == f"release:{run.run}:demo-agency:1"
    assert sorted(row["payload"]["claim_ids"]) == sorted(ids)
    with pytest.raises(zeep.exceptions.Fault) as exc:  # released already: not held any more
        c.service.ReleaseClaims(claim_ids={"long": [ids[0]]})
    assert exc.value.code.endswith("Client.IllegalTransition")


def test_get_submission_claim_history_and_changes(endpoint: Endpoint) -> None:
    c = endpoint.client()
    r = submit(c, claim("R-1"), claim("R-2", principal_amount="-5"))
    sub = c.service.GetSubmission(r.submission)
    assert (sub.status, sub.claims, sub.accepted, sub.rejected, sub.channel) == (
        "completed_with_errors", 2, 1, 1, "soap")
    assert sub.handover == "processing"  # queued: the partner has not confirmed it yet
    assert [(f.index, f.code) for f in _items(sub.findings, "SubmissionFinding")] == [(2, "amount_not_positive")]
    cid = _items(r.results, "ClaimResult")[0].claim_id
    feed = c.service.GetChanges(0)
    assert [(e.claim_id, e.state, e.kind) for e in _items(feed.events, "Event")] == [(cid, "queued", "intake")]
    assert feed.more is False
    _deliver(endpoint)
    c.service.RefreshClaim(cid)
    later = c.service.GetChanges(feed.next_cursor)
    assert [(e.state, e.kind) for e in _items(later.events, "Event")] == [
        ("delivering", "delivery_started"), ("handed_over", "receipt"), ("handed_over", "refresh_requested")]
    assert _items(c.service.GetChanges(later.next_cursor).events, "Event") == []  # nothing repeated
    paged = c.service.GetChanges(0, 2)
    assert paged.more is True and paged.next_cursor == _items(paged.events, "Event")[-1].event_id
    history = c.service.GetClaimHistory(cid)
    assert [e.state for e in history] == ["queued", "delivering", "handed_over", "handed_over"]


def test_list_claims_filters_sorts_and_pages(endpoint: Endpoint) -> None:
    c = endpoint.client()
    other_debtor = {**claim()["debtor"], "first_name": "Anna", "last_name": "Schmidt"}
    submit(c, claim("A-1", principal_amount="10.00", labels={"Label": ["vip"]}),
           claim("A-2", principal_amount="30.00", debtor=other_debtor),
           claim("B-3", principal_amount="20.00", invoice_number="RE-777"))
    page = c.service.ListClaims({"sort": "amount", "descending": False})
    assert [x.creditor_reference for x in _items(page.claims, "ClaimSummary")] == ["A-1", "B-3", "A-2"]
    assert c.service.ListClaims({"text": "a-"}).total == 2
    assert [x.creditor_reference for x in _items(c.service.ListClaims({"text": "RE-777"}).claims,
                                                   "ClaimSummary")] == ["B-3"]
    by_name = c.service.ListClaims({"text": "  anna   SCHMIDT "})  # exact name via the blind index
    assert [x.creditor_reference for x in _items(by_name.claims, "ClaimSummary")] == ["A-2"]
    assert c.service.ListClaims({"text": "Schmidt"}).total == 0  # partial names cannot match encrypted data
    assert [x.creditor_reference for x in _items(c.service.ListClaims({"label": "vip"}).claims,
                                                   "ClaimSummary")] == ["A-1"]
    assert c.service.ListClaims({"states": {"string": ["held"]}}).total == 0
    today = date.today()
    assert c.service.ListClaims({"date_from": today, "date_to": today}).total == 3
    assert c.service.ListClaims({"date_to": today - timedelta(days=1)}).total == 0
    first = c.service.ListClaims({"limit": 2})
    second = c.service.ListClaims({"limit": 2, "offset": 2})
    assert first.total == 3 and len(_items(first.claims, "ClaimSummary")) == 2
    assert len(_items(second.claims, "ClaimSummary")) == 1
    with pytest.raises(zeep.exceptions.Fault) as exc:
        c.service.ListClaims({"sort": "debtor_name"})
    assert exc.value.code.endswith("Client.Validation")


def test_operations_are_recorded_and_forwarded_to_the_partner(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = _items(submit(c, claim("R-1")).results, "ClaimResult")[0].claim_id
    _deliver(endpoint)
    paid = c.service.ReportDirectPayment(cid, Decimal("20.50"), date.today() - timedelta(days=1))
    assert (paid.state, paid.forwarded) == ("handed_over", True)
    sent = c.service.SendMessage(cid, "Schuldner hat angerufen.")
    assert sent.message_id is not None
    # labels are kept by the gateway; a directory partner takes none, so they are not passed on
    assert c.service.SetLabels(cid, {"Label": ["dispute", "vip"]}).forwarded is False
    c.service.RequestLongTermMonitoring(cid)
    c.service.RefreshClaim(cid)
    cancel = c.service.CancelClaim(cid, "paid in full")
    assert cancel.state == "handed_over"  # the partner closes it; we asked
    payloads = {op: _outbox(endpoint, op)[0]["payload"] for op in (
        "report_payment", "send_message", "request_monitoring", "refresh", "cancel")}
    assert _outbox(endpoint, "set_labels") == []
    assert payloads["report_payment"] == {"claim_id": cid, "amount": "20.50", "currency": "EUR",
                                          "date": (date.today() - timedelta(days=1)).isoformat()}
    # the row names the message; its text stays encrypted in messages until the dispatcher sends it
    assert payloads["send_message"] == {"claim_id": cid, "message_id": sent.message_id}
    assert payloads["request_monitoring"] == {"claim_id": cid}
    assert payloads["refresh"] == {"claim_id": cid}
    # the reason is sealed under the claim's key like its personal data, and opened when the request goes out
    assert set(payloads["cancel"]) == {"claim_id", "reason_sealed"} and "paid" not in json.dumps(payloads["cancel"])
    events = c.service.GetClaimHistory(cid)
    assert [e.kind for e in events][-6:] == ["payment_reported", "message_sent", "labels_set", "monitoring_requested",
                                             "refresh_requested", "cancel_requested"]
    assert json.loads(events[-1].data) == {"reason": "paid in full"}  # the client reads what it wrote
    assert [m.text for m in c.service.GetMessages(cid)] == ["Schuldner hat angerufen."]
    assert _items(c.service.GetClaim(cid).labels, "Label") == ["dispute", "vip"]


def test_cancel_before_handover_is_immediate_and_final(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = _items(submit(c, claim("R-1")).results, "ClaimResult")[0].claim_id
    r = c.service.CancelClaim(cid)
    assert (r.state, r.forwarded) == ("cancelled_by_client", False)
    assert _outbox(endpoint, "cancel") == []
    for call in (lambda: c.service.CancelClaim(cid), lambda: c.service.RefreshClaim(cid)):
        with pytest.raises(zeep.exceptions.Fault) as exc:
            call()
        assert exc.value.code.endswith("Client.IllegalTransition")


def test_before_handover_a_payment_in_full_closes_the_claim_and_a_message_is_forwarded(endpoint: Endpoint) -> None:
    c = endpoint.client()
    paid, asked = (_items(submit(c, claim(ref)).results, "ClaimResult")[0].claim_id for ref in ("R-1", "R-2"))
    first = c.service.ReportDirectPayment(paid, Decimal("100.00"), date.today())
    assert (first.state, first.forwarded) == ("queued", False)
    rest = c.service.ReportDirectPayment(paid, Decimal("20.50"), date.today())  # the two add up to 120.50
    assert (rest.state, rest.forwarded) == ("closed_paid", False)
    history = c.service.GetClaimHistory(paid)
    assert [(e.kind, e.state, e.actor) for e in history[-2:]] == [("payment_reported", "queued", "client"),
                                                                 ("paid_before_handover", "closed_paid", "client")]
    assert history[-2].event_id == rest.event_id
    sent = c.service.SendMessage(asked, "Schuldner hat angerufen.")
    assert (sent.state, sent.forwarded) == ("queued", True)  # it waits for the claim's receipt, then goes
    assert _outbox(endpoint, "report_payment") == [] and len(_outbox(endpoint, "send_message")) == 1


def test_payment_validation_and_unknown_claim_faults(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = _items(submit(c, claim("R-1")).results, "ClaimResult")[0].claim_id
    for amount, day in ((Decimal("-1"), date.today()), (Decimal("1.001"), date.today()),
                        (Decimal("5"), date.today() + timedelta(days=3))):
        with pytest.raises(zeep.exceptions.Fault) as exc:
            c.service.ReportDirectPayment(cid, amount, day)
        assert exc.value.code.endswith("Client.Validation")
    with pytest.raises(zeep.exceptions.Fault) as exc:
        c.service.GetClaim(999_999)
    assert exc.value.code.endswith("Client.UnknownClaim")
    with pytest.raises(zeep.exceptions.Fault) as exc:
        c.service.GetSubmission("S20990101-NOPE00")
    assert exc.value.code.endswith("Client.UnknownSubmission")

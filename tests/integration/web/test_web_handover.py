"""Handing over one claim with the console's form: the same rules as SOAP, errors at the fields, a document
stored encrypted as the claim's document, only for users with role submit and only for their own client."""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.services.claim_queries import get_claim
from gateway.store.schema import claim_events, documents, submissions
from tests.integration.web.conftest import Console, claim_ids

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def good(reference: str) -> dict[str, Any]:
    today = date.today()
    return {"reference": reference, "invoice_number": "INV-77", "amount": "1.234,50",
            "invoice_date": (today - timedelta(days=40)).isoformat(),
            "due_date": (today - timedelta(days=10)).isoformat(), "kind": "consumer", "first_name": "Greta",
            "last_name": "Formular", "birth_date": "1980-05-06", "street": "Lindenweg", "house_number": "7",
            "postal_code": "04109", "city": "Leipzig", "country": "DE", "email": "greta@example.org"}


def test_handover_stores_the_claim_with_its_document_encrypted(console: Console,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("anna")
    form = c.get("/claims/new").text
    assert 'accept="image/*,application/pdf"' in form and 'enctype="multipart/form-data"' in form
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-1")},
               files={"document": ("rechnung.pdf", PDF, "application/pdf")})
    assert r.status_code == 303, r.text
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    view = get_claim(console.app, "demo", cid)
    assert str(view.claim.principal_amount) == "1234.50" and view.claim.debtor.last_name == "Formular"
    assert view.claim.debtor.addresses[0].city == "Leipzig" and view.submission
    assert [(d["name"], d["media_type"], d["size"]) for d in view.documents] == [("rechnung.pdf", "application/pdf",
                                                                                  len(PDF))]
    with console.app.engine.connect() as conn:
        stored = conn.execute(select(documents.c.data).where(documents.c.claim_id == cid)).scalar_one()
    assert PDF not in bytes(stored)  # encrypted at rest
    assert "WEB-1" in c.get(r.headers["location"]).text
    again = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-1")},
                   files={"document": ("rechnung.pdf", PDF, "application/pdf")})
    assert again.status_code == 303 and again.headers["location"] == f"/claims/{cid}"  # same data: same claim
    other = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-1"), "amount": "5"})
    assert other.status_code == 422 and 'id="err-reference"' in other.text  # the reference is taken
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "web.handover" in logged
    assert not any(v in logged for v in ("Greta", "Formular", "Lindenweg", "greta@example.org", "1980-05-06"))


def test_handover_shows_the_rules_findings_at_the_fields(console: Console) -> None:
    c = console.client("anna")
    before = claim_ids(console.app, "demo")
    bad = {**good("WEB-2"), "amount": "0", "due_date": (date.today() + timedelta(days=400)).isoformat(),
           "last_name": "", "first_name": ""}
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **bad})
    assert r.status_code == 422
    invalid = set(re.findall(r'<span class="field-error" id="err-(\w+)">', r.text))
    assert {"amount", "due_date"} <= invalid, invalid
    assert 'value="WEB-2"' in r.text  # what was typed stays in the form
    exe = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-2")},
                 files={"document": ("x.exe", b"MZ...", "application/x-msdownload")})
    assert exe.status_code == 422 and 'id="err-document"' in exe.text
    assert claim_ids(console.app, "demo") == before  # nothing stored
    typo = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-3"),
                                       "invoice_date": "31.02.2025"})
    assert typo.status_code == 422 and 'id="err-invoice_date"' in typo.text


def test_handover_needs_submit_role_csrf_and_stays_in_the_own_client(console: Console) -> None:
    vera = console.client("vera")  # read only
    assert vera.get("/claims/new").status_code == 403
    assert vera.post("/claims/new", data={"csrf": console.csrf(vera, "/claims"), **good("WEB-4")}).status_code == 403
    anna = console.client("anna")
    assert anna.post("/claims/new", data={"csrf": "forged", **good("WEB-5")}).status_code == 403
    assert anna.post("/claims/new", data=good("WEB-5")).status_code == 403
    assert "WEB-4" not in claim_ids(console.app, "demo") and "WEB-5" not in claim_ids(console.app, "demo")
    ben = console.client("ben")
    r = ben.post("/claims/new", data={"csrf": console.csrf(ben, "/claims/new"), **good("WEB-6"),
                                      "client_id": "demo", "client": "demo"})
    assert r.status_code == 303
    assert "WEB-6" in claim_ids(console.app, "other") and "WEB-6" not in claim_ids(console.app, "demo")
    assert console.client("olga").get("/claims/new").status_code == 404  # the operator hands over nothing


def test_handover_takes_fees_interest_bank_account_and_several_documents_as_a_web_run(
        console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    c = console.client("anna")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    form = {**good("WEB-FULL"), "fee_dunning": "5,00", "fee_return_debit": "3,50", "interest_kind": "fixed",
            "interest_from": (date.today() - timedelta(days=10)).isoformat(), "interest_rate": "4,5",
            "iban": "de89 3704 0044 0532 0130 00", "bic": "cobadeffxxx"}
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **form},
               files=[("document", ("rechnung.pdf", PDF, "application/pdf")),
                      ("document", ("mahnung.png", png, "image/png"))])
    assert r.status_code == 303, r.text
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    claim = get_claim(console.app, "demo", cid)
    assert [(f.kind.value, str(f.amount)) for f in claim.claim.fees] == [("dunning", "5.00"), ("return_debit", "3.50")]
    assert claim.claim.interest is not None and claim.claim.interest.kind.value == "fixed"
    assert str(claim.claim.interest.rate) == "4.5"
    account = claim.claim.debtor.bank_accounts[0]
    assert (account.iban, account.bic) == ("DE89370400440532013000", "COBADEFFXXX")
    assert [(d["name"], d["kind"]) for d in claim.documents] == [("rechnung.pdf", "invoice"), ("mahnung.png", "other")]
    with console.app.engine.connect() as conn:
        channel = conn.execute(select(submissions.c.channel).where(submissions.c.reference == claim.submission)
                               ).scalar_one()
        first = conn.execute(select(claim_events.c.data).where(claim_events.c.claim_id == cid)
                             .order_by(claim_events.c.id).limit(1)).scalar_one()
    assert channel == "web" and '"channel": "web"' in first.replace('":"', '": "')
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "web.handover" in logged and not any(v in logged for v in ("DE89370400440532013000", "3704 0044",
                                                                       "COBADEFFXXX", "mahnung.png"))


def test_handover_findings_of_the_new_fields_are_shown_where_they_belong(console: Console) -> None:
    c = console.client("anna")
    bad = {**good("WEB-BAD"), "iban": "DE00123", "fee_dunning": "-2", "interest_kind": "fixed",
           "interest_from": date.today().isoformat()}
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **bad})
    assert r.status_code == 422
    invalid = set(re.findall(r'<span class="field-error" id="err-(\w+)">', r.text))
    assert {"iban", "fees", "interest_rate"} <= invalid, invalid  # a fixed rate needs its rate
    assert 'value="DE00123"' in r.text
    no_start = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-BAD"),
                                           "interest_kind": "statutory_b2c"})
    assert no_start.status_code == 422 and 'id="err-interest_from"' in no_start.text
    assert "WEB-BAD" not in claim_ids(console.app, "demo")


def test_handover_attaches_labels_of_the_clients_catalogue(console: Console) -> None:
    c = console.client("anna")
    c.post("/labels", data={"csrf": console.csrf(c, "/labels"), "name": "Eilig", "colour": "orange"})
    form = c.get("/claims/new").text
    assert 'name="labels" value="Eilig"' in form and 'class="label lb-orange">Eilig' in form
    r = c.post("/claims/new", data={"csrf": console.csrf(c, "/claims/new"), **good("WEB-LBL"),
                                    "labels": ["Eilig", "Fremd"]})  # only the catalogue's labels are taken
    assert r.status_code == 303, r.text
    assert get_claim(console.app, "demo", int(r.headers["location"].rsplit("/", 1)[1])).labels == ["Eilig"]
    assert 'value="Eilig"' not in console.client("ben").get("/claims/new").text  # another client's catalogue

"""The two fronts people and ERP systems use, attacked from outside: the SOAP endpoint (zeep and raw posts over
HTTPS on loopback) and the web console (Starlette's TestClient).

What a failed login leaves in the log, one client acting on another's claims through every SOAP operation,
Unicode-equivalent text (NFC and NFD) as the same data on every channel of the fronts, and client-supplied
markup in every page that shows it.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
import zeep

from gateway.entrypoints.web.app import SESSION_COOKIE
from gateway.services.claim_queries import get_claim
from gateway.services.dispatch import Dispatcher
from tests.integration.soap.conftest import Endpoint, claim, endpoint, soap_app, submit  # noqa: F401
from tests.integration.web.conftest import Console, claim_ids, console, stored  # noqa: F401

NFC, NFD = unicodedata.normalize("NFC", "Zzplantedmüller"), unicodedata.normalize("NFD", "Zzplantedmüller")
IBAN = "DE89370400440532013000"
MARKUP = '<img src=x onerror=alert(1)>'


def fault_code(call: Any) -> str:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call()
    return str(caught.value.code).split(":")[-1]


# --- SOAP --------------------------------------------------------------------------------------------------


def test_a_failed_soap_login_names_only_configured_logins_in_the_log(endpoint: Endpoint,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # An ERP whose settings have user and password swapped sends its password as the username.
    caplog.set_level(logging.DEBUG)
    swapped = endpoint.session("demo password 1234", "demo-erp")
    r = swapped.post(endpoint.url, data=b"<x/>", headers={"Content-Type": "text/xml"})
    assert r.status_code == 401 and "Client.Authentication" in r.text
    wrong = endpoint.session("demo-erp", "Zzplanted-secret-99")
    assert wrong.post(endpoint.url, data=b"<x/>", headers={"Content-Type": "text/xml"}).status_code == 401
    failures = [m for m in caplog.messages if m.startswith("soap.auth_failed")]
    assert len(failures) == 2, failures
    assert "user=(unknown)" in failures[0] and "user=demo-erp" in failures[1]  # a known login is still named
    assert "demo password 1234" not in caplog.text and "Zzplanted-secret-99" not in caplog.text


def test_another_clients_claim_is_unknown_to_every_soap_operation(endpoint: Endpoint) -> None:
    own = endpoint.client()
    r = submit(own, claim("ISO-1"), release=False)
    cid, run = r.results.ClaimResult[0].claim_id, r.submission
    other = endpoint.client("other-erp")
    s = other.service
    unknown = "UnknownClaim"
    calls = {
        "GetClaim": (lambda: s.GetClaim(cid), unknown),
        "GetClaimByReference": (lambda: s.GetClaimByReference("ISO-1"), unknown),
        "GetClaimHistory": (lambda: s.GetClaimHistory(cid), unknown),
        "ExplainClaim": (lambda: s.ExplainClaim(cid), unknown),
        "GetMessages": (lambda: s.GetMessages(cid), unknown),
        "CancelClaim": (lambda: s.CancelClaim(cid, "x"), unknown),
        "ReportDirectPayment": (lambda: s.ReportDirectPayment(cid, "1.00", "2025-04-01"), unknown),
        "SendMessage": (lambda: s.SendMessage(cid, "x"), unknown),
        "RefreshClaim": (lambda: s.RefreshClaim(cid), unknown),
        "RequestLongTermMonitoring": (lambda: s.RequestLongTermMonitoring(cid), unknown),
        "SetLabels": (lambda: s.SetLabels(cid, {"Label": ["x"]}), unknown),
        "ReleaseClaims (ids)": (lambda: s.ReleaseClaims(claim_ids={"long": [cid]}), unknown),
        "ReleaseClaims (run)": (lambda: s.ReleaseClaims(submission=run), "UnknownSubmission"),
        "GetSubmission": (lambda: s.GetSubmission(run), "UnknownSubmission"),
    }
    for name, (call, code) in calls.items():
        assert fault_code(call) == f"Client.{code}", name
    statuses = s.GetClaimStatuses({"Reference": ["ISO-1"]})
    assert [x.found for x in statuses] == [False]
    assert s.MarkSeen(claim_ids={"long": [cid]}) == 0
    assert s.ListClaims().total == 0 and not s.GetChanges().events
    assert get_claim(endpoint.app, "demo", cid).state == "held"  # nothing happened to it


def test_a_resend_in_the_other_unicode_form_is_the_same_claim(endpoint: Endpoint) -> None:
    c = endpoint.client()

    def debtor(last: str) -> dict[str, Any]:
        return {"first_name": "Jürgen", "last_name": last, "birth_date": "1980-05-17",
                "addresses": {"Address": [{"street": "Hauptstraße 12", "postal_code": "50667", "city": "Köln"}]}}
    first = submit(c, claim("NF-1", debtor=debtor(NFC))).results.ClaimResult[0]
    assert first.outcome == "accepted"
    again = submit(c, claim("NF-1", debtor=debtor(NFD))).results.ClaimResult[0]
    assert (again.outcome, again.claim_id, again.existing) == ("accepted", first.claim_id, True), again
    # a decomposed name and reference are stored composed, and found by either form
    made = submit(c, claim(unicodedata.normalize("NFD", "NF-Ü"), debtor=debtor(NFD))).results.ClaimResult[0]
    assert made.outcome == "accepted"
    stored_claim = c.service.GetClaim(made.claim_id).claim
    assert stored_claim.debtor.last_name == NFC and stored_claim.creditor_reference == "NF-Ü"
    assert c.service.GetClaimByReference(unicodedata.normalize("NFD", "NF-Ü")).claim_id == made.claim_id
    found = c.service.GetClaimStatuses({"Reference": [unicodedata.normalize("NFD", "NF-Ü")]})
    assert [x.found for x in found] == [True]


def test_partners_that_cannot_take_instructions_refuse_them_at_once(endpoint: Endpoint) -> None:
    app = endpoint.app
    app.config.partners["demo-agency"].capabilities = ["deliver", "status_pull"]
    c = endpoint.client()
    r = submit(c, *(claim(f"CAP-{i}") for i in range(3)))
    ids = [x.claim_id for x in r.results.ClaimResult]
    Dispatcher(app, owner="t").drain()
    assert {get_claim(app, "demo", i).state for i in ids} == {"handed_over"}
    s = c.service
    for call in (lambda: s.CancelClaim(ids[0], "x"), lambda: s.ReportDirectPayment(ids[1], "1.00", "2025-04-01"),
                 lambda: s.SendMessage(ids[2], "x"), lambda: s.RefreshClaim(ids[0]),
                 lambda: s.RequestLongTermMonitoring(ids[0])):
        assert fault_code(call) == "Client.Unsupported"
    for i in ids:  # nothing recorded: no event after the handover, no message
        assert [e.kind for e in s.GetClaimHistory(i)][-1] != "cancel_requested"
        assert not s.GetMessages(i)
    assert {get_claim(app, "demo", i).state for i in ids} == {"handed_over"}


# --- web console ---------------------------------------------------------------------------------------------


@pytest.fixture
def anna(console: Console) -> Iterator[Any]:
    yield console.client("anna")


def test_a_handed_over_form_and_a_search_in_decomposed_unicode_are_the_composed_name(console: Console,
                                                                                      anna: Any) -> None:
    token = console.csrf(anna, "/claims/new")
    form = {"csrf": token, "reference": "WEB-NFD-1", "amount": "10,00", "invoice_date": "2025-03-01",
            "due_date": "2025-03-15", "kind": "consumer", "first_name": "Jürgen", "last_name": NFD,
            "birth_date": "1980-05-17", "street": "Hauptstraße 12", "postal_code": "50667", "city": "Köln",
            "country": "DE"}
    r = anna.post("/claims/new", data=form)
    assert r.status_code == 303, r.text
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    assert get_claim(console.app, "demo", cid).claim.debtor.last_name == NFC
    # the search typed decomposed finds it (the name's blind index is of the composed form)
    anna.post("/claims/search", data={"csrf": token, "q": f"Jürgen {NFD}"})
    assert "WEB-NFD-1" in anna.get("/claims").text


def test_client_supplied_markup_is_text_on_every_page_that_shows_it(console: Console, anna: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = console.csrf(anna, "/upload")
    header = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;"
              "Telefon;IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung;" + MARKUP)
    good = (f"XSS-1{MARKUP};K-1;Herr;Zzplantedname{MARKUP};Becker{MARKUP};;14.03.1978;Weg{MARKUP};1;50667;Köln;DE;"
            f"a@example.de;;{IBAN};15.01.2025;29.01.2025;12,00;;;memo{MARKUP};x")
    bad = (f"XSS-2;K-2;Herr;Zzplantedname;Becker;;14.03.1978;Weg;1;50667;Köln;DE;a@example.de;;DE00{MARKUP};"
           f"15.01.2025;29.01.2025;zwölf{MARKUP};;;m;x")
    data = "\n".join([header, good, bad, ""]).encode("cp1252")
    ack = anna.post("/upload", data={"csrf": token}, files={"file": (f"f{MARKUP}.csv", data, "text/csv")})
    assert ack.status_code == 200
    anna.post("/labels", data={"csrf": token, "name": f"L{MARKUP}", "colour": "red"})
    cid = claim_ids(console.app, "demo")[f"XSS-1{MARKUP}"]
    anna.post(f"/claims/{cid}/message", data={"csrf": token, "text": f"m{MARKUP}"})
    anna.post(f"/claims/{cid}/labels", data={"csrf": token, "add": f"L{MARKUP}"})
    operator = console.client("olga")
    pages = {"ack": ack.text, "claim": anna.get(f"/claims/{cid}").text, "list": anna.get("/claims").text,
             "labels": anna.get("/labels").text, "operator claim": operator.get(f"/operator/claims/{cid}").text,
             "operator list": operator.get("/operator/claims").text}
    for name, html in pages.items():
        assert "<img" not in html and "&lt;img" in html, name
    assert "Zzplantedname" not in caplog.text and IBAN not in caplog.text


def test_web_search_texts_never_reach_a_url_or_the_cookie(console: Console, anna: Any) -> None:
    token = console.csrf(anna, "/claims")
    r = anna.post("/claims/search", data={"csrf": token, "q": "Zzplantedname"})
    assert "Zzplantedname" not in r.headers["location"]
    cookie = anna.cookies[SESSION_COOKIE]
    import base64
    payload = cookie.split(".")[0]
    decoded = base64.b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8", "replace")
    assert "Zzplantedname" not in decoded
    assert not re.search(r"Zzplantedname", anna.get("/claims").headers.get("location", ""))

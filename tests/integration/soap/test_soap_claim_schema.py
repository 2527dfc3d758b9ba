"""A claim that breaks the WSDL's facets is rejected alone (code, field, index); the others are processed.

Through zeep (which sends what it is given) and as raw envelopes, like an ERP that builds its XML by hand.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import zeep

from tests.integration.soap.conftest import Endpoint, claim, submit

NS = "urn:inkasso-gateway:soap:v1"
ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/" xmlns:gw="{NS}"><soap:Body>{{body}}</soap:Body></soap:Envelope>')
PLANTED = "Zacharias-Quelltopf"  # a debtor value that must not come back in any message


def _debtor(**changes: Any) -> dict[str, Any]:
    return {**claim()["debtor"], **changes}


# position (1-based) -> (claim changes, code, field)
BROKEN: dict[int, tuple[dict[str, Any], str, str]] = {
    3: ({"debtor": _debtor(last_name=PLANTED + "x" * 90)}, "too_long", "debtor.last_name"),
    17: ({"debtor": _debtor(addresses={"Address": [{"street": "Ring 1", "postal_code": "50667", "city": "Köln",
                                                     "country": "DEU"}]})}, "too_long", "debtor.addresses[0].country"),
    29: ({"debtor": _debtor(salutation="Herr")}, "invalid_value", "debtor.salutation"),
    41: ({"invoice_date": "01.03.2025"}, "invalid_date", "invoice_date"),
    58: ({"principal_amount": "120,50"}, "invalid_amount", "principal_amount"),
    73: ({"claim_type": "ware"}, "invalid_value", "claim_type"),
    99: ({"debtor": _debtor(birth_date="17.05.1980")}, "invalid_date", "debtor.birth_date"),
}


def _items(value: Any, name: str) -> list[Any]:
    return list(getattr(value, name)) if value is not None else []


def test_a_hundred_claims_with_seven_schema_violations_answer_93_accepted_and_7_rejected(
        endpoint: Endpoint) -> None:
    c = endpoint.client()
    claims = [claim(f"S-{i}", **(BROKEN[i][0] if i in BROKEN else {})) for i in range(1, 101)]
    r = submit(c, *claims)
    assert (r.accepted, r.held, r.rejected, r.status) == (93, 0, 7, "completed_with_errors")
    results = _items(r.results, "ClaimResult")
    assert [x.index for x in results] == list(range(1, 101))
    for x in results:
        if x.index not in BROKEN:
            assert (x.outcome, x.creditor_reference) == ("accepted", f"S-{x.index}")
            continue
        _, code, field = BROKEN[x.index]
        assert (x.outcome, x.creditor_reference, x.claim_id) == ("rejected", f"S-{x.index}", None)
        (f,) = _items(x.findings, "Finding")
        assert (f.code, f.field, f.severity) == (code, field, "error")
        assert PLANTED not in f.message and "b'" not in f.message and "SCHEMAV" not in f.message
    # the submission records them too, under the same index
    info = c.service.GetSubmission(r.submission)
    assert (info.claims, info.accepted, info.rejected) == (100, 93, 7)
    assert sorted((f.index, f.code, f.field) for f in _items(info.findings, "SubmissionFinding")) == sorted(
        (i, code, field) for i, (_, code, field) in BROKEN.items())
    assert c.service.ListClaims({"text": "S-58"}).total == 0 and c.service.ListClaims({"text": "S-57"}).total == 1
    # the planted debtor name of the rejected claim is nowhere in the clear: not in stored findings, not in the
    # database file or its WAL (the raw request is kept encrypted)
    with endpoint.app.engine.connect() as conn:
        stored = [str(r) for q in ("SELECT message FROM submission_findings", "SELECT field FROM submission_findings")
                  for (r,) in conn.exec_driver_sql(q)]
    assert len(stored) == 14 and not [x for x in stored if PLANTED in x]
    if endpoint.app.engine.dialect.name == "sqlite":
        database = Path(str(endpoint.app.engine.url.database))
        for path in database.parent.glob(database.name + "*"):
            assert PLANTED.encode() not in path.read_bytes(), path


def _claim_xml(ref: str, inner: str = "", debtor: str = "<gw:last_name>Müller</gw:last_name>",
               amount: str = "<gw:principal_amount>10.00</gw:principal_amount>") -> str:
    return (f"<gw:ClaimInput><gw:creditor_reference>{ref}</gw:creditor_reference>{amount}"
            f"<gw:debtor><gw:first_name>Jürgen</gw:first_name>{debtor}<gw:birth_date>1980-05-17</gw:birth_date>"
            "<gw:emails><gw:Email>j@example.org</gw:Email></gw:emails></gw:debtor>"
            f"{inner}</gw:ClaimInput>")


def _post(endpoint: Endpoint, body: str) -> Any:
    return endpoint.session().post(endpoint.url, data=ENVELOPE.format(body=body).encode(),
                                   headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)


def test_raw_envelope_rejects_missing_unknown_and_misordered_elements_per_claim(
        endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    claims = [
        _claim_xml("RAW-1"),
        _claim_xml("RAW-2", amount=""),  # principal_amount missing
        _claim_xml("RAW-3", inner="<gw:colour>blue</gw:colour>"),  # not in the WSDL
        _claim_xml("RAW-4", inner="<gw:due_date>2025-03-15</gw:due_date><gw:invoice_date>2025-03-01</gw:invoice_date>"),
        _claim_xml("RAW-5", debtor=f"<gw:last_name>{PLANTED}</gw:last_name><gw:salutation>Frau</gw:salutation>"),
        _claim_xml("RAW-6"),
    ]
    r = _post(endpoint, f"<gw:SubmitClaims><gw:claims>{''.join(claims)}</gw:claims></gw:SubmitClaims>")
    assert r.status_code == 200, r.text
    assert PLANTED not in r.text
    doc = zeep.loader.parse_xml(r.content, None)
    results = doc.findall(f".//{{{NS}}}ClaimResult")
    got = [(x.findtext(f"{{{NS}}}index"), x.findtext(f"{{{NS}}}outcome"), x.findtext(f".//{{{NS}}}code"),
            x.findtext(f".//{{{NS}}}field")) for x in results]
    assert got == [("1", "accepted", None, None), ("2", "rejected", "missing_field", "principal_amount"),
                   ("3", "rejected", "unexpected_element", "colour"),
                   ("4", "rejected", "unexpected_element", "invoice_date"),
                   ("5", "rejected", "unexpected_element", "debtor.salutation"), ("6", "accepted", None, None)]
    assert "out of the WSDL's order" in results[3].findtext(f".//{{{NS}}}message")
    assert PLANTED not in caplog.text  # planted debtor value: not in any log line, at any level


def test_all_claims_broken_is_a_rejected_submission_not_a_fault(endpoint: Endpoint) -> None:
    body = _claim_xml("ALL-1", amount="<gw:principal_amount>x</gw:principal_amount>")
    r = _post(endpoint, f"<gw:SubmitClaims><gw:claims>{body}</gw:claims></gw:SubmitClaims>")
    assert r.status_code == 200, r.text
    assert "<tns:rejected>1</tns:rejected>" in r.text and "<tns:accepted>0</tns:accepted>" in r.text


@pytest.mark.parametrize(("body", "said"), [
    # outside the claims: the request itself does not fit, a fault in a plain sentence
    ("<gw:SubmitClaims><gw:claims>{claim}</gw:claims><gw:release>maybe</gw:release></gw:SubmitClaims>",
     "the request does not fit the WSDL's schema: SubmitClaims.release must be true or false (line 1)"),
    ("<gw:GetClaim><gw:claim_id>abc</gw:claim_id></gw:GetClaim>",
     "the request does not fit the WSDL's schema: GetClaim.claim_id must be a whole number (line 1)"),
    ("<gw:GetSubmission><gw:reference>{long}</gw:reference></gw:GetSubmission>",
     "the request does not fit the WSDL's schema: GetSubmission.reference is longer than 32 characters (line 1)"),
])
def test_schema_faults_outside_the_claims_are_plain_sentences(endpoint: Endpoint, body: str, said: str) -> None:
    r = _post(endpoint, body.format(claim=_claim_xml("F-1"), long="S" * 40))
    assert r.status_code == 500
    assert "Client.Validation" in r.text and said in r.text, r.text
    assert "b&quot;" not in r.text and "b'" not in r.text and "SCHEMAV" not in r.text


def test_a_nil_claim_is_rejected_alone(endpoint: Endpoint) -> None:
    nil = '<gw:ClaimInput xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>'
    r = _post(endpoint, f"<gw:SubmitClaims><gw:claims>{_claim_xml('NIL-1')}{nil}</gw:claims></gw:SubmitClaims>")
    assert r.status_code == 200, r.text
    assert "<tns:accepted>1</tns:accepted>" in r.text and "<tns:rejected>1</tns:rejected>" in r.text
    assert "the claim is empty (xsi:nil)" in r.text


def test_unknown_element_names_are_cut_and_cleaned(endpoint: Endpoint) -> None:
    odd = "Zacharias" + "Q" * 200
    body = _claim_xml("ODD-1", inner=f"<gw:{odd}>x</gw:{odd}>")
    r = _post(endpoint, f"<gw:SubmitClaims><gw:claims>{body}</gw:claims></gw:SubmitClaims>")
    assert r.status_code == 200 and "<tns:code>unexpected_element</tns:code>" in r.text
    assert "Q" * 100 not in r.text

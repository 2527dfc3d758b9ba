"""The SOAP endpoint as an ERP and an attacker meet it: raw envelopes, credentials, isolation, hostile XML."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import zeep
from lxml import etree

from gateway.entrypoints.soap.wsdl import normalize
from gateway.store.db import read_tx
from tests.conftest import ROOT
from tests.integration.soap.conftest import PASSWORDS, Endpoint, claim, submit

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "urn:inkasso-gateway:soap:v1"

# What an ERP's own SOAP stack sends: its own prefixes, line breaks and indentation, only required elements.
ERP_ENVELOPE = """<?xml version="1.0" encoding="utf-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
                   xmlns:gw="urn:inkasso-gateway:soap:v1">
  <SOAP-ENV:Header/>
  <SOAP-ENV:Body>
    <gw:SubmitClaims>
      <gw:claims>
        <gw:ClaimInput>
          <gw:creditor_reference>  SAP-4711  </gw:creditor_reference>
          <gw:principal_amount>99.90</gw:principal_amount>
          <gw:debtor>
            <gw:kind>business</gw:kind>
            <gw:company>Muster GmbH</gw:company>
            <gw:emails><gw:Email>buchhaltung@muster.example</gw:Email></gw:emails>
          </gw:debtor>
        </gw:ClaimInput>
      </gw:claims>
    </gw:SubmitClaims>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

WSSE_ENVELOPE = """<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
 <s:Header>
  <wsse:Security s:mustUnderstand="1"
      xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">
   <wsse:UsernameToken>
    <wsse:Username>{user}</wsse:Username>
    <wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">{password}</wsse:Password>
   </wsse:UsernameToken>
  </wsse:Security>
 </s:Header>
 <s:Body><GetChanges xmlns="urn:inkasso-gateway:soap:v1"/></s:Body>
</s:Envelope>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
<SendMessage xmlns="urn:inkasso-gateway:soap:v1"><claim_id>1</claim_id><text>&lol4;</text></SendMessage>
</s:Body></s:Envelope>"""


def _post(endpoint: Endpoint, body: bytes | str, session: requests.Session | None = None,
          **headers: str) -> requests.Response:
    s = session or endpoint.session()
    data = body.encode() if isinstance(body, str) else body
    return s.post(endpoint.url, data=data, headers={"Content-Type": "text/xml; charset=utf-8", **headers},
                  timeout=30)


def _fault_code(response: requests.Response) -> str:
    root = etree.fromstring(response.content)
    return str(root.findtext(f"{{{SOAP}}}Body/{{{SOAP}}}Fault/faultcode"))


def test_hand_written_erp_envelope_over_plain_https(endpoint: Endpoint) -> None:
    r = _post(endpoint, ERP_ENVELOPE, SOAPAction='"SubmitClaims"')
    assert r.status_code == 200, r.text
    root = etree.fromstring(r.content)
    result = root.find(f".//{{{TNS}}}SubmitClaimsResult")
    assert result is not None
    assert result.findtext(f"{{{TNS}}}accepted") == "1"
    (item,) = result.iterfind(f"{{{TNS}}}results/{{{TNS}}}ClaimResult")
    assert item.findtext(f"{{{TNS}}}outcome") == "accepted"
    assert item.findtext(f"{{{TNS}}}creditor_reference") == "SAP-4711"  # padding trimmed
    cid = int(item.findtext(f"{{{TNS}}}claim_id") or 0)
    assert endpoint.client().service.GetClaim(cid).claim.debtor.company == "Muster GmbH"


def test_ws_security_username_token(endpoint: Endpoint) -> None:
    ok = _post(endpoint, WSSE_ENVELOPE.format(user="demo-erp", password=PASSWORDS["demo-erp"]),
               session=endpoint.session(user=None))
    assert ok.status_code == 200 and b"GetChangesResponse" in ok.content
    bad = _post(endpoint, WSSE_ENVELOPE.format(user="demo-erp", password="wrong"), session=endpoint.session(None))
    assert bad.status_code == 401 and _fault_code(bad) == "soap11env:Client.Authentication"


def test_wrong_password_and_no_credentials_are_refused(endpoint: Endpoint) -> None:
    with pytest.raises(zeep.exceptions.Fault) as exc:
        endpoint.client(password="not the password").service.GetChanges(0)
    assert exc.value.code == "soap11env:Client.Authentication"
    anonymous = _post(endpoint, ERP_ENVELOPE, session=endpoint.session(user=None))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert _fault_code(anonymous) == "soap11env:Client.Authentication"
    unknown = _post(endpoint, ERP_ENVELOPE, session=endpoint.session("nobody", "whatever password"))
    assert unknown.status_code == 401
    with read_tx(endpoint.app.engine) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM claims").scalar_one() == 0


def test_a_client_never_sees_or_changes_another_clients_claims(endpoint: Endpoint) -> None:
    demo, other = endpoint.client(), endpoint.client("other-erp")
    r = submit(demo, claim("R-1"), release=False)
    cid = r.results.ClaimResult[0].claim_id
    for call in (lambda: other.service.GetClaim(cid), lambda: other.service.GetClaimHistory(cid),
                 lambda: other.service.ExplainClaim(cid), lambda: other.service.CancelClaim(cid),
                 lambda: other.service.SendMessage(cid, "hi"), lambda: other.service.GetMessages(cid),
                 lambda: other.service.SetLabels(cid, {"Label": ["x"]}),
                 lambda: other.service.ReleaseClaims(claim_ids={"long": [cid]})):
        with pytest.raises(zeep.exceptions.Fault) as exc:
            call()
        assert exc.value.code == "soap11env:Client.UnknownClaim"
        assert exc.value.message == f"no claim {cid}"  # the same answer as for an id that does not exist
    with pytest.raises(zeep.exceptions.Fault) as exc:
        other.service.GetSubmission(r.submission)
    assert exc.value.code == "soap11env:Client.UnknownSubmission"
    assert other.service.ListClaims().total == 0 and other.service.GetChanges(0).events is None
    assert [e.kind for e in demo.service.GetClaimHistory(cid)] == ["intake"]  # nothing changed
    # the same reference is per client: the other client gets its own claim
    mine = submit(other, claim("R-1")).results.ClaimResult[0]
    assert mine.existing is False and mine.claim_id != cid


def test_read_only_client_may_read_but_not_submit(endpoint: Endpoint) -> None:
    viewer = endpoint.client("viewer")
    with pytest.raises(zeep.exceptions.Fault) as exc:
        submit(viewer, claim("R-1"))
    assert exc.value.code == "soap11env:Client.Authorization"
    assert viewer.service.ListClaims().total == 0


def test_oversized_request_is_refused_before_parsing(endpoint: Endpoint) -> None:
    big = ERP_ENVELOPE.replace("Muster GmbH", "M" * 300_000)
    r = _post(endpoint, big)
    assert r.status_code == 413 and _fault_code(r) == "soap11env:Client.TooLarge"

    def chunks():  # no Content-Length: the gate counts what it reads
        for _ in range(40):
            yield b" " * 8192
        yield ERP_ENVELOPE.encode()
    chunked = endpoint.session().post(endpoint.url, data=chunks(), headers={"Content-Type": "text/xml"}, timeout=30)
    assert chunked.status_code == 413
    assert _post(endpoint, ERP_ENVELOPE).status_code == 200  # the server is fine afterwards


@pytest.mark.parametrize("body", [
    BILLION_LAUGHS,
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<GetClaim xmlns="urn:inkasso-gateway:soap:v1"><claim_id>&xxe;</claim_id></GetClaim></s:Body></s:Envelope>',
    ERP_ENVELOPE.replace('encoding="utf-8"', 'encoding="UTF-7"'),
    ERP_ENVELOPE.encode("utf-16"),
], ids=["billion-laughs", "xxe", "utf-7", "utf-16"])
def test_hostile_xml_is_refused(endpoint: Endpoint, body: str | bytes) -> None:
    r = _post(endpoint, body)
    assert r.status_code == 500 and _fault_code(r) == "soap11env:Client.Validation"
    assert b"/bin/" not in r.content
    with read_tx(endpoint.app.engine) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM claim_events").scalar_one() == 0


def test_schema_violation_is_a_validation_fault(endpoint: Endpoint) -> None:
    # inside a claim it rejects that claim (test_soap_claim_schema.py); elsewhere the request is refused
    r = _post(endpoint, ERP_ENVELOPE.replace("<gw:principal_amount>99.90", "<gw:principal_amount>lots"))
    assert r.status_code == 200 and b"<tns:code>invalid_amount</tns:code>" in r.content
    r = _post(endpoint, ERP_ENVELOPE.replace("</gw:claims>", "</gw:claims><gw:release>lots</gw:release>"))
    assert r.status_code == 500 and _fault_code(r) == "soap11env:Client.Validation"


def test_sixteen_concurrent_clients(endpoint: Endpoint) -> None:
    def work(i: int) -> tuple[list[int], int]:
        c = endpoint.client()
        own = submit(c, *(claim(f"C{i}-{n}") for n in range(5)))
        shared = submit(c, claim("SHARED"))  # all 16 race for the same reference
        ids = [x.claim_id for x in own.results.ClaimResult]
        assert c.service.GetClaim(ids[0]).claim.creditor_reference == f"C{i}-0"
        return ids, shared.results.ClaimResult[0].claim_id

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(16)))
    own_ids = [cid for ids, _ in results for cid in ids]
    assert len(set(own_ids)) == 80
    assert len({shared for _, shared in results}) == 1  # one claim, every caller answered with it
    with read_tx(endpoint.app.engine) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM claims").scalar_one() == 81


def test_served_wsdl_matches_the_committed_contract(endpoint: Endpoint) -> None:
    served = endpoint.session(user=None).get(endpoint.url + "?wsdl", timeout=30)
    assert served.status_code == 200
    committed = Path(ROOT / "schemas" / "gateway-soap-v1.wsdl").read_text()
    assert normalize(served.content) == committed, (
        "the served WSDL drifted from schemas/gateway-soap-v1.wsdl: if the change is intended, run "
        "python -m gateway.entrypoints.soap.wsdl > schemas/gateway-soap-v1.wsdl")
    assert 'targetNamespace="urn:inkasso-gateway:soap:v1"' in committed


def test_basic_header_parsing_rejects_garbage(endpoint: Endpoint) -> None:
    s = endpoint.session(user=None)
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer abc"):
        r = _post(endpoint, ERP_ENVELOPE, session=s, Authorization=header)
        assert r.status_code == 401

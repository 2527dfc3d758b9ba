"""The v2 contract at /soap/v2: zeep against the served WSDL, a lint of the WSDL, and a generated Java client.

v1 is untouched by it (its own tests run against /soap and the committed v1 WSDL).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree
from zeep.transports import Transport

from gateway.domain import findings as domain_findings
from gateway.domain.lifecycle import State
from gateway.entrypoints.soap.v2 import TNS_V2
from gateway.entrypoints.soap.wsdl import ADDRESS, generate, normalize
from tests.integration.soap.conftest import Endpoint

ROOT = Path(__file__).resolve().parents[3]
XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
NS = {"xs": XS, "wsdl": WSDL}


def _client(endpoint: Endpoint, user: str = "demo-erp") -> zeep.Client:
    return zeep.Client(endpoint.url + "/v2?wsdl", transport=Transport(session=endpoint.session(user)))


def _claim(ref: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "creditor_reference": ref, "principal_amount": Decimal("120.50"), "invoice_number": f"INV-{ref}",
        "debtor": {"salutation": "mr", "first_name": "Jürgen", "last_name": "Müller", "birth_date": "1980-05-17",
                   "addresses": {"Address": [{"street": "Hauptstraße 12", "postal_code": "50667", "city": "Köln"}]},
                   "emails": {"Email": ["j.mueller@example.org"]}},
    }
    doc.update(changes)
    return doc


def test_v2_through_zeep_typed_answers(endpoint: Endpoint) -> None:
    c = _client(endpoint)
    assert c.wsdl.types.prefix_map.get("ns0") == TNS_V2
    r = c.service.SubmitClaims(claims={"ClaimInput": [_claim("V2-1"), _claim("V2-2", claim_type="ware")]})
    ok, bad = r.results.ClaimResult
    assert (ok.outcome, ok.state, bad.outcome) == ("accepted", "queued", "rejected")
    assert [(f.code, f.field) for f in bad.findings.Finding] == [("invalid_value", "claim_type")]
    info = c.service.GetClaim(ok.claim_id)
    assert (info.state, info.account.open, info.claim.debtor.salutation) == ("queued", Decimal("120.50"), "mr")
    (event,) = c.service.GetClaimHistory(ok.claim_id)
    assert (event.kind, event.change, event.data.channel, event.data.submission) == (
        "intake", "state_change", "soap", r.submission)  # typed, not a JSON string
    feed = c.service.GetChanges(from_now=True)
    assert feed.next_cursor == event.event_id and feed.events is None
    (status,) = c.service.GetClaimStatuses({"Reference": ["V2-1"]})
    assert (status.found, status.claim_id, status.state) == (True, ok.claim_id, "queued")
    assert c.service.GetClaimByReference("V2-1").claim_id == ok.claim_id
    with pytest.raises(zeep.exceptions.Fault) as exc:
        c.service.GetClaim(424242)
    (detail,) = exc.value.detail
    assert detail.tag == f"{{{TNS_V2}}}GatewayFault" and detail.findtext(f"{{{TNS_V2}}}code") == "unknown_claim"
    # v1 answers the same claim as before, in its own namespace
    assert endpoint.client().service.GetClaim(ok.claim_id).claim.creditor_reference == "V2-1"


def test_v2_gate_faults_name_the_v2_namespace(endpoint: Endpoint) -> None:
    r = endpoint.session(user="demo-erp", password="wrong").post(
        endpoint.url + "/v2", data=b"<x/>", headers={"Content-Type": "text/xml"}, timeout=30)
    assert r.status_code == 401
    assert etree.fromstring(r.content).find(f".//detail/{{{TNS_V2}}}GatewayFault") is not None
    assert endpoint.session().get(endpoint.url + "/v3?wsdl", timeout=30).status_code == 404


def test_served_v2_wsdl_matches_the_committed_contract(endpoint: Endpoint) -> None:
    served = endpoint.session(user=None).get(endpoint.url + "/v2?wsdl", timeout=30)
    assert served.status_code == 200
    assert f'location="{endpoint.url}/v2"' in served.text or "/soap/v2" in served.text
    committed = (ROOT / "schemas" / "gateway-soap-v2.wsdl").read_text()
    assert normalize(served.content, ADDRESS + "/v2") == committed, (
        "the served v2 WSDL drifted from schemas/gateway-soap-v2.wsdl: if intended, run "
        "python -m gateway.entrypoints.soap.wsdl v2 > schemas/gateway-soap-v2.wsdl")


def test_v2_wsdl_lint_no_nillable_optionals_enums_and_declared_faults() -> None:
    doc = etree.fromstring(generate("v2").encode())
    assert doc.get("targetNamespace") == TNS_V2
    assert doc.xpath("//xs:element[@nillable]", namespaces=NS) == []
    enums = {t.get("name"): t.xpath(".//xs:enumeration/@value", namespaces=NS)
             for t in doc.xpath("//xs:simpleType[xs:restriction/xs:enumeration]", namespaces=NS)}
    assert enums["ClaimState"] == [s.value for s in State]
    domain = {v for k, v in vars(domain_findings).items() if k.isupper() and isinstance(v, str)}
    assert domain <= set(enums["FindingCode"])  # extensible: a code added to the domain is in the WSDL
    for name in ("Outcome", "Severity", "ChangeKind", "Salutation", "FaultCode", "Stage", "DebtorKind"):
        assert enums.get(name), name
    fields = {(t.get("name"), e.get("name")): e.get("type")
              for t in doc.xpath("//xs:complexType", namespaces=NS) for e in t.xpath(".//xs:element", namespaces=NS)}
    assert fields[("Event", "data")] == "tns:EventData" and fields[("Event", "state")] == "tns:ClaimState"
    assert fields[("Finding", "code")] == "tns:FindingCode" and fields[("Debtor", "salutation")] == "tns:Salutation"
    assert fields[("ClaimInfo", "account")] == "tns:CaseAccount"
    operations = doc.findall(f"{{{WSDL}}}portType/{{{WSDL}}}operation")
    assert len(operations) >= 17
    for op in operations:
        assert [f.get("message") for f in op.findall(f"{{{WSDL}}}fault")] == ["tns:GatewayFault"], op.get("name")
    # every Finding code the gateway writes (a literal or a constant) is in the enumeration too
    sources = [path.read_text() for path in (ROOT / "gateway").rglob("*.py")]
    constants = dict(m for text in sources for m in re.findall(r'(?m)^([A-Z_]+) = "([a-z_]+)"', text))
    used = {m for text in sources for m in re.findall(r'Finding\(code=(?:\w+\.)?([A-Za-z_"]+)', text)}
    written = {u.strip('"') if u.startswith('"') else constants.get(u, u) for u in used if u != "code"}
    assert len(written) > 10 and written <= set(enums["FindingCode"]), written - set(enums["FindingCode"])


@pytest.mark.skipif(not (shutil.which("wsimport") and shutil.which("javac")),
                    reason="wsimport (Debian package jaxws) or javac missing; .ci/run installs jaxws")
def test_generated_java_client_compiles_without_wrapper_types(tmp_path: Path) -> None:
    wsdl = tmp_path / "gateway-soap-v2.wsdl"
    wsdl.write_text(generate("v2"))
    src, classes = tmp_path / "src", tmp_path / "classes"
    src.mkdir(), classes.mkdir()
    subprocess.run(["wsimport", "-Xnocompile", "-quiet", "-d", str(src), "-s", str(src), str(wsdl)],
                   check=True, timeout=300, capture_output=True)
    java = sorted(src.rglob("*.java"))
    package = java[0].parent
    assert {"ClaimState", "FindingCode", "ChangeKind", "Salutation", "FaultCode", "GatewayFault_Exception"} <= {
        p.stem for p in java}
    # optional fields are plain types: JAXBElement only in ObjectFactory's element factories
    assert [p.name for p in java if "JAXBElement" in p.read_text()] == ["ObjectFactory.java"]
    event = (package / "Event.java").read_text()
    assert "protected ClaimState state;" in event and "protected EventData data;" in event
    assert "throws GatewayFault_Exception" in (package / "GatewayServiceV2.java").read_text() or any(
        "throws GatewayFault_Exception" in p.read_text() for p in java)
    lib = Path("/usr/share/java")
    cp = ":".join(str(lib / j) for j in ("jaxb-api.jar", "jaxws-api.jar", "jws-api.jar", "javax.activation.jar",
                                          "javax.xml.soap-api.jar", "geronimo-annotation-1.3-spec.jar"))
    done = subprocess.run(["javac", "-nowarn", "-proc:none", "-cp", cp, "-d", str(classes), *map(str, java)],
                          timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list(classes.rglob("*.class"))) >= len(java)

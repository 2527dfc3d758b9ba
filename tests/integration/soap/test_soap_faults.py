"""Faults a person can read and a program can catch: plain sentences, a declared typed detail, SOAP 1.1 only."""

from __future__ import annotations

from typing import Any

import pytest
import zeep
from lxml import etree

from gateway.entrypoints.soap import faults
from gateway.entrypoints.soap.wsdl import generate
from tests.integration.soap.conftest import Endpoint, claim, submit

NS = "urn:inkasso-gateway:soap:v1"
WSDL = "http://schemas.xmlsoap.org/wsdl/"


def _detail(fault: zeep.exceptions.Fault) -> dict[str, str]:
    (node,) = fault.detail
    assert node.tag == f"{{{NS}}}GatewayFault"
    return {etree.QName(child).localname: child.text for child in node}


def _raises(call: Any) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as exc:
        call()
    return exc.value


def test_illegal_transitions_speak_the_clients_language(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = submit(c, claim("F-1")).results.ClaimResult[0].claim_id  # accepted: queued
    fault = _raises(lambda: c.service.ReleaseClaims(claim_ids={"long": [cid]}))
    assert fault.code.endswith("Client.IllegalTransition")
    assert fault.message == f"claim {cid} is queued; only held claims can be released"
    assert _detail(fault) == {"code": "illegal_transition", "message": fault.message, "claim_id": str(cid)}
    c.service.CancelClaim(cid)
    fault = _raises(lambda: c.service.CancelClaim(cid))
    assert fault.message == f"claim {cid} is closed (cancelled_by_client): it takes no more requests"
    for f in (fault, _raises(lambda: c.service.SendMessage(cid, "hallo"))):
        assert "illegal transition" not in f.message and "->" not in f.message


def test_a_request_the_agency_must_answer_says_why_it_is_refused(endpoint: Endpoint) -> None:
    c = endpoint.client()
    cid = submit(c, claim("F-2"), release=False).results.ClaimResult[0].claim_id  # held: not at the agency
    for call in (c.service.RefreshClaim, c.service.RequestLongTermMonitoring):
        fault = _raises(lambda: call(cid))
        assert fault.code.endswith("Client.IllegalTransition")
        assert fault.message == f"claim {cid} is held; the agency does not have the claim"
        assert _detail(fault) == {"code": "illegal_transition", "message": fault.message, "claim_id": str(cid)}
    c.service.ReleaseClaims(claim_ids={"long": [cid]})
    fault = _raises(lambda: c.service.ReleaseClaims(claim_ids={"long": [cid]}))  # no reason of its own
    assert fault.message == f"claim {cid} is queued; only held claims can be released"


def test_every_fault_carries_the_typed_detail(endpoint: Endpoint) -> None:
    c = endpoint.client()
    unknown = _raises(lambda: c.service.GetClaim(424242))
    assert _detail(unknown) == {"code": "unknown_claim", "message": "no claim 424242"}
    denied = _raises(lambda: endpoint.client("viewer").service.CancelClaim(1))
    assert _detail(denied)["code"] == "authorization"
    # answered by the gate, before spyne: the same detail in the raw envelope
    r = endpoint.session(user="demo-erp", password="wrong").post(
        endpoint.url, data=b"<x/>", headers={"Content-Type": "text/xml"}, timeout=30)
    assert r.status_code == 401
    node = etree.fromstring(r.content).find(f".//detail/{{{NS}}}GatewayFault")
    assert node is not None and node.findtext(f"{{{NS}}}code") == "authentication"


def test_soap_1_2_envelopes_get_a_plain_soap_1_1_fault(endpoint: Endpoint) -> None:
    body = ('<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>'
            f'<GetClaim xmlns="{NS}"><claim_id>1</claim_id></GetClaim></env:Body></env:Envelope>')
    for media in ("application/soap+xml; charset=utf-8", "text/xml"):
        r = endpoint.session().post(endpoint.url, data=body.encode(), headers={"Content-Type": media}, timeout=30)
        assert r.status_code == 500
        doc = etree.fromstring(r.content)
        assert doc.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
        assert doc.findtext(".//faultcode") == "soap11env:VersionMismatch"
        assert "SOAP 1.1 only" in doc.findtext(".//faultstring")
        assert "No {" not in r.text
        assert doc.findtext(f".//{{{NS}}}code") == "version_mismatch"


def test_the_wsdl_declares_the_fault_on_every_operation() -> None:
    doc = etree.fromstring(generate().encode())
    operations = doc.findall(f"{{{WSDL}}}portType/{{{WSDL}}}operation")
    assert len(operations) >= 15
    for op in operations:
        assert [f.get("message") for f in op.findall(f"{{{WSDL}}}fault")] == ["tns:GatewayFault"], op.get("name")
    codes = doc.xpath("//xs:simpleType[@name='FaultCode']//xs:enumeration/@value",
                      namespaces={"xs": "http://www.w3.org/2001/XMLSchema"})
    assert sorted(codes) == sorted(faults.DETAIL_CODES.values())

"""The ``soap`` partner simulator: the agency's SOAP API (``adapters.soap_wsdl``) on a loopback HTTP server.

The same request handling and faults as the JSON simulator; only the routing speaks SOAP 1.1
(the WSDL at ``?wsdl``, document/literal envelopes parsed with a hardened lxml parser).
"""

from __future__ import annotations

import base64
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from adapters.base import PartnerUpdate
from adapters.simulators.agency import Agency
from adapters.simulators.http_sim import HttpAgencySimulator, Routed, _Handler
from adapters.soap_wsdl import NS, wsdl

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_OPS = {"CloseClaim": "cancel", "BookDirectPayment": "report_payment", "SendMessage": "send_message",
        "RequestMonitoring": "request_monitoring", "SetLabels": "set_labels"}


def _xml(name: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml(k, v) for k, v in value.items() if v is not None)
        return f"<tns:{name}>{inner}</tns:{name}>"
    if isinstance(value, list):
        return "".join(_xml(name, v) for v in value)
    return f"<tns:{name}>{escape(str(value))}</tns:{name}>"


def _envelope(op: str, fields: dict[str, Any]) -> Routed:
    body = "".join(_xml(k, v) for k, v in fields.items())
    doc = (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{ENV}" xmlns:tns="{NS}">'
           f"<soap:Body><tns:{op}Response>{body}</tns:{op}Response></soap:Body></soap:Envelope>")
    return 200, doc.encode(), "text/xml; charset=utf-8"


def _fault(code: str, text: str) -> Routed:
    doc = (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{ENV}"><soap:Body><soap:Fault>'
           f"<faultcode>soap:{code}</faultcode><faultstring>{escape(text)}</faultstring></soap:Fault>"
           f"</soap:Body></soap:Envelope>")
    return 500, doc.encode(), "text/xml; charset=utf-8"


def _change(u: PartnerUpdate) -> dict[str, Any]:
    return {"updateId": u.update_id, "externalId": u.claim_id, "kind": u.kind, "code": u.code or None,
            "fileNumber": u.partner_reference or None, "amount": u.amount, "currency": u.currency, "date": u.date,
            "messageId": u.message_id, "text": u.text, "occurredAt": u.occurred_at}


def soap_route(handler: _Handler, method: str, url: Any, raw: bytes) -> Routed:
    """WSDL on GET ?wsdl; one SOAP operation per POST."""
    agency: Agency = handler.server.agency
    if method == "GET":
        port = handler.server.server_address[1]
        return 200, wsdl(f"http://127.0.0.1:{port}{url.path}").encode(), "text/xml; charset=utf-8"
    try:
        body = etree.fromstring(raw, _PARSER).find(f"{{{ENV}}}Body")
        request = body[0] if body is not None and len(body) else None
    except etree.XMLSyntaxError as exc:
        return _fault("Client", f"not XML: {exc}")
    if request is None:
        return _fault("Client", "empty SOAP body")
    op = etree.QName(request).localname

    def get(name: str) -> str:
        return str(request.findtext(f"{{{NS}}}{name}") or "")

    try:
        if op == "CreateClaims":
            base64.b64decode(get("document"))
            claims = [(int(c.findtext(f"{{{NS}}}externalId") or 0), str(c.findtext(f"{{{NS}}}idempotencyKey")))
                      for c in request.iterfind(f"{{{NS}}}claim")]
            refs = agency.receive_batch(get("batchId"), claims)
            return _envelope(op, {"result": [{"externalId": c, "fileNumber": n} for c, n in refs.items()]})
        if op == "GetStatusChanges":
            page, cursor = agency.updates_after(str(agency.committed), int(get("maxCount") or 1000))
            return _envelope(op, {"transactionId": cursor or str(agency.committed),
                                  "change": [_change(u) for u in page]})
        if op == "CommitStatusChanges":
            agency.commit(get("transactionId"))
            return _envelope(op, {"committed": agency.committed})
        if op == "GetHistory":
            cid = int(get("externalId"))
            changes = agency.claim_updates(cid)
            return _envelope(op, {"status": agency.cases[cid].code, "change": [_change(u) for u in changes]})
        if op in _OPS:
            data: dict[str, Any] = {"reason": get("reason"), "amount": get("amount") or "0",
                                    "currency": get("currency"), "date": get("date"), "message_id": get("messageId"),
                                    "text": get("text"),
                                    "labels": [str(x.text) for x in request.iterfind(f"{{{NS}}}label")]}
            answer = agency.operate(get("idempotencyKey"), _OPS[op], int(get("externalId")), data)
            return _envelope(op, {"fileNumber": answer["file_number"]})
    except KeyError as exc:
        return _fault("Client", f"unknown claim {exc}")
    return _fault("Client", f"unknown operation {op}")


class SoapAgencySimulator(HttpAgencySimulator):
    """The agency's SOAP endpoint at ``<url>/soap`` (WSDL at ``<url>/soap?wsdl``)."""

    route = staticmethod(soap_route)

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}/soap?wsdl"

"""The ``soap`` bureau simulator: ``RequestReport`` (``adapters.bureaus.soap_wsdl``) on a loopback server.

The same server and faults as the JSON simulator; the WSDL at ``<url>/soap?wsdl``; requests parsed with a
hardened lxml parser. ``ERROR`` is an HTTP 503, ``GARBAGE`` a 200 that is not XML.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from lxml import etree

from adapters.bureaus.simulators.book import BureauBook
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from adapters.bureaus.soap import BEST, CODES, WORST
from adapters.bureaus.soap_wsdl import NS, wsdl

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_CODES = {v: k for k, v in CODES.items()}
XML = "text/xml; charset=utf-8"


def _fault(code: str, text: str) -> tuple[int, bytes, str]:
    doc = (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{ENV}"><soap:Body><soap:Fault>'
           f"<faultcode>soap:{code}</faultcode><faultstring>{escape(text)}</faultstring></soap:Fault>"
           f"</soap:Body></soap:Envelope>")
    return 500, doc.encode(), XML


def report(book: BureauBook, raw: bytes) -> tuple[int, bytes, str]:
    """The SOAP answer to one request."""
    try:
        body = etree.fromstring(raw, _PARSER).find(f"{{{ENV}}}Body")
        request = body[0] if body is not None and len(body) else None
    except etree.XMLSyntaxError:
        return _fault("Client", "not XML")
    if request is None or etree.QName(request).localname != "RequestReport":
        return _fault("Client", "unknown operation")

    def get(name: str) -> str:
        return str(request.findtext(f"{{{NS}}}{name}") or "")

    name = get("companyName") if get("subjectType") == "B" else " ".join(
        p for p in (get("firstName"), get("lastName")) if p)
    record = book.lookup(name, get("purpose"))
    fields = f"<tns:reportId>SR-{escape(get('queryId'))}</tns:reportId>"
    if record is None:
        fields = "<tns:status>NO_HIT</tns:status>" + fields
    else:
        fields = "<tns:status>HIT</tns:status>" + fields
        if record.score is not None:
            fields += f"<tns:solvencyIndex>{WORST - record.score * (WORST - BEST) // 100}</tns:solvencyIndex>"
        for kind, when, amount in record.entries:
            fields += (f"<tns:entry><tns:code>{_CODES.get(kind, kind.upper())}</tns:code><tns:date>{when}</tns:date>"
                       + (f"<tns:amount>{amount}</tns:amount>" if amount else "") + "</tns:entry>")
    doc = (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{ENV}" xmlns:tns="{NS}">'
           f"<soap:Body><tns:RequestReportResponse>{fields}</tns:RequestReportResponse></soap:Body></soap:Envelope>")
    return 200, doc.encode(), XML


class SoapBureauSimulator(HttpBureauSimulator):
    """One SOAP bureau at ``<url>/soap`` (WSDL at ``<url>/soap?wsdl``)."""

    @property
    def wsdl_url(self) -> str:
        return f"{self.url}/soap?wsdl"

    def get(self, path: str) -> tuple[int, bytes, str]:
        if path.startswith("/soap"):
            return 200, wsdl(f"{self.url}/soap").encode(), XML
        return 404, b"", XML

    def post(self, path: str, raw: bytes) -> tuple[int, bytes, str]:
        return report(self.book, raw)

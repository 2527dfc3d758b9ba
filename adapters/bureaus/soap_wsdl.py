"""The simulated SOAP bureau's WSDL (document/literal wrapped), one table for the adapter's simulator.

Modelled on the report services of business-information bureaus: ``RequestReport`` with the subject and
the purpose of the query; the answer is ``HIT``/``NO_HIT``, a solvency index 100 (best) .. 600 (worst)
and coded entries.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

NS = "urn:bureau-sim:credit:1"

REQUEST = [("queryId", "xsd:string"), ("purpose", "xsd:string"), ("subjectType", "xsd:string"),
           ("firstName", "xsd:string"), ("lastName", "xsd:string"), ("companyName", "xsd:string"),
           ("birthDate", "xsd:date"), ("street", "xsd:string"), ("houseNumber", "xsd:string"),
           ("postalCode", "xsd:string"), ("city", "xsd:string"), ("country", "xsd:string")]
ENTRY = [("code", "xsd:string"), ("date", "xsd:date"), ("amount", "xsd:decimal")]
RESPONSE = [("status", "xsd:string"), ("reportId", "xsd:string"), ("solvencyIndex", "xsd:int")]


def _seq(fields: list[tuple[str, str]]) -> str:
    return "".join(f'<xsd:element name="{n}" type="{t}" minOccurs="0"/>' for n, t in fields)


def wsdl(address: str) -> str:
    """The WSDL 1.1 document with ``address`` as the endpoint."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
            f'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:tns="{NS}" targetNamespace="{NS}">'
            f'<wsdl:types><xsd:schema targetNamespace="{NS}" elementFormDefault="qualified">'
            f'<xsd:complexType name="Entry"><xsd:sequence>{_seq(ENTRY)}</xsd:sequence></xsd:complexType>'
            f'<xsd:element name="RequestReport"><xsd:complexType><xsd:sequence>{_seq(REQUEST)}'
            f'</xsd:sequence></xsd:complexType></xsd:element>'
            f'<xsd:element name="RequestReportResponse"><xsd:complexType><xsd:sequence>{_seq(RESPONSE)}'
            f'<xsd:element name="entry" type="tns:Entry" minOccurs="0" maxOccurs="unbounded"/>'
            f'</xsd:sequence></xsd:complexType></xsd:element></xsd:schema></wsdl:types>'
            f'<wsdl:message name="RequestReport"><wsdl:part name="parameters" element="tns:RequestReport"/>'
            f'</wsdl:message><wsdl:message name="RequestReportResponse"><wsdl:part name="parameters" '
            f'element="tns:RequestReportResponse"/></wsdl:message>'
            f'<wsdl:portType name="ReportPort"><wsdl:operation name="RequestReport">'
            f'<wsdl:input message="tns:RequestReport"/><wsdl:output message="tns:RequestReportResponse"/>'
            f'</wsdl:operation></wsdl:portType>'
            f'<wsdl:binding name="ReportBinding" type="tns:ReportPort">'
            f'<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
            f'<wsdl:operation name="RequestReport"><soap:operation soapAction="{NS}#RequestReport"/>'
            f'<wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/>'
            f'</wsdl:output></wsdl:operation></wsdl:binding>'
            f'<wsdl:service name="ReportService"><wsdl:port name="ReportPort" binding="tns:ReportBinding">'
            f'<soap:address location="{escape(address)}"/></wsdl:port></wsdl:service></wsdl:definitions>')

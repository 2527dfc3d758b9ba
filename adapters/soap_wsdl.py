"""The simulated agency's SOAP API, one table that both the WSDL and the simulator are built from.

Modelled on what German collection agencies offer their clients: create claims (one file number per
claim), status changes fetched in a transaction the client commits, a claim's history, close/cancel,
book a direct payment, send a message, request long-term monitoring, set labels.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

NS = "urn:agency-sim:claims:1"

# complex types: name -> [(field, xsd type, repeated)]
TYPES: dict[str, list[tuple[str, str, bool]]] = {
    "ClaimRef": [("externalId", "xsd:long", False), ("idempotencyKey", "xsd:string", False)],
    "Created": [("externalId", "xsd:long", False), ("fileNumber", "xsd:string", False)],
    "Change": [("updateId", "xsd:string", False), ("externalId", "xsd:long", False), ("kind", "xsd:string", False),
               ("code", "xsd:string", False), ("fileNumber", "xsd:string", False), ("amount", "xsd:string", False),
               ("currency", "xsd:string", False), ("date", "xsd:string", False), ("messageId", "xsd:string", False),
               ("text", "xsd:string", False), ("occurredAt", "xsd:string", False)],
}
_CLAIM_OP = [("externalId", "xsd:long", False), ("idempotencyKey", "xsd:string", False)]
_ACK = [("fileNumber", "xsd:string", False)]
# operation -> (request fields, response fields)
OPERATIONS: dict[str, tuple[list[tuple[str, str, bool]], list[tuple[str, str, bool]]]] = {
    "CreateClaims": ([("batchId", "xsd:string", False), ("document", "xsd:base64Binary", False),
                      ("claim", "tns:ClaimRef", True)], [("result", "tns:Created", True)]),
    "GetStatusChanges": ([("maxCount", "xsd:int", False)],
                         [("transactionId", "xsd:string", False), ("change", "tns:Change", True)]),
    "CommitStatusChanges": ([("transactionId", "xsd:string", False)], [("committed", "xsd:int", False)]),
    "GetHistory": ([("externalId", "xsd:long", False)], [("status", "xsd:string", False),
                                                         ("change", "tns:Change", True)]),
    "CloseClaim": (_CLAIM_OP + [("reason", "xsd:string", False)], _ACK),
    "BookDirectPayment": (_CLAIM_OP + [("amount", "xsd:decimal", False), ("currency", "xsd:string", False),
                                       ("date", "xsd:date", False)], _ACK),
    "SendMessage": (_CLAIM_OP + [("messageId", "xsd:string", False), ("text", "xsd:string", False)], _ACK),
    "RequestMonitoring": (_CLAIM_OP, _ACK),
    "SetLabels": (_CLAIM_OP + [("label", "xsd:string", True)], _ACK),
}


_MANY = ' maxOccurs="unbounded"'


def _seq(fields: list[tuple[str, str, bool]]) -> str:
    return "".join(f'<xsd:element name="{n}" type="{t}" minOccurs="0"{_MANY if rep else ""}/>'
                   for n, t, rep in fields)


def wsdl(address: str) -> str:
    """The WSDL 1.1 document (document/literal wrapped) with ``address`` as the service endpoint."""
    types = "".join(f'<xsd:complexType name="{n}"><xsd:sequence>{_seq(f)}</xsd:sequence></xsd:complexType>'
                    for n, f in TYPES.items())
    elements = "".join(f'<xsd:element name="{op}"><xsd:complexType><xsd:sequence>{_seq(req)}</xsd:sequence>'
                       f'</xsd:complexType></xsd:element><xsd:element name="{op}Response"><xsd:complexType>'
                       f'<xsd:sequence>{_seq(resp)}</xsd:sequence></xsd:complexType></xsd:element>'
                       for op, (req, resp) in OPERATIONS.items())
    messages = "".join(f'<wsdl:message name="{op}{s}"><wsdl:part name="parameters" element="tns:{op}{s}"/>'
                       f'</wsdl:message>' for op in OPERATIONS for s in ("", "Response"))
    port_ops = "".join(f'<wsdl:operation name="{op}"><wsdl:input message="tns:{op}"/>'
                       f'<wsdl:output message="tns:{op}Response"/></wsdl:operation>' for op in OPERATIONS)
    bind_ops = "".join(f'<wsdl:operation name="{op}"><soap:operation soapAction="{NS}#{op}"/>'
                       f'<wsdl:input><soap:body use="literal"/></wsdl:input>'
                       f'<wsdl:output><soap:body use="literal"/></wsdl:output></wsdl:operation>' for op in OPERATIONS)
    return (f'<?xml version="1.0" encoding="UTF-8"?>'
            f'<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" '
            f'xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:tns="{NS}" targetNamespace="{NS}">'
            f'<wsdl:types><xsd:schema targetNamespace="{NS}" elementFormDefault="qualified">{types}{elements}'
            f'</xsd:schema></wsdl:types>{messages}'
            f'<wsdl:portType name="ClaimsPort">{port_ops}</wsdl:portType>'
            f'<wsdl:binding name="ClaimsBinding" type="tns:ClaimsPort">'
            f'<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{bind_ops}'
            f'</wsdl:binding><wsdl:service name="ClaimsService"><wsdl:port name="ClaimsPort" '
            f'binding="tns:ClaimsBinding"><soap:address location="{escape(address)}"/></wsdl:port></wsdl:service>'
            f'</wsdl:definitions>')

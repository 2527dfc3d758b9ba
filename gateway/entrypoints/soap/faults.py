"""SOAP faults with stable codes. ERP systems key on ``faultcode``; never rename one, only add.

    Client.Authentication      no or wrong credentials (HTTP 401)
    Client.Authorization       valid credentials, but not allowed to do this
    Client.Validation          the request does not fit the schema or a value is not acceptable
    Client.UnknownClaim        no such claim for this client (another client's claim looks the same)
    Client.UnknownSubmission   no such submission for this client
    Client.IllegalTransition   the claim's state does not allow this (e.g. cancelling a closed claim)
    Client.Unsupported         the claim's partner does not accept this operation (nothing was recorded)
    Client.TooLarge            the request is larger than the configured limit (HTTP 413)
    Client.Throttled           too many failed logins of this username or address: retry later (HTTP 429)
    VersionMismatch            a SOAP 1.2 (or other non-1.1) envelope: this endpoint speaks SOAP 1.1 only
    Server.Busy                too many requests at once or the database is busy: retry later (HTTP 503)
    Server.Internal            anything else; the message names an incident id found in the server log

Every fault also carries a typed ``<detail>``: a ``GatewayFault`` element (declared on every operation in the
WSDL, so generated clients get a typed exception) with the same code in lower case (``DETAIL_CODES``), the
sentence, and the claim it is about where there is one.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from lxml import etree
from spyne import Fault, Long, Unicode

from gateway.entrypoints.soap.types import TNS

AUTHENTICATION, AUTHORIZATION, VALIDATION = "Client.Authentication", "Client.Authorization", "Client.Validation"
UNKNOWN_CLAIM, UNKNOWN_SUBMISSION = "Client.UnknownClaim", "Client.UnknownSubmission"
ILLEGAL_TRANSITION, TOO_LARGE = "Client.IllegalTransition", "Client.TooLarge"
THROTTLED = "Client.Throttled"
UNSUPPORTED = "Client.Unsupported"
VERSION_MISMATCH = "VersionMismatch"  # SOAP 1.1's own code for an envelope in another namespace
BUSY, INTERNAL = "Server.Busy", "Server.Internal"
CODES = (AUTHENTICATION, AUTHORIZATION, VALIDATION, UNKNOWN_CLAIM, UNKNOWN_SUBMISSION, ILLEGAL_TRANSITION,
         TOO_LARGE, UNSUPPORTED, THROTTLED, VERSION_MISMATCH, BUSY, INTERNAL)


# faultcode -> the stable code of the typed detail (an enumeration in the WSDL)
DETAIL_CODES = {code: code.split(".")[-1][:1].lower() + "".join(f"_{c.lower()}" if c.isupper() else c
                                                               for c in code.split(".")[-1][1:])
                for code in CODES}


def detail_type(namespace: str) -> Any:
    """The declared fault detail of a service namespace (spyne puts it into the WSDL as a fault message)."""
    code = Unicode(values=sorted(DETAIL_CODES.values()), type_name="FaultCode", __namespace__=namespace,
                   min_occurs=1, nillable=False)

    class GatewayFault(Fault):  # type: ignore[misc]
        __namespace__ = namespace
        __type_name__ = "GatewayFault"
        _type_info = [("code", code),
                      ("message", Unicode.customize(min_occurs=1, nillable=False)),
                      ("claim_id", Long.customize(min_occurs=0, nillable=False))]

    return GatewayFault


def detail(code: str, message: str, *, claim_id: int | None = None, namespace: str = TNS) -> Any:
    """The ``<detail>`` content of a fault: ``<GatewayFault><code/><message/><claim_id/></GatewayFault>``."""
    root = etree.Element(f"{{{namespace}}}GatewayFault", nsmap={"tns": namespace})
    etree.SubElement(root, f"{{{namespace}}}code").text = DETAIL_CODES.get(code, "internal")
    etree.SubElement(root, f"{{{namespace}}}message").text = message
    if claim_id is not None:
        etree.SubElement(root, f"{{{namespace}}}claim_id").text = str(claim_id)
    return root


class AuthorizationFault(Fault):  # type: ignore[misc]
    def __init__(self, message: str) -> None:
        super().__init__(faultcode=AUTHORIZATION, faultstring=message)


class ValidationFault(Fault):  # type: ignore[misc]
    def __init__(self, message: str) -> None:
        super().__init__(faultcode=VALIDATION, faultstring=message)


def envelope(code: str, message: str, namespace: str = TNS) -> bytes:
    """A SOAP 1.1 fault envelope, for answers given before spyne sees the request."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<soap11env:Body><soap11env:Fault><faultcode>soap11env:{escape(code)}</faultcode>'
            f'<faultstring>{escape(message)}</faultstring><detail>'
            f'{etree.tostring(detail(code, message, namespace=namespace), encoding="unicode")}</detail>'
            '</soap11env:Fault></soap11env:Body></soap11env:Envelope>').encode()

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
    Server.Busy                too many requests at once or the database is busy: retry later (HTTP 503)
    Server.Internal            anything else; the message names an incident id found in the server log
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from spyne import Fault

AUTHENTICATION, AUTHORIZATION, VALIDATION = "Client.Authentication", "Client.Authorization", "Client.Validation"
UNKNOWN_CLAIM, UNKNOWN_SUBMISSION = "Client.UnknownClaim", "Client.UnknownSubmission"
ILLEGAL_TRANSITION, TOO_LARGE = "Client.IllegalTransition", "Client.TooLarge"
THROTTLED = "Client.Throttled"
UNSUPPORTED = "Client.Unsupported"
BUSY, INTERNAL = "Server.Busy", "Server.Internal"
CODES = (AUTHENTICATION, AUTHORIZATION, VALIDATION, UNKNOWN_CLAIM, UNKNOWN_SUBMISSION, ILLEGAL_TRANSITION,
         TOO_LARGE, UNSUPPORTED, THROTTLED, BUSY, INTERNAL)


class AuthorizationFault(Fault):  # type: ignore[misc]
    def __init__(self, message: str) -> None:
        super().__init__(faultcode=AUTHORIZATION, faultstring=message)


class ValidationFault(Fault):  # type: ignore[misc]
    def __init__(self, message: str) -> None:
        super().__init__(faultcode=VALIDATION, faultstring=message)


def envelope(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault envelope, for answers given before spyne sees the request."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<soap11env:Body><soap11env:Fault><faultcode>soap11env:{escape(code)}</faultcode>'
            f'<faultstring>{escape(message)}</faultstring></soap11env:Fault></soap11env:Body>'
            '</soap11env:Envelope>').encode()

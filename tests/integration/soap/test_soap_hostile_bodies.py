"""Bodies a careless or hostile client sends to the real HTTPS endpoint: markup that would balloon the
parser's memory is refused before any tree is built, and a body that is not well-formed leaves neither
its debtor data nor its bulk in the log."""

from __future__ import annotations

import logging
import time

import pytest

from tests.integration.soap.conftest import PASSWORDS, Endpoint
from tests.integration.soap.test_soap_hardening import WSSE, _token, make_endpoint  # noqa: F401 (fixture)

PLANTED = "Quxplantova"
PLANTED_IBAN = "DE19370400449876543210"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _envelope(body: str, header: str = "") -> bytes:
    return (f'<s:Envelope xmlns:s="{SOAP}" xmlns:g="urn:inkasso-gateway:soap:v1">{header}<s:Body>{body}</s:Body>'
            "</s:Envelope>").encode()


def _post(endpoint: Endpoint, body: bytes, *, auth: bool = True) -> tuple[int, str, float]:
    started = time.monotonic()
    answer = endpoint.session(None if not auth else "demo-erp").post(
        endpoint.url, data=body, headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=60)
    return answer.status_code, answer.text, time.monotonic() - started


@pytest.mark.parametrize("markup", ["<a/>" * 60_000, '<g:GetClaim ' + " ".join(f'a{i}="x"' for i in range(15_000))
                                    + "><g:claim_id>1</g:claim_id></g:GetClaim>"],
                         ids=["tags", "attributes"])
def test_markup_beyond_the_limit_is_refused_before_parsing(make_endpoint: object, markup: str) -> None:
    endpoint = make_endpoint(max_request_tags=50_000, max_request_bytes=4 * 1024 * 1024)  # type: ignore[operator]
    body = _envelope(f"<g:GetClaim>{markup}<g:claim_id>1</g:claim_id></g:GetClaim>" if markup.startswith("<a/>")
                     else markup)
    status, text, _ = _post(endpoint, body)
    assert status == 413, text
    assert "Client.TooLarge" in text and ("more than 50000 XML tags" in text or "more than 12500 XML attributes" in text)
    # The WS-Security look-up parses the header before the sender is known: the same bound comes first.
    header = f'<s:Header><w:Security xmlns:w="{WSSE}">{"<x/>" * 60_000}</w:Security>{_token("demo-erp", "x")}</s:Header>'
    status, text, _ = _post(endpoint, _envelope("<g:GetChanges/>", header), auth=False)
    assert status == 413, text
    # A request within the limit still works.
    status, text, _ = _post(endpoint, _envelope("<g:GetClaim><g:claim_id>424242</g:claim_id></g:GetClaim>"))
    assert "Client.UnknownClaim" in text, text


def test_a_body_that_is_not_well_formed_leaves_no_debtor_data_in_the_log(
        endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    claim = (f"<g:ClaimInput><g:creditor_reference>P-1</g:creditor_reference><g:principal_amount>12.00"
             f"</g:principal_amount><g:debtor><g:last_name>{PLANTED}</g:last_name><g:bank_accounts><g:BankAccount>"
             f"<g:iban>{PLANTED_IBAN}</g:iban></g:BankAccount></g:bank_accounts><g:note>" + "x" * 100_000)
    for broken in (claim,  # cut off: not well-formed at the end
                   claim.replace("<g:note>", "<g:note>&Sohn;"),  # an entity that is not declared
                   claim.replace("<g:note>", "<g:note>\x00")):  # a NUL byte
        status, text, _ = _post(endpoint, _envelope(f"<g:SubmitClaims><g:claims>{broken}"))
        assert status == 500 and "Client.Validation" in text, text
    assert PLANTED not in caplog.text and PLANTED_IBAN not in caplog.text
    assert max(len(r.getMessage()) for r in caplog.records) < 4000  # no body dumped into a line
    assert PASSWORDS["demo-erp"] not in caplog.text


_VALID = ("<g:SubmitClaims><g:claims><g:ClaimInput><g:creditor_reference>{ref}</g:creditor_reference>"
          "<g:principal_amount>120.50</g:principal_amount><g:debtor><g:first_name>J\u00fcrgen</g:first_name>"
          "<g:last_name>{name}</g:last_name><g:birth_date>1980-05-17</g:birth_date><g:addresses><g:Address>"
          "<g:street>Hauptstra\u00dfe 12</g:street><g:postal_code>50667</g:postal_code><g:city>K\u00f6ln</g:city>"
          "</g:Address></g:addresses></g:debtor><g:due_date>2025-03-15</g:due_date></g:ClaimInput></g:claims>"
          "</g:SubmitClaims>")


def _raw(endpoint: Endpoint, body: bytes, content_type: str) -> tuple[int, str]:
    answer = endpoint.session().post(endpoint.url, data=body, headers={"Content-Type": content_type}, timeout=60)
    return answer.status_code, answer.text


def test_encodings_are_settled_before_parsing_never_guessed_or_dumped(
        endpoint: Endpoint, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    name = f"M\u00fcller-{PLANTED}"
    cp1252 = _envelope(_VALID.format(ref="ENC-1", name=name)).decode().encode("cp1252")
    # Windows-1252 bytes sent as UTF-8: a clear fault naming the place (before: an empty 500, the body on stderr).
    status, text = _raw(endpoint, cp1252, "text/xml; charset=utf-8")
    assert status == 500 and "Client.Validation" in text, text
    assert "not valid UTF-8: byte 0xFC at line 1, column" in text, text
    # UTF-8 labelled Windows-1252 by the header while the declaration says UTF-8: refused, never mojibake.
    declared = b'<?xml version="1.0" encoding="UTF-8"?>' + _envelope(_VALID.format(ref="ENC-2", name=name))
    status, text = _raw(endpoint, declared, "text/xml; charset=windows-1252")
    assert status == 500 and "must agree" in text, text
    # Windows-1252 said in both places (or in either): taken, and stored as the characters sent.
    for ref, content_type, decl in (("ENC-3", "text/xml; charset=windows-1252", True),
                                    ("ENC-4", "text/xml", True), ("ENC-5", "text/xml; charset=windows-1252", False)):
        body = _envelope(_VALID.format(ref=ref, name=name)).decode()
        if decl:
            body = '<?xml version="1.0" encoding="windows-1252"?>' + body
        status, text = _raw(endpoint, body.encode("cp1252"), content_type)
        assert status == 200 and "<tns:outcome>accepted</tns:outcome>" in text, (ref, text)
    client = endpoint.client()
    for ref in ("ENC-3", "ENC-4", "ENC-5"):
        assert client.service.GetClaimByReference(ref).claim.debtor.last_name == name
    out, err = capfd.readouterr()
    # the server's log, not the test's own clients' (zeep logs what it received at DEBUG)
    server_log = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("zeep", "urllib3")))
    for where in (out, err, server_log):
        assert PLANTED not in where

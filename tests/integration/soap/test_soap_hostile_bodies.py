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


@pytest.mark.parametrize("markup", ["<a/>" * 60_000, '<g:GetClaim ' + " ".join(f'a{i}="x"' for i in range(60_000))
                                    + "><g:claim_id>1</g:claim_id></g:GetClaim>"],
                         ids=["tags", "attributes"])
def test_markup_beyond_the_limit_is_refused_before_parsing(make_endpoint: object, markup: str) -> None:
    endpoint = make_endpoint(max_request_tags=50_000, max_request_bytes=4 * 1024 * 1024)  # type: ignore[operator]
    body = _envelope(f"<g:GetClaim>{markup}<g:claim_id>1</g:claim_id></g:GetClaim>" if markup.startswith("<a/>")
                     else markup)
    status, text, _ = _post(endpoint, body)
    assert status == 413, text
    assert "Client.TooLarge" in text and "more than 50000 XML" in text
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

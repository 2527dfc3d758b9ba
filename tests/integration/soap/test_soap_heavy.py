"""Requests with a lot of markup (heavy) are parsed a few at a time, and one with thousands of attributes the
WSDL does not declare is refused before the validator logs an error for each of them (that log took a request
to +145 MB, eight at once the process to 1.16 GB). A real endpoint over HTTPS."""

from __future__ import annotations

from typing import Any

from tests.integration.soap.conftest import PASSWORDS
from tests.integration.soap.test_soap_hardening import _fault, _http, make_endpoint  # noqa: F401  (a fixture)

AUTH = ("demo-erp", PASSWORDS["demo-erp"])


def _envelope(header: str = "", attributes: str = "") -> bytes:
    return (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:g="urn:inkasso-gateway:soap:v1">'
            f'<s:Header>{header}</s:Header><s:Body><g:GetChanges{attributes}/></s:Body></s:Envelope>').encode()


def _post(ep: Any, body: bytes) -> Any:
    with _http(ep) as http:
        return http.post(ep.url, content=body, auth=AUTH,
                         headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"GetChanges"'})


def test_heavy_requests_wait_for_their_own_few_slots(make_endpoint: Any) -> None:
    ep = make_endpoint(max_heavy_inflight=1, heavy_request_tags=5_000, busy_wait_seconds=0.5,
                       max_request_bytes=1024 * 1024)
    heavy = _envelope(header="<x:pad xmlns:x='urn:pad'>" + "<x:p/>" * 6_000 + "</x:pad>")
    light = _envelope()
    gate = ep.server.gate
    assert gate.heavy.acquire(timeout=1)  # another heavy request is being parsed
    try:
        r = _post(ep, heavy)
        assert r.status_code == 503, r.text
        assert _fault(r)[0].endswith("Server.Busy") and "large requests" in _fault(r)[1]
        assert _post(ep, light).status_code == 200  # the ordinary slots are free
    finally:
        gate.heavy.release()
    assert _post(ep, heavy).status_code == 200


def test_thousands_of_undeclared_attributes_are_refused_before_validation(make_endpoint: Any) -> None:
    ep = make_endpoint(heavy_request_tags=5_000, max_request_bytes=1024 * 1024)
    many = "".join(f' a{i}="x"' for i in range(6_000))
    r = _post(ep, _envelope(attributes=many))
    assert r.status_code == 500
    code, text = _fault(r)
    assert code.endswith("Client.Validation") or "Validation" in code, code
    assert "1000 or more XML attributes the WSDL's schema does not declare" in text
    # a few of them in a heavy request: the schema's own answer, as before
    few = "".join(f' a{i}="x"' for i in range(10))
    padded = _envelope(header="<x:pad xmlns:x='urn:pad'>" + "<x:p/>" * 6_000 + "</x:pad>", attributes=few)
    r = _post(ep, padded)
    assert r.status_code == 500 and "does not declare" not in _fault(r)[1] and "schema" in _fault(r)[1]

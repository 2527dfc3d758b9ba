"""docs/soap.md's examples are valid as written: every request is posted verbatim, every answer fits the WSDL.

The requests run in the page's order against a fresh database, so the ids they name exist where the page
says so; a request that names something only the page's own run had (a submission reference) must still get
past the schema: it is answered by the operation (a fault such as Client.UnknownSubmission), never refused
as invalid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lxml import etree

from gateway.entrypoints.soap.wsdl import generate
from tests.integration.soap.conftest import PASSWORDS, Endpoint

ROOT = Path(__file__).resolve().parents[3]
ENV = "http://schemas.xmlsoap.org/soap/envelope/"
NS = "urn:inkasso-gateway:soap:v1"
# what a request naming another run's references may answer instead of its result
ANSWERED_BY_THE_OPERATION = {"soap11env:Client.UnknownSubmission", "soap11env:Client.UnknownClaim",
                             "soap11env:Client.IllegalTransition", "soap11env:Client.Unsupported"}


def _examples() -> list[str]:
    return re.findall(r"```xml\n(.*?)```", (ROOT / "docs" / "soap.md").read_text(), re.S)


def _schema() -> etree.XMLSchema:
    wsdl = etree.fromstring(generate().encode())
    (schema,) = wsdl.iter("{http://www.w3.org/2001/XMLSchema}schema")
    alone = etree.Element(schema.tag, schema.attrib, nsmap=schema.nsmap)  # with the WSDL's prefixes (tns:)
    alone.extend(schema)
    return etree.XMLSchema(alone)


def _body(message: str) -> etree._Element:
    doc = etree.fromstring(message.encode())
    assert doc.tag == f"{{{ENV}}}Envelope", message[:200]
    (body,) = doc.findall(f"{{{ENV}}}Body")
    (first,) = list(body)
    return first


def test_every_example_is_a_whole_message_that_fits_the_wsdl() -> None:
    examples = _examples()
    assert len(examples) >= 30
    schema = _schema()
    for text in examples:
        assert "<!--" not in text and "..." not in text.replace("<wsse:Password", "").split("</wsse:Password>")[-1]
        element = _body(text)
        if element.tag == f"{{{ENV}}}Fault":
            element = element.find(f"detail/{{{NS}}}GatewayFault")
        assert schema.validate(element), (text[:300], schema.error_log.last_error)


def test_every_request_posted_verbatim_is_answered(endpoint: Endpoint) -> None:
    examples = _examples()
    requests = [(i, t) for i, t in enumerate(examples) if 'xmlns:soap="' in t and "wsse:Password" not in t]
    assert len(requests) >= 15
    answered = 0
    for i, text in requests:
        r = endpoint.session().post(endpoint.url, data=text.encode(), headers={"Content-Type": "text/xml"},
                                    timeout=30)
        op = etree.QName(_body(text)).localname
        got = _body(r.text)
        if r.status_code == 200:
            answered += 1
            assert got.tag == f"{{{NS}}}{op}Response", (op, r.text[:300])
            shown = examples[i + 1] if i + 1 < len(examples) else ""
            if "<soap11env:Envelope" in shown and "<soap11env:Fault>" not in shown:  # the page's answer to it
                assert _body(shown).tag == got.tag, op
        else:
            assert got.findtext("faultcode") in ANSWERED_BY_THE_OPERATION, (op, r.text[:500])
    assert answered >= 12
    # the first example submitted claims: the second is rejected for its amount, as the page shows
    with endpoint.app.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM claims").scalar_one() == 1


def test_the_zeep_snippet_runs_as_written(endpoint: Endpoint, capsys: Any, monkeypatch: Any) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)  # they would override the snippet's CA file and address
    (snippet,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "soap.md").read_text(), re.S)
    # only the three settings the page asks the reader to fill in are replaced
    ours = (f'URL = "{endpoint.url}/v2"\nCA_FILE = "{endpoint.cert}"\n'
            f'USER, PASSWORD = "demo-erp", "{PASSWORDS["demo-erp"]}"\n')
    code, n = re.subn(r'URL = ".*"\nCA_FILE = ".*"\nUSER, PASSWORD = ".*", ".*"\n', ours, snippet)
    assert n == 1
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/soap.md (zeep snippet)", "exec"), namespace)  # noqa: S102 - our own page
    assert capsys.readouterr().out.split() == ["1", "ERP-2025-0100", "accepted", "1"]
    assert namespace["head"] >= 1

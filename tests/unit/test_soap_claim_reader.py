"""The claim reader gives what spyne's deserialization plus ``to_plain`` gave, for every claim the schema lets in.

Each sample is one ``ClaimInput`` element, checked against the endpoint's own compiled schema (v1 and v2); for
those that pass, the reader's answer must equal ``to_plain`` of spyne's object, value for value and type for
type (``Decimal('5.00')`` is not ``Decimal('5.0')``), or both must fail with the same exception.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from lxml import etree

from gateway.entrypoints.soap import claim_reader
from gateway.entrypoints.soap.app import _claim_type, build_application, build_application_v2
from gateway.entrypoints.soap.translate import to_plain

XSI = "http://www.w3.org/2001/XMLSchema-instance"
DEBTOR = "<gw:debtor><gw:last_name>Muster</gw:last_name></gw:debtor>"
BASE = "<gw:creditor_reference>R-1</gw:creditor_reference><gw:principal_amount>120.50</gw:principal_amount>"
CONTENT = base64.encodebytes(b"%PDF-1.4 " + bytes(range(256)) * 3).decode()  # wrapped at 76 characters


def _claim(inner: str = "", *, head: str = BASE, debtor: str = DEBTOR) -> str:
    return f"<gw:ClaimInput>{head}{debtor}{inner}</gw:ClaimInput>"


FULL = _claim(
    "<gw:currency>EUR</gw:currency><gw:invoice_number>  INV 7  </gw:invoice_number>"
    "<gw:claim_type>service</gw:claim_type><gw:reason><![CDATA[a <b> & c]]> &amp; &#x41;</gw:reason>"
    "<gw:fees><gw:Fee><gw:kind>dunning</gw:kind><gw:amount>5.00</gw:amount><gw:date>2025-03-20</gw:date>"
    "<gw:description>Mahnung</gw:description></gw:Fee><gw:Fee><gw:kind>other</gw:kind><gw:amount>.5</gw:amount>"
    "</gw:Fee></gw:fees>"
    "<gw:interest><gw:kind>fixed</gw:kind><gw:from_date>2025-04-01</gw:from_date><gw:rate>4.25</gw:rate>"
    "</gw:interest>"
    "<gw:payments_received><gw:Payment><gw:amount>10</gw:amount><gw:date>2025-03-10</gw:date>"
    "<gw:reference>P 1 </gw:reference></gw:Payment></gw:payments_received>"
    "<gw:contract_date>2024-12-31</gw:contract_date><gw:invoice_date>2025-03-01</gw:invoice_date>"
    "<gw:due_date>2025-03-15</gw:due_date><gw:first_dunning_date>2025-04-01</gw:first_dunning_date>"
    "<gw:last_dunning_date>2025-05-01</gw:last_dunning_date><gw:default_date>2025-03-16</gw:default_date>"
    "<gw:disputed>true</gw:disputed><gw:memo>Zeile 1\nZeile 2</gw:memo>"
    "<gw:labels><gw:Label> wichtig </gw:Label><gw:Label>   </gw:Label><gw:Label>b2b</gw:Label></gw:labels>"
    "<gw:acknowledgement_date>2025-06-01</gw:acknowledgement_date>"
    "<gw:last_payment_date>2025-03-10</gw:last_payment_date>"
    "<gw:dunning_order_date>2025-07-01</gw:dunning_order_date>"
    "<gw:dunning_order_end_date>2025-08-01</gw:dunning_order_end_date>"
    "<gw:negotiation_start_date>2025-09-01</gw:negotiation_start_date>"
    "<gw:negotiation_end_date>2025-09-30</gw:negotiation_end_date>"
    f"<gw:documents><gw:DocumentUpload><gw:name>rechnung.pdf</gw:name><gw:media_type>application/pdf"
    f"</gw:media_type><gw:kind>invoice</gw:kind><gw:content>{CONTENT}</gw:content></gw:DocumentUpload>"
    "<gw:DocumentUpload><gw:name>leer.pdf</gw:name><gw:media_type>application/pdf</gw:media_type>"
    "<gw:content></gw:content></gw:DocumentUpload></gw:documents>",
    debtor="<gw:debtor><gw:kind>consumer</gw:kind><gw:salutation>ms</gw:salutation><gw:title>Dr.</gw:title>"
           "<gw:first_name> Jürgen </gw:first_name><gw:last_name>Müller</gw:last_name>"
           "<gw:company></gw:company><gw:birth_date>1980-05-17</gw:birth_date>"
           "<gw:customer_number>K-1</gw:customer_number>"
           "<gw:addresses><gw:Address><gw:street>Hauptstraße 12</gw:street><gw:house_number>3a</gw:house_number>"
           "<gw:postal_code>01067</gw:postal_code><gw:city>Köln</gw:city><gw:country>DE</gw:country>"
           "<gw:kind>home</gw:kind><gw:valid_from>2020-01-01</gw:valid_from></gw:Address>"
           "<gw:Address><gw:city>Bonn</gw:city></gw:Address></gw:addresses>"
           "<gw:phones><gw:Phone>+49 221 1</gw:Phone></gw:phones>"
           "<gw:emails><gw:Email>j@example.org</gw:Email><gw:Email>k@example.org</gw:Email></gw:emails>"
           "<gw:bank_accounts><gw:BankAccount><gw:iban>DE89370400440532013000</gw:iban><gw:bic>COBADEFFXXX"
           "</gw:bic><gw:holder>J. M.</gw:holder></gw:BankAccount></gw:bank_accounts></gw:debtor>")

SAMPLES: dict[str, str] = {
    "minimal": _claim(),
    "every field": FULL,
    "padded and empty text": _claim("<gw:invoice_number>   </gw:invoice_number><gw:reason/><gw:memo>\t x \n</gw:memo>",
                                    head="<gw:creditor_reference> SAP-4711 </gw:creditor_reference>"
                                         "<gw:principal_amount> 120.50 </gw:principal_amount>"),
    "decimals": _claim("<gw:fees><gw:Fee><gw:kind>dunning</gw:kind><gw:amount>+5</gw:amount></gw:Fee>"
                       "<gw:Fee><gw:kind>other</gw:kind><gw:amount>0001.500</gw:amount></gw:Fee></gw:fees>",
                       head="<gw:creditor_reference>R</gw:creditor_reference>"
                            "<gw:principal_amount>1000000000000.123</gw:principal_amount>"),
    "dates with a zone": _claim("<gw:invoice_date>2025-03-01Z</gw:invoice_date>"
                                "<gw:due_date>2025-03-15+02:00</gw:due_date>"),
    "leap day": _claim("<gw:invoice_date>2024-02-29</gw:invoice_date>"),
    "booleans 1": _claim("<gw:disputed>1</gw:disputed>"),
    "booleans 0": _claim("<gw:disputed>0</gw:disputed>"),
    "booleans false": _claim("<gw:disputed>false</gw:disputed>"),
    "booleans padded": _claim("<gw:disputed> true </gw:disputed>"),
    "empty arrays and debtor": _claim("<gw:fees/><gw:labels></gw:labels>", debtor="<gw:debtor/>"),
    "nil members": _claim('<gw:currency xsi:nil="true"/><gw:fees xsi:nil="1"/><gw:interest xsi:nil="true"/>'
                          '<gw:due_date xsi:nil="true"/><gw:disputed xsi:nil="true"/>'
                          '<gw:memo xsi:nil="false">kept? spyne says nil</gw:memo>'),
    "nil items": _claim('<gw:fees><gw:Fee xsi:nil="true"/></gw:fees>'
                        '<gw:labels><gw:Label xsi:nil="true"/><gw:Label>x</gw:Label></gw:labels>'),
    "nil debtor parts": _claim(debtor='<gw:debtor><gw:addresses xsi:nil="true"/>'
                                      '<gw:emails><gw:Email xsi:nil="true"/></gw:emails></gw:debtor>'),
    "comments between members": _claim("<!-- a --><gw:memo>m</gw:memo><!-- b -->",
                                       debtor="<gw:debtor><!-- c --><gw:last_name>M</gw:last_name></gw:debtor>"),
    "a comment inside a text": _claim("<gw:memo>ab<!-- x -->cd</gw:memo>"),
    "a comment in an array": _claim("<gw:labels><!-- x --><gw:Label>a</gw:Label></gw:labels>"),
    "a processing instruction": _claim("<?pi data?><gw:memo>m</gw:memo>"),
    "xsi:type": _claim(debtor='<gw:debtor xsi:type="gw:Debtor"><gw:last_name>M</gw:last_name></gw:debtor>'),
    "xsi:schemaLocation": _claim('<gw:memo xsi:schemaLocation="urn:x y">m</gw:memo>'),
}
# read without any of spyne's code (every field but the documents' base64, and plain dates)
FAST = {"minimal", "padded and empty text", "decimals", "leap day", "booleans 1", "booleans padded",
        "empty arrays and debtor", "nil members", "nil items", "comments between members", "a comment inside a text"}


@pytest.fixture(scope="module", params=["v1", "v2"])
def protocol(request: Any) -> tuple[Any, Any, str]:
    application = build_application(None) if request.param == "v1" else build_application_v2(None)  # type: ignore[arg-type]
    (service,) = [s for s in application.services if "SubmitClaims" in s.public_methods]
    return application.in_protocol, _claim_type(service), f"urn:inkasso-gateway:soap:{request.param}"


def _element(xml: str, ns: str) -> Any:
    root = etree.fromstring(f'<root xmlns:gw="{ns}" xmlns:xsi="{XSI}">{xml}</root>')
    return root[0]


def _outcome(read: Any) -> Any:
    try:
        return "ok", repr(to_plain(read()))
    except Exception as exc:  # both must fail alike
        return "error", type(exc).__name__


@pytest.mark.parametrize("name", list(SAMPLES))
def test_the_reader_gives_what_spyne_and_to_plain_gave(protocol: tuple[Any, Any, str], name: str) -> None:
    p, cls, ns = protocol
    element = _element(SAMPLES[name], ns)
    if not p.validation_schema.validate(element):
        pytest.skip(f"not valid in this version's schema: {p.validation_schema.error_log[0].message}")
    mine = _outcome(lambda: p.from_element(None, cls, _element(SAMPLES[name], ns)))
    spyne = _outcome(lambda: p.complex_from_element(None, cls, _element(SAMPLES[name], ns)))
    assert mine == spyne


@pytest.mark.parametrize("name", sorted(FAST))
def test_the_usual_claims_are_read_without_spyne(protocol: tuple[Any, Any, str], name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    p, cls, ns = protocol
    element = _element(SAMPLES[name], ns)
    if not p.validation_schema.validate(element):
        pytest.skip("not valid in this version's schema")
    reader = claim_reader.ClaimReader(p, cls)
    monkeypatch.setattr(p, "from_element", lambda *a: pytest.fail("spyne was asked to read a value"))
    assert isinstance(reader.read(None, element), dict)


def test_the_unusual_claims_are_left_to_spyne(protocol: tuple[Any, Any, str]) -> None:
    p, cls, ns = protocol
    for name in ("a comment in an array", "a processing instruction", "xsi:type", "xsi:schemaLocation"):
        with pytest.raises(claim_reader.Unusual):
            claim_reader.ClaimReader(p, cls).read(None, _element(SAMPLES[name], ns))


def test_the_endpoint_reads_submit_claims_claims_with_the_reader(protocol: tuple[Any, Any, str]) -> None:
    p, cls, _ = protocol
    assert p.deserialization_handlers[cls] != p.complex_from_element

"""Value profiles of ``mapping suggest``: what a column holds, and which fields it may fill."""

from __future__ import annotations

import pytest

from gateway.mapping.suggest import _date_formats, normalize
from gateway.mapping.suggest_profile import classify, fits, is_party_type, legal_share


def kind(values: list[str], header: str = "x") -> str:
    return classify(values, normalize(header), _date_formats)[0]


@pytest.mark.parametrize(("values", "expected"), [
    (["DE89370400440532013000", "DE02120300000000202051"], "iban"),
    (["a@example.de", "b@example.org"], "email"),
    (["01.02.2025", "28.02.2025"], "date"),
    (["Privat", "Firma", "Privat"], "partytype"),
    (["P", "F"], "partytype"),
    (["EUR", "CHF", "EUR"], "currency"),
    (["Deutschland", "Österreich", "NL"], "country"),
    (["+49 221 4711001", "0351 998877"], "phone"),
    (["1.234,50", "12,00"], "amount"),
    (["Müller, Jürgen", "von Berg, Lena"], "fullname"),
    (["50667 Köln", "D-10115 Berlin"], "plz_city"),
    (["Hauptstraße 12a", "Am Markt 1", "Weg 7/1"], "street_no"),
    (["Musterstr. 12a, 12345 Musterstadt", "Am Markt 1, 01067 Dresden"], "address"),
    (["3", "12", "7"], "integer"),
    (["Krone", "Füllung"], "text"),
    ([], "empty"),
])
def test_classify(values: list[str], expected: str) -> None:
    assert kind(values) == expected


def test_a_country_column_of_licence_plate_letters_needs_its_header() -> None:
    assert kind(["D", "A", "D"], "Land") == "country" and kind(["D", "A", "D"], "Note") != "country"


@pytest.mark.parametrize(("target", "header", "values", "ok"), [
    ("fees.other", "Kostenstelle", ["5100", "5200"], False),    # a cost centre is no fee
    ("fees.other", "Kosten", ["5100", "5200"], True),           # (in a spreadsheet: numbers are numbers)
    ("currency", "Whg.", ["3", "12"], False),                   # flat numbers, not currency codes
    ("currency", "Währung", ["EUR"], True),
    ("debtor.customer_number", "customer_type", ["private", "business"], False),
    ("payments.amount", "paid", ["12,50"], True),
    ("principal_amount", "Kontostand", ["12,50"], True),
    ("principal_amount", "Kunden-Nr", ["12,50"], False),
    ("debtor.house_number", "Nr", ["D300", "D301"], False),
    ("fees.dunning", "Mahnstufe", ["1", "2", "3"], False),      # a dunning level is no fee
    ("debtor.house_number", "Nr", ["12a", "3-5", "7"], True),
    ("debtor.iban", "IBAN", ["DE89370400440532013000", "DE00123456780000000000", "DE02120300000000202051"], True),
])
def test_fits(target: str, header: str, values: list[str], ok: bool) -> None:
    k = kind(values, header)
    assert fits(target, k, values, [normalize(header)], sheet=True) is ok


def test_persons_and_companies() -> None:
    assert [is_party_type(v) for v in ("Privat", "FIRMA", "b2b", "Kunde")] == ["consumer", "business", "business", None]
    assert legal_share(["Nordlicht GmbH", "Bäckerei Sonnenschein e.K.", "Weber & Söhne KG", "Müller, Jürgen"]) == 0.75

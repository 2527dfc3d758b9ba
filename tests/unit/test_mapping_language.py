"""The mapping language: transforms, built-in maps, conditions, policy, grouping, load-time errors."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from gateway.domain.findings import Severity
from gateway.domain.model import ClaimType, Salutation
from gateway.errors import ConfigError, InputError
from gateway.mapping import MappedRow, compile_mapping, parse_mapping
from gateway.mapping.text import named_split, separator_split
from gateway.readers import SourceRow

BASE = """
version: 1
client: t
format: {type: csv, delimiter: ";", decimal_separator: ",", date_formats: ["%d.%m.%Y", "%d.%m.%y"]}
"""


def spec_of(fields: str, extra: str = ""):  # type: ignore[no-untyped-def]
    return parse_mapping(BASE + "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n" + fields + extra,
                         file="t.yaml")


def map_rows(fields: str, header: list[str], rows: list[list[str]], extra: str = "") -> list[MappedRow]:
    spec = spec_of(fields, extra)
    mapper = compile_mapping(spec, ["Ref", "Betrag", *header], file="f.csv")
    return list(mapper.map_rows((SourceRow(i + 2, ["R" + str(i), "10,00", *r]) for i, r in enumerate(rows)), "t"))


def one(fields: str, header: list[str], row: list[str], extra: str = "") -> MappedRow:
    return map_rows(fields, header, [row], extra)[0]


@pytest.mark.parametrize(("text", "street", "number"), [
    ("Musterstr. 12a", "Musterstr.", "12a"), ("Am Hang 3-5", "Am Hang", "3-5"), ("Hauptstraße 12 b", "Hauptstraße", "12 b"),
    ("Weg 7/1", "Weg", "7/1"), ("Straße des 17. Juni 4", "Straße des 17. Juni", "4"), ("Marktplatz", "Marktplatz", ""),
])
def test_split_street(text: str, street: str, number: str) -> None:
    assert (named_split("street")(text), named_split("house_number")(text)) == (street, number)


@pytest.mark.parametrize(("text", "last", "first"), [
    ("Muster, Max", "Muster", "Max"), ("Max Muster", "Muster", "Max"), ("von Bülow, Vicco", "von Bülow", "Vicco"),
    ("Cher", "Cher", ""),
])
def test_split_name(text: str, last: str, first: str) -> None:
    assert (named_split("last_name")(text), named_split("first_name")(text)) == (last, first)


@pytest.mark.parametrize(("text", "code", "city"), [
    ("12345 Berlin", "12345", "Berlin"), ("D-01067 Dresden", "01067", "Dresden"), ("A-1010 Wien", "1010", "Wien"),
    ("8001 Zürich", "8001", "Zürich"), ("Berlin", "", "Berlin"), ("1234 AB Amsterdam", "1234 AB", "Amsterdam"),
])
def test_split_postcode_city(text: str, code: str, city: str) -> None:
    assert (named_split("postal_code")(text), named_split("city")(text)) == (code, city)


def test_separator_split() -> None:
    assert separator_split("/", -1)("a / b / c") == "c"
    assert separator_split("/", 5)("a/b") == ""


def test_transforms_in_a_mapping() -> None:
    fields = """
  debtor.last_name: {column: Name, split: last_name, case: title}
  debtor.first_name: {column: Name, split: first_name, case: title}
  debtor.street: {column: Adresse, split: street}
  debtor.house_number: {column: Adresse, split: house_number}
  debtor.postal_code: {column: Ort, split: postal_code}
  debtor.city: {column: Ort, split: city, case: upper}
  debtor.email: {column: Mail, case: lower}
  invoice_number: {column: Text, regex: "Rechnung (\\\\d+)"}
  debtor.customer_number: {column: Text, split: {separator: "|", index: 1}}
"""
    m = one(fields, ["Name", "Adresse", "Ort", "Mail", "Text"],
            ["MÜLLER-LÜDENSCHEIDT, HANS", "Musterstr. 12a", "12345 Berlin", "A@B.DE", "Rechnung 4711 | K-9"])
    assert m.claim is not None, m.findings
    d = m.claim.debtor
    assert (d.last_name, d.first_name) == ("Müller-Lüdenscheidt", "Hans")
    a = d.addresses[0]
    assert (a.street, a.house_number, a.postal_code, a.city) == ("Musterstr.", "12a", "12345", "BERLIN")
    assert d.emails == ["a@b.de"]
    assert m.claim.invoice_number == "4711"
    assert d.customer_number == "K-9"


def test_regex_without_match_is_empty_then_default() -> None:
    m = one('  invoice_number: {column: Text, regex: "INV-\\\\d+", default: "none"}\n', ["Text"], ["no number"])
    assert m.claim is not None and m.claim.invoice_number == "none"


def test_implied_decimals_and_year_pivot() -> None:
    fields = """
  fees.dunning: {column: Cent, implied_decimals: 2}
  debtor.last_name: N
  debtor.birth_date: {column: Geb, year_pivot: 27}
  invoice_date: Datum
"""
    rows = map_rows(fields, ["Cent", "N", "Geb", "Datum"], [["1250", "X", "03.04.85", "01.02.25"],
                                                            ["12,50", "X", "03.04.12", ""]])
    assert rows[0].claim is not None
    assert rows[0].claim.fees[0].amount == Decimal("12.50")
    assert rows[0].claim.debtor.birth_date == date(1985, 4, 3)
    assert rows[0].claim.invoice_date == date(2025, 2, 1)  # the file default pivot (69)
    assert rows[1].claim is None and rows[1].findings[0].column == "Cent"
    assert "minor units" in rows[1].findings[0].message


def test_builtin_maps() -> None:
    fields = """
  debtor.country: {column: Land, map: country}
  debtor.salutation: {column: Anrede, map: salutation}
  claim_type: {column: Art, map: claim_type, map_default: other}
  debtor.last_name: N
  debtor.city: N
"""
    header = ["Land", "Anrede", "Art", "N"]
    rows = map_rows(fields, header, [["Österreich", "Herrn", "Mitgliedsbeitrag", "X"], ["niederlande", "Frau", "??", "X"],
                                     ["CH", "Fa.", "Ware", "X"], ["Atlantis", "Herr", "Ware", "X"]])
    got = [(r.claim.debtor.addresses[0].country, r.claim.debtor.salutation, r.claim.claim_type)
           for r in rows[:3] if r.claim]
    assert got == [("AT", Salutation.MR, ClaimType.SERVICE), ("NL", Salutation.MS, ClaimType.OTHER),
                   ("CH", Salutation.COMPANY, ClaimType.GOODS)]
    # an unknown country name passes through and is refused by the rules, not silently dropped
    assert rows[3].claim is not None and rows[3].claim.debtor.addresses[0].country == "ATLANTIS"


def test_when_and_else() -> None:
    fields = """
  debtor.company: {column: Name, when: {column: Typ, equals: F}}
  debtor.last_name:
    column: Name
    when: {column: Typ, in: [P, p]}
    else: {column: Ansprechpartner, when: {column: Typ, equals: F}}
  memo: {const: "Lastschrift", when: {column: Zahlart, matches: "(?i)^LS"}, else: {const: "Überweisung"}}
"""
    header = ["Typ", "Name", "Ansprechpartner", "Zahlart"]
    rows = map_rows(fields, header, [["P", "Muster", "", "LS-SEPA"], ["F", "ACME GmbH", "Frau Roth", "Überw."]])
    assert rows[0].claim and rows[1].claim
    assert (rows[0].claim.debtor.company, rows[0].claim.debtor.last_name, rows[0].claim.memo) == (
        None, "Muster", "Lastschrift")
    assert (rows[1].claim.debtor.company, rows[1].claim.debtor.last_name, rows[1].claim.memo) == (
        "ACME GmbH", "Frau Roth", "Überweisung")


def test_required_field_whose_condition_fails_is_a_finding() -> None:
    spec = parse_mapping(BASE + """fields:
  creditor_reference: Ref
  principal_amount: {column: Betrag, when: {column: Art, equals: R}}
""", file="t.yaml")
    mapper = compile_mapping(spec, ["Ref", "Betrag", "Art"], file="f.csv")
    ok, missing = mapper.map_rows([SourceRow(2, ["A", "1,00", "R"]), SourceRow(3, ["B", "1,00", "G"])], "t")
    assert ok.claim is not None and ok.claim.principal_amount == Decimal("1.00")
    assert missing.claim is None and [(f.code, f.column, f.row) for f in missing.findings] == [
        ("missing_field", "Betrag", 3)]


@pytest.mark.parametrize(("cond", "value", "holds"), [
    ("{column: S, not_equals: x}", "y", True), ("{column: S, not_in: [a, b]}", "a", False),
    ("{column: S, empty: true}", "  ", True), ("{column: S, empty: false}", "", False),
    ("{column: S, equals: OFFEN, ignore_case: true}", " offen ", True), ("{column: S, equals: '01'}", "01", True),
])
def test_conditions(cond: str, value: str, holds: bool) -> None:
    m = one(f"  memo: {{const: yes, when: {cond}}}\n", ["S"], [value])
    assert m.claim is not None and (m.claim.memo == "yes") is holds


def test_policy_hold_when_and_partner_rules() -> None:
    extra = """
policy:
  partner: inland
  hold_when: {column: Status, equals: Raten}
  partners:
    - {when: {column: Land, equals: AT}, partner: austria}
    - {when: {column: Land, not_in: [DE, ""]}, partner: abroad}
"""
    rows = map_rows("  debtor.last_name: N\n", ["N", "Status", "Land"],
                    [["X", "", "DE"], ["X", "Raten", "AT"], ["X", "", "FR"]], extra)
    assert [r.claim.partner_id for r in rows if r.claim] == ["inland", "austria", "abroad"]
    assert [[f.code for f in r.findings if f.severity is Severity.HOLD] for r in rows] == [[], ["awaiting_release"], []]


def test_group_invoices() -> None:
    fields = """
  debtor.last_name: N
  invoice_number: Nr
  invoice_date: Datum
  fees.dunning: Mahn
"""
    extra = "group: {by: Kd, mode: invoices}\n"
    rows = map_rows(fields, ["Kd", "N", "Nr", "Datum", "Mahn"],
                    [["1", "A", "I1", "05.02.2025", "2,50"], ["1", "A", "I2", "01.02.2025", ""],
                     ["2", "B", "I3", "01.03.2025", ""], ["", "C", "I4", "", ""], ["", "D", "I5", "", ""]], extra)
    assert [r.row for r in rows] == [2, 4, 5, 6]  # empty keys never group
    claim = rows[0].claim
    assert claim is not None
    assert claim.principal_amount == Decimal("20.00") and claim.total_open_amount == Decimal("22.50")
    assert [(i.number, i.amount, i.date) for i in claim.invoices] == [
        ("I1", Decimal("10.00"), date(2025, 2, 5)), ("I2", Decimal("10.00"), date(2025, 2, 1))]
    assert claim.invoice_date == date(2025, 2, 1)  # the earliest


def test_group_of_two_currencies_is_rejected() -> None:
    rows = map_rows("  currency: Whg\n", ["Kd", "Whg"], [["1", "EUR"], ["1", "CHF"]], "group: {by: Kd}\n")
    assert len(rows) == 1 and rows[0].claim is None
    assert [f.code for f in rows[0].findings] == ["group_rejected"] and "CHF and EUR" in rows[0].findings[0].message


def test_group_claims_share_the_first_debtor() -> None:
    extra = "group: {by: [Kd], mode: claims}\n"
    rows = map_rows("  debtor.last_name: N\n", ["Kd", "N"], [["1", "Erster"], ["1", ""], ["2", "Zweiter"]], extra)
    assert [r.claim.debtor.last_name for r in rows if r.claim] == ["Erster", "Erster", "Zweiter"]


def test_group_key_missing_from_header() -> None:
    spec = spec_of("", "group: {by: Kunde}\n")
    mapper = compile_mapping(spec, ["Ref", "Betrag"], file="f.csv")
    with pytest.raises(InputError, match="Kunde"):
        list(mapper.map_rows([SourceRow(2, ["R", "1"])], "t"))


@pytest.mark.parametrize(("fields", "line", "key", "expected"), [
    ("  debtor.city: {column: Ort, split: town}\n", 8, "fields.debtor.city.split", "expected one of street"),
    ("  debtor.city: {column: Ort, case: shout}\n", 8, "fields.debtor.city.case", "shout"),
    ("  memo: {column: M, regex: '(a'}\n", 8, "fields.memo.regex", "not a valid regular expression"),
    ("  memo: {column: M, regex: '(a)(b)'}\n", 8, "fields.memo.regex", "at most one group"),
    ("  debtor.city: {column: Ort, map: country}\n", 8, "fields.debtor.city.map", "for debtor.country"),
    ("  debtor.country: {column: L, map: planets}\n", 8, "fields.debtor.country.map", "built-in map"),
    ("  memo: {column: M, implied_decimals: 2}\n", 8, "fields.memo.implied_decimals", "amount fields only"),
    ("  due_date: {column: D, year_pivot: 200}\n", 8, "fields.due_date.year_pivot", "0 to 100"),
    ("  memo:\n    column: M\n    when: {column: S, equals: a, in: [b]}\n", 10, "fields.memo.when",
     "exactly one of equals"),
    ("  memo: {column: M, else: {const: x}}\n", 8, "fields.memo.else", "needs a 'when'"),
    ("  memo:\n    column: M\n    when: {column: S, equals: a}\n    else: {const: x, colour: red}\n", 11,
     "fields.memo.else.colour", "unknown key"),
])
def test_wrong_options_name_file_line_key(fields: str, line: int, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec_of(fields)
    assert (err.value.file, err.value.key) == ("t.yaml", key)
    assert err.value.line == line, str(err.value)
    assert expected in str(err.value)


@pytest.mark.parametrize(("extra", "key", "expected"), [
    ("policy:\n  hold_when: {column: S}\n", "policy.hold_when", "exactly one of"),
    ("policy:\n  partners:\n    - {when: {column: S, equals: a}}\n", "policy.partners.0", "'partner' is required"),
    ("group: {by: Kd, mode: debtors}\n", "group.mode", "expected one of: invoices, claims"),
    ("group: {mode: claims}\n", "group", "'by' is required"),
])
def test_wrong_policy_and_group(extra: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec_of("", extra)
    assert err.value.key == key and expected in str(err.value), str(err.value)

"""The generated row function maps every row exactly as the careful path does.

``RowMapper.map_row`` is a function generated per mapping and header (``gateway.mapping.rowcode``);
it hands any row with a problem to ``map_row_careful``. These tests map the rows of every mapping in
``mappings/`` and ``tests/fixtures`` (each cell also replaced by awkward values) both ways and
compare the results field by field (``repr`` tells Decimal('5.00') from Decimal('5.0') and an enum
from its string), and check that a clean row really takes the generated path.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from gateway.domain.findings import Severity
from gateway.mapping import MappingSpec, RowMapper, compile_mapping, load_mapping, parse_mapping
from gateway.mapping.engine import date_columns
from gateway.readers import SourceRow, open_reader

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def _cases() -> list[tuple[Path, Path]]:
    cases = [(REPO / "mappings" / "demo.yaml", REPO / "examples" / "demo.csv")]
    for folder in sorted(FIXTURES.iterdir()):
        if (folder / "mapping.yaml").is_file():
            cases += [(folder / "mapping.yaml", f) for f in sorted(folder.glob("input*")) if ".expected." not in f.name]
    onboarding = FIXTURES / "onboarding"
    for mapping in sorted(onboarding.glob("mapping_*.yaml")):
        name = mapping.stem.removeprefix("mapping_")
        cases += [(mapping, f) for f in sorted(onboarding.glob(f"{name}.*")) if f.suffix != ".json"
                  and ".expected." not in f.name and not f.name.endswith("_satzbeschreibung.txt")]
    return cases


AWKWARD = ["", " ", "x", "00.00.0000", "31.02.2025", "1.234,56", "-5", "0", "0,00", "12,50-", "-12,50-", "Firma",
           "ja", "Herr", "FRAU", "Deutschland", "2025-01-31", "12.3.25", "DE89 3704 0044 0532 0130 00", "K-12",
           "EUR 12,50", "1,234.56", "ratenzahlung", "AT", "  pad  ", "Muster, Max", "Hauptstr. 12a", "12345 Berlin",
           "nein", "service", "fixed", "x" * 150]


def variants(rows: list[SourceRow], width: int, seed: int = 5) -> list[SourceRow]:
    """The rows, then each of the first rows with single cells and cell triples replaced, and misfits."""
    rnd = random.Random(seed)
    out = list(rows)
    for src in rows[:12]:
        for c in range(len(src.values)):
            for value in rnd.sample(AWKWARD, 5):
                out.append(SourceRow(src.row, [value if i == c else v for i, v in enumerate(src.values)]))
        for _ in range(12):
            values = list(src.values)
            for c in rnd.sample(range(len(values)), min(3, len(values))):
                values[c] = rnd.choice(AWKWARD + [r.values[c] for r in rows if c < len(r.values)])
            out.append(SourceRow(src.row, values, src.sheet, src.xpath))
        out += [SourceRow(src.row, src.values[:-1]), SourceRow(src.row, src.values + ["", " "]),
                SourceRow(src.row, src.values + ["x"]), SourceRow(src.row, [""] * width)]
    return out


def assert_same(mapper: RowMapper, rows: list[SourceRow]) -> None:
    for src in rows:
        fast, careful = mapper.map_row(src, "c"), mapper.map_row_careful(src, "c")
        assert repr(fast) == repr(careful), src.row


@pytest.mark.parametrize(("mapping", "data"), _cases(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_generated_and_careful_paths_agree(mapping: Path, data: Path) -> None:
    spec = load_mapping(mapping)
    with open_reader(data, spec.format, date_columns=date_columns(spec)) as reader:
        mapper = compile_mapping(spec, reader.header, file=reader.file, header_row=reader.header_row)
        rows = list(reader)
    assert mapper.row_source is not None  # every mapping we ship gets its generated function
    assert_same(mapper, variants(rows, len(reader.header)))


EVERYTHING = """\
client: all
format: {delimiter: ";", decimal_separator: ",", date_formats: ["%d.%m.%Y"]}
fields:
  creditor_reference: {columns: [Ref, Nr], join: "-"}
  invoice_number: {column: Nr, trim: false}
  claim_type: {column: Typ, map: claim_type, default: goods}
  reason: {column: Grund, regex: "^(\\\\w+)", case: upper}
  principal_amount: {columns: [Betrag, Betrag2], sum: true}
  currency: {column: Whg, default: EUR}
  contract_date: {column: Datum1, format: "%d.%m.%y", year_pivot: 30}
  disputed: Strittig
  labels: Labels
  partner_id: Partner
  fees.dunning: {column: Geb1, format: "1234.56"}
  fees.dunning_date: Datum2
  fees.return_debit: {column: Geb2, implied_decimals: 2}
  fees.other: Geb3
  interest.kind: {column: ZinsArt, map: {B2C: statutory_b2c, FIX: fixed}, map_default: fixed}
  interest.from_date: Datum2
  interest.rate: Zins
  payments.amount: Zahlung
  payments.date: ZDatum
  payments.reference: {column: ZRef, zero_pad: 6}
  debtor.kind: {column: Art, map: {P: consumer, F: business}, map_ignore_case: true}
  debtor.salutation: {column: Anrede, map: salutation}
  debtor.first_name: {column: Name, split: first_name}
  debtor.last_name: {column: Name, split: last_name, required: true}
  debtor.company: {column: Firma, when: {column: Art, in: [F, f]}}
  debtor.legal_form: {column: Firma, split: {separator: " ", index: -1}}
  debtor.birth_date: {column: Datum1, format: ["%d.%m.%y", "%d.%m.%Y"]}
  debtor.street: {column: Str, split: street}
  debtor.house_number: {column: Str, split: house_number}
  debtor.postal_code: {column: Ort, split: postal_code, zero_pad: 5}
  debtor.city: {column: Ort, split: city, case: title}
  debtor.country: {column: Land, map: country}
  debtor.phone: Tel
  debtor.email: {column: Mail, case: lower}
  debtor.iban: {column: IBAN, when: {column: Status, not_equals: ohne}, else: {column: IBAN2}}
  debtor.bic: BIC
  debtor.account_holder: Inhaber
policy:
  hold_when: {column: Status, in: [halt, stop], ignore_case: true}
  partner: default-p
  partners:
    - when: {column: Land, not_in: ["", DE]}
      partner: intl
"""
COLUMNS: dict[str, list[str]] = {
    "Ref": ["R-1", "", " R-9 "], "Nr": ["A", "", " x "], "Typ": ["Ware", "Miete", "", "bogus"],
    "Grund": ["Miete Jan", "", "!!"], "Betrag": ["12,50", "1.234,56", "", "0", "abc"], "Betrag2": ["", "1,00"],
    "Whg": ["EUR", "", "chf"], "Datum1": ["01.02.85", "", "00.00.00", "30.02.20"], "Strittig": ["", "ja", "x", "?"],
    "Labels": ["", "a;b", ";"], "Partner": ["", "p1"], "Geb1": ["", "5.00", "0.00", "1,5"],
    "Datum2": ["01.03.2025", "", "31.04.2025"], "Geb2": ["", "500", "12a"], "Geb3": ["", "1,00", "0,00"],
    "ZinsArt": ["", "B2C", "zzz"], "Zins": ["", "5,12"], "Zahlung": ["", "10,00", "0,00"],
    "ZDatum": ["", "02.02.2025"], "ZRef": ["", "12"], "Art": ["P", "", "f", "Q"],
    "Anrede": ["Herr", "", "Firma", "Hund"], "Name": ["Muster, Max", "Max Muster", "", "Solo"],
    "Firma": ["", "Acme GmbH"], "Str": ["Hauptstr. 12a", "", "Nowhere"], "Ort": ["12345 Berlin", "", "1010 Wien"],
    "Land": ["", "DE", "Österreich", "xx"], "Tel": ["", "0221 1"], "Mail": ["", "A@B.DE"],
    "IBAN": ["DE89 3704 0044 0532 0130 00", ""], "IBAN2": ["", "AT61 1904 3002 3457 3201"], "BIC": ["", "COBADEFFXXX"],
    "Inhaber": ["", "M. Muster"], "Status": ["ok", "", "HALT", "ohne"],
}


def _everything() -> tuple[MappingSpec, list[str], list[SourceRow]]:
    rnd = random.Random(11)
    header = list(COLUMNS)
    rows = []
    for i in range(600):
        spread = 3.0 if i % 2 else 0.8  # half the rows mostly clean, half with many odd values
        rows.append(SourceRow(i + 2, [vs[min(int(rnd.expovariate(spread)), len(vs) - 1)] for vs in COLUMNS.values()]))
    return parse_mapping(EVERYTHING, file="all.yaml"), header, rows


def test_every_target_and_option_agree() -> None:
    spec, header, rows = _everything()
    mapper = compile_mapping(spec, header, file="all.csv")
    assert mapper.row_source is not None
    assert_same(mapper, variants(rows, len(header)))
    assert sum(m.claim is not None and not m.findings for m in map(mapper.map_row, rows, ["c"] * len(rows))) > 30


def test_a_clean_row_takes_the_generated_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    careful = RowMapper.map_row_careful

    def counted(self: RowMapper, src: SourceRow, client_id: str) -> Any:
        calls.append(src.row)
        return careful(self, src, client_id)
    monkeypatch.setattr(RowMapper, "map_row_careful", counted)
    spec, header, rows = _everything()
    mapper = compile_mapping(spec, header, file="all.csv")
    results = [mapper.map_row(src, "c") for src in rows]
    # rows without a problem (a hold is an outcome, not a problem) never reach the careful path ...
    clean = [m.row for m in results if m.claim is not None and all(f.severity is Severity.HOLD for f in m.findings)]
    assert clean and not set(clean) & set(calls)
    assert [m for m in results if m.row in clean and m.findings]  # (held ones among them)
    assert set(calls) == {m.row for m in results} - set(clean)  # ... and every other row does


def test_the_generated_source_holds_no_value_of_the_mapping_or_file() -> None:
    spec, header, _ = _everything()
    source = compile_mapping(spec, header, file="all.csv").row_source
    assert source is not None
    assert "'" not in source and '"' not in source  # no literal at all: values are bound, never written
    assert not [name for name in header if len(name) > 4 and name in source]

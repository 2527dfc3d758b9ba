import csv
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.domain import findings as codes
from gateway.domain.findings import Severity
from gateway.domain.model import AddressKind, ClaimType, DebtorKind, FeeKind, InterestKind, Salutation
from gateway.domain.rules import validate_claim
from gateway.errors import ConfigError, InputError
from gateway.mapping import MappedRow, MappingSpec, RowMapper, compile_mapping, load_mapping, parse_mapping
from gateway.readers import SourceRow, open_reader

REPO = Path(__file__).resolve().parents[2]
DEMO_CSV = REPO / "examples" / "demo.csv"
TODAY = date(2026, 11, 23)

HEADER = ["Rechnungsnr", "Kundennr", "Anrede", "Vorname", "Nachname", "Firma", "Geburtsdatum", "Strasse",
          "Hausnr", "PLZ", "Ort", "Land", "E-Mail", "Telefon", "IBAN", "Rechnungsdatum", "Faellig", "Betrag",
          "Mahngebuehr", "Mahndatum", "Bemerkung"]
ROW = ["RE-1", "K-1", "Herr", "Jürgen", "Müller", "", "14.03.1978", "Hauptstraße", "12", "50667", "Köln", "DE",
       "j.mueller@example.de", "0221 1234567", "DE89 3704 0044 0532 0130 00", "15.01.2025", "29.01.2025",
       "1.234,56", "5,00", "12.02.2025", "Beitrag; Januar"]


@pytest.fixture(scope="module")
def demo_spec() -> MappingSpec:
    return load_mapping(REPO / "mappings" / "demo.yaml")


def map_file(path: Path, spec: MappingSpec) -> tuple[RowMapper, list[MappedRow]]:
    with open_reader(path, spec.format) as reader:
        mapper = compile_mapping(spec, reader.header, file=reader.file, header_row=reader.header_row)
        return mapper, [mapper.map_row(src, "demo") for src in reader]


def write_csv(path: Path, rows: list[list[str]], encoding: str) -> Path:
    with open(path, "w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=";", lineterminator="\r\n").writerows(rows)
    return path


def with_format(spec: MappingSpec, **options: object) -> MappingSpec:
    import msgspec
    return msgspec.structs.replace(spec, format=msgspec.structs.replace(spec.format, **options))


# ---------------------------------------------------------------- the demo file end to end

def test_demo_file_end_to_end(demo_spec: MappingSpec) -> None:
    mapper, rows = map_file(DEMO_CSV, demo_spec)
    assert len(rows) == 12
    # RE-2025-0008 has a note with a line break inside quotes: it spans lines 9-10.
    assert [r.row for r in rows] == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]
    assert sum(r.claim is not None for r in rows) == 10
    assert [r.reference for r in rows].count("RE-2025-0002") == 2  # the in-file duplicate is the service's job

    by_ref = {r.reference: r for r in rows if r.reference != "RE-2025-0002"}
    bad_amount = by_ref["RE-2025-0006"]
    assert bad_amount.claim is None
    assert [(f.code, f.field, f.column, f.row) for f in bad_amount.findings] == [
        (codes.INVALID_AMOUNT, "principal_amount", "Betrag", 7)]
    assert "'12,3x' is not an amount" in bad_amount.findings[0].for_client()
    bad_date = by_ref["RE-2025-0007"]
    assert [(f.code, f.field, f.column, f.row) for f in bad_date.findings] == [
        (codes.INVALID_DATE, "invoice_date", "Rechnungsdatum", 8)]

    first = by_ref["RE-2025-0001"].claim
    assert first is not None
    assert first.principal_amount == Decimal("1234.56")
    assert first.fees[0].kind is FeeKind.DUNNING and first.fees[0].amount == Decimal("5.00")
    assert first.fees[0].date == date(2025, 2, 12)
    assert first.total_open_amount == Decimal("1239.56")
    assert first.claim_type is ClaimType.SERVICE and first.currency == "EUR"
    assert first.debtor.salutation is Salutation.MR
    assert (first.debtor.first_name, first.debtor.last_name) == ("Jürgen", "Müller")
    assert first.debtor.addresses[0].street == "Hauptstraße"
    assert first.debtor.addresses[0].city == "Köln"
    assert first.debtor.birth_date == date(1978, 3, 14)
    assert first.debtor.phones == ["0221 1234567"]
    assert first.debtor.bank_accounts[0].iban == "DE89370400440532013000"

    company = by_ref["RE-2025-0003"].claim
    assert company is not None
    assert company.debtor.kind is DebtorKind.BUSINESS
    assert company.debtor.company == "Bäckerei Weiß GmbH"
    assert company.debtor.addresses[0].kind is AddressKind.BUSINESS

    note = by_ref["RE-2025-0008"].claim
    assert note is not None and note.memo == "Ratenzahlung abgelehnt; Kunde bittet\r\num Rückruf"
    assert by_ref["RE-2025-0010"].claim is not None
    assert by_ref["RE-2025-0010"].claim.debtor.addresses[0].country == "AT"  # mapped from "Österreich"
    assert by_ref["RE-2025-0011"].claim is not None
    assert by_ref["RE-2025-0011"].claim.debtor.addresses[0].country == "DE"  # empty -> default


def test_rule_findings_point_at_the_clients_columns(demo_spec: MappingSpec) -> None:
    mapper, rows = map_file(DEMO_CSV, demo_spec)
    located = {}
    for r in rows:
        if r.claim is not None:
            for f in mapper.locate(validate_claim(r.claim, TODAY), r.row, r.claim):
                located[(r.reference, f.code)] = (f.column, f.row, f.severity)
    assert located[("RE-2025-0004", codes.DEBTOR_MINOR)] == ("Geburtsdatum", 5, Severity.HOLD)
    assert located[("RE-2025-0005", codes.INVALID_IBAN)] == ("IBAN", 6, Severity.ERROR)
    clean = {"RE-2025-0001", "RE-2025-0002", "RE-2025-0003", "RE-2025-0008", "RE-2025-0010", "RE-2025-0011",
             "RE-2025-0012"}
    assert not [k for k in located if k[0] in clean and located[k][2] is not Severity.WARNING]


def test_column_for_maps_rule_paths_back(demo_spec: MappingSpec) -> None:
    mapper = compile_mapping(demo_spec, HEADER, file="x.csv")
    claim = mapper.map_row(SourceRow(row=2, values=ROW), "demo").claim
    assert mapper.column_for("principal_amount") == "Betrag"
    assert mapper.column_for("total_open_amount") == "Betrag"
    assert mapper.column_for("debtor.addresses[0].postal_code") == "PLZ"
    assert mapper.column_for("debtor.addresses") == "Strasse"
    assert mapper.column_for("debtor.bank_accounts[0].iban") == "IBAN"
    assert mapper.column_for("debtor.emails[0]") == "E-Mail"
    assert mapper.column_for("fees[0].amount", claim) == "Mahngebuehr"
    assert mapper.column_for("fees[0].date") == "Mahndatum"
    assert mapper.column_for("currency") is None  # a const has no column
    assert mapper.column_for("interest.rate") is None
    assert mapper.column_for(None) is None


# ---------------------------------------------------------------- encodings and CSV shapes

@pytest.mark.parametrize("encoding, declared", [("utf-8-sig", "utf-8"), ("utf-8", "utf-8"), ("cp1252", "windows-1252"),
                                                ("latin-1", "iso-8859-1")])
def test_encodings(tmp_path: Path, demo_spec: MappingSpec, encoding: str, declared: str) -> None:
    path = write_csv(tmp_path / "f.csv", [HEADER, ROW], encoding)
    if encoding == "utf-8-sig":
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    _, rows = map_file(path, with_format(demo_spec, encoding=declared))
    assert rows[0].findings == []
    claim = rows[0].claim
    assert claim is not None and claim.creditor_reference == "RE-1"  # BOM stripped from the first header cell
    assert claim.debtor.last_name == "Müller" and claim.debtor.addresses[0].street == "Hauptstraße"
    assert claim.memo == "Beitrag; Januar"


def test_bom_with_a_declared_single_byte_encoding_is_refused(tmp_path: Path, demo_spec: MappingSpec) -> None:
    path = write_csv(tmp_path / "f.csv", [HEADER, ROW], "utf-8-sig")
    with pytest.raises(InputError, match="byte order mark.*windows-1252") as info:
        map_file(path, demo_spec)
    assert info.value.row == 1


def test_undecodable_bytes_name_row_and_offset(tmp_path: Path, demo_spec: MappingSpec) -> None:
    path = write_csv(tmp_path / "f.csv", [HEADER, ROW, ROW], "cp1252")
    offset = path.read_bytes().index("ü".encode("cp1252"))
    with pytest.raises(InputError) as info:
        map_file(path, with_format(demo_spec, encoding="utf-8"))
    assert info.value.row == 2
    assert info.value.file == str(path)
    assert f"byte 0xFC at byte offset {offset} is not valid utf-8" in str(info.value)


def test_embedded_newlines_keep_physical_row_numbers(tmp_path: Path, demo_spec: MappingSpec) -> None:
    multi = ROW[:-1] + ["Zeile 1;\nZeile 2\nZeile 3"]
    path = write_csv(tmp_path / "f.csv", [HEADER, multi, [], ROW, [""] * len(HEADER), ROW], "cp1252")
    _, rows = map_file(path, demo_spec)
    assert [r.row for r in rows] == [2, 6, 8]
    assert rows[0].claim is not None and rows[0].claim.memo == "Zeile 1;\nZeile 2\nZeile 3"


def test_header_row_skips_a_preamble(tmp_path: Path, demo_spec: MappingSpec) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'Export vom 01.02.2025 "ungerade\r\n\r\n' + (";".join(HEADER) + "\r\n" + ";".join(ROW[:-1])
                     + ";x\r\n").encode("cp1252"))
    _, rows = map_file(path, with_format(demo_spec, header_row=3))
    assert [r.row for r in rows] == [4]
    assert rows[0].claim is not None


def test_unbalanced_quote_fails_with_its_row(tmp_path: Path, demo_spec: MappingSpec) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes((";".join(HEADER) + "\r\n" + ";".join(ROW) + "\r\n" + ";".join(ROW[:-1]) + ';"offen\r\n'
                      + ";".join(ROW) + "\r\n").encode("cp1252"))
    with pytest.raises(InputError, match="never closed") as info:
        map_file(path, demo_spec)
    assert info.value.row == 3


def test_oversized_field_is_refused(tmp_path: Path, demo_spec: MappingSpec) -> None:
    path = write_csv(tmp_path / "f.csv", [HEADER, ROW[:-1] + ["x" * (1 << 20 + 1)]], "cp1252")
    with pytest.raises(InputError, match="larger than") as info:
        map_file(path, demo_spec)
    assert info.value.row == 2


def test_empty_and_header_only_files(tmp_path: Path, demo_spec: MappingSpec) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="the file is empty: no header row"):
        open_reader(empty, demo_spec.format)
    blank = tmp_path / "blank.csv"
    blank.write_bytes(b"\r\n;;\r\n")
    with pytest.raises(InputError, match="no header row"):
        open_reader(blank, demo_spec.format)
    header_only = write_csv(tmp_path / "h.csv", [HEADER], "cp1252")
    assert map_file(header_only, demo_spec)[1] == []


def test_missing_column_names_it_and_the_header(tmp_path: Path, demo_spec: MappingSpec) -> None:
    header = [h if h != "PLZ" else "Postleitzahl" for h in HEADER]
    with pytest.raises(InputError) as info:
        compile_mapping(demo_spec, header, file="upload/f.csv")
    assert info.value.column == "PLZ"
    assert info.value.file == "upload/f.csv"
    assert info.value.row == 1
    assert "column 'PLZ' for debtor.postal_code" in str(info.value)
    # The header may be a data row (a file without one): it is named to the client only (``detail``)
    assert "Postleitzahl" not in str(info.value) and "Postleitzahl" in (info.value.detail or "")


def test_columns_match_ignoring_case_but_not_twice(demo_spec: MappingSpec) -> None:
    mapper = compile_mapping(demo_spec, [h.upper() if h == "PLZ" else h for h in HEADER], file="f.csv")
    assert mapper.column_for("debtor.postal_code") == "PLZ"
    with pytest.raises(InputError, match="appears 2 times"):
        compile_mapping(demo_spec, HEADER + ["Betrag"], file="f.csv")


def test_unsupported_format_type(tmp_path: Path, demo_spec: MappingSpec) -> None:
    with pytest.raises(ConfigError, match="format type 'pdf' is not supported"):
        open_reader(tmp_path / "f.pdf", with_format(demo_spec, type="pdf").format)


def test_missing_file(tmp_path: Path, demo_spec: MappingSpec) -> None:
    with pytest.raises(InputError, match="cannot open"):
        open_reader(tmp_path / "nope.csv", demo_spec.format)


# ---------------------------------------------------------------- row findings

def test_column_count(demo_spec: MappingSpec) -> None:
    mapper = compile_mapping(demo_spec, HEADER, file="f.csv")
    short = mapper.map_row(SourceRow(row=7, values=ROW[:-2]), "demo")
    assert short.claim is None and short.reference == "RE-1"
    assert [(f.code, f.row) for f in short.findings] == [(codes.COLUMN_COUNT, 7)]
    assert "19 fields, the header has 21" in short.findings[0].message
    long = mapper.map_row(SourceRow(row=8, values=ROW + ["x"]), "demo")
    assert long.findings[0].code == codes.COLUMN_COUNT
    trailing = mapper.map_row(SourceRow(row=9, values=ROW + ["", " "]), "demo")
    assert trailing.findings == [] and trailing.claim is not None


def test_required_and_multiple_findings(demo_spec: MappingSpec) -> None:
    mapper = compile_mapping(demo_spec, HEADER, file="f.csv")
    values = list(ROW)
    values[0], values[17], values[16], values[2] = " ", "", "32.01.2025", "Herrn"
    row = mapper.map_row(SourceRow(row=3, values=values), "demo")
    assert row.claim is None and row.reference is None
    assert [(f.code, f.field, f.column) for f in row.findings] == [
        (codes.MISSING_FIELD, "creditor_reference", "Rechnungsnr"),
        (codes.MISSING_FIELD, "principal_amount", "Betrag"),
        (codes.INVALID_DATE, "due_date", "Faellig"),
        (codes.INVALID_VALUE, "debtor.salutation", "Anrede"),
    ]
    assert all(f.severity is Severity.ERROR and f.row == 3 for f in row.findings)
    assert "'Herrn' is not one of: mr, ms, diverse, company" in row.findings[3].for_client()


def test_empty_optional_cells_are_none(demo_spec: MappingSpec) -> None:
    mapper = compile_mapping(demo_spec, HEADER, file="f.csv")
    values = [v if i in (0, 4, 17) else "" for i, v in enumerate(ROW)]
    row = mapper.map_row(SourceRow(row=2, values=values), "demo")
    assert row.findings == []
    assert row.claim is not None
    assert row.claim.fees == [] and row.claim.due_date is None and row.claim.debtor.addresses == []
    assert row.claim.debtor.salutation is None and row.claim.debtor.kind is DebtorKind.CONSUMER


LANGUAGE = """\
client: gym
format: {delimiter: ",", decimal_separator: ".", date_formats: ["%d/%m/%Y"]}
policy: {partner: inkasso-nord}
fields:
  creditor_reference: {column: Vertrag, required: true}
  principal_amount: Offen
  claim_type:
    column: Art
    map: {Beitrag: service, Ware: goods}
    map_default: other
  disputed: Strittig
  labels: Merker
  reason: {columns: [Tarif, Monat], join: " / "}
  debtor.kind: {column: Typ, map: {P: consumer, F: business}}
  debtor.last_name: Name
  debtor.company: {column: Name, trim: false}
  debtor.bic: BIC
  interest.kind: {column: Zins, map: {B2C: statutory_b2c}}
  interest.from_date: {column: Zins_ab, format: "%Y%m%d"}
  payments.amount: {column: Bezahlt, format: "1.234,56"}
  payments.date: Bezahlt_am
  fees.return_debit: {column: RL, default: "3.00"}
  fees.return_debit_date: {column: RL_Datum}
"""
GYM_HEADER = ["Vertrag", "Offen", "Art", "Strittig", "Merker", "Tarif", "Monat", "Typ", "Name", "BIC", "Zins",
              "Zins_ab", "Bezahlt", "Bezahlt_am", "RL", "RL_Datum"]


def test_the_mapping_language_on_another_layout() -> None:
    mapper = compile_mapping(parse_mapping(LANGUAGE, file="gym.yaml"), GYM_HEADER, file="gym.csv")
    values = ["V-9", "1,250.00", "Kurs", "x", "vip; b2b", "Premium", "", "F", " Fit GmbH ", "", "B2C",
              "20250301", "1.000,00", "15/03/2025", "", "01/04/2025"]
    row = mapper.map_row(SourceRow(row=2, values=values), "gym")
    assert row.findings == []
    claim = row.claim
    assert claim is not None
    assert claim.principal_amount == Decimal("1250.00")
    assert claim.claim_type is ClaimType.OTHER  # map_default
    assert claim.disputed is True and claim.labels == ["vip", "b2b"]
    assert claim.reason == "Premium"  # empty parts are not joined
    assert claim.debtor.kind is DebtorKind.BUSINESS
    assert claim.debtor.company == " Fit GmbH " and claim.debtor.last_name == "Fit GmbH"
    assert claim.interest is not None and claim.interest.kind is InterestKind.STATUTORY_B2C
    assert claim.interest.from_date == date(2025, 3, 1)
    assert claim.payments_received[0].amount == Decimal("1000.00")
    assert claim.payments_received[0].date == date(2025, 3, 15)
    assert [(f.kind, f.amount, f.date) for f in claim.fees] == [(FeeKind.RETURN_DEBIT, Decimal("3.00"),
                                                                 date(2025, 4, 1))]
    assert claim.partner_id == "inkasso-nord"
    assert mapper.column_for("reason") == "Tarif+Monat"


def test_incomplete_groups_and_bank_details_without_iban() -> None:
    mapper = compile_mapping(parse_mapping(LANGUAGE, file="gym.yaml"), GYM_HEADER, file="gym.csv")
    values = ["V-9", "10.00", "Beitrag", "nein", "", "", "", "P", "Muster", "COBADEFFXXX", "B2C", "",
              "", "15/03/2025", "0.00", ""]
    row = mapper.map_row(SourceRow(row=4, values=values), "gym")
    assert [(f.code, f.field, f.column, f.severity) for f in row.findings] == [
        (codes.MISSING_FIELD, "debtor.iban", None, Severity.WARNING),
        (codes.MISSING_FIELD, "interest.from_date", "Zins_ab", Severity.ERROR),
        (codes.MISSING_FIELD, "payments.amount", "Bezahlt", Severity.ERROR),
    ]
    assert row.claim is None and row.reference == "V-9"

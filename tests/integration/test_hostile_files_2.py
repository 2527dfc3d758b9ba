"""Odd but real client files through the inbox: each row with a problem is rejected with its column named, the
rest of the file is taken, nothing is acked as accepted that cannot be stored or delivered, and what a real
export writes legally (Excel's sep line, a DOS end-of-file mark, decomposed umlauts, a 1904 workbook, date-time
cells, a BOM inside a header cell) is read as the client meant it.

Files are written by the libraries clients' exports use (xlsxwriter, openpyxl, xlwt) or byte for byte as
ERP exports write them (a FileMaker vertical tab for a line break, a NUL deep in a CSV, a second BOM)."""

from __future__ import annotations

import csv
import logging
import unicodedata
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
import xlsxwriter
import xlwt
from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.domain.model import Address, Claim, Debtor
from gateway.domain.rules import all_rules, validate_claim
from gateway.services.dispatch import Dispatcher
from gateway.services.inbox import process_inbox_file
from gateway.services.ingest import IngestResult
from gateway.store.db import read_tx
from gateway.store.schema import claim_current, claims, submission_findings, submissions
from tests.conftest import ROOT

DEMO_MAPPING = (ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8")
HEADER = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;"
          "Telefon;IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung").split(";")
PLANTED, PLANTED_IBAN, PLANTED_STREET = "Zzplantedname", "DE89370400440532013000", "Zzplantedstrasse"
LAST_NAME, STREET = HEADER.index("Nachname"), HEADER.index("Strasse")


def row(ref: str, amount: str = "100,00") -> list[str]:
    return [ref, "K1", "Herr", "Max", PLANTED, "", "01.01.1980", PLANTED_STREET, "1", "10115", "Berlin", "DE",
            "zz@example.de", "", PLANTED_IBAN, "01.02.2025", "15.02.2025", amount, "", "", ""]


def drop(app: App, name: str, data: bytes, mapping: str | None = None,
         delimiter: str = ";") -> tuple[IngestResult, list[dict[str, str]]]:
    """``data`` dropped into the demo client's inbox as ``name``, taken as the watcher takes it; the ack's lines
    (written with the input's ``delimiter``)."""
    if mapping is not None:
        (app.config.path("mappings") / "demo.yaml").write_text(mapping, encoding="utf-8")
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    (upload / name).write_bytes(data)
    result = process_inbox_file(app, "demo", upload / name)
    with open(app.config.inbox_dir / "demo" / "ack" / f"{name}.ack.csv", encoding="utf-8", newline="") as fh:
        return result, list(csv.DictReader(fh, delimiter=delimiter))


def csv_bytes(rows: list[list[str]], extra: bytes = b"") -> bytes:
    return ("\r\n".join(";".join(r) for r in [HEADER, *rows]) + "\r\n").encode("cp1252") + extra


def stored(app: App) -> int:
    with read_tx(app.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(claims)).scalar_one())


def no_debtor_data(app: App, *texts: str) -> None:
    """The planted debtor data is in none of ``texts`` (logs, errors) nor in a findings or error column."""
    with read_tx(app.engine) as conn:
        columns = [str(v) for v in conn.execute(select(submission_findings.c.message, submission_findings.c.column))]
        columns += [str(v) for v in conn.execute(select(submissions.c.error))]
    for where in (*texts, *columns):
        for value in (PLANTED, PLANTED_IBAN, PLANTED_STREET):
            assert value not in where, where


def test_an_amount_of_a_billion_or_more_rejects_its_row_and_the_file_goes_on(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    """Before, the 25-digit amount was accepted by every check and the INSERT of its minor units raised
    OverflowError (SQLite) or out of range (PostgreSQL): the ingest died with the submission processing."""
    caplog.set_level(logging.DEBUG)
    rows = [row("B-1", "99999999999999999999999,99"), row("B-2", "999.999.999,99"), row("B-3", "1.000.000.000,00"),
            row("B-4", "12,50")]
    rows[3][HEADER.index("Mahngebuehr")] = "1.000.000.000.000,00"  # a fee: the same bound
    result, lines = drop(app, "gross.csv", csv_bytes(rows))
    assert result.status == "completed_with_errors", result
    assert [(ln["row"], ln["outcome"], ln["codes"]) for ln in lines] == [
        ("2", "rejected", "invalid_amount"), ("3", "accepted", ""), ("4", "rejected", "invalid_amount"),
        ("5", "rejected", "invalid_amount")]
    assert lines[0]["messages"] == ("Betrag: 99999999999999999999999.99 is a billion or more: not a claim the "
                                    "gateway takes")
    assert lines[3]["messages"].startswith("Mahngebuehr: ")
    assert stored(app) == 1 and result.total_amount == "999999999.99"
    no_debtor_data(app, caplog.text, result.error or "")


@pytest.mark.parametrize("amount", ["1000000000.00", "1000000000", "99999999999999999999999"])
def test_the_quick_rules_send_a_huge_amount_to_the_full_ones(amount: str) -> None:
    claim = Claim(client_id="demo", creditor_reference="R-1", principal_amount=Decimal(amount),
                  debtor=Debtor(last_name="Muster", first_name="Max", birth_date=date(1980, 1, 1),
                                addresses=[Address(street="Weg", house_number="1", postal_code="10115",
                                                   city="Berlin")]))
    found = validate_claim(claim, date(2026, 1, 1))
    assert found == all_rules(claim, date(2026, 1, 1)) and [f.code for f in found] == ["invalid_amount"]


# What readers hand on and XML 1.0 cannot carry: FileMaker's line break in a field (U+000B), a NUL past the
# bytes the type sniffing reads, a unit separator; each in a text column the mapping reads.
CONTROL = [("\x0b", STREET, "Strasse", "U+000B"), ("\x00", LAST_NAME, "Nachname", "U+0000"),
           ("\x1f", LAST_NAME, "Nachname", "U+001F")]


def control_rows() -> list[list[str]]:
    rows = [row(f"OK-{i}") for i in range(8)]  # so the NUL is far past the first 512 bytes
    for i, (char, col, _, _) in enumerate(CONTROL):
        bad = row(f"CTL-{i}")
        bad[col] = bad[col][:5] + char + bad[col][5:]
        rows.append(bad)
    rows.append(row("OK-last"))
    return rows


def _xlsxwriter(path: Path, rows: list[list[str]]) -> None:
    wb = xlsxwriter.Workbook(str(path))  # writes the control characters as _x000B_ escapes, as Excel does
    ws = wb.add_worksheet("Forderungen")
    for i, r in enumerate([HEADER, *rows]):
        ws.write_row(i, 0, r)
    wb.close()


def _openpyxl(path: Path, rows: list[list[str]]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    for r in [HEADER, *rows]:  # openpyxl refuses control characters in a cell: written with Excel's escape
        ws.append([v.replace("\x0b", "_x000B_").replace("\x00", "_x0000_").replace("\x1f", "_x001F_") for v in r])
    wb.save(path)


def _xlwt(path: Path, rows: list[list[str]]) -> None:
    wb = xlwt.Workbook()
    ws = wb.add_sheet("Forderungen")
    for i, r in enumerate([HEADER, *rows]):
        for j, value in enumerate(r):
            ws.write(i, j, value)
    wb.save(str(path))


@pytest.mark.parametrize(("kind", "write"), [("csv", None), ("xlsx", _xlsxwriter), ("xlsx", _openpyxl),
                                             ("xls", _xlwt)], ids=["csv", "xlsxwriter", "openpyxl", "xlwt"])
def test_a_control_character_in_a_text_cell_rejects_its_row_instead_of_failing_delivery(
        app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, write: object) -> None:
    """Before, these rows were acked accepted and stored; the partner batch could not be rendered, so each claim
    went ``failed`` at its first delivery, with the client told nothing it could fix."""
    caplog.set_level(logging.DEBUG)
    rows = control_rows()
    if write is None:
        data, mapping = csv_bytes(rows), None
    else:
        path = tmp_path / f"export.{kind}"
        write(path, rows)  # type: ignore[operator]
        data, mapping = path.read_bytes(), DEMO_MAPPING.replace("type: csv", f"type: {kind}")
    name = f"export.{kind}"
    result, lines = drop(app, name, data, mapping)
    assert result.status == "completed_with_errors", result
    by_ref = {ln["Rechnungsnr"]: ln for ln in lines}
    assert [ln["outcome"] for ln in lines] == ["accepted"] * 8 + ["rejected"] * 3 + ["accepted"]
    for i, (_, _, column, point) in enumerate(CONTROL):
        line = by_ref[f"CTL-{i}"]
        assert line["codes"] == "invalid_value", line
        assert line["messages"] == (f"{column}: holds the control character {point}, which no partner's XML can "
                                    "carry; remove it from the cell (line breaks and tabs are fine)"), line
    assert stored(app) == 9
    assert Dispatcher(app, owner="t").drain() >= 1
    with read_tx(app.engine) as conn:
        states = [r.state for r in conn.execute(select(claim_current.c.state))]
    assert states == ["handed_over"] * 9  # every claim acked accepted reached the partner
    no_debtor_data(app, caplog.text, result.error or "", *(ln["messages"] for ln in lines))


def test_a_control_character_in_a_column_the_mapping_does_not_read_is_harmless(app: App) -> None:
    header = [*HEADER, "Notiz"]
    rows = [[*row("N-1"), "Zeile 1\x0bZeile 2"], [*row("N-2"), ""]]
    data = ("\r\n".join(";".join(r) for r in [header, *rows]) + "\r\n").encode("cp1252")
    result, lines = drop(app, "notiz.csv", data)
    assert result.status == "completed", (result, lines)
    assert [ln["outcome"] for ln in lines] == ["accepted", "accepted"]


def test_a_byte_order_mark_inside_the_header_cell_is_not_a_missing_column(app: App, tmp_path: Path) -> None:
    """A CSV saved with two BOMs, or a workbook built from a CSV read without ``utf-8-sig``, carries an invisible
    U+FEFF into the first column's name; before, the file failed with "the header has no column 'Rechnungsnr'
    (did you mean 'Rechnungsnr'?)"."""
    utf8 = DEMO_MAPPING.replace("encoding: windows-1252", "encoding: utf-8")
    data = b"\xef\xbb\xbf\xef\xbb\xbf" + csv_bytes([row("BOM-1")])
    result, lines = drop(app, "zweimal-bom.csv", data, utf8)
    assert result.status == "completed" and [ln["outcome"] for ln in lines] == ["accepted"], (result, lines)
    path = tmp_path / "from-pandas.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet()
    ws.write_row(0, 0, ["\ufeffRechnungsnr", *HEADER[1:]])
    ws.write_row(1, 0, row("BOM-2"))
    wb.close()
    result, lines = drop(app, "from-pandas.xlsx", path.read_bytes(), DEMO_MAPPING.replace("type: csv", "type: xlsx"))
    assert result.status == "completed" and [ln["outcome"] for ln in lines] == ["accepted"], (result, lines)


def test_a_plain_date_serial_in_a_1904_workbook_counts_from_1904(app: App, tmp_path: Path) -> None:
    """A workbook in the 1904 date system (Excel for Mac before 2016, and files derived from them) whose due-date
    column lost its date format holds the serial 44226 for 2025-01-31. Before, plain serials were always counted
    from 1900 (formatted dates were not): the due date became 2021-01-30 and the claim was held as time-barred."""
    path = tmp_path / "mac.xlsx"
    wb = openpyxl.Workbook()
    wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    ws = wb.active
    ws.append(HEADER)
    formatted: list[object] = [*row("MAC-1")]
    formatted[HEADER.index("Faellig")] = date(2025, 1, 31)
    ws.append(formatted)
    ws.cell(2, HEADER.index("Faellig") + 1).number_format = "DD.MM.YYYY"
    plain: list[object] = [*row("MAC-2")]
    plain[HEADER.index("Faellig")] = 44226
    ws.append(plain)
    wb.save(path)
    result, lines = drop(app, "mac.xlsx", path.read_bytes(), DEMO_MAPPING.replace("type: csv", "type: xlsx"))
    assert [(ln["outcome"], ln["messages"]) for ln in lines] == [
        ("accepted", "Faellig: due date 2025-01-31 is before invoice date 2025-02-01")] * 2, lines


def test_decomposed_umlauts_are_the_same_text_as_composed_ones(app: App) -> None:
    """A file written with decomposed umlauts ("U\u0308" for "Ü": macOS and some exports write them) holds the same
    references, names and column names as one written composed. Before, the same invoice resent decomposed was
    accepted as a second claim (the debtor pursued twice), an identical claim was a conflict on
    debtor.last_name, and a decomposed header name was a missing column."""
    mapping = DEMO_MAPPING.replace("encoding: windows-1252", "encoding: utf-8").replace(
        "due_date: Faellig", "due_date: Fällig")
    header = [("Fällig" if h == "Faellig" else h) for h in HEADER]

    def export(form: str, ref: str) -> bytes:
        rows = [row(ref)]
        rows[0][LAST_NAME], rows[0][STREET] = "Müller-Lüdenscheidt", "Hauptstraße"
        text = "\r\n".join(";".join(r) for r in [header, *rows]) + "\r\n"
        return unicodedata.normalize(form, text).encode("utf-8")

    first, lines = drop(app, "composed.csv", export("NFC", "RE-Ü1"), mapping)
    assert [ln["outcome"] for ln in lines] == ["accepted"], lines
    again, lines = drop(app, "decomposed.csv", export("NFD", "RE-Ü1"))
    assert [(ln["outcome"], ln["codes"]) for ln in lines] == [("rejected", "duplicate_reference")], lines
    other, lines = drop(app, "decomposed-2.csv", export("NFD", "RE-Ü2"))
    assert [ln["outcome"] for ln in lines] == ["accepted"], lines
    assert stored(app) == 2


def test_excels_sep_line_is_not_taken_for_the_header(app: App) -> None:
    """Excel writes and reads a first line ``sep=;`` naming the delimiter; before, the file failed with "the header
    has no column 'Rechnungsnr' ... (the header is: sep=; )"."""
    result, lines = drop(app, "mit-sep.csv", b"sep=;\r\n" + csv_bytes([row("SEP-1"), row("SEP-2")]))
    assert result.status == "completed", (result, lines)
    assert [(ln["row"], ln["outcome"]) for ln in lines] == [("3", "accepted"), ("4", "accepted")]
    comma = DEMO_MAPPING.replace('delimiter: ";"', "delimiter: auto")
    data = b"sep=,\r\n" + csv_bytes([row("SEP-3")]).replace(b"100,00", b"100").replace(b";", b",")
    result, lines = drop(app, "komma.csv", data, comma, delimiter=",")
    assert result.status == "completed" and [(ln["row"], ln["outcome"]) for ln in lines] == [("3", "accepted")], lines


def test_a_dos_end_of_file_mark_is_not_a_row(app: App) -> None:
    """Old DOS and host exports end with Ctrl-Z (0x1A); before, it was a rejected row "the row has 1 fields" in a
    CSV, and in a fixed-width file a row whose reference was the mark."""
    result, lines = drop(app, "dos.csv", csv_bytes([row("DOS-1")], extra=b"\x1a"))
    assert result.status == "completed" and [(ln["row"], ln["outcome"]) for ln in lines] == [("2", "accepted")], lines
    result, lines = drop(app, "dos-ohne-zeilenende.csv", csv_bytes([row("DOS-2")])[:-2] + b"\x1a")
    assert result.status == "completed" and [ln["Rechnungsnr"] for ln in lines] == ["DOS-2"], lines
    fixed = """version: 1
client: demo
format:
  type: fixed_width
  encoding: windows-1252
  date_formats: ["%d%m%Y"]
  columns: {Nr: {start: 1, length: 6}, Name: {start: 7, length: 10}, Betrag: {start: 17, length: 8, decimals: 2},
            Faellig: {start: 25, length: 8}}
fields:
  creditor_reference: Nr
  claim_type: {const: service}
  currency: {const: EUR}
  principal_amount: Betrag
  due_date: Faellig
  debtor.last_name: Name
  debtor.first_name: {const: Max}
  debtor.email: {const: max@example.de}
"""
    records = b"FW-001Mueller   0001234515022025\r\nFW-002Mueller   0000990015022025\r\n\x1a"
    result, lines = drop(app, "host.txt", records, fixed)
    assert result.status == "completed", (result, lines)
    assert [(ln["Nr"], ln["outcome"]) for ln in lines] == [("FW-001", "accepted"), ("FW-002", "accepted")], lines


def test_a_date_time_cell_is_a_date_for_a_date_field(app: App, tmp_path: Path) -> None:
    """Shops and ERPs export the invoice's timestamp as an Excel date-time; before, a date field refused it with
    "'2025-02-01 14:30:00' is not a date in the form DD.MM.YYYY or YYYY-MM-DD", a cell that plainly is one."""
    path = tmp_path / "zeitstempel.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for ref, value in (("TS-1", datetime(2025, 2, 1, 14, 30)), ("TS-2", time(12, 0))):
        cells: list[object] = [*row(ref)]
        cells[HEADER.index("Rechnungsdatum")] = value
        ws.append(cells)
        ws.cell(ws.max_row, HEADER.index("Rechnungsdatum") + 1).number_format = "DD.MM.YYYY HH:MM"
    wb.save(path)
    result, lines = drop(app, "zeitstempel.xlsx", path.read_bytes(), DEMO_MAPPING.replace("type: csv", "type: xlsx"))
    assert [(ln["outcome"], ln["codes"]) for ln in lines] == [("accepted", ""), ("rejected", "invalid_date")], lines
    assert lines[1]["messages"].startswith("Rechnungsdatum: '12:00:00' is not a date")  # a time alone is no date


def test_utf16_without_a_byte_order_mark_is_named_not_called_binary(app: App) -> None:
    """Before: "the file is binary data", for a CSV that .NET's Encoding.Unicode wrote without a BOM."""
    text = "\r\n".join(";".join(r) for r in [HEADER, row("U16-1")]) + "\r\n"
    for encoding in ("utf-16-le", "utf-16-be"):
        result, lines = drop(app, f"{encoding}.csv", text.encode(encoding))
        assert result.status == "failed", result
        assert result.error == (f"{encoding}.csv: the mapping declares format type 'csv', but the file is UTF-16 text "
                                "without a byte order mark (save it as UTF-8 or Windows-1252); was it saved in "
                                "another format or renamed?"), result.error
        assert [ln["outcome"] for ln in lines] == ["failed"]
    result, _ = drop(app, "binary.csv", bytes(range(256)) * 4)
    assert result.status == "failed" and "the file is binary data" in str(result.error)

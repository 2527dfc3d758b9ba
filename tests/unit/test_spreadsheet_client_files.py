"""Client files as real spreadsheet programs and libraries write them: what the readers and the mapping make of
the things such files do (formulas never calculated, the 1904 date system, postcodes stored as numbers, error
cells, hidden sheets and rows, collapsed groups, percentages, calculated amounts' binary tails, a password to
open, a totals row, a note beside the table, the data on another sheet).

Every file here is written by a real library (openpyxl, xlwt, odfpy); where a generator's habit differs from
the library's (a formula written with no ``<v>`` at all), the library's file is changed in that one place.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter
import xlwt
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

from gateway.mapping import MappingSpec, compile_mapping, parse_mapping
from gateway.readers import open_reader

FIELDS = "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n  due_date: Datum\n"


def spec(fmt: str, fields: str = FIELDS) -> MappingSpec:
    return parse_mapping(f"client: t\nformat:\n{fmt}\n{fields}")


def mapped(path: Path, s: MappingSpec, dates: frozenset[str] = frozenset({"Datum"})) -> list[Any]:
    """Rows as the ingest maps them: read in the reader's child process, then the mapping's row function."""
    with open_reader(path, s.format, date_columns=dates) as reader:
        mapper = compile_mapping(s, reader.header, file=reader.file, header_row=reader.header_row)
        return [mapper.map_row(src, "t") for src in reader]


# ---------------------------------------------------------------- formulas without a saved value

def formula_book(path: Path) -> Path:
    """openpyxl writes formulas as given, with an empty cached value: no program ever calculated them."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Ref", "Netto", "Betrag", "Datum", "Mahngebühr"])
    ws.append(["R1", 100, "=B2*1.19", dt.date(2025, 1, 31), None])
    ws.append(["R2", 50, 59.5, dt.date(2025, 1, 31), "=B3*2"])  # a formula in a column the default mapping does not read
    ws.append(["R3", 100, "=B4*1.19", dt.date(2025, 1, 31), None])
    wb.save(path)
    return path


def without_v(path: Path) -> Path:
    """The same workbook as generators write it that leave the value out entirely (``<f>..</f></c>``)."""
    out = path.with_name("no_v_" + path.name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.startswith("xl/worksheets/"):
                assert b"<v></v>" in data or b"<v />" in data or b"<v/>" in data
                data = data.replace(b"<v></v>", b"").replace(b"<v />", b"").replace(b"<v/>", b"")
            dst.writestr(item, data)
    return out


def _uncalculated(row: Any, column: str) -> None:
    assert row.claim is None
    assert [(f.code, f.column, f.row) for f in row.findings] == [("missing_field", column, row.row)]
    message = row.findings[0].message
    assert "formula without a saved value" in message and "is empty" not in message
    assert "open" in message and "save" in message


@pytest.mark.parametrize("variant", ["openpyxl", "no_v"])
def test_xlsx_formula_without_saved_value_is_named_not_called_empty(tmp_path: Path, variant: str) -> None:
    path = formula_book(tmp_path / "f.xlsx")
    if variant == "no_v":
        path = without_v(path)
    rows = mapped(path, spec("  type: xlsx"))
    assert [r.row for r in rows] == [2, 3, 4]
    _uncalculated(rows[0], "Betrag")
    assert rows[1].claim is not None and rows[1].findings == []  # Mahngebühr is not read: its formula is harmless
    _uncalculated(rows[2], "Betrag")


def test_xlsx_formula_without_value_in_an_optional_field_rejects_the_row(tmp_path: Path) -> None:
    """An optional field's formula has a value the client meant; taking the claim without it would lose it."""
    path = formula_book(tmp_path / "f.xlsx")
    fields = FIELDS + "  fees.dunning: Mahngebühr\n"
    rows = mapped(path, spec("  type: xlsx", fields))
    assert rows[0].findings[0].column == "Betrag"
    _uncalculated(rows[1], "Mahngebühr")


def test_ods_formula_without_value_is_named(tmp_path: Path) -> None:
    doc = OpenDocumentSpreadsheet()
    table = Table(name="Forderungen")

    def text(value: str) -> TableCell:
        cell = TableCell(valuetype="string")
        cell.addElement(P(text=value))
        return cell

    head = TableRow()
    for name in ("Ref", "Netto", "Betrag", "Datum"):
        head.addElement(text(name))
    table.addElement(head)
    for ref, typed in (("R1", False), ("R2", True)):
        row = TableRow()
        row.addElement(text(ref))
        row.addElement(TableCell(valuetype="float", value=100))
        # odfpy writes what it is given: a formula and no value (with or without a value type)
        row.addElement(TableCell(valuetype="float", formula="of:=[.B2]*1.19") if typed
                       else TableCell(formula="of:=[.B2]*1.19"))
        row.addElement(TableCell(valuetype="date", datevalue="2025-01-31"))
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    path = tmp_path / "f.ods"
    doc.save(str(path))
    rows = mapped(path, spec("  type: ods"))
    assert [r.row for r in rows] == [2, 3]
    for row in rows:
        _uncalculated(row, "Betrag")


# ---------------------------------------------------------------- the 1904 date system

def test_xls_in_the_1904_date_system_reads_plain_serials_from_1904(tmp_path: Path) -> None:
    """Older Excel for Mac saved XLS in the 1904 system: a plain serial in a date column counts from 1904, as
    the workbook's formatted dates do (calamine converts those by the flag; the plain ones are the gateway's)."""
    for is_1904 in (True, False):
        wb = xlwt.Workbook()
        wb.dates_1904 = is_1904  # before any date is written: xlwt converts dates by it
        ws = wb.add_sheet("Forderungen")
        for c, name in enumerate(["Ref", "Betrag", "Datum", "Faellig"]):
            ws.write(0, c, name)
        ws.write(1, 0, "R1")
        ws.write(1, 1, 12.5)
        ws.write(1, 2, 44226 if is_1904 else 45688)  # 2025-01-31 in the workbook's system, no date format
        ws.write(1, 3, dt.date(2025, 2, 28), xlwt.easyxf(num_format_str="DD.MM.YYYY"))
        path = tmp_path / f"d{int(is_1904)}.xls"
        wb.save(str(path))
        s = spec("  type: xls", FIELDS + "  invoice_date: Faellig\n")
        with open_reader(path, s.format, date_columns=frozenset({"Datum", "Faellig"})) as reader:
            assert [r.values for r in reader] == [["R1", "12,5", "2025-01-31", "2025-02-28"]]


def test_ods_null_date_of_1904_reads_plain_serials_from_1904(tmp_path: Path) -> None:
    """ODS stores formatted dates as ISO text, so only a plain number in a date column depends on the
    document's null date (``table:null-date``, LibreOffice's Tools > Options > Calculate > Date)."""
    from odf.table import CalculationSettings, NullDate

    for null_date, serial in (("1904-01-01", 44226), (None, 45688), ("1899-12-30", 45688)):
        doc = OpenDocumentSpreadsheet()
        if null_date is not None:
            settings = CalculationSettings()
            settings.addElement(NullDate(datevalue=null_date))
            doc.spreadsheet.addElement(settings)
        table = Table(name="Forderungen")
        for values in (["Ref", "Betrag", "Datum", "Faellig"], ["R1", 12.5, serial, "2025-02-28"]):
            row = TableRow()
            for n, value in enumerate(values):
                if isinstance(value, str) and n == 3 and value[0].isdigit():
                    row.addElement(TableCell(valuetype="date", datevalue=value))
                elif isinstance(value, str):
                    cell = TableCell(valuetype="string")
                    cell.addElement(P(text=value))
                    row.addElement(cell)
                else:
                    row.addElement(TableCell(valuetype="float", value=value))
            table.addElement(row)
        doc.spreadsheet.addElement(table)
        path = tmp_path / f"n{serial}{null_date}.ods"
        doc.save(str(path))
        s = spec("  type: ods", FIELDS + "  invoice_date: Faellig\n")
        with open_reader(path, s.format, date_columns=frozenset({"Datum", "Faellig"})) as reader:
            assert [r.values for r in reader] == [["R1", "12,5", "2025-01-31", "2025-02-28"]], null_date


# ---------------------------------------------------------------- German postcodes that lost their leading zero

ADDRESS = FIELDS + "  debtor.last_name: Name\n  debtor.postal_code: PLZ\n  debtor.city: Ort\n"


def _padded(row: Any, column: str = "PLZ") -> None:
    assert row.claim is not None
    assert row.claim.debtor.addresses[0].postal_code == "01067"
    assert [(f.code, f.severity.value, f.column, f.row) for f in row.findings] == [
        ("invalid_value", "warning", column, row.row)]
    assert "1067" not in row.findings[0].message  # the stored text names no value; the client's ack may
    assert "leading zero" in row.findings[0].message and "'1067'" in row.findings[0].for_client()


def postcode_rows() -> list[list[Any]]:
    return [["Ref", "Betrag", "Datum", "Name", "PLZ", "Ort", "Land"],
            ["R1", 10, dt.date(2025, 1, 31), "Muster", 1067, "Dresden", None],  # no country: the default, DE
            ["R2", 10, dt.date(2025, 1, 31), "Muster", 1067, "Dresden", "DE"],
            ["R3", 10, dt.date(2025, 1, 31), "Muster", "1010", "Wien", "AT"],  # four digits abroad: as it is
            ["R4", 10, dt.date(2025, 1, 31), "Muster", 1010, "Wien", "AT"],
            ["R5", 10, dt.date(2025, 1, 31), "Muster", 10115, "Berlin", None],
            ["R6", 10, dt.date(2025, 1, 31), "Muster", 123, "Irgendwo", None],  # not a lost zero: as it is
            ["R7", 10, dt.date(2025, 1, 31), "Muster", "2610", "Uelzen", "DE"]]  # text: a typo as likely (29525)


def _postcodes_as_written(rows: list[Any]) -> None:
    _padded(rows[0])
    _padded(rows[1])
    for row, code in zip(rows[2:], ["1010", "1010", "10115", "123", "2610"]):
        assert row.claim.debtor.addresses[0].postal_code == code and row.findings == [], row.row


@pytest.mark.parametrize("writer", ["openpyxl", "xlsxwriter"])
def test_xlsx_number_postcode_of_a_german_address_gets_its_zero_back(tmp_path: Path, writer: str) -> None:
    """Excel stores 01067 typed into a General cell as the number 1067; a German postcode has 5 digits.
    xlsxwriter's rows of one shape are read by the reader's row plans, openpyxl's (inline strings) cell by cell."""
    path = tmp_path / "plz.xlsx"
    rows = postcode_rows()
    rows += [[f"S{n}", 10, dt.date(2025, 1, 31), "Muster", 1067 + n, "Dresden", "DE"] for n in range(20)]
    if writer == "openpyxl":
        wb = openpyxl.Workbook()
        ws = wb.active
        for values in rows:
            ws.append(values)
        wb.save(path)
    else:
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        day = book.add_format({"num_format": "dd.mm.yyyy"})
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                if value is not None:
                    sheet.write(r, c, value, day if isinstance(value, dt.date) else None)
        book.close()
    got = mapped(path, spec("  type: xlsx", ADDRESS + "  debtor.country: Land\n"))
    _postcodes_as_written(got[:7])
    assert [r.claim.debtor.addresses[0].postal_code for r in got[7:]] == [f"0{1067 + n}" for n in range(20)]
    assert all(len(r.findings) == 1 for r in got[7:])


def test_xls_and_ods_number_postcode_of_a_german_address_gets_its_zero_back(tmp_path: Path) -> None:
    wb = xlwt.Workbook()
    ws = wb.add_sheet("Forderungen")
    doc = OpenDocumentSpreadsheet()
    table = Table(name="Forderungen")
    more = [[f"S{n}", 10, dt.date(2025, 1, 31), "Muster", 1067 + n % 50, "Dresden", "DE"] for n in range(600)]
    for r, values in enumerate(postcode_rows() + more):  # past 64 KB of ODS XML: the row plans read the rest
        row = TableRow()
        for c, value in enumerate(values):
            if isinstance(value, dt.date):
                ws.write(r, c, value, xlwt.easyxf(num_format_str="DD.MM.YYYY"))
                row.addElement(TableCell(valuetype="date", datevalue=value.isoformat()))
            elif isinstance(value, int):
                ws.write(r, c, value)
                row.addElement(TableCell(valuetype="float", value=value))
            elif value is None:
                row.addElement(TableCell())
            else:
                ws.write(r, c, value)
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=value))
                row.addElement(cell)
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    wb.save(str(tmp_path / "plz.xls"))
    doc.save(str(tmp_path / "plz.ods"))
    for kind in ("xls", "ods"):
        rows = mapped(tmp_path / f"plz.{kind}", spec(f"  type: {kind}", ADDRESS + "  debtor.country: Land\n"))
        _postcodes_as_written(rows[:7])
        assert [r.claim.debtor.addresses[0].postal_code for r in rows[7:]] == [f"0{1067 + n % 50}" for n in range(600)]


def test_csv_postcode_of_four_digits_stays_as_written(tmp_path: Path) -> None:
    """A CSV carries text: "1067" may be a zero Excel dropped before the export, or a mistyped code; the rules
    reject it as a German postcode, and a client whose exports lose the zero maps the column with zero_pad."""
    path = tmp_path / "plz.csv"
    path.write_text("Ref;Betrag;Datum;Name;PLZ;Ort;Land\n"
                    "R1;10;31.01.2025;Muster;1067;Dresden;\n"
                    "R2;10;31.01.2025;Muster;1010;Wien;AT\n", encoding="utf-8")
    fields = ADDRESS + "  debtor.country: Land\n"
    rows = mapped(path, spec("  type: csv", fields))
    assert [(r.claim.debtor.addresses[0].postal_code, r.findings) for r in rows] == [("1067", []), ("1010", [])]
    padded = mapped(path, spec("  type: csv", fields.replace(
        "debtor.postal_code: PLZ", "debtor.postal_code: {column: PLZ, zero_pad: 5, when: {column: Land, "
        "in: ['', DE]}, else: {column: PLZ}}")))
    assert [r.claim.debtor.addresses[0].postal_code for r in padded] == ["01067", "1010"]


# ---------------------------------------------------------------- cells that show an error value

@pytest.mark.parametrize("writer", ["openpyxl", "xlsxwriter", "xlwt"])
def test_xlsx_cell_showing_an_error_is_named_not_called_empty(tmp_path: Path, writer: str) -> None:
    """#N/A from a VLOOKUP (SVERWEIS) that found nothing is common in hand-kept lists; it read as an empty cell:
    "'Betrag' is empty" for a required field, and an optional one (a fee) was dropped without a word."""
    rows: list[list[Any]] = [["Ref", "Betrag", "Datum", "Mahngebühr"],
                             ["R1", "#N/A", dt.date(2025, 1, 31), 5],
                             ["R2", 10, dt.date(2025, 1, 31), "#DIV/0!"],
                             ["R3", 10, dt.date(2025, 1, 31), 5]]
    rows += [[f"S{n}", 10 + n, dt.date(2025, 1, 31), "#N/A" if n == 7 else 5] for n in range(10)]
    path = tmp_path / "e.xlsx"
    if writer == "openpyxl":
        wb = openpyxl.Workbook()
        ws = wb.active
        for values in rows:
            ws.append(values)
        for line in ws.iter_rows():
            for cell in line:
                if isinstance(cell.value, str) and cell.value.startswith("#"):
                    cell.data_type = "e"
        wb.save(path)
    elif writer == "xlsxwriter":
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        day = book.add_format({"num_format": "dd.mm.yyyy"})
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                if isinstance(value, str) and value.startswith("#"):
                    sheet.write_formula(r, c, "=1/0" if value == "#DIV/0!" else '=VLOOKUP("x",Z1:Z2,1,FALSE)',
                                        None, value)  # the value Excel would have saved
                else:
                    sheet.write(r, c, value, day if isinstance(value, dt.date) else None)
        book.close()
    else:  # XLS: an error cell (BOOLERR) as Excel 97-2003 saves one; calamine read it as an empty cell
        path = tmp_path / "e.xls"
        xbook = xlwt.Workbook()
        xsheet = xbook.add_sheet("Forderungen")
        xday = xlwt.easyxf(num_format_str="DD.MM.YYYY")
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                if isinstance(value, str) and value.startswith("#"):
                    xsheet.row(r).set_cell_error(c, {"#N/A": 0x2A, "#DIV/0!": 0x07}[value])
                else:
                    xsheet.write(r, c, value, xday if isinstance(value, dt.date) else xlwt.Style.default_style)
        xbook.save(str(path))
    got = mapped(path, spec(f"  type: {path.suffix[1:]}", FIELDS + "  fees.dunning: Mahngebühr\n"))
    assert [r.row for r in got] == list(range(2, 15))
    expected = {2: ("Betrag", "#N/A"), 3: ("Mahngebühr", "#DIV/0!"), 12: ("Mahngebühr", "#N/A")}
    for row in got:
        if row.row not in expected:
            assert row.claim is not None and row.findings == [], row.row
            continue
        column, shown = expected[row.row]
        assert row.claim is None
        assert [(f.code, f.column) for f in row.findings] == [("invalid_value", column)]
        assert f"the cell shows {shown}" in row.findings[0].message and "is empty" not in row.findings[0].message


# ---------------------------------------------------------------- hidden sheets

def test_without_a_sheet_named_the_first_visible_sheet_is_read(tmp_path: Path) -> None:
    """A workbook whose first sheet is hidden (lookup tables, master data) opens on the data sheet; a mapping
    without ``sheet`` read the hidden one and failed with its header. A sheet named or numbered is read as ever."""
    wb = openpyxl.Workbook()
    hidden = wb.active
    hidden.title = "Stammdaten"
    hidden.append(["Code", "Text"])
    hidden.sheet_state = "hidden"
    data = wb.create_sheet("Forderungen")
    data.append(["Ref", "Betrag", "Datum"])
    data.append(["R1", 10, dt.date(2025, 1, 31)])
    wb.active = 1
    wb.save(tmp_path / "h.xlsx")

    book = xlwt.Workbook()
    lookup = book.add_sheet("Stammdaten")
    lookup.write(0, 0, "Code")
    lookup.visibility = 1  # hidden
    sheet = book.add_sheet("Forderungen")
    for c, value in enumerate(["Ref", "Betrag", "Datum"]):
        sheet.write(0, c, value)
    for c, value in enumerate(["R1", 10, "2025-01-31"]):
        sheet.write(1, c, value)
    sheet.set_selected(True)
    book.active_sheet = 1
    book.save(str(tmp_path / "h.xls"))

    from odf.style import Style, TableProperties
    doc = OpenDocumentSpreadsheet()
    style = Style(name="taHidden", family="table")
    style.addElement(TableProperties(display="false"))
    doc.automaticstyles.addElement(style)
    for name, rows, attrs in (("Stammdaten", [["Code"]], {"stylename": style}),
                              ("Forderungen", [["Ref", "Betrag", "Datum"], ["R1", "10", "2025-01-31"]], {})):
        table = Table(name=name, **attrs)
        for values in rows:
            row = TableRow()
            for value in values:
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=value))
                row.addElement(cell)
            table.addElement(row)
        doc.spreadsheet.addElement(table)
    doc.save(str(tmp_path / "h.ods"))

    for kind in ("xlsx", "xls", "ods"):
        rows = mapped(tmp_path / f"h.{kind}", spec(f"  type: {kind}\n  date_formats: ['%Y-%m-%d']"))
        assert [(r.row, r.reference, r.findings) for r in rows] == [(2, "R1", [])], kind
        with pytest.raises(Exception, match="column 'Ref'"):  # named by position: the hidden sheet, as before
            mapped(tmp_path / f"h.{kind}", spec(f"  type: {kind}\n  sheet: 1"))
        assert [r.reference for r in mapped(tmp_path / f"h.{kind}", spec(f"  type: {kind}\n  sheet: 2"))] == ["R1"]


# ---------------------------------------------------------------- percentages

RATE = FIELDS + "  interest.kind: {const: fixed}\n  interest.from_date: Datum\n  interest.rate: Zins\n"


@pytest.mark.parametrize("writer", ["openpyxl", "xlsxwriter", "odfpy", "xlwt"])
def test_interest_rate_from_a_percent_cell_is_the_percentage_shown(tmp_path: Path, writer: str) -> None:
    """A cell showing 5 % holds 0.05; interest.rate is percent per year, so it was taken as 0.05 % (a hundredth
    of the interest). A rate typed as a plain 5 stays 5."""
    rows: list[list[Any]] = [["Ref", "Betrag", "Datum", "Zins"]]
    rows += [[f"R{n}", 100, dt.date(2025, 1, 31), 0.05 if n % 3 == 0 else 0.0525 if n % 3 == 1 else 7]
             for n in range(600)]  # past the first 64 KB of ODS XML: later rows are read by row plans
    expected = [Decimal("5"), Decimal("5.25"), Decimal("7")] * 200

    def percent(value: Any) -> bool:
        return isinstance(value, float) and value < 1

    if writer == "openpyxl":
        path = tmp_path / "z.xlsx"
        wb = openpyxl.Workbook()
        ws = wb.active
        for values in rows:
            ws.append(values)
            if percent(values[3]):
                ws.cell(ws.max_row, 4).number_format = "0%" if values[3] == 0.05 else "0.00%"
        wb.save(path)
    elif writer == "xlsxwriter":
        path = tmp_path / "z.xlsx"
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        day, pct = book.add_format({"num_format": "dd.mm.yyyy"}), book.add_format({"num_format": "0.00%"})
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                sheet.write(r, c, value, day if isinstance(value, dt.date) else pct if percent(value) else None)
        book.close()
    elif writer == "xlwt":  # 0.05 as a number (RK), 0.0525 too, both styled as a percentage
        path = tmp_path / "z.xls"
        xbook = xlwt.Workbook()
        xsheet = xbook.add_sheet("Forderungen")
        xday, xpct = xlwt.easyxf(num_format_str="DD.MM.YYYY"), xlwt.easyxf(num_format_str="0.00%")
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                xsheet.write(r, c, value, xday if isinstance(value, dt.date) else xpct if percent(value)
                             else xlwt.Style.default_style)
        xbook.save(str(path))
    else:
        path = tmp_path / "z.ods"
        doc = OpenDocumentSpreadsheet()
        table = Table(name="Forderungen")
        for values in rows:
            row = TableRow()
            for value in values:
                if isinstance(value, str):
                    cell = TableCell(valuetype="string")
                    cell.addElement(P(text=value))
                elif isinstance(value, dt.date):
                    cell = TableCell(valuetype="date", datevalue=value.isoformat())
                else:
                    cell = TableCell(valuetype="percentage" if percent(value) else "float", value=value)
                row.addElement(cell)
            table.addElement(row)
        doc.spreadsheet.addElement(table)
        doc.save(str(path))
    got = mapped(path, spec(f"  type: {path.suffix[1:]}", RATE))
    assert [r.findings for r in got] == [[]] * 600
    assert [r.claim.interest.rate for r in got] == expected


# ---------------------------------------------------------------- float artefacts of calculated amounts

def test_calculated_amount_reads_as_the_spreadsheet_shows_it_not_its_binary_tail(tmp_path: Path) -> None:
    """Excel saves a formula's result as the double it computed: =0.1+0.2 is 0.30000000000000004, =3*1.1 is
    3.3000000000000003. A spreadsheet works to 15 significant digits and shows 0,3 and 3,3; read with all 17, the
    amount had 'more than 2 decimal places' and the row was rejected. A real fourth decimal stays."""
    from gateway.domain.rules import validate_claim

    book = xlsxwriter.Workbook(str(tmp_path / "f.xlsx"))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["Ref", "Betrag", "Datum"])
    day = book.add_format({"num_format": "dd.mm.yyyy"})
    cases = [("=0.1+0.2", 0.1 + 0.2), ("=3*1.1", 3 * 1.1), ("=19.99*3", 19.99 * 3), ("=1234.56*1.19", 1234.56 * 1.19)]
    for r, (formula, value) in enumerate(cases, start=1):
        sheet.write_string(r, 0, f"R{r}")
        sheet.write_formula(r, 1, formula, None, value)  # the value Excel would have saved with it
        sheet.write_datetime(r, 2, dt.datetime(2025, 1, 31), day)
    book.close()
    rows = mapped(tmp_path / "f.xlsx", spec("  type: xlsx"))
    assert [r.claim.principal_amount for r in rows] == [Decimal("0.3"), Decimal("3.3"), Decimal("59.97"),
                                                        Decimal("1469.1264")]
    found = [[f.code for f in validate_claim(r.claim, dt.date(2025, 6, 1))] for r in rows]
    # 1.469,1264 really has four decimals (ROUND it in the sheet); the others are what the sheet shows
    assert ["invalid_amount" in codes for codes in found] == [False, False, False, True]


# ---------------------------------------------------------------- hidden rows

@pytest.mark.parametrize("writer", ["openpyxl", "xlsxwriter", "odfpy", "xlwt"])
def test_a_hidden_row_is_held_not_handed_over(tmp_path: Path, writer: str) -> None:
    """A client filters its list to the open invoices (or hides the paid ones) and saves it: the rows out of sight
    are still in the file. Handing them over could send a paid invoice to collection; dropping them could lose a
    claim. They are held (awaiting_release), saying why, for the client to release or correct."""
    rows: list[list[Any]] = [["Ref", "Betrag", "Datum"]]
    rows += [[f"R{n}", 10 + n, dt.date(2025, 1, 31)] for n in range(600)]
    hidden = {3, 7, 500}  # sheet rows
    if writer == "openpyxl":
        path = tmp_path / "h.xlsx"
        wb = openpyxl.Workbook()
        ws = wb.active
        for values in rows:
            ws.append(values)
        for r in hidden:
            ws.row_dimensions[r].hidden = True
        wb.save(path)
    elif writer == "xlsxwriter":
        path = tmp_path / "h.xlsx"
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        day = book.add_format({"num_format": "dd.mm.yyyy"})
        for r, values in enumerate(rows):
            if r + 1 in hidden:
                sheet.set_row(r, None, None, {"hidden": True})
            for c, value in enumerate(values):
                sheet.write(r, c, value, day if isinstance(value, dt.date) else None)
        book.close()
    elif writer == "xlwt":
        path = tmp_path / "h.xls"
        xbook = xlwt.Workbook()
        xsheet = xbook.add_sheet("Forderungen")
        xday = xlwt.easyxf(num_format_str="DD.MM.YYYY")
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                xsheet.write(r, c, value, xday if isinstance(value, dt.date) else xlwt.Style.default_style)
            if r + 1 in hidden:
                xsheet.row(r).hidden = True
        xbook.save(str(path))
    else:
        path = tmp_path / "h.ods"
        doc = OpenDocumentSpreadsheet()
        table = Table(name="Forderungen")
        for r, values in enumerate(rows, start=1):
            row = TableRow(visibility="collapse") if r in hidden else TableRow()
            for value in values:
                if isinstance(value, str):
                    cell = TableCell(valuetype="string")
                    cell.addElement(P(text=value))
                elif isinstance(value, dt.date):
                    cell = TableCell(valuetype="date", datevalue=value.isoformat())
                else:
                    cell = TableCell(valuetype="float", value=value)
                row.addElement(cell)
            table.addElement(row)
        doc.spreadsheet.addElement(table)
        doc.save(str(path))
    got = mapped(path, spec(f"  type: {path.suffix[1:]}"))
    assert len(got) == 600
    for row in got:
        if row.row in hidden:
            assert row.claim is not None, row.row
            assert [(f.code, f.severity.value) for f in row.findings] == [("awaiting_release", "hold")]
            assert "hidden" in row.findings[0].message
        else:
            assert row.claim is not None and row.findings == [], row.row


def test_interest_rate_with_a_percent_sign_from_a_csv_saved_by_a_spreadsheet(tmp_path: Path) -> None:
    """Excel and LibreOffice save a percentage cell into a CSV as shown: "5 %", "5,25%"; it was 'not an amount'."""
    path = tmp_path / "z.csv"
    path.write_text("Ref;Betrag;Datum;Zins\nR1;100;31.01.2025;5 %\nR2;100;31.01.2025;5,25%\n"
                    "R3;100;31.01.2025;7\nR4;100;31.01.2025;7\u00a0%\nR5;100;31.01.2025;x %\n", encoding="utf-8")
    rows = mapped(path, spec("  type: csv", RATE))
    assert [r.claim.interest.rate for r in rows[:4]] == [Decimal("5"), Decimal("5.25"), Decimal("7"), Decimal("7")]
    assert [(f.code, f.column) for f in rows[4].findings] == [("invalid_amount", "Zins")]


# ---------------------------------------------------------------- a password to open

def test_a_workbook_with_a_password_to_open_is_named_so_not_called_an_xls(tmp_path: Path) -> None:
    """Excel saves a workbook with a password to open (common for files with personal data) as an OLE2 compound
    file holding ``EncryptionInfo`` and ``EncryptedPackage``. No library here writes one, so xlwt's compound file
    writer makes the container and its one stream is renamed ``EncryptedPackage`` (name and name length)."""
    from gateway.errors import InputError

    book = xlwt.Workbook()
    book.add_sheet("x").write(0, 0, "x")
    plain = tmp_path / "plain.xls"
    book.save(str(plain))
    data = bytearray(plain.read_bytes())
    old = "Workbook\x00".encode("utf-16-le")
    at = data.index(old)
    new = "EncryptedPackage\x00".encode("utf-16-le")
    data[at:at + 64] = new.ljust(64, b"\x00")
    data[at + 64:at + 66] = len(new).to_bytes(2, "little")
    for kind in ("xlsx", "xls"):
        path = tmp_path / f"secret.{kind}"
        path.write_bytes(bytes(data))
        with pytest.raises(InputError, match="password to open") as caught:
            mapped(path, spec(f"  type: {kind}"))
        assert "XLS (Excel 97-2003)" not in str(caught.value)
    with open_reader(plain, spec("  type: xls\n  header_row: 0\n  columns: [A]").format) as reader:
        assert [r.values for r in reader] == [["x"]]  # the unchanged file still reads


# ---------------------------------------------------------------- a totals row at the end

def test_a_totals_row_is_rejected_with_a_hint_how_to_leave_it_out(tmp_path: Path) -> None:
    """Hand-kept lists end with a 'Summe' row: no reference, so it is rejected; the finding says it looks like a
    totals row and how the mapping leaves it out. The word is a label, not debtor data; no amount is quoted."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Ref", "Betrag", "Datum", "Bemerkung"])
    ws.append(["R1", 10, dt.date(2025, 1, 31), None])
    ws.append(["R2", 20, dt.date(2025, 1, 31), None])
    ws.append([None, "=SUM(B2:B3)", None, "Summe"])
    ws["B4"].value = 30  # as saved by a spreadsheet program
    ws.append([None, 5, dt.date(2025, 1, 31), "Lastschrift"])  # a data row without its reference: no hint
    wb.save(tmp_path / "s.xlsx")
    rows = mapped(tmp_path / "s.xlsx", spec("  type: xlsx"))
    assert [(r.row, [f.code for f in r.findings]) for r in rows] == [(2, []), (3, []), (4, ["missing_field"]),
                                                                      (5, ["missing_field"])]
    hint = rows[2].findings[0].message
    assert "totals row" in hint and "Bemerkung" in hint and "skip_rows_where" in hint and "30" not in hint
    assert "totals row" not in rows[3].findings[0].message


# ---------------------------------------------------------------- a note beside the table

@pytest.mark.parametrize("kind", ["xlsx", "ods"])
def test_a_note_beside_the_table_does_not_reject_its_row(tmp_path: Path, kind: str) -> None:
    """A remark typed into a cell right of the table (no header above it) made the row 'have 5 fields, the header
    3 (a missing or extra delimiter ...?)' and rejected it. A spreadsheet has no delimiters to miss: its cells
    stay in their columns, and a column without a name is one the mapping does not read, like any other."""
    rows: list[list[Any]] = [["Ref", "Betrag", "Datum"], ["R1", 10, dt.date(2025, 1, 31)],
                             ["R2", 20, dt.date(2025, 1, 31), None, "angerufen 3.2."]]
    path = tmp_path / f"n.{kind}"
    if kind == "xlsx":
        wb = openpyxl.Workbook()
        for values in rows:
            wb.active.append(values)
        wb.save(path)
    else:
        doc = OpenDocumentSpreadsheet()
        table = Table(name="Forderungen")
        for values in rows:
            row = TableRow()
            for value in values:
                if isinstance(value, str):
                    cell = TableCell(valuetype="string")
                    cell.addElement(P(text=value))
                elif isinstance(value, dt.date):
                    cell = TableCell(valuetype="date", datevalue=value.isoformat())
                elif value is None:
                    cell = TableCell()
                else:
                    cell = TableCell(valuetype="float", value=value)
                row.addElement(cell)
            table.addElement(row)
        doc.spreadsheet.addElement(table)
        doc.save(str(path))
    got = mapped(path, spec(f"  type: {kind}"))
    assert [(r.reference, r.claim is not None, r.findings) for r in got] == [("R1", True, []), ("R2", True, [])]


def test_a_csv_row_with_more_fields_than_the_header_is_still_rejected(tmp_path: Path) -> None:
    """In a CSV an extra field means a delimiter too many somewhere in the row: the values may have shifted."""
    path = tmp_path / "n.csv"
    path.write_text("Ref;Betrag;Datum\nR1;10;31.01.2025\nR2;20;31.01.2025;;angerufen\n", encoding="utf-8")
    got = mapped(path, spec("  type: csv"))
    assert [[f.code for f in r.findings] for r in got] == [[], ["column_count"]]


@pytest.mark.parametrize("kind", ["xlsx", "ods", "xls"])
def test_rows_of_a_collapsed_group_are_not_held(tmp_path: Path, kind: str) -> None:
    """Rows folded away in a collapsed outline group (Data > Group) are hidden too, but for overview, not left
    out: they are handed over as any other. A row hidden by hand beside them is still held."""
    rows: list[list[Any]] = [["Ref", "Betrag", "Datum"]]
    rows += [[f"R{n}", 10 + n, dt.date(2025, 1, 31)] for n in range(1, 8)]
    grouped, by_hand = (3, 4, 5), 7  # sheet rows
    path = tmp_path / f"g.{kind}"
    if kind == "xlsx":
        wb = openpyxl.Workbook()
        ws = wb.active
        for values in rows:
            ws.append(values)
        ws.row_dimensions.group(grouped[0], grouped[-1], hidden=True, outline_level=1)
        ws.row_dimensions[by_hand].hidden = True
        wb.save(path)
    elif kind == "xls":
        xbook = xlwt.Workbook()
        xsheet = xbook.add_sheet("Forderungen")
        xday = xlwt.easyxf(num_format_str="DD.MM.YYYY")
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                xsheet.write(r, c, value, xday if isinstance(value, dt.date) else xlwt.Style.default_style)
            if r + 1 in grouped:
                xsheet.row(r).level, xsheet.row(r).hidden = 1, True
            if r + 1 == by_hand:
                xsheet.row(r).hidden = True
        xbook.save(str(path))
    else:
        from odf.table import TableRowGroup
        doc = OpenDocumentSpreadsheet()
        table = Table(name="Forderungen")
        group = TableRowGroup()
        for r, values in enumerate(rows, start=1):
            row = TableRow(visibility="collapse") if r in grouped or r == by_hand else TableRow()
            for value in values:
                if isinstance(value, str):
                    cell = TableCell(valuetype="string")
                    cell.addElement(P(text=value))
                elif isinstance(value, dt.date):
                    cell = TableCell(valuetype="date", datevalue=value.isoformat())
                else:
                    cell = TableCell(valuetype="float", value=value)
                row.addElement(cell)
            if r in grouped:
                group.addElement(row)
                if r == grouped[-1]:
                    table.addElement(group)
            else:
                table.addElement(row)
        doc.spreadsheet.addElement(table)
        doc.save(str(path))
    got = mapped(path, spec(f"  type: {kind}"))
    assert [r.row for r in got] == list(range(2, 9))
    assert [(r.row, [f.code for f in r.findings]) for r in got if r.findings] == [(by_hand, ["awaiting_release"])]


def test_a_missing_column_in_a_workbook_asks_whether_the_data_is_on_another_sheet(tmp_path: Path) -> None:
    """A workbook that opens on an instructions sheet: without format.sheet the first visible sheet is read, and
    the error now names that possibility (a CSV's does not)."""
    from gateway.errors import InputError

    wb = openpyxl.Workbook()
    wb.active.title = "Anleitung"
    wb.active.append(["Bitte die Forderungen im zweiten Blatt eintragen"])
    data = wb.create_sheet("Forderungen")
    data.append(["Ref", "Betrag", "Datum"])
    data.append(["R1", 10, dt.date(2025, 1, 31)])
    wb.save(tmp_path / "a.xlsx")
    with pytest.raises(InputError, match="on another sheet than the first visible one"):
        mapped(tmp_path / "a.xlsx", spec("  type: xlsx"))
    assert [r.reference for r in mapped(tmp_path / "a.xlsx", spec("  type: xlsx\n  sheet: Forderungen"))] == ["R1"]
    (tmp_path / "a.csv").write_text("Nr;Betrag\nR1;10\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        mapped(tmp_path / "a.csv", spec("  type: csv"))
    assert "sheet" not in str(caught.value)


def test_a_note_in_a_collapsed_group_does_not_make_the_rest_of_the_group_held(tmp_path: Path) -> None:
    """A cell right of the header makes the ODS reader look over the whole sheet once (its used width) while it is
    in the middle of a group; the rows after it in the collapsed group are still the group's, not hidden ones."""
    from odf.table import TableRowGroup

    def row_of(values: list[Any], hidden: bool = False) -> TableRow:
        row = TableRow(visibility="collapse") if hidden else TableRow()
        for value in values:
            cell = TableCell(valuetype="string") if isinstance(value, str) else TableCell(valuetype="float",
                                                                                            value=value)
            if isinstance(value, str):
                cell.addElement(P(text=value))
            row.addElement(cell)
        return row

    doc = OpenDocumentSpreadsheet()
    table = Table(name="Forderungen")
    table.addElement(row_of(["Ref", "Betrag", "Datum"]))
    group = TableRowGroup()
    group.addElement(row_of(["R1", 10, "2025-01-31", "", "Notiz"], hidden=True))
    for n in (2, 3):
        group.addElement(row_of([f"R{n}", 10, "2025-01-31"], hidden=True))
    table.addElement(group)
    table.addElement(row_of(["R4", 10, "2025-01-31"], hidden=True))  # hidden by hand, outside the group
    doc.spreadsheet.addElement(table)
    doc.save(str(tmp_path / "g.ods"))
    got = mapped(tmp_path / "g.ods", spec("  type: ods\n  date_formats: ['%Y-%m-%d']"))
    assert [(r.reference, [f.code for f in r.findings]) for r in got] == [
        ("R1", []), ("R2", []), ("R3", []), ("R4", ["awaiting_release"])]

"""The streaming XLSX/ODS readers give exactly calamine's rows, on files written by real libraries and by hand.

Every workbook is read twice, by ``SpreadsheetReader`` (python-calamine) and by the streaming reader,
and header, header row, sheet and every row's number and cell texts must be equal. Then the hostile
files: cells far right or far down are refused naming the cell and the limit, and a 200,000-row
workbook is read with flat memory (peak RSS of a child process, from /proc/self/status).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter
from odf.office import Annotation
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import CoveredTableCell, Table, TableCell, TableRow
from odf.text import LineBreak, P, S, Span

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.mapping import parse_mapping
from gateway.mapping.spec import FormatSpec
from gateway.readers.ods_stream import OdsStreamReader
from gateway.readers.spreadsheet import SpreadsheetReader
from gateway.readers.xlsx_stream import XlsxStreamReader

ROOT = Path(__file__).resolve().parents[2]
FIELDS = "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n  due_date: Datum\n"


def fmt(kind: str, extra: str = "") -> FormatSpec:
    return parse_mapping(f"client: t\nformat:\n  type: {kind}\n{extra}\n{FIELDS}").format


def read(cls: Any, path: Path, spec: FormatSpec, dates: frozenset[str]) -> Any:
    try:
        with cls(path, spec, date_columns=dates) as reader:
            return reader.header, reader.header_row, reader.sheet, [(r.row, r.sheet, r.values) for r in reader]
    except InputError as exc:
        return f"InputError: {str(exc).split(': ', 1)[-1]}"


def assert_same(path: Path, kind: str, extra: str = "", dates: frozenset[str] = frozenset()) -> Any:
    stream = XlsxStreamReader if kind == "xlsx" else OdsStreamReader
    expected = read(SpreadsheetReader, path, fmt(kind, extra), dates)
    assert read(stream, path, fmt(kind, extra), dates) == expected
    return expected


# ---------------------------------------------------------------- XLSX written by xlsxwriter and openpyxl

def xlsxwriter_book(path: Path, constant_memory: bool = False) -> Path:
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": constant_memory})
    f = {name: wb.add_format({"num_format": code}) for name, code in [
        ("date", "dd.mm.yyyy"), ("stamp", "yyyy-mm-dd hh:mm:ss"), ("time", "hh:mm"), ("elapsed", "[h]:mm"),
        ("long", 'd. mmmm yyyy;@'), ("meters", '#,##0.00 "m"'), ("quoted", '0 "days"'), ("builtin", 14)]}
    cover = wb.add_worksheet("Deckblatt")
    cover.write_string(0, 0, "Export")
    ws = wb.add_worksheet("Forderungen")
    ws.write_string(0, 0, "Export vom 01.03.2025")
    header = ["Ref", "Betrag", "Datum", "Zeit", "Flag", "Formel", "Text"]
    for c, name in enumerate(header):
        ws.write_string(2, c, name)
    rows: list[list[Any]] = [
        ["R1", 0.1 + 0.2, dt.datetime(2025, 1, 31), dt.datetime(2025, 1, 31, 14, 30), True, ("=1+1", 2), "Müller"],
        ["R2", 12345678901234567, 45688, 0.75, False, ("=1/0", "#DIV/0!"), "  spaces  "],
        ["R3", -2.5, dt.datetime(1900, 1, 30), 1.5, None, ('="a"&"b"', "ab"), "Zeile\neins"],
        ["R4", 1e-7, 45688.25, 3.25, True, ("=A1", "R4"), "_x000D_ literal"],
        [None, None, None, None, None, None, None],
        ["R6", 1e20, 45000, 0.0, False, ("=2*3", 6.5), ""],
        ["R7", 12.0, 60, 59, None, None, "  "],
    ]
    for r, row in enumerate(rows, start=3):
        for c, value in enumerate(row):
            if value is None:
                continue
            if c == 2 and isinstance(value, dt.datetime):
                ws.write_datetime(r, c, value, f["date"])
            elif c == 2:
                ws.write_number(r, c, value, f["date"] if r % 2 else f["builtin"])
            elif c == 3 and isinstance(value, dt.datetime):
                ws.write_datetime(r, c, value, f["stamp"])
            elif c == 3:
                ws.write_number(r, c, value, [f["time"], f["elapsed"], f["long"], f["meters"], f["quoted"]][r % 5])
            elif isinstance(value, bool):
                ws.write_boolean(r, c, value)
            elif isinstance(value, tuple):
                ws.write_formula(r, c, value[0], None, value[1])
            elif isinstance(value, str):
                ws.write_string(r, c, value)
            else:
                ws.write_number(r, c, value)
    ws.write_blank(4, 9, None, f["date"])  # a formatted empty cell far right is not a cell to calamine
    ws.write_string(9, 8, "beyond the header")
    wb.add_worksheet("Leer")
    narrow = wb.add_worksheet("Eingerueckt")  # column A unused: calamine starts rows at column B
    narrow.write_row(1, 1, ["Ref", "Betrag"])
    narrow.write_row(2, 1, ["R1", 5])
    narrow.write_row(3, 2, [7])
    wb.close()
    return path


SPECS = ["  sheet: Forderungen\n  header_row: 3", "  sheet: 2\n  header_row: 1", "  sheet: forderungen\n  header_row: 5",
         "  sheet: 2\n  header_row: 0\n  columns: [A, B, Datum, D]", "  sheet: Deckblatt", "  sheet: Leer",
         "  sheet: 9", "  sheet: Fehlt", "  sheet: Eingerueckt", "  sheet: Eingerueckt\n  header_row: 0\n  columns: [X]",
         "  sheet: 2\n  header_row: 3\n  decimal_separator: '.'"]


@pytest.mark.parametrize("constant_memory", [False, True], ids=["shared-strings", "inline-strings"])
@pytest.mark.parametrize("extra", SPECS)
def test_xlsxwriter_workbook_reads_like_calamine(tmp_path: Path, extra: str, constant_memory: bool) -> None:
    path = xlsxwriter_book(tmp_path / "a.xlsx", constant_memory)
    got = assert_same(path, "xlsx", extra, frozenset({"Datum", "Zeit"}))
    if "header_row: 3" in extra and "decimal" not in extra:
        assert got[3][0] == (4, "Forderungen", ["R1", "0,3", "2025-01-31", "2025-01-31 14:30:00", "true", "2", "Müller"])


def test_openpyxl_1904_workbook_reads_like_calamine(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    wb.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    ws = wb.active
    ws.title = "Daten"
    ws.append(["Ref", "Datum", "Stempel", "Betrag", "Formel", "Flag"])
    ws.append(["R1", dt.date(2025, 1, 31), dt.datetime(2025, 1, 31, 8, 15, 30), 19.99, "=D2*2", True])
    ws.append(["R2", dt.date(1904, 1, 2), dt.datetime(2030, 12, 31, 23, 59, 59), 3, None, False])
    ws.append([None, None, None, None, None, None])
    ws["H4"] = "rechts"
    ws.append(["R5", 45688, "text", -0.5])
    wb.create_sheet("Zwei").append(["x"])
    wb.save(tmp_path / "b.xlsx")
    for extra in ("", "  sheet: 2", "  header_row: 2"):
        assert_same(tmp_path / "b.xlsx", "xlsx", extra, frozenset({"Datum", "Betrag"}))


# ---------------------------------------------------------------- XLSX written by hand: what libraries never write

CT = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
      '<Default Extension="xml" ContentType="application/xml"/><Default Extension="rels" '
      'ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.xml" '
      'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
      '<Override PartName="/xl/worksheets/sheet1.xml" '
      'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def handmade(path: Path, rows_xml: str, strings: list[str] | None = None, styles: str = "",
             date1904: bool = False) -> Path:
    """An XLSX with one sheet whose <sheetData> is ``rows_xml``; strings are <si> bodies."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", CT)
        zf.writestr("_rels/.rels", f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        zf.writestr("xl/_rels/workbook.xml.rels",
                    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
                    f'<Relationship Id="rId2" Type="{REL}/styles" Target="styles.xml"/></Relationships>')
        zf.writestr("xl/workbook.xml", f'<workbook {NS} xmlns:r="{REL}"><workbookPr date1904="{int(date1904)}"/>'
                    '<sheets><sheet name="Blatt" sheetId="1" r:id="rId1"/></sheets></workbook>')
        zf.writestr("xl/styles.xml", f"<styleSheet {NS}>{styles}</styleSheet>")
        if strings is not None:
            zf.writestr("xl/sharedStrings.xml", f'<sst {NS}>' + "".join(f"<si>{s}</si>" for s in strings) + "</sst>")
        zf.writestr("xl/worksheets/sheet1.xml", f"<worksheet {NS}><sheetData>{rows_xml}</sheetData></worksheet>")
    return path


STYLES = ('<numFmts><numFmt numFmtId="164" formatCode="&quot;Tag&quot; d"/><numFmt numFmtId="165" '
          'formatCode="[Red]0.00;\\-0"/><numFmt numFmtId="166" formatCode="[$-407]mmm yy"/></numFmts>'
          '<cellXfs><xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="165"/><xf numFmtId="166"/><xf numFmtId="46"/>'
          '<xf numFmtId="22"/></cellXfs>')


def test_handmade_cell_kinds_read_like_calamine(tmp_path: Path) -> None:
    strings = ["<t>Ref</t>", "<t>  trimmed\t</t>", '<t xml:space="preserve">  kept  </t>',
               "<r><t>rich </t></r><r><rPr><b/></rPr><t>text</t></r><rPh><t>phonetic</t></rPh>",
               "<t>line_x000D_break_x00e4_</t>", "<t/>", "<t>&lt;&amp;&gt;</t>"]
    rows = ('<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="inlineStr"><is><t>Wert</t></is></c>'
            '<c r="C1" t="str"><v>Datum</v></c></row>'
            '<row r="2"><c r="A2" t="s"><v>1</v></c><c r="B2" s="1"><v>45688</v></c><c r="C2" s="2"><v>-3.5</v></c>'
            '<c r="D2" s="3"><v>45688</v></c><c r="E2" s="4"><v>1.25</v></c><c r="F2" s="5"><v>45688.5</v></c></row>'
            '<row><c t="s"><v>2</v></c><c t="s"><v>3</v></c><c t="s"><v>4</v></c><c t="b"><v>1</v></c>'
            '<c t="e"><v>#N/A</v></c><c t="d"><v>2025-01-31T10:00:00</v></c></row>'
            '<row r="5"><c r="A5" t="s"><v>5</v></c><c r="b5"><v>007</v></c><c r="C5"><v>45688</v></c>'
            '<c r="D5" t="inlineStr"><v>ignored</v></c><c r="E5"><f>1+1</f><v>2</v></c><c r="F5"><v>abc</v></c></row>'
            '<row r="7"><c r="A7" t="s"><v>6</v></c><c r="B7" t="d"><v>2025-02-01</v></c><c r="C7" t="d"><v>12:30:00</v></c>'
            '<c r="D7" s="1" t="n"><v>0.5</v></c><c r="G7" t="e"><v>#REF!</v></c></row>'
            '<row r="8"><c r="A8" t="b"><v>0</v></c><c r="B8"><v>1E-3</v></c><c r="C8"><v>45688.000001</v></c></row>')
    for date1904 in (False, True):
        path = handmade(tmp_path / f"h{date1904}.xlsx", rows, strings, STYLES, date1904)
        for extra, dates in [("", frozenset({"Datum"})), ("  header_row: 2", frozenset()),
                             ("  header_row: 0\n  columns: [a, b, c]", frozenset({"c"}))]:
            assert_same(path, "xlsx", extra, dates)


# ---------------------------------------------------------------- ODS written by odfpy

def ods_book(path: Path) -> Path:
    doc = OpenDocumentSpreadsheet()
    first = Table(name="Erstes")
    first.addElement(TableRow())
    doc.spreadsheet.addElement(first)
    table = Table(name="Forderungen")
    for _ in range(2):
        table.addElement(TableRow())  # header on row 3

    def cell(kind: str | None, text: str | None = None, repeat: int = 1, **attrs: Any) -> TableCell:
        c = TableCell(valuetype=kind, numbercolumnsrepeated=repeat, **attrs) if kind else (
            TableCell(numbercolumnsrepeated=repeat) if repeat > 1 else TableCell())
        if text is not None:
            c.addElement(P(text=text))
        return c

    def row(*cells: TableCell, repeat: int = 1) -> TableRow:
        r = TableRow(numberrowsrepeated=repeat) if repeat > 1 else TableRow()
        for c in cells:
            r.addElement(c)
        return r

    table.addElement(row(*(cell("string", h) for h in ["Ref", "Betrag", "Datum", "Zeit", "Flag", "Text"])))
    multi = cell("string")
    for part in ("erste Zeile", "zweite"):
        multi.addElement(P(text=part))
    spaced = cell("string")
    p = P(text="a")
    p.addElement(S(c=3))
    p.addText("b")
    p.addElement(Span(text=" kursiv"))
    p.addElement(LineBreak())
    p.addText("c")
    spaced.addElement(p)
    noted = cell("string", "sichtbar")
    note = Annotation()
    note.addElement(P(text="Notiz"))
    noted.addElement(note)
    table.addElement(row(cell("string", "R1"), cell("float", "0,3", value="0.30000000000000004"),
                         cell("date", "31.01.2025", datevalue="2025-01-31"),
                         cell("time", "14:30", timevalue="PT14H30M00S"),
                         cell("boolean", "WAHR", booleanvalue="true"), multi))
    table.addElement(row(cell("string", "R2"), cell("currency", "12 €", value="12", currency="EUR"),
                         cell("date", "x", datevalue="2025-01-31T08:15:30"),
                         cell("time", "x", timevalue="PT36H00M00S"), cell("boolean", "F", booleanvalue="false"),
                         spaced))
    table.addElement(row(cell(None, repeat=6)))
    table.addElement(row(cell("string", "R4"), cell("percentage", "5%", value="0.05"), cell("float", "45688",
                     value="45688"), cell(None), cell(None), noted, cell(None, repeat=1000)))
    table.addElement(row(cell("string", "R5"), cell("float", "7", value="7", repeat=2), repeat=3))
    table.addElement(row(cell(None), cell("float", "1e20", value="1e20"), cell(None, repeat=5),
                         cell("string", "rechts"), CoveredTableCell()))
    table.addElement(row(cell("string", ""), cell("string", "  "), cell("float", "1", value="1")))
    table.addElement(row(cell(None, repeat=1024), repeat=1048560))  # what LibreOffice writes below the data
    doc.spreadsheet.addElement(table)
    shifted = Table(name="Eingerueckt")
    shifted.addElement(row(cell(None), cell("string", "Ref"), cell("string", "Betrag")))
    shifted.addElement(row(cell(None), cell("string", "R1"), cell("float", "5", value="5")))
    doc.spreadsheet.addElement(shifted)
    doc.save(str(path))
    return path


@pytest.mark.parametrize("extra", ["  sheet: Forderungen\n  header_row: 3", "  sheet: 2\n  header_row: 5",
                                   "  sheet: 2\n  header_row: 0\n  columns: [A, B, Datum]", "  sheet: Erstes",
                                   "  sheet: 7", "  sheet: fehlt", "  sheet: eingerueckt", "",
                                   "  sheet: 3\n  header_row: 0\n  columns: [X, Y]"])
def test_ods_reads_like_calamine(tmp_path: Path, extra: str) -> None:
    path = ods_book(tmp_path / "a.ods")
    got = assert_same(path, "ods", extra, frozenset({"Datum", "Betrag"}))
    if extra.endswith("header_row: 3"):  # 0.30000000000000004: to 15 significant digits
        assert got[3][0][2] == ["R1", "0,3", "2025-01-31", "14:30:00", "true",
                                "erste Zeile\nzweite"]


# ---------------------------------------------------------------- hostile files

def test_cells_far_right_or_down_are_refused_naming_cell_and_limit(tmp_path: Path) -> None:
    far = handmade(tmp_path / "far.xlsx", '<row r="1"><c r="A1" t="inlineStr"><is><t>Ref</t></is></c></row>'
                   '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')
    with XlsxStreamReader(far, fmt("xlsx")) as reader:
        with pytest.raises(InputError, match=r"row 1048576: cell XFD1048576 is right of the column limit: .* "
                                             r"1024 columns \(limit limits.max_columns\)"):
            list(reader)
    sparse = handmade(tmp_path / "sparse.xlsx", '<row r="1"><c r="A1" t="inlineStr"><is><t>Ref</t></is></c></row>'
                      '<row r="200000"><c r="ZZ200000"><v>1</v></c></row>')
    with XlsxStreamReader(sparse, fmt("xlsx"), limits=LimitsConfig(max_columns=500)) as reader:
        with pytest.raises(InputError, match=r"cell ZZ200000 is right of the column limit: a sheet may use 500 "):
            list(reader)
    with XlsxStreamReader(sparse, fmt("xlsx"), limits=LimitsConfig(max_rows=100_000)) as reader:
        with pytest.raises(InputError, match=r"cell ZZ200000 is below the row limit: .* 100000 rows"):
            list(reader)
    with XlsxStreamReader(sparse, fmt("xlsx")) as reader:  # within the defaults: one row, the gap costs nothing
        (only,) = list(reader)
        assert only.row == 200000 and len(only.values) == 702 and only.values[-1] == "1"


def test_repeated_row_with_content_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    doc = OpenDocumentSpreadsheet()
    table = Table(name="T")
    for text, repeat in (("Ref", 1), ("R", 2_000_000)):
        row = TableRow(numberrowsrepeated=repeat) if repeat > 1 else TableRow()
        c = TableCell(valuetype="string")
        c.addElement(P(text=text))
        row.addElement(c)
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    doc.save(str(tmp_path / "r.ods"))
    with OdsStreamReader(tmp_path / "r.ods", fmt("ods")) as reader:
        with pytest.raises(InputError, match=r"row 2: row 2 is repeated down to row 2000001, below the row limit: "
                                             r"a sheet may use 1048576 rows \(limit limits.max_rows\)"):
            list(reader)


def test_shared_strings_over_their_budget_are_refused(tmp_path: Path) -> None:
    path = handmade(tmp_path / "s.xlsx", '<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
                    ["<t>" + "x" * 5000 + "</t>"] * 40)
    with pytest.raises(InputError, match=r"shared strings need more than 0 MB"):
        XlsxStreamReader(path, fmt("xlsx"), max_shared_strings_bytes=100_000)


# Peak RSS of this process (VmHWM): getrusage's ru_maxrss would carry pytest's own peak over fork and exec.
MEASURE = """
import sys
from gateway.mapping import parse_mapping
from gateway.readers.xlsx_stream import XlsxStreamReader
spec = parse_mapping("client: t\\nformat: {type: xlsx}\\n"
                     "fields: {creditor_reference: Ref, principal_amount: Betrag, due_date: Datum}\\n").format
def peak_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
before = peak_kb()
with XlsxStreamReader(sys.argv[1], spec) as reader:
    count = sum(1 for _ in reader)
print(count, peak_kb() - before, before)
"""


def big_xlsx(path: Path, rows: int) -> Path:
    """A sheet of ``rows`` rows of five cells, every row with its own shared strings (as a real export has)."""
    cells = ('<row r="{n}"><c r="A{n}" t="s"><v>{s}</v></c><c r="B{n}"><v>{n}.25</v></c><c r="C{n}" t="s"><v>{t}</v>'
             '</c><c r="D{n}"><v>45688</v></c><c r="E{n}" t="inlineStr"><is><t>Musterstraße {n}</t></is></c></row>')
    body = "".join(cells.format(n=n, s=2 * n - 4, t=2 * n - 3) for n in range(2, rows + 2))
    head = '<row r="1">' + "".join(f'<c r="{c}1" t="inlineStr"><is><t>{name}</t></is></c>'
                                   for c, name in zip("ABCDE", ["Ref", "Betrag", "Name", "Datum", "Strasse"])) + "</row>"
    strings = [s for n in range(rows) for s in (f"<t>REF-{n:08d}</t>", f"<t>Name {n} Müller</t>")]
    return handmade(path, head + body, strings)


def test_200k_row_workbook_is_read_with_flat_memory(tmp_path: Path) -> None:
    path = big_xlsx(tmp_path / "big.xlsx", 200_000)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    out = done.stdout.split()
    rows, growth_kb = int(out[0]), int(out[1])
    assert rows == 200_000
    assert growth_kb < 100 * 1024, f"peak RSS grew by {growth_kb} KB reading 200,000 rows"

"""Every reader on real files: CSV dialects and encodings, XLSX/ODS written by real libraries, XML, fixed width."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P

from gateway.errors import InputError
from gateway.mapping import MappingSpec, compile_mapping, parse_mapping
from gateway.readers import SourceRow, open_reader
from gateway.readers.spreadsheet import number_text

FIELDS = "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n  due_date: Datum\n"


def spec(fmt: str, fields: str = FIELDS) -> MappingSpec:
    return parse_mapping(f"client: t\nformat:\n{fmt}\n{fields}")


def read(path: Path, s: MappingSpec, dates: frozenset[str] = frozenset()) -> tuple[list[str], list[SourceRow]]:
    with open_reader(path, s.format, date_columns=dates) as reader:
        return reader.header, list(reader)


def mapped(path: Path, s: MappingSpec) -> list[Any]:
    with open_reader(path, s.format, date_columns=frozenset({"Datum"})) as reader:
        mapper = compile_mapping(s, reader.header, file=reader.file, header_row=reader.header_row)
        return [mapper.map_row(src, "t") for src in reader]


# ---------------------------------------------------------------- CSV

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "latin-1"])
@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_csv_detects_encoding_and_sniffs_delimiter(tmp_path: Path, encoding: str, delimiter: str) -> None:
    d = delimiter
    text = (f'Ref{d}Name{d}Betrag\r\nR1{d}"Müller{d} Jörg"{d}"1,50"\r\nR2{d}"Zeile\r\nzwei ""x"""{d}2\r\n')
    path = tmp_path / "a.csv"
    path.write_bytes(text.encode(encoding))
    header, rows = read(path, spec("  encoding: auto\n  delimiter: auto"))
    assert header == ["Ref", "Name", "Betrag"]
    assert [(r.row, r.values) for r in rows] == [(2, ["R1", f"Müller{d} Jörg", "1,50"]),
                                                  (3, ["R2", 'Zeile\r\nzwei "x"', "2"])]


def test_csv_iso_8859_1_is_told_from_windows_1252(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("Ref;Name\nR1;Gr\u00fc\u00df \x81\n".encode("latin-1"))
    header, rows = read(path, spec("  encoding: auto"))
    assert rows[0].values == ["R1", "Grüß \x81"]


def test_csv_without_header_uses_declared_columns(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("R1;10,00;01.02.2025\nR2;20,00;02.02.2025\n", encoding="utf-8")
    s = spec("  header_row: 0\n  columns: [Ref, Betrag, Datum]")
    rows = mapped(path, s)
    assert [r.claim.creditor_reference for r in rows] == ["R1", "R2"]
    assert rows[1].row == 2 and str(rows[1].claim.principal_amount) == "20.00"


def test_csv_trailing_sum_row_is_ignored_by_rule(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("Ref;Betrag;Datum\nR1;1,00;01.02.2025\nR2;2,00;01.02.2025\nSumme;3,00;\n", encoding="utf-8")
    by_rule = [r.row for r in mapped(path, spec("  skip_rows_where: {Ref: '(?i)summe.*'}"))]
    by_count = [r.row for r in mapped(path, spec("  footer_rows: 1"))]
    assert by_rule == by_count == [2, 3]


def test_csv_wrong_delimiter_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("Ref,Betrag,Datum\nR1,1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"no ';' .* but 2 times ','.*row 1|row 1.*no ';'"):
        read(path, spec("  delimiter: ';'"))


def csv_reference(data: bytes, codec: str, delimiter: str = ";") -> tuple[list[tuple[int, list[str]]], str | None]:
    """What ``csv`` makes of the file's lines one by one (the reader's rows without its block reading and
    direct splitting): the non-empty records after the header with their first line, and the csv error."""
    import csv as std_csv
    parts = data.split(b"\n")
    lines = [p.decode(codec) + "\n" for p in parts[:-1]] + ([parts[-1].decode(codec)] if parts[-1] else [])
    reader = std_csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    out, prev = [], 0
    try:
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if any(record):
                out.append((start, record))
    except std_csv.Error as exc:
        return out[1:], f"row {prev + 1}: {exc}"
    return out[1:], None


TRICKY = ['R1;"a;b";1\r\n', 'R2;"zwei\r\nZeilen ""x""";2\r\n', "R3;plain;3\n", ";;\r\n", "\r\n", "R4;;\n",
          'R5;say "hi";5\r\n', 'R6;"x\n\ny";6\n', "R7;\u00fc\u20ac;7\r\n", "R8;a\r\r\n", "R9; ;9"]


@pytest.mark.parametrize("block", [1, 2, 5, 13, 64, 1 << 18])
def test_csv_blocks_and_direct_splits_read_as_csv_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        block: int) -> None:
    import random

    from gateway.readers import csv_reader
    monkeypatch.setattr(csv_reader, "READ_BLOCK", block)
    rnd = random.Random(block)
    for n in range(40):
        lines = ["Ref;Name;Betrag\r\n"] + [rnd.choice(TRICKY) for _ in range(rnd.randrange(1, 12))]
        path = tmp_path / f"f{n}.csv"
        path.write_bytes("".join(lines).encode("utf-8"))
        expected, problem = csv_reference(path.read_bytes(), "utf-8")
        with open_reader(path, spec("  encoding: utf-8").format) as reader:
            rows: list[tuple[int, list[str]]] = []
            try:
                rows.extend((src.row, src.values) for src in reader)
            except InputError as exc:
                assert problem is not None and f"row {exc.row}:" in problem, (lines, str(exc))
            else:
                assert problem is None, lines
        assert rows == expected, lines


@pytest.mark.parametrize("block", [3, 40, 1 << 18])
def test_csv_bad_byte_in_a_later_block_keeps_the_rows_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 block: int) -> None:
    from gateway.readers import csv_reader
    monkeypatch.setattr(csv_reader, "READ_BLOCK", block)
    good = "".join(f"R{i};Gr\u00fc\u00dfe;{i}\r\n" for i in range(2, 40)).encode("cp1252")
    path = tmp_path / "a.csv"
    data = b"Ref;Name;Betrag\r\n" + good + b"R40;x\x81y;40\r\n" + good
    path.write_bytes(data)
    rows = []
    with open_reader(path, spec("  encoding: windows-1252").format) as reader:
        with pytest.raises(InputError) as info:
            rows.extend(src.row for src in reader)
    assert rows == list(range(2, 40))
    assert info.value.row == 40
    offset = data.index(b"\x81")
    assert f"byte 0x81 at byte offset {offset} is not valid windows-1252" in str(info.value)


@pytest.mark.parametrize("block", [3, 40, 1 << 18])
def test_csv_line_over_the_limit_in_a_later_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  block: int) -> None:
    from gateway.readers import csv_reader
    monkeypatch.setattr(csv_reader, "READ_BLOCK", block)
    monkeypatch.setattr(csv_reader, "LINE_LIMIT", 50)
    path = tmp_path / "a.csv"
    # lines of exactly the limit pass; one byte more (or an unterminated last line of the limit) does not
    ok = "R;" + "x" * 46 + "\r\n"
    assert len(ok) == 50
    for tail, rows_before in ((ok + "R;" + "y" * 47 + "\r\n" + ok, 2), (ok + "R;" + "z" * 48, 2)):
        path.write_bytes(("Ref;Name\r\n" + ok + tail).encode("ascii"))
        seen = []
        with open_reader(path, spec("  encoding: utf-8").format) as reader:
            with pytest.raises(InputError, match="longer than 50 bytes") as info:
                seen.extend(src.row for src in reader)
        assert seen == list(range(2, 2 + rows_before)) and info.value.row == 2 + rows_before


# ---------------------------------------------------------------- spreadsheets

def write_xlsx(path: Path, sheets: dict[str, list[list[Any]]], date_cells: bool = True) -> Path:
    wb = xlsxwriter.Workbook(str(path))
    date_fmt = wb.add_format({"num_format": "dd.mm.yyyy"})
    for name, rows in sheets.items():
        ws = wb.add_worksheet(name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, dt.date):
                    ws.write_datetime(r, c, dt.datetime.combine(value, dt.time()), date_fmt)
                elif isinstance(value, str):
                    ws.write_string(r, c, value)
                elif value is not None:
                    ws.write_number(r, c, value)
    wb.close()
    return path


def write_ods(path: Path, rows: list[list[Any]], sheet: str = "Tabelle1") -> Path:
    doc = OpenDocumentSpreadsheet()
    table = Table(name=sheet)
    for row in rows:
        tr = TableRow()
        for value in row:
            if isinstance(value, dt.date):
                cell = TableCell(valuetype="date", datevalue=value.isoformat())
                cell.addElement(P(text=value.strftime("%d.%m.%Y")))
            elif isinstance(value, (int, float)):
                cell = TableCell(valuetype="float", value=repr(value))
                cell.addElement(P(text=str(value)))
            else:
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=str(value)))
            tr.addElement(cell)
        table.addElement(tr)
    doc.spreadsheet.addElement(table)
    doc.save(str(path))
    return path


ROWS: list[list[Any]] = [["Export vom 01.03.2025"], [], ["Ref", "Betrag", "Datum"],
                         ["R1", 0.1 + 0.2, dt.date(2025, 1, 31)], [12345, "1.234,56", "15.02.2025"],
                         ["R3", 45688, 45688], ["R4", 1e-7, None]]


def test_xlsx_cells_reach_the_mapper_as_csv_like_text(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "a.xlsx", {"Deckblatt": [["x"]], "Forderungen": ROWS})
    header, rows = read(path, spec("  type: xlsx\n  sheet: Forderungen\n  header_row: 3"), frozenset({"Datum"}))
    assert header == ["Ref", "Betrag", "Datum"]
    assert [(r.row, r.sheet, r.values) for r in rows] == [
        (4, "Forderungen", ["R1", "0,3", "2025-01-31"]),  # stored as 0.3, not 0.30000000000000004
        (5, "Forderungen", ["12345", "1.234,56", "15.02.2025"]),
        (6, "Forderungen", ["R3", "45688", "2025-01-31"]),  # a serial in a date column is a date
        (7, "Forderungen", ["R4", "0,0000001", ""])]
    claims = [m.claim for m in mapped(path, spec("  type: xlsx\n  sheet: 2\n  header_row: 3"))]
    assert [c.due_date for c in claims[:3]] == [dt.date(2025, 1, 31), dt.date(2025, 2, 15), dt.date(2025, 1, 31)]
    assert [str(c.principal_amount) for c in claims[1:3]] == ["1234.56", "45688"]


def test_number_text_is_exact() -> None:
    assert [number_text(v, ",") for v in (0.3, 12.0, 1234.56, 1e-7, -2.5, 7)] == \
        ["0,3", "12", "1234,56", "0,0000001", "-2,5", "7"]


def test_ods_is_read_like_xlsx(tmp_path: Path) -> None:
    path = write_ods(tmp_path / "a.ods", [["Ref", "Betrag", "Datum"], ["R1", 19.99, dt.date(2025, 3, 1)],
                                          ["R2", "5,00", "02.03.2025"]])
    rows = mapped(path, spec("  type: ods"))
    assert [(m.row, str(m.claim.principal_amount), m.claim.due_date) for m in rows] == [
        (2, "19.99", dt.date(2025, 3, 1)), (3, "5.00", dt.date(2025, 3, 2))]


def test_missing_sheet_is_named(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "a.xlsx", {"Daten": [["Ref"]], "Info": [["x"]]})
    with pytest.raises(InputError, match=r"a.xlsx: the mapping reads sheet 'Forderungen', but the workbook has "
                                         r"only: 'Daten', 'Info'"):
        read(path, spec("  type: xlsx\n  sheet: Forderungen"))
    with pytest.raises(InputError, match="sheet number 3, but the workbook has 2"):
        read(path, spec("  type: xlsx\n  sheet: 3"))


# ---------------------------------------------------------------- XML

XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<ex:Export xmlns:ex="urn:example:export">
  <ex:Kopf><ex:Erstellt>2025-03-01</ex:Erstellt></ex:Kopf>
  <ex:Forderungen>
    <ex:Forderung nr="R1"><ex:Betrag>12.50</ex:Betrag><ex:Schuldner><ex:Name>M\xc3\xbcller</ex:Name></ex:Schuldner>
    </ex:Forderung>
    <ex:Forderung nr="R2"><ex:Betrag>7</ex:Betrag></ex:Forderung>
  </ex:Forderungen>
</ex:Export>
"""
XML_FORMAT = ("  type: xml\n  record_path: /e:Export/e:Forderungen/e:Forderung\n"
              "  namespaces: {e: 'urn:example:export'}\n"
              "  decimal_separator: '.'\n  columns: {Ref: '@nr', Betrag: 'e:Betrag', Name: 'e:Schuldner/e:Name'}")


def test_xml_records_with_namespaces_and_xpath_provenance(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(XML)
    header, rows = read(path, spec(XML_FORMAT, "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n"))
    assert header == ["Ref", "Betrag", "Name"]
    assert [(r.row, r.xpath, r.values) for r in rows] == [
        (5, "/e:Export/e:Forderungen/e:Forderung[1]", ["R1", "12.50", "Müller"]),
        (7, "/e:Export/e:Forderungen/e:Forderung[2]", ["R2", "7", ""])]


def test_xml_wrong_record_path_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(XML)
    s = spec(XML_FORMAT.replace("e:Forderungen/", ""),
             "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n")
    with pytest.raises(InputError, match=r"no record element at /e:Export/e:Forderung \(the root element is "
                                         r"<Export> in namespace urn:example:export\)"):
        read(path, s)


def test_xml_memory_stays_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    with open(path, "wb") as fh:
        fh.write(b"<Export><Kopf/>")
        for i in range(20_000):
            fh.write(b"<F><Nr>R%d</Nr><B>%d</B></F>" % (i, i))
        fh.write(b"</Export>")
    s = spec("  type: xml\n  record_path: /Export/F\n  columns: {Ref: Nr, Betrag: B}",
             "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n")
    from gateway.readers.xml_reader import XmlReader  # in this process: open_reader runs it in a child
    with XmlReader(path, s.format) as reader:
        it = iter(reader)
        for _ in range(19_999):
            src = next(it)
        root = it.gi_frame.f_locals["elem"].getroottree().getroot()  # type: ignore[attr-defined]
        assert len(root) <= 3  # the finished records were dropped, not kept under the root
        assert src.values == ["R19998", "19998"]


# ---------------------------------------------------------------- fixed width

def test_fixed_width_positions_and_implied_cents(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    lines = ["KOPFSATZ 2025-03-01".ljust(40), "R1        0000012345 01022025".ljust(40),
             "R2        0000000099-01022025".ljust(40), ""]
    path.write_bytes("\r\n".join(lines).encode("cp1252"))
    s = spec("  type: fixed_width\n  encoding: windows-1252\n  header_row: 2\n  date_formats: ['%d%m%Y']\n"
             "  columns:\n    Ref: {start: 1, length: 10}\n    Betrag: {start: 11, length: 11, decimals: 2}\n"
             "    Datum: {start: 22, length: 8}")
    rows = mapped(path, s)
    assert [(m.row, m.claim.creditor_reference, str(m.claim.principal_amount), m.claim.due_date) for m in rows] \
        == [(2, "R1", "123.45", dt.date(2025, 2, 1)), (3, "R2", "-0.99", dt.date(2025, 2, 1))]
    with open_reader(path, s.format) as reader:
        assert [r.values[1] for r in reader] == ["123,45", "-0,99"]  # trailing sign, written the mapping's way


@pytest.mark.parametrize("block", [1, 7, 1 << 18])
def test_fixed_width_blocks_keep_line_numbers_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         block: int) -> None:
    from gateway.readers import csv_reader
    monkeypatch.setattr(csv_reader, "READ_BLOCK", block)  # line_blocks, shared with CSV
    s = spec("  type: fixed_width\n  encoding: windows-1252\n  header_row: 1\n"
             "  columns:\n    Ref: {start: 1, length: 4}\n    Betrag: {start: 5, length: 6, decimals: 2}")
    path = tmp_path / "a.txt"
    body = ["R1  000150", "", "R2  00099-\r", "   ", "R\u00e43  12    \r\r", "R4  x"]
    path.write_bytes("\n".join(body).encode("cp1252"))  # no line break after the last line
    with open_reader(path, s.format) as reader:
        assert [(r.row, r.values) for r in reader] == [(1, ["R1", "1,50"]), (3, ["R2", "-0,99"]),
                                                        (5, ["R\u00e43", "0,12"]), (6, ["R4", "x"])]
    path.write_bytes("\n".join(body[:3] + ["R9  \x81"] + body).encode("latin-1"))
    rows = []
    with open_reader(path, s.format) as reader:
        with pytest.raises(InputError, match="byte 0x81 at position 5 is not valid cp1252") as info:
            rows.extend(r.row for r in reader)
    assert rows == [1, 3] and info.value.row == 4


def test_xls_is_read_like_xlsx(tmp_path: Path) -> None:
    import xlwt  # type: ignore[import-untyped]

    book = xlwt.Workbook()
    sheet = book.add_sheet("Daten")
    date_style = xlwt.easyxf(num_format_str="DD.MM.YYYY")
    for c, name in enumerate(["Ref", "Betrag", "Datum"]):
        sheet.write(0, c, name)
    sheet.write(1, 0, "R1")
    sheet.write(1, 1, 19.99)
    sheet.write(1, 2, dt.date(2025, 3, 1), date_style)
    sheet.write(2, 0, "R2")
    sheet.write(2, 1, "5,00")
    sheet.write(2, 2, "02.03.2025")
    path = tmp_path / "a.xls"
    book.save(str(path))
    rows = mapped(path, spec("  type: xls\n  sheet: Daten"))
    assert [(m.row, str(m.claim.principal_amount), m.claim.due_date) for m in rows] == [
        (2, "19.99", dt.date(2025, 3, 1)), (3, "5.00", dt.date(2025, 3, 2))]


@pytest.mark.parametrize(("fmt", "key", "message"), [
    ("  type: xml\n  columns: {Ref: Nr}", "format.record_path", "needs 'record_path'"),
    ("  type: xml\n  record_path: /A/B\n  columns: {Ref: 'Nr['}", "format.columns.Ref", "not a valid XPath"),
    ("  type: fixed_width\n  columns: {Ref: {start: 0, length: 3}}", "format.columns.Ref", "start: from 1"),
    ("  header_row: 0", "format.columns", "needs 'columns'"),
    ("  sheet: Daten", "format.sheet", "applies to xlsx, xls and ods only"),
    ("  skip_rows_where: {Ref: '(unclosed'}", "format.skip_rows_where.Ref", "not a valid regular expression"),
    ("  encoding: utf-16", "format.encoding", "or auto"),
])
def test_format_mistakes_are_refused_at_load(fmt: str, key: str, message: str) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as info:
        spec(fmt)
    assert info.value.key == key and info.value.line is not None


def test_utf16_xml_is_read_and_its_doctype_refused(tmp_path: Path) -> None:
    s = spec("  type: xml\n  record_path: /E/F\n  columns: {Ref: '@nr', Betrag: B}",
             "fields:\n  creditor_reference: Ref\n  principal_amount: Betrag\n")
    path = tmp_path / "a.xml"
    path.write_bytes('<?xml version="1.0" encoding="UTF-16"?><E><F nr="Ä1"><B>1</B></F></E>'.encode("utf-16"))
    assert [r.values for r in read(path, s)[1]] == [["Ä1", "1"]]
    path.write_bytes('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE E [<!ENTITY x "y">]><E><F nr="&x;"/></E>'
                     .encode("utf-16"))
    with pytest.raises(InputError, match="DOCTYPE declaration"):
        read(path, s)

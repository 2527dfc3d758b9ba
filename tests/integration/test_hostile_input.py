"""Hostile and broken files: each fails with an error naming file/row/column, and nothing accepted is lost."""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import xlsxwriter
from lxml import etree
from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.services.ack import ack_schema
from gateway.services.ingest import IngestResult, ingest_file
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from gateway.store.schema import claims
from tests.conftest import ROOT

HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
DEMO_MAPPING = (ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8")
HEADER = ("Rechnungsnr;Kundennr;Anrede;Vorname;Nachname;Firma;Geburtsdatum;Strasse;Hausnr;PLZ;Ort;Land;E-Mail;"
          "Telefon;IBAN;Rechnungsdatum;Faellig;Betrag;Mahngebuehr;Mahndatum;Bemerkung")
XML_MAPPING = """client: demo
format: {type: xml, record_path: /Export/Forderung, decimal_separator: '.', columns: {Nr: Nr, Betrag: Betrag}}
fields: {creditor_reference: Nr, principal_amount: Betrag, currency: {const: EUR}}
"""


def row(ref: str) -> str:
    return (f"{ref};K1;Herr;Max;Muster;;01.01.1980;Weg;1;10115;Berlin;DE;m@example.de;;DE89370400440532013000;"
            "01.02.2025;15.02.2025;100,00;;;")


def mapping(tmp_path: Path, text: str = DEMO_MAPPING, **replace: str) -> Path:
    for old, new in replace.items():
        assert old.replace("_", " ") in text
        text = text.replace(old.replace("_", " "), new)
    path = tmp_path / "mapping.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def stored(app: App) -> int:
    with read_tx(app.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(claims)).scalar_one())


def failed(app: App, result: IngestResult, *fragments: str) -> list[dict[str, str]]:
    """The result failed with every fragment in its error, on the submission too; the ack's lines."""
    assert result.status == "failed", result
    for fragment in fragments:
        assert fragment in str(result.error)
    with read_tx(app.engine) as conn:
        sub = sub_store.get(conn, str(result.submission))
    assert sub["status"] == "failed" and sub["error"] == result.error
    if str(result.ack_path).endswith(".xml"):  # XML inputs get an XML ack, valid against schemas/ack.xsd
        doc = etree.parse(str(result.ack_path))
        ack_schema().assertValid(doc)
        lines = [{"row": r.get("number", ""), "outcome": r.get("outcome", ""),
                  "codes": ",".join(f.get("code", "") for f in r)} for r in doc.getroot()]
    else:
        with open(str(result.ack_path), encoding="utf-8", newline="") as fh:
            lines = list(csv.DictReader(fh, delimiter=";"))
    assert lines[-1]["outcome"] == "failed" and lines[-1]["codes"] == "input_error"
    return lines


def test_unbalanced_quote_keeps_the_rows_before_it(app: App) -> None:
    result = ingest_file(app, HOSTILE / "unbalanced_quote.csv", "demo")
    lines = failed(app, result, "unbalanced_quote.csv, row 5:", "never closed (unbalanced quote)")
    assert [(ln["row"], ln["outcome"]) for ln in lines] == [("2", "accepted"), ("3", "accepted"), ("4", "accepted"),
                                                             ("5", "failed")]
    assert stored(app) == 3 and result.accepted == 3


def test_wrong_delimiter_is_named(app: App) -> None:
    result = ingest_file(app, HOSTILE / "wrong_delimiter.csv", "demo")
    failed(app, result, "wrong_delimiter.csv, row 1:", "no ';'", "20 times ','")
    assert stored(app) == 0


def test_mixed_encodings_detected_or_declared(app: App, tmp_path: Path) -> None:
    detected = ingest_file(app, HOSTILE / "mixed_encoding.csv", "demo",
                           mapping_path=mapping(tmp_path, **{"encoding:_windows-1252": "encoding: auto"}))
    failed(app, detected, "mixed_encoding.csv, row 4:", "mixed text encodings: UTF-8 characters (line 2)")
    assert stored(app) == 0  # detection reads the whole file first: nothing stored
    copy = tmp_path / "declared.csv"
    copy.write_bytes((HOSTILE / "mixed_encoding.csv").read_bytes() + b"\r\n")  # other bytes: not a duplicate
    declared = ingest_file(app, copy, "demo", mapping_path=mapping(tmp_path, **{"encoding:_windows-1252":
                                                                                 "encoding: utf-8"}))
    failed(app, declared, "declared.csv, row 4:", "byte 0xFC", "not valid utf-8")
    assert stored(app) == 2  # the two UTF-8 rows before the bad byte are kept


@pytest.mark.parametrize(("name", "message"), [("empty.csv", "the file is empty: no header row"),
                                                ("header_only.csv", "the file has no data rows after the header "
                                                                    "(row 1)")])
def test_empty_and_header_only_files(app: App, name: str, message: str) -> None:
    failed(app, ingest_file(app, HOSTILE / name, "demo"), f"{name}: {message}")


def test_hundred_thousand_columns(app: App, tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    extra = ";".join(f"X{i}" for i in range(100_000 - 21))
    path.write_bytes(f"{HEADER};{extra}\r\n{row('W-1')}\r\n".encode("cp1252"))
    failed(app, ingest_file(app, path, "demo"), "wide.csv, row 1:", "100000 columns (limit 10000)")


def test_fifty_megabyte_field(app: App, tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with open(path, "wb") as fh:
        fh.write(f"{HEADER}\r\n{row('B-1')}\r\n{row('B-2')}\r\n".encode("cp1252"))
        fh.write(row("B-3").encode("cp1252"))
        for _ in range(50):
            fh.write(b"x" * (1 << 20))
        fh.write(b"\r\n")
    result = ingest_file(app, path, "demo")
    failed(app, result, "huge.csv, row 4:", "line is longer than 4194304 bytes")
    assert stored(app) == 2


def test_quoted_field_over_the_limit(app: App, tmp_path: Path) -> None:
    path = tmp_path / "quoted.csv"
    chunk = "x" * 1000 + "\r\n"
    path.write_bytes(f"{HEADER}\r\n{row('Q-1')}\r\n{row('Q-2')[:-1]}\"{chunk * 2000}\"\r\n".encode("cp1252"))
    failed(app, ingest_file(app, path, "demo"), "quoted.csv, row 3:", "a field is larger than 1048576 bytes")
    assert stored(app) == 1


@pytest.mark.parametrize(("name", "entity"), [("billion_laughs.xml", "lol9"), ("xxe.xml", "xxe")])
def test_xml_with_doctype_is_refused(app: App, tmp_path: Path, name: str, entity: str) -> None:
    result = ingest_file(app, HOSTILE / name, "demo", mapping_path=mapping(tmp_path, XML_MAPPING))
    failed(app, result, f"{name}, row 1:", "DOCTYPE declaration", "refused")
    assert stored(app) == 0 and "root:" not in str(result.error)


def test_xlsx_zip_bomb_is_refused_before_unpacking(app: App, tmp_path: Path) -> None:
    path = tmp_path / "bomb.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("Daten").write_row(0, 0, HEADER.split(";"))
    wb.close()
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("xl/media/padding.bin", "w", force_zip64=True) as member:
            for _ in range(64):
                member.write(bytes(1 << 20))
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, **{"type:_csv": "type: xlsx"}))
    failed(app, result, "bomb.xlsx:", "part 'xl/media/padding.bin' unpacks from", "refused as a zip bomb")


def _many_parts(path: Path, parts: int) -> Path:
    """A sound XLSX of one claim with ``parts`` empty members besides (~80 bytes of upload each)."""
    wb = xlsxwriter.Workbook(str(path))
    sheet = wb.add_worksheet("Daten")
    sheet.write_row(0, 0, HEADER.split(";"))
    sheet.write_row(1, 0, row("R1").split(";"))
    wb.close()
    with zipfile.ZipFile(path, "a") as zf:
        for i in range(parts):
            zf.writestr(f"{i:x}", b"")
    return path


def _checked_in_100_mb(path: Path, kind: str) -> str:
    """What ``check_kind`` (run in serve's process for every file) says of ``path`` with 100 MB to spare."""
    script = (
        "import resource, sys\n"
        "from gateway.errors import InputError\n"
        "from gateway.readers.sniff import check_kind\n"
        "size = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize:')) << 10\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + (100 << 20),) * 2)\n"
        "try:\n"
        "    check_kind(sys.argv[1], sys.argv[2])\n"
        "except InputError as exc:\n"
        "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", script, str(path), kind], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_ods_whose_mimetype_part_is_a_bomb_is_refused_without_unpacking_it(app: App, tmp_path: Path) -> None:
    # The part that names an ODS file's type was read whole to look at its first bytes: a 200 KB upload whose
    # `mimetype` unpacks to 200 MB took 200 MB of serve's memory (4 MB of upload: 4 GB) before any limit looked.
    path = tmp_path / "bomb.ods"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("mimetype", "w", force_zip64=True) as member:
            member.write(b"application/vnd.oasis.opendocument.spreadsheet")
            for _ in range(200):
                member.write(bytes(1 << 20))
        zf.writestr("content.xml", "<office:document-content/>")
    assert "part 'mimetype' unpacks from" in _checked_in_100_mb(path, "ods")
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, **{"type:_csv": "type: ods"}))
    failed(app, result, "bomb.ods:", "part 'mimetype' unpacks from", "refused as a zip bomb")


def test_zip_of_many_parts_is_refused_before_they_take_memory(app: App, tmp_path: Path) -> None:
    # 200,000 empty parts: 16 MB of upload. zipfile builds an object per part before it can be asked how many
    # there are (~1 KB each): it took 200 MB of serve's memory to refuse it, 2 GB for a 200 MB SFTP upload.
    path = _many_parts(tmp_path / "parts.xlsx", 200_000)
    assert "more than 10000 parts: refused as a zip bomb" in _checked_in_100_mb(path, "xlsx")
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, **{"type:_csv": "type: xlsx"}))
    failed(app, result, "parts.xlsx:", "zip archive of more than 10000 parts: refused as a zip bomb")
    assert stored(app) == 0  # its one claim is not taken from a file refused as a whole


def test_zip_of_parts_up_to_the_limit_is_read(app: App, tmp_path: Path) -> None:
    path = _many_parts(tmp_path / "book.xlsx", 9_000)
    with open(path, "ab") as fh:  # bytes after the archive (zipfile reads such a file): the count still holds
        fh.write(b"trailer")
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, **{"type:_csv": "type: xlsx"}))
    assert (result.status, result.accepted) == ("completed", 1), result


def test_rows_before_a_damaged_spot_of_a_spreadsheet_are_acked_and_stored(app: App, tmp_path: Path) -> None:
    # The XLSX reader runs in a child process that sends rows in batches of 500: the rows of the batch under
    # way when the sheet turned out damaged (here 1002-1249) were in no ack and no claim, while the ack's failure
    # line named no row. A CSV's rows before a damaged line are stored and acked; a spreadsheet's now too.
    path = tmp_path / "damaged.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    sheet = wb.add_worksheet("Daten")
    sheet.write_row(0, 0, HEADER.split(";"))
    for i in range(1, 1300):
        sheet.write_row(i, 0, row(f"D{i}").split(";"))
    wb.close()
    with zipfile.ZipFile(path) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    start = xml.index('<row r="1250"')
    end = xml.index("</row>", start)
    parts["xl/worksheets/sheet1.xml"] = (xml[:start] + xml[start:end].replace("</c>", "</x>", 1) + xml[end:]).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, **{"type:_csv": "type: xlsx"}))
    lines = failed(app, result, "damaged.xlsx:", "cannot read the XLSX file after row 1249:")
    assert [line["row"] for line in lines[:-1]] == [str(n) for n in range(2, 1250)]
    assert {line["outcome"] for line in lines[:-1]} == {"accepted"}
    assert stored(app) == 1248


def test_file_that_is_not_what_it_says(app: App, tmp_path: Path) -> None:
    result = ingest_file(app, HOSTILE / "not_a_spreadsheet.xlsx", "demo",
                         mapping_path=mapping(tmp_path, **{"type:_csv": "type: xlsx"}))
    failed(app, result, "not_a_spreadsheet.xlsx:", "declares format type 'xlsx', but the file is plain text")
    workbook = tmp_path / "export.csv"
    wb = xlsxwriter.Workbook(str(workbook))
    wb.add_worksheet().write_row(0, 0, ["a"])
    wb.close()
    failed(app, ingest_file(app, workbook, "demo"), "export.csv:", "declares format type 'csv', but the file is "
                                                                   "an XLSX workbook")


def test_sheet_that_does_not_exist(app: App, tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet("Januar").write_row(0, 0, HEADER.split(";"))
    wb.close()
    text = DEMO_MAPPING.replace("type: csv", "type: xlsx\n  sheet: Februar")
    result = ingest_file(app, path, "demo", mapping_path=mapping(tmp_path, text))
    failed(app, result, "book.xlsx:", "the mapping reads sheet 'Februar', but the workbook has only: 'Januar'")

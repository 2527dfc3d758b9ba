"""What a client reads in the ack when a file dropped in its inbox cannot be read by a reader in a child
process: the file's own name and the place, never the descriptor the gateway read it through."""

from __future__ import annotations

import logging
import os
import re
import resource
from pathlib import Path

import pytest

from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.mapping.spec import FormatSpec
from gateway.readers.isolated import IsolatedReader

from gateway.bootstrap import App
from gateway.services.inbox import process_inbox_file

PLANTED, PLANTED_IBAN = "Quxplantova", "DE19370400449876543210"
MAPPING = """version: 1
client: demo
format:
  type: xml
  record_path: /orders/order
  date_formats: ['%Y-%m-%d']
  columns: {id: '@id', name: name, total: total, due: due}
fields:
  creditor_reference: id
  claim_type: {const: service}
  currency: {const: EUR}
  principal_amount: total
  due_date: due
  debtor.last_name: name
"""


def test_a_cut_off_xml_file_is_named_by_its_own_name_in_the_ack(app: App, tmp_path: Path) -> None:
    (app.config.path("mappings") / "demo.yaml").write_text(MAPPING, encoding="utf-8")
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    path = upload / "export.xml"
    path.write_bytes(b'<?xml version="1.0"?><orders><order id="1"><name>Quxplantova</name><total>1.00</total>'
                     b"<due>2025-02-01</due></order><order id=\"2\"><name>Quxplantova")
    result = process_inbox_file(app, "demo", path, channel="watch")
    assert result.status == "failed"
    ack = app.config.inbox_dir / "demo" / "ack" / "export.xml.ack.xml"
    text = ack.read_text(encoding="utf-8") if ack.exists() else next(
        (app.config.inbox_dir / "demo" / "ack").glob("export.xml.ack.*")).read_text(encoding="utf-8")
    failed = re.search(r'outcome="failed">.*?>([^<]*)</', text, re.S)
    assert failed, text
    message = failed.group(1)
    assert message.startswith("export.xml, row"), message
    assert not re.search(r"(^|: )\d+(, row \d+)?: ", message), message  # no "27, row 1: " from /proc/<pid>/fd/27
    assert "Quxplantova" not in message and "Quxplantova" not in (result.error or "")
    assert "/proc/" not in message and "/proc/" not in (result.error or "")


def test_a_file_without_its_header_row_is_described_never_quoted(app: App, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    path = upload / "ohne-kopf.csv"  # the demo layout, its header row left out: the first row is a debtor's
    path.write_bytes((f"RE-1;K-1;Herr;Zorbina;{PLANTED};;14.03.1978;Hauptstr;12;50667;Koeln;DE;z@example.de;;"
                      f"{PLANTED_IBAN};15.01.2026;29.01.2026;100,00;;;memo\r\n").encode("cp1252") * 2)
    result = process_inbox_file(app, "demo", path, channel="watch")
    assert result.status == "failed"
    ack = (app.config.inbox_dir / "demo" / "ack" / "ohne-kopf.csv.ack.csv").read_text(encoding="utf-8")
    assert "the header row has 21 cells, 7 of them numbers, amounts or dates, as in a data row" in ack, ack
    for where in (ack, result.error or "", caplog.text):
        assert PLANTED not in where and PLANTED_IBAN not in where and "Zorbina" not in where


def test_an_isolated_reader_works_when_its_pipe_is_descriptor_1024_or_more(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) leaves no room above 1024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200) if hard == resource.RLIM_INFINITY
                                                else min(max(soft, 1200), hard), hard))
    path = tmp_path / "orders.xml"
    path.write_bytes(b'<?xml version="1.0"?><orders><order id="1"><name>A</name></order></orders>')
    held = []
    try:
        anchor = os.open(path, os.O_RDONLY)
        held.append(anchor)
        while held[-1] < 1030:  # what a serve with many connections has open: the child's pipe comes after
            held.append(os.dup(anchor))
        spec = FormatSpec(type="xml", record_path="/orders/order", columns={"id": "@id", "name": "name"})
        with IsolatedReader("gateway.readers.xml_reader:XmlReader", path, spec, LimitsConfig()) as reader:
            assert [r.values for r in reader] == [["1", "A"]]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_utf8_file_under_a_windows_1252_mapping_is_refused_not_garbled(app: App) -> None:
    from tests.sftp_support import client_csv  # the demo layout, Windows-1252 as the demo mapping declares
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    good = client_csv(upload / "ansi.csv.part", 3, "ANSI")
    text = good.read_bytes().decode("cp1252").splitlines(keepends=True)
    text[2] = text[2].replace(text[2].split(";")[4], "M\u00fcller", 1)  # row 3's last name gets an umlaut
    (upload / "ansi.csv.part").write_bytes("".join(text).encode("cp1252"))
    (upload / "utf8.csv.part").write_bytes("".join(text).replace("ANSI", "UTF8").encode("utf-8"))
    for name in ("ansi.csv", "utf8.csv"):
        (upload / f"{name}.part").rename(upload / name)
    assert process_inbox_file(app, "demo", upload / "ansi.csv").status == "completed"  # the umlaut as declared
    result = process_inbox_file(app, "demo", upload / "utf8.csv")
    assert result.status == "failed"
    ack = (app.config.inbox_dir / "demo" / "ack" / "utf8.csv.ack.csv").read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(text, start=1) if not line.isascii())  # rows before it: ASCII, stored
    assert [line.split(";")[2] for line in ack[1:]] == ["accepted"] * (first - 2) + ["failed"], ack
    assert ack[-1].startswith(f"{first};;failed;;input_error;") and f"row {first}:" in ack[-1], ack
    assert "the file is UTF-8" in ack[-1] and "set format.encoding to utf-8" in ack[-1]


@pytest.mark.parametrize("last_line_break", [True, False])
def test_fixed_width_and_csv_readers_refuse_utf8_under_windows_1252(tmp_path: Path, last_line_break: bool) -> None:
    from gateway.mapping.spec import FixedColumn
    from gateway.readers.csv_reader import CsvReader
    from gateway.readers.fixed_width import FixedWidthReader

    end = "\n" if last_line_break else ""
    fixed = tmp_path / "satz.txt"
    fixed.write_bytes(("R-1       Meier     \nR-2       M\u00fcller    " + end).encode("utf-8"))
    spec = FormatSpec(type="fixed_width", encoding="windows-1252",
                      columns={"Nr": FixedColumn(start=1, length=10), "Name": FixedColumn(start=11, length=10)})
    with pytest.raises(InputError, match=r"row 2: the file is UTF-8") as caught:
        with FixedWidthReader(fixed, spec) as reader:
            list(reader)
    assert "M\u00fcller" not in str(caught.value) and "M\u00c3" not in str(caught.value)
    delimited = tmp_path / "f.csv"
    delimited.write_bytes(("Nr;Name\nR-1;Meier\nR-2;M\u00fcller" + end).encode("utf-8"))
    with pytest.raises(InputError, match=r"row 3: the file is UTF-8"):
        with CsvReader(delimited, FormatSpec(type="csv", encoding="windows-1252", delimiter=";")) as reader:
            list(reader)

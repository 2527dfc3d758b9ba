"""Ingest of spreadsheets and XML end to end, the XML ack and its error cap, and parallel ingest."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import xlsxwriter
from lxml import etree

from bench.gen import HEADER, rows as sample_rows, write_csv
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.services.ack import ACK_NS, ack_schema
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.store import claims as claim_store
from gateway.store.db import read_tx
from tests.conftest import ROOT, write_config

DEMO_MAPPING = (ROOT / "mappings" / "demo.yaml").read_text(encoding="utf-8")
XML_MAPPING = """client: demo
format:
  type: xml
  record_path: /x:Export/x:Forderung
  namespaces: {x: 'urn:example:erp'}
  decimal_separator: '.'
  date_formats: ['%Y-%m-%d']
  columns: {Nr: '@nr', Betrag: 'x:Betrag', Faellig: 'x:Faellig', Name: 'x:Name', Vorname: 'x:Vorname',
            Geburtstag: 'x:Geburtstag', Mail: 'x:Mail'}
fields:
  creditor_reference: Nr
  principal_amount: Betrag
  currency: {const: EUR}
  claim_type: {const: goods}
  due_date: Faellig
  debtor.last_name: Name
  debtor.first_name: Vorname
  debtor.birth_date: Geburtstag
  debtor.email: Mail
"""


def csv_line(values: list[str]) -> str:
    return ";".join(f'"{v}"' if ";" in v else v for v in values)


def xml_file(path: Path, amounts: list[str]) -> Path:
    records = "".join(
        f'<x:Forderung nr="X-{i}"><x:Betrag>{a}</x:Betrag><x:Faellig>2025-02-01</x:Faellig><x:Name>Müller</x:Name>'
        f"<x:Vorname>Jörg</x:Vorname><x:Geburtstag>1970-05-01</x:Geburtstag><x:Mail>j{i}@example.de</x:Mail>"
        "</x:Forderung>\n" for i, a in enumerate(amounts))
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<x:Export xmlns:x="urn:example:erp">\n{records}'
                    "</x:Export>\n", encoding="utf-8")
    return path


def test_xml_input_gets_a_valid_xml_ack_cut_short_at_the_cap(app: App, tmp_path: Path) -> None:
    import msgspec
    app.config.clients["demo"] = msgspec.structs.replace(app.config.clients["demo"], ack_error_cap=1)
    (tmp_path / "erp.yaml").write_text(XML_MAPPING, encoding="utf-8")
    path = xml_file(tmp_path / "export.xml", ["10.00", "abc", "20.50", "x", "-"])
    result = ingest_file(app, path, "demo", mapping_path=tmp_path / "erp.yaml")
    assert (result.rows, result.accepted, result.rejected) == (5, 2, 3)
    assert result.ack_path and result.ack_path.endswith("export.xml.ack.xml")
    doc = etree.parse(result.ack_path)
    ack_schema().assertValid(doc)
    ns = {"a": ACK_NS}
    rows = doc.findall("a:row", ns)
    assert [(r.get("number"), r.get("outcome"), r.get("xpath")) for r in rows] == [
        ("3", "accepted", "/x:Export/x:Forderung[1]"), ("4", "rejected", "/x:Export/x:Forderung[2]"),
        ("5", "accepted", "/x:Export/x:Forderung[3]")]
    assert rows[1].find("a:finding", ns).get("column") == "Betrag"  # type: ignore[union-attr]
    truncated = doc.find("a:truncated", ns)
    assert truncated is not None and (truncated.get("cap"), truncated.get("more")) == ("1", "2")
    assert "2 more rejected rows are not listed" in str(truncated.text)
    with read_tx(app.engine) as conn:
        stored = {c["creditor_reference"]: c for c in claim_store.listing(conn, client_id="demo")}
    assert set(stored) == {"X-0", "X-2"} and stored["X-2"]["principal_minor"] == 2050


def test_csv_ack_cap_and_xml_ack_by_config(app: App, tmp_path: Path) -> None:
    import msgspec
    app.config.clients["demo"] = msgspec.structs.replace(app.config.clients["demo"], ack_error_cap=2)
    path = tmp_path / "many.csv"
    lines = [";".join(HEADER)] + [csv_line(r) for r in sample_rows(6)]
    lines += [line.replace(";DE", ";XX", 1) for line in lines[1:4]]  # bad country: three more rejected rows
    path.write_bytes(("\r\n".join(lines[:1] + [ln.replace("RE-", "BAD-") if i > 6 else ln
                                                 for i, ln in enumerate(lines[1:], 1)]) + "\r\n").encode("cp1252"))
    result = ingest_file(app, path, "demo")
    with open(str(result.ack_path), encoding="utf-8", newline="") as fh:
        ack = list(csv.DictReader(fh, delimiter=";"))
    assert result.rejected >= 3
    assert ack[-1]["outcome"] == "truncated" and ack[-1]["codes"] == "error_cap"
    assert f"{result.rejected - 2} more rejected rows are not listed" in ack[-1]["messages"]
    assert sum(a["outcome"] == "rejected" for a in ack) == 2 and len(ack) == result.rows - result.rejected + 3
    app.config.clients["demo"] = msgspec.structs.replace(app.config.clients["demo"], ack_format="xml")
    again = ingest_file(app, write_csv(tmp_path / "other.csv", 3), "demo")
    assert str(again.ack_path).endswith("other.csv.ack.xml")
    ack_schema().assertValid(etree.parse(str(again.ack_path)))


def test_xlsx_end_to_end(app: App, tmp_path: Path) -> None:
    path = tmp_path / "export.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Forderungen")
    date_fmt = wb.add_format({"num_format": "dd.mm.yyyy"})
    ws.write_row(0, 0, HEADER)
    for r, values in enumerate(sample_rows(4), start=1):
        for c, (name, value) in enumerate(zip(HEADER, values)):
            if name == "Betrag":
                ws.write_number(r, c, float(value.replace(".", "").replace(",", ".")))
            elif name in ("Rechnungsdatum", "Faellig") and r % 2:
                ws.write_datetime(r, c, dt.datetime.strptime(value, "%d.%m.%Y"), date_fmt)
            elif name == "Faellig":
                ws.write_number(r, c, (dt.datetime.strptime(value, "%d.%m.%Y").date() - dt.date(1899, 12, 30)).days)
            else:
                ws.write_string(r, c, value)
    wb.close()
    (tmp_path / "x.yaml").write_text(DEMO_MAPPING.replace("type: csv", "type: xlsx"), encoding="utf-8")
    result = ingest_file(app, path, "demo", mapping_path=tmp_path / "x.yaml")
    assert (result.rows, result.accepted, result.rejected) == (4, 4, 0), result.results
    expected = list(sample_rows(4))
    with read_tx(app.engine) as conn:
        got = {c["creditor_reference"]: c for c in claim_store.listing(conn, client_id="demo")}
    for values in expected:
        row = got[values[0]]
        assert row["due_date"] == dt.datetime.strptime(values[16], "%d.%m.%Y").date()
        assert row["principal_minor"] == int(values[17].replace(".", "").replace(",", ""))


def test_parallel_ingest_stores_what_a_serial_one_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = {}
    for workers in (0, 2):
        base = tmp_path / f"w{workers}"
        cfg = write_config(base, f"sqlite:///{base / 'var' / 'gateway.db'}", dispatcher={"batch_size": 97})
        init_keys(load_config(cfg))
        app = build_app(cfg, migrate=True)
        try:
            path = base / "in.csv"
            lines = [";".join(HEADER)] + [csv_line(r) for r in sample_rows(1000)]
            lines[500] = lines[10]  # a duplicate reference in a later chunk
            lines[700] = lines[700].replace(";DE", ";XX", 1)
            path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
            result = ingest_file(app, path, "demo", workers=workers)
            with read_tx(app.engine) as conn:
                rows = claim_store.rows_by_ids(conn, [c["id"] for c in claim_store.listing(conn, limit=5000)])
                claims = {r["creditor_reference"]: (r["source_row"], claim_store.decode(r, app.cipher)) for r in rows}
            ack = Path(str(result.ack_path)).read_text(encoding="utf-8")
            results[workers] = (result.rows, result.accepted, result.rejected, result.total_amount, claims, ack)
        finally:
            app.close()
    serial, parallel = results[0], results[2]
    assert serial[:4] == parallel[:4] and serial[1] == 998
    assert serial[4] == parallel[4]
    assert [ln.split(";")[:3] + ln.split(";")[4:] for ln in serial[5].splitlines()] == \
        [ln.split(";")[:3] + ln.split(";")[4:] for ln in parallel[5].splitlines()]


def test_lost_worker_loses_nothing(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.services import ingest_run
    from tests.integration.dying_worker import dying_work

    monkeypatch.setattr(app.config.dispatcher, "batch_size", 100)
    monkeypatch.setattr(ingest_run, "store_work", dying_work)
    path = tmp_path / "in.csv"
    path.write_bytes(("\r\n".join([";".join(HEADER)] + [csv_line(r) for r in sample_rows(1000)]) + "\r\n")
                     .encode("cp1252"))
    result = ingest_file(app, path, "demo", workers=1)
    assert (result.status, result.rows, result.accepted) == ("completed", 1000, 1000)
    with read_tx(app.engine) as conn:
        stored = claim_store.listing(conn, client_id="demo", limit=5000)
    assert sorted(c["source_row"] for c in stored) == list(range(2, 1002))


def test_parallel_ingest_stopped_midway_resumes_whole_and_once(app: App, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers store their own chunks: a stop leaves only whole chunks in file order, resumed once."""
    from gateway.errors import Interrupted
    from gateway.services.inbox import resume_unfinished
    from gateway.services.ingest_run import PROGRESS
    from gateway.store import submissions as sub_store

    monkeypatch.setattr(app.config.dispatcher, "batch_size", 50)
    path = tmp_path / "in.csv"
    path.write_bytes(("\r\n".join([";".join(HEADER)] + [csv_line(r) for r in sample_rows(2000)]) + "\r\n")
                     .encode("cp1252"))
    seen: list[int] = []

    def progress(rows: int) -> None:
        seen.append(rows)
        if rows >= 300:
            app.stopping.set()

    token = PROGRESS.set(progress)
    try:
        with pytest.raises(Interrupted):
            ingest_file(app, path, "demo", workers=2)
    finally:
        PROGRESS.reset(token)
        app.stopping.clear()
    with read_tx(app.engine) as conn:
        [sub] = sub_store.unfinished(conn)
        stored = sorted(c["source_row"] for c in claim_store.listing(conn, client_id="demo", limit=5000))
    # Whole chunks only, in file order, and exactly the rows the progress marker says (rows 2.. are data)
    assert stored == list(range(2, sub["progress_row"] + 1)) and 300 <= len(stored) < 2000
    assert len(stored) % 50 == 0
    [result] = resume_unfinished(app)
    assert (result.status, result.rows, result.accepted) == ("completed", 2000, 2000)
    with read_tx(app.engine) as conn:
        stored = sorted(c["source_row"] for c in claim_store.listing(conn, client_id="demo", limit=5000))
    assert stored == list(range(2, 2002))


def test_worker_lost_after_storing_its_chunk_stores_nothing_twice(app: App, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import func, select

    from gateway.services import ingest_run
    from gateway.store.schema import submission_findings
    from tests.integration.dying_worker import dying_after_store

    monkeypatch.setattr(app.config.dispatcher, "batch_size", 100)
    monkeypatch.setattr(ingest_run, "store_work", dying_after_store)
    lines = [csv_line(r) for r in sample_rows(1000)]
    for i in (150, 250, 650):  # one rejected row before, in and after the chunk whose answer is lost
        lines[i] = lines[i].replace(";DE", ";XX", 1)
    path = tmp_path / "in.csv"
    path.write_bytes(("\r\n".join([";".join(HEADER)] + lines) + "\r\n").encode("cp1252"))
    result = ingest_file(app, path, "demo", workers=1)
    assert (result.rows, result.accepted, result.rejected) == (1000, 997, 3)
    with read_tx(app.engine) as conn:
        stored = claim_store.listing(conn, client_id="demo", limit=5000)
        kept = conn.execute(select(func.count()).select_from(submission_findings)).scalar_one()
    assert len(stored) == 997 and len({c["creditor_reference"] for c in stored}) == 997
    assert kept == 3  # each rejected row's finding once, also the one of the chunk stored before the loss

"""Review of the speed work (issue 15): each finding as a test that failed before its fix; now regression tests.

Scenarios that can hang run in a child process with a time limit, so a hang fails the test and leaves nothing
behind in the test process (a stuck ingest thread would keep the client's lease for every later test).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.services.ingest_store import StoredChunk, work

ROOT = Path(__file__).resolve().parents[2]


# --- Tasks run by the spawned ingest workers (imported there from this module) ---------------------------------

def slow_second_chunk_third_dies_waiting(chunk_no: int, rows: bytes) -> StoredChunk | None:
    """Chunk 2 takes a while before storing; the worker of chunk 3 is killed (as by the OOM killer) while it
    waits for its turn in ``ChunkTurns.wait``."""
    if chunk_no == 2:
        time.sleep(3.0)
    if chunk_no == 3:
        threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGKILL)).start()
    return work(chunk_no, rows)


def _stop_after_a_worker_died_waiting(base: Path) -> None:
    """In a child process: a parallel ingest whose worker dies waiting for its turn, then the gateway stops."""
    from bench.gen import HEADER, rows as sample_rows
    from gateway.bootstrap import build_app
    from gateway.config import load_config
    from gateway.errors import Interrupted
    from gateway.services import ingest_run
    from gateway.services.ingest import ingest_file
    from gateway.services.ingest_run import PROGRESS
    from gateway.services.keys import init_keys
    from tests.conftest import write_config

    cfg = write_config(base, f"sqlite:///{base / 'var' / 'gateway.db'}", dispatcher={"batch_size": 50})
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    ingest_run.store_work = slow_second_chunk_third_dies_waiting  # type: ignore[assignment]
    path = base / "in.csv"
    path.write_bytes(("\r\n".join([";".join(HEADER)] + [";".join(r) for r in sample_rows(1000)]) + "\r\n")
                     .encode("cp1252"))

    def progress(rows: int) -> None:
        if rows == 50:  # chunk 1 reported; meanwhile chunk 3's worker dies waiting for chunk 2
            time.sleep(4.0)
            app.stopping.set()  # serve got SIGTERM

    PROGRESS.set(progress)
    try:
        ingest_file(app, path, "demo", workers=2)
    except Interrupted:
        print("interrupted")
    else:
        print("completed")


def test_stop_after_a_worker_died_waiting_its_turn_does_not_hang(tmp_path: Path) -> None:
    """A worker killed while it waits for its turn leaves the multiprocessing Condition counting it as a sleeper;
    ``notify_all`` (ChunkTurns.abort, ChunkTurns.done) then waits for that dead sleeper to wake, forever, holding
    the condition's lock. The ingesting process calls ``abort`` when it stops (Interrupted) or fails: it hangs."""
    code = ("import sys; from pathlib import Path; from tests.integration.test_review_session import "
            "_stop_after_a_worker_died_waiting as run; run(Path(sys.argv[1]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the stopping ingest still hangs 40 s later (ChunkTurns.abort waits for a dead worker)")
    assert proc.returncode == 0 and out.strip() in ("interrupted", "completed")


def _xlsx_with_row_attribute(path: Path, value: str) -> Path:
    """A workbook (header + one row) whose data row carries one more attribute with ``value``, as Excel writes
    ``x14ac:dyDescent`` on rows (here long: hostile input)."""
    import zipfile

    import xlsxwriter

    plain = path.with_suffix(".plain.xlsx")
    wb = xlsxwriter.Workbook(str(plain))
    ws = wb.add_worksheet("Daten")
    ws.write_string(0, 0, "Name")
    ws.write_string(1, 0, "Wert")
    wb.close()
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                text = text.replace("<worksheet ", '<worksheet xmlns:x14ac="http://schemas.microsoft.com/office/'
                                    'spreadsheetml/2009/9/ac" ', 1)
                text = text.replace('<row r="2"', f'<row r="2" x14ac:dyDescent="{value}"', 1)
                data = text.encode()
            zout.writestr(info, data)
    return path


def test_a_long_row_attribute_does_not_make_reading_quadratic(tmp_path: Path) -> None:
    """``xlsx_stream._attributes_ok`` runs ``_ATTR_NAME = ([^\\s=]+)="`` with findall over a row's attributes: from
    every position inside a value the greedy class runs to the value's end and backtracks, so an attribute of n
    characters costs ~n^2/2 steps (20k: ~1.3 s of CPU, 60k: ~11 s; 835c098 read it in milliseconds). A 60 KB
    workbook then outlasts a 5 s reader limit and is refused, and a 1 MB one ties up a core for the whole
    limits.reader_timeout_seconds (600 s by default) per file."""
    import random
    import string

    from gateway.config import LimitsConfig
    from gateway.mapping.spec import FormatSpec
    from gateway.readers.base import open_reader

    rnd = random.Random(15)
    value = "".join(rnd.choice(string.ascii_letters) for _ in range(60_000))  # no compression ratio to refuse
    path = _xlsx_with_row_attribute(tmp_path / "long_attribute.xlsx", value)
    reader = open_reader(path, FormatSpec(type="xlsx"), limits=LimitsConfig(reader_timeout_seconds=5.0))
    try:
        rows = [(src.row, src.values) for src in reader]
    finally:
        reader.close()
    assert reader.header == ["Name"] and rows == [(2, ["Wert"])]


def _column(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def _wide_sheet_of_many_row_shapes(path: Path, width: int, shapes: int) -> Path:
    """A header and ``shapes`` pairs of rows ``width`` numbers wide; the rows of a pair are alike, the pairs differ
    in which cells carry a style (as highlighted cells do)."""
    import zipfile

    import xlsxwriter

    plain = path.with_suffix(".plain.xlsx")
    wb = xlsxwriter.Workbook(str(plain))
    ws = wb.add_worksheet("Daten")
    ws.write_number(0, 0, 1, wb.add_format({"bold": True}))  # styles.xml with a second cell style (s="1")
    wb.close()
    cols = [_column(j) for j in range(width)]
    rows = ['<row r="1">' + "".join(f'<c r="{c}1" t="inlineStr"><is><t>H{c}</t></is></c>' for c in cols) + "</row>"]
    r = 2
    for s in range(shapes):
        for _ in range(2):
            rows.append(f'<row r="{r}">' + "".join(f'<c r="{c}{r}"' + (' s="1"' if (s >> (j % 12)) & 1 else "")
                                                   + f"><v>{j}</v></c>" for j, c in enumerate(cols)) + "</row>")
            r += 1
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats'
             '.org/spreadsheetml/2006/main"><sheetData>' + "".join(rows) + "</sheetData></worksheet>")
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, sheet if info.filename == "xl/worksheets/sheet1.xml" else zin.read(info.filename))
    return path


def test_a_wide_sheet_of_many_row_shapes_reads_within_the_reader_memory_limit(tmp_path: Path) -> None:
    """``XlsxStreamReader._remember`` keeps up to 1000 row shapes and compiles a pattern for each one seen twice;
    a plan of a 1000-cell row holds a ~30 KB pattern source and its compiled program (~0.5 MB in all). 1200 rows
    of 1000 numbers in 600 shapes (an 8 MB workbook) then need more than limits.reader_memory_mb (256 MB) and are
    refused; 835c098 read them in ~2 s within 30 MB (and 2000 such rows: 3.6 s against 45 s of CPU now)."""
    from gateway.config import LimitsConfig
    from gateway.mapping.spec import FormatSpec
    from gateway.readers.base import open_reader

    path = _wide_sheet_of_many_row_shapes(tmp_path / "wide.xlsx", 1000, 600)
    reader = open_reader(path, FormatSpec(type="xlsx"), limits=LimitsConfig())
    try:
        count = sum(1 for _ in reader)
    finally:
        reader.close()
    assert count == 1200


def test_a_wide_ods_sheet_of_many_row_shapes_reads_within_the_reader_memory_limit(tmp_path: Path) -> None:
    """The ODS reader keeps row shapes the same way (``ods_stream``: plans while fewer than 1000): 1200 rows of 1000
    numbers in 600 shapes need more than 256 MB (835c098: 2.7 s, 30 MB)."""
    import zipfile

    from gateway.config import LimitsConfig
    from gateway.mapping.spec import FormatSpec
    from gateway.readers.base import open_reader

    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"')
    width = 1000
    rows = ["<table:table-row>" + "".join(f'<table:table-cell office:value-type="string"><text:p>H{j}</text:p>'
                                          "</table:table-cell>" for j in range(width)) + "</table:table-row>"]
    for s in range(600):
        for _ in range(2):
            rows.append("<table:table-row>" + "".join(
                "<table:table-cell" + (' table:style-name="ce1"' if (s >> (j % 12)) & 1 else "")
                + f' office:value-type="float" office:value="{j}"><text:p>{j}</text:p></table:table-cell>'
                for j in range(width)) + "</table:table-row>")
    content = (f'<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content {ns} office:version="1.2">'
               '<office:body><office:spreadsheet><table:table table:name="Daten">' + "".join(rows)
               + "</table:table></office:spreadsheet></office:body></office:document-content>")
    path = tmp_path / "wide.ods"
    with zipfile.ZipFile(ROOT / "tests" / "fixtures" / "stadtwerke" / "input.ods") as zin, \
            zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = content.encode() if info.filename == "content.xml" else zin.read(info.filename)
            zout.writestr(info, data, compress_type=zipfile.ZIP_STORED if info.filename == "mimetype"
                          else zipfile.ZIP_DEFLATED)
    reader = open_reader(path, FormatSpec(type="ods"), limits=LimitsConfig())
    try:
        count = sum(1 for _ in reader)
    finally:
        reader.close()
    assert count == 1200


def test_findings_kept_stay_within_the_cap_after_a_lost_worker(app: App, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that committed its chunk and died before answering: the ingesting process refreshes the progress
    marker (``_refresh_progress``) but counts the findings kept from its own reported chunks only
    (``self.stored_findings``), not the lost chunk's (which ``ChunkTurns.findings`` holds). The chunks it stores
    afterwards get that much more room, so more than MAX_STORED_FINDINGS findings are kept. 835c098 stored every
    chunk in the ingesting process and counted them all."""
    from sqlalchemy import func, select

    from bench.gen import HEADER, rows as sample_rows
    from gateway.services import ingest_run
    from gateway.services.ingest import ingest_file
    from gateway.services.ingest_store import MAX_STORED_FINDINGS
    from gateway.store.db import read_tx
    from gateway.store.schema import submission_findings
    from tests.integration.dying_worker import dying_after_store

    monkeypatch.setattr(app.config.dispatcher, "batch_size", 1000)
    monkeypatch.setattr(ingest_run, "store_work", dying_after_store)  # dies after committing chunk 2
    lines = []
    for r in sample_rows(MAX_STORED_FINDINGS + 300):
        r[11] = "XX"  # no such country: every row rejected with one finding
        lines.append(";".join(v.replace(";", ",") for v in r))
    path = tmp_path / "in.csv"
    path.write_bytes(("\r\n".join([";".join(HEADER)] + lines) + "\r\n").encode("cp1252"))
    result = ingest_file(app, path, "demo", workers=1)
    assert result.rejected == MAX_STORED_FINDINGS + 300
    with read_tx(app.engine) as conn:
        kept = conn.execute(select(func.count()).select_from(submission_findings)).scalar_one()
    assert kept == MAX_STORED_FINDINGS

"""Hostile spreadsheets and XML through `gateway ingest` as a process: a failed ack, exit 3, memory bounded.

Each file once aborted the gateway (calamine allocating 512 GiB), took gigabytes, or escaped as a
crash (NotImplementedError from zipfile). Now the reader runs in a child process under
``limits``; whatever it does, the ingest process ends normally with a clear message naming the
limit, its peak RSS (``os.wait4``: the process and the reader child it reaped) stays under
``limits.memory_mb``, and the demo CSV ingested next still works. Resume never loops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from gateway.bootstrap import build_app
from gateway.config import LimitsConfig
from gateway.errors import InputError
from gateway.mapping.spec import FormatSpec
from gateway.readers.isolated import IsolatedReader
from gateway.readers.xml_reader import XmlReader
from gateway.services.inbox import MAX_RESUMES, resume_unfinished
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx, write_tx
from gateway.store.schema import submissions
from tests.conftest import ROOT, write_config
from tests.fixtures.hostile import generate

GATEWAY = [sys.executable, "-m", "gateway.entrypoints.cli"]
CEILING_MB = LimitsConfig().memory_mb
CALAMINE = "gateway.readers.spreadsheet:SpreadsheetReader"
RUNNER = ("import os, subprocess, sys\n"
          "p = subprocess.Popen(sys.argv[2:], stdout=open(sys.argv[1], 'w'), stderr=sys.stderr)\n"
          "_, status, usage = os.wait4(p.pid, 0)\n"
          "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n")


def _mapping(base: Path, kind: str, extra: str = "") -> Path:
    path = base / f"hostile-{kind}.yaml"
    path.write_text(f"version: 1\nclient: demo\nformat:\n  type: {kind}\n  decimal_separator: ','\n"
                    f"  date_formats: ['%d.%m.%Y']\n{extra}"
                    "fields:\n  creditor_reference: Rechnungsnr\n  claim_type: {const: service}\n"
                    "  currency: {const: EUR}\n  principal_amount: Betrag\n  due_date: Faellig\n"
                    "  debtor.last_name: Nachname\n", encoding="utf-8")
    return path


def _ingest(cfg: Path, file: Path, *extra: str) -> tuple[int, dict[str, object], int]:
    """Exit code, the --json result, and the peak RSS in MB of the ingest process and its reaped children."""
    out = cfg.parent / "out.json"
    # ru_maxrss counts what a child held before exec (a copy of pytest): a small runner starts the ingest.
    done = subprocess.run([sys.executable, "-c", RUNNER, str(out), *GATEWAY, "--config", str(cfg), "ingest",
                           str(file), "--client", "demo", "--json", *extra], capture_output=True, text=True,
                          cwd=cfg.parent, timeout=300)
    code, kb = (int(v) for v in done.stdout.split())
    assert code in (0, 3), f"ingest crashed (exit {code}): {done.stderr[-2000:]}"
    return code, json.loads(out.read_text()), kb // 1024


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Path:
    path = write_config(tmp_path, db_url)
    for args in (("keys", "init"), ("db", "upgrade")):
        done = subprocess.run([*GATEWAY, "--config", str(path), *args], capture_output=True, text=True,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    return path


def _failed_ack(result: dict[str, object]) -> str:
    ack = Path(str(result["ack"])).read_text(encoding="utf-8")
    assert "failed" in ack
    return ack


@pytest.mark.pg
def test_hostile_files_get_a_failed_ack_and_memory_stays_bounded(cfg: Path, tmp_path: Path) -> None:
    cases = [
        (generate.sparse_xlsx(tmp_path / "xfd.xlsx", 1_048_576, 16_384), "xlsx", "limits.max_columns"),
        (generate.version_22_3_zip(tmp_path / "v223.xlsx"), "xlsx", "damaged zip archive"),
        (generate.far_cell_xls(tmp_path / "far.xls"), "xls", "limits.reader_memory_mb"),
        (generate.repeated_row_ods(tmp_path / "repeated.ods", 2_000_000), "ods", "limits.max_rows"),
    ]
    for file, kind, names in cases:
        code, result, peak_mb = _ingest(cfg, file, "--mapping", str(_mapping(tmp_path, kind)))
        assert (code, result["status"]) == (3, "failed"), (file.name, result)
        assert names in str(result["error"]), (file.name, result["error"])
        assert names in _failed_ack(result)
        assert peak_mb < CEILING_MB, (file.name, peak_mb)
    code, result, _ = _ingest(cfg, ROOT / "examples" / "demo.csv")  # the demo file has rows meant to be rejected
    assert code == 0 and result["status"] == "completed_with_errors" and int(str(result["accepted"])) > 0


def test_xml_with_junk_siblings_is_read_in_flat_memory(cfg: Path, tmp_path: Path) -> None:
    xml = generate.junk_sibling_xml(tmp_path / "junk.xml", records=3000, junk=4)
    columns = "  record_path: /Export/Block/Forderung\n  columns: {Rechnungsnr: Nr, Nachname: Name, " \
              "Betrag: Betrag, Faellig: Faellig}\n"
    code, result, peak_mb = _ingest(cfg, xml, "--mapping", str(_mapping(tmp_path, "xml", columns)))
    assert (code, result["rows"]) == (0, 3000) and peak_mb < CEILING_MB
    # In the reader itself: after 2,999 records nothing but the open ancestors and the current group is left.
    spec = FormatSpec(type="xml", record_path="/Export/Block/Forderung", columns={"Ref": "Nr"})
    with XmlReader(xml, spec) as reader:
        it = iter(reader)
        for _ in range(2999):
            next(it)
        elem = it.gi_frame.f_locals["elem"]  # type: ignore[attr-defined]
        root = elem.getroottree().getroot()
        assert len(root) <= 3 and sum(1 for _ in root.iter()) < 60  # 3 groups, not 3,000


def test_a_parser_that_aborts_is_an_input_error_naming_the_limit(tmp_path: Path) -> None:
    # The calamine reader itself, whatever is registered for xlsx: a native abort (SIGABRT) in the child.
    zz = generate.sparse_xlsx(tmp_path / "zz.xlsx", 200_000, 702)
    with pytest.raises(InputError, match=r"needs more than 64 MB.*limits\.reader_memory_mb"):
        IsolatedReader(CALAMINE, zz, FormatSpec(type="xlsx"), LimitsConfig(reader_memory_mb=64))
    # A reader that stops sending is stopped after the wait budget (the XML child waits on a FIFO).
    fifo = tmp_path / "never.xml"
    os.mkfifo(fifo)
    spec = FormatSpec(type="xml", record_path="/E/F", columns={"Ref": "Nr"})
    with pytest.raises(InputError, match="limits.reader_timeout_seconds"):
        IsolatedReader("gateway.readers.xml_reader:XmlReader", fifo, spec,
                       LimitsConfig(reader_timeout_seconds=0.5))


@pytest.mark.pg
def test_resume_of_a_crashing_file_ends_failed_and_never_loops(config_path: Path, tmp_path: Path) -> None:
    payload = generate.far_cell_xls(tmp_path / "far.xls").read_bytes()  # aborts the parser: 1 GB wanted
    (tmp_path / "mappings" / "demo.yaml").write_text(_mapping(tmp_path, "xls").read_text(encoding="utf-8"))
    app = build_app(config_path, migrate=True)
    try:
        with write_tx(app.engine) as conn:  # what an ingest that died mid-file leaves: processing, bytes kept
            sub = sub_store.create(conn, client_id="demo", channel="sftp", filename="far.xls", sha256="a" * 64,
                                   size=len(payload), dedupe=True)
            assert sub is not None
            sub_store.store_payload(conn, app.cipher, sub["id"], [payload])
            # ... and a second one whose processing was killed at every one of the last MAX_RESUMES starts
            stuck = sub_store.create(conn, client_id="demo", channel="sftp", filename="stuck.csv",
                                     sha256="b" * 64, size=3, dedupe=True)
            assert stuck is not None
            sub_store.store_payload(conn, app.cipher, stuck["id"], [b"x;y"])
            conn.execute(update(submissions).where(submissions.c.id == stuck["id"])
                         .values(resume_attempts=MAX_RESUMES))
        first = {r.filename: r for r in resume_unfinished(app)}
        assert first["far.xls"].status == "failed" and "limits.reader_memory_mb" in str(first["far.xls"].error)
        assert first["stuck.csv"].status == "failed" and "interrupted" in str(first["stuck.csv"].error)
        assert "interrupted" in Path(str(first["stuck.csv"].ack_path)).read_text(encoding="utf-8")
        assert resume_unfinished(app) == []  # the second start finds nothing left to resume
        with read_tx(app.engine) as conn:
            rows = {r["filename"]: r for r in sub_store.listing(conn)}
        assert {n: (r["status"], r["resume_attempts"]) for n, r in rows.items()} == \
            {"far.xls": ("failed", 1), "stuck.csv": ("failed", MAX_RESUMES + 1)}
    finally:
        app.close()

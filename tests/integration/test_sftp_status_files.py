"""Status files in status/: every change since the last file, CSV or XML per client, never twice."""

from __future__ import annotations

import csv
from pathlib import Path

from lxml import etree

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.services.ingest import ingest_file
from gateway.services.inbox import UploadBook, write_incomplete_ack
from gateway.services.keys import init_keys
from gateway.services.status_files import XML_NS, write_due_status_files
from gateway.store.db import read_tx
from gateway.store.uploads import all_uploads
from tests.conftest import write_config
from tests.sftp_support import client_csv


def _app(tmp_path: Path, db_url: str) -> App:
    clients = {cid: {"name": cid, "mapping": "demo", "default_partner": "demo-agency",
                     "sftp": {"status_format": fmt}} for cid, fmt in (("demo", "csv"), ("acme", "xml"))}
    cfg = write_config(tmp_path, db_url, clients=clients, routing=[{"partner": "demo-agency"}],
                       sftp={"status_interval_seconds": 3600})
    init_keys(load_config(cfg))
    return build_app(cfg, migrate=True)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def test_status_files_list_each_change_once_per_client(tmp_path: Path, db_url: str) -> None:
    app = _app(tmp_path, db_url)
    try:
        ingest_file(app, client_csv(tmp_path / "d.csv", 4, "D"), "demo")
        ingest_file(app, client_csv(tmp_path / "a.csv", 2, "A"), "acme")
        written = write_due_status_files(app)
        by_client = {p.parent.parent.name: p for p in written}
        assert sorted(by_client) == ["acme", "demo"]
        rows = _csv_rows(by_client["demo"])
        assert len(rows) == 4 and {r["reference"] for r in rows} == {f"D-{i:06d}" for i in range(4)}
        assert {r["state"] for r in rows} == {"queued"}
        doc = etree.parse(str(by_client["acme"]), etree.XMLParser(resolve_entities=False, no_network=True))
        changes = doc.getroot().findall(f"{{{XML_NS}}}change")
        assert sorted(c.get("reference") or "" for c in changes) == ["A-000000", "A-000001"]

        # Not due again within the interval; forced, nothing new means no file.
        assert write_due_status_files(app) == []
        assert write_due_status_files(app, force=True) == []
        ingest_file(app, client_csv(tmp_path / "d2.csv", 1, "E"), "demo")
        second = write_due_status_files(app, force=True)
        assert [p.parent.parent.name for p in second] == ["demo"]
        assert [r["reference"] for r in _csv_rows(second[0])] == ["E-000000"]

        # A file lost after its range was committed is written again, identical, not re-planned.
        before = second[0].read_bytes()
        second[0].unlink()
        again = write_due_status_files(app)
        assert again == second and again[0].read_bytes() == before
        assert len(list((app.config.inbox_dir / "demo" / "status").glob("status_*.csv"))) == 2
    finally:
        app.close()


def test_recover_marks_uploads_a_crash_interrupted_as_incomplete(tmp_path: Path, db_url: str) -> None:
    app = _app(tmp_path, db_url)
    try:
        upload = app.config.inbox_dir / "demo" / "upload"
        upload.mkdir(parents=True)
        book = UploadBook(app)
        for name in ("half.csv", "whole.csv", "gone.csv"):
            book.begin_write("demo", name)
            (upload / name).write_text("Rechnungsnr\n")
        book.end_write("demo", "whole.csv", complete=True)
        (upload / "gone.csv").unlink()
        # a new process after kill -9: what was being written is incomplete, what was whole gets ingested
        fresh = UploadBook(app)
        assert fresh.recover() == [("demo", "whole.csv")]
        assert fresh.state("demo", "half.csv") == "incomplete"
        ack = app.config.inbox_dir / "demo" / "ack" / "half.csv.ack.csv"
        assert [r["outcome"] for r in _csv_rows(ack)] == ["incomplete"]
        with read_tx(app.engine) as conn:
            assert sorted((r["name"], r["state"]) for r in all_uploads(conn)) == [
                ("half.csv", "incomplete"), ("whole.csv", "complete")]
        assert write_incomplete_ack(app, "demo", "half.csv") == ack
        # with the SFTP server off now, the whole file goes to the watcher; the half one stays tracked
        released = UploadBook(app)
        assert released.recover(release=True) == []
        assert not released.is_tracked("demo", upload / "whole.csv") and released.is_tracked("demo", upload / "half.csv")
    finally:
        app.close()

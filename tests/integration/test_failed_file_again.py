"""A file that failed is processed again when it is sent again unchanged: the operator may have mended the cause
(here: the client's mapping named a column its files do not have), and answering "duplicate" left the client no
way to send it. A file that was processed stays a duplicate."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gateway.bootstrap import App
from gateway.services.ingest import ingest_file
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.sftp_support import client_csv


def _subs(app: App) -> list[tuple[str, str, int]]:
    with read_tx(app.engine) as conn:
        rows = sub_store.listing(conn, client_id="demo", limit=10)
    return sorted((r["reference"], r["status"], r["accepted"] or 0) for r in rows)


def test_a_failed_file_sent_again_is_processed_and_a_processed_one_is_a_duplicate(app: App, tmp_path: Path) -> None:
    mapping = app.config.mappings_dir / "demo.yaml"
    good = mapping.read_text(encoding="utf-8")
    mapping.write_text(good.replace("creditor_reference: Rechnungsnr", "creditor_reference: Belegnummer"),
                       encoding="utf-8")
    source = client_csv(tmp_path / "claims.csv", 30, "AGAIN")

    first = ingest_file(app, source, "demo")
    assert first.status == "failed" and "Belegnummer" in (first.error or ""), first

    mapping.write_text(good, encoding="utf-8")  # the operator mends the mapping
    later = time.time() + 5
    os.utime(mapping, (later, later))  # a new stamp even within the file system's time resolution
    second = ingest_file(app, source, "demo")
    assert second.status == "completed" and second.accepted == 30, second
    assert second.submission != first.submission

    third = ingest_file(app, source, "demo")
    assert third.status == "duplicate" and third.duplicate_of == second.submission
    assert sorted(status for _, status, _ in _subs(app)) == ["completed", "failed"]

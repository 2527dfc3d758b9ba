"""Uploads that broke off and were never finished are deleted after ``sftp.incomplete_retention_hours`` untouched
(plain client data on the gateway's disk); one being resumed stays (services/inbox.UploadBook). The book driven
as the SFTP server drives it, real files in the client's upload folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from gateway.bootstrap import App
from gateway.services.inbox import INCOMPLETE, UploadBook, ack_path_for
from gateway.store import uploads as upload_store
from gateway.store.db import read_tx

HOUR = 3600.0


def broken_off(app: App, book: UploadBook, name: str, hours_ago: float) -> Path:
    path = book.upload_dir("demo") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    book.begin_write("demo", name)
    path.write_bytes(b"Rechnungsnr;Nachname\nRE-1;Muster\nRE-2;Mus")  # the connection ended mid-row
    book.end_write("demo", name, complete=False)
    then = time.time() - hours_ago * HOUR
    os.utime(path, (then, then))
    return path


def test_a_stale_broken_off_upload_is_deleted_and_a_recent_or_resumed_one_stays(app: App) -> None:
    book = UploadBook(app)
    stale = broken_off(app, book, "old.csv", hours_ago=80)
    recent = broken_off(app, book, "new.csv", hours_ago=2)
    resumed = broken_off(app, book, "resumed.csv", hours_ago=80)
    with open(resumed, "ab") as writer:  # the client's program has it open again to finish it
        assert book.drop_stale_incomplete(72 * HOUR) == [("demo", "old.csv")]
        writer.write(b"ter\n")
    assert not stale.exists() and recent.exists() and resumed.exists()
    assert book.state("demo", "old.csv") is None and book.state("demo", "new.csv") == INCOMPLETE
    assert book.state("demo", "resumed.csv") == INCOMPLETE
    with read_tx(app.engine) as conn:
        assert upload_store.get(conn, "demo", "old.csv") is None  # forgotten durably, not only in memory
    assert ack_path_for(app, "demo", "old.csv").exists()  # the "incomplete" answer stays for the client

    book.begin_write("demo", "old.csv")  # the name is free for a new upload
    book.end_write("demo", "old.csv", complete=True)
    assert book.state("demo", "old.csv") == "complete"

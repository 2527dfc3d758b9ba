"""The watcher and the SFTP server share an inbox: each file is ingested once, by the one that owns it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from gateway.bootstrap import App
from gateway.entrypoints.watcher import InboxWatcher
from gateway.services import inbox
from gateway.services.inbox import UploadBook, ingest_dropped
from gateway.store import submissions as sub_store
from gateway.store.db import read_tx
from tests.sftp_support import client_csv, wait_for


def test_watcher_leaves_sftp_tracked_files_alone(app: App, tmp_path: Path) -> None:
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    book = UploadBook(app)
    watcher = InboxWatcher({"demo": upload}, stable_seconds=0.1, ignore=book.is_tracked)
    watcher.start()
    try:
        book.begin_write("demo", "sftp.csv")  # the SFTP server is writing this one
        shutil.copy(client_csv(tmp_path / "a.csv", 3, "S"), upload / "sftp.csv")
        shutil.copy(client_csv(tmp_path / "b.csv", 3, "W"), upload / "dropped.csv")
        # both files were there equally long: only the one the SFTP server does not own comes out
        ready = wait_for("the dropped file to be ready", lambda: [p.name for _, p in watcher.ready()])
        assert ready == ["dropped.csv"]
        result = ingest_dropped(app, book, "demo", upload / "dropped.csv")
        assert result is not None and result.status == "completed"
        # a file the SFTP server owns is refused even if it reached the watcher path some other way
        assert ingest_dropped(app, book, "demo", upload / "sftp.csv") is None
        assert (upload / "sftp.csv").exists() and not (upload / "dropped.csv").exists()
        with read_tx(app.engine) as conn:
            assert [s["filename"] for s in sub_store.listing(conn)] == ["dropped.csv"]
        assert "dropped.csv" in (app.config.inbox_dir / "demo" / "archive" / "received.csv").read_text()
    finally:
        watcher.stop()


def test_a_burst_of_small_files_rewrites_the_archive_index_about_once_a_second(
        app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thirty files taken one after the other: the archive index (the client's latest 1,000 files) is written
    about once a second, not after each file (a third of the CPU of a burst of small files), and in the end it
    lists every one of them."""
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    book = UploadBook(app)
    writes: list[float] = []
    real = inbox.write_archive_index

    def counted(app: App, client_id: str) -> Path:
        writes.append(time.monotonic())
        return real(app, client_id)

    monkeypatch.setattr(inbox, "write_archive_index", counted)
    started = time.monotonic()
    for i in range(30):
        path = client_csv(upload / f"small-{i:02d}.csv", 1, f"B{i:02d}-")
        assert ingest_dropped(app, book, "demo", path) is not None
    elapsed = time.monotonic() - started
    index = app.config.inbox_dir / "demo" / "archive" / "received.csv"
    wait_for("every file in the archive index",
             lambda: all(f"small-{i:02d}.csv" in index.read_text() for i in range(30)))
    assert len(writes) <= 2 + elapsed / inbox.ARCHIVE_EVERY_SECONDS, (len(writes), elapsed)


def test_an_archive_write_scheduled_at_a_stop_is_done_by_the_flush_and_never_after_close(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` flushes the archive writes scheduled for later when it stops, so the last second's files are
    listed; a write still scheduled when the App is closed is not done (its engine is gone)."""
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    book = UploadBook(app)
    index = app.config.inbox_dir / "demo" / "archive" / "received.csv"
    for name in ("first", "second"):
        assert ingest_dropped(app, book, "demo", client_csv(upload / f"{name}.csv", 1, name.upper())) is not None
    assert "second.csv" not in index.read_text()  # within the second: scheduled
    inbox.flush_archive_indexes(app)
    assert "second.csv" in index.read_text()
    monkeypatch.setattr(inbox, "ARCHIVE_EVERY_SECONDS", 600.0)  # scheduled however long the ingest takes
    assert ingest_dropped(app, book, "demo", client_csv(upload / "third.csv", 1, "THIRD")) is not None
    timer = inbox._archive_due[app.config.inbox_dir / "demo"]
    app.close()
    timer.cancel()
    timer.function(*timer.args)  # what the timer would run at its time, now that the App is closed
    assert "third.csv" not in index.read_text()

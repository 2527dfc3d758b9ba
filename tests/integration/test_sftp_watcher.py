"""The watcher and the SFTP server share an inbox: each file is ingested once, by the one that owns it."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.bootstrap import App
from gateway.entrypoints.watcher import InboxWatcher
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

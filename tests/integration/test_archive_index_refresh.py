"""The client's archive index (``inbox/<client>/archive/received.csv``) after a crash: a node killed in the second
between a file's ack and the index's write (it is rewritten at most once a second) left the file out of the
listing until the client's next file, and a submission finished by a resume stayed listed as ``processing``. At
start the indexes older than their client's latest submission are rewritten; a resume rewrites its client's."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from gateway.bootstrap import App
from gateway.services.inbox import ARCHIVE_INDEX, process_inbox_file, refresh_archive_indexes, resume_unfinished
from tests.conftest import ROOT
from tests.integration.test_resume_by_the_same_file import _interrupted


def _listed(app: App) -> dict[str, str]:
    index = app.config.inbox_dir / "demo" / "archive" / ARCHIVE_INDEX
    with open(index, encoding="utf-8", newline="") as fh:
        return {r["filename"]: r["status"] for r in csv.DictReader(fh, delimiter=";")}


def _drop(app: App, name: str) -> Path:
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    path = upload / name
    path.write_bytes((ROOT / "examples" / "demo.csv").read_bytes().replace(b"RE-", name[:3].encode() + b"-"))
    return path


def test_an_index_older_than_the_latest_file_is_rewritten_at_start(app: App) -> None:
    process_inbox_file(app, "demo", _drop(app, "one.csv"))
    process_inbox_file(app, "demo", _drop(app, "two.csv"))
    index = app.config.inbox_dir / "demo" / "archive" / ARCHIVE_INDEX
    index.parent.mkdir(parents=True, exist_ok=True)
    # what a kill before the scheduled write leaves: an index written before the second file was taken
    index.write_text("received_at;reference;filename\r\n", encoding="utf-8")
    os.utime(index, (1_000_000_000, 1_000_000_000))
    assert refresh_archive_indexes(app) == ["demo"]
    assert _listed(app) == {"one.csv": "completed_with_errors", "two.csv": "completed_with_errors"}
    assert refresh_archive_indexes(app) == []  # up to date: not written again


def test_a_submission_finished_by_a_resume_is_listed_with_its_outcome(app: App) -> None:
    path = _drop(app, "res.csv")
    _interrupted(app, path)  # committed, then the node died: processing, the file still in upload/
    index = app.config.inbox_dir / "demo" / "archive" / ARCHIVE_INDEX
    assert not index.exists()
    [result] = resume_unfinished(app)
    assert result.status == "completed_with_errors"  # examples/demo.csv has rows with errors
    assert _listed(app) == {"res.csv": "completed_with_errors"}


def test_a_client_no_longer_configured_gets_no_folder_made_again(app: App) -> None:
    from gateway.store import submissions as sub_store
    from gateway.store.db import write_tx

    with write_tx(app.engine) as conn:  # files of a client since removed from the configuration
        sub_store.create(conn, client_id="gone", channel="watch", filename="old.csv", sha256="c" * 64, size=1,
                         dedupe=True, received_at=app.now())
    assert refresh_archive_indexes(app) == []
    assert not (app.config.inbox_dir / "gone").exists()

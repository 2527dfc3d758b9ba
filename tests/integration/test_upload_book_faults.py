"""The SFTP upload record when the database fails just as an upload's state changes.

The fault is real: SQLite's write lock held by another connection past the gateway's busy timeout, so the
record's write fails with "database is locked", as a PostgreSQL connection cut away fails it in ``serve``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.services.inbox import UploadBook, ingest_upload
from gateway.services.keys import init_keys
from gateway.services.node import leased
from tests.conftest import write_config
from tests.sftp_support import client_csv


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    url = f"sqlite:///{tmp_path / 'var' / 'gateway.db'}"
    path = write_config(tmp_path, url, database={"url": url, "busy_timeout_seconds": 0.2})
    init_keys(load_config(path))
    application = build_app(path, migrate=True)
    yield application
    application.close()


@contextmanager
def database_locked(app: App) -> Iterator[None]:
    database = app.engine.url.database
    assert database is not None
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


def _uploaded(app: App, book: UploadBook, name: str, prefix: str) -> None:
    book.begin_write("demo", name)
    client_csv(book.upload_dir("demo") / name, 10, prefix)
    assert book.end_write("demo", name, complete=True)


def test_a_failed_start_of_processing_leaves_the_upload_to_the_next_try(app: App) -> None:
    # Found by the soak (PostgreSQL, --cut-db): the upload was marked "processing" here before its record was
    # written, and stayed so when the write failed; every retry found it "not complete" and skipped it, the
    # client's new upload of the name was refused as "being processed", until a restart: no submission, no ack.
    book = UploadBook(app)
    book.upload_dir("demo").mkdir(parents=True, exist_ok=True)
    _uploaded(app, book, "a.csv", "A")
    with database_locked(app), pytest.raises(OperationalError, match="locked"):
        ingest_upload(app, book, "demo", "a.csv")
    book.check_free("demo", "a.csv")  # an upload of the name again is not refused as "being processed"
    assert book.ready_uploads() == [("demo", "a.csv")]  # the retry step offers it again
    result = ingest_upload(app, book, "demo", "a.csv")
    assert result is not None and (result.status, result.accepted) == ("completed", 10)
    assert book.state("demo", "a.csv") is None and not (book.upload_dir("demo") / "a.csv").exists()


def test_a_failed_record_of_a_close_leaves_no_upload_being_written(app: App) -> None:
    book = UploadBook(app)
    book.upload_dir("demo").mkdir(parents=True, exist_ok=True)
    book.begin_write("demo", "b.csv")
    client_csv(book.upload_dir("demo") / "b.csv", 10, "B")
    with database_locked(app), pytest.raises(OperationalError, match="locked"):
        book.end_write("demo", "b.csv", complete=True)  # the SFTP close: the client's handle is closed
    book.check_free("demo", "b.csv")  # before: "b.csv is being uploaded" for the rest of the process's life
    assert book.ready_uploads() == [("demo", "b.csv")]
    result = ingest_upload(app, book, "demo", "b.csv")
    assert result is not None and (result.status, result.accepted) == ("completed", 10)


def test_a_lease_that_cannot_be_released_says_why(app: App, caplog: pytest.LogCaptureFixture) -> None:
    # The soak's logs had `lease.release_failed lease=ingest:demo` and nothing else: no way to tell a database cut
    # from a bug, nor how long the client's files wait on the other nodes.
    with caplog.at_level(logging.WARNING, logger="gateway.services.node"), ExitStack() as stack:
        with leased(app, "ingest:demo") as lease:
            assert lease is not None
            stack.enter_context(database_locked(app))  # still held while the lease is given back
    lines = [r.getMessage() for r in caplog.records if "lease.release_failed" in r.getMessage()]
    assert len(lines) == 1 and "error=OperationalError: database is locked" in lines[0], lines

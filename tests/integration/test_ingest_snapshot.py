"""A watched file rewritten in place while it is ingested (``cp b.csv a.csv`` over it) is stored and read as one
file, never as a mix of two (services/ingest_snapshot.py). Real files in the inbox, real writes from another file
handle; the moment of the write is chosen by wrapping one of the ingest's own calls."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.bootstrap import App
from gateway.services import ingest, ingest_snapshot
from gateway.services.inbox import process_inbox_file
from gateway.services.ingest_snapshot import FileChanging, clear_spool, snapshot
from gateway.store.db import read_tx
from gateway.store.schema import claims, submissions
from tests.sftp_support import client_csv


def upload_dir(app: App) -> Path:
    folder = app.config.inbox_dir / "demo" / "upload"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def references(app: App) -> list[str]:
    with read_tx(app.engine) as conn:
        return [str(r) for r in conn.execute(select(claims.c.creditor_reference).order_by(claims.c.id)).scalars()]


def test_a_file_rewritten_after_its_copy_is_ingested_as_the_file_it_was(
        app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = client_csv(upload_dir(app) / "month.csv", 300, "FA")
    first = hashlib.sha256(path.read_bytes()).hexdigest()
    replacement = client_csv(tmp_path / "b.csv", 250, "FB")
    real_open = ingest.open_reader  # type: ignore[attr-defined]  # the name ingest.py calls

    def rewritten_then_read(*args: object, **kwargs: object) -> object:
        shutil.copyfile(replacement, path)  # truncates and rewrites the inode the client's name points to
        return real_open(*args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(ingest, "open_reader", rewritten_then_read)

    result = process_inbox_file(app, "demo", path)
    assert (result.status, result.accepted) == ("completed", 300)
    assert references(app) == [f"FA-{i:06d}" for i in range(300)]  # not one row of the file written meanwhile
    with read_tx(app.engine) as conn:
        assert conn.execute(select(submissions.c.sha256)).scalar_one() == first
    assert path.exists()  # it changed after it was taken: kept for the next look, not deleted with B's rows in it

    monkeypatch.setattr(ingest, "open_reader", real_open)
    again = process_inbox_file(app, "demo", path)  # the next look: B is a file of its own
    assert (again.status, again.accepted) == ("completed", 250)
    assert references(app)[300:] == [f"FB-{i:06d}" for i in range(250)] and not path.exists()


def test_a_file_written_to_while_it_is_copied_is_not_taken_and_nothing_is_recorded(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    path = client_csv(upload_dir(app) / "growing.csv", 2000, "G")
    monkeypatch.setattr(ingest_snapshot, "CHUNK_BYTES", 4096)
    real_write, calls = os.write, [0]

    def a_writer_appends_meanwhile(fd: int, data: bytes) -> int:
        calls[0] += 1
        if calls[0] == 2:
            with open(path, "ab") as other:  # the client's program is still writing
                other.write(b"G-999999;K-1;Herr;Max;Muster;;01.01.1980;Weg;1;10115;Berlin;DE;;;;01.01.2025;\r\n")
        return real_write(fd, data)
    monkeypatch.setattr(ingest_snapshot.os, "write", a_writer_appends_meanwhile)  # type: ignore[attr-defined]

    with pytest.raises(FileChanging) as caught:
        process_inbox_file(app, "demo", path)
    assert "growing.csv" in str(caught.value) and "still being written" in str(caught.value)
    with read_tx(app.engine) as conn:
        assert conn.execute(select(func.count()).select_from(submissions)).scalar_one() == 0
    assert path.exists() and not list(app.config.inbox_dir.glob("demo/ack/*"))
    assert not list((app.config.var_dir / ingest_snapshot.SPOOL).iterdir())  # the copy went with it


def test_the_copy_is_private_and_a_leftover_is_cleared_but_not_one_in_use(app: App, tmp_path: Path) -> None:
    source = client_csv(tmp_path / "c.csv", 10, "C")
    var = app.config.var_dir
    with snapshot(var, source, "c.csv") as (copy, sha, size):
        assert copy.read_bytes() == source.read_bytes() and size == source.stat().st_size
        assert sha == hashlib.sha256(source.read_bytes()).hexdigest()
        assert copy.stat().st_mode & 0o777 == 0o600 and (var / ingest_snapshot.SPOOL).stat().st_mode & 0o777 == 0o700
        left = var / ingest_snapshot.SPOOL / "4242-deadbeef"  # what a killed ingest left behind
        left.write_bytes(b"plain client data")
        assert clear_spool(var) == 1  # the leftover, not the copy this ingest holds
        assert copy.exists() and not left.exists()
    assert not copy.exists()

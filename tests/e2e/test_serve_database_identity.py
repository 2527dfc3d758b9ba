"""``serve`` on a database other than the one it worked on: refused with one line, nothing created or migrated in
it. Before, an edited database.url, a volume that did not mount (SQLite made a new empty file) or a database
restored from another installation was taken as it was: the files the client had already been answered for were
new to it, and their claims went to the partners again.

Real serve processes on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.services.keys import init_keys
from tests.conftest import PG_URL, _pg_schema_url, write_config
from tests.support import serve_process, wait_ready


def _start_and_stop(cfg: Path) -> None:
    with serve_process(cfg) as (proc, log):
        wait_ready(proc, log, timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()


def _refused(cfg: Path) -> str:
    with serve_process(cfg) as (proc, log):
        assert proc.wait(60) == 1, log.read_text()
        return log.read_text()


def test_sqlite_a_missing_database_file_is_refused_not_made_anew(tmp_path: Path) -> None:
    db = tmp_path / "var" / "gateway.db"
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    init_keys(load_config(cfg))
    _start_and_stop(cfg)
    known = (tmp_path / "var" / "database-id").read_text().strip()
    assert len(known) == 32
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for f in db.parent.glob("gateway.db*"):  # the volume with the database did not mount
        f.rename(moved / f.name)
    out = _refused(cfg)
    assert f"the database file {db} is missing, but this node has worked on database {known}" in out
    assert "Nothing was changed" in out and "Traceback" not in out
    assert not db.exists()  # not even an empty file
    for f in moved.iterdir():  # mounted again: it starts
        f.rename(db.parent / f.name)
    _start_and_stop(cfg)


def test_sqlite_an_empty_database_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "var" / "gateway.db"
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    init_keys(load_config(cfg))
    _start_and_stop(cfg)
    for f in db.parent.glob("gateway.db*"):
        f.unlink()
    db.write_bytes(b"")  # an empty file where the database was
    out = _refused(cfg)
    assert "the database is empty, but this node has worked on database" in out
    assert db.stat().st_size == 0  # nothing migrated into it
    (tmp_path / "var" / "database-id").unlink()  # a deliberate new start is said so
    _start_and_stop(cfg)


@pytest.mark.pg
def test_postgresql_another_database_is_refused_until_the_node_is_told(tmp_path: Path) -> None:
    if not PG_URL:
        pytest.skip("GATEWAY_TEST_PG_URL not set: PostgreSQL run skipped (CI sets it)")
    first, second = _pg_schema_url(), _pg_schema_url()
    try:
        url_a, url_b = next(first), next(second)
        cfg = write_config(tmp_path, url_a)
        init_keys(load_config(cfg))
        from tests.e2e.test_health_metrics import _gateway
        assert _gateway(cfg, "db", "upgrade").returncode == 0
        _start_and_stop(cfg)
        known = (tmp_path / "var" / "database-id").read_text().strip()
        cfg = write_config(tmp_path, url_b)  # database.url edited to another database, migrated on purpose
        assert _gateway(cfg, "db", "upgrade").returncode == 0
        out = _refused(cfg)
        assert f"but this node has worked on database {known}" in out and "the database is " in out
        (tmp_path / "var" / "database-id").unlink()
        _start_and_stop(cfg)
        assert (tmp_path / "var" / "database-id").read_text().strip() != known
    finally:
        for gen in (first, second):
            gen.close()


def test_a_database_id_file_that_cannot_be_read_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'var' / 'gateway.db'}")
    init_keys(load_config(cfg))
    (tmp_path / "var" / "database-id").mkdir(parents=True)  # a folder where the file belongs
    out = _refused(cfg)
    assert "cannot read" in out and "database-id" in out and "Traceback" not in out

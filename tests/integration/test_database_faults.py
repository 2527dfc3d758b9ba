"""What kind of failure the gateway's own database gives, judged on the real thing: PostgreSQL refusing a login,
SQLite files that are corrupt, not a database, read-only or without the schema; and what the supervisor does with
each while `serve` runs."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from gateway.bootstrap import App
from gateway.entrypoints.intake_tasks import FileAttempts
from gateway.entrypoints.supervisor import EXIT_TASK_FAILED, Supervisor
from gateway.faults import database_broken, database_refused, describe, is_transient
from gateway.store.db import make_engine, write_tx
from tests.conftest import PG_URL

PLANTED = "Pw-Quellenfeld-7731"


def _failure(url: str, sql: str = "SELECT 1") -> DBAPIError:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql} worked")


def _supervise(step_error: Callable[[int], BaseException | None], until: Callable[[int], bool],
               give_up_after: int = 3) -> tuple[Supervisor, int]:
    """Run one task whose n-th step raises ``step_error(n)`` (None: works) until ``until(n)`` or the stop."""
    calls = 0

    async def main() -> Supervisor:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.001, backoff_max=0.005, give_up_after=give_up_after)

        async def step() -> bool:
            nonlocal calls
            calls += 1
            exc = step_error(calls)
            if exc is not None:
                raise exc
            return True
        sup.start("t", step, every=0.001)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not until(calls) and not stop.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        stop.set()
        assert await sup.join(5) == []
        return sup
    return asyncio.run(main()), calls


@pytest.mark.skipif(not PG_URL, reason="GATEWAY_TEST_PG_URL not set: a PostgreSQL that refuses a login")
@pytest.mark.parametrize("parts", [{"username": "gw_no_such_role"}, {"database": "gw_no_such_database"}])
def test_a_login_refused_while_running_is_retried_as_an_error_and_its_end_is_said(
        caplog: pytest.LogCaptureFixture, parts: dict[str, str]) -> None:
    """The password changed under a running gateway: not a reason to end it (its pooled connections still work, and
    the operator may change it back), but a reason for an ERROR line, once, and a line when it works again."""
    assert PG_URL
    refused = _failure(make_url(PG_URL).set(password=PLANTED, **parts).render_as_string(hide_password=False))
    assert database_refused(refused) and is_transient(refused)
    caplog.set_level(logging.DEBUG, logger="gateway.supervisor")
    sup, calls = _supervise(lambda n: refused if n <= 12 else None, lambda n: n > 14)
    assert sup.exit_code == 0 and calls > 12  # never given up, although give_up_after is 3
    failed = [r for r in caplog.records if "supervisor.task_failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR, [r.getMessage() for r in failed]
    assert "does not exist" in failed[0].getMessage()
    assert [r for r in caplog.records if "supervisor.task_recovered" in r.getMessage()]
    assert all(PLANTED not in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(not PG_URL, reason="GATEWAY_TEST_PG_URL not set")
def test_a_server_that_is_not_there_is_no_refused_login() -> None:
    assert PG_URL
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = _failure(make_url(PG_URL).set(port=port, password=PLANTED).render_as_string(hide_password=False))
    assert is_transient(away) and not database_refused(away)
    assert PLANTED not in describe(away)
    assert EXIT_TASK_FAILED == 6


# -- SQLite files no retry mends ------------------------------------------------------------------------------------

def _sqlite_with_rows(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
        for _ in range(2000):
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", ("x" * 200,))
        conn.exec_driver_sql("CREATE INDEX t_x ON t (x)")
    with engine.connect() as conn:  # everything into the main file, so the damage below is what a reader meets
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def _damaged(tmp_path: Path) -> str:
    path = tmp_path / "damaged.db"
    _sqlite_with_rows(path)
    with open(path, "r+b") as f:  # pages of the table and its index overwritten, as a failing disk or a bad copy does
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 4)
    return f"sqlite:///{path}"


def _not_a_database(tmp_path: Path) -> str:
    path = tmp_path / "restored-wrong.db"
    path.write_bytes(b"PGDMP this is a pg_dump, not a SQLite file\n" * 200)
    return f"sqlite:///{path}"


def _read_only(tmp_path: Path) -> str:
    path = tmp_path / "ro.db"
    _sqlite_with_rows(path)
    # Tests run as root, whom file modes do not stop: SQLite's own read-only open gives the same SQLITE_READONLY.
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def _without_tables(tmp_path: Path) -> str:
    path = tmp_path / "empty.db"
    _sqlite_with_rows(path)
    return f"sqlite:///{path}"


BROKEN = {
    "damaged": (_damaged, "SELECT count(*), max(x) FROM t", "database disk image is malformed"),
    "not_a_database": (_not_a_database, "SELECT 1 FROM sqlite_master", "file is not a database"),
    "read_only": (_read_only, "INSERT INTO t VALUES ('y')", "attempt to write a readonly database"),
    "without_tables": (_without_tables, "SELECT * FROM submissions", "no such table: submissions"),
}


def _sqlite_failure(url: str, sql: str) -> DBAPIError:
    engine = create_engine(url) if "mode=ro" in url else make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"{sql} worked on {url}")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_sqlite_database_no_retry_mends_is_broken_not_transient(tmp_path: Path, case: str) -> None:
    make, sql, text = BROKEN[case]
    exc = _sqlite_failure(make(tmp_path), sql)
    assert text in describe(exc)
    assert database_broken(exc) and not is_transient(exc) and not database_refused(exc)


def test_a_locked_sqlite_database_stays_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    _sqlite_with_rows(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock held by another writer
    try:
        exc = _sqlite_failure_with_timeout(f"sqlite:///{path}", "INSERT INTO t VALUES ('y')")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "database is locked" in describe(exc)
    assert is_transient(exc) and not database_broken(exc)


def _sqlite_failure_with_timeout(url: str, sql: str) -> DBAPIError:
    engine = make_engine(url, busy_timeout=0.05)
    try:
        with write_tx(engine) as conn:
            conn.exec_driver_sql(sql)
    except DBAPIError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the write went through a held lock")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_sqlite_database_ends_the_gateway_at_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str) -> None:
    """One CRITICAL line and exit code 6 at the first failure, even for a task that never gives up (partner sync):
    no retry mends the file, and retries only go on working on a damaged one."""
    make, sql, _ = BROKEN[case]
    url = make(tmp_path)
    caplog.set_level(logging.DEBUG, logger="gateway.supervisor")

    async def main() -> tuple[Supervisor, int]:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.001, backoff_max=0.005, give_up_after=8)
        calls = 0

        async def step() -> bool:
            nonlocal calls
            calls += 1
            raise await asyncio.to_thread(_sqlite_failure, url, sql)
        sup.start("partner_sync", step, every=0.001, give_up=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not stop.is_set() and calls < 50 and loop.time() < deadline:
            await asyncio.sleep(0.005)
        stop.set()
        assert await sup.join(5) == []
        return sup, calls

    sup, calls = asyncio.run(main())
    assert sup.exit_code == EXIT_TASK_FAILED and calls == 1
    [line] = [r for r in caplog.records if "supervisor.database_broken" in r.getMessage()]
    assert line.levelno == logging.CRITICAL and "task=partner_sync" in line.getMessage()


def test_a_broken_database_met_by_one_file_ends_the_gateway_and_the_file_is_not_failed_for_it(
        tmp_path: Path, app: App, caplog: pytest.LogCaptureFixture) -> None:
    """A file's ingest meeting a damaged database: not the file's fault. It was counted against the file (after
    three, a failed ack for the client and the file moved to failed/), and a report of an item never ended the
    gateway, so the damage went on being retried file by file."""
    broken = _sqlite_failure(_damaged(tmp_path), BROKEN["damaged"][1])
    upload = app.config.inbox_dir / "demo" / "upload"
    upload.mkdir(parents=True, exist_ok=True)
    dropped = upload / "claims.csv"
    dropped.write_text("reference;amount\nR-1;10,00\n")
    sup = Supervisor(asyncio.Event())
    attempts = FileAttempts(app, sup, "inbox")
    for _ in range(app.config.supervisor.file_attempts + 1):
        attempts.failed("demo", dropped, broken)
    assert sup.exit_code == EXIT_TASK_FAILED and sup.stop.is_set()
    assert dropped.exists() and not list((app.config.inbox_dir / "demo").glob("ack/*"))
    assert not (app.config.inbox_dir / "demo" / "failed").exists()
    assert len([r for r in caplog.records if "supervisor.database_broken" in r.getMessage()]) == 1


@pytest.mark.skipif(not PG_URL, reason="GATEWAY_TEST_PG_URL not set: a PostgreSQL that refuses a login")
def test_a_start_up_step_whose_login_is_refused_ends_the_start_instead_of_waiting(app: App) -> None:
    """After the schema check, serve's start-up steps (leases taken back, uploads recovered) wait for a database
    that is away; one whose login is refused (the password changed in between) ended up waiting for ever too."""
    from gateway.entrypoints.serve import _Parts, _StoppedWhileStarting
    from gateway.errors import GatewayError

    assert PG_URL
    refused = _failure(make_url(PG_URL).set(username="gw_no_such_role", password=PLANTED)
                       .render_as_string(hide_password=False))
    calls = 0

    async def main() -> BaseException:
        stop = asyncio.Event()
        parts = _Parts(app, Supervisor(stop, backoff_base=0.001, backoff_max=0.005))

        def step() -> None:
            nonlocal calls
            calls += 1
            if calls >= 3:
                stop.set()  # what a waiting start-up would need to end at all
            raise refused
        try:
            await parts._with_database("release_leases", step)
        except (GatewayError, _StoppedWhileStarting) as exc:
            return exc
        raise AssertionError("the step returned")

    ended = asyncio.run(main())
    assert isinstance(ended, GatewayError) and calls == 1, repr(ended)
    assert 'role "gw_no_such_role" does not exist' in str(ended) and PLANTED not in str(ended)

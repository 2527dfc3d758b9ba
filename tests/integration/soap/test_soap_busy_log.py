"""A database too busy to take a SubmitClaims call (here: SQLite's write lock held by another process's
connection, a real lock on the real file) gives the client Server.Busy and the log one WARNING line of ours
(soap.busy), besides the soap.fault line. spyne logged each such fault again at ERROR with a traceback: every cut or
lock of the database wrote tracebacks into the log that an operator's alerting reads as a crash (the soak run
with PostgreSQL connections cut: 13 in 2 minutes)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep

from tests.integration.soap.conftest import Endpoint, claim, serving, submit


@pytest.fixture
def sqlite_endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    db = tmp_path / "var" / "gateway.db"
    with serving(tmp_path, f"sqlite:///{db}", database={"busy_timeout_seconds": 0.2},
                 dispatcher={"enabled": False}) as ep:
        yield ep


def test_a_busy_database_is_one_warning_not_an_error_with_a_traceback(
        sqlite_endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    client = sqlite_endpoint.client()
    assert submit(client, claim("R-0")).results.ClaimResult[0].claim_id  # the WSDL loaded, the database answers
    db = sqlite_endpoint.app.config.database.url.removeprefix("sqlite:///")
    other = sqlite3.connect(db, isolation_level=None)
    caplog.clear()
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, held as a long writer elsewhere would hold it
        with caplog.at_level(logging.INFO):
            with pytest.raises(zeep.exceptions.Fault) as fault:
                submit(client, claim("R-1"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert fault.value.code.endswith("Server.Busy")
    busy = [r for r in caplog.records if r.getMessage().startswith("soap.busy")]
    assert len(busy) == 1 and busy[0].levelno == logging.WARNING
    loud = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.ERROR]
    assert loud == []
    assert not any(r.exc_info for r in caplog.records)
    assert submit(client, claim("R-1")).results.ClaimResult[0].claim_id  # the lock gone, the same call is taken

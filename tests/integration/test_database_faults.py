"""What kind of failure the gateway's own database gives, judged on the real thing: PostgreSQL refusing a login,
SQLite files that are corrupt, not a database, read-only or without the schema; and what the supervisor does with
each while `serve` runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from gateway.entrypoints.supervisor import EXIT_TASK_FAILED, Supervisor
from gateway.faults import database_refused, describe, is_transient
from gateway.store.db import make_engine
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

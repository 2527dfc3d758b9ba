"""The supervisor on a real event loop: failures are logged once, counted, retried, and end the process
only when a task cannot recover; log text never carries values from client data."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from gateway.entrypoints.supervisor import EXIT_TASK_FAILED, Supervisor
from gateway.faults import describe, is_transient
from gateway.store.db import make_engine

PLANTED = "Zacharias Quellenfeld DE89370400440532013000"


def _run(sup_kw: dict[str, object], make_step: Callable[[Supervisor, asyncio.Event], Callable[[], object]],
         until: Callable[[], bool], limit: float = 10.0) -> Supervisor:
    async def main() -> Supervisor:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.001, backoff_max=0.005, **sup_kw)  # type: ignore[arg-type]
        sup.start("t", make_step(sup, stop), every=0.001)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not until() and not stop.is_set() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        stop.set()
        assert await sup.join(5) == []
        return sup
    return asyncio.run(main())


def _lines(caplog: pytest.LogCaptureFixture, word: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if word in r.getMessage()]


def test_a_failing_step_is_logged_once_and_the_task_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.supervisor")
    done: list[int] = []

    def make(sup: Supervisor, stop: asyncio.Event) -> Callable[[], object]:
        async def step() -> bool:
            if len(done) < 5:
                done.append(0)
                raise KeyError(PLANTED)  # not a GatewayError: such errors used to end the loop unseen
            done.append(1)
            return True
        return step

    sup = _run({}, make, lambda: done.count(1) >= 3)
    assert done.count(1) >= 3 and sup.exit_code == 0
    failed = _lines(caplog, "supervisor.task_failed")
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR and "task=t" in failed[0].getMessage()
    recovered = _lines(caplog, "supervisor.task_recovered")
    assert len(recovered) == 1 and "failures=5" in recovered[0].getMessage()
    assert sup.health["t"].failures == 5
    assert all(PLANTED not in r.getMessage() and "Quellenfeld" not in r.getMessage() for r in caplog.records)


def test_a_task_that_cannot_recover_ends_the_process_non_zero(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def make(sup: Supervisor, stop: asyncio.Event) -> Callable[[], object]:
        async def step() -> bool:
            calls.append(1)
            raise RuntimeError("broken for good")
        return step

    sup = _run({"give_up_after": 4}, make, lambda: False)
    assert sup.exit_code == EXIT_TASK_FAILED and len(calls) == 4
    assert len(_lines(caplog, "supervisor.gave_up")) == 1
    assert len(_lines(caplog, "supervisor.task_failed")) == 1


def test_transient_database_errors_are_retried_for_as_long_as_they_last(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def make(sup: Supervisor, stop: asyncio.Event) -> Callable[[], object]:
        async def step() -> bool:
            calls.append(1)
            if len(calls) <= 30:
                raise OperationalError("INSERT ...", {}, Exception("database is locked"))
            return True
        return step

    sup = _run({"give_up_after": 3}, make, lambda: len(calls) > 31)
    assert sup.exit_code == 0 and len(calls) > 30
    failed = _lines(caplog, "supervisor.task_failed")
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING and "database is locked" in failed[0].getMessage()


def test_a_different_error_after_a_streak_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def make(sup: Supervisor, stop: asyncio.Event) -> Callable[[], object]:
        async def step() -> bool:
            calls.append(1)
            if len(calls) <= 3:
                raise ValueError("x")
            if len(calls) <= 6:
                raise OSError(28, "No space left on device")
            return True
        return step

    _run({}, make, lambda: len(calls) > 7)
    assert len(_lines(caplog, "supervisor.task_failed")) == 2


def test_describe_keeps_client_values_out(tmp_path: Path) -> None:
    assert PLANTED not in describe(ValueError(f"bad value {PLANTED}"))
    assert "ValueError at test_supervisor.py" in _raised_description()
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (name TEXT UNIQUE)")
        conn.execute(sa.text("INSERT INTO t VALUES (:n)"), {"n": PLANTED})
    with pytest.raises(sa.exc.IntegrityError) as info:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (:n)"), {"n": PLANTED})
    assert "Quellenfeld" not in str(info.value)  # the engine never renders parameters
    assert describe(info.value) == "IntegrityError: UNIQUE constraint failed: t.name"
    assert not is_transient(info.value)
    engine.dispose()


def _raised_description() -> str:
    try:
        raise ValueError(PLANTED)
    except ValueError as exc:
        return describe(exc)


def test_long_work_in_a_step_shows_life_through_its_beats() -> None:
    from gateway import liveness
    import threading
    import time as _time

    seen: list[float] = []
    go_on = threading.Event()

    def work() -> None:  # runs in a worker thread, like an ingest of a big file
        for _ in range(5):
            liveness.beat()
            go_on.wait(0.02)

    async def main() -> None:
        stop = asyncio.Event()
        sup = Supervisor(stop)

        async def step() -> bool:
            before = sup.health["big"].last_step
            await asyncio.to_thread(work)
            seen.append(sup.health["big"].last_step - before)
            stop.set()
            return False
        sup.start("big", step, every=1.0)
        await sup.join(5)

    asyncio.run(main())
    assert seen and seen[0] > 0  # the task's last sign of life moved while its step was still running
    liveness.beat()  # outside a supervised task: nothing happens
    assert _time.monotonic() > 0


def test_a_task_whose_failure_cannot_even_be_reported_ends_the_process_not_silently(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's own report of a failure raising (a log handler breaking, a describe() of an odd exception)
    ended the task's loop: the task was gone, and nothing said so until /healthz went stale."""
    caplog.set_level(logging.INFO, logger="gateway.supervisor")

    def broken_report(self: Supervisor, name: str, exc: BaseException, **context: object) -> None:
        raise RuntimeError("the report itself failed")

    monkeypatch.setattr(Supervisor, "report", broken_report)

    def make(sup: Supervisor, stop: asyncio.Event) -> Callable[[], object]:
        async def step() -> bool:
            raise KeyError(PLANTED)
        return step

    sup = _run({}, make, lambda: False, limit=5.0)
    assert sup.exit_code == EXIT_TASK_FAILED
    [ended] = _lines(caplog, "supervisor.task_ended")
    assert ended.levelno == logging.CRITICAL and "task=t" in ended.getMessage() and PLANTED not in ended.getMessage()


def test_errors_that_take_turns_are_each_logged_once_until_the_task_works_again(
        caplog: pytest.LogCaptureFixture) -> None:
    """A lock timeout and a lost connection taking turns: the supervisor remembered only the latest error, so each
    was logged at every turn (a line per retry, the flood the deduplication is there to prevent)."""
    caplog.set_level(logging.DEBUG, logger="gateway.supervisor")
    calls: list[int] = []
    errors = [OperationalError("UPDATE ...", {}, Exception("database is locked")),
              OSError(28, "No space left on device")]

    def make(sup: Supervisor, stop: asyncio.Event) -> Callable[[], object]:
        async def step() -> bool:
            calls.append(1)
            if len(calls) <= 20:
                raise errors[len(calls) % 2]
            return True
        return step

    sup = _run({}, make, lambda: len(calls) > 21)
    assert sup.exit_code == 0
    failed = _lines(caplog, "supervisor.task_failed")
    assert len(failed) == 2, [r.getMessage() for r in failed]
    assert {("locked" in r.getMessage(), "No space" in r.getMessage()) for r in failed} == {(True, False), (False, True)}
    assert len(_lines(caplog, "supervisor.still_failing")) == 18
    [recovered] = _lines(caplog, "supervisor.task_recovered")
    assert "failures=20 errors=2" in recovered.getMessage()
    assert sup.health["t"].recent == {}  # the episode is over: the next error is news again


def test_the_errors_a_task_remembers_are_bounded() -> None:
    """Many distinct errors in one episode (a new one at every try) keep the memory at RECENT_ERRORS; the oldest
    is forgotten and, should it come back, logged again."""
    from gateway.entrypoints.supervisor import RECENT_ERRORS

    sup = Supervisor(asyncio.Event())
    for i in range(RECENT_ERRORS * 5):
        sup.report("t", OperationalError("SELECT ...", {}, Exception(f"error number {i}")))
    assert len(sup.health["t"].recent) == RECENT_ERRORS
    assert sup.health["t"].episode_failures == RECENT_ERRORS * 5

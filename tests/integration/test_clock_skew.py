"""A node's clock far from the database server's (several nodes on PostgreSQL) is said once and exported, and said
again when it is back. Before, nothing noticed: a node whose NTP had stopped dated what it recorded wrongly and
retried early or late (and, before leases went by the database's clock, took over the others' work early) without a
line.

The database and its clock are real; the node's clock is the one thing replaced (``clock=``), since moving the
machine's own clock would move every other test's too."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.bootstrap import App
from gateway.metrics import BacklogCollector
from gateway.services.clock import ClockWatch, max_skew, measure_skew


def test_on_sqlite_there_is_no_other_clock(app: App) -> None:
    if app.engine.dialect.name != "sqlite":
        pytest.skip("the SQLite case")
    watch = ClockWatch(app.engine, app.config)
    assert watch.step() is False and watch.skew is None


def test_a_clock_far_from_the_databases_is_said_once_shown_and_said_back(app: App,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("several nodes share PostgreSQL only")
    offset = [0.0]
    watch = ClockWatch(app.engine, app.config, clock=lambda: time.time() + offset[0])
    watch.step()
    assert watch.skew is not None and abs(watch.skew) < 1.0  # the same machine's clock: the round trip's error

    limit = max_skew(app.config)
    offset[0] = limit + 100  # NTP stopped, the clock ran ahead
    with caplog.at_level(logging.INFO, logger="gateway.serve"):
        for _ in range(3):
            watch.step()
    said = [r for r in caplog.records if r.getMessage().startswith("node.clock_skew")]
    assert len(said) == 1 and said[0].levelno == logging.ERROR  # once, not at every look
    assert watch.skew is not None and watch.skew > limit
    gauge = {m.name: m for m in BacklogCollector(lambda: None, dict, lambda: True, dict, lambda: watch.skew).collect()}
    assert gauge["gateway_clock_skew_seconds"].samples[0].value == watch.skew

    offset[0] = 0.0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.serve"):
        watch.step()
    assert [r.getMessage().split()[0] for r in caplog.records] == ["node.clock_back"]
    assert watch.skew is not None and abs(watch.skew) < 1.0


def test_the_measure_is_this_clock_minus_the_servers(app: App) -> None:
    if app.engine.dialect.name != "postgresql":
        pytest.skip("several nodes share PostgreSQL only")
    behind = measure_skew(app.engine, clock=lambda: time.time() - 3600)
    assert behind is not None and -3601 < behind < -3599


def test_the_clock_task_under_the_supervisor_survives_an_error_that_is_not_the_gateways(app: App) -> None:
    """As serve runs it (a supervised task, the step in a thread): a step that raises anything is counted and the
    task goes on measuring."""
    import asyncio

    from gateway.entrypoints.supervisor import Supervisor

    failing = [3]

    def clock() -> float:
        if failing[0]:
            failing[0] -= 1
            raise RuntimeError("the clock source broke")
        return time.time()

    watch = ClockWatch(app.engine, app.config, clock=clock)

    async def main() -> Supervisor:
        stop = asyncio.Event()
        sup = Supervisor(stop, backoff_base=0.001, backoff_max=0.005)
        sup.start("clock", lambda: asyncio.to_thread(watch.step), every=0.01)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while sup.health["clock"].runs < 6 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        stop.set()
        assert await sup.join(5) == []
        return sup

    sup = asyncio.run(main())
    health = sup.health["clock"]
    if app.engine.dialect.name == "postgresql":  # SQLite measures nothing: the clock is never read
        assert health.failures == 3 and health.consecutive == 0 and sup.exit_code == 0
    assert health.runs >= 6

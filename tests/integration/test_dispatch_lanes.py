"""Partners side by side (``dispatch.Lanes``, what `serve` runs): a partner that takes long to answer holds up
no other partner's deliveries, one row at a time per partner, and a step never waits on a slow partner.

Real parts: the HTTP agency simulator made slow (every request is held until the test lets it go, or takes
seconds) and a directory partner."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.simulators.agency import Agency
from adapters.simulators.http_sim import HttpAgencySimulator
from gateway.bootstrap import App, build_app
from gateway.config import load_config
from gateway.domain.lifecycle import State
from gateway.services.dispatch import Dispatcher, Lanes
from gateway.services.ingest import ingest_file
from gateway.services.keys import init_keys
from gateway.store.outbox import OutboxItem
from tests.conftest import write_config
from tests.contract.harness import claims_by_state
from tests.sftp_support import client_csv

SLOW_SECONDS = 8.0  # each request to the slow partner takes this long before it is answered


@pytest.fixture
def two_partners(tmp_path: Path, db_url: str) -> Iterator[tuple[App, Agency]]:
    agency = Agency("slow-agency")
    agency.faults.delay_seconds = SLOW_SECONDS
    sim = HttpAgencySimulator(agency).start()
    cfg = write_config(
        tmp_path, db_url,
        clients={"demo": {"name": "Demo", "mapping": "demo", "default_partner": "demo-agency"},
                 "shop": {"name": "Shop", "mapping": "demo", "default_partner": "slow-agency"}},
        partners={"demo-agency": {"adapter": "directory", "certificate": "var/keys/partners/demo-agency.crt",
                                  "options": {"path": "var/partners/demo-agency"}},
                  "slow-agency": {"adapter": "http", "certificate": "var/keys/partners/slow-agency.crt",
                                  "options": {"url": sim.url, "timeout": 30.0}}},
        routing=[{"partner": "demo-agency", "client": "demo"}, {"partner": "slow-agency", "client": "shop"}],
        dispatcher={"batch_size": 30})
    init_keys(load_config(cfg))
    app = build_app(cfg, migrate=True)
    try:
        yield app, agency
    finally:
        app.close()
        sim.stop()


def test_a_slow_partner_holds_up_no_other_partner(two_partners: tuple[App, Agency], tmp_path: Path) -> None:
    app, agency = two_partners
    # Held until the quick partner is done, not just slow: on a loaded machine the quick partner's three batches
    # took longer than the slow partner's delay, and the test failed although nothing waited for anything.
    agency.faults.delay_seconds, agency.faults.hold = 0.0, threading.Event()
    # the slow partner's work is queued first: with one delivery at a time for all partners it would go first
    assert ingest_file(app, client_csv(tmp_path / "shop.csv", 30, "SHOP"), "shop").accepted == 30
    assert ingest_file(app, client_csv(tmp_path / "demo.csv", 90, "DEMO"), "demo").accepted == 90
    lanes = Lanes(Dispatcher(app, owner="node-1"), width=4)
    try:
        # The quick partner gets all three of its batches while the slow one's first answer is still to come.
        deadline = time.monotonic() + 60
        while len(claims_by_state(app, "demo").get(State.HANDED_OVER, [])) < 90:
            assert time.monotonic() < deadline, claims_by_state(app, "demo")
            lanes.step(0.1)
        shop = claims_by_state(app, "shop")
        assert list(shop) == [State.DELIVERING], "the quick partner's batches waited for the slow one's answer"
        # The quick partner's last batch is recorded (its claims committed) a moment before its thread has ended
        # and the next step collects it: only the slow partner's batch stays in flight.
        while lanes.in_flight() > 1:
            assert time.monotonic() < deadline, lanes.ages()
            lanes.step(0.1)
        assert list(lanes.ages()) == ["slow-agency"]
        agency.faults.hold.set()

        deadline = time.monotonic() + 60
        while len(claims_by_state(app, "shop").get(State.HANDED_OVER, [])) < 30:
            assert time.monotonic() < deadline, claims_by_state(app, "shop")
            lanes.step(0.5)
        assert len(agency.cases) == 30 and not agency.duplicates()
        assert lanes.wait(5.0) and lanes.in_flight() == 0
    finally:
        agency.faults.hold.set()
        lanes.wait(30.0)
        lanes.close()


def test_a_failure_recording_a_row_is_raised_by_the_next_step(two_partners: tuple[App, Agency], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """What escapes a row's handling (here: recording the result fails) is not lost in a worker thread: the
    next step raises it, for the supervisor to log, count and back off."""
    app, _ = two_partners
    assert ingest_file(app, client_csv(tmp_path / "demo.csv", 20, "DEMO"), "demo").accepted == 20
    dispatcher = Dispatcher(app, owner="node-1")

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("recording failed")

    monkeypatch.setattr(dispatcher, "_deliver", broken)
    monkeypatch.setattr(dispatcher, "_failed", broken)
    lanes = Lanes(dispatcher, width=2)
    try:
        assert lanes.step()
        assert lanes.wait(10.0)
        with pytest.raises(RuntimeError, match="recording failed"):
            lanes.step()
        assert lanes.in_flight() == 0
    finally:
        lanes.close()


def test_once_stopping_a_step_starts_no_row_and_a_late_failure_is_logged(
        two_partners: tuple[App, Agency], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """After SIGTERM (``App.stopping``) the step that was running starts no partner's row: the rows in flight get
    the stop grace, a new one would only be abandoned. What escaped a row after the last step is logged at close,
    not lost with the thread."""
    app, _ = two_partners
    assert ingest_file(app, client_csv(tmp_path / "demo.csv", 20, "DEMO"), "demo").accepted == 20
    assert ingest_file(app, client_csv(tmp_path / "shop.csv", 20, "SHOP"), "shop").accepted == 20
    dispatcher = Dispatcher(app, owner="node-1")
    real = dispatcher._deliver

    def deliver(item: OutboxItem) -> None:
        if item.partner_id == "slow-agency":
            raise RuntimeError("recording failed")
        real(item)

    monkeypatch.setattr(dispatcher, "_deliver", deliver)
    monkeypatch.setattr(dispatcher, "_failed", lambda item, exc: (_ for _ in ()).throw(exc))
    lanes = Lanes(dispatcher, width=4)
    try:
        assert lanes.step()  # the oldest row (the demo client's, to the directory partner) is started
        assert lanes.wait(30.0)
        app.stopping.set()
        assert not lanes.step(0.1)  # the shop's row to the other partner is due, but serve is stopping
        assert lanes.in_flight() == 0
        assert sorted(s.value for s in claims_by_state(app, "shop")) == ["queued"]
    finally:
        app.stopping.clear()
    assert lanes.step()  # now the shop's row, whose recording fails after the last step
    assert lanes.wait(30.0)
    with caplog.at_level(logging.ERROR, logger="gateway.services.dispatch"):
        lanes.close()
    logged = [r.getMessage() for r in caplog.records if "dispatch.row_failed" in r.getMessage()]
    assert len(logged) == 1 and "partner=slow-agency error=RuntimeError at test_dispatch_lanes.py" in logged[0], logged


def test_failures_of_two_rows_collected_by_one_step_are_both_seen(
        two_partners: tuple[App, Agency], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Two partners' rows whose recording fails end before the same step: one is raised for the supervisor, the
    other is logged, not dropped."""
    app, _ = two_partners
    assert ingest_file(app, client_csv(tmp_path / "demo.csv", 20, "DEMO"), "demo").accepted == 20
    assert ingest_file(app, client_csv(tmp_path / "shop.csv", 20, "SHOP"), "shop").accepted == 20
    dispatcher = Dispatcher(app, owner="node-1")
    both_started = threading.Event()

    def broken(item: OutboxItem, *_a: object) -> None:
        both_started.wait(30.0)
        raise RuntimeError("recording failed")

    monkeypatch.setattr(dispatcher, "_deliver", broken)
    monkeypatch.setattr(dispatcher, "_failed", broken)
    lanes = Lanes(dispatcher, width=2)
    try:
        assert lanes.step() and lanes.step()  # one row of each partner in flight
        both_started.set()
        assert lanes.wait(30.0)
        with caplog.at_level(logging.ERROR, logger="gateway.services.dispatch"):
            with pytest.raises(RuntimeError, match="recording failed"):
                lanes.step()
        logged = [r.getMessage() for r in caplog.records if "dispatch.row_failed" in r.getMessage()]
        assert len(logged) == 1 and "error=RuntimeError at test_dispatch_lanes.py" in logged[0], logged
        assert lanes.in_flight() == 0
    finally:
        lanes.close()

"""Bounds on asking bureaus: a bureau job the check gave up on is never sent; a worker picking a job up past
the check's budget sends nothing; one bureau holds at most ``max_in_flight`` calls (more answer ``busy`` at
once); an adapter stops at its deadline however slowly the bureau sends, and at ``max_answer_bytes``.
Real loopback simulators (json and SOAP through zeep), both databases (the ``env`` fixture of test_credit)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest

from adapters.bureaus import BureauError, load_bureau
from adapters.bureaus.simulators.book import Fault
from adapters.bureaus.simulators.http_sim import HttpBureauSimulator
from gateway.bootstrap import App
from gateway.services import credit
from tests.integration.test_credit import app, check, env, live, person  # noqa: F401  (fixtures)

Sims = dict[str, HttpBureauSimulator]


def test_a_bureau_given_up_is_not_asked_later(app: App, live: Sims,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # one worker instead of 64, so that one slow bureau saturates the pool as 22+ simultaneous checks of 3
    # bureaus saturate the real one
    pool = ThreadPoolExecutor(max_workers=1)
    monkeypatch.setattr(credit, "_EXECUTOR", pool)
    try:
        for sim in live.values():
            sim.set_fault(Fault.SLOW, delay_seconds=1.0)  # slower than the 0.8 s budget
        answer = check(app, person("Erika", "Mustermann"))
        assert {o.bureau: o.status for o in answer.outcomes} == {"json": "timeout", "soap": "timeout",
                                                                 "third": "timeout"}
        pool.submit(lambda: None).result(timeout=10)  # FIFO: every job queued before has run or was cancelled
        asked_later = [b for b in ("soap", "third") if live[b].book.queries > 0]
        assert not asked_later, f"bureaus asked after the check had answered: {asked_later}"
    finally:
        pool.shutdown(wait=True)
        # The one request sent (json) sleeps out its delay in the simulator and is counted only then: wait for
        # it here, or it lands in the next test's counters (seen under load: a 'busy' bureau counted 1 query).
        deadline = time.monotonic() + 10
        while live["json"].book.queries < 1 and time.monotonic() < deadline:
            time.sleep(0.02)


def test_a_job_picked_up_past_its_budget_sends_nothing(app: App, live: Sims) -> None:  # noqa: F811
    cfg = app.config.bureaus["json"]
    queued_at = time.monotonic() - cfg.timeout_seconds  # as if it had waited its whole budget for a worker
    outcome = credit._ask(app, "json", cfg, person("Erika", "Mustermann"), "contract_initiation", queued_at)
    assert (outcome.status, live["json"].book.queries) == ("timeout", 0), outcome


def test_a_bureau_beyond_its_calls_in_flight_answers_busy_at_once(app: App, live: Sims) -> None:  # noqa: F811
    old = app.config.bureaus["json"]
    app.config.bureaus["json"] = msgspec.structs.replace(old, max_in_flight=1)
    try:
        bureau = credit._bureau(app, "json", app.config.bureaus["json"])
        assert bureau.slots.acquire(blocking=False)  # the one call allowed is in flight elsewhere
        try:
            answer = check(app, person("Erika", "Mustermann"))
        finally:
            bureau.slots.release()
        json = next(o for o in answer.outcomes if o.bureau == "json")
        assert json.status == "error" and (json.error or "").startswith("busy:"), json
        assert live["json"].book.queries == 0 and answer.incomplete
        assert {o.bureau: o.status for o in answer.outcomes if o.bureau != "json"} == {"soap": "answered",
                                                                                      "third": "answered"}
        again = check(app, person("Max", "Mustermann"))  # the slot is free again
        assert {o.bureau: o.status for o in again.outcomes}["json"] == "answered"
    finally:
        app.config.bureaus["json"] = old


@pytest.mark.parametrize("bureau", ["json", "soap"])
def test_a_trickling_bureau_is_given_up_at_the_deadline(app: App, live: Sims, bureau: str) -> None:  # noqa: F811
    cfg = app.config.bureaus[bureau]
    adapter = load_bureau(cfg.adapter, bureau, cfg.options, 0.5)
    try:
        adapter.check(person("Erika", "Mustermann"))  # the WSDL loaded and the connection made while healthy
        live[bureau].set_fault(Fault.TRICKLE, delay_seconds=0.05)  # each byte quick, the answer ~10+ s
        with pytest.raises(BureauError) as err:
            adapter.check(person("Erika", "Mustermann"))
        assert err.value.code == "timeout"
    finally:
        adapter.close()


@pytest.mark.parametrize("bureau", ["json", "soap"])
def test_an_answer_too_large_is_refused_unread(app: App, live: Sims, bureau: str) -> None:  # noqa: F811
    cfg = app.config.bureaus[bureau]
    adapter = load_bureau(cfg.adapter, bureau, cfg.options, 5.0)
    try:
        live[bureau].set_fault(Fault.HUGE)  # the right answer padded to 2 MiB: parses if read whole
        with pytest.raises(BureauError) as err:
            adapter.check(person("Erika", "Mustermann"))
        assert (err.value.code, err.value.retryable) == ("too_large", False)
        assert "answer too large" in str(err.value) and "Erika" not in str(err.value)
    finally:
        adapter.close()
    roomy = load_bureau(cfg.adapter, bureau, cfg.options, 5.0, max_answer_bytes=4 << 20)
    try:
        assert roomy.check(person("Erika", "Mustermann")).found  # the same answer within a larger cap
    finally:
        roomy.close()
    answer = check(app, person("Erika", "Mustermann"))  # through a check: that bureau's error, the rest answer
    outcome = next(o for o in answer.outcomes if o.bureau == bureau)
    assert outcome.status == "error" and (outcome.error or "").startswith("too_large"), outcome

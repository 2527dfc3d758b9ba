"""Status pulls from an HTTP partner whose events feed misbehaves: a cursor that goes in a circle or never
changes, an endless stream of pages, and pages full of what no partner should send (duplicates, statuses out
of order, codes that are free text, absurd amounts, huge texts).

The real http simulator's router is wrapped (``_reroute``): the feed is served on the real loopback transport,
read by the real adapter, applied by the real sync into the real store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from adapters.simulators.agency import PAID, WORKING
from gateway.bootstrap import App
from gateway.domain.lifecycle import State
from gateway.errors import DeliveryError
from gateway.services import partner_sync
from gateway.services.ingest import ingest_file
from gateway.services.partner_sync import sync_partner
from gateway.store.db import read_tx
from gateway.store.schema import claim_events, partner_sync as partner_sync_table
from tests.contract.harness import PARTNER, Harness, claims_by_state
from tests.integration.test_partner_faults_2 import DEMO, PLANTED, _current, _deliver, _reroute

Route = Callable[[Any, str, Any, bytes], tuple[int, bytes, str]]
Pages = Callable[[str], tuple[list[dict[str, Any]], str | None]]


def _feed(sim: Harness, pages: Pages, asked: list[str]) -> None:
    """Serve ``GET /v1/events?after=X`` from ``pages(X)``; everything else goes to the real simulator."""
    def wrap(real: Route) -> Route:
        def route(handler: Any, method: str, url: Any, raw: bytes) -> tuple[int, bytes, str]:
            if method == "GET" and url.path == "/v1/events":
                after = dict(p.split("=", 1) for p in url.query.split("&") if "=" in p).get("after", "0")
                asked.append(after)
                events, following = pages(after)
                return 200, json.dumps({"events": events, "next": following}).encode(), "application/json"
            return real(handler, method, url, raw)
        return route
    _reroute(sim, wrap)


def _handed_over(gw: App) -> list[int]:
    ingest_file(gw, DEMO, "demo")
    _deliver(gw)
    return claims_by_state(gw)[State.HANDED_OVER]


def _sync_row(gw: App) -> dict[str, Any]:
    with read_tx(gw.engine) as conn:
        return dict(conn.execute(partner_sync_table.select()).mappings().one())


def status(uid: str, cid: int, code: str = WORKING, **more: Any) -> dict[str, Any]:
    return {"update_id": uid, "claim_id": cid, "kind": "status", "code": code, **more}


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_cursor_that_goes_in_a_circle_ends_the_pull_and_says_so(sim: Harness, gw: App) -> None:
    """after=0 -> A, A -> B, B -> A again. The pull applies what the pages say (once) and stops as soon as
    the cursor comes back to one it has read, with the reason on the sync row; it used to page on up to
    MAX_PAGES (1000 requests) on every pull."""
    a = _handed_over(gw)[0]
    asked: list[str] = []
    _feed(sim, lambda after: {"0": ([status("c-1", a)], "A"), "A": ([status("c-2", a)], "B"),
                              "B": ([status("c-1", a)], "A")}[after], asked)
    with pytest.raises(DeliveryError, match="in a circle"):
        sync_partner(gw, PARTNER)
    assert asked == ["0", "A", "B"]
    row = _sync_row(gw)
    assert "in a circle" in row["last_error"]
    assert _current(gw, a)["state"] == State.IN_PROGRESS.value


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_cursor_that_never_moves_ends_the_pull_after_one_page(sim: Harness, gw: App) -> None:
    a = _handed_over(gw)[0]
    asked: list[str] = []
    _feed(sim, lambda after: ([status("s-1", a)], after), asked)
    first = sync_partner(gw, PARTNER)  # None -> "0", then "0" -> "0": the pull ends
    assert asked == ["0", "0"] and first.counts == {"applied": 1, "duplicate": 1}
    assert sync_partner(gw, PARTNER).counts == {"duplicate": 1}
    assert asked == ["0", "0", "0"] and _sync_row(gw)["last_error"] is None


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_an_endless_page_stream_is_cut_and_the_next_pull_goes_on(sim: Harness, gw: App,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Every page names a next page, for ever: one pull reads MAX_PAGES of them and ends, logged; the cursor is
    where it stopped, and the next pull starts there."""
    monkeypatch.setattr(partner_sync, "MAX_PAGES", 5)
    a = _handed_over(gw)[0]
    asked: list[str] = []
    _feed(sim, lambda after: ([status(f"e-{after}", a)], str(int(after) + 1)), asked)
    assert sync_partner(gw, PARTNER).total == 5
    assert asked == ["0", "1", "2", "3", "4"] and _sync_row(gw)["cursor"] == "5"
    assert "partner_sync.cut_short" in caplog.text
    sync_partner(gw, PARTNER)
    assert asked[5:] == ["5", "6", "7", "8", "9"]


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_pull_cut_short_goes_on_within_a_minute_not_at_the_next_schedule(sim: Harness, gw: App,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog of more than MAX_PAGES pages (after an outage) is cut at MAX_PAGES; the partner is due again
    CONTINUE_AFTER_SECONDS later, not at its next schedule (a day by default), so the backlog drains in minutes.
    A pull that reads to the end leaves the partner on its schedule."""
    monkeypatch.setattr(partner_sync, "MAX_PAGES", 3)
    monkeypatch.setattr(gw.config.partners[PARTNER].sync, "every_seconds", 86400.0)
    a = _handed_over(gw)[0]
    asked: list[str] = []
    backlog = 7  # pages
    _feed(sim, lambda after: (([status(f"e-{after}", a)], str(int(after) + 1)) if int(after) < backlog
                              else ([], after)), asked)
    sync_partner(gw, PARTNER)
    assert asked == ["0", "1", "2"]
    assert PARTNER not in partner_sync.due_partners(gw)  # pulled just now: a minute to wait
    later = gw.now() + timedelta(seconds=partner_sync.CONTINUE_AFTER_SECONDS)
    assert PARTNER in partner_sync.due_partners(gw, later)
    sync_partner(gw, PARTNER)
    sync_partner(gw, PARTNER)  # the last pages, and the end of the feed
    assert asked[3:] == ["3", "4", "5", "6", "7"]
    assert PARTNER not in partner_sync.due_partners(gw, later + timedelta(hours=1))  # on its schedule again


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_a_page_of_nonsense_applies_what_it_can_once_and_logs_no_partner_text(sim: Harness, gw: App,
                                                                               caplog: pytest.LogCaptureFixture
                                                                               ) -> None:
    """One page: the same update twice, paid then an older open, a claim of another creditor the partner was
    never sent, a status code that is free text naming a debtor, negative, absurd and non-numeric amounts, a
    message of a megabyte. Each gets its outcome, the claims move only as the lifecycle allows, nothing is
    booked from a bad amount, and no log line at DEBUG carries the partner's free text."""
    caplog.set_level(logging.DEBUG)
    a, b, c = _handed_over(gw)[:3]
    held = claims_by_state(gw)[State.HELD][0]
    page = [
        status("n-1", a), status("n-1", a),  # the same update twice
        status("n-2", b, PAID, occurred_at="2026-11-20T10:00:00+00:00"),
        status("n-3", b, WORKING, occurred_at="2026-11-19T10:00:00+00:00"),  # older than paid: stale
        status("n-4", held),  # routed here but never sent
        status("n-5", 987654321),  # not a claim of this partner at all
        status("n-6", c, f"Schuldner {PLANTED} verzogen"),  # free text where the code belongs
        {"update_id": "n-7", "claim_id": c, "kind": "payment", "amount": "-50.00", "currency": "EUR"},
        {"update_id": "n-8", "claim_id": c, "kind": "payment", "amount": "1e400", "currency": "EUR"},
        {"update_id": "n-9", "claim_id": c, "kind": "payment", "amount": "NaN", "currency": "EUR"},
        {"update_id": "n-10", "claim_id": c, "kind": "payment", "amount": "zwölf", "currency": "EUR"},
        {"update_id": "n-11", "claim_id": c, "kind": "message", "message_id": "m-1", "text": "x" * (1 << 20)},
    ]
    _feed(sim, lambda after: (page, "1") if after == "0" else ([], "1"), [])
    result = sync_partner(gw, PARTNER)
    assert result.counts == {"applied": 2, "duplicate": 1, "stale": 1, "not_sent": 1, "unknown_claim": 1,
                             "unknown_code": 1, "invalid_amount": 4, "recorded": 1}, result.counts
    assert _current(gw, a)["state"] == State.IN_PROGRESS.value
    assert _current(gw, b)["state"] == State.CLOSED_PAID.value
    assert _current(gw, held)["state"] == State.HELD.value
    assert _current(gw, c)["paid_agency_minor"] == 0
    assert PLANTED not in caplog.text
    assert "partner_updates.unknown_code" in caplog.text
    with read_tx(gw.engine) as conn:
        kinds = [r.kind for r in conn.execute(claim_events.select().where(claim_events.c.claim_id == c))]
    assert kinds.count("partner_amount_invalid") == 4


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_payments_with_odd_dates_and_amounts_never_stop_the_partners_status(sim: Harness, gw: App) -> None:
    """Payment updates whose date is no date, whose amount has sub-cent digits or another currency, one in
    lower-case currency without a date, and a status after them: the page applies (nothing stops the partner's
    status for good) and the claim's case account books only plain amounts of its currency."""
    a = _handed_over(gw)[0]
    page = [
        {"update_id": "d-1", "claim_id": a, "kind": "payment", "amount": "10.00", "currency": "EUR",
         "date": "31.12.2026"},
        {"update_id": "d-2", "claim_id": a, "kind": "payment", "amount": "12.345", "currency": "EUR",
         "date": "2026-11-02"},
        {"update_id": "d-3", "claim_id": a, "kind": "payment", "amount": "7.50", "currency": "CHF",
         "date": "2026-11-02"},
        {"update_id": "d-4", "claim_id": a, "kind": "payment", "amount": "5", "currency": "eur", "date": None},
        status("d-5", a),
    ]
    _feed(sim, lambda after: (page, "1") if after == "0" else ([], "1"), [])
    result = sync_partner(gw, PARTNER)
    assert result.counts == {"recorded": 2, "invalid_amount": 2, "applied": 1}, result.counts
    assert _current(gw, a)["state"] == State.IN_PROGRESS.value
    assert _current(gw, a)["paid_agency_minor"] == 1500
    assert sync_partner(gw, PARTNER).total == 0 and _sync_row(gw)["last_error"] is None


@pytest.mark.parametrize("sim", ["http"], indirect=True)
def test_an_amount_sent_as_a_json_number_is_booked_exactly(sim: Harness, gw: App) -> None:
    """Many APIs send amounts as JSON numbers, not strings. One such payment failed the whole page (msgspec:
    expected str) at every pull, so no later status of the partner ever applied. It is read losslessly (no
    float in between: 0.1 + 0.2 stays 0.30) and booked."""
    a = _handed_over(gw)[0]
    raw = (b'{"events": [{"update_id": "j-1", "claim_id": %d, "kind": "payment", "amount": 0.1, "currency": "EUR"},'
           b' {"update_id": "j-2", "claim_id": %d, "kind": "payment", "amount": 0.20, "currency": "EUR"},'
           b' {"update_id": "j-3", "claim_id": %d, "kind": "payment", "amount": 3, "currency": "EUR"},'
           b' {"update_id": "j-4", "claim_id": %d, "kind": "status", "code": "%s"}], "next": "1"}'
           % (a, a, a, a, WORKING.encode()))

    def wrap(real: Route) -> Route:
        def route(handler: Any, method: str, url: Any, body: bytes) -> tuple[int, bytes, str]:
            if method == "GET" and url.path == "/v1/events":
                return 200, raw if "after=0" in url.query else b'{"events": [], "next": "1"}', "application/json"
            return real(handler, method, url, body)
        return route
    _reroute(sim, wrap)
    result = sync_partner(gw, PARTNER)
    assert result.counts == {"recorded": 3, "applied": 1}, result.counts
    assert _current(gw, a)["paid_agency_minor"] == 330


def test_status_files_and_webhook_bodies_take_number_amounts_exactly() -> None:
    from adapters.base import decode_updates
    [u, v] = decode_updates(b'[{"update_id": "x", "claim_id": 1, "kind": "payment", "amount": 0.20},'
                            b' {"update_id": "y", "claim_id": 1, "kind": "payment", "amount": "1.10"}]')
    assert (u.amount, v.amount) == ("0.20", "1.10")
